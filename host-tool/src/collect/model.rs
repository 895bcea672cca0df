//! What is known about a run: the model behind report.json, the progress display and
//! `stagehand report`. Fed with events; decides status, ETA and outcome.

use serde::{Deserialize, Serialize};
use stagehand_proto::events::{Event, Outcome};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModuleRecord {
    pub index: usize,
    pub name: String,
    /// `pending`, `running`, `success`, `failed` or `skipped` (done before a resume).
    pub status: String,
    /// Seconds from the start of collection when the module started, as seen by the host.
    #[serde(default)]
    pub start: Option<f64>,
    /// How long it ran, as measured by the agent.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    /// Log file under the output folder, e.g. `logs/03-gcc.log`.
    #[serde(default)]
    pub log: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResumeRecord {
    pub module: String,
    pub index: usize,
    pub previous_boots: u32,
    /// Seconds from the start of collection.
    pub at: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SysrootRecord {
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub agent_version: Option<String>,
    pub target: Option<String>,
    pub kernel: Option<String>,
    pub mode: Option<String>,
    #[serde(default)]
    pub boot_ids: Vec<String>,
    pub bundle_kind: Option<String>,
    #[serde(default)]
    pub modules: Vec<ModuleRecord>,
    /// Checkpoint resumes reported by the agent (after a reboot or power cut).
    #[serde(default)]
    pub resumes: Vec<ResumeRecord>,
    /// Times the link dropped and a new session or connection began.
    #[serde(default)]
    pub link_resumes: u32,
    #[serde(default)]
    pub warnings: Vec<String>,
    pub sysroot: Option<SysrootRecord>,
    /// `running`, `success`, `build_failed`, `error` or `transfer_failed`.
    pub outcome: String,
    #[serde(default)]
    pub message: String,
    pub failed_module: Option<String>,
    pub log_tail: Option<String>,
    /// Unix seconds when collection started, and seconds from then to the end.
    pub started_at_unix: u64,
    pub elapsed_s: f64,
}

/// What the progress display shows; computed here so the display decides nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    pub module_index: Option<usize>,
    pub total: usize,
    pub module_name: Option<String>,
    pub modules_done: usize,
    pub elapsed_s: f64,
    pub eta_s: Option<f64>,
    pub file_bytes: u64,
    pub file_size: Option<u64>,
    pub rate_bps: f64,
    pub packing: Option<(u64, u64)>,
}

impl Report {
    pub fn new(started_at_unix: u64) -> Report {
        Report { outcome: "running".into(), started_at_unix, ..Default::default() }
    }

    pub fn is_finished(&self) -> bool {
        self.outcome != "running"
    }

    /// The run reached an end that a rerun cannot change (a transfer failure can be
    /// resumed; these cannot).
    pub fn is_final(&self) -> bool {
        matches!(self.outcome.as_str(), "success" | "build_failed" | "error")
    }

    fn module_mut(&mut self, index: usize, name: &str) -> &mut ModuleRecord {
        if let Some(pos) = self.modules.iter().position(|m| m.index == index && m.name == name) {
            return &mut self.modules[pos];
        }
        self.modules.push(ModuleRecord {
            index,
            name: name.into(),
            status: "pending".into(),
            ..Default::default()
        });
        self.modules.sort_by_key(|m| m.index);
        let pos = self.modules.iter().position(|m| m.index == index && m.name == name).expect("just added");
        &mut self.modules[pos]
    }

    /// Apply one event seen `now_s` seconds after collection started.
    pub fn apply(&mut self, event: &Event, now_s: f64) {
        self.elapsed_s = now_s;
        match event {
            Event::Hello(h) => {
                self.agent_version = Some(h.agent_version.clone());
                self.target = Some(h.target.clone());
                self.kernel = Some(h.kernel.clone());
                self.mode = Some(h.mode.clone());
                if let Some(m) = stagehand_proto::contract_mismatch(h.contract) {
                    if !self.warnings.contains(&m) {
                        self.warnings.push(m);
                    }
                }
                if !self.boot_ids.contains(&h.boot_id) {
                    self.boot_ids.push(h.boot_id.clone());
                }
            }
            Event::Plan { bundle_kind, modules, completed } => {
                self.bundle_kind = Some(bundle_kind.clone());
                for (i, name) in modules.iter().enumerate() {
                    let done = completed.contains(name);
                    let m = self.module_mut(i, name);
                    if done && m.status == "pending" {
                        m.status = "skipped".into();
                    }
                }
            }
            Event::Resumed { module, index, previous_boots } => {
                self.resumes.push(ResumeRecord {
                    module: module.clone(),
                    index: *index,
                    previous_boots: *previous_boots,
                    at: now_s,
                });
            }
            Event::ModuleStarted { index, name, .. } => {
                let m = self.module_mut(*index, name);
                m.status = "running".into();
                m.start = Some(now_s);
            }
            Event::ModuleFinished { index, name, outcome, duration_ms } => {
                let m = self.module_mut(*index, name);
                m.status = if outcome.success { "success" } else { "failed" }.into();
                m.duration_ms = Some(*duration_ms);
                m.exit_code = outcome.exit_code;
                m.signal = outcome.signal;
                if m.start.is_none() {
                    m.start = Some((now_s - *duration_ms as f64 / 1000.0).max(0.0));
                }
            }
            Event::Warning { message } => self.warnings.push(message.clone()),
            Event::Finished { outcome, message, failed_module, log_tail, .. } => {
                self.outcome = match outcome {
                    Outcome::Success => "success",
                    Outcome::BuildFailed => "build_failed",
                    Outcome::Error => "error",
                }
                .into();
                self.message = message.clone();
                self.failed_module = failed_module.clone();
                self.log_tail = log_tail.clone();
            }
            Event::StreamOpened { .. } | Event::PackProgress { .. } | Event::FileComplete { .. } => {}
        }
    }

    /// Remaining time: the mean duration of the modules finished so far times those left.
    pub fn eta_s(&self) -> Option<f64> {
        let durations: Vec<u64> =
            self.modules.iter().filter(|m| m.status == "success").filter_map(|m| m.duration_ms).collect();
        if durations.is_empty() {
            return None;
        }
        let mean = durations.iter().sum::<u64>() as f64 / durations.len() as f64 / 1000.0;
        let left = self.modules.iter().filter(|m| m.status == "pending" || m.status == "running").count();
        Some(mean * left as f64)
    }

    pub fn status(
        &self,
        file_bytes: u64,
        file_size: Option<u64>,
        rate_bps: f64,
        packing: Option<(u64, u64)>,
    ) -> Status {
        let running = self.modules.iter().rev().find(|m| m.status == "running");
        Status {
            module_index: running.map(|m| m.index),
            module_name: running.map(|m| m.name.clone()),
            total: self.modules.len(),
            modules_done: self
                .modules
                .iter()
                .filter(|m| m.status == "success" || m.status == "skipped")
                .count(),
            elapsed_s: self.elapsed_s,
            eta_s: self.eta_s(),
            file_bytes,
            file_size,
            rate_bps,
            packing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagehand_proto::events::ModuleOutcome;

    #[test]
    fn eta_from_finished_modules() {
        let mut r = Report::new(0);
        r.apply(
            &Event::Plan {
                bundle_kind: "buildstream".into(),
                modules: vec!["a".into(), "b".into(), "c".into()],
                completed: vec![],
            },
            0.0,
        );
        assert_eq!(r.eta_s(), None);
        r.apply(&Event::ModuleStarted { index: 0, total: 3, name: "a".into() }, 0.0);
        r.apply(
            &Event::ModuleFinished {
                index: 0,
                name: "a".into(),
                outcome: ModuleOutcome { success: true, exit_code: Some(0), signal: None },
                duration_ms: 10_000,
            },
            10.0,
        );
        r.apply(&Event::ModuleStarted { index: 1, total: 3, name: "b".into() }, 10.0);
        assert_eq!(r.eta_s(), Some(20.0));
        let s = r.status(0, None, 0.0, None);
        assert_eq!(s.module_index, Some(1));
        assert_eq!(s.modules_done, 1);
        assert_eq!(s.total, 3);
    }

    #[test]
    fn completed_modules_are_skipped() {
        let mut r = Report::new(0);
        r.apply(
            &Event::Plan {
                bundle_kind: "morph".into(),
                modules: vec!["a".into(), "b".into()],
                completed: vec!["a".into()],
            },
            0.0,
        );
        assert_eq!(r.modules[0].status, "skipped");
        assert_eq!(r.modules[1].status, "pending");
    }

    #[test]
    fn an_agent_of_another_contract_is_collected_with_a_warning() {
        let hello = |contract| {
            Event::from_line(
                format!(r#"{{"event":"hello","agent_version":"0.0.9","target":"x86_64","kernel":"k","boot_id":"b","config_digest":"c","mode":"pid1"{contract}}}"#)
                    .as_bytes(),
            )
            .unwrap()
        };
        let mut r = Report::new(0);
        r.apply(&hello(format!(r#","contract":{}"#, stagehand_proto::CONTRACT_VERSION)), 0.0);
        assert!(r.warnings.is_empty());
        // an agent older than the field: it still parses, and the report says so once
        r.apply(&hello(String::new()), 0.0);
        r.apply(&hello(String::new()), 1.0);
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].contains("rebuild the image"), "{:?}", r.warnings);
        assert_eq!(r.agent_version.as_deref(), Some("0.0.9"));
    }
}
