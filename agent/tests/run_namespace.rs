//! Real bundles run by the runner in a user + PID + mount namespace, their modules
//! chrooted into a minimal root holding sh, cp, find, cpio and their libraries:
//! - a BuildStream 1.x source bundle made by `bst source-bundle` from
//!   tests/fixtures/bst-project: every module in order, a power cut (SIGKILL of the
//!   namespace) mid-module then resume, a failing module then retry;
//! - a Morph cross-bootstrap tree: DESTDIR builds copied into / with cpio.
// The harness runs host tools (tar, gzip, unshare) as a plain process: std's spawn and
// wait are right here; the agent's own code goes through pid1 (see agent/clippy.toml).
#![allow(clippy::disallowed_methods)]

use stagehand_testkit::require_tool;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stagehand_agent::bundle::{open, BundleKind};
use stagehand_agent::checkpoint::Checkpoint;
use stagehand_agent::events::{Event, ModuleOutcome};
use stagehand_agent::runner::{BuildObserver, RunResult, Runner, RunnerConfig};

const TOOLS: &[&str] =
    &["sh", "cp", "mv", "find", "cpio", "mkdir", "rmdir", "rm", "cat", "sleep", "ls", "true", "env"];

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copy the host's tools and the shared libraries they need into `root`, at the same paths.
fn minimal_root(root: &Path) {
    for d in ["bin", "sbin", "lib", "lib64"] {
        let host = Path::new("/").join(d);
        match fs::read_link(&host) {
            Ok(target) => {
                fs::create_dir_all(root.join(d).parent().unwrap().join(&target)).unwrap();
                std::os::unix::fs::symlink(&target, root.join(d)).unwrap();
            }
            Err(_) => fs::create_dir_all(root.join(d)).unwrap(),
        }
    }
    for d in ["usr/bin", "tmp", "etc"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let mut files: Vec<String> = Vec::new();
    for tool in TOOLS {
        let path = sh(&format!("command -v {tool}")).trim().to_string();
        if !path.starts_with('/') {
            continue; // a shell builtin
        }
        files.push(path.clone());
        for lib in sh(&format!("ldd {path} || true")).split_whitespace().filter(|w| w.starts_with('/')) {
            files.push(lib.to_string());
        }
    }
    files.push("/bin/sh".into());
    files.sort();
    files.dedup();
    for f in files {
        let dest = root.join(f.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        if !dest.exists() {
            sh(&format!("cp -L '{f}' '{}'", dest.display()));
        }
    }
}

/// `bst source-bundle` of the fixture project, run hermetically.
fn make_bundle(work: &Path) -> PathBuf {
    let project = work.join("project");
    sh(&format!(
        "cp -r '{}' '{}'",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bst-project").display(),
        project.display()
    ));
    let home = work.join("home");
    fs::create_dir_all(home.join(".cache/buildstream/build")).unwrap();
    let out_dir = work.join("bundle-out");
    fs::create_dir_all(&out_dir).unwrap();
    let out = Command::new("bst")
        .args([
            "--directory",
            project.to_str().unwrap(),
            "source-bundle",
            "system.bst",
            "--directory",
            out_dir.to_str().unwrap(),
        ])
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let bundle = out_dir.join("system.tar.gz");
    assert!(
        out.status.success() && bundle.is_file(),
        "bst source-bundle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bundle
}

struct Printer;
impl Printer {
    fn emit(&self, e: Event) {
        let mut line = b"EVENT ".to_vec();
        line.extend(e.to_line());
        std::io::stdout().write_all(&line).unwrap();
        std::io::stdout().flush().unwrap();
    }
}
impl BuildObserver for Printer {
    fn module_started(&mut self, index: usize, total: usize, name: &str) {
        self.emit(Event::ModuleStarted { index, total, name: name.into() });
    }
    fn output(&mut self, _index: usize, _name: &str, _bytes: &[u8]) {}
    fn module_finished(&mut self, index: usize, name: &str, outcome: &ModuleOutcome, d: Duration) {
        self.emit(Event::ModuleFinished {
            index,
            name: name.into(),
            outcome: outcome.clone(),
            duration_ms: d.as_millis() as u64,
        });
    }
    fn resumed(&mut self, index: usize, name: &str, previous_boots: u32) {
        self.emit(Event::Resumed { module: name.into(), index, previous_boots });
    }
    fn warning(&mut self, message: &str) {
        self.emit(Event::Warning { message: message.into() });
    }
}

/// What the agent does, as the namespace's PID 1 (this test binary, run again).
#[test]
#[ignore = "entry point of the child processes the other tests start"]
fn child_entry() {
    let Ok(root) = std::env::var("STAGEHAND_RUN_ROOT") else {
        return;
    };
    let root = PathBuf::from(root);
    let path = std::env::var("STAGEHAND_RUN_BUNDLE").unwrap_or_else(|_| "/bundle/system.tar.gz".into());
    let bundle =
        open(&root, Path::new(&path), BundleKind::Auto, Path::new("/var/lib/stagehand/bundle")).unwrap();
    let mut cp =
        Checkpoint::open(&root.join("var/lib/stagehand"), bundle.identity(), &bundle.module_names()).unwrap();
    let mut config = RunnerConfig::new(&root, "/var/log/stagehand");
    for kv in std::env::var("STAGEHAND_RUN_ENV").unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap();
        config.env.push((k.into(), v.into()));
    }
    let p = Printer;
    p.emit(Event::Plan {
        bundle_kind: bundle.kind().to_string(),
        modules: bundle.module_names(),
        completed: cp.completed_names(),
    });
    let result = Runner::new(config).run(&*bundle, &mut cp, &mut Printer).unwrap();
    match result {
        RunResult::Completed { .. } => println!("RESULT completed"),
        RunResult::Failed(f) => {
            println!("RESULT failed {} {:?}\nTAIL<<{}>>", f.name, f.outcome.exit_code, f.log_tail)
        }
        RunResult::Stopped { module, .. } => println!("RESULT stopped {module}"),
    }
}

fn agent(root: &Path, env: &str) -> std::process::Child {
    agent_with(root, env, "/bundle/system.tar.gz")
}

fn agent_with(root: &Path, env: &str, bundle: &str) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    Command::new("unshare")
        .args(["--user", "--map-root-user", "--pid", "--mount", "--fork", "--kill-child=SIGKILL"])
        .arg(exe)
        .args(["--exact", "child_entry", "--nocapture", "--include-ignored", "--test-threads=1"])
        .env("STAGEHAND_RUN_ROOT", root)
        .env("STAGEHAND_RUN_ENV", env)
        .env("STAGEHAND_RUN_BUNDLE", bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run_agent(root: &Path, env: &str) -> String {
    run_agent_with(root, env, "/bundle/system.tar.gz")
}

fn run_agent_with(root: &Path, env: &str, bundle: &str) -> String {
    let out = agent_with(root, env, bundle).wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("RESULT"), "agent run failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    text
}

fn events(text: &str) -> Vec<Event> {
    text.lines()
        .filter_map(|l| l.split_once("EVENT ").map(|(_, json)| Event::from_line(json.as_bytes()).unwrap()))
        .collect()
}

fn started(evs: &[Event]) -> Vec<String> {
    evs.iter()
        .filter_map(|e| if let Event::ModuleStarted { name, .. } = e { Some(name.clone()) } else { None })
        .collect()
}

#[test]
fn a_real_buildstream_bundle_runs_resumes_and_retries() {
    if !(require_tool("bst") && require_tool("unshare") && require_tool("cpio") && require_tool("find")) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    minimal_root(&root);
    let bundle = make_bundle(t.path());
    fs::create_dir_all(root.join("bundle")).unwrap();
    fs::copy(&bundle, root.join("bundle/system.tar.gz")).unwrap();
    let tiny = root.join("usr/share/tiny");
    let logs = root.join("var/log/stagehand");

    // 1. Power cut while `greeting` runs: the whole namespace dies with SIGKILL.
    let mut child = agent(&root, "TINY_SLEEP=30");
    let t0 = Instant::now();
    while !fs::read_to_string(logs.join("03-greeting.log")).unwrap_or_default().contains("sleeping now") {
        assert!(t0.elapsed() < Duration::from_secs(60), "greeting never started");
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "agent ended early ({status}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let first = events(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(started(&first), vec!["base", "hello", "greeting"]);
    assert_eq!(fs::read_to_string(tiny.join("hello")).unwrap(), "hello\n");
    assert!(!tiny.join("greeting").exists());
    let state = fs::read_to_string(root.join("var/lib/stagehand/state.json")).unwrap();
    assert!(state.contains("\"current\"") && state.contains("\"name\": \"greeting\""), "{state}");

    // 2. Next boot: resume at greeting, finish the plan.
    let text = run_agent(&root, "");
    assert!(text.contains("RESULT completed"), "{text}");
    let second = events(&text);
    assert!(
        second.contains(&Event::Resumed { module: "greeting".into(), index: 2, previous_boots: 1 }),
        "{text}"
    );
    assert!(matches!(&second[0], Event::Plan { completed, .. } if completed == &["base", "hello"]), "{text}");
    assert_eq!(started(&second), vec!["greeting", "system"]);
    assert_eq!(fs::read_to_string(tiny.join("greeting")).unwrap(), "hello\nworld\n");
    assert_eq!(fs::read_to_string(tiny.join("system")).unwrap(), "done\n");
    assert_eq!(fs::read_to_string(root.join("etc/base-release")).unwrap(), "tiny base\n");
    for log in ["01-base.log", "02-hello.log", "03-greeting.log", "04-system.log"] {
        assert!(logs.join(log).is_file(), "{log} missing");
    }
    assert!(fs::read_to_string(logs.join("04-system.log")).unwrap().contains("Installing system"));

    // 3. A failing module stops the run with its log tail; a later run retries it.
    fs::remove_file(root.join("var/lib/stagehand/state.json")).unwrap();
    fs::remove_dir_all(&tiny).unwrap();
    let text = run_agent(&root, "TINY_FAIL=1");
    assert!(text.contains("RESULT failed greeting Some(1)"), "{text}");
    assert!(text.contains("greeting failing on purpose"), "the tail must show the error: {text}");
    assert!(!tiny.join("system").exists());
    let text = run_agent(&root, "");
    assert!(text.contains("RESULT completed"), "{text}");
    assert_eq!(started(&events(&text)), vec!["greeting", "system"]);
    assert!(tiny.join("system").is_file());
}

fn write_exec(p: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_morph_tree_installs_each_chunk_into_the_root() {
    if !(require_tool("unshare") && require_tool("cpio") && require_tool("find")) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    minimal_root(&root);
    write_exec(
        &root.join("native-bootstrap"),
        "#!/bin/sh\nset -eu\nexport PATH=/usr/bin:/bin:/usr/sbin:/sbin:/tools/bin:/tools/sbin\nexport SRCDIR=/src\nexport GREETING=\"hi there\"\n\
         if [ -d /zlib.inst/zlib.build ]; then rm -rf /zlib.inst; fi\nmkdir /zlib.inst\nenv DESTDIR=/zlib.inst $SRCDIR/build-zlib\n(cd /zlib.inst; find . | cpio -umdp /)\n\
         if [ -d /app.inst/app.build ]; then rm -rf /app.inst; fi\nmkdir /app.inst\nenv DESTDIR=/app.inst $SRCDIR/build-app\n(cd /app.inst; find . | cpio -umdp /)\n",
    );
    write_exec(&root.join("src/build-zlib"), "#!/bin/sh\nset -e\nmkdir -p $DESTDIR/zlib.build $DESTDIR/usr/lib\necho \"zlib $GREETING\" > $DESTDIR/usr/lib/libz.txt\n");
    // The second chunk needs what the first installed into /.
    write_exec(
        &root.join("src/build-app"),
        "#!/bin/sh\nset -e\nmkdir -p $DESTDIR/usr/bin\ncat /usr/lib/libz.txt > $DESTDIR/usr/bin/app.txt\n",
    );
    let text = run_agent_with(&root, "", "/native-bootstrap");
    assert!(text.contains("RESULT completed"), "{text}");
    assert_eq!(started(&events(&text)), vec!["zlib", "app"]);
    assert_eq!(fs::read_to_string(root.join("usr/bin/app.txt")).unwrap(), "zlib hi there\n");
    assert!(root.join("zlib.inst/usr/lib/libz.txt").is_file());
}
