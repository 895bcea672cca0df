//! Resuming a collection: the state of an interrupted run is rebuilt from the events
//! files it kept (`events-N.jsonl`), and a new session of the agent continues it.

use super::*;

impl Demux {
    /// Rebuild the state of an interrupted collection in `out` from its events files;
    /// `None` when there is nothing to resume.
    pub fn resume(out: &Path, console_name: &str) -> Result<Option<Demux>> {
        let mut sessions: Vec<(u32, PathBuf)> = std::fs::read_dir(out)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name.strip_prefix(EVENTS_PREFIX)?.strip_suffix(".jsonl")?.parse().ok()?;
                Some((n, e.path()))
            })
            .collect();
        if sessions.is_empty() {
            return Ok(None);
        }
        sessions.sort();
        let old: Option<Report> =
            std::fs::read(out.join(REPORT)).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let mut d = Demux::new(out, console_name, None)?;
        d.replaying = true;
        for (n, path) in &sessions {
            if d.state.events_offset > 0 {
                d.begin_new_session();
            }
            d.state.session_index = *n;
            let bytes = std::fs::read(path)?;
            d.handle(Incoming::Data { stream: 0, offset: 0, bytes })?;
        }
        d.replaying = false;
        let ends: Option<(u32, StreamEnds)> =
            std::fs::read(out.join(STREAM_ENDS)).ok().and_then(|b| serde_json::from_slice(&b).ok());
        for (id, sink) in d.state.streams.iter_mut() {
            sink.written = std::fs::metadata(out.join(&sink.path)).map(|m| m.len()).unwrap_or(0);
            if let Some((session, ends)) = &ends {
                if *session == d.state.session_index {
                    sink.ended = ends.get(id).cloned();
                }
            }
        }
        // A file that ended before the stop: finish (or re-find) it now, since the receiver
        // will not announce its end again.
        let file_streams: Vec<(u32, String)> = d
            .state
            .streams
            .iter()
            .filter(|(_, s)| matches!(s.kind, StreamKind::File { .. }) && s.ended.is_some())
            .map(|(id, s)| (*id, s.path.clone()))
            .collect();
        for (id, partial) in file_streams {
            let final_name = partial.trim_end_matches(".partial").to_string();
            if out.join(&partial).exists() {
                d.try_finish_file(id, &mut Vec::new())?;
            } else if let (true, Some((_, size, sha))) =
                (out.join(&final_name).exists(), d.state.file_complete.get(&id).cloned())
            {
                let (disk_sha, disk_len) = crate::util::sha256_file(&out.join(&final_name))?;
                if disk_sha.eq_ignore_ascii_case(&sha) && disk_len == size {
                    d.report_mut().sysroot =
                        Some(SysrootRecord { file: final_name, sha256: disk_sha, size: disk_len });
                }
            }
        }
        if let Some(old) = old {
            let r = d.report_mut();
            r.started_at_unix = old.started_at_unix;
            r.link_resumes = old.link_resumes;
            for m in r.modules.iter_mut() {
                if let Some(o) = old.modules.iter().find(|o| o.index == m.index && o.name == m.name) {
                    m.start = o.start.or(m.start);
                }
            }
            d.start_offset_s = old.elapsed_s;
            d.report_mut().elapsed_s = old.elapsed_s;
        }
        d.report_mut().link_resumes += 1;
        Ok(Some(d))
    }

    /// The file already delivered on `stream` in the current session, for the receiver
    /// to hash again when it resumes.
    pub fn delivered_prefix(&self, stream: u32) -> std::io::Result<Box<dyn std::io::Read>> {
        let path = if stream == 0 {
            Some(self.events_path())
        } else {
            // A verified file has already lost its `.partial`.
            self.state.streams.get(&stream).map(|s| self.out.join(&s.path)).map(|p| {
                let done = PathBuf::from(p.to_string_lossy().trim_end_matches(".partial"));
                if !p.exists() && done.exists() {
                    done
                } else {
                    p
                }
            })
        };
        match path.filter(|p| p.exists()) {
            Some(p) => Ok(Box::new(std::fs::File::open(p)?)),
            None => Ok(Box::new(std::io::empty())),
        }
    }

    pub(super) fn events_path(&self) -> PathBuf {
        self.out.join(format!("{EVENTS_PREFIX}{}.jsonl", self.state.session_index))
    }

    /// Another session (the agent restarted): streams start again from offset 0.
    pub(super) fn begin_new_session(&mut self) {
        self.state.session_index += 1;
        self.state.events_offset = 0;
        self.state.events_partial.clear();
        self.state.streams.clear();
        self.state.pending.clear();
        self.state.file_complete.clear();
    }
}
