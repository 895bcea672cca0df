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

/// The line as it is shown: `warning: ` / `error: ` before the message where it is one.
pub fn line(level: log::Level, message: &str) -> String {
    match level {
        log::Level::Error => format!("error: {message}"),
        log::Level::Warn => format!("warning: {message}"),
        _ => message.to_string(),
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
        let text = line(record.level(), &record.args().to_string());
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{PREFIX}{text}");
        let _ = err.flush();
        // Never block here (the panic hook logs too): try the lock, never wait for the window.
        if let Ok(guard) = UPLINK.try_lock() {
            if let Some(up) = guard.as_ref() {
                let _ = up.try_write(AGENT_LOG_STREAM, format!("{text}\n").as_bytes());
            }
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_show_in_the_line() {
        assert_eq!(line(log::Level::Info, "module 1/3 gcc: started"), "module 1/3 gcc: started");
        assert_eq!(line(log::Level::Warn, "no /proc"), "warning: no /proc");
        assert_eq!(line(log::Level::Error, "fatal"), "error: fatal");
    }
}
