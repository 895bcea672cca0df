//! PID 1 duties: reaping, signals, a clean end that never exits as PID 1, panics caught.
//!
//! # Reaping without stealing exit statuses
//! [`install`] blocks `SIGCHLD`, `SIGTERM`, `SIGINT`, `SIGPWR` and `SIGHUP` and starts one
//! thread that takes them with `sigtimedwait`. On `SIGCHLD` (and every second, in case
//! one was coalesced) it reaps with `waitpid(-1, WNOHANG)` until nothing is left.
//! Children the agent waits for are spawned with [`spawn`], which registers the pid in a
//! registry while holding the same lock the reaper holds around each `waitpid`: the
//! reaper publishes their status in the registry (and [`Child::wait`] picks it up) and
//! silently reaps everything else (orphans re-parented to PID 1). Holding the lock across
//! `Command::spawn` also keeps the reaper from taking a child that failed to `exec`
//! before the standard library reaps it itself.
//!
//! Consequence for callers: once [`install`] ran, never use `std::process::Child::wait`,
//! `Command::status` or `Command::output`; use [`spawn`] + [`Child::wait`], [`status`] or
//! [`output`]. Before [`install`] (unit tests) those fall back to the standard library.
//!
//! In container mode the agent becomes a child subreaper (`PR_SET_CHILD_SUBREAPER`) so
//! that the build's orphans are still its own to reap.
//!
//! # Signals
//! `SIGTERM`, `SIGINT` (Ctrl-Alt-Del once [`install`] disabled the kernel's own
//! handling) and `SIGPWR` mean "stop the build cleanly and run the end action":
//! [`stop_requested`] turns `Some` and every [`on_stop`] callback runs.

use crate::config::{EndAction, Mode};
use crate::sys::{RebootKind, Sys};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Why the agent was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `SIGTERM`.
    Terminate,
    /// `SIGINT`: Ctrl-C, or Ctrl-Alt-Del sent by the kernel to PID 1.
    Interrupt,
    /// `SIGPWR`: the power is failing (UPS, QEMU `system_powerdown` on some machines).
    PowerFailure,
    /// `SIGHUP`.
    Hangup,
}

impl StopReason {
    fn code(self) -> u8 {
        match self {
            StopReason::Terminate => 1,
            StopReason::Interrupt => 2,
            StopReason::PowerFailure => 3,
            StopReason::Hangup => 4,
        }
    }
    fn from_code(c: u8) -> Option<StopReason> {
        Some(match c {
            1 => StopReason::Terminate,
            2 => StopReason::Interrupt,
            3 => StopReason::PowerFailure,
            4 => StopReason::Hangup,
            _ => return None,
        })
    }
    fn from_signal(sig: libc::c_int) -> Option<StopReason> {
        Some(match sig {
            libc::SIGTERM => StopReason::Terminate,
            libc::SIGINT => StopReason::Interrupt,
            libc::SIGPWR => StopReason::PowerFailure,
            libc::SIGHUP => StopReason::Hangup,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Terminate => "SIGTERM",
            StopReason::Interrupt => "SIGINT",
            StopReason::PowerFailure => "SIGPWR",
            StopReason::Hangup => "SIGHUP",
        }
    }
}

type StopCallback = Box<dyn Fn(StopReason) + Send + Sync>;

#[derive(Default)]
struct Registry {
    /// Registered children: `None` while running, `Some(raw wait status)` once reaped.
    watched: HashMap<i32, Option<i32>>,
}

struct Reaper {
    registry: Mutex<Registry>,
    exited: Condvar,
    orphans_reaped: AtomicU64,
}

static REAPER: OnceLock<Arc<Reaper>> = OnceLock::new();
static STOP: AtomicU8 = AtomicU8::new(0);
static STOP_CALLBACKS: Mutex<Vec<StopCallback>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn handled_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGPWR, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Start PID 1 duties. Call it first thing in `main`, before any other thread exists
/// (threads inherit the blocked signal mask; one started earlier would take the signals).
/// As PID 1 it also disables Ctrl-Alt-Del so that the kernel sends `SIGINT` instead.
/// Returns the lines worth logging. Calling it twice does nothing the second time.
pub fn install(mode: Mode, sys: &dyn Sys) -> io::Result<Vec<String>> {
    let mut lines = Vec::new();
    if REAPER.get().is_some() {
        return Ok(lines);
    }
    let set = handled_signals();
    // SAFETY: `set` is initialised; the old mask is not wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // A handler as well as the mask: the kernel drops a signal sent to an init process
    // whose disposition is SIG_DFL unless the main thread blocks it, and a thread started
    // before `install` may not block it. The handler only records the signal.
    for sig in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGPWR, libc::SIGHUP] {
        // SAFETY: installing an async-signal-safe handler (one atomic operation).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = record_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    match mode {
        Mode::Pid1 => match sys.disable_ctrl_alt_del() {
            Ok(()) => lines.push("Ctrl-Alt-Del now sends SIGINT to the agent".to_string()),
            Err(e) => lines.push(format!("could not disable Ctrl-Alt-Del ({e}); it will reboot at once")),
        },
        _ => {
            // SAFETY: plain prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
                lines.push(format!(
                    "could not become a child subreaper ({}); orphans go to the real init",
                    io::Error::last_os_error()
                ));
            }
        }
    }
    let reaper = Arc::new(Reaper {
        registry: Mutex::default(),
        exited: Condvar::new(),
        orphans_reaped: AtomicU64::new(0),
    });
    if REAPER.set(reaper.clone()).is_err() {
        return Ok(lines);
    }
    std::thread::Builder::new().name("reaper".into()).spawn(move || signal_loop(&reaper))?;
    Ok(lines)
}

static SIGNALS_SEEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn record_signal(sig: libc::c_int) {
    if (0..32).contains(&sig) {
        SIGNALS_SEEN.fetch_or(1 << sig, Ordering::SeqCst);
    }
}

fn signal_loop(reaper: &Reaper) -> ! {
    let set = handled_signals();
    let timeout = libc::timespec { tv_sec: 1, tv_nsec: 0 };
    loop {
        // A panic here must not end reaping: catch it, report it through the hook, go on.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: `set` and `timeout` are valid; siginfo is not needed.
            let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
            if let Some(reason) = StopReason::from_signal(sig) {
                request_stop(reason);
            }
            let seen = SIGNALS_SEEN.swap(0, Ordering::SeqCst);
            for s in [libc::SIGTERM, libc::SIGINT, libc::SIGPWR, libc::SIGHUP] {
                if seen & (1 << s) != 0 {
                    if let Some(reason) = StopReason::from_signal(s) {
                        request_stop(reason);
                    }
                }
            }
            reap_all(reaper);
        }));
    }
}

fn reap_all(reaper: &Reaper) {
    loop {
        let mut reg = lock(&reaper.registry);
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        if let Some(slot) = reg.watched.get_mut(&pid) {
            *slot = Some(status);
            drop(reg);
            reaper.exited.notify_all();
        } else {
            reaper.orphans_reaped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn request_stop(reason: StopReason) {
    let first = STOP.compare_exchange(0, reason.code(), Ordering::SeqCst, Ordering::SeqCst).is_ok();
    if first {
        for cb in lock(&STOP_CALLBACKS).iter() {
            let _ = panic::catch_unwind(AssertUnwindSafe(|| cb(reason)));
        }
    }
}

/// The first stop signal received, if any.
pub fn stop_requested() -> Option<StopReason> {
    StopReason::from_code(STOP.load(Ordering::SeqCst))
}

/// Run `f` (on the reaper thread: keep it short, never block) when a stop signal comes.
pub fn on_stop(f: impl Fn(StopReason) + Send + Sync + 'static) {
    lock(&STOP_CALLBACKS).push(Box::new(f));
}

/// How many processes the reaper reaped that nobody waited for (orphans).
pub fn orphans_reaped() -> u64 {
    REAPER.get().map_or(0, |r| r.orphans_reaped.load(Ordering::Relaxed))
}

/// A child started with [`spawn`]. Its pipes are in `inner` as usual; wait with
/// [`Child::wait`], never with `inner.wait()`.
pub struct Child {
    pub inner: std::process::Child,
    pid: i32,
    status: Option<ExitStatus>,
}

/// Start `cmd` so that its exit status reaches [`Child::wait`] despite the reaper.
pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
    // The standard library does not clear the signal mask in the child: without this,
    // everything the agent runs would start with SIGTERM, SIGINT and SIGCHLD blocked.
    // SAFETY: sigemptyset and sigprocmask are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let Some(reaper) = REAPER.get() else {
        let inner = cmd.spawn()?;
        return Ok(Child { pid: inner.id() as i32, inner, status: None });
    };
    let mut reg = lock(&reaper.registry);
    let inner = cmd.spawn()?;
    let pid = inner.id() as i32;
    reg.watched.insert(pid, None);
    Ok(Child { inner, pid, status: None })
}

impl Child {
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Wait at most `timeout` (`None`: forever). `Ok(None)` when it is still running.
    pub fn wait_timeout(&mut self, timeout: Option<Duration>) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let Some(reaper) = REAPER.get() else {
            let Some(timeout) = timeout else { return self.inner.wait().map(Some) };
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(s) = self.inner.try_wait()? {
                    self.status = Some(s);
                    return Ok(Some(s));
                }
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut reg = lock(&reaper.registry);
        loop {
            if let Some(Some(raw)) = reg.watched.get(&self.pid) {
                let s = ExitStatus::from_raw(*raw);
                reg.watched.remove(&self.pid);
                self.status = Some(s);
                return Ok(Some(s));
            }
            match deadline {
                None => reg = reaper.exited.wait(reg).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    reg = reaper.exited.wait_timeout(reg, d - now).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        }
    }

    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.wait_timeout(None)?.ok_or_else(|| io::Error::other("wait returned without a status"))
    }

    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.wait_timeout(Some(Duration::ZERO))
    }

    /// Send `signal` to the child (or, with `group`, to its process group).
    pub fn signal(&self, signal: i32, group: bool) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        let target = if group { -self.pid } else { self.pid };
        // SAFETY: plain kill(2).
        if unsafe { libc::kill(target, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Forget the registration of a child nobody will wait for.
        if self.status.is_none() {
            if let Some(reaper) = REAPER.get() {
                lock(&reaper.registry).watched.remove(&self.pid);
            }
        }
    }
}

/// `Command::status` that cooperates with the reaper.
pub fn status(cmd: &mut Command) -> io::Result<ExitStatus> {
    spawn(cmd)?.wait()
}

/// `Command::output` that cooperates with the reaper.
pub fn output(cmd: &mut Command) -> io::Result<Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = spawn(cmd)?;
    let mut err_pipe = child.inner.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    });
    let mut stdout = Vec::new();
    if let Some(mut p) = child.inner.stdout.take() {
        p.read_to_end(&mut stdout)?;
    }
    let stderr = err_thread.join().unwrap_or_default();
    Ok(Output { status: child.wait()?, stdout, stderr })
}

/// What the end of a run needs to know.
pub struct EndContext<'a> {
    pub sys: &'a dyn Sys,
    pub mode: Mode,
    /// Container mode: the process exit status.
    pub exit_status: i32,
    /// For [`EndAction::Shell`].
    pub shell: PathBuf,
    /// The tty the shell runs on as PID 1.
    pub console: PathBuf,
}

/// What `end` will really do with `action` in `mode` (as written in the Finished event).
pub fn effective_end(action: EndAction, mode: Mode) -> EndAction {
    match (mode, action) {
        (Mode::Pid1, EndAction::Exit) => EndAction::Poweroff,
        (Mode::Pid1, a) => a,
        (_, EndAction::Shell) => EndAction::Shell,
        _ => EndAction::Exit,
    }
}

fn say(line: &str) {
    let mut err = io::stderr();
    let _ = writeln!(err, "stagehand-agent: {line}");
    let _ = err.flush();
}

/// End the run. As PID 1: sync, then poweroff / reboot / halt via `reboot(2)`, or a shell
/// on the console that is respawned forever; if `reboot(2)` fails, sleep forever (still
/// reaping). In container mode: exit with `exit_status` (after the shell, for `shell`).
/// Never returns.
pub fn end(ctx: &EndContext<'_>, action: EndAction) -> ! {
    let action = effective_end(action, ctx.mode);
    if ctx.mode != Mode::Pid1 {
        if action == EndAction::Shell {
            say(&format!("starting {} (exit it to end)", ctx.shell.display()));
            let _ = status(&mut Command::new(&ctx.shell));
        }
        std::process::exit(ctx.exit_status);
    }
    ctx.sys.sync();
    let kind = match action {
        EndAction::Poweroff | EndAction::Exit => RebootKind::PowerOff,
        EndAction::Reboot => RebootKind::Restart,
        EndAction::Halt => RebootKind::Halt,
        EndAction::Shell => shell_forever(&ctx.shell, &ctx.console),
    };
    say(kind.name());
    if let Err(e) = ctx.sys.reboot(kind) {
        say(&format!("reboot(2) for {} failed ({e}); sleeping forever", kind.name()));
    }
    sleep_forever()
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn shell_forever(shell: &Path, console: &Path) -> ! {
    let mut failures = 0u32;
    loop {
        match spawn_console_shell(shell, console).and_then(|mut c| c.wait()) {
            Ok(s) => {
                failures = 0;
                say(&format!("{} ended ({s}); starting a new one", shell.display()));
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                say(&format!("cannot run {} on {} ({e}); retrying", shell.display(), console.display()));
            }
        }
        std::thread::sleep(Duration::from_secs(if failures > 3 { 10 } else { 1 }));
    }
}

fn spawn_console_shell(shell: &Path, console: &Path) -> io::Result<Child> {
    let tty = std::fs::OpenOptions::new().read(true).write(true).open(console)?;
    let mut cmd = Command::new(shell);
    cmd.stdin(tty.try_clone()?).stdout(tty.try_clone()?).stderr(tty);
    // SAFETY: setsid and ioctl are async-signal-safe; a new session makes the console the
    // shell's controlling terminal so that Ctrl-C and job control work.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY as _, 1);
            Ok(())
        });
    }
    spawn(&mut cmd)
}

type PanicReporter = Box<dyn Fn(&str) + Send + Sync>;
static PANIC_REPORTER: Mutex<Option<PanicReporter>> = Mutex::new(None);

/// Report panics on stderr (the console as PID 1) and through `reporter` (e.g. a warning
/// event on the channel). The reporter runs inside the panic hook: it must not block on a
/// lock the panicking code might hold; queue, or `try_lock`.
pub fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let msg = panic_text(info.payload());
        let loc = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let line = format!("internal error (panic{loc}): {msg}");
        say(&line);
        if let Ok(guard) = PANIC_REPORTER.try_lock() {
            if let Some(r) = guard.as_ref() {
                r(&line);
            }
        }
    }));
}

/// Set (or replace) the callback the panic hook calls.
pub fn set_panic_reporter(reporter: impl Fn(&str) + Send + Sync + 'static) {
    *lock(&PANIC_REPORTER) = Some(Box::new(reporter));
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Run `f`, turning a panic into `Err(message)` so that the caller ends the run with
/// `on_failure` instead of letting PID 1 die (a kernel panic).
pub fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|p| format!("internal error: {}", panic_text(p.as_ref())))
}

/// `pid -> (ppid, state)` from `/proc/<pid>/stat`.
fn process_table() -> HashMap<i32, (i32, char)> {
    let mut table = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return table };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid ..."; comm may contain anything, so cut at the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        table.insert(pid, (ppid, state));
    }
    table
}

/// Live (non-zombie) descendants of this process.
pub fn live_descendants() -> Vec<i32> {
    let me = std::process::id() as i32;
    let table = process_table();
    let mut out = Vec::new();
    let mut frontier = vec![me];
    while let Some(p) = frontier.pop() {
        for (&pid, &(ppid, state)) in &table {
            if ppid == p && pid != me {
                frontier.push(pid);
                if state != 'Z' && state != 'X' {
                    out.push(pid);
                }
            }
        }
    }
    out.sort_unstable();
    out
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StopSummary {
    /// Processes that got `SIGTERM`.
    pub terminated: usize,
    /// Processes still alive after the grace period, sent `SIGKILL`.
    pub killed: usize,
}

fn reap_unwatched() {
    match REAPER.get() {
        Some(r) => reap_all(r),
        None => {
            let mut st = 0;
            // SAFETY: waitpid with a valid status pointer.
            while unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) } > 0 {}
        }
    }
}

/// Before packing: `SIGTERM` every other process (as PID 1 `kill(-1)`, otherwise this
/// process's descendants), wait up to `grace`, `SIGKILL` what is left, reap.
pub fn stop_all_processes(mode: Mode, grace: Duration) -> StopSummary {
    let mut summary = StopSummary::default();
    let first = live_descendants();
    summary.terminated = first.len();
    if first.is_empty() {
        return summary;
    }
    // SAFETY: plain kill(2) calls.
    unsafe {
        if mode == Mode::Pid1 {
            libc::kill(-1, libc::SIGTERM);
        } else {
            for pid in &first {
                libc::kill(*pid, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        reap_unwatched();
        if live_descendants().is_empty() {
            return summary;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let rest = live_descendants();
    summary.killed = rest.len();
    // SAFETY: plain kill(2) calls.
    unsafe {
        if mode == Mode::Pid1 {
            libc::kill(-1, libc::SIGKILL);
        } else {
            for pid in &rest {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && !live_descendants().is_empty() {
        reap_unwatched();
        std::thread::sleep(Duration::from_millis(20));
    }
    reap_unwatched();
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_actions_map_to_what_each_mode_can_do() {
        assert_eq!(effective_end(EndAction::Exit, Mode::Pid1), EndAction::Poweroff);
        assert_eq!(effective_end(EndAction::Shell, Mode::Pid1), EndAction::Shell);
        assert_eq!(effective_end(EndAction::Reboot, Mode::Container), EndAction::Exit);
        assert_eq!(effective_end(EndAction::Shell, Mode::Container), EndAction::Shell);
    }

    #[test]
    fn guard_turns_a_panic_into_an_error() {
        assert_eq!(guard(|| 5), Ok(5));
        let e = guard(|| -> u32 { panic!("bundle parser exploded") }).unwrap_err();
        assert!(e.contains("bundle parser exploded"), "{e}");
        let e = guard(|| -> u32 { std::panic::panic_any(7u8) }).unwrap_err();
        assert!(e.contains("unknown panic"));
    }

    #[test]
    fn without_the_reaper_spawn_and_output_behave_like_std() {
        // REAPER is not installed in the unit-test process.
        let out = output(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"])).unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        let mut c = spawn(Command::new("sleep").arg("5")).unwrap();
        assert_eq!(c.wait_timeout(Some(Duration::from_millis(50))).unwrap(), None);
        c.signal(libc::SIGKILL, false).unwrap();
        assert_eq!(c.wait().unwrap().signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn stop_reasons_round_trip() {
        for r in [StopReason::Terminate, StopReason::Interrupt, StopReason::PowerFailure, StopReason::Hangup]
        {
            assert_eq!(StopReason::from_code(r.code()), Some(r));
        }
        assert_eq!(StopReason::from_signal(libc::SIGPWR), Some(StopReason::PowerFailure));
    }
}
