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

/// Where kernels, the debootstrap stage 2 and other slow-to-make inputs are cached: the
/// host tool's own cache.
pub fn cache_dir() -> PathBuf {
    stagehand::kernel::cache_dir()
}

pub use stagehand_testkit::{need, require_tool};

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

/// The child of `pid` whose command name starts with `name` (QEMU under `stagehand qemu`).
pub fn child_named(pid: u32, name: &str) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()).find(|c| {
        std::fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|comm| comm.trim().starts_with(name))
    })
}

pub mod x86;
