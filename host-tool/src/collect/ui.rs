//! Drawing progress: bars on a terminal, plain lines otherwise. It shows what it is given
//! and decides nothing.

use super::model::Status;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub trait Display {
    /// The current state (called often; implementations throttle their own drawing).
    fn status(&mut self, status: &Status);
    /// A line to show once (a module finished, a warning, the result).
    fn line(&mut self, text: &str);
    fn finish(&mut self);
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn human_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// One line describing `status`, used by the plain display and as the bar message.
pub fn describe(s: &Status) -> String {
    let mut parts = Vec::new();
    match (&s.module_index, &s.module_name) {
        (Some(i), Some(name)) => parts.push(format!("module {}/{} {name}", i + 1, s.total)),
        _ if s.total > 0 => parts.push(format!("{}/{} modules done", s.modules_done, s.total)),
        _ => parts.push("waiting for the agent".into()),
    }
    parts.push(format!("elapsed {}", human_secs(s.elapsed_s)));
    if let Some(eta) = s.eta_s {
        parts.push(format!("ETA {}", human_secs(eta)));
    }
    if let Some((tree, archive)) = s.packing {
        parts.push(format!("packing {} -> {}", human_bytes(tree), human_bytes(archive)));
    }
    if s.file_bytes > 0 {
        let of = s.file_size.map(|t| format!(" of {}", human_bytes(t))).unwrap_or_default();
        parts.push(format!(
            "received {}{of} at {}/s",
            human_bytes(s.file_bytes),
            human_bytes(s.rate_bps as u64)
        ));
    }
    parts.join(", ")
}

pub struct Plain {
    last: String,
    last_at: Option<std::time::Instant>,
}

impl Display for Plain {
    fn status(&mut self, status: &Status) {
        let text = describe(status);
        // Redraw when the module changes, else at most every 10 s.
        let module_changed = !self.last.starts_with(&text.split(", ").next().unwrap_or("").to_string());
        let due = self.last_at.is_none_or(|t| t.elapsed().as_secs() >= 10);
        if module_changed || due {
            println!("{text}");
            self.last = text;
            self.last_at = Some(std::time::Instant::now());
        }
    }
    fn line(&mut self, text: &str) {
        println!("{text}");
    }
    fn finish(&mut self) {}
}

pub struct Bars {
    multi: indicatif::MultiProgress,
    modules: ProgressBar,
    /// Shown once there are bytes to show.
    bytes: Option<ProgressBar>,
}

impl Display for Bars {
    fn status(&mut self, s: &Status) {
        self.modules.set_length(s.total.max(1) as u64);
        self.modules.set_position(s.modules_done as u64);
        self.modules.set_message(describe(&Status { file_bytes: 0, packing: None, ..s.clone() }));
        if s.file_bytes > 0 || s.packing.is_some() {
            let multi = &self.multi;
            let bytes = self.bytes.get_or_insert_with(|| {
                let style = ProgressStyle::with_template("{bar:30} {bytes} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
                multi.add(ProgressBar::new(0).with_style(style))
            });
            if let Some(total) = s.file_size {
                bytes.set_length(total);
            }
            bytes.set_position(s.file_bytes);
            bytes.set_message(
                describe(&Status {
                    module_index: None,
                    module_name: None,
                    total: 0,
                    eta_s: None,
                    ..s.clone()
                })
                .split(", ")
                .skip(2)
                .collect::<Vec<_>>()
                .join(", "),
            );
        }
    }
    fn line(&mut self, text: &str) {
        self.modules.println(text);
    }
    fn finish(&mut self) {
        crate::logging::set_bars(None);
        // Leave the bars as they last were: a run that stopped early must not look complete.
        self.modules.abandon();
        if let Some(b) = &self.bytes {
            b.abandon();
        }
    }
}

/// Bars when stdout is a terminal, plain lines otherwise.
pub fn for_stdout() -> Box<dyn Display> {
    if std::io::stdout().is_terminal() {
        let multi = indicatif::MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let style = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let modules = multi.add(ProgressBar::new(1).with_style(style));
        crate::logging::set_bars(Some(multi.clone()));
        Box::new(Bars { multi, modules, bytes: None })
    } else {
        Box::new(Plain { last: String::new(), last_at: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line() {
        let s = Status {
            module_index: Some(2),
            total: 10,
            module_name: Some("gcc".into()),
            modules_done: 2,
            elapsed_s: 75.0,
            eta_s: Some(3700.0),
            file_bytes: 0,
            file_size: None,
            rate_bps: 0.0,
            packing: None,
        };
        assert_eq!(describe(&s), "module 3/10 gcc, elapsed 1m15s, ETA 1h01m40s");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
