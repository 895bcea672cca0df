//! The runner on plain script bundles in the real root: order, logs, environment,
//! failures, resume, stop, exec errors.
// The harness runs host tools (tar, gzip, unshare) as a plain process: std's spawn and
// wait are right here; the agent's own code goes through pid1 (see agent/clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stagehand_agent::bundle::{open, Bundle, BundleKind};
use stagehand_agent::checkpoint::Checkpoint;
use stagehand_agent::events::ModuleOutcome;
use stagehand_agent::runner::{
    BuildObserver, Launched, Launcher, Pid1Launcher, RunResult, Runner, RunnerConfig, DEFAULT_PATH,
};

#[derive(Default)]
struct Recorder {
    events: Vec<String>,
    output: Vec<u8>,
}

impl BuildObserver for Recorder {
    fn module_started(&mut self, index: usize, total: usize, name: &str) {
        self.events.push(format!("start {index}/{total} {name}"));
    }
    fn output(&mut self, _index: usize, _name: &str, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }
    fn module_finished(&mut self, index: usize, name: &str, outcome: &ModuleOutcome, _d: Duration) {
        self.events.push(format!(
            "finish {index} {name} {} {:?} {:?}",
            outcome.success, outcome.exit_code, outcome.signal
        ));
    }
    fn resumed(&mut self, index: usize, name: &str, previous_boots: u32) {
        self.events.push(format!("resumed {index} {name} after {previous_boots}"));
    }
    fn warning(&mut self, message: &str) {
        self.events.push(format!("warning {message}"));
    }
}

struct Setup {
    _t: tempfile::TempDir,
    dir: PathBuf,
}

impl Setup {
    fn new(scripts: &[(&str, &str)]) -> Setup {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_path_buf();
        fs::create_dir_all(dir.join("steps")).unwrap();
        for (name, body) in scripts {
            let p = dir.join("steps").join(name);
            fs::write(&p, format!("#!/bin/sh\nset -e\nOUT={}\n{body}\n", dir.display())).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Setup { _t: t, dir }
    }

    fn bundle(&self) -> Box<dyn Bundle> {
        open(Path::new("/"), &self.dir.join("steps"), BundleKind::Auto, &self.dir.join("work")).unwrap()
    }

    fn runner(&self, env: &[(&str, &str)]) -> Runner {
        let mut c = RunnerConfig::new("/", self.dir.join("logs"));
        c.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        c.stop_grace = Duration::from_secs(2);
        Runner::new(c)
    }

    fn run(&self, env: &[(&str, &str)]) -> (RunResult, Recorder) {
        let b = self.bundle();
        let mut cp = Checkpoint::open(&self.dir.join("state"), b.identity(), &b.module_names()).unwrap();
        let mut rec = Recorder::default();
        let r = self.runner(env).run(&*b, &mut cp, &mut rec).unwrap();
        (r, rec)
    }
}

#[test]
fn modules_run_in_order_with_logs_and_environment() {
    let s = Setup::new(&[
        ("01-first.sh", "echo first >> $OUT/order; echo to-stderr >&2; echo \"PATH=$PATH\""),
        ("02-second.sh", "echo second >> $OUT/order; echo \"FLAVOUR=$FLAVOUR\"; if [ -t 1 ] || [ -t 2 ]; then echo TTY; exit 9; fi; read x || echo stdin-is-empty"),
        ("10-third.sh", "echo third >> $OUT/order; env | sort > $OUT/env"),
    ]);
    let (r, rec) = s.run(&[("FLAVOUR", "vanilla")]);
    assert_eq!(r, RunResult::Completed { ran: 3 });
    assert_eq!(fs::read_to_string(s.dir.join("order")).unwrap(), "first\nsecond\nthird\n");
    assert_eq!(
        rec.events,
        vec![
            "start 0/3 first",
            "finish 0 first true Some(0) None",
            "start 1/3 second",
            "finish 1 second true Some(0) None",
            "start 2/3 third",
            "finish 2 third true Some(0) None",
        ]
    );
    let log1 = fs::read_to_string(s.dir.join("logs/01-first.log")).unwrap();
    assert!(log1.contains("to-stderr") && log1.contains(&format!("PATH={DEFAULT_PATH}")), "{log1}");
    let log2 = fs::read_to_string(s.dir.join("logs/02-second.log")).unwrap();
    assert!(log2.contains("FLAVOUR=vanilla") && log2.contains("stdin-is-empty"), "{log2}");
    assert!(s.dir.join("logs/03-third.log").is_file());
    assert!(String::from_utf8_lossy(&rec.output).contains("FLAVOUR=vanilla"));
    let env = fs::read_to_string(s.dir.join("env")).unwrap();
    assert!(!env.contains("CARGO"), "the caller's environment must not leak: {env}");
    assert!(fs::read_to_string(s.dir.join("logs/environment")).unwrap().contains("FLAVOUR=vanilla"));
    // A second run has nothing left to do.
    let (r, _) = s.run(&[]);
    assert_eq!(r, RunResult::Completed { ran: 0 });
}

#[test]
fn a_failure_stops_the_run_and_is_retried_next_time() {
    let s = Setup::new(&[
        ("01-ok.sh", "echo ok >> $OUT/order"),
        ("02-flaky.sh", "echo flaky >> $OUT/order; for i in $(seq 1 100); do echo noise $i; done; if [ ! -e $OUT/fixed ]; then echo 'error: something is broken'; exit 7; fi"),
        ("03-after.sh", "echo after >> $OUT/order"),
    ]);
    let (r, rec) = s.run(&[]);
    let RunResult::Failed(f) = r else { panic!("{r:?}") };
    assert_eq!((f.index, f.name.as_str(), f.outcome.exit_code), (1, "flaky", Some(7)));
    assert!(f.log_tail.lines().count() <= 41, "{}", f.log_tail);
    assert!(
        f.log_tail.contains("error: something is broken")
            && f.log_tail.contains("noise 100")
            && !f.log_tail.contains("noise 1\n")
    );
    assert!(f.message.contains("module flaky") && f.message.contains("exit status 7"), "{}", f.message);
    assert!(rec.events.contains(&"finish 1 flaky false Some(7) None".to_string()));
    assert_eq!(fs::read_to_string(s.dir.join("order")).unwrap(), "ok\nflaky\n");

    fs::write(s.dir.join("fixed"), "").unwrap();
    let (r, rec) = s.run(&[]);
    assert_eq!(r, RunResult::Completed { ran: 2 });
    assert_eq!(rec.events[0], "resumed 1 flaky after 1");
    assert_eq!(fs::read_to_string(s.dir.join("order")).unwrap(), "ok\nflaky\nflaky\nafter\n");
}

#[test]
fn a_module_killed_by_a_signal() {
    let s = Setup::new(&[("01-boom.sh", "kill -9 $$")]);
    let (r, _) = s.run(&[]);
    let RunResult::Failed(f) = r else { panic!("{r:?}") };
    assert_eq!((f.outcome.exit_code, f.outcome.signal), (None, Some(9)));
    assert!(f.message.contains("signal 9"), "{}", f.message);
}

#[test]
fn stop_kills_the_whole_process_group() {
    let s = Setup::new(&[
        ("01-slow.sh", "sleep 60 & echo $! > $OUT/bgpid; echo started; sleep 60"),
        ("02-never.sh", "touch $OUT/never"),
    ]);
    let b = s.bundle();
    let mut cp = Checkpoint::open(&s.dir.join("state"), b.identity(), &b.module_names()).unwrap();
    let runner = s.runner(&[]);
    let stop = runner.stop_handle();
    let log = s.dir.join("logs/01-slow.log");
    let stopper = std::thread::spawn(move || {
        let t0 = Instant::now();
        while !fs::read_to_string(&log).unwrap_or_default().contains("started")
            && t0.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.stop();
    });
    let t0 = Instant::now();
    let r = runner.run(&*b, &mut cp, &mut Recorder::default()).unwrap();
    stopper.join().unwrap();
    assert_eq!(r, RunResult::Stopped { index: 0, module: "slow".into() });
    assert!(t0.elapsed() < Duration::from_secs(15));
    assert!(!s.dir.join("never").exists());
    let bg: i32 = fs::read_to_string(s.dir.join("bgpid")).unwrap().trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let state = fs::read_to_string(format!("/proc/{bg}/stat")).unwrap_or_default();
    assert!(state.is_empty() || state.contains(") Z "), "background job survived: {state}");
    // The interrupted module is the one a next run starts with.
    let cp = Checkpoint::open(&s.dir.join("state"), b.identity(), &b.module_names()).unwrap();
    assert_eq!(cp.resume_point().map(|r| (r.index, r.interrupted)), Some((0, true)));
}

#[test]
fn a_binary_for_another_architecture() {
    let s = Setup::new(&[]);
    let own = fs::read("/proc/self/exe").unwrap();
    let other: u16 = if u16::from_le_bytes([own[18], own[19]]) == 183 { 62 } else { 183 };
    let mut elf = own[..64].to_vec();
    elf[18..20].copy_from_slice(&other.to_le_bytes());
    let p = s.dir.join("steps/01-foreign.sh");
    fs::write(&p, &elf).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    // pid1::spawn sets a pre_exec hook, so std forks and calls execvp: glibc's (this test
    // binary's) retries an ENOEXEC file through /bin/sh, musl's (the agent's) does not.
    // Launch the way the musl agent sees it: the exec error itself reaches the runner.
    let b = s.bundle();
    let mut cp = Checkpoint::open(&s.dir.join("state"), b.identity(), &b.module_names()).unwrap();
    let r = s
        .runner(&[])
        .with_launcher(Arc::new(PosixSpawnLauncher))
        .run(&*b, &mut cp, &mut Recorder::default())
        .unwrap();
    let RunResult::Failed(f) = r else { panic!("{r:?}") };
    assert!(
        f.message.contains(
            "module foreign: exec format error: the sysroot's binaries are for another architecture"
        ),
        "{}",
        f.message
    );
    assert!(f.log_tail.contains("exec format error"));
}

#[test]
fn a_background_job_holding_the_output_does_not_hang_the_run() {
    let s = Setup::new(&[("01-daemon.sh", "sleep 8 & echo spawned")]);
    let t0 = Instant::now();
    let (r, _) = s.run(&[]);
    assert_eq!(r, RunResult::Completed { ran: 1 });
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
}

/// std's spawn without a pre_exec hook (posix_spawn: no /bin/sh retry on ENOEXEC).
struct PosixSpawnLauncher;
impl Launcher for PosixSpawnLauncher {
    fn launch(&self, cmd: &mut std::process::Command) -> std::io::Result<Launched> {
        let mut child = cmd.spawn()?;
        Ok(Launched { pid: child.id(), wait: Box::new(move || child.wait()) })
    }
}

struct CountingLauncher(AtomicUsize);
impl Launcher for CountingLauncher {
    fn launch(&self, cmd: &mut std::process::Command) -> std::io::Result<Launched> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Pid1Launcher.launch(cmd)
    }
}

#[test]
fn the_process_launcher_is_pluggable() {
    let s = Setup::new(&[("01-a.sh", "true"), ("02-b.sh", "true")]);
    let b = s.bundle();
    let mut cp = Checkpoint::open(&s.dir.join("state"), b.identity(), &b.module_names()).unwrap();
    let launcher = Arc::new(CountingLauncher(AtomicUsize::new(0)));
    let runner = s.runner(&[]).with_launcher(launcher.clone());
    assert_eq!(runner.run(&*b, &mut cp, &mut Recorder::default()).unwrap(), RunResult::Completed { ran: 2 });
    assert_eq!(launcher.0.load(Ordering::SeqCst), 2);
}
