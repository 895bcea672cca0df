//! Runs a bundle's modules in order, one process group each, output through a pipe.
//!
//! Module output goes through a pipe, never a terminal (Morph builds crashed on a tty),
//! into `logs_dir/NN-name.log` and, live, to a [`BuildObserver`]. A failed module stops
//! the run. Progress is recorded in a [`Checkpoint`] before and after every module, so a
//! run cut by a power failure resumes at the module that was running.
//!
//! As PID 1 the agent also reaps orphans with `waitpid(-1)`; waiting for a module goes
//! through a [`Launcher`] (`pid1::spawn` by default) so that reaper can hand the module's status over instead of
//! swallowing it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::bundle::{in_root, Bundle, ExecStep, Module, Step};
use crate::checkpoint::Checkpoint;
use crate::events::ModuleOutcome;

/// PATH when neither the bundle nor the configuration sets one.
pub const DEFAULT_PATH: &str = "/usr/bin:/usr/sbin:/bin:/sbin:/tools/bin:/tools/sbin";
/// How much of a failed module's log is reported.
pub const TAIL_LINES: usize = 40;
pub const TAIL_BYTES: usize = 4096;

/// Told about every module as it runs. Called from the thread that called [`Runner::run`].
pub trait BuildObserver {
    fn module_started(&mut self, index: usize, total: usize, name: &str);
    /// Output of the module, as it comes (stdout and stderr interleaved).
    fn output(&mut self, index: usize, name: &str, bytes: &[u8]);
    fn module_finished(&mut self, index: usize, name: &str, outcome: &ModuleOutcome, duration: Duration);
    /// The run goes on from where an earlier boot stopped.
    fn resumed(&mut self, _index: usize, _name: &str, _previous_boots: u32) {}
    /// Something worth showing that does not stop the run.
    fn warning(&mut self, _message: &str) {}
}

/// A started module process: its pid and the way to wait for its exit status.
pub struct Launched {
    pub pid: u32,
    pub wait: Box<dyn FnOnce() -> io::Result<ExitStatus> + Send>,
}

/// Starts module processes. The default, [`Pid1Launcher`], goes through `pid1::spawn`, so
/// the orphan reaper leaves their exit status to the runner (before `pid1::install` it is
/// plain `Command::spawn`); tests plug in others.
pub trait Launcher: Send + Sync {
    fn launch(&self, cmd: &mut Command) -> io::Result<Launched>;
}

pub struct Pid1Launcher;

impl Launcher for Pid1Launcher {
    fn launch(&self, cmd: &mut Command) -> io::Result<Launched> {
        let mut child = crate::pid1::spawn(cmd)?;
        Ok(Launched { pid: child.id(), wait: Box::new(move || child.wait()) })
    }
}

/// Stops a run from another thread (SIGTERM handler, host request).
#[derive(Clone, Default)]
pub struct StopHandle {
    stopped: Arc<AtomicBool>,
    pgid: Arc<AtomicI32>,
}

impl StopHandle {
    /// Ask the run to stop: the running module's process group gets SIGTERM now, SIGKILL
    /// after the grace period, and no further module starts.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let pg = self.pgid.load(Ordering::SeqCst);
        if pg > 0 {
            // SAFETY: plain syscall on a process group we created.
            unsafe { libc::kill(-pg, libc::SIGTERM) };
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Where the target's root is from here (`/` on the board).
    pub root: PathBuf,
    /// Folder for module logs, inside the root.
    pub logs_dir: PathBuf,
    /// Variables from the configuration; they win over the bundle's.
    pub env: Vec<(String, String)>,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub stop_grace: Duration,
}

impl RunnerConfig {
    pub fn new(root: impl Into<PathBuf>, logs_dir: impl Into<PathBuf>) -> RunnerConfig {
        RunnerConfig {
            root: root.into(),
            logs_dir: logs_dir.into(),
            env: Vec::new(),
            stop_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleFailure {
    pub index: usize,
    pub name: String,
    pub outcome: ModuleOutcome,
    /// Last lines of the module's log (at most [`TAIL_LINES`] lines, [`TAIL_BYTES`] bytes).
    pub log_tail: String,
    /// The log file (from here).
    pub log_path: PathBuf,
    /// One line: which module, which step, how it ended.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunResult {
    /// Every module is built (`ran` of them in this run).
    Completed {
        ran: usize,
    },
    Failed(ModuleFailure),
    /// [`StopHandle::stop`] was called; `module` was interrupted (it re-runs next time).
    Stopped {
        index: usize,
        module: String,
    },
}

pub struct Runner {
    config: RunnerConfig,
    launcher: Arc<dyn Launcher>,
    stop: StopHandle,
}

enum StepEnd {
    Ok,
    Failed(ModuleOutcome, String),
    Stopped,
}

impl Runner {
    pub fn new(config: RunnerConfig) -> Runner {
        Runner { config, launcher: Arc::new(Pid1Launcher), stop: StopHandle::default() }
    }

    pub fn with_launcher(mut self, launcher: Arc<dyn Launcher>) -> Runner {
        self.launcher = launcher;
        self
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The environment modules run with: PATH default, then the bundle's exports, then
    /// the configuration's variables.
    pub fn environment(&self, bundle: &dyn Bundle) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![("PATH".into(), DEFAULT_PATH.into())];
        for (k, v) in bundle.env().iter().chain(&self.config.env) {
            env.retain(|(old, _)| old != k);
            env.push((k.clone(), v.clone()));
        }
        env
    }

    /// Log file of module `index` (from here).
    pub fn log_path(&self, index: usize, name: &str) -> PathBuf {
        in_root(&self.config.root, &self.config.logs_dir)
            .join(stagehand_proto::logs::module_log_name(index, name))
    }

    /// Run the modules the checkpoint says are not built yet, in order.
    pub fn run(
        &self,
        bundle: &dyn Bundle,
        checkpoint: &mut Checkpoint,
        observer: &mut dyn BuildObserver,
    ) -> io::Result<RunResult> {
        let modules = bundle.modules();
        let total = modules.len();
        let env = self.environment(bundle);
        let logs = in_root(&self.config.root, &self.config.logs_dir);
        std::fs::create_dir_all(&logs).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create the log folder {}: {e}", logs.display()))
        })?;
        let env_text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        if let Err(e) = std::fs::write(logs.join("environment"), env_text) {
            observer.warning(&format!("cannot write {}: {e}", logs.join("environment").display()));
        }
        if let Some(r) = checkpoint.resume_point() {
            observer.resumed(r.index, &r.module, r.previous_boots);
        }
        let start = checkpoint.first_unfinished();
        let mut ran = 0;
        for (index, module) in modules.iter().enumerate().skip(start) {
            if self.stop.is_stopped() {
                return Ok(RunResult::Stopped { index, module: module.name.clone() });
            }
            if let Err(e) = checkpoint.module_started(index) {
                observer.warning(&e.to_string());
            }
            observer.module_started(index, total, &module.name);
            let began = Instant::now();
            let log_path = self.log_path(index, &module.name);
            let mut log = File::create(&log_path).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create the module log {}: {e}", log_path.display()))
            })?;
            let mut tail = Tail::default();
            let end = self.run_module(index, module, &env, &mut log, &mut tail, observer);
            let _ = log.sync_all();
            let duration = began.elapsed();
            match end {
                StepEnd::Ok => {
                    let outcome = ModuleOutcome { success: true, exit_code: Some(0), signal: None };
                    if let Err(e) = checkpoint.module_finished(index, &outcome, duration) {
                        observer.warning(&e.to_string());
                    }
                    observer.module_finished(index, &module.name, &outcome, duration);
                    ran += 1;
                }
                StepEnd::Stopped => {
                    let outcome =
                        ModuleOutcome { success: false, exit_code: None, signal: Some(libc::SIGTERM) };
                    observer.module_finished(index, &module.name, &outcome, duration);
                    return Ok(RunResult::Stopped { index, module: module.name.clone() });
                }
                StepEnd::Failed(outcome, message) => {
                    if let Err(e) = checkpoint.module_finished(index, &outcome, duration) {
                        observer.warning(&e.to_string());
                    }
                    observer.module_finished(index, &module.name, &outcome, duration);
                    return Ok(RunResult::Failed(ModuleFailure {
                        index,
                        name: module.name.clone(),
                        outcome,
                        log_tail: tail.text(),
                        log_path,
                        message,
                    }));
                }
            }
        }
        Ok(RunResult::Completed { ran })
    }

    fn run_module(
        &self,
        index: usize,
        module: &Module,
        env: &[(String, String)],
        log: &mut File,
        tail: &mut Tail,
        observer: &mut dyn BuildObserver,
    ) -> StepEnd {
        let note = |text: String, log: &mut File, tail: &mut Tail, observer: &mut dyn BuildObserver| {
            let line = format!("stagehand: {text}\n");
            let _ = log.write_all(line.as_bytes());
            tail.push(line.as_bytes());
            observer.output(index, &module.name, line.as_bytes());
        };
        let failed = |msg: String| {
            StepEnd::Failed(ModuleOutcome { success: false, exit_code: None, signal: None }, msg)
        };
        for step in &module.steps {
            let end = match step {
                Step::Remove(p) => match std::fs::remove_dir_all(in_root(&self.config.root, p)) {
                    Ok(()) => StepEnd::Ok,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => StepEnd::Ok,
                    Err(e) => failed(format!("module {}: cannot remove {}: {e}", module.name, p.display())),
                },
                Step::MakeDir(p) => match std::fs::create_dir_all(in_root(&self.config.root, p)) {
                    Ok(()) => StepEnd::Ok,
                    Err(e) => failed(format!("module {}: cannot create {}: {e}", module.name, p.display())),
                },
                Step::Exec(exec) => self.exec(index, module, exec, env, log, tail, observer),
            };
            match end {
                StepEnd::Ok => {}
                StepEnd::Failed(outcome, msg) => {
                    note(msg.clone(), log, tail, observer);
                    return StepEnd::Failed(outcome, msg);
                }
                StepEnd::Stopped => {
                    note("stopped".into(), log, tail, observer);
                    return StepEnd::Stopped;
                }
            }
        }
        StepEnd::Ok
    }

    #[allow(clippy::too_many_arguments)]
    fn exec(
        &self,
        index: usize,
        module: &Module,
        step: &ExecStep,
        env: &[(String, String)],
        log: &mut File,
        tail: &mut Tail,
        observer: &mut dyn BuildObserver,
    ) -> StepEnd {
        let root = &self.config.root;
        if let Some(p) = &step.only_if_exists {
            if std::fs::symlink_metadata(in_root(root, p)).is_err() {
                return StepEnd::Ok;
            }
        }
        let Some(program) = step.argv.first() else {
            return StepEnd::Ok;
        };
        let fail = |code: Option<i32>, msg: String| {
            StepEnd::Failed(ModuleOutcome { success: false, exit_code: code, signal: None }, msg)
        };
        let (reader, writer) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
            Ok((r, w)) => (File::from(r), File::from(w)),
            Err(e) => return fail(None, format!("module {}: cannot create a pipe: {e}", module.name)),
        };
        let writer2 = match writer.try_clone() {
            Ok(w) => w,
            Err(e) => return fail(None, format!("module {}: cannot create a pipe: {e}", module.name)),
        };
        let mut cmd = Command::new(program);
        cmd.args(&step.argv[1..])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .envs(step.env.iter().map(|(k, v)| (k, v)))
            .stdin(empty_stdin())
            .stdout(writer)
            .stderr(writer2)
            .process_group(0);
        if root == Path::new("/") {
            cmd.current_dir(&step.cwd);
        } else {
            let root_c = cstring(root);
            let cwd_c = cstring(&step.cwd);
            // SAFETY: only async-signal-safe calls (chroot, chdir) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::chroot(root_c.as_ptr()) != 0 || libc::chdir(cwd_c.as_ptr()) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = match self.launcher.launch(&mut cmd) {
            Ok(c) => c,
            Err(e) => {
                drop(cmd);
                let msg = match e.raw_os_error() {
                    Some(libc::ENOEXEC) => format!(
                        "module {}: exec format error: the sysroot's binaries are for another architecture ({program})",
                        module.name
                    ),
                    Some(libc::ENOENT) => format!(
                        "module {}: {program} not found in the root (or the program its #! line names is missing; cwd {})",
                        module.name,
                        step.cwd.display()
                    ),
                    Some(libc::EACCES) => format!("module {}: {program}: permission denied (not executable?)", module.name),
                    _ => format!("module {}: cannot start {program}: {e}", module.name),
                };
                let code = if e.raw_os_error() == Some(libc::ENOENT) { 127 } else { 126 };
                return fail(Some(code), msg);
            }
        };
        // The Command holds the pipe's write ends: drop them so EOF can come.
        drop(cmd);
        let pgid = child.pid as i32;
        self.stop.pgid.store(pgid, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        let wait = child.wait;
        std::thread::spawn(move || {
            let _ = tx.send(wait());
        });

        let mut reader = reader;
        let fd = reader.as_raw_fd();
        let mut buf = vec![0u8; 64 * 1024];
        let mut status: Option<io::Result<ExitStatus>> = None;
        let mut exited_at: Option<Instant> = None;
        let mut term_sent: Option<Instant> = None;
        let mut killed = false;
        let mut eof = false;
        loop {
            if status.is_none() {
                if let Ok(s) = rx.try_recv() {
                    status = Some(s);
                    exited_at = Some(Instant::now());
                }
            }
            if status.is_some() && (eof || exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2))) {
                break;
            }
            if self.stop.is_stopped() && status.is_none() {
                match term_sent {
                    None => {
                        // SAFETY: signals to the module's own process group.
                        unsafe { libc::kill(-pgid, libc::SIGTERM) };
                        term_sent = Some(Instant::now());
                    }
                    Some(t) if !killed && t.elapsed() > self.config.stop_grace => {
                        unsafe { libc::kill(-pgid, libc::SIGKILL) };
                        killed = true;
                    }
                    _ => {}
                }
            }
            if eof {
                // Output is over but the process is not: wait for its status.
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(s) => {
                        status = Some(s);
                        exited_at = Some(Instant::now());
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                continue;
            }
            let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, 100) };
            if n <= 0 {
                continue;
            }
            match reader.read(&mut buf) {
                Ok(0) => eof = true,
                Ok(n) => {
                    let bytes = &buf[..n];
                    if let Err(e) = log.write_all(bytes) {
                        observer.warning(&format!("module {}: cannot write its log: {e}", module.name));
                    }
                    tail.push(bytes);
                    observer.output(index, &module.name, bytes);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => eof = true,
            }
        }
        self.stop.pgid.store(0, Ordering::SeqCst);
        let status = match status {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                return fail(None, format!("module {}: lost track of {program}: {e}", module.name))
            }
            None => return fail(None, format!("module {}: lost track of {program}", module.name)),
        };
        if term_sent.is_some() || self.stop.is_stopped() {
            return StepEnd::Stopped;
        }
        if status.success() || step.ignore_failure {
            return StepEnd::Ok;
        }
        let outcome = ModuleOutcome { success: false, exit_code: status.code(), signal: status.signal() };
        let how = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "failed".into(),
        };
        StepEnd::Failed(outcome, format!("module {}: {program} failed: {how}", module.name))
    }
}

fn cstring(p: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap_or_else(|_| c"/".to_owned())
}

/// The last bytes of a module's output.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > 2 * TAIL_BYTES {
            self.buf.drain(..self.buf.len() - TAIL_BYTES);
        }
    }

    fn text(&self) -> String {
        let b = &self.buf[self.buf.len().saturating_sub(TAIL_BYTES)..];
        let s = String::from_utf8_lossy(b);
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

/// Modules read nothing: `/dev/null`, or where it cannot be had (a fresh chroot's empty
/// `/dev`, a user namespace that may not make device nodes) a pipe that is already at EOF.
fn empty_stdin() -> Stdio {
    if let Ok(null) = std::fs::File::open("/dev/null") {
        return Stdio::from(null);
    }
    match rustix::pipe::pipe() {
        Ok((reader, _writer)) => Stdio::from(reader),
        Err(_) => Stdio::null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines_and_bytes() {
        let mut t = Tail::default();
        for i in 0..1000 {
            t.push(format!("line {i}\n").as_bytes());
        }
        let text = t.text();
        assert_eq!(text.lines().count(), TAIL_LINES);
        assert!(text.ends_with("line 999"));
        let mut t = Tail::default();
        t.push(&vec![b'x'; 10_000]);
        assert_eq!(t.text().len(), TAIL_BYTES);
    }
}
