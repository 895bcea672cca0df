//! Stop requests: the first of `SIGTERM`, `SIGINT`, `SIGPWR`, `SIGHUP` (taken by the
//! reaper thread) is kept, and every [`on_stop`] callback runs once.

use super::lock;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

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
    pub(super) fn from_signal(sig: libc::c_int) -> Option<StopReason> {
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

static STOP: AtomicU8 = AtomicU8::new(0);
static STOP_CALLBACKS: Mutex<Vec<StopCallback>> = Mutex::new(Vec::new());

pub(super) fn request_stop(reason: StopReason) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons_round_trip() {
        for r in [StopReason::Terminate, StopReason::Interrupt, StopReason::PowerFailure, StopReason::Hangup]
        {
            assert_eq!(StopReason::from_code(r.code()), Some(r));
        }
        assert_eq!(StopReason::from_signal(libc::SIGPWR), Some(StopReason::PowerFailure));
    }
}
