//! ppc64l (pseries, hvc0) and armv7lhf (virt, armmp) end to end. Opt-in: they need
//! `scripts/setup.sh --cross-all` (Debian's cross gcc and static glibc for the agent) and
//! `scripts/kernels.sh ppc64le armv7`, and take longer: run with STAGEHAND_E2E_CROSS=1.

use stagehand_e2e::cross::{self, Cross, ARMV7LHF, PPC64L};

fn scenario(c: &Cross, channel: &str, image_channel: &str, extra: &[&str]) {
    if !stagehand_testkit::opt_in("STAGEHAND_E2E_CROSS", &format!("the {} {channel} scenario", c.target)) {
        return;
    }
    if !cross::ready(c) {
        return;
    }
    let work = cross::scratch(&format!("{}-{channel}", c.target));
    let image = cross::make_image(c, &work, image_channel);
    let out = work.join("run");
    cross::boot_and_collect(c, &image, channel, &out, extra);
    cross::verify_run(c, &out);
}

#[test]
#[ignore = "opt-in (STAGEHAND_E2E_CROSS=1): needs scripts/setup.sh --cross-all"]
fn ppc64l_console() {
    scenario(&PPC64L, "console", "console", &["--memory", "1024"]);
}

#[test]
#[ignore = "opt-in (STAGEHAND_E2E_CROSS=1): needs scripts/setup.sh --cross-all"]
fn ppc64l_second_spapr_vty() {
    scenario(&PPC64L, "serial", "serial:/dev/hvc1", &["--memory", "1024"]);
}

#[test]
#[ignore = "opt-in (STAGEHAND_E2E_CROSS=1): needs scripts/setup.sh --cross-all"]
fn ppc64l_tcp_over_spapr_vlan() {
    scenario(&PPC64L, "tcp", "tcp:10.0.2.2:7000", &["--memory", "1024", "--port", "0"]);
}

#[test]
#[ignore = "opt-in (STAGEHAND_E2E_CROSS=1): needs scripts/setup.sh --cross-all"]
fn armv7lhf_console() {
    scenario(&ARMV7LHF, "console", "console", &[]);
}

#[test]
#[ignore = "opt-in (STAGEHAND_E2E_CROSS=1): needs scripts/setup.sh --cross-all"]
fn armv7lhf_virtio_serial() {
    scenario(&ARMV7LHF, "serial", "serial:/dev/vport0p1", &[]);
}

#[test]
#[ignore = "opt-in (STAGEHAND_E2E_CROSS=1): needs scripts/setup.sh --cross-all"]
fn armv7lhf_tcp_over_virtio_net() {
    scenario(&ARMV7LHF, "tcp", "tcp:10.0.2.2:7000", &["--port", "0"]);
}
