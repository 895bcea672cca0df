//! The whole run: boot → uplink → bundle → modules → pack → send → end.
//!
//! Everything the host learns goes through [`Report`]: events on the events stream, the
//! agent log, module logs and the tarball on their own streams, and a copy of each line
//! on the console. The run ends in `pid1::end`, never by returning as PID 1.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::boot::{self, BootOptions};
use crate::bundle::{self, Bundle, BundleKind};
use crate::channel;
use crate::checkpoint::Checkpoint;
use crate::config::{self, Compression, Config, Loaded, Mode};
use crate::events::{Event, Hello, ModuleOutcome, Outcome, StreamKind};
use crate::kmod;
use crate::pack::{self, Excludes, GzipOptions, PackOptions};
use crate::pid1::{self, EndContext};
use crate::rootfs;
use crate::runner::{BuildObserver, RunResult, Runner, RunnerConfig};
use crate::sys::{LinuxSys, Sys};
use crate::wire::sender::{Sender, SenderConfig};
use crate::wire::uplink::{Uplink, UplinkHandle};
use crate::wire::{Key, Priority, StreamId, AGENT_LOG_STREAM, EVENTS_STREAM, FIRST_DYNAMIC_STREAM};
use stagehand_proto::root::RootSpec;

/// How long the end of a run waits for the host to have everything.
const FINISH_TIMEOUT: Duration = Duration::from_secs(600);
/// The folder (inside the state dir) a tarball bundle is unpacked into.
const BUNDLE_WORK_DIR: &str = "bundle";
/// The stream of the packed tree.
const SYSROOT_STREAM: StreamId = FIRST_DYNAMIC_STREAM;
/// Module `i`'s log goes on stream `FIRST_MODULE_STREAM + i`.
const FIRST_MODULE_STREAM: StreamId = FIRST_DYNAMIC_STREAM + 1;

/// Where the agent's words go: the console always, the host once the uplink is up.
#[derive(Clone, Default)]
pub struct Report {
    uplink: Arc<Mutex<Option<UplinkHandle>>>,
    max_log_bytes: u64,
}

impl Report {
    fn uplink(&self) -> Option<UplinkHandle> {
        self.uplink.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn attach(&self, handle: UplinkHandle) {
        crate::logger::attach(handle.clone());
        *self.uplink.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    }

    /// An event on the events stream. Events are small and must all arrive: this waits
    /// while the stream's window is full.
    pub fn event(&self, ev: &Event) {
        if let Some(up) = self.uplink() {
            if let Err(e) = up.write(EVENTS_STREAM, &ev.to_line()) {
                log::error!("event not sent: {e}");
            }
        }
    }

    pub fn warn(&self, message: &str) {
        log::warn!("{message}");
        self.event(&Event::Warning { message: message.to_string() });
    }

    fn open_stream(&self, stream: StreamId, prio: Priority, kind: StreamKind) {
        if let Some(up) = self.uplink() {
            up.open(stream, prio);
        }
        self.event(&Event::StreamOpened { stream, kind });
    }
}

/// Runs the agent to its end. `loaded` is the configuration read before PID 1 set-up.
pub fn run(loaded: Loaded) -> ! {
    let sys = LinuxSys;
    let report = Report { max_log_bytes: loaded.config.max_log_bytes, ..Report::default() };
    let reporter = report.clone();
    pid1::set_panic_reporter(move |msg| {
        reporter.event(&Event::Finished {
            outcome: Outcome::Error,
            message: format!("the agent panicked: {msg}"),
            failed_module: None,
            log_tail: None,
            then: String::new(),
        });
    });
    let cfg = loaded.config.clone();
    let mode = loaded.mode;
    let outcome = pid1::guard(|| run_build(&sys, &loaded, &report)).unwrap_or_else(|panic| {
        log::error!("fatal: {panic}");
        Finish::failed(Outcome::Error, panic)
    });
    let action = match outcome.outcome {
        Outcome::Success => cfg.on_success,
        _ => cfg.on_failure,
    };
    let then = pid1::effective_end(action, mode);
    report.event(&Event::Finished {
        outcome: outcome.outcome.clone(),
        message: outcome.message.clone(),
        failed_module: outcome.failed_module.clone(),
        log_tail: outcome.log_tail.clone(),
        then: then.name().to_string(),
    });
    log::info!("{}; then {}", outcome.summary(), then.name());
    if let Some(up) = report.uplink() {
        match up.finish(FINISH_TIMEOUT) {
            Ok(s) => log::info!(
                "uplink done: {} frames ({} data, {} again), {} bytes on the line, frames of {} bytes, \
                 {} acks, {} link resets, {} rejected, host saw {} good / {} bad, \
                 bit error rate ~{} per billion",
                s.frames_sent,
                s.data_frames_sent,
                s.retransmitted,
                s.wire_bytes_sent,
                s.frame_size,
                s.acks_received,
                s.link_resets,
                s.rejected,
                s.host_good,
                s.host_bad,
                (s.ber_estimate * 1e9) as u64
            ),
            Err(e) => log::warn!("uplink: {e}"),
        }
    }
    let ctx = EndContext {
        sys: &sys,
        mode,
        exit_status: match outcome.outcome {
            Outcome::Success => 0,
            Outcome::BuildFailed => 2,
            Outcome::Error => 1,
        },
        shell: cfg.shell.clone(),
        console: cfg.console.clone(),
    };
    pid1::end(&ctx, action)
}

/// How the run went, for the `Finished` event and the end action.
struct Finish {
    outcome: Outcome,
    message: String,
    failed_module: Option<String>,
    log_tail: Option<String>,
}

impl Finish {
    fn failed(outcome: Outcome, message: String) -> Finish {
        Finish { outcome, message, failed_module: None, log_tail: None }
    }

    fn summary(&self) -> String {
        match self.outcome {
            Outcome::Success => format!("run succeeded: {}", self.message),
            Outcome::BuildFailed => format!("build failed: {}", self.message),
            Outcome::Error => format!("run failed: {}", self.message),
        }
    }
}

fn run_build(sys: &dyn Sys, loaded: &Loaded, report: &Report) -> Finish {
    let cfg = &loaded.config;
    let mode = loaded.mode;
    let started = Instant::now();
    let mut boot_log = Vec::new();
    let boot_report = boot::boot(sys, &BootOptions::from_config(cfg, mode), &mut |step| {
        log::info!("{}", step.line());
        boot_log.push(step.line());
    });

    let key = match Key::from_hex_file(&cfg.key_file) {
        Ok(k) => k,
        Err(e) => {
            return Finish::failed(
                Outcome::Error,
                format!(
                    "no uplink key at {} ({e}): make the image with `stagehand image`, which writes it",
                    cfg.key_file.display()
                ),
            )
        }
    };
    let transport = match channel::open(&cfg.channel) {
        Ok(t) => t,
        Err(e) => return Finish::failed(Outcome::Error, format!("channel {}: {e}", cfg.channel)),
    };
    let hello = Hello {
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        contract: stagehand_proto::CONTRACT_VERSION,
        target: cfg.target.clone(),
        kernel: boot::kernel_description(),
        boot_id: boot::boot_id(sys, mode),
        config_digest: cfg.digest(),
        mode: if mode == Mode::Pid1 { "pid1" } else { "container" }.to_string(),
    };
    let mut sender_cfg = SenderConfig::for_link(transport.is_two_way(), transport.nominal_rate());
    sender_cfg.one_way_repeats = cfg.one_way_repeats.max(1);
    let hello_json = serde_json::to_vec(&hello).unwrap_or_default();
    let uplink = match Uplink::spawn(transport, Sender::new(key, hello_json, sender_cfg)) {
        Ok(u) => u,
        Err(e) => return Finish::failed(Outcome::Error, format!("cannot start the uplink: {e}")),
    };
    uplink.open(EVENTS_STREAM, Priority::Control);
    uplink.open(AGENT_LOG_STREAM, Priority::Log);
    report.attach(uplink.clone());
    report.event(&Event::Hello(hello));
    report.event(&Event::StreamOpened { stream: AGENT_LOG_STREAM, kind: StreamKind::AgentLog });
    for line in &boot_log {
        let _ = uplink.try_write(AGENT_LOG_STREAM, format!("{line}\n").as_bytes());
    }
    for w in &loaded.warnings {
        report.warn(w);
    }
    for step in boot_report.warnings() {
        report.warn(&step.line());
    }
    if !boot_report.ok() {
        let why = boot_report.steps.iter().rev().find(|s| s.status == boot::StepStatus::Failed);
        return Finish::failed(
            Outcome::Error,
            match why {
                Some(s) => format!("an essential boot step failed: {}", s.line()),
                None => "an essential boot step failed (see the agent log)".into(),
            },
        );
    }

    // Netboot: the root to switch to, and the configuration found there.
    let entered = match enter_root(sys, loaded, &boot_report, report) {
        Ok(e) => e,
        Err(e) => return Finish::failed(Outcome::Error, e),
    };
    let loaded = entered.as_ref().unwrap_or(loaded);
    let cfg = &loaded.config;

    let root = Path::new("/");
    let kind = bundle_kind(cfg.bundle_kind);
    let work_dir = cfg.state_dir.join(BUNDLE_WORK_DIR);
    let bundle = match bundle::open(root, &cfg.bundle, kind, &work_dir) {
        Ok(b) => b,
        Err(e) => return Finish::failed(Outcome::Error, e.0),
    };
    for w in bundle.warnings() {
        report.warn(w);
    }
    let names = bundle.module_names();
    let mut checkpoint = match Checkpoint::open(&cfg.state_dir, bundle.identity(), &names) {
        Ok(c) => c,
        Err(e) => {
            return Finish::failed(Outcome::Error, format!("checkpoint in {}: {e}", cfg.state_dir.display()))
        }
    };
    for w in checkpoint.warnings() {
        report.warn(w);
    }
    report.event(&Event::Plan {
        bundle_kind: bundle.kind().to_string(),
        modules: names.clone(),
        completed: checkpoint.completed_names(),
    });

    let mut runner_cfg = RunnerConfig::new(root, &cfg.logs_dir);
    runner_cfg.env = cfg.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    runner_cfg.stop_grace = Duration::from_secs(cfg.stop_grace_secs.into());
    let runner = Runner::new(runner_cfg);
    let stop = runner.stop_handle();
    pid1::on_stop(move |_| stop.stop());
    if let Some(reason) = pid1::stop_requested() {
        return Finish::failed(Outcome::Error, format!("stopped by {} before the build", reason.name()));
    }
    let mut observer = Observer { report, uplink: &uplink, module_bytes: Vec::new(), starts: Vec::new() };
    let result = match runner.run(&*bundle, &mut checkpoint, &mut observer) {
        Ok(r) => r,
        Err(e) => return Finish::failed(Outcome::Error, format!("running the bundle: {e}")),
    };
    match result {
        RunResult::Completed { ran } => {
            log::info!("all {} modules built ({ran} in this run)", names.len());
        }
        RunResult::Failed(f) => {
            return Finish {
                outcome: Outcome::BuildFailed,
                message: f.message,
                failed_module: Some(f.name),
                log_tail: Some(f.log_tail),
            }
        }
        RunResult::Stopped { module, .. } => {
            let why = pid1::stop_requested().map_or("a stop request", |r| r.name());
            return Finish::failed(
                Outcome::Error,
                format!("stopped by {why} during module {module}; the next boot re-runs it"),
            );
        }
    }

    let stopped = pid1::stop_all_processes(sys, mode, Duration::from_secs(cfg.stop_grace_secs.into()));
    if stopped.terminated > 0 {
        log::info!(
            "stopped {} processes the build left running ({} needed SIGKILL)",
            stopped.terminated,
            stopped.killed
        );
    }
    match pack_and_send(sys, cfg, &*bundle, report, &uplink) {
        Ok(message) => Finish {
            outcome: Outcome::Success,
            message: format!("{message} in {} s", Tenths(started.elapsed())),
            failed_module: None,
            log_tail: None,
        },
        Err(message) => Finish::failed(Outcome::Error, message),
    }
}

/// As PID 1 of an initramfs with a root to go to (`root`, or the kernel's `root=/dev/nfs
/// nfsroot=...`): load its modules, mount it, switch to it, and load the configuration
/// again from there. `Ok(None)`: there is nothing to switch to; the run goes on as it is.
fn enter_root(
    sys: &dyn Sys,
    loaded: &Loaded,
    boot_report: &boot::BootReport,
    report: &Report,
) -> Result<Option<Loaded>, String> {
    let cfg = &loaded.config;
    if loaded.mode != Mode::Pid1 {
        return Ok(None);
    }
    let cmdline = loaded.inputs.cmdline.as_deref().unwrap_or("");
    let root = match &cfg.root {
        Some(r) => r.clone(),
        None => match RootSpec::from_kernel_words(
            config::cmdline_value(cmdline, "root").as_deref(),
            config::cmdline_value(cmdline, "nfsroot").as_deref(),
            config::cmdline_value(cmdline, "rootfstype").as_deref(),
        ) {
            None => return Ok(None),
            Some(r) => r.map_err(|e| format!("kernel command line: {e}"))?,
        },
    };
    if !rootfs::in_initramfs(sys) {
        if cfg.root.is_some() {
            log::info!("root {root}: / is already a real file system, staying on it");
        }
        return Ok(None);
    }
    let names: Vec<String> = root.modules().iter().map(|m| m.to_string()).collect();
    let loaded_mods = kmod::load_modules(sys, &names);
    loaded_mods.done.iter().for_each(|l| log::info!("{l}"));
    // A module may be built into this kernel without modules.builtin saying so: try the mount.
    loaded_mods.errors.iter().for_each(|e| report.warn(&format!("root {root}: {e}")));
    let ip = cfg.ip_config();
    let (client, server) = match (&boot_report.lease, &ip) {
        (Some((_, lease)), _) => (Some(lease.address), Some(lease.boot_server())),
        (None, Some(stagehand_proto::ip::IpConfig::Static(s))) => (s.client, s.server.or(s.gateway)),
        _ => (None, None),
    };
    for line in rootfs::switch(sys, &root, client, server)? {
        log::info!("{line}");
    }
    let mut again = config::load(&loaded.inputs);
    for w in std::mem::take(&mut again.warnings) {
        report.warn(&format!("after the root switch: {w}"));
    }
    if again.config.channel != cfg.channel || again.config.key_file != cfg.key_file {
        report.warn(&format!(
            "the new root's configuration names channel {} and key {}; the link already open ({}) stays",
            again.config.channel,
            again.config.key_file.display(),
            cfg.channel
        ));
    }
    // The new root's own mounts (/tmp, ...); the network is up already.
    let mut opts = BootOptions::from_config(&again.config, Mode::Pid1);
    opts.ip = None;
    let booted = boot::boot(sys, &opts, &mut |step| log::info!("{}", step.line()));
    for step in booted.warnings() {
        report.warn(&step.line());
    }
    if !booted.ok() {
        return Err("an essential boot step failed in the new root (see the agent log)".into());
    }
    Ok(Some(again))
}

fn bundle_kind(kind: config::BundleKind) -> BundleKind {
    match kind {
        config::BundleKind::Auto => BundleKind::Auto,
        config::BundleKind::Buildstream => BundleKind::BuildStream,
        config::BundleKind::Morph => BundleKind::Morph,
        config::BundleKind::Script => BundleKind::Script,
    }
}

/// What the packer leaves out: the configured list, the bundle, and everything of the
/// agent's own (state, logs, configuration and key, the binary).
pub fn excludes(cfg: &Config, bundle_locations: &[PathBuf]) -> Excludes {
    let mut ex = if cfg.exclude_defaults { Excludes::defaults() } else { Excludes::none() };
    for p in &cfg.exclude {
        ex.add(p);
    }
    let own = [&cfg.state_dir, &cfg.logs_dir, &cfg.bundle];
    for p in own.into_iter().chain(bundle_locations) {
        ex.add(&pack::pattern_for(p));
    }
    if let Some(dir) = cfg.key_file.parent() {
        ex.add(&pack::pattern_for(dir));
    }
    // A file channel grows while the tree is packed (NFS-root users write it inside /).
    if let channel::ChannelSpec::File { path } = &cfg.channel {
        ex.add(&pack::pattern_for(path));
    }
    ex.add("/init");
    ex
}

fn pack_and_send(
    sys: &dyn Sys,
    cfg: &Config,
    bundle: &dyn Bundle,
    report: &Report,
    uplink: &UplinkHandle,
) -> Result<String, String> {
    let gzip = match cfg.compression {
        Compression::Gzip => {
            Some(GzipOptions { level: cfg.gzip_level.min(9) as u8, threads: cfg.threads as usize })
        }
        Compression::None => None,
    };
    let name = if gzip.is_some() { "sysroot.tar.gz" } else { "sysroot.tar" };
    let opts = PackOptions {
        root: PathBuf::from("/"),
        excludes: excludes(cfg, bundle.locations()),
        gzip,
        keep_copy: cfg.keep_copy.clone(),
        clamp_mtime: cfg.clamp_mtime.map(|t| t.min(i64::MAX as u64) as i64),
    };
    report.open_stream(
        SYSROOT_STREAM,
        Priority::Bulk,
        StreamKind::File {
            name: name.to_string(),
            compression: if opts.gzip.is_some() { "gzip" } else { "none" }.to_string(),
        },
    );
    let shares_console = matches!(cfg.channel, channel::ChannelSpec::Console { .. });
    let old_level =
        if cfg.quiet_console && shares_console { boot::set_console_loglevel(sys, 1).ok() } else { None };
    log::info!("packing / into {name}");
    let t0 = Instant::now();
    let mut writer = uplink.writer(SYSROOT_STREAM);
    let mut last = Instant::now();
    let packed = pack::pack(&opts, &mut writer, &mut |tree_bytes, archive_bytes| {
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            report.event(&Event::PackProgress { tree_bytes, archive_bytes });
        }
    });
    if let Some(level) = old_level {
        let _ = boot::set_console_loglevel(sys, level);
    }
    let packed = packed.map_err(|e| format!("packing failed, no tarball was completed: {e}"))?;
    for w in &packed.warnings {
        report.warn(w);
    }
    report.event(&Event::PackProgress { tree_bytes: packed.tree_bytes, archive_bytes: packed.archive_bytes });
    uplink.close(SYSROOT_STREAM).map_err(|e| format!("closing the {name} stream: {e}"))?;
    report.event(&Event::FileComplete {
        stream: SYSROOT_STREAM,
        name: name.to_string(),
        size: packed.archive_bytes,
        sha256: packed.sha256.clone(),
    });
    Ok(format!(
        "packed {} entries, {} bytes of tree into {} bytes in {} s, sha256 {}",
        packed.entries,
        packed.tree_bytes,
        packed.archive_bytes,
        Tenths(t0.elapsed()),
        packed.sha256
    ))
}

/// Turns runner callbacks into events and module log streams.
struct Observer<'a> {
    report: &'a Report,
    uplink: &'a UplinkHandle,
    /// Bytes of each module's log streamed so far (index = module).
    module_bytes: Vec<u64>,
    starts: Vec<Instant>,
}

impl Observer<'_> {
    fn stream(index: usize) -> StreamId {
        FIRST_MODULE_STREAM + index as StreamId
    }
}

impl BuildObserver for Observer<'_> {
    fn module_started(&mut self, index: usize, total: usize, name: &str) {
        if self.module_bytes.len() <= index {
            self.module_bytes.resize(index + 1, 0);
            self.starts.resize(index + 1, Instant::now());
        }
        self.starts[index] = Instant::now();
        self.report.open_stream(
            Self::stream(index),
            Priority::Log,
            StreamKind::ModuleLog { module: name.to_string() },
        );
        self.report.event(&Event::ModuleStarted { index, total, name: name.to_string() });
        log::info!("module {}/{total} {name}: started", index + 1);
    }

    fn output(&mut self, index: usize, _name: &str, bytes: &[u8]) {
        let cap = self.report.max_log_bytes;
        let Some(sent) = self.module_bytes.get_mut(index) else { return };
        if cap != 0 && *sent >= cap {
            return;
        }
        let take = if cap == 0 { bytes.len() } else { bytes.len().min((cap - *sent) as usize) };
        // Live logs never hold the build up: what does not fit in the window is dropped
        // here (the full log stays on the target) and the gap is marked in the stream.
        match self.uplink.try_write(Self::stream(index), &bytes[..take]) {
            Ok(n) if n == take => *sent += n as u64,
            Ok(n) => {
                *sent += n as u64;
                let note =
                    format!("\n[stagehand: {} bytes of log not streamed: the line is busy]\n", take - n);
                let _ = self.uplink.try_write(Self::stream(index), note.as_bytes());
            }
            Err(_) => {}
        }
    }

    fn module_finished(&mut self, index: usize, name: &str, outcome: &ModuleOutcome, duration: Duration) {
        let _ = self.uplink.close(Self::stream(index));
        self.report.event(&Event::ModuleFinished {
            index,
            name: name.to_string(),
            outcome: outcome.clone(),
            duration_ms: duration.as_millis() as u64,
        });
        let how = if outcome.success { "done".to_string() } else { describe_failure(outcome) };
        log::info!("module {}: {name}: {how} in {} s", index + 1, Tenths(duration));
    }

    fn resumed(&mut self, index: usize, name: &str, previous_boots: u32) {
        self.report.event(&Event::Resumed { module: name.to_string(), index, previous_boots });
        log::info!("resuming at module {} ({name}) after {previous_boots} earlier boot(s)", index + 1);
    }

    fn warning(&mut self, message: &str) {
        self.report.warn(message);
    }
}

fn describe_failure(outcome: &ModuleOutcome) -> String {
    match (outcome.exit_code, outcome.signal) {
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(code), _) => format!("failed with exit status {code}"),
        _ => "failed".to_string(),
    }
}

/// Seconds with one decimal, as `{:.1}` would print them, without float formatting (whose
/// code is a sizeable part of a small static binary).
struct Tenths(std::time::Duration);

impl std::fmt::Display for Tenths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenths = (self.0.as_secs() * 1000 + u64::from(self.0.subsec_millis()) + 50) / 100;
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::Tenths;
    use std::time::Duration;

    #[test]
    fn tenths_print_like_one_decimal_float_formatting() {
        for ms in [0u64, 49, 50, 949, 950, 999, 1_000, 61_234, 3_600_049, 86_400_951] {
            let d = Duration::from_millis(ms);
            assert_eq!(Tenths(d).to_string(), format!("{:.1}", (ms as f64 / 1000.0 + 1e-9)), "{ms} ms");
        }
    }
}
