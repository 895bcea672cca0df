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
//!
//! # Layout
//! `reaper` (signal thread, `waitpid`, the spawn registry), `stop` (stop requests),
//! `end` (end actions), `guard` (panics), `procs` (the process table, stopping
//! the build's processes).

pub mod end;
pub mod guard;
pub mod procs;
pub mod reaper;
pub mod stop;

pub use end::{effective_end, end, EndContext};
pub use guard::{guard, install_panic_hook, set_panic_reporter};
pub use procs::{live_descendants, stop_all_processes, StopSummary};
pub use reaper::{install, orphans_reaped, output, spawn, status, Child};
pub use stop::{on_stop, stop_requested, StopReason};

use std::sync::{Mutex, MutexGuard};

/// A poisoned lock is still used: PID 1 goes on whatever panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
