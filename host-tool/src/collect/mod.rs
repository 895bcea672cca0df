//! `stagehand collect`: receive a run from the agent. Input source → protocol receiver
//! ([`link`]) → [`demux`] (console, events, logs, file) → [`model`] report and [`ui`].

pub mod demux;
pub mod link;
pub mod model;
pub mod source;
pub mod ui;

use crate::util::{exit, EXIT_BUILD_FAILED, EXIT_TRANSFER_FAILED};
use anyhow::{Context, Result};
use demux::{Demux, Notice};
use link::Link;
use source::{Got, Source};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const RECEIVER_STATE: &str = ".receiver-state";

/// `stagehand collect (--serial DEV [--baud N] | --listen ADDR | --input FILE [--follow]) --key FILE --out DIR`
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["serial", "listen", "input"])))]
pub struct CollectCmd {
    /// Serial device the agent writes to (set to raw mode).
    #[arg(long, value_name = "DEV")]
    pub serial: Option<PathBuf>,
    /// Baud rate of --serial.
    #[arg(long, default_value_t = 115200, requires = "serial")]
    pub baud: u32,
    /// Listen for the agent's TCP connections on ADDR (e.g. 0.0.0.0:7000); it may reconnect.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Read a file holding what the agent sent (e.g. QEMU's -serial file:PATH).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// With --input: keep waiting for more bytes until the final event or --timeout.
    #[arg(long, requires = "input")]
    pub follow: bool,
    /// The image's key (`<image>.key`, written by `stagehand image`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Output folder: console.log, logs/, report.json, sysroot.tar[.gz], .sha256, sysroot.bst.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Replace a finished result in --out.
    #[arg(long)]
    pub force: bool,
}

impl CollectCmd {
    pub fn run(self) -> Result<()> {
        let key = link::read_key(&self.key)?;
        let mut source: Box<dyn Source> = if let Some(dev) = &self.serial {
            Box::new(source::SerialSource::open(dev, self.baud)?)
        } else if let Some(addr) = &self.listen {
            Box::new(source::ListenSource::bind(addr)?)
        } else {
            let input = self.input.as_ref().expect("clap requires one input");
            Box::new(source::FileSource::open(input, self.follow)?)
        };
        let (mut demux, mut link) = prepare_out(&self.out, key, self.force, "console.log")?;
        let mut display = ui::for_stdout();
        display.line(&format!("collecting from {} into {}", source.describe(), self.out.display()));
        let opts = SessionOpts { timeout: self.timeout.map(Duration::from_secs) };
        run_session(source.as_mut(), link.as_mut(), &mut demux, display.as_mut(), &opts, &mut || false)?;
        conclude(&self.out, &demux, display.as_mut())
    }
}

/// Open the output folder: refuse a finished result unless `force`, resume an interrupted one.
pub fn prepare_out(
    out: &Path,
    key: stagehand_proto::wire::Key,
    force: bool,
    console_name: &str,
) -> Result<(Demux, Box<dyn Link>)> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let finished = std::fs::read(out.join(demux::REPORT))
        .ok()
        .and_then(|b| serde_json::from_slice::<model::Report>(&b).ok())
        .is_some_and(|r| r.is_final());
    if finished && !force {
        anyhow::bail!("{} holds a finished result; pass --force to replace it", out.display());
    }
    if finished || force {
        clear_results(out)?;
    }
    if let Some(demux) = Demux::resume(out, console_name)? {
        log::info!("resuming the interrupted collection in {}", out.display());
        let snapshot = std::fs::read(out.join(RECEIVER_STATE)).ok();
        let link = link::open(key, snapshot.as_deref(), |s| demux.delivered_prefix(s))?;
        return Ok((demux, link));
    }
    let link = link::open(key, None, |_| Ok(Box::new(std::io::empty())))?;
    Ok((Demux::new(out, console_name, None)?, link))
}

fn clear_results(out: &Path) -> Result<()> {
    for entry in std::fs::read_dir(out)?.filter_map(|e| e.ok()) {
        if entry.file_name().to_string_lossy().starts_with(demux::EVENTS_PREFIX) {
            std::fs::remove_file(entry.path())?;
        }
    }
    for name in [
        demux::REPORT,
        RECEIVER_STATE,
        demux::STREAM_ENDS,
        "report.html",
        "agent.log",
        "sysroot.bst",
        "sysroot.tar",
        "sysroot.tar.gz",
        "sysroot.tar.partial",
        "sysroot.tar.gz.partial",
        "sysroot.tar.sha256",
        "sysroot.tar.gz.sha256",
    ] {
        let p = out.join(name);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    let logs = out.join(demux::LOGS);
    if logs.is_dir() {
        std::fs::remove_dir_all(&logs)?;
    }
    Ok(())
}

pub struct SessionOpts {
    pub timeout: Option<Duration>,
}

/// Pump bytes from `source` through `link` into `demux` until the run is complete, the
/// input ends, the timeout passes, or `stop()` says so (then what is buffered is drained).
pub fn run_session(
    source: &mut dyn Source,
    link: &mut dyn Link,
    demux: &mut Demux,
    display: &mut dyn Display,
    opts: &SessionOpts,
    stop: &mut dyn FnMut() -> bool,
) -> Result<()> {
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_save = Instant::now();
    let mut rate = RateMeter::default();
    let mut stopping = false;
    loop {
        demux.tick();
        if demux.finished() {
            break;
        }
        if let Some(t) = opts.timeout {
            if started.elapsed() >= t {
                demux.mark_transfer_failed(&format!("timed out after {} s", t.as_secs()));
                break;
            }
        }
        if !stopping && stop() {
            stopping = true;
        }
        let got = source.read(&mut buf, Duration::from_millis(200))?;
        let now = Instant::now();
        match got {
            Got::Bytes(n) => {
                for item in link.input(&buf[..n], now) {
                    for notice in demux.handle(item)? {
                        show_notice(display, &notice);
                    }
                }
            }
            Got::Idle if stopping => {
                demux.mark_transfer_failed("the board stopped before the run was complete");
                break;
            }
            Got::Idle => {}
            Got::Dropped => display.line("link dropped; waiting for the agent to reconnect"),
            Got::End => {
                demux.mark_transfer_failed("the input ended before the agent's final event");
                break;
            }
        }
        while let Some(tx) = link.poll_transmit(now) {
            source.write(&tx)?;
        }
        let (bytes, size) = demux.file_progress();
        let status = demux.report().status(bytes, size, rate.update(bytes, now), demux.packing);
        display.status(&status);
        if last_save.elapsed() >= Duration::from_secs(1) {
            save(demux, link)?;
            last_save = Instant::now();
        }
    }
    if demux.finished() {
        linger(source, link, demux)?;
    }
    save(demux, link)
}

/// Answer for a moment after the end so a two-way agent gets its last acknowledgements.
fn linger(source: &mut dyn Source, link: &mut dyn Link, demux: &mut Demux) -> Result<()> {
    let start = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    while start.elapsed() < Duration::from_millis(300) {
        let now = Instant::now();
        while let Some(tx) = link.poll_transmit(now) {
            source.write(&tx)?;
        }
        match source.read(&mut buf, Duration::from_millis(50))? {
            Got::Bytes(n) => {
                for item in link.input(&buf[..n], Instant::now()) {
                    demux.handle(item)?;
                }
            }
            Got::Idle => {}
            Got::End | Got::Dropped => break,
        }
    }
    Ok(())
}

fn save(demux: &mut Demux, link: &mut dyn Link) -> Result<()> {
    demux.save()?;
    let snap = link.snapshot();
    if !snap.is_empty() {
        demux::write_atomic(&demux_out(demux).join(RECEIVER_STATE), &snap)?;
    }
    Ok(())
}

fn demux_out(demux: &Demux) -> PathBuf {
    demux.out_dir().to_path_buf()
}

use ui::Display;

fn show_notice(display: &mut dyn Display, notice: &Notice) {
    use stagehand_proto::events::Event;
    match notice {
        Notice::Event(Event::Hello(h)) => {
            display
                .line(&format!("agent {} on {} ({}), {} mode", h.agent_version, h.target, h.kernel, h.mode));
            if let Some(m) = stagehand_proto::contract_mismatch(h.contract) {
                display.line(&format!("warning: {m}"));
            }
        }
        Notice::Event(Event::Plan { bundle_kind, modules, completed }) => display.line(&format!(
            "plan: {} {bundle_kind} modules ({} already built)",
            modules.len(),
            completed.len()
        )),
        Notice::Event(Event::Resumed { module, index, previous_boots }) => display.line(&format!(
            "resumed at module {} {module} after {previous_boots} earlier boot(s)",
            index + 1
        )),
        Notice::Event(Event::ModuleFinished { index, name, outcome, duration_ms }) => display.line(&format!(
            "module {} {name} {} in {}",
            index + 1,
            if outcome.success { "built" } else { "FAILED" },
            ui::human_secs(*duration_ms as f64 / 1000.0)
        )),
        Notice::Event(Event::Warning { message }) => {
            display.line(&format!("warning from the agent: {message}"))
        }
        Notice::Event(_) => {}
        Notice::Rejected(why) => display.line(&format!("rejected a frame: {why}")),
        Notice::Verified { file, sha256, size } => display.line(&format!(
            "verified {} ({}, sha256 {sha256})",
            file.display(),
            ui::human_bytes(*size)
        )),
        Notice::VerificationFailed(why) => {
            display.line(&format!("the sysroot tarball did not verify: {why}"))
        }
        Notice::LinkResumed => display.line("the agent started a new session"),
    }
}

/// Bytes per second over the last few seconds.
#[derive(Default)]
struct RateMeter {
    last: Option<(Instant, u64)>,
    rate: f64,
}

impl RateMeter {
    fn update(&mut self, bytes: u64, now: Instant) -> f64 {
        match self.last {
            None => self.last = Some((now, bytes)),
            Some((t, b)) => {
                let dt = now.duration_since(t).as_secs_f64();
                if dt >= 1.0 {
                    let inst = bytes.saturating_sub(b) as f64 / dt;
                    self.rate = if self.rate == 0.0 { inst } else { 0.5 * self.rate + 0.5 * inst };
                    self.last = Some((now, bytes));
                }
            }
        }
        self.rate
    }
}

/// Print the result and turn the outcome into the exit status.
pub fn conclude(out: &Path, demux: &Demux, display: &mut dyn Display) -> Result<()> {
    display.finish();
    let r = demux.report();
    match r.outcome.as_str() {
        "success" => {
            let s = r.sysroot.as_ref().context("success without a sysroot")?;
            println!(
                "sysroot: {} (sha256 {}, {})",
                out.join(&s.file).display(),
                s.sha256,
                ui::human_bytes(s.size)
            );
            println!("BuildStream source: {}", out.join("sysroot.bst").display());
            Ok(())
        }
        "build_failed" | "error" => {
            let module = r.failed_module.clone().unwrap_or_else(|| "(none)".into());
            let mut msg = format!("the build failed on the target: module {module}");
            if !r.message.is_empty() {
                msg.push_str(&format!(" ({})", r.message));
            }
            if let Some(tail) = &r.log_tail {
                msg.push_str(&format!("\nlast lines of its log:\n{tail}"));
            }
            if let Some(log) = r
                .modules
                .iter()
                .find(|m| Some(&m.name) == r.failed_module.as_ref())
                .and_then(|m| m.log.as_ref())
            {
                msg.push_str(&format!("\nfull log: {}", out.join(log).display()));
            }
            Err(exit(EXIT_BUILD_FAILED, msg))
        }
        _ => Err(exit(
            EXIT_TRANSFER_FAILED,
            format!(
                "transfer failed: {}{}",
                r.message,
                if demux.state.rejected > 0 {
                    format!(" ({} frames rejected: wrong key or damaged line?)", demux.state.rejected)
                } else {
                    String::new()
                }
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use link::Incoming;

    /// A link that replays prepared items, one per input call, whatever the bytes.
    struct Scripted(std::collections::VecDeque<Incoming>);
    impl Link for Scripted {
        fn input(&mut self, _: &[u8], _: Instant) -> Vec<Incoming> {
            self.0.pop_front().into_iter().collect()
        }
        fn poll_transmit(&mut self, _: Instant) -> Option<Vec<u8>> {
            None
        }
        fn snapshot(&self) -> Vec<u8> {
            Vec::new()
        }
    }

    struct Quiet;
    impl Display for Quiet {
        fn status(&mut self, _: &model::Status) {}
        fn line(&mut self, _: &str) {}
        fn finish(&mut self) {}
    }

    fn input_file(dir: &Path, chunks: usize) -> PathBuf {
        let p = dir.join("input");
        std::fs::write(&p, vec![b'x'; chunks]).unwrap();
        p
    }

    #[test]
    fn session_to_success_and_refusal_to_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let items = demux::tests::successful_run(b"tarball bytes");
        let n = items.len();
        let mut src = source::FileSource::open(&input_file(d.path(), n), false).unwrap();
        let mut link = Scripted(items.into());
        let mut demux = Demux::new(&out, "console.log", None).unwrap();
        // One byte per read so each read yields one scripted item.
        struct OneByte<'a>(&'a mut source::FileSource);
        impl Source for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8], t: Duration) -> Result<Got> {
                self.0.read(&mut buf[..1], t)
            }
            fn write(&mut self, _: &[u8]) -> Result<()> {
                Ok(())
            }
            fn describe(&self) -> String {
                String::new()
            }
        }
        run_session(
            &mut OneByte(&mut src),
            &mut link,
            &mut demux,
            &mut Quiet,
            &SessionOpts { timeout: None },
            &mut || false,
        )
        .unwrap();
        assert!(conclude(&out, &demux, &mut Quiet).is_ok());
        assert!(out.join("sysroot.tar.gz").is_file());
        let err = prepare_out(&out, stagehand_proto::wire::Key([0; 32]), false, "console.log").err().unwrap();
        assert!(err.to_string().contains("holds a finished result"));
    }

    #[test]
    fn input_ending_early_is_a_transfer_failure() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let mut items = demux::tests::successful_run(b"tarball bytes");
        items.truncate(5);
        let mut src = source::FileSource::open(&input_file(d.path(), 1), false).unwrap();
        let mut link = Scripted(items.into());
        let mut demux = Demux::new(&out, "console.log", None).unwrap();
        run_session(&mut src, &mut link, &mut demux, &mut Quiet, &SessionOpts { timeout: None }, &mut || {
            false
        })
        .unwrap();
        let err = conclude(&out, &demux, &mut Quiet).unwrap_err();
        assert_eq!(err.downcast_ref::<crate::util::Exit>().unwrap().code, EXIT_TRANSFER_FAILED);
    }

    #[test]
    fn build_failure_exits_2_with_the_log_tail() {
        use stagehand_proto::events::{Event, Outcome};
        let d = tempfile::tempdir().unwrap();
        let mut demux = Demux::new(d.path(), "console.log", None).unwrap();
        let line = Event::Finished {
            outcome: Outcome::BuildFailed,
            message: String::new(),
            failed_module: Some("gcc".into()),
            log_tail: Some("make: *** [all] Error 2".into()),
            then: "shell".into(),
        }
        .to_line();
        demux.handle(Incoming::Data { stream: 0, offset: 0, bytes: line }).unwrap();
        assert!(demux.finished());
        let err = conclude(d.path(), &demux, &mut Quiet).unwrap_err();
        assert_eq!(err.downcast_ref::<crate::util::Exit>().unwrap().code, EXIT_BUILD_FAILED);
        assert!(err.to_string().contains("gcc") && err.to_string().contains("Error 2"));
    }

    #[test]
    fn timeout_is_a_transfer_failure() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let mut src = source::FileSource::open(&input_file(d.path(), 0), true).unwrap();
        let mut link = Scripted(Default::default());
        let mut demux = Demux::new(&out, "console.log", None).unwrap();
        run_session(
            &mut src,
            &mut link,
            &mut demux,
            &mut Quiet,
            &SessionOpts { timeout: Some(Duration::from_millis(300)) },
            &mut || false,
        )
        .unwrap();
        assert_eq!(demux.report().outcome, "transfer_failed");
        assert!(demux.report().message.contains("timed out"));
    }
}
