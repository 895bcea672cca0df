//! The QEMU settings in `targets/*.json` name machines and CPUs the emulators really have.
//! Emulators that scripts/setup.sh installs by default must be present in CI; the others
//! (setup.sh --cross-all) are checked when installed.

use std::process::Command;

/// Installed by `scripts/setup.sh` without options.
const ALWAYS_INSTALLED: [&str; 3] = ["qemu-system-x86_64", "qemu-system-aarch64", "qemu-system-arm"];

fn help(binary: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(binary).args(args).output().ok()?;
    Some(String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

/// Whether `-M help` / `-cpu help` output lists `name`: first word of a line, or second
/// after a family prefix (`x86 max`, `MIPS '24Kf'`, `PowerPC power9`).
fn listed(output: &str, name: &str) -> bool {
    output.lines().any(|l| {
        let words: Vec<&str> = l.split_whitespace().take(2).map(|w| w.trim_matches('\'')).collect();
        words.contains(&name)
    })
}

#[test]
fn qemu_machines_and_cpus_exist() {
    let out = Command::new(env!("CARGO_BIN_EXE_stagehand")).args(["targets", "--json"]).output().unwrap();
    assert!(out.status.success());
    let targets: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut checked = 0;
    for t in targets.as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let q = &t["qemu"];
        let binary = q["binary"].as_str().unwrap();
        let (machine, cpu) = (q["machine"].as_str().unwrap(), q["cpu"].as_str().unwrap());
        if ALWAYS_INSTALLED.contains(&binary) && !stagehand_testkit::require_tool(binary) {
            continue;
        }
        let Some(machines) = help(binary, &["-M", "help"]) else {
            // Not a skip of this test: the other emulators come with setup.sh --cross-all.
            eprintln!("not checked: {name}: {binary} is not installed (scripts/setup.sh --cross-all)");
            continue;
        };
        assert!(listed(&machines, machine), "{name}: {binary} has no machine {machine}");
        let cpus = help(binary, &["-M", machine, "-cpu", "help"]).unwrap();
        assert!(listed(&cpus, cpu), "{name}: {binary} -M {machine} has no cpu {cpu}:\n{cpus}");
        checked += 1;
    }
    assert!(checked > 0 || !stagehand_testkit::skips_fail(), "no QEMU checked");
}
