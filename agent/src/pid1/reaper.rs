//! The reaper: one thread takes the handled signals with `sigtimedwait` and reaps with
//! `waitpid(-1)`; children started with [`spawn`] are registered first, so their status
//! reaches [`Child::wait`] and is never stolen. See the module documentation of `pid1`.

use super::lock;
use super::stop::{request_stop, StopReason};
use crate::config::Mode;
use crate::sys::Sys;
use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::panic::{self, AssertUnwindSafe};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

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
    // The one place the agent calls std's spawn and wait (see agent/clippy.toml).
    let Some(reaper) = REAPER.get() else {
        #[allow(clippy::disallowed_methods)]
        let inner = cmd.spawn()?;
        return Ok(Child { pid: inner.id() as i32, inner, status: None });
    };
    let mut reg = lock(&reaper.registry);
    #[allow(clippy::disallowed_methods)]
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
            #[allow(clippy::disallowed_methods)]
            let Some(timeout) = timeout
            else {
                return self.inner.wait().map(Some);
            };
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

/// Reap whatever has exited and nobody waits for.
pub(super) fn reap_unwatched() {
    match REAPER.get() {
        Some(r) => reap_all(r),
        None => {
            let mut st = 0;
            // SAFETY: waitpid with a valid status pointer.
            while unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) } > 0 {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
