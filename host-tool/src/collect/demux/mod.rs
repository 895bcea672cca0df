//! Routes what the link delivers: console text to console.log, events to the report and
//! the display, module logs to logs/NN-name.log, the file stream to a `.partial` file that
//! becomes `sysroot.tar[.gz]` once verified (`verify`); an interrupted collection is
//! picked up again from what it kept (`resume`). This module routes.

mod resume;
mod verify;

use super::link::Incoming;
use super::model::{Report, SysrootRecord};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use stagehand_proto::events::{Event, StreamKind};
use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const REPORT: &str = "report.json";
/// The events stream of session N, as received: `events-N.jsonl`. A rerun replays
/// these to rebuild its state.
pub const EVENTS_PREFIX: &str = "events-";
pub const LOGS: &str = "logs";
/// Streams of the current session that already ended (the receiver will not say so again).
pub const STREAM_ENDS: &str = ".stream-ends.json";
/// How long logs may trail the final event.
const LOG_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Length, sha256 and verified flag of each ended stream.
type StreamEnds = BTreeMap<u32, (u64, String, bool)>;

/// Where one stream's bytes go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamSink {
    /// Relative to the output folder.
    pub path: String,
    pub kind: StreamKind,
    pub written: u64,
    #[serde(default)]
    pub ended: Option<(u64, String, bool)>,
}

/// What the demux knows; rebuilt from the events files when a collection resumes.
#[derive(Clone, Debug, Default)]
pub struct DemuxState {
    pub report: Option<Report>,
    pub streams: BTreeMap<u32, StreamSink>,
    /// Bytes of the events stream received so far, and an unfinished line.
    pub events_offset: u64,
    pub events_partial: Vec<u8>,
    /// `FileComplete` events by stream: (name, size, sha256).
    pub file_complete: BTreeMap<u32, (String, u64, String)>,
    pub rejected: u64,
    /// Counts sessions seen in this output folder, from 1.
    pub session_index: u32,
    /// Data for streams not yet announced, held until their `StreamOpened`.
    pub pending: BTreeMap<u32, Vec<(u64, Vec<u8>)>>,
}

/// What the collector tells the display.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    Event(Event),
    Rejected(String),
    Verified { file: PathBuf, sha256: String, size: u64 },
    VerificationFailed(String),
    LinkResumed,
}

pub struct Demux {
    out: PathBuf,
    console_name: String,
    pub state: DemuxState,
    console: Option<std::fs::File>,
    started: std::time::Instant,
    start_offset_s: f64,
    pub packing: Option<(u64, u64)>,
    replaying: bool,
    over_since: Option<std::time::Instant>,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Demux {
    /// A demux writing into `out`; `state` from an earlier interrupted run resumes it.
    pub fn new(out: &Path, console_name: &str, state: Option<DemuxState>) -> Result<Demux> {
        std::fs::create_dir_all(out.join(LOGS))
            .with_context(|| format!("cannot create {}", out.display()))?;
        let mut state = state.unwrap_or_default();
        state.session_index = state.session_index.max(1);
        let report = state.report.get_or_insert_with(|| Report::new(now_unix()));
        let start_offset_s = report.elapsed_s;
        Ok(Demux {
            out: out.to_path_buf(),
            console_name: console_name.into(),
            state,
            console: None,
            started: std::time::Instant::now(),
            start_offset_s,
            packing: None,
            replaying: false,
            over_since: None,
        })
    }

    pub fn out_dir(&self) -> &Path {
        &self.out
    }

    pub fn report(&self) -> &Report {
        self.state.report.as_ref().expect("set in new")
    }

    fn report_mut(&mut self) -> &mut Report {
        self.state.report.as_mut().expect("set in new")
    }

    pub fn elapsed_s(&self) -> f64 {
        self.start_offset_s + self.started.elapsed().as_secs_f64()
    }

    /// Bytes of the file stream received so far, and its announced size.
    pub fn file_progress(&self) -> (u64, Option<u64>) {
        for (id, s) in &self.state.streams {
            if matches!(s.kind, StreamKind::File { .. }) {
                return (s.written, self.state.file_complete.get(id).map(|f| f.1));
            }
        }
        (0, None)
    }

    /// The run is over and, unless the link lost them, the logs are complete: after the
    /// final event the logs still in flight get until their end records, or a few seconds.
    pub fn finished(&self) -> bool {
        let r = self.report();
        let over = match r.outcome.as_str() {
            "running" => false,
            "success" => r.sysroot.is_some() || self.verification_failed(),
            _ => true,
        };
        if !over || self.verification_failed() {
            return over;
        }
        let logs_done = self
            .state
            .streams
            .values()
            .all(|s| s.ended.is_some() || matches!(s.kind, StreamKind::File { .. }));
        logs_done || self.over_since.is_some_and(|t| t.elapsed() >= LOG_GRACE)
    }

    /// Note when the run was first seen to be over (for the log grace period).
    pub fn tick(&mut self) {
        if self.over_since.is_none() && self.report().is_finished() {
            self.over_since = Some(std::time::Instant::now());
        }
    }

    pub fn handle(&mut self, item: Incoming) -> Result<Vec<Notice>> {
        let mut notices = Vec::new();
        match item {
            Incoming::Console(bytes) => {
                if self.console.is_none() {
                    let p = self.out.join(&self.console_name);
                    self.console = Some(
                        std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&p)
                            .with_context(|| format!("cannot write {}", p.display()))?,
                    );
                }
                self.console.as_mut().expect("opened").write_all(&bytes)?;
            }
            Incoming::Hello { .. } => {}
            Incoming::NewSession { .. } => {
                if self.state.events_offset > 0 || !self.state.streams.is_empty() {
                    self.begin_new_session();
                    self.report_mut().link_resumes += 1;
                    notices.push(Notice::LinkResumed);
                }
            }
            Incoming::Rejected { reason, count } => {
                self.state.rejected += count as u64;
                notices.push(Notice::Rejected(if count > 1 {
                    format!("{reason} (x{count})")
                } else {
                    reason
                }));
            }
            Incoming::Data { stream: 0, offset, bytes } => {
                if offset != self.state.events_offset {
                    anyhow::bail!(
                        "events stream out of order (offset {offset}, expected {})",
                        self.state.events_offset
                    );
                }
                if !self.replaying {
                    let p = self.events_path();
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&p)
                        .with_context(|| format!("cannot write {}", p.display()))?;
                    f.write_all(&bytes)?;
                }
                self.state.events_offset += bytes.len() as u64;
                self.state.events_partial.extend_from_slice(&bytes);
                while let Some(nl) = self.state.events_partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.state.events_partial.drain(..=nl).collect();
                    match Event::from_line(&line) {
                        Ok(ev) => {
                            self.on_event(&ev, &mut notices)?;
                            notices.push(Notice::Event(ev));
                        }
                        Err(e) => notices.push(Notice::Rejected(format!("unreadable event line ({e})"))),
                    }
                }
            }
            Incoming::Data { stream, offset, bytes } => self.write_stream(stream, offset, &bytes)?,
            Incoming::StreamEnd { stream, len, sha256, verified } => {
                if let Some(s) = self.state.streams.get_mut(&stream) {
                    s.ended = Some((len, sha256, verified));
                }
                self.try_finish_file(stream, &mut notices)?;
            }
        }
        Ok(notices)
    }

    fn on_event(&mut self, ev: &Event, notices: &mut Vec<Notice>) -> Result<()> {
        let now = self.elapsed_s();
        let failed_before = self.verification_failed();
        self.report_mut().apply(ev, now);
        if failed_before && matches!(ev, Event::Finished { .. }) {
            // The agent's success does not undo a file that failed to verify.
            self.report_mut().outcome = "transfer_failed".into();
        }
        match ev {
            Event::StreamOpened { stream, kind } => {
                let path = match kind {
                    StreamKind::AgentLog => stagehand_proto::logs::AGENT_LOG.to_string(),
                    StreamKind::ModuleLog { module } => {
                        let n = self
                            .report()
                            .modules
                            .iter()
                            .find(|m| &m.name == module)
                            .map(|m| m.index + 1)
                            .unwrap_or(self.state.streams.len() + 1);
                        format!("{LOGS}/{}", stagehand_proto::logs::module_log_name(n - 1, module))
                    }
                    StreamKind::File { compression, .. } => {
                        if compression == "gzip" { "sysroot.tar.gz.partial" } else { "sysroot.tar.partial" }
                            .to_string()
                    }
                };
                if let StreamKind::ModuleLog { module } = kind {
                    let p = path.clone();
                    if let Some(m) = self.report_mut().modules.iter_mut().find(|m| &m.name == module) {
                        m.log = Some(p);
                    }
                }
                // A module log of an earlier session is kept: the new one gets the session number.
                let path = if self.state.session_index > 1
                    && matches!(kind, StreamKind::ModuleLog { .. })
                    && self.out.join(&path).exists()
                    && !self.replaying
                {
                    format!("{}.{}.log", path.trim_end_matches(".log"), self.state.session_index)
                } else {
                    path
                };
                if !self.replaying && matches!(kind, StreamKind::File { .. }) {
                    let _ = std::fs::remove_file(self.out.join(&path));
                }
                // report.json names the log as soon as the module starts: a module that
                // prints nothing still has its (empty) file.
                if !self.replaying && matches!(kind, StreamKind::ModuleLog { .. }) {
                    let p = self.out.join(&path);
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&p)
                        .with_context(|| format!("cannot write {}", p.display()))?;
                }
                self.state.streams.entry(*stream).or_insert(StreamSink {
                    path,
                    kind: kind.clone(),
                    written: 0,
                    ended: None,
                });
                for (offset, bytes) in self.state.pending.remove(stream).unwrap_or_default() {
                    self.write_stream(*stream, offset, &bytes)?;
                }
            }
            Event::PackProgress { tree_bytes, archive_bytes } => {
                self.packing = Some((*tree_bytes, *archive_bytes))
            }
            Event::FileComplete { stream, name, size, sha256 } => {
                self.state.file_complete.insert(*stream, (name.clone(), *size, sha256.clone()));
                self.try_finish_file(*stream, notices)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn write_stream(&mut self, stream: u32, offset: u64, bytes: &[u8]) -> Result<()> {
        let Some(sink) = self.state.streams.get_mut(&stream) else {
            // Its announcement is still on the way on the events stream.
            self.state.pending.entry(stream).or_default().push((offset, bytes.to_vec()));
            return Ok(());
        };
        if offset != sink.written {
            anyhow::bail!("stream {stream} out of order (offset {offset}, have {})", sink.written);
        }
        let p = self.out.join(&sink.path);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&p)
            .with_context(|| format!("cannot write {}", p.display()))?;
        f.seek(SeekFrom::Start(offset))?;
        f.write_all(bytes)?;
        sink.written += bytes.len() as u64;
        Ok(())
    }

    /// Write report.json and the resume state.
    pub fn save(&mut self) -> Result<()> {
        let elapsed = self.elapsed_s();
        self.report_mut().elapsed_s = elapsed;
        write_atomic(&self.out.join(REPORT), &serde_json::to_vec_pretty(self.report())?)?;
        let ends: StreamEnds =
            self.state.streams.iter().filter_map(|(id, s)| Some((*id, s.ended.clone()?))).collect();
        write_atomic(&self.out.join(STREAM_ENDS), &serde_json::to_vec(&(self.state.session_index, ends))?)?;
        if let Some(c) = self.console.as_mut() {
            c.flush()?;
        }
        Ok(())
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use stagehand_proto::events::{Hello, ModuleOutcome, Outcome};

    /// A full successful run as the link would deliver it.
    pub fn successful_run(file: &[u8]) -> Vec<Incoming> {
        let sha = crate::util::to_hex(&Sha256::digest(file));
        let ev = |e: Event| e.to_line();
        let mut events = Vec::new();
        events.extend(ev(Event::Hello(Hello {
            agent_version: "0.1.0".into(),
            contract: stagehand_proto::CONTRACT_VERSION,
            target: "x86_64".into(),
            kernel: "Linux 6.1".into(),
            boot_id: "b1".into(),
            config_digest: "c".into(),
            mode: "pid1".into(),
        })));
        events.extend(ev(Event::Plan {
            bundle_kind: "buildstream".into(),
            modules: vec!["hello".into(), "gcc".into()],
            completed: vec![],
        }));
        events.extend(ev(Event::StreamOpened {
            stream: 2,
            kind: StreamKind::ModuleLog { module: "hello".into() },
        }));
        events.extend(ev(Event::ModuleStarted { index: 0, total: 2, name: "hello".into() }));
        let mid = events.len();
        events.extend(ev(Event::ModuleFinished {
            index: 0,
            name: "hello".into(),
            outcome: ModuleOutcome { success: true, exit_code: Some(0), signal: None },
            duration_ms: 1500,
        }));
        events.extend(ev(Event::StreamOpened {
            stream: 3,
            kind: StreamKind::ModuleLog { module: "gcc".into() },
        }));
        events.extend(ev(Event::ModuleStarted { index: 1, total: 2, name: "gcc".into() }));
        events.extend(ev(Event::ModuleFinished {
            index: 1,
            name: "gcc".into(),
            outcome: ModuleOutcome { success: true, exit_code: Some(0), signal: None },
            duration_ms: 9000,
        }));
        events.extend(ev(Event::StreamOpened {
            stream: 4,
            kind: StreamKind::File { name: "sysroot.tar.gz".into(), compression: "gzip".into() },
        }));
        let before_file = events.len();
        events.extend(ev(Event::FileComplete {
            stream: 4,
            name: "sysroot.tar.gz".into(),
            size: file.len() as u64,
            sha256: sha.clone(),
        }));
        events.extend(ev(Event::Finished {
            outcome: Outcome::Success,
            message: String::new(),
            failed_module: None,
            log_tail: None,
            then: "poweroff".into(),
        }));
        let half = file.len() / 2;
        vec![
            Incoming::Console(b"[    0.000000] Linux version 6.1\n".to_vec()),
            Incoming::Hello { session: 7, payload: b"{}".to_vec() },
            // Split mid-line to check line reassembly.
            Incoming::Data { stream: 0, offset: 0, bytes: events[..mid + 3].to_vec() },
            Incoming::Data { stream: 2, offset: 0, bytes: b"building hello\n".to_vec() },
            Incoming::Data {
                stream: 0,
                offset: (mid + 3) as u64,
                bytes: events[mid + 3..before_file].to_vec(),
            },
            Incoming::Data { stream: 3, offset: 0, bytes: b"building gcc\n".to_vec() },
            Incoming::StreamEnd {
                stream: 2,
                len: 15,
                sha256: crate::util::to_hex(&Sha256::digest(b"building hello\n")),
                verified: true,
            },
            Incoming::Data { stream: 4, offset: 0, bytes: file[..half].to_vec() },
            Incoming::Data { stream: 4, offset: half as u64, bytes: file[half..].to_vec() },
            Incoming::StreamEnd { stream: 4, len: file.len() as u64, sha256: sha, verified: true },
            Incoming::Data { stream: 0, offset: before_file as u64, bytes: events[before_file..].to_vec() },
            // The last log ends after the final event: the run is over only then.
            Incoming::StreamEnd {
                stream: 3,
                len: 13,
                sha256: crate::util::to_hex(&Sha256::digest(b"building gcc\n")),
                verified: true,
            },
        ]
    }

    #[test]
    fn a_module_that_prints_nothing_still_has_its_log_file() {
        let d = tempfile::tempdir().unwrap();
        let mut demux = Demux::new(d.path(), "console.log", None).unwrap();
        let mut events = Vec::new();
        events.extend(
            Event::Plan { bundle_kind: "script".into(), modules: vec!["quiet".into()], completed: vec![] }
                .to_line(),
        );
        events.extend(
            Event::StreamOpened { stream: 2, kind: StreamKind::ModuleLog { module: "quiet".into() } }
                .to_line(),
        );
        events.extend(Event::ModuleStarted { index: 0, total: 1, name: "quiet".into() }.to_line());
        demux.handle(Incoming::Data { stream: 0, offset: 0, bytes: events }).unwrap();
        demux
            .handle(Incoming::StreamEnd {
                stream: 2,
                len: 0,
                sha256: crate::util::to_hex(&Sha256::digest(b"")),
                verified: true,
            })
            .unwrap();
        let log = demux.report().modules[0].log.clone().expect("report names the log");
        assert_eq!(std::fs::read(d.path().join(log)).unwrap(), b"");
    }

    #[test]
    fn a_successful_run_is_written_out_and_verified() {
        let d = tempfile::tempdir().unwrap();
        let mut demux = Demux::new(d.path(), "console.log", None).unwrap();
        let file = b"pretend this is a gzip tarball".repeat(100);
        let mut verified = false;
        let items = successful_run(&file);
        let last = items.len() - 1;
        for (i, item) in items.into_iter().enumerate() {
            if i == last {
                assert!(!demux.finished(), "over before the last log ended");
            }
            for n in demux.handle(item).unwrap() {
                verified |= matches!(n, Notice::Verified { .. });
            }
        }
        demux.save().unwrap();
        assert!(verified && demux.finished());
        assert_eq!(std::fs::read(d.path().join("sysroot.tar.gz")).unwrap(), file);
        assert!(!d.path().join("sysroot.tar.gz.partial").exists());
        let sha = crate::util::sha256_file(&d.path().join("sysroot.tar.gz")).unwrap().0;
        assert_eq!(
            std::fs::read_to_string(d.path().join("sysroot.tar.gz.sha256")).unwrap(),
            format!("{sha}  sysroot.tar.gz\n")
        );
        let bst = std::fs::read_to_string(d.path().join("sysroot.bst")).unwrap();
        assert!(
            bst.contains("kind: tar")
                && bst.contains(&format!("ref: {sha}"))
                && bst.contains("url: file:///")
        );
        assert_eq!(std::fs::read_to_string(d.path().join("logs/01-hello.log")).unwrap(), "building hello\n");
        assert_eq!(std::fs::read_to_string(d.path().join("logs/02-gcc.log")).unwrap(), "building gcc\n");
        assert!(std::fs::read_to_string(d.path().join("console.log")).unwrap().contains("Linux version"));
        let report: Report = serde_json::from_slice(&std::fs::read(d.path().join(REPORT)).unwrap()).unwrap();
        assert_eq!(report.outcome, "success");
        assert_eq!(report.modules.len(), 2);
        assert_eq!(report.modules[1].duration_ms, Some(9000));
        assert_eq!(report.kernel.as_deref(), Some("Linux 6.1"));
        assert_eq!(report.sysroot.unwrap().size, file.len() as u64);
    }

    #[test]
    fn a_tampered_file_stays_partial() {
        let d = tempfile::tempdir().unwrap();
        let mut demux = Demux::new(d.path(), "console.log", None).unwrap();
        let file = b"0123456789".repeat(10);
        let mut items = successful_run(&file);
        for item in items.iter_mut() {
            if let Incoming::Data { stream: 4, offset: 0, bytes } = item {
                bytes[0] ^= 1;
            }
        }
        let mut failed = false;
        for item in items {
            for n in demux.handle(item).unwrap() {
                failed |= matches!(n, Notice::VerificationFailed(_));
            }
        }
        assert!(failed && demux.finished());
        assert_eq!(demux.report().outcome, "transfer_failed");
        assert!(d.path().join("sysroot.tar.gz.partial").exists());
        assert!(!d.path().join("sysroot.tar.gz").exists());
    }

    #[test]
    fn state_survives_a_restart_midway() {
        let d = tempfile::tempdir().unwrap();
        let file = b"abcdefgh".repeat(50);
        let items = successful_run(&file);
        let mut demux = Demux::new(d.path(), "console.log", None).unwrap();
        for item in items[..7].iter().cloned() {
            demux.handle(item).unwrap();
        }
        demux.save().unwrap();
        drop(demux);
        let mut demux = Demux::resume(d.path(), "console.log").unwrap().unwrap();
        assert_eq!(demux.report().modules.len(), 2);
        for item in items[7..].iter().cloned() {
            demux.handle(item).unwrap();
        }
        assert!(demux.finished());
        assert_eq!(std::fs::read(d.path().join("sysroot.tar.gz")).unwrap(), file);
    }

    #[test]
    fn data_ahead_of_its_announcement_waits_for_it() {
        let d = tempfile::tempdir().unwrap();
        let mut demux = Demux::new(d.path(), "console.log", None).unwrap();
        demux.handle(Incoming::Data { stream: 5, offset: 0, bytes: b"early ".to_vec() }).unwrap();
        demux.handle(Incoming::Data { stream: 5, offset: 6, bytes: b"bytes\n".to_vec() }).unwrap();
        assert!(!d.path().join("agent.log").exists());
        let line = Event::StreamOpened { stream: 5, kind: StreamKind::AgentLog }.to_line();
        demux.handle(Incoming::Data { stream: 0, offset: 0, bytes: line }).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join("agent.log")).unwrap(), "early bytes\n");
    }

    #[test]
    fn out_of_order_data_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let mut demux = Demux::new(d.path(), "console.log", None).unwrap();
        assert!(demux.handle(Incoming::Data { stream: 0, offset: 5, bytes: vec![b'x'] }).is_err());
        // Unannounced streams wait for their announcement instead.
        assert!(demux.handle(Incoming::Data { stream: 9, offset: 0, bytes: vec![b'x'] }).is_ok());
    }
}
