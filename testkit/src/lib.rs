//! One skip policy for every suite of the workspace.
//!
//! A test that needs something the machine may lack asks here first (`require_tool`,
//! `require_root`, `require_kernel`, `need`). When it is missing:
//! - on a developer's machine the test is skipped: it returns early after one line
//!   `SKIPPED: <what> (<how to get it>)` on stderr, and the same line is appended to the
//!   file named by `STAGEHAND_SKIP_LOG`, so a test command can count skips apart from
//!   passes;
//! - with `STAGEHAND_NO_SKIP=1` (set by `scripts/test.sh`, so by CI) it fails instead,
//!   with the same words.
//!
//! Scenarios a user opts into (`STAGEHAND_E2E_CROSS=1` and friends) are not skips: they
//! are not part of the default suite. [`opt_in`] says so with one line `NOT RUN: ...` and
//! records it in the file named by `STAGEHAND_NOT_RUN_LOG`, never failing.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The environment variable that turns every skip into a failure.
pub const NO_SKIP: &str = "STAGEHAND_NO_SKIP";
/// The environment variable naming the file every skip is recorded in.
pub const SKIP_LOG: &str = "STAGEHAND_SKIP_LOG";

/// The environment variable naming the file opt-in scenarios that did not run go to.
pub const NOT_RUN_LOG: &str = "STAGEHAND_NOT_RUN_LOG";

/// Whether the opt-in scenario switched on by `var` (`var=1`) was asked for; when not,
/// one line `NOT RUN: <what> (opt-in: set VAR=1)`, also appended to [`NOT_RUN_LOG`].
pub fn opt_in(var: &str, what: &str) -> bool {
    if std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0") {
        return true;
    }
    let line = format!("NOT RUN: {what} (opt-in: set {var}=1)");
    eprintln!("{line}");
    append(NOT_RUN_LOG, &line);
    false
}

fn append(log_var: &str, line: &str) {
    if let Some(log) = std::env::var_os(log_var) {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let test = std::thread::current().name().unwrap_or("?").to_string();
            let _ = writeln!(f, "{test}: {line}");
        }
    }
}

/// Whether skips fail (the test command asks for everything).
pub fn skips_fail() -> bool {
    std::env::var(NO_SKIP).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The one skip line.
pub fn skip_line(what: &str, fix: &str) -> String {
    format!("SKIPPED: {what} ({fix})")
}

/// Skip the calling test (returns `false`), or fail it under [`NO_SKIP`].
#[track_caller]
pub fn skip(what: &str, fix: &str) -> bool {
    let line = skip_line(what, fix);
    if skips_fail() {
        panic!("{line}: {NO_SKIP} is set, so nothing may be skipped");
    }
    eprintln!("{line}");
    append(SKIP_LOG, &line);
    false
}

/// `ok`, or a skip saying `what` is missing and `fix`.
#[track_caller]
pub fn need(ok: bool, what: &str, fix: &str) -> bool {
    ok || skip(what, fix)
}

/// Whether `tool` is on PATH.
pub fn has_tool(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| is_executable(&d.join(tool))))
        .unwrap_or(false)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `tool` is on PATH, or the test is skipped (fails under [`NO_SKIP`]).
#[track_caller]
pub fn require_tool(tool: &str) -> bool {
    need(has_tool(tool), &format!("{tool} is not installed"), "run scripts/setup.sh")
}

/// Every one of `tools`, stopping at the first missing one.
#[track_caller]
pub fn require_tools(tools: &[&str]) -> bool {
    tools.iter().all(|t| require_tool(t))
}

/// A file the test needs, e.g. `/bin/busybox`.
#[track_caller]
pub fn require_file(path: &Path, fix: &str) -> bool {
    need(path.exists(), &format!("{} does not exist", path.display()), fix)
}

/// The process runs as root (user namespaces, mounts, QEMU's TCG are fine without, but
/// some tests write where only root may).
#[track_caller]
pub fn require_root() -> bool {
    // The effective uid from /proc/self/status: no libc dependency for one number.
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(2).and_then(|u| u.parse::<u32>().ok()));
    need(euid == Some(0), "the test needs root", "run it as root, as CI does")
}

/// The test runs on an x86_64 host (it boots the host's own kind of kernel).
#[track_caller]
pub fn require_x86_64_host() -> bool {
    need(std::env::consts::ARCH == "x86_64", "the host is not x86_64", "run it on an x86_64 machine")
}

/// The newest Debian kernel in /boot (`vmlinuz-*`).
#[track_caller]
pub fn require_kernel() -> Option<PathBuf> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
                .collect()
        })
        .unwrap_or_default();
    kernels.sort();
    let k = kernels.pop();
    if k.is_none() {
        skip("no kernel in /boot", "apt-get install linux-image-amd64, or run scripts/setup.sh");
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_format() {
        assert_eq!(
            skip_line("bst is not installed", "run scripts/setup.sh"),
            "SKIPPED: bst is not installed (run scripts/setup.sh)"
        );
    }

    #[test]
    fn tools_are_found_on_path() {
        assert!(has_tool("sh"));
        assert!(!has_tool("no-such-tool-anywhere"));
        assert!(need(true, "x", "y"));
    }

    #[test]
    fn a_skip_fails_when_everything_is_asked_for() {
        // Run in a child process: the switch is process-wide.
        let me = std::env::current_exe().unwrap();
        let out = std::process::Command::new(me)
            .args(["--exact", "tests::skip_under_the_switch", "--ignored", "--nocapture"])
            .env(NO_SKIP, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("SKIPPED: the thing is missing (get it): STAGEHAND_NO_SKIP is set"), "{text}");
        let dir = std::env::temp_dir().join(format!("testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("skips");
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tests::skip_under_the_switch", "--ignored"])
            .env_remove(NO_SKIP)
            .env(SKIP_LOG, &log)
            .output()
            .unwrap();
        assert!(out.status.success());
        let logged = std::fs::read_to_string(&log).unwrap();
        assert_eq!(logged, "tests::skip_under_the_switch: SKIPPED: the thing is missing (get it)\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[ignore = "run by a_skip_fails_when_everything_is_asked_for"]
    fn skip_under_the_switch() {
        assert!(!skip("the thing is missing", "get it"));
    }
}
