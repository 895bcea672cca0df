//! Verification of the file stream: the `.partial` file becomes the result only when its
//! length and sha256 match the agent's `FileComplete`, the stream's end record, and a
//! re-hash from disk.

use super::*;

impl Demux {
    pub(super) fn verification_failed(&self) -> bool {
        self.report().outcome == "transfer_failed"
    }

    /// Rename the file once the stream ended, the agent gave its digest, and both agree
    /// with the bytes on disk.
    pub(super) fn try_finish_file(&mut self, stream: u32, notices: &mut Vec<Notice>) -> Result<()> {
        let (Some(sink), Some((_, size, sha))) =
            (self.state.streams.get(&stream), self.state.file_complete.get(&stream))
        else {
            return Ok(());
        };
        let Some((len, end_sha, verified)) = sink.ended.clone() else { return Ok(()) };
        if !matches!(sink.kind, StreamKind::File { .. }) {
            return Ok(());
        }
        let partial = self.out.join(&sink.path);
        let (disk_sha, disk_len) = crate::util::sha256_file(&partial)?;
        let problem = if !verified {
            Some("the receiver could not authenticate every frame of the file".to_string())
        } else if len != *size || disk_len != *size {
            Some(format!("size mismatch: agent says {size}, stream ended at {len}, received {disk_len}"))
        } else if !end_sha.eq_ignore_ascii_case(sha) || !disk_sha.eq_ignore_ascii_case(sha) {
            Some(format!("sha256 mismatch: agent says {sha}, received {disk_sha}"))
        } else {
            None
        };
        if let Some(why) = problem {
            let r = self.report_mut();
            r.outcome = "transfer_failed".into();
            r.message = format!("sysroot tarball did not verify: {why}");
            notices.push(Notice::VerificationFailed(why));
            return Ok(());
        }
        let final_name = sink.path.trim_end_matches(".partial").to_string();
        let final_path = self.out.join(&final_name);
        std::fs::rename(&partial, &final_path)?;
        std::fs::write(self.out.join(format!("{final_name}.sha256")), format!("{disk_sha}  {final_name}\n"))?;
        let url = crate::track::file_url(&final_path);
        std::fs::write(self.out.join("sysroot.bst"), crate::track::tar_source(&url, &disk_sha))?;
        self.report_mut().sysroot =
            Some(SysrootRecord { file: final_name, sha256: disk_sha.clone(), size: disk_len });
        notices.push(Notice::Verified { file: final_path, sha256: disk_sha, size: disk_len });
        Ok(())
    }

    /// The link ended (or timed out) before the run was complete.
    pub fn mark_transfer_failed(&mut self, why: &str) {
        let r = self.report_mut();
        if !r.is_finished() || (r.outcome == "success" && r.sysroot.is_none()) {
            r.outcome = "transfer_failed".into();
            r.message = why.into();
        }
    }
}
