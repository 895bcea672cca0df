//! Netboot end to end, in the default suite: a folder image (`stagehand image --format
//! dir`) served by the host tool's own NFSv4 server on loopback, the agent's initramfs
//! (agent + NIC and NFS modules) booted under QEMU, DHCP from QEMU's user-mode network, the
//! agent mounting the folder as its root and switching to it, the build running there.

use stagehand_e2e::cross::{self, stagehand, Cross, ARMV8L64, X86_64};
use stagehand_e2e::{child_named, run};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A bundle of three modules: `probe`, `slow` (sleeps for `e2e.sleep=N` of the kernel
/// command line, none by default) and `hello`.
fn slow_bundle(out: &Path) {
    let slow = "#!/bin/sh\nset -e\nsecs=$(tr ' ' '\\n' </proc/cmdline | sed -n 's/^e2e.sleep=//p')\necho \"slow: started (sleep ${secs:-0})\"\nsleep \"${secs:-0}\"\necho slow: done\n";
    cross::bundle_of(out, &[cross::probe_module(), ("slow", slow.to_string()), cross::hello_module()]);
}

/// `stagehand image --format dir` of a busybox stage 2 and the slow bundle.
fn folder_image(c: &Cross, work: &Path, channel: &str) -> PathBuf {
    let stage2 = work.join("stage2");
    cross::busybox_stage2(c, &stage2);
    let bundle = work.join("stage3.tar.gz");
    slow_bundle(&bundle);
    let image = work.join("image");
    run(Command::new(stagehand())
        .args(["image", "--target", &c.target, "--format", "dir", "--force", "--channel", channel])
        .arg("--sysroot")
        .arg(&stage2)
        .arg("--bundle")
        .arg(&bundle)
        .arg("--out")
        .arg(&image));
    image
}

fn netboot(c: &Cross, image: &Path, out: &Path, append: Option<&str>) -> Command {
    let mut cmd = Command::new(stagehand());
    cmd.args(["qemu", "--target", &c.target, "--root", "nfs", "--channel", "serial", "--timeout", "300"]);
    cmd.arg("--image").arg(image).arg("--out").arg(out);
    if let Some(a) = append {
        cmd.args(["--append", a]);
    }
    cmd
}

/// What every netboot run must show: the DHCP lease, the NFS mount and the switch in the
/// agent's log, the build's files in the exported folder, and the verified tarball.
fn verify_netboot(c: &Cross, image: &Path, out: &Path) {
    let report = cross::verify_transfer(c, out, &["probe", "slow", "hello"]);
    let agent_log = std::fs::read_to_string(out.join("agent.log")).unwrap_or_default();
    for needle in ["lease 10.0.2.15", "mounted nfs4 10.0.2.2:/export on /newroot", "switched to nfs:"] {
        assert!(agent_log.contains(needle), "agent.log lacks {needle:?}:\n{agent_log}");
    }
    let hello = format!("{}\n{}\n", cross::HELLO_TEXT, c.uname_m);
    assert_eq!(
        std::fs::read_to_string(image.join(cross::MARK_HELLO)).unwrap_or_default(),
        hello,
        "the build's file is not in the exported folder"
    );
    let tarball = out.join("sysroot.tar.gz");
    let listing = cross::tar_listing(&tarball);
    for m in [cross::MARK_UNAME, cross::MARK_HELLO] {
        assert!(listing.lines().any(|l| l == format!("./{m}")), "{m} not in the tarball:\n{listing}");
    }
    assert_eq!(cross::tar_file(&tarball, cross::MARK_HELLO), hello);
    assert_eq!(report["sysroot"]["size"], std::fs::metadata(&tarball).unwrap().len());
}

#[test]
#[ignore = "boots QEMU for tens of seconds: run by tests/e2e/run.sh"]
fn x86_64_netboot_nfs4_dhcp_power_cut_resumes_from_the_nfs_root() {
    if !cross::ready(&X86_64) || !stagehand_e2e::require_tool("ganesha.nfsd") {
        return;
    }
    let started = Instant::now();
    let work = cross::scratch("netboot-x86_64");
    let image = folder_image(&X86_64, &work, "serial:/dev/ttyS1,115200");
    let out = work.join("run");
    // First boot: the slow module sleeps 600 s; cut the power once it has started.
    let mut first = netboot(&X86_64, &image, &out, Some("e2e.sleep=600"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stagehand qemu");
    let slow_log = out.join("logs/02-slow.log");
    let t = Instant::now();
    while !std::fs::read_to_string(&slow_log).is_ok_and(|l| l.contains("slow: started")) {
        if t.elapsed() > Duration::from_secs(240) || first.try_wait().unwrap().is_some() {
            let _ = first.kill();
            let o = first.wait_with_output().unwrap();
            panic!(
                "the slow module did not start:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let qemu = child_named(first.id(), "qemu-system-x86").expect("QEMU under stagehand qemu");
    run(Command::new("kill").args(["-KILL", &qemu.to_string()]));
    let o = first.wait_with_output().unwrap();
    assert!(!o.status.success(), "a cut run cannot succeed");
    assert!(!out.join("sysroot.tar.gz").exists());
    // The checkpoint lives on the NFS root, in the exported folder.
    assert!(
        std::fs::read_dir(image.join("var/lib/stagehand")).is_ok_and(|d| d.count() > 0),
        "no checkpoint in the exported folder"
    );
    let cut = started.elapsed();

    // Second boot of the same folder into the same collection: resumes at the slow module.
    let o = run(&mut netboot(&X86_64, &image, &out, None));
    eprintln!("{}", String::from_utf8_lossy(&o.stdout));
    verify_netboot(&X86_64, &image, &out);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let resumes = r["resumes"].as_array().expect("resumes");
    assert_eq!(resumes.len(), 1, "{r:#}");
    assert_eq!(resumes[0]["module"], "slow");
    assert_eq!(r["boot_ids"].as_array().map(Vec::len), Some(2), "{r:#}");
    // The server stopped with the run: nothing listens on loopback for NFS any more.
    let nfs_log = std::fs::read_to_string(out.join("nfs-server.log")).unwrap_or_default();
    assert!(!nfs_log.is_empty(), "no nfs-server.log kept");
    eprintln!(
        "x86_64 netboot: cut after {:.1} s, whole scenario {:.1} s",
        cut.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
#[ignore = "boots QEMU for tens of seconds: run by tests/e2e/run.sh"]
fn arm64_netboot_nfs4_root() {
    if !cross::ready(&ARMV8L64) || !stagehand_e2e::require_tool("ganesha.nfsd") {
        return;
    }
    let started = Instant::now();
    let work = cross::scratch("netboot-arm64");
    let image = folder_image(&ARMV8L64, &work, "serial:/dev/vport0p1");
    let out = work.join("run");
    let o = run(&mut netboot(&ARMV8L64, &image, &out, None));
    eprintln!("{}", String::from_utf8_lossy(&o.stdout));
    verify_netboot(&ARMV8L64, &image, &out);
    eprintln!("arm64 netboot: {:.1} s", started.elapsed().as_secs_f64());
}
