//! `stagehand qemu` plumbing with a real kernel: an initramfs whose /init is a busybox
//! script that writes to the channel port and powers off. No agent speaks, so the run is a
//! transfer failure, but the console, the channel text and QEMU's stop are all checked.

mod common;
use common::*;
use stagehand_testkit::{require_file, require_kernel, require_tool, require_x86_64_host};

#[test]
fn boots_an_initramfs_and_stops_when_the_guest_powers_off() {
    if !require_x86_64_host()
        || !require_tool("qemu-system-x86_64")
        || require_kernel().is_none()
        || !require_file(std::path::Path::new("/bin/busybox"), "apt-get install busybox-static")
    {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n).to_string_lossy().into_owned();
    let s = d.path().join("s");
    std::fs::create_dir_all(s.join("tools/bin")).unwrap();
    std::fs::create_dir_all(s.join("usr")).unwrap();
    std::fs::copy("/bin/busybox", s.join("tools/bin/busybox")).unwrap();
    for a in ["sh", "mount", "echo", "poweroff"] {
        std::os::unix::fs::symlink("busybox", s.join("tools/bin").join(a)).unwrap();
    }
    std::fs::write(d.path().join("init.sh"), "#!/tools/bin/sh\n/tools/bin/mount -t devtmpfs none /dev\necho hello-from-init > /dev/ttyS1\n/tools/bin/poweroff -f\n").unwrap();
    bundle_tarball(d.path());
    let o = run(&[
        "image",
        "--target",
        "x86_64",
        "--sysroot",
        &p("s"),
        "--bundle",
        &p("bundle.tar.gz"),
        "--agent",
        &p("init.sh"),
        "--channel",
        "serial:/dev/ttyS1",
        "--format",
        "cpio",
        "--compress",
        "--out",
        &p("img.cpio.gz"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let start = std::time::Instant::now();
    let o = run(&[
        "qemu",
        "--target",
        "x86_64",
        "--image",
        &p("img.cpio.gz"),
        "--out",
        &p("run"),
        "--timeout",
        "90",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(start.elapsed().as_secs() < 60, "QEMU was not stopped when the guest powered off");
    let console = std::fs::read_to_string(d.path().join("run/console.log")).unwrap();
    assert!(console.contains("Run /init as init process"), "{console}");
    let channel = std::fs::read_to_string(d.path().join("run/channel-console.log")).unwrap();
    assert!(channel.contains("hello-from-init"), "{channel}");
    assert!(text(&o).contains("transfer failed"));
}

#[test]
fn refuses_folders_and_unknown_images() {
    let d = tempfile::tempdir().unwrap();
    write_key(&d.path().join("k"), &stagehand_proto::wire::Key([3; 32]));
    let o = run(&[
        "qemu",
        "--target",
        "x86_64",
        "--image",
        d.path().to_str().unwrap(),
        "--key",
        d.path().join("k").to_str().unwrap(),
        "--out",
        d.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--format cpio"), "{}", text(&o));
    let o = run(&[
        "qemu",
        "--target",
        "nonesuch",
        "--image",
        d.path().to_str().unwrap(),
        "--out",
        d.path().join("o").to_str().unwrap(),
    ]);
    assert!(text(&o).contains("unknown architecture"), "{}", text(&o));
}
