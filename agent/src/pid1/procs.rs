//! The process table, and stopping every process of the build before the tree is packed.

use super::reaper::reap_unwatched;
use crate::config::Mode;
use crate::sys::{KillTarget, Signal, Sys};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// `pid -> (ppid, state)` from `/proc/<pid>/stat`.
fn process_table() -> HashMap<i32, (i32, char)> {
    let mut table = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return table };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid ..."; comm may contain anything, so cut at the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        table.insert(pid, (ppid, state));
    }
    table
}

/// Live (non-zombie) descendants of this process.
pub fn live_descendants() -> Vec<i32> {
    let me = std::process::id() as i32;
    let table = process_table();
    let mut out = Vec::new();
    let mut frontier = vec![me];
    while let Some(p) = frontier.pop() {
        for (&pid, &(ppid, state)) in &table {
            if ppid == p && pid != me {
                frontier.push(pid);
                if state != 'Z' && state != 'X' {
                    out.push(pid);
                }
            }
        }
    }
    out.sort_unstable();
    out
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StopSummary {
    /// Processes that got `SIGTERM`.
    pub terminated: usize,
    /// Processes still alive after the grace period, sent `SIGKILL`.
    pub killed: usize,
}

/// Before packing: `SIGTERM` every other process (as PID 1 `kill(-1)`, otherwise this
/// process's descendants), wait up to `grace`, `SIGKILL` what is left, reap.
pub fn stop_all_processes(sys: &dyn Sys, mode: Mode, grace: Duration) -> StopSummary {
    let mut summary = StopSummary::default();
    let first = live_descendants();
    summary.terminated = first.len();
    if first.is_empty() {
        return summary;
    }
    signal_all(sys, mode, &first, Signal::TERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        reap_unwatched();
        if live_descendants().is_empty() {
            return summary;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let rest = live_descendants();
    summary.killed = rest.len();
    signal_all(sys, mode, &rest, Signal::KILL);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && !live_descendants().is_empty() {
        reap_unwatched();
        std::thread::sleep(Duration::from_millis(20));
    }
    reap_unwatched();
    summary
}

/// As PID 1 every process but this one is the build's (`kill(-1)`); in a container only
/// this process's descendants are, one by one.
fn signal_all(sys: &dyn Sys, mode: Mode, pids: &[i32], sig: Signal) {
    if mode == Mode::Pid1 {
        let _ = sys.kill(KillTarget::AllOthers, sig);
    } else {
        for pid in pids {
            let _ = sys.kill(KillTarget::Process(*pid), sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::RecordingSys;

    #[test]
    fn pid1_signals_everyone_and_a_container_only_its_own_descendants() {
        for (mode, want) in [(Mode::Pid1, "kill -1"), (Mode::Container, "kill ")] {
            let mut child = super::super::spawn(std::process::Command::new("sleep").arg("30")).unwrap();
            let sys = RecordingSys::new();
            // The double only records: the child lives on, so both passes are taken.
            let summary = stop_all_processes(&sys, mode, Duration::from_millis(50));
            let _ = child.signal(libc::SIGKILL, false);
            let _ = child.wait();
            let calls = sys.calls();
            // Other tests of this process may have children of their own at this moment.
            assert!(summary.terminated >= 1 && summary.killed >= 1, "{mode:?}: {summary:?}");
            let pid = child.id();
            if mode == Mode::Pid1 {
                assert_eq!(calls, [format!("{want} TERM"), format!("{want} KILL")]);
            } else {
                assert!(calls.iter().all(|c| c.starts_with(want) && !c.contains("-1")), "{calls:?}");
                assert!(calls.contains(&format!("{want}{pid} TERM")), "{calls:?}");
                assert!(calls.contains(&format!("{want}{pid} KILL")), "{calls:?}");
            }
        }
    }
}
