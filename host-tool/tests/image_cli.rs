//! `stagehand image` in every format, and its refusals.

mod common;
use common::*;
use stagehand_testkit::require_tool;
use std::path::Path;

struct Inputs {
    dir: tempfile::TempDir,
}

impl Inputs {
    fn new() -> Inputs {
        let dir = tempfile::tempdir().unwrap();
        stage2_tree(&dir.path().join("sysroot"));
        bundle_tarball(dir.path());
        fake_agent(dir.path());
        Inputs { dir }
    }
    fn p(&self, n: &str) -> String {
        self.dir.path().join(n).to_string_lossy().into_owned()
    }
    fn image(&self, format: &str, out: &str, extra: &[&str]) -> std::process::Output {
        let mut args =
            vec!["image", "--target", "x86_64", "--channel", "serial:/dev/ttyS1,115200", "--format", format];
        let (s, b, a, o) = (self.p("sysroot"), self.p("bundle.tar.gz"), self.p("agent-bin"), self.p(out));
        args.extend(["--sysroot", &s, "--bundle", &b, "--agent", &a, "--out", &o]);
        args.extend(extra);
        stagehand().args(&args).output().unwrap()
    }
}

fn check_tree(root: &Path) {
    let init = std::fs::metadata(root.join("init")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(init.permissions().mode() & 0o7777, 0o755);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("etc/stagehand/agent.json")).unwrap()).unwrap();
    assert_eq!(cfg["target"], "x86_64");
    assert_eq!(cfg["bundle"], "/stagehand/bundle.tar.gz");
    assert_eq!(cfg["bundle_kind"], "buildstream");
    assert_eq!(cfg["channel"], "serial:/dev/ttyS1,115200");
    assert_eq!(cfg["on_success"], "poweroff");
    assert!(root.join("stagehand/bundle.tar.gz").is_file());
    assert!(std::fs::symlink_metadata(root.join("usr/bin")).unwrap().is_dir(), "fixups not applied");
}

#[test]
fn dir_image_has_agent_config_bundle_and_matching_keys() {
    let i = Inputs::new();
    let o = i.image(
        "dir",
        "root",
        &["--set", "nameserver=10.0.2.3", "--set", "one_way_repeats=3", "--on-failure", "shell"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let root = i.dir.path().join("root");
    check_tree(&root);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("etc/stagehand/agent.json")).unwrap()).unwrap();
    assert_eq!(cfg["nameserver"], serde_json::json!(["10.0.2.3"]));
    assert_eq!(cfg["one_way_repeats"], 3);
    assert_eq!(cfg["on_failure"], "shell");
    let inside = std::fs::read_to_string(root.join("etc/stagehand/key")).unwrap();
    let beside = std::fs::read_to_string(i.dir.path().join("root.key")).unwrap();
    assert_eq!(inside, beside);
    assert_eq!(inside.trim().len(), 64);
    let t = text(&o);
    assert!(
        t.contains("root=/dev/nfs nfsroot=HOST:") && t.contains("init=/init") && t.contains("console=ttyS0"),
        "{t}"
    );

    // A second image gets a different key; an existing output is refused without --force.
    let again = i.image("dir", "root", &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("already exists; pass --force"), "{}", text(&again));
    let forced = i.image("dir", "root", &["--force"]);
    assert!(forced.status.success(), "{}", text(&forced));
    assert_ne!(std::fs::read_to_string(i.dir.path().join("root.key")).unwrap(), beside);
}

#[test]
fn tar_image_unpacks_to_the_same_tree() {
    let i = Inputs::new();
    let o = i.image("tar", "root.tar.gz", &["--compress"]);
    assert!(o.status.success(), "{}", text(&o));
    let x = i.dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    assert!(std::process::Command::new("tar")
        .arg("-xzf")
        .arg(i.p("root.tar.gz"))
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap()
        .success());
    check_tree(&x);
    let list = std::process::Command::new("tar").arg("-tvzf").arg(i.p("root.tar.gz")).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.lines().all(|l| l.contains("0/0") || l.contains("root/root")), "owners not root: {list}");
}

#[test]
fn cpio_image_is_a_newc_initramfs_with_console() {
    if !require_tool("cpio") {
        return;
    }
    let i = Inputs::new();
    let o = i.image("cpio", "init.cpio.gz", &["--compress"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("rdinit=/init"));
    let gz = std::fs::read(i.p("init.cpio.gz")).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
    let mut child = std::process::Command::new("cpio")
        .args(["-itv", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let list = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        list.lines()
            .find(|l| l.ends_with(&format!(" {name}")) || l.contains(&format!(" {name} -> ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{list}"))
            .to_string()
    };
    assert!(line("init").starts_with("-rwxr-xr-x"), "{}", line("init"));
    let console = line("dev/console");
    assert!(
        console.starts_with("crw-------") && console.contains("5,") && console.contains(" 1 "),
        "{console}"
    );
    assert!(line("usr/bin/sh").starts_with("lrwxrwxrwx"));
    assert!(line("etc/stagehand/key").starts_with("-rw-------"));
    assert!(
        list.lines()
            .all(|l| l.split_whitespace().nth(2) == Some("root") || l.split_whitespace().nth(2) == Some("0")),
        "owners:\n{list}"
    );
    // Deterministic order: paths sorted, parents first.
    let names: Vec<&str> = list.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("etc") < pos("etc/stagehand") && pos("etc/stagehand") < pos("etc/stagehand/agent.json"));
}

#[test]
fn ext4_image_has_init() {
    if !require_tool("mke2fs") {
        return;
    }
    let i = Inputs::new();
    let o = i.image("ext4", "root.img", &["--size", "64M"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::metadata(i.p("root.img")).unwrap().len(), 64 << 20);
    assert!(text(&o).contains("root=/dev/vda rw init=/init"));
    let debugfs = if Path::new("/sbin/debugfs").exists() { "/sbin/debugfs" } else { "debugfs" };
    let ls =
        std::process::Command::new(debugfs).args(["-R", "ls -l /"]).arg(i.p("root.img")).output().unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    let init =
        ls.lines().find(|l| l.trim_end().ends_with(" init")).unwrap_or_else(|| panic!("no /init:\n{ls}"));
    assert!(init.contains("100755"), "{init}");
    let cat = std::process::Command::new(debugfs)
        .args(["-R", "cat /etc/stagehand/agent.json"])
        .arg(i.p("root.img"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&cat.stdout).contains("\"target\": \"x86_64\""));
    // Every group's inode table is zeroed already: no lazy init left for the guest.
    let dumpe2fs = if Path::new("/sbin/dumpe2fs").exists() { "/sbin/dumpe2fs" } else { "dumpe2fs" };
    let groups = std::process::Command::new(dumpe2fs).arg(i.p("root.img")).output().unwrap();
    let groups = String::from_utf8_lossy(&groups.stdout);
    let flags: Vec<&str> =
        groups.lines().filter(|l| l.starts_with("Group ") && l.contains(": (Blocks")).collect();
    assert!(!flags.is_empty() && flags.iter().all(|l| l.contains("ITABLE_ZEROED")), "{}", flags.join("\n"));
}

#[test]
fn bad_inputs_are_named() {
    let i = Inputs::new();
    let args = |target: &str, sysroot: String, bundle: String| {
        stagehand()
            .args([
                "image",
                "--target",
                target,
                "--channel",
                "console",
                "--format",
                "dir",
                "--agent",
                &i.p("agent-bin"),
                "--sysroot",
                &sysroot,
                "--bundle",
                &bundle,
                "--out",
                &i.p("o"),
            ])
            .output()
            .unwrap()
    };
    let o = args("vax", i.p("sysroot"), i.p("bundle.tar.gz"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("vax") && text(&o).contains("x86_64") && text(&o).contains("armv8l64"),
        "{}",
        text(&o)
    );
    let o = args("x86_64", i.p("nope"), i.p("bundle.tar.gz"));
    assert!(text(&o).contains("sysroot") && text(&o).contains("nope"), "{}", text(&o));
    let o = args("x86_64", i.p("sysroot"), i.p("nobundle.tar.gz"));
    assert!(text(&o).contains("bundle") && text(&o).contains("nobundle"), "{}", text(&o));
    std::fs::write(i.dir.path().join("junk.tar.gz"), b"junk").unwrap();
    let o = args("x86_64", i.p("sysroot"), i.p("junk.tar.gz"));
    assert!(text(&o).contains("does not look like a build bundle"), "{}", text(&o));
    let o = stagehand()
        .args([
            "image",
            "--target",
            "x86_64",
            "--channel",
            "carrier-pigeon",
            "--format",
            "dir",
            "--sysroot",
            &i.p("sysroot"),
            "--bundle",
            &i.p("bundle.tar.gz"),
            "--out",
            &i.p("o"),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "usage error");
    assert!(text(&o).contains("unknown kind \"carrier-pigeon\""), "{}", text(&o));
    assert!(!i.dir.path().join("o").exists());
}

#[test]
fn sysroot_tarball_is_accepted() {
    let i = Inputs::new();
    assert!(std::process::Command::new("tar")
        .arg("-czf")
        .arg(i.p("s.tar.gz"))
        .arg("-C")
        .arg(i.p("sysroot"))
        .arg(".")
        .status()
        .unwrap()
        .success());
    let o = stagehand()
        .args([
            "image",
            "--target",
            "x86_64",
            "--channel",
            "tcp:10.0.2.2:7000",
            "--format",
            "dir",
            "--agent",
            &i.p("agent-bin"),
            "--sysroot",
            &i.p("s.tar.gz"),
            "--bundle",
            &i.p("bundle.tar.gz"),
            "--out",
            &i.p("r"),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    check_tree_channel(&i.dir.path().join("r"), "tcp:10.0.2.2:7000");
}

fn check_tree_channel(root: &Path, channel: &str) {
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("etc/stagehand/agent.json")).unwrap()).unwrap();
    assert_eq!(cfg["channel"], channel);
    assert!(root.join("init").is_file());
}

#[test]
fn morph_tarball_carries_its_own_bundle() {
    let i = Inputs::new();
    // A Morph cross-bootstrap tarball: a root with /native-bootstrap and /src.
    let m = i.dir.path().join("morph");
    stage2_tree(&m);
    std::fs::create_dir_all(m.join("src")).unwrap();
    std::fs::write(m.join("native-bootstrap"), "#!/bin/sh\nset -eu\n").unwrap();
    assert!(std::process::Command::new("tar")
        .arg("-czf")
        .arg(i.p("morph.tar.gz"))
        .arg("-C")
        .arg(&m)
        .arg(".")
        .status()
        .unwrap()
        .success());
    let o = stagehand()
        .args([
            "image",
            "--target",
            "x86_64",
            "--channel",
            "console",
            "--format",
            "dir",
            "--agent",
            &i.p("agent-bin"),
            "--sysroot",
            &i.p("morph.tar.gz"),
            "--out",
            &i.p("r"),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(i.dir.path().join("r/etc/stagehand/agent.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["bundle"], "/native-bootstrap");
    assert_eq!(cfg["bundle_kind"], "morph");
    assert!(!i.dir.path().join("r/stagehand").exists());
    // Without --bundle, a sysroot that has no native-bootstrap is refused.
    let o = stagehand()
        .args([
            "image",
            "--target",
            "x86_64",
            "--channel",
            "console",
            "--format",
            "dir",
            "--agent",
            &i.p("agent-bin"),
            "--sysroot",
            &i.p("sysroot"),
            "--out",
            &i.p("r2"),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--bundle"), "{}", text(&o));
    assert!(!i.dir.path().join("r2").exists());
}

#[test]
fn folder_bundle_is_copied_in() {
    let i = Inputs::new();
    let o = stagehand()
        .args([
            "image",
            "--target",
            "x86_64",
            "--channel",
            "console",
            "--format",
            "dir",
            "--agent",
            &i.p("agent-bin"),
            "--sysroot",
            &i.p("sysroot"),
            "--bundle",
            &i.p("bundle-src/bootstrap-stage3-sysroot"),
            "--out",
            &i.p("r"),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(i.dir.path().join("r/stagehand/bundle/build.sh").is_file());
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(i.dir.path().join("r/etc/stagehand/agent.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["bundle"], "/stagehand/bundle");
    assert_eq!(cfg["bundle_kind"], "buildstream");
}

/// A valid value for every key of docs/config.md: the image is written with all of them.
const EVERY_SETTING: &[(&str, &str)] = &[
    ("mode", "pid1"),
    ("target", "x86_64"),
    ("bundle", "/stagehand/bundle.tar.gz"),
    ("bundle_kind", "buildstream"),
    ("channel", "serial:ttyS1,57600,flow=rtscts"),
    ("key_file", "/etc/stagehand/key"),
    ("on_success", "reboot"),
    ("on_failure", "shell"),
    ("modules", "e1000,virtio_net"),
    ("ip", "10.0.2.15::10.0.2.2:255.255.255.0:board:eth0:off"),
    ("root", "nfs:10.0.2.2:/export,vers=4.2,port=2049"),
    ("nameserver", "10.0.2.3,10.0.2.4"),
    ("hostname", "board-1"),
    ("remount_rw", "true"),
    ("state_dir", "/var/lib/stagehand"),
    ("logs_dir", "/var/log/stagehand"),
    ("exclude", "/proc,/tmp"),
    ("exclude_defaults", "false"),
    ("compression", "none"),
    ("gzip_level", "9"),
    ("threads", "2"),
    ("keep_copy", "/keep.tar"),
    ("clamp_mtime", "1320937200"),
    ("env", "MAKEFLAGS=-j2,LC_ALL=C"),
    ("path", "/usr/bin:/bin"),
    ("one_way_repeats", "3"),
    ("quiet_console", "false"),
    ("max_log_bytes", "1000"),
    ("console", "/dev/ttyS0"),
    ("shell", "/bin/bash"),
    ("stop_grace_secs", "3"),
];

#[test]
fn an_image_with_every_documented_setting_loads_in_the_agent_without_a_warning() {
    use stagehand_proto::config::{load_with, EndAction, Inputs as AgentInputs};
    let documented: Vec<&str> = stagehand_proto::config::key_names().collect();
    let covered: Vec<&str> = EVERY_SETTING.iter().map(|(k, _)| *k).collect();
    assert_eq!(covered, documented, "EVERY_SETTING must give a value for each key, in the table's order");

    let i = Inputs::new();
    let sets: Vec<String> = EVERY_SETTING.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut extra: Vec<&str> = vec!["--on-success", "halt", "--on-failure", "reboot"];
    for s in &sets {
        extra.extend(["--set", s]);
    }
    // one variable added to the env the table set (a later env= would replace them all)
    extra.extend(["--set", "env.CFLAGS=-O2 -g"]);
    let o = i.image("dir", "root", &extra);
    assert!(o.status.success(), "{}", text(&o));
    let cfg_path = i.dir.path().join("root/etc/stagehand/agent.json");
    let loaded = load_with(
        &AgentInputs { args: vec!["--config".into(), cfg_path.display().to_string()], ..Default::default() },
        |p| std::fs::read_to_string(p),
    );
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let c = loaded.config;
    assert_eq!(c.channel.to_string(), "serial:/dev/ttyS1,57600,flow=rtscts");
    // --set wins over the flags it repeats, as it is written after them
    assert_eq!((c.on_success, c.on_failure), (EndAction::Reboot, EndAction::Shell));
    assert_eq!(c.modules, ["e1000", "virtio_net"]);
    assert_eq!(c.nameserver, ["10.0.2.3", "10.0.2.4"]);
    assert_eq!(c.env.get("CFLAGS").map(String::as_str), Some("-O2 -g"));
    assert_eq!(c.env.get("LC_ALL").map(String::as_str), Some("C"));
    assert_eq!((c.gzip_level, c.threads, c.stop_grace_secs), (9, 2, 3));
    assert_eq!(c.clamp_mtime, Some(1320937200));
}

#[test]
fn channels_and_settings_the_agent_refuses_are_refused_with_one_line() {
    let i = Inputs::new();
    let image_with_channel = |channel: &str, out: &str| {
        let mut args = vec!["image", "--target", "x86_64", "--channel", channel, "--format", "dir"];
        let (s, b, a, o) = (i.p("sysroot"), i.p("bundle.tar.gz"), i.p("agent-bin"), i.p(out));
        args.extend(["--sysroot", &s, "--bundle", &b, "--agent", &a, "--out", &o]);
        stagehand().args(&args).output().unwrap()
    };
    for channel in
        ["tcp:10.0.2.2:0", "console,oneway", "console:/dev/ttyS0,flow=rtscts", "serial:/dev/ttyS1,20000000"]
    {
        let out = image_with_channel(channel, "refused");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{channel}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{channel}: {err}");
        assert!(err.contains(channel) && err.contains("--channel"), "{channel}: {err}");
        assert!(!i.dir.path().join("refused").exists());
    }
    for (set, needle) in
        [("gzip_level=12", "0 to 9"), ("ip=10.0.2.15/24", "ip="), ("nosuch=1", "unknown setting")]
    {
        let out = i.image("dir", "refused", &["--set", set]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{set}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{set}: {err}");
        assert!(err.contains(needle) && err.contains(set), "{set}: {err}");
        assert!(!i.dir.path().join("refused").exists());
    }
    // The kernel's spelling of a port names the device under /dev, on both sides.
    let out = image_with_channel("serial:ttyS1,115200", "kernel-spelling");
    assert!(out.status.success(), "{}", text(&out));
    let cfg = std::fs::read_to_string(i.dir.path().join("kernel-spelling/etc/stagehand/agent.json")).unwrap();
    assert!(cfg.contains("\"serial:/dev/ttyS1,115200\""), "{cfg}");
}
