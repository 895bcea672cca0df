//! Inputs and checks of the x86_64 scenarios (`tests/e2e/tests/x86_64.rs`): the real
//! `stagehand` binary and static agent, the e2e BuildStream project built with real `bst`,
//! the debootstrap stand-in stage 2, and readers of the output files (tar listing,
//! report.json). Slow inputs are made once per test process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use crate::{run, workspace};

/// BuildStream source bundles export this; the images clamp mtimes to it.
pub const SOURCE_DATE_EPOCH: u64 = 1_320_937_200;

/// The debootstrap stage 2 is a whole Debian root: it stays out of the packed sysroot like
/// Baserock's /tools, and the stage 3 installs under /usr/local.
pub const DEBIAN_STAGE2_EXCLUDES: &str = r#"exclude=["/etc","/var","/usr/bin","/usr/include","/usr/lib","/usr/lib64","/usr/libexec","/usr/sbin","/usr/share","/usr/src","/usr/games"]"#;

/// A scratch folder for one scenario under target/e2e/NAME, emptied first and kept
/// afterwards for inspection.
pub fn work_dir(name: &str) -> PathBuf {
    let dir = workspace().join("target/e2e").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the work folder");
    dir
}

/// `stagehand` built from this workspace (debug build; built once if missing or stale).
pub fn stagehand_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(Command::new(cargo).current_dir(workspace()).args(["build", "-q", "-p", "stagehand"]));
        workspace().join("target/debug/stagehand")
    })
}

pub fn stagehand() -> Command {
    let mut c = Command::new(stagehand_bin());
    c.env("HOME", bst_home());
    c.env("XDG_CACHE_HOME", bst_home().join("cache"));
    c.env("XDG_CONFIG_HOME", bst_home().join("config"));
    c.env("XDG_DATA_HOME", bst_home().join("data"));
    c
}

/// The static x86_64 agent (`stagehand agent build`, once per process).
pub fn agent() -> &'static Path {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT.get_or_init(|| {
        let out = workspace().join("target/e2e-agent/x86_64/stagehand-agent");
        run(stagehand().args(["agent", "build", "--target", "x86_64", "--out"]).arg(&out));
        out
    })
}

/// Hermetic HOME/XDG folders for bst (its cache survives between test runs).
fn bst_home() -> PathBuf {
    workspace().join("target/e2e-bst-home")
}

/// A copy of tests/fixtures/e2e-project with its busybox tree filled in.
pub fn project() -> &'static Path {
    static PROJECT: OnceLock<PathBuf> = OnceLock::new();
    PROJECT.get_or_init(|| {
        let dir = workspace().join("target/e2e-project");
        let _ = std::fs::remove_dir_all(&dir);
        run(Command::new("cp").arg("-a").arg(workspace().join("tests/fixtures/e2e-project")).arg(&dir));
        let tree = dir.join("files/busybox-tree");
        std::fs::create_dir_all(tree.join("bin")).unwrap();
        std::fs::create_dir_all(tree.join("usr")).unwrap();
        std::os::unix::fs::symlink("../bin", tree.join("usr/bin")).unwrap();
        std::fs::copy("/bin/busybox", tree.join("bin/busybox")).expect("/bin/busybox (busybox-static)");
        let list = run(Command::new("/bin/busybox").arg("--list"));
        for applet in
            String::from_utf8_lossy(&list.stdout).lines().filter(|a| !a.is_empty() && *a != "busybox")
        {
            std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).unwrap();
        }
        std::fs::create_dir_all(bst_home().join("cache/buildstream/build")).unwrap();
        dir
    })
}

/// The busybox stage 2: real `bst build` + `bst checkout` through `stagehand stage2`.
pub fn busybox_stage2() -> &'static Path {
    static STAGE2: OnceLock<PathBuf> = OnceLock::new();
    STAGE2.get_or_init(|| {
        let out = workspace().join("target/e2e-inputs/stage2-busybox");
        let _ = std::fs::create_dir_all(out.parent().unwrap());
        run(stagehand()
            .args(["stage2", "--target", "x86_64", "--force", "--project"])
            .arg(project())
            .arg("--out")
            .arg(&out));
        out
    })
}

/// A stage 3 bundle made by real `bst source-bundle` (`stagehand bundle`), base excepted.
pub fn bundle(element: &str) -> PathBuf {
    let name = element.trim_end_matches(".bst").replace('/', "-");
    let out = workspace().join("target/e2e-inputs").join(format!("{name}.tar.gz"));
    let _ = std::fs::create_dir_all(out.parent().unwrap());
    run(stagehand()
        .args(["bundle", "--target", "x86_64", "--force", "--except", "base.bst", "--project"])
        .arg(project())
        .arg(element)
        .arg("--out")
        .arg(&out));
    out
}

/// The debootstrap stage 2 with gcc, make and GNU cpio (cached tarball).
pub fn debian_stage2() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let out = run(Command::new("bash").arg(workspace().join("tests/e2e/make-stage2-debootstrap.sh")));
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// `stagehand image` with the agent of this workspace.
pub fn image(
    sysroot: &Path,
    bundle: &Path,
    channel: &str,
    format: &str,
    out: &Path,
    extra: &[&str],
) -> Output {
    let mut c = stagehand();
    c.args(["image", "--target", "x86_64", "--force", "--sysroot"]).arg(sysroot);
    c.arg("--bundle").arg(bundle).args(["--channel", channel, "--format", format, "--out"]).arg(out);
    c.arg("--agent").arg(agent());
    c.args(["--set", &format!("clamp_mtime={SOURCE_DATE_EPOCH}")]);
    c.args(extra);
    run(&mut c)
}

/// `tar -tvf --full-time --numeric-owner` of a (compressed) tarball: one line per entry.
pub fn tar_listing(tarball: &Path) -> Vec<String> {
    let out = run(Command::new("tar").args(["--full-time", "--numeric-owner", "-tvf"]).arg(tarball));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The entry names of a listing.
pub fn names(listing: &[String]) -> Vec<String> {
    listing.iter().map(|l| l.splitn(6, ' ').nth(5).unwrap_or_default().to_string()).collect()
}

/// One file out of a tarball.
pub fn tar_cat(tarball: &Path, member: &str) -> Vec<u8> {
    run(Command::new("tar").args(["-xOf"]).arg(tarball).arg(member)).stdout
}

pub fn report(run_dir: &Path) -> serde_json::Value {
    let path = run_dir.join("report.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Checks the verified tarball of a successful run and returns its path: the report's
/// sha256 and size equal `sha256sum`'s and the file's, the `.sha256` file agrees, no
/// `.partial` is left.
pub fn verified_sysroot(run_dir: &Path) -> PathBuf {
    let r = report(run_dir);
    assert_eq!(r["outcome"], "success", "{r:#}");
    let file = run_dir.join(r["sysroot"]["file"].as_str().expect("sysroot.file"));
    let sha = crate::sha256sum(&file);
    assert_eq!(r["sysroot"]["sha256"], sha.as_str(), "report.json sha256 vs sha256sum");
    assert_eq!(r["sysroot"]["size"], std::fs::metadata(&file).unwrap().len());
    let side = std::fs::read_to_string(file.with_extension("gz.sha256")).expect("the .sha256 file");
    assert!(side.starts_with(&sha), "{side}");
    assert!(!run_dir.join("sysroot.tar.gz.partial").exists());
    file
}

/// Names and statuses of report.json's modules.
pub fn module_statuses(r: &serde_json::Value) -> Vec<(String, String)> {
    r["modules"]
        .as_array()
        .expect("modules")
        .iter()
        .map(|m| {
            (m["name"].as_str().unwrap_or("").to_string(), m["status"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

/// The kernel must never see PID 1 exit, in any scenario.
pub fn assert_no_init_death(run_dir: &Path) {
    for name in ["console.log", "channel-console.log"] {
        if let Ok(text) = std::fs::read(run_dir.join(name)) {
            let text = String::from_utf8_lossy(&text);
            assert!(
                !text.contains("Attempted to kill init"),
                "{name} in {}: PID 1 exited",
                run_dir.display()
            );
            assert!(!text.contains("Kernel panic"), "{name} in {}: kernel panic", run_dir.display());
        }
    }
}

/// Wall time of a scenario, printed and appended to target/e2e/times.txt (run.sh sums it up).
pub struct Timer {
    name: String,
    start: Instant,
}

impl Timer {
    pub fn start(name: &str) -> Timer {
        Timer { name: name.to_string(), start: Instant::now() }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let secs = self.start.elapsed().as_secs_f64();
        let status = if std::thread::panicking() { "FAILED" } else { "ok" };
        let line = format!("{:<32} {:>7.1} s  {status}\n", self.name, secs);
        eprint!("e2e time: {line}");
        let path = workspace().join("target/e2e/times.txt");
        let _ = std::fs::create_dir_all(path.parent().unwrap());
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// Whether everything the x86_64 scenarios need is installed (false: skipped).
pub fn have_tools() -> bool {
    if stagehand_testkit::require_kernel().is_none() {
        return false;
    }
    stagehand_testkit::require_tools(&[
        "qemu-system-x86_64",
        "bst",
        "bwrap",
        "mke2fs",
        "busybox",
        "debootstrap",
        "unshare",
        "tar",
        "sha256sum",
    ])
}

/// Output text of a command for failure messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}
