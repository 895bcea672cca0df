//! Shared plumbing of the end-to-end scenarios (`tests/e2e/tests/*.rs`).
//!
//! The scenarios drive the real `stagehand` binary and the real static agent; this
//! library only finds things (the workspace, the binaries, the kernels cache) and runs
//! commands with clear failures.

pub mod cross;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's top folder.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// Where kernels, the debootstrap stage 2 and other slow-to-make inputs are cached.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("STAGEHAND_CACHE") {
        Some(p) => PathBuf::from(p),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/stagehand")
        }
    }
}

/// Whether a missing tool fails the test (CI) or skips it (a developer's machine).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Returns false (and says why) when `tool` is missing outside CI; panics in CI.
pub fn require(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if in_ci() {
            panic!("{tool} is missing: run scripts/setup.sh");
        }
        eprintln!("skipped: {tool} is missing (run scripts/setup.sh)");
    }
    found
}

/// Runs `cmd`, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// sha256 of a file as `sha256sum` computes it: an independent check of what the host
/// tool claims.
pub fn sha256sum(file: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(file));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

pub mod x86;
