//! `stagehand agent build` names what is missing for a target, in words a bring-up engineer
//! can act on, before cargo runs: a Rust standard library that rustup can add, and the
//! architectures that have none at all.

use stagehand_e2e::cross::stagehand;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// A `rustc` whose sysroot holds no standard library at all (every other call goes to
/// the real one), so the preflight sees a machine where nothing was added yet.
fn bare_rustc(dir: &std::path::Path) -> std::path::PathBuf {
    let sysroot = dir.join("sysroot/lib/rustlib");
    std::fs::create_dir_all(&sysroot).unwrap();
    let rustc = dir.join("rustc");
    std::fs::write(
        &rustc,
        format!(
            "#!/bin/sh\ncase \"$*\" in\n  *sysroot*) echo {} ;;\n  *) exec rustc \"$@\" ;;\nesac\n",
            dir.join("sysroot").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rustc, std::fs::Permissions::from_mode(0o755)).unwrap();
    rustc
}

#[test]
fn a_missing_rust_target_is_named_with_the_command_that_adds_it() {
    let dir = tempfile_dir("agent-build-missing");
    let rustc = bare_rustc(&dir);
    for (target, triple, setup) in [
        ("armv8l64", "aarch64-unknown-linux-musl", "(scripts/setup.sh installs all of it)"),
        ("ppc64l", "powerpc64le-unknown-linux-gnu", "(scripts/setup.sh --cross-all installs all of it)"),
    ] {
        let out = Command::new(stagehand())
            .args(["agent", "build", "--target", target])
            .env("RUSTC", &rustc)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{target}: {err}");
        assert!(err.contains(&format!("run `rustup target add {triple}`")), "{target}: {err}");
        assert!(err.contains(setup), "{target}: the setup hint should be {setup:?}: {err}");
        assert!(!err.contains("Compiling"), "cargo ran although the preflight failed: {err}");
    }
}

#[test]
fn architectures_without_a_rust_std_say_what_it_would_take() {
    for (target, triple) in
        [("armv8b64", "aarch64_be-unknown-linux-gnu"), ("mips64l", "mips64el-unknown-linux-gnuabi64")]
    {
        let out = Command::new(stagehand()).args(["agent", "build", "--target", target]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{target}: {err}");
        assert!(err.contains(&format!("no Rust standard library exists for {target}")), "{target}: {err}");
        assert!(err.contains(triple) && err.contains("build-std"), "{target}: {err}");
    }
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    stagehand_e2e::cross::scratch(name)
}
