//! What the agent tells the host, as records of the events stream.
//!
//! The wire layer moves opaque, ordered byte streams; stream [`crate::wire::EVENTS_STREAM`]
//! carries these records as JSON lines (one `Event` per `\n`-terminated line). This module
//! is the contract between the agent (producer) and `stagehand collect` (consumer): add
//! fields with `#[serde(default)]` so older hosts and agents keep understanding each other.

use serde::{Deserialize, Serialize};

/// Identity of one agent run, sent in the wire-level hello frame (as JSON) and repeated
/// as the first event of the events stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Version of the agent binary (`CARGO_PKG_VERSION`).
    pub agent_version: String,
    /// Baserock architecture name the image was made for (`armv8l64`, ...).
    pub target: String,
    /// What the running kernel says of itself: `uname -srvm`.
    pub kernel: String,
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`), or a random id in a container.
    pub boot_id: String,
    /// sha256 (hex) of the effective configuration, so the host can tell which image booted.
    pub config_digest: String,
    /// `pid1` or `container`.
    pub mode: String,
    /// [`crate::CONTRACT_VERSION`] of the agent; 0 from agents older than the field.
    #[serde(default)]
    pub contract: u32,
}

/// What a stream other than the events stream carries; announced before its first byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StreamKind {
    /// The agent's own log (boot steps, warnings).
    AgentLog,
    /// Output (stdout and stderr interleaved) of one build module.
    ModuleLog { module: String },
    /// A file the host must store, e.g. the sysroot tarball.
    File {
        name: String,
        /// `none` or `gzip`.
        compression: String,
    },
}

/// The result of one build module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleOutcome {
    pub success: bool,
    /// Exit status when the module exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Signal number when the module was killed by one.
    #[serde(default)]
    pub signal: Option<i32>,
}

/// How the whole run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every module built, the tree was packed and the file sent.
    Success,
    /// A module failed; see `failed_module` and `log_tail`.
    BuildFailed,
    /// The agent itself could not go on (bad bundle, disk full, ...); see `message`.
    Error,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Hello(Hello),
    /// A stream is about to carry bytes of the given kind.
    StreamOpened {
        stream: u32,
        kind: StreamKind,
    },
    /// The bundle was read: its kind (`buildstream`, `morph`, `script`) and the ordered
    /// module list. `completed` are modules a checkpoint says are already built.
    Plan {
        bundle_kind: String,
        modules: Vec<String>,
        #[serde(default)]
        completed: Vec<String>,
    },
    /// A checkpoint from an earlier boot was found: the run goes on from `module`.
    Resumed {
        module: String,
        index: usize,
        previous_boots: u32,
    },
    /// `index` counts from 0; `total` is the length of the plan.
    ModuleStarted {
        index: usize,
        total: usize,
        name: String,
    },
    ModuleFinished {
        index: usize,
        name: String,
        outcome: ModuleOutcome,
        duration_ms: u64,
    },
    /// Packing the tree: bytes of tree read so far and bytes of archive produced.
    PackProgress {
        tree_bytes: u64,
        archive_bytes: u64,
    },
    /// The file on `stream` is complete: its exact length and sha256 (hex).
    FileComplete {
        stream: u32,
        name: String,
        size: u64,
        sha256: String,
    },
    /// Something the host should show but that does not stop the run.
    Warning {
        message: String,
    },
    /// The last event of a run.
    Finished {
        outcome: Outcome,
        #[serde(default)]
        message: String,
        #[serde(default)]
        failed_module: Option<String>,
        /// The last lines of the failed module's log.
        #[serde(default)]
        log_tail: Option<String>,
        /// What the agent does next: `poweroff`, `reboot`, `halt`, `shell` or `exit`.
        #[serde(default)]
        then: String,
    },
}

impl Event {
    /// One JSON line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("events always serialize");
        line.push(b'\n');
        line
    }

    /// Parse one line (with or without its newline).
    pub fn from_line(line: &[u8]) -> Result<Event, serde_json::Error> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        serde_json::from_slice(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_round_trips_as_a_line() {
        let ev = Event::ModuleFinished {
            index: 2,
            name: "gcc".into(),
            outcome: ModuleOutcome { success: false, exit_code: Some(2), signal: None },
            duration_ms: 1234,
        };
        let line = ev.to_line();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(Event::from_line(&line).unwrap(), ev);
    }

    #[test]
    fn unknown_fields_from_a_newer_agent_are_ignored() {
        let line = br#"{"event":"warning","message":"x","added_later":1}"#;
        assert_eq!(Event::from_line(line).unwrap(), Event::Warning { message: "x".into() });
    }
}
