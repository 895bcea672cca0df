//! Panics never end PID 1: the hook reports them, [`guard`] turns one into an error the
//! run ends with (its on-failure action).

use super::lock;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;

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
        log::error!("{line}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_turns_a_panic_into_an_error() {
        assert_eq!(guard(|| 5), Ok(5));
        let e = guard(|| -> u32 { panic!("bundle parser exploded") }).unwrap_err();
        assert!(e.contains("bundle parser exploded"), "{e}");
        let e = guard(|| -> u32 { std::panic::panic_any(7u8) }).unwrap_err();
        assert!(e.contains("unknown panic"));
    }
}
