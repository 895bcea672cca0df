//! The agent's configuration as this process finds it: the schema, validator and loader
//! are the contract's ([`stagehand_proto::config`]); this module gathers the real inputs
//! (arguments, `STAGEHAND_*` variables, `/proc/cmdline` as PID 1) and reads the file.

pub use stagehand_proto::config::*;

use crate::sys::Sys;
use std::path::Path;

/// The inputs of this process. As PID 1, `/proc/cmdline` is read, mounting /proc first
/// through `sys` when nothing has yet (the boot sequence takes a mounted /proc as done).
pub fn inputs_from_process(sys: &dyn Sys) -> Inputs {
    let is_pid1 = std::process::id() == 1;
    Inputs {
        args: std::env::args().skip(1).collect(),
        env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("STAGEHAND_"))
            .collect(),
        is_pid1,
        cmdline: if is_pid1 { read_cmdline_as_pid1(sys) } else { None },
    }
}

fn read_cmdline_as_pid1(sys: &dyn Sys) -> Option<String> {
    let cmdline = Path::new("/proc/cmdline");
    if let Ok(text) = sys.read_file(cmdline) {
        return Some(String::from_utf8_lossy(&text).into_owned());
    }
    let _ = sys.mkdir_all(Path::new("/proc"), 0o555);
    sys.mount("proc", Path::new("/proc"), "proc", crate::sys::MountFlags::empty(), None).ok()?;
    sys.read_file(cmdline).ok().map(|t| String::from_utf8_lossy(&t).into_owned())
}

/// The effective configuration of this process.
pub fn load(inputs: &Inputs) -> Loaded {
    load_with(inputs, |p| std::fs::read_to_string(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::RecordingSys;

    #[test]
    fn pid1_mounts_proc_through_the_seam_to_read_the_cmdline() {
        let sys = RecordingSys::new();
        assert_eq!(read_cmdline_as_pid1(&sys), None);
        assert_eq!(sys.calls(), vec!["mkdir /proc 555", "mount proc /proc source=proc flags=(empty) data=-"]);
        let sys = RecordingSys::new();
        sys.add_file("/proc/cmdline", "console=ttyS0 stagehand.hostname=b1\n");
        assert_eq!(read_cmdline_as_pid1(&sys).as_deref(), Some("console=ttyS0 stagehand.hostname=b1\n"));
        assert!(sys.calls().is_empty());
    }
}
