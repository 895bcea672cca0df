//! Other architectures end to end: a stand-in stage 2 made of the target's own Debian
//! busybox-static, a BuildStream-shaped stage 3 bundle whose modules record where they
//! ran, `stagehand image` with the target kernel's modules, `stagehand qemu`, and checks
//! on what was collected.

use crate::{cache_dir, need, require_tool, run, sha256sum, workspace};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{LazyLock, OnceLock};

/// One architecture as the scenarios need it, read from the host tool's own table
/// (`targets/*.json`), so the suites never copy a target's facts.
#[derive(Clone, Debug)]
pub struct Cross {
    /// Baserock name (`--target`).
    pub target: String,
    /// Folder name of `scripts/kernels.sh` (and its argument).
    pub kernel: String,
    /// Debian architecture (busybox-static:<deb_arch>).
    pub deb_arch: String,
    /// `uname -m` on the emulated machine.
    pub uname_m: String,
    /// qemu-user binary that runs the target's busybox on the host (for its applet list);
    /// empty for the host's own architecture.
    pub qemu_user: String,
    pub qemu_system: String,
}

impl Cross {
    /// The scenario facts of `target`, from the architecture table.
    pub fn of(target: &str) -> Cross {
        let t = stagehand::targets::lookup(target).unwrap_or_else(|e| panic!("{e:#}"));
        let qemu_user = match &t.rust {
            stagehand::targets::RustAgent::Available(r) => r.qemu_user.clone().unwrap_or_default(),
            stagehand::targets::RustAgent::Unavailable { .. } => String::new(),
        };
        Cross {
            kernel: t
                .kernel
                .cache_name
                .clone()
                .unwrap_or_else(|| panic!("targets/{target}.json: no kernel.cache_name")),
            deb_arch: t
                .kernel
                .debian_arch
                .clone()
                .unwrap_or_else(|| panic!("targets/{target}.json: no kernel.debian_arch")),
            uname_m: t.uname_m[0].clone(),
            qemu_user: if t.name == "x86_64" { String::new() } else { qemu_user },
            qemu_system: t.qemu.binary.clone(),
            target: t.name,
        }
    }
}

pub static ARMV8L64: LazyLock<Cross> = LazyLock::new(|| Cross::of("armv8l64"));
pub static PPC64L: LazyLock<Cross> = LazyLock::new(|| Cross::of("ppc64l"));
pub static ARMV7LHF: LazyLock<Cross> = LazyLock::new(|| Cross::of("armv7lhf"));
pub static X86_64: LazyLock<Cross> = LazyLock::new(|| Cross::of("x86_64"));

/// The `stagehand` binary of this workspace, built once per test process.
pub fn stagehand() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("STAGEHAND_BIN") {
            return PathBuf::from(p);
        }
        let root = workspace();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run(Command::new(cargo).current_dir(&root).args(["build", "-q", "-p", "stagehand"]));
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
        target.join("debug/stagehand")
    })
    .clone()
}

/// The cached kernel's `modules/<version>` folder, when `scripts/kernels.sh` made it.
pub fn kernel_modules(c: &Cross) -> Option<PathBuf> {
    let dir = cache_dir().join("kernels").join(&c.kernel);
    let version = std::fs::read_to_string(dir.join("version")).ok()?;
    let m = dir.join("modules").join(version.trim());
    (dir.join("vmlinuz").is_file() && m.join("modules.dep").is_file()).then_some(m)
}

/// Everything a scenario for `c` needs, or false with the reason (a failure under
/// STAGEHAND_NO_SKIP).
pub fn ready(c: &Cross) -> bool {
    for tool in [c.qemu_system.as_str(), c.qemu_user.as_str()].into_iter().filter(|t| !t.is_empty()) {
        if !require_tool(tool) {
            return false;
        }
    }
    need(
        kernel_modules(c).is_some(),
        &format!("no {} kernel in the cache", c.target),
        &format!("run scripts/kernels.sh {}", c.kernel),
    )
}

/// Debian's busybox-static for `c`, fetched once into the cache with the private apt
/// configuration `scripts/kernels.sh` keeps for that architecture (x86_64: the host's).
pub fn busybox(c: &Cross) -> PathBuf {
    if c.deb_arch == "amd64" {
        return PathBuf::from("/bin/busybox");
    }
    // Scenarios run in parallel threads: one download at a time.
    static DOWNLOAD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = DOWNLOAD.lock().unwrap_or_else(|p| p.into_inner());
    let dir = cache_dir().join("busybox").join(&c.deb_arch);
    let bin = dir.join("bin/busybox");
    if bin.is_file() {
        return bin;
    }
    let conf = cache_dir().join("apt").join(&c.deb_arch).join("apt.conf");
    assert!(
        conf.is_file(),
        "{} is missing: run scripts/kernels.sh {} first (it writes the private apt configuration)",
        conf.display(),
        c.kernel
    );
    let work = dir.with_extension("download");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    run(Command::new("apt-get").current_dir(&work).env("APT_CONFIG", &conf).args([
        "download",
        "-qq",
        &format!("busybox-static:{}", c.deb_arch),
    ]));
    let deb = std::fs::read_dir(&work)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("apt-get download left no .deb");
    let unpacked = work.join("x");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy(unpacked.join("bin/busybox"), &bin).unwrap();
    let _ = std::fs::remove_dir_all(&work);
    bin
}

/// A stage-2-shaped tree of the target's busybox: /tools/bin with every applet,
/// /usr/bin -> /tools/bin, /bin -> tools/bin (as Baserock's stage 2 is laid out).
pub fn busybox_stage2(c: &Cross, root: &Path) {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let bb = busybox(c);
    let bin = root.join("tools/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(root.join("usr")).unwrap();
    std::fs::copy(&bb, bin.join("busybox")).unwrap();
    std::fs::set_permissions(bin.join("busybox"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let list = if c.qemu_user.is_empty() {
        run(Command::new(&bb).arg("--list"))
    } else {
        run(Command::new(&c.qemu_user).arg(&bb).arg("--list"))
    };
    let applets = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(applets.lines().any(|a| a == "sh"), "{} --list has no sh", bb.display());
    for a in applets.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        symlink("busybox", bin.join(a)).unwrap();
    }
    symlink("/tools/bin", root.join("usr/bin")).unwrap();
    symlink("tools/bin", root.join("bin")).unwrap();
}

/// Where the bundle's modules leave their marks (paths inside the sysroot).
pub const MARK_UNAME: &str = "usr/share/stage3/uname-m";
pub const MARK_HELLO: &str = "usr/share/stage3/hello";
pub const HELLO_TEXT: &str = "stage 3 was built on the target";

/// `build-probe`: records `uname -m` and the kernel's idea of the machine.
pub fn probe_module() -> (&'static str, String) {
    ("probe", format!("#!/bin/sh\nset -e\nmkdir -p /usr/share/stage3\nuname -m > /{MARK_UNAME}\necho \"probe: $(uname -m), $(uname -r)\"\n"))
}

/// `build-hello`: writes a file from the probe's output.
pub fn hello_module() -> (&'static str, String) {
    ("hello", format!("#!/bin/sh\nset -e\necho '{HELLO_TEXT}' > /{MARK_HELLO}\ncat /{MARK_UNAME} >> /{MARK_HELLO}\necho built hello\n"))
}

/// A stage 3 bundle in BuildStream's source-bundle layout whose `build.sh` runs
/// `source/build-NAME` for each module in order.
pub fn bundle_of(out: &Path, modules: &[(&str, String)]) {
    let top = out.with_extension("d").join("stage3");
    let _ = std::fs::remove_dir_all(top.parent().unwrap());
    std::fs::create_dir_all(top.join("source")).unwrap();
    let w = |p: &str, s: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(top.join(p), s).unwrap();
        std::fs::set_permissions(top.join(p), std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let names: Vec<&str> = modules.iter().map(|(n, _)| *n).collect();
    w("build.sh", &format!("#!/bin/sh\nset -eu\nexport PATH='/usr/bin:/usr/sbin:/sbin:/bin:/tools/bin:/tools/sbin'\nexport SRCDIR='./source'\nfor module in {} ; do\n    CURRENT_MODULE=\"$module\"\n    \"$SRCDIR/build-$module\"\ndone\n", names.join(" ")));
    for (name, script) in modules {
        w(&format!("source/build-{name}"), script);
    }
    run(Command::new("tar").arg("-czf").arg(out).arg("-C").arg(top.parent().unwrap()).arg("stage3"));
}

/// The two-module bundle of the cross scenarios: `probe`, then `hello`.
pub fn stage3_bundle(out: &Path) {
    bundle_of(out, &[probe_module(), hello_module()]);
}

/// `stagehand image` for `c`: a gzip initramfs carrying the kernel's modules.
pub fn make_image(c: &Cross, work: &Path, channel: &str) -> PathBuf {
    let stage2 = work.join("stage2");
    if !stage2.exists() {
        busybox_stage2(c, &stage2);
    }
    let bundle = work.join("stage3.tar.gz");
    stage3_bundle(&bundle);
    let image = work.join("image.cpio.gz");
    write_image(c, &stage2, &bundle, channel, &image);
    image
}

/// `stagehand image --format cpio --compress` of `stage2` and `bundle` for `c`, with the
/// kernel modules the channel needs, into `image`.
pub fn write_image(c: &Cross, stage2: &Path, bundle: &Path, channel: &str, image: &Path) {
    let modules = kernel_modules(c).expect("checked by ready()");
    // `stagehand image` builds the agent when it is stale: one build (and copy) at a time.
    static IMAGE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = IMAGE.lock().unwrap_or_else(|p| p.into_inner());
    run(Command::new(stagehand())
        .args([
            "image",
            "--target",
            &c.target,
            "--format",
            "cpio",
            "--compress",
            "--force",
            "--channel",
            channel,
        ])
        .arg("--sysroot")
        .arg(stage2)
        .arg("--bundle")
        .arg(bundle)
        .arg("--kernel-modules")
        .arg(&modules)
        .arg("--out")
        .arg(image));
}

/// `stagehand qemu` for `c` with `channel` (serial, console or tcp); returns the run folder
/// and the wall time.
pub fn boot_and_collect(
    c: &Cross,
    image: &Path,
    channel: &str,
    out: &Path,
    extra: &[&str],
) -> std::time::Duration {
    let started = std::time::Instant::now();
    let o = run(Command::new(stagehand())
        .args(["qemu", "--target", c.target.as_str(), "--channel", channel, "--timeout", "300", "--force"])
        .arg("--image")
        .arg(image)
        .arg("--out")
        .arg(out)
        .args(extra));
    let took = started.elapsed();
    eprintln!(
        "{} --channel {channel}: boot to verified tarball in {:.1} s\n{}",
        c.target,
        took.as_secs_f64(),
        String::from_utf8_lossy(&o.stdout)
    );
    took
}

/// Checks what `stagehand qemu` left in `out`: a successful report for `c`, a tarball whose
/// sha256 (recomputed by sha256sum) matches the report, its `.sha256` and `sysroot.bst`,
/// and the marks the bundle made on the target.
pub fn verify_run(c: &Cross, out: &Path) {
    verify_transfer(c, out, &["probe", "hello"]);
    let tarball = out.join("sysroot.tar.gz");
    let listing = tar_listing(&tarball);
    for m in [MARK_UNAME, MARK_HELLO] {
        assert!(listing.lines().any(|l| l == format!("./{m}")), "{m} not in the tarball:\n{listing}");
    }
    let hello = tar_file(&tarball, MARK_HELLO);
    assert_eq!(
        hello,
        format!("{HELLO_TEXT}\n{}\n", c.uname_m),
        "the bundle did not run on a {} machine",
        c.uname_m
    );
}

/// The report and the verified tarball of a successful run whose modules are `modules`;
/// returns report.json.
pub fn verify_transfer(c: &Cross, out: &Path, module_names: &[&str]) -> serde_json::Value {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json"))
            .expect("report.json is JSON");
    assert_eq!(report["outcome"], "success", "report.json: {report}");
    assert_eq!(report["target"], c.target);
    assert_eq!(report["mode"], "pid1");
    let kernel = report["kernel"].as_str().unwrap_or_default().to_string();
    assert!(kernel.ends_with(c.uname_m.as_str()), "kernel in report.json: {kernel}");
    let tarball = out.join("sysroot.tar.gz");
    assert!(tarball.is_file(), "no verified tarball in {}", out.display());
    assert!(!out.join("sysroot.tar.gz.partial").exists());
    let sum = sha256sum(&tarball);
    assert_eq!(report["sysroot"]["sha256"], sum.as_str(), "report.json sha256");
    let side = std::fs::read_to_string(out.join("sysroot.tar.gz.sha256")).unwrap();
    assert!(side.starts_with(&sum), "sysroot.tar.gz.sha256: {side}");
    let bst = std::fs::read_to_string(out.join("sysroot.bst")).unwrap();
    assert!(bst.contains(&format!("ref: {sum}")), "sysroot.bst: {bst}");
    assert_eq!(report["sysroot"]["size"], std::fs::metadata(&tarball).unwrap().len());
    let modules = report["modules"].as_array().expect("modules in report.json");
    let names: Vec<&str> = modules.iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names, module_names);
    assert!(modules.iter().all(|m| m["status"] == "success" && m["exit_code"] == 0), "modules: {modules:?}");
    for (i, m) in modules.iter().enumerate() {
        let log = out.join(m["log"].as_str().unwrap_or_default());
        assert!(
            std::fs::metadata(&log).is_ok_and(|l| l.len() > 0),
            "log of module {i} ({}) is empty or missing",
            log.display()
        );
    }
    report
}

/// `tar -tzf`.
pub fn tar_listing(tarball: &Path) -> String {
    String::from_utf8_lossy(&run(Command::new("tar").arg("-tzf").arg(tarball)).stdout).to_string()
}

/// One file of the tarball (`path` without the leading `./`).
pub fn tar_file(tarball: &Path, path: &str) -> String {
    String::from_utf8_lossy(
        &run(Command::new("tar").arg("-xzOf").arg(tarball).arg(format!("./{path}"))).stdout,
    )
    .to_string()
}

/// A scratch folder that stays (under target/) when the test fails, for its logs.
pub fn scratch(name: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"));
    let d = target.join("e2e").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
