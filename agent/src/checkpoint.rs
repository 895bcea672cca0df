//! Durable build progress, so a power cut or a reboot resumes the run instead of starting
//! over.
//!
//! One JSON file (`state.json` in the state folder) records which bundle is being built,
//! the modules finished (with duration and exit status), the module running when the
//! machine went down, the last failure and how many times a run was started. It is
//! replaced atomically (write a temporary file, fsync it, rename, fsync the folder), so
//! after a crash it holds either the old or the new state, never a mix. A file that is
//! unreadable anyway (bad disk, older format) is treated as absent, with a warning.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::events::ModuleOutcome;

pub const STATE_FILE: &str = "state.json";
const FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedModule {
    pub name: String,
    pub duration_ms: u64,
    pub outcome: ModuleOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningModule {
    pub index: usize,
    pub name: String,
    /// Seconds since the epoch (the board's clock, which may be wrong).
    pub started_unix: u64,
    /// Boot count when it was started.
    pub boot: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedModule {
    pub index: usize,
    pub name: String,
    pub outcome: ModuleOutcome,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    pub bundle_identity: String,
    pub modules: Vec<String>,
    /// How many runs were started for this bundle, this one included.
    pub boots: u32,
    /// Finished modules, a prefix of `modules`, in order.
    pub completed: Vec<CompletedModule>,
    /// The module that was running when this file was last written.
    #[serde(default)]
    pub current: Option<RunningModule>,
    /// The last module that failed, retried on the next run.
    #[serde(default)]
    pub failed: Option<FailedModule>,
}

/// Where a run picks up after an earlier boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    pub index: usize,
    pub module: String,
    /// Runs started before this one.
    pub previous_boots: u32,
    /// The module was interrupted (power cut, reboot) rather than failed.
    pub interrupted: bool,
}

#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    state: State,
    resume: Option<ResumePoint>,
    warnings: Vec<String>,
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Checkpoint {
    /// Load the state for this bundle from `state_dir` (a path from here, already mapped
    /// into the root), count one more boot and write it back. A state for another bundle,
    /// or an unreadable one, is replaced by a fresh state with a warning.
    pub fn open(state_dir: &Path, identity: &str, modules: &[String]) -> io::Result<Checkpoint> {
        let path = state_dir.join(STATE_FILE);
        let mut warnings = Vec::new();
        // Text and from_str, as every other JSON the agent reads: one JSON reader in the
        // binary, not two (from_slice would add ~4 KB). Invalid UTF-8 is an unreadable file.
        let old = match fs::read_to_string(&path) {
            Ok(text) => match serde_json::from_str::<State>(&text) {
                Ok(s) if s.format == FORMAT => Some(s),
                Ok(s) => {
                    warnings.push(format!(
                        "{}: state format {} is not understood: starting the build over",
                        path.display(),
                        s.format
                    ));
                    None
                }
                Err(e) => {
                    warnings.push(format!(
                        "{}: unreadable checkpoint ({e}): starting the build over",
                        path.display()
                    ));
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                warnings.push(format!(
                    "{}: cannot read the checkpoint ({e}): starting the build over",
                    path.display()
                ));
                None
            }
        };
        let old = old.filter(|s| {
            let same = s.bundle_identity == identity && s.modules == modules;
            if !same {
                warnings.push(format!(
                    "the bundle changed since the last run (identity {} → {}): starting the build over",
                    short(&s.bundle_identity),
                    short(identity)
                ));
            }
            same
        });
        let mut state = old.clone().unwrap_or_else(|| State {
            format: FORMAT,
            bundle_identity: identity.to_string(),
            modules: modules.to_vec(),
            boots: 0,
            completed: Vec::new(),
            current: None,
            failed: None,
        });
        // Only a prefix of the plan counts as done.
        let prefix = state
            .completed
            .iter()
            .zip(modules)
            .take_while(|(c, m)| &c.name == *m && c.outcome.success)
            .count();
        state.completed.truncate(prefix);
        let resume = old.as_ref().and_then(|o| {
            let started = !o.completed.is_empty() || o.current.is_some() || o.failed.is_some();
            (started && prefix < modules.len()).then(|| ResumePoint {
                index: prefix,
                module: modules[prefix].clone(),
                previous_boots: o.boots,
                interrupted: o.current.as_ref().is_some_and(|c| c.index == prefix),
            })
        });
        state.boots += 1;
        let mut cp = Checkpoint { path, state, resume, warnings };
        cp.save()?;
        Ok(cp)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn boots(&self) -> u32 {
        self.state.boots
    }

    /// Some when an earlier run got part of the way.
    pub fn resume_point(&self) -> Option<&ResumePoint> {
        self.resume.as_ref()
    }

    /// Index of the first module still to build (the plan's length when all are built).
    pub fn first_unfinished(&self) -> usize {
        self.state.completed.len()
    }

    pub fn completed_names(&self) -> Vec<String> {
        self.state.completed.iter().map(|c| c.name.clone()).collect()
    }

    pub fn is_complete(&self) -> bool {
        self.state.completed.len() == self.state.modules.len()
    }

    pub fn module_started(&mut self, index: usize) -> io::Result<()> {
        let name = self.state.modules.get(index).cloned().unwrap_or_default();
        self.state.current =
            Some(RunningModule { index, name, started_unix: now_unix(), boot: self.state.boots });
        self.save()
    }

    /// Record how a module ended: success extends the finished prefix, failure is kept so
    /// the next run retries this module.
    pub fn module_finished(
        &mut self,
        index: usize,
        outcome: &ModuleOutcome,
        duration: Duration,
    ) -> io::Result<()> {
        let name = self.state.modules.get(index).cloned().unwrap_or_default();
        let duration_ms = duration.as_millis() as u64;
        self.state.current = None;
        if outcome.success {
            // What the module installed must be on disk before the checkpoint says it is
            // done: after a power cut, a resumed run skips it and relies on its files
            // (ext4 delays writing file data, the checkpoint is fsynced at once).
            rustix::fs::sync();
            if index == self.state.completed.len() {
                self.state.completed.push(CompletedModule { name, duration_ms, outcome: outcome.clone() });
            }
            if self.state.failed.as_ref().is_some_and(|f| f.index == index) {
                self.state.failed = None;
            }
        } else {
            self.state.failed = Some(FailedModule { index, name, outcome: outcome.clone(), duration_ms });
        }
        self.save()
    }

    fn save(&mut self) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.state).map_err(io::Error::other)?;
        write_atomically(&self.path, &bytes).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot write the checkpoint {}: {e}", self.path.display()))
        })
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Replace `path` with `bytes` so that a crash leaves the old or the new content.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = dir.join(name);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> ModuleOutcome {
        ModuleOutcome { success: true, exit_code: Some(0), signal: None }
    }

    fn names() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    #[test]
    fn fresh_run_then_resume_after_interruption() {
        let t = tempfile::tempdir().unwrap();
        let mut cp = Checkpoint::open(t.path(), "id1", &names()).unwrap();
        assert!(cp.resume_point().is_none());
        assert_eq!(cp.boots(), 1);
        cp.module_started(0).unwrap();
        cp.module_finished(0, &ok(), Duration::from_millis(1500)).unwrap();
        cp.module_started(1).unwrap();
        drop(cp); // power cut while b runs

        let cp = Checkpoint::open(t.path(), "id1", &names()).unwrap();
        assert_eq!(cp.boots(), 2);
        assert_eq!(cp.first_unfinished(), 1);
        let r = cp.resume_point().unwrap();
        assert_eq!((r.index, r.module.as_str(), r.previous_boots, r.interrupted), (1, "b", 1, true));
        assert_eq!(cp.state().completed[0].duration_ms, 1500);
        assert!(cp.warnings().is_empty());
    }

    #[test]
    fn a_failed_module_is_retried_next_time() {
        let t = tempfile::tempdir().unwrap();
        let mut cp = Checkpoint::open(t.path(), "id1", &names()).unwrap();
        cp.module_started(0).unwrap();
        cp.module_finished(0, &ok(), Duration::ZERO).unwrap();
        cp.module_started(1).unwrap();
        let bad = ModuleOutcome { success: false, exit_code: Some(2), signal: None };
        cp.module_finished(1, &bad, Duration::ZERO).unwrap();
        let mut cp = Checkpoint::open(t.path(), "id1", &names()).unwrap();
        let r = cp.resume_point().unwrap().clone();
        assert_eq!((r.index, r.interrupted), (1, false));
        assert_eq!(cp.state().failed.as_ref().unwrap().outcome, bad);
        cp.module_finished(1, &ok(), Duration::ZERO).unwrap();
        cp.module_finished(2, &ok(), Duration::ZERO).unwrap();
        assert!(cp.is_complete());
        assert!(cp.state().failed.is_none());
        let cp = Checkpoint::open(t.path(), "id1", &names()).unwrap();
        assert!(cp.resume_point().is_none());
        assert!(cp.is_complete());
    }

    #[test]
    fn a_changed_bundle_starts_over_with_a_warning() {
        let t = tempfile::tempdir().unwrap();
        let mut cp = Checkpoint::open(t.path(), "id1", &names()).unwrap();
        cp.module_finished(0, &ok(), Duration::ZERO).unwrap();
        let cp = Checkpoint::open(t.path(), "id2", &names()).unwrap();
        assert_eq!(cp.first_unfinished(), 0);
        assert_eq!(cp.boots(), 1);
        assert!(cp.resume_point().is_none());
        assert!(cp.warnings()[0].contains("bundle changed"), "{:?}", cp.warnings());
    }

    #[test]
    fn torn_or_garbage_state_is_treated_as_absent() {
        let t = tempfile::tempdir().unwrap();
        let mut cp = Checkpoint::open(t.path(), "id1", &names()).unwrap();
        cp.module_finished(0, &ok(), Duration::ZERO).unwrap();
        let good = fs::read(t.path().join(STATE_FILE)).unwrap();
        for bad in [
            &good[..good.len() / 2],
            &b""[..],
            &[0xff, 0, 0x13][..],
            &br#"{"format":1}"#[..],
            &br#"{"format":9,"bundle_identity":"id1","modules":[],"boots":1,"completed":[]}"#[..],
        ] {
            fs::write(t.path().join(STATE_FILE), bad).unwrap();
            let cp = Checkpoint::open(t.path(), "id1", &names()).unwrap();
            assert_eq!(cp.first_unfinished(), 0);
            assert_eq!(cp.warnings().len(), 1, "{:?}", cp.warnings());
        }
    }

    #[test]
    fn completed_entries_not_matching_the_plan_are_dropped() {
        let t = tempfile::tempdir().unwrap();
        let mut cp = Checkpoint::open(t.path(), "id1", &names()).unwrap();
        cp.module_finished(0, &ok(), Duration::ZERO).unwrap();
        cp.module_finished(1, &ok(), Duration::ZERO).unwrap();
        let mut s = cp.state().clone();
        s.completed[0].name = "zzz".into();
        write_atomically(&t.path().join(STATE_FILE), &serde_json::to_vec(&s).unwrap()).unwrap();
        let cp = Checkpoint::open(t.path(), "id1", &names()).unwrap();
        assert_eq!(cp.first_unfinished(), 0);
    }
}
