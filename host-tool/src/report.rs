//! `stagehand report DIR`: a person's summary of a collected run, and DIR/report.html.

use crate::collect::model::{ModuleRecord, Report};
use crate::collect::ui::{human_bytes, human_secs};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `stagehand report DIR`
#[derive(clap::Args, Debug)]
pub struct ReportCmd {
    /// Output folder of `stagehand collect` or `stagehand qemu`.
    pub dir: PathBuf,
}

impl ReportCmd {
    pub fn run(self) -> Result<()> {
        let path = self.dir.join("report.json");
        let bytes = std::fs::read(&path).with_context(|| {
            format!("{} has no report.json (run `stagehand collect` first)", self.dir.display())
        })?;
        let report: Report = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a stagehand report", path.display()))?;
        print!("{}", summary(&report, &self.dir));
        let html = self.dir.join("report.html");
        std::fs::write(&html, html_report(&report))
            .with_context(|| format!("cannot write {}", html.display()))?;
        println!("timeline: {}", html.display());
        Ok(())
    }
}

fn dur(m: &ModuleRecord) -> String {
    m.duration_ms.map(|d| human_secs(d as f64 / 1000.0)).unwrap_or_else(|| "-".into())
}

fn log_tail(dir: &Path, m: &ModuleRecord, lines: usize) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(m.log.as_ref()?)).ok()?;
    let all: Vec<&str> = text.lines().collect();
    Some(all[all.len().saturating_sub(lines)..].join("\n"))
}

pub fn summary(r: &Report, dir: &Path) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "run: {} on {} (agent {}, kernel {})",
        r.outcome,
        r.target.as_deref().unwrap_or("?"),
        r.agent_version.as_deref().unwrap_or("?"),
        r.kernel.as_deref().unwrap_or("?")
    );
    let _ = writeln!(
        s,
        "elapsed: {}, boots: {}, checkpoint resumes: {}, link resumes: {}",
        human_secs(r.elapsed_s),
        r.boot_ids.len(),
        r.resumes.len(),
        r.link_resumes
    );
    let width = r.modules.iter().map(|m| m.name.len()).max().unwrap_or(6).max(6);
    let _ = writeln!(s, "\n  #  {:width$}  {:8}  {:>9}", "module", "status", "duration");
    for m in &r.modules {
        let _ = writeln!(s, "{:>3}  {:width$}  {:8}  {:>9}", m.index + 1, m.name, m.status, dur(m));
    }
    let mut timed: Vec<&ModuleRecord> = r.modules.iter().filter(|m| m.duration_ms.is_some()).collect();
    timed.sort_by_key(|m| std::cmp::Reverse(m.duration_ms));
    if !timed.is_empty() {
        let total: u64 = timed.iter().filter_map(|m| m.duration_ms).sum();
        let _ = writeln!(s, "\nslowest:");
        for m in timed.iter().take(5) {
            let d = m.duration_ms.unwrap_or(0);
            let _ = writeln!(
                s,
                "  {:width$}  {:>9}  {:>3}%",
                m.name,
                dur(m),
                (d * 100).checked_div(total).unwrap_or(0)
            );
        }
    }
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    if let Some(f) = &r.failed_module {
        let _ = writeln!(
            s,
            "\nFAILED: module {f}{}",
            if r.message.is_empty() { String::new() } else { format!(" ({})", r.message) }
        );
        let tail = r
            .modules
            .iter()
            .find(|m| &m.name == f)
            .and_then(|m| log_tail(dir, m, 20))
            .or_else(|| r.log_tail.clone());
        if let Some(t) = tail {
            let _ = writeln!(s, "last lines of its log:\n{t}");
        }
    } else if !r.message.is_empty() {
        let _ = writeln!(s, "\n{}", r.message);
    }
    if let Some(sr) = &r.sysroot {
        let _ = writeln!(
            s,
            "\nsysroot: {} ({}, sha256 {})",
            dir.join(&sr.file).display(),
            human_bytes(sr.size),
            sr.sha256
        );
    }
    s
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A self-contained page: run facts and one bar per module on a common time axis.
pub fn html_report(r: &Report) -> String {
    let bars: Vec<(&ModuleRecord, f64, f64)> =
        r.modules.iter().filter_map(|m| Some((m, m.start?, m.duration_ms? as f64 / 1000.0))).collect();
    let span = bars.iter().map(|(_, s, d)| s + d).fold(r.elapsed_s, f64::max).max(1.0);
    let row_h = 22.0;
    let label_w = 180.0;
    let plot_w = 640.0;
    let mut svg = String::new();
    let height = row_h * (r.modules.len().max(1) as f64) + 30.0;
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="12">"#,
        label_w + plot_w + 80.0
    );
    for (i, m) in r.modules.iter().enumerate() {
        let y = i as f64 * row_h + 4.0;
        let _ = write!(
            svg,
            r#"<text x="0" y="{}">{}</text>"#,
            y + 14.0,
            esc(&format!("{:>2} {}", m.index + 1, m.name))
        );
        if let Some((_, start, d)) = bars.iter().find(|(b, _, _)| std::ptr::eq(*b, m)) {
            let x = label_w + start / span * plot_w;
            let w = (d / span * plot_w).max(1.0);
            let color = match m.status.as_str() {
                "success" => "#3a7",
                "failed" => "#c33",
                _ => "#999",
            };
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="{}" fill="{color}"><title>{}</title></rect>"#,
                row_h - 6.0,
                esc(&format!("{}: {}", m.name, dur(m)))
            );
            let _ = write!(svg, r#"<text x="{:.1}" y="{}">{}</text>"#, x + w + 4.0, y + 14.0, esc(&dur(m)));
        } else {
            let _ = write!(
                svg,
                r##"<text x="{label_w}" y="{}" fill="#999">{}</text>"##,
                y + 14.0,
                esc(&m.status)
            );
        }
    }
    let axis_y = height - 8.0;
    let _ = write!(
        svg,
        r#"<text x="{label_w}" y="{axis_y}">0</text><text x="{}" y="{axis_y}" text-anchor="end">{}</text></svg>"#,
        label_w + plot_w,
        esc(&human_secs(span))
    );

    let mut rows = String::new();
    for m in &r.modules {
        let _ = write!(
            rows,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.status),
            m.index + 1,
            esc(&m.name),
            esc(&m.status),
            esc(&dur(m)),
            esc(m.log.as_deref().unwrap_or(""))
        );
    }
    let failure = match (&r.failed_module, &r.log_tail) {
        (Some(f), tail) => {
            format!("<h2>Failed: {}</h2><pre>{}</pre>", esc(f), esc(tail.as_deref().unwrap_or("")))
        }
        _ => String::new(),
    };
    let sysroot = r
        .sysroot
        .as_ref()
        .map(|s| {
            format!(
                "<p>Sysroot: <code>{}</code>, {}, sha256 <code>{}</code></p>",
                esc(&s.file),
                esc(&human_bytes(s.size)),
                esc(&s.sha256)
            )
        })
        .unwrap_or_default();
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>stagehand run: {outcome}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}td,th{{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}}tr.failed{{background:#fdd}}pre{{background:#f4f4f4;padding:1em;overflow:auto}}.outcome-success{{color:#3a7}}.outcome-build_failed,.outcome-error,.outcome-transfer_failed{{color:#c33}}</style>
</head><body>
<h1>Run: <span class="outcome-{outcome}">{outcome}</span></h1>
<p>Target <b>{target}</b>, agent {agent}, kernel {kernel}; elapsed {elapsed}; {boots} boot(s), {resumes} checkpoint resume(s), {links} link resume(s).</p>
{sysroot}
<h2>Timeline</h2>
{svg}
<h2>Modules</h2>
<table><tr><th>#</th><th>module</th><th>status</th><th>duration</th><th>log</th></tr>{rows}</table>
{failure}
</body></html>
"#,
        outcome = esc(&r.outcome),
        target = esc(r.target.as_deref().unwrap_or("?")),
        agent = esc(r.agent_version.as_deref().unwrap_or("?")),
        kernel = esc(r.kernel.as_deref().unwrap_or("?")),
        elapsed = esc(&human_secs(r.elapsed_s)),
        boots = r.boot_ids.len(),
        resumes = r.resumes.len(),
        links = r.link_resumes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let m = |i: usize, n: &str, st: &str, start: f64, d: u64| ModuleRecord {
            index: i,
            name: n.into(),
            status: st.into(),
            start: Some(start),
            duration_ms: Some(d),
            ..Default::default()
        };
        Report {
            outcome: "build_failed".into(),
            target: Some("armv8l64".into()),
            modules: vec![
                m(0, "binutils", "success", 0.0, 60_000),
                m(1, "gcc", "success", 60.0, 600_000),
                m(2, "make<x>", "failed", 660.0, 5_000),
            ],
            failed_module: Some("make<x>".into()),
            log_tail: Some("error: <boom>".into()),
            elapsed_s: 700.0,
            ..Report::new(0)
        }
    }

    #[test]
    fn summary_lists_slowest_first_and_the_failure() {
        let s = summary(&sample(), Path::new("/nonexistent"));
        let slowest = s.split("slowest:").nth(1).unwrap();
        assert!(slowest.find("gcc").unwrap() < slowest.find("binutils").unwrap());
        assert!(s.contains("FAILED: module make<x>") && s.contains("error: <boom>"));
    }

    #[test]
    fn html_is_self_contained_and_escaped() {
        let h = html_report(&sample());
        assert!(h.contains("<svg") && h.contains("<style>"));
        assert!(
            !h.contains("<script") && !h.contains("http://")
                || h.contains("xmlns=\"http://www.w3.org/2000/svg\"")
        );
        assert!(h.contains("make&lt;x&gt;") && !h.contains("make<x>"));
        assert_eq!(h.matches("<rect").count(), 3);
    }
}
