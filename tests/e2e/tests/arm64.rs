//! armv8l64 end to end, in the default suite: Debian's arm64 busybox as stage 2, the static
//! aarch64 agent as /init, Debian's arm64 kernel under qemu-system-aarch64 (virt,
//! cortex-a57), a stage 3 bundle run on the emulated machine, and the verified sysroot
//! tarball collected on the host over a link apart from the console (virtio-serial) and
//! over the console itself.

use stagehand_e2e::cross::{self, ARMV8L64};

#[test]
#[ignore = "boots QEMU for tens of seconds: run by tests/e2e/run.sh"]
fn arm64_virtio_serial_channel_apart_from_the_console() {
    if !cross::ready(&ARMV8L64) {
        return;
    }
    let work = cross::scratch("arm64-virtio-serial");
    let image = cross::make_image(&ARMV8L64, &work, "serial:/dev/vport0p1");
    let out = work.join("run");
    cross::boot_and_collect(&ARMV8L64, &image, "serial", &out, &[]);
    cross::verify_run(&ARMV8L64, &out);
    // The kernel's own console went to its own file, the channel carried only frames.
    let console = std::fs::read_to_string(out.join("console.log")).unwrap_or_default();
    assert!(console.contains("Linux version"), "console.log has no kernel banner:\n{console}");
    let agent_log = std::fs::read_to_string(out.join("agent.log")).unwrap_or_default();
    assert!(agent_log.contains("virtio_console"), "agent.log does not show the module load:\n{agent_log}");
}

#[test]
#[ignore = "boots QEMU for tens of seconds: run by tests/e2e/run.sh"]
fn arm64_channel_shared_with_the_console() {
    if !cross::ready(&ARMV8L64) {
        return;
    }
    let work = cross::scratch("arm64-console");
    let image = cross::make_image(&ARMV8L64, &work, "console");
    let out = work.join("run");
    cross::boot_and_collect(&ARMV8L64, &image, "console", &out, &[]);
    cross::verify_run(&ARMV8L64, &out);
    let console = std::fs::read_to_string(out.join("console.log")).unwrap_or_default();
    assert!(console.contains("Linux version"), "console.log has no kernel banner:\n{console}");
}

#[test]
#[ignore = "boots QEMU for tens of seconds: run by tests/e2e/run.sh"]
fn arm64_tcp_over_virtio_net() {
    if !cross::ready(&ARMV8L64) {
        return;
    }
    let work = cross::scratch("arm64-tcp");
    let image = cross::make_image(&ARMV8L64, &work, "tcp:10.0.2.2:7000");
    let out = work.join("run");
    cross::boot_and_collect(&ARMV8L64, &image, "tcp", &out, &["--port", "0"]);
    cross::verify_run(&ARMV8L64, &out);
}
