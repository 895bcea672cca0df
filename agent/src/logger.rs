//! The agent's one logger behind the `log` facade: every line goes to the console
//! (stderr; the kernel's console as PID 1) with the agent's prefix, and to the agent-log
//! stream once the uplink is attached. Warnings and errors say so in the line.

use crate::wire::uplink::UplinkHandle;
use crate::wire::AGENT_LOG_STREAM;
use std::io::Write;
use std::sync::Mutex;

/// Every console line of the agent starts with this.
pub const PREFIX: &str = "stagehand-agent: ";

struct AgentLogger;

static LOGGER: AgentLogger = AgentLogger;
static UPLINK: Mutex<Option<UplinkHandle>> = Mutex::new(None);

/// Install the logger (once; later calls do nothing). Info and above are shown.
pub fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// From now on lines also go to the host, on the agent-log stream.
pub fn attach(handle: UplinkHandle) {
    *UPLINK.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
}

/// What a line of `level` starts with after the prefix: `warning: `, `error: ` or nothing.
pub fn level_prefix(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error: ",
        log::Level::Warn => "warning: ",
        _ => "",
    }
}

impl log::Log for AgentLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = level_prefix(record.level());
        // stderr is unbuffered: one write_fmt, no flush needed.
        let _ = writeln!(std::io::stderr().lock(), "{PREFIX}{level}{}", record.args());
        // Never block here (the panic hook logs too): try the lock, never wait for the window.
        if let Ok(guard) = UPLINK.try_lock() {
            if let Some(up) = guard.as_ref() {
                let _ = up.try_write(AGENT_LOG_STREAM, format!("{level}{}\n", record.args()).as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_show_in_the_line() {
        assert_eq!(level_prefix(log::Level::Info), "");
        assert_eq!(level_prefix(log::Level::Warn), "warning: ");
        assert_eq!(level_prefix(log::Level::Error), "error: ");
    }
}
