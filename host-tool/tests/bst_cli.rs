//! `stagehand stage2` and `stagehand bundle` against Debian's real BuildStream 1.6, on the
//! fixture project in tests/fixtures/bst-project (HOME and XDG folders kept in a tempdir).

mod common;
use common::*;
use stagehand_testkit::{require_file, require_tool};
use std::path::{Path, PathBuf};

/// A copy of the fixture project with its busybox tree, and hermetic bst folders.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        if !require_tool("bst") || !require_tool("bwrap") {
            return None;
        }
        let busybox = Path::new("/bin/busybox");
        if !require_file(busybox, "apt-get install busybox-static") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/bst-project");
        let project = dir.path().join("project");
        assert!(std::process::Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&project)
            .status()
            .unwrap()
            .success());
        let tree = project.join("files/busybox-tree");
        std::fs::create_dir_all(tree.join("bin")).unwrap();
        std::fs::create_dir_all(tree.join("usr")).unwrap();
        std::os::unix::fs::symlink("../bin", tree.join("usr/bin")).unwrap();
        std::fs::copy(busybox, tree.join("bin/busybox")).unwrap();
        let list = std::process::Command::new(busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
            std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).unwrap();
        }
        Some(Fixture { dir })
    }

    fn project(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let home = self.dir.path().join("home");
        stagehand()
            .args(args)
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .output()
            .unwrap()
    }
}

#[test]
fn stage2_builds_checks_out_and_fixes_up() {
    let Some(f) = Fixture::new() else { return };
    let out = f.dir.path().join("stage2");
    let o = f.run(&[
        "stage2",
        "--target",
        "x86_64",
        "--project",
        f.project().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // The cache folder bst needs on a fresh machine was made.
    assert!(f.dir.path().join("home/cache/buildstream/build").is_dir());
    assert!(text(&o).contains("bst --option arch x86_64 build bootstrap/stage2-sysroot.bst"));
    assert!(out.join("tools/bin/busybox").is_file());
    assert_eq!(std::fs::read_to_string(out.join("etc/stage2-release")).unwrap(), "stage2 for x86_64\n");
    let usr_bin = std::fs::symlink_metadata(out.join("usr/bin")).unwrap();
    assert!(usr_bin.is_dir(), "usr/bin is still a symlink");
    assert_eq!(std::fs::read_link(out.join("usr/bin/sh")).unwrap(), Path::new("/tools/bin/sh"));
    assert!(
        std::fs::symlink_metadata(out.join("usr/bin/bash")).is_err(),
        "no bash in /tools/bin, so no link"
    );
    for d in ["dev", "proc", "sys", "tmp", "run"] {
        assert!(out.join(d).is_dir(), "/{d} missing");
    }
    // The out folder is not replaced without --force.
    let again = f.run(&[
        "stage2",
        "--target",
        "x86_64",
        "--project",
        f.project().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("--force"));
}

#[test]
fn bundle_runs_source_bundle() {
    let Some(f) = Fixture::new() else { return };
    let out = f.dir.path().join("stage3.tar.gz");
    let o = f.run(&[
        "bundle",
        "--project",
        f.project().to_str().unwrap(),
        "--target",
        "x86_64",
        "bootstrap/stage3-sysroot.bst",
        "--except",
        "base.bst",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let list = std::process::Command::new("tar").arg("-tzf").arg(&out).output().unwrap();
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(names.contains("bootstrap-stage3-sysroot/build.sh"), "{names}");
    for m in ["stage3-hello", "stage3-greet", "stage3-tools"] {
        assert!(names.contains(&format!("source/build-{m}")), "{m} missing: {names}");
    }
    assert!(!names.contains("build-base"), "--except base.bst was not applied: {names}");
    let script = std::process::Command::new("tar")
        .arg("-xzOf")
        .arg(&out)
        .arg("bootstrap-stage3-sysroot/build.sh")
        .output()
        .unwrap();
    let script = String::from_utf8_lossy(&script.stdout);
    let order = script.lines().find(|l| l.trim_start().starts_with("for module in")).unwrap();
    let pos = |m: &str| order.find(m).unwrap();
    assert!(
        pos("stage3-hello") < pos("stage3-greet") && pos("stage3-greet") < pos("stage3-tools"),
        "{order}"
    );
}

#[test]
fn project_errors_are_clear() {
    let Some(f) = Fixture::new() else { return };
    let p = f.project();
    let out = f.dir.path().join("x");
    let o = f.run(&[
        "stage2",
        "--target",
        "x86_64",
        "--project",
        p.to_str().unwrap(),
        "--element",
        "nope.bst",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("has no element nope.bst"), "{}", text(&o));
    let o = f.run(&[
        "stage2",
        "--target",
        "mips64b",
        "--project",
        p.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("does not list 'mips64b'"), "{}", text(&o));
    let conf = std::fs::read_to_string(p.join("project.conf")).unwrap();
    std::fs::write(p.join("project.conf"), conf.split("options:").next().unwrap()).unwrap();
    let o = f.run(&[
        "bundle",
        "--project",
        p.to_str().unwrap(),
        "--target",
        "x86_64",
        "bootstrap/stage3-sysroot.bst",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no 'arch' option"), "{}", text(&o));
}

#[test]
fn missing_bst_says_how_to_install_it() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("project.conf"), "name: x\n").unwrap();
    let o = stagehand()
        .args([
            "stage2",
            "--target",
            "x86_64",
            "--project",
            d.path().to_str().unwrap(),
            "--out",
            d.path().join("o").to_str().unwrap(),
        ])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("apt-get install buildstream bubblewrap"), "{}", text(&o));
}
