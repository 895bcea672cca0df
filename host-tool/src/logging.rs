//! The host's one logger behind the `log` facade: `stagehand: ...` lines on stderr, printed
//! above the progress bars while they are drawn (never through them).

use std::io::Write;
use std::sync::Mutex;

struct HostLogger;

static LOGGER: HostLogger = HostLogger;
/// The bars being drawn, if any: lines are printed with them suspended.
static BARS: Mutex<Option<indicatif::MultiProgress>> = Mutex::new(None);

/// Install the logger (once). Info and above are shown; `STAGEHAND_LOG=debug` shows more.
pub fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        let level = match std::env::var("STAGEHAND_LOG").as_deref() {
            Ok("debug") => log::LevelFilter::Debug,
            Ok("trace") => log::LevelFilter::Trace,
            Ok("warn") => log::LevelFilter::Warn,
            _ => log::LevelFilter::Info,
        };
        log::set_max_level(level);
    }
}

/// While `bars` are drawn, log lines go above them.
pub fn set_bars(bars: Option<indicatif::MultiProgress>) {
    *BARS.lock().unwrap_or_else(|p| p.into_inner()) = bars;
}

/// The line as shown: `stagehand: `, then `warning: ` / `error: ` where it is one.
pub fn line(level: log::Level, message: &str) -> String {
    match level {
        log::Level::Error => format!("stagehand: error: {message}"),
        log::Level::Warn => format!("stagehand: warning: {message}"),
        _ => format!("stagehand: {message}"),
    }
}

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level() && metadata.target().starts_with("stagehand")
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = line(record.level(), &record.args().to_string());
        let print = || {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{text}");
        };
        match BARS.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(bars) => bars.suspend(print),
            None => print(),
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
    fn lines_carry_the_tool_name_once_and_their_level() {
        assert_eq!(line(log::Level::Info, "writing the Cpio image"), "stagehand: writing the Cpio image");
        assert_eq!(line(log::Level::Warn, "ambiguous"), "stagehand: warning: ambiguous");
        assert_eq!(line(log::Level::Error, "x"), "stagehand: error: x");
    }
}
