//! x86_64 over TCP (user-mode networking): the agent loads e1000 from the image's
//! /lib/modules, sets 10.0.2.15/24 itself and connects to 10.0.2.2:PORT, which QEMU hands
//! to the collector listening on the host's 127.0.0.1:PORT.

use stagehand_e2e::cache_dir;
use stagehand_e2e::cross::{self, X86_64};

#[test]
#[ignore = "boots QEMU for tens of seconds: run by tests/e2e/run.sh"]
fn x86_64_tcp_with_e1000_loaded_by_the_agent() {
    if !cross::ready(&X86_64) {
        return;
    }
    let work = cross::scratch("x86_64-tcp");
    let image = cross::make_image(&X86_64, &work, "tcp:10.0.2.2:7000");
    let out = work.join("run");
    let kernel = cache_dir().join("kernels/x86_64/vmlinuz");
    cross::boot_and_collect(
        &X86_64,
        &image,
        "tcp",
        &out,
        &["--port", "0", "--kernel", kernel.to_str().unwrap()],
    );
    cross::verify_run(&X86_64, &out);
    let agent_log = std::fs::read_to_string(out.join("agent.log")).unwrap_or_default();
    assert!(agent_log.contains("e1000"), "agent.log does not show e1000 being loaded:\n{agent_log}");
    let console = std::fs::read_to_string(out.join("console.log")).unwrap_or_default();
    assert!(console.contains("Linux version"), "the console went elsewhere:\n{console}");
}
