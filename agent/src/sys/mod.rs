//! Every privileged side effect of the agent goes through [`Sys`].
//!
//! Boot, module loading, network set-up and the end of the run are written against this
//! trait so that their exact call sequence is unit-tested with [`recording::RecordingSys`]
//! (no root, no kernel), while [`linux::LinuxSys`] does the real system calls.

pub mod linux;
pub mod recording;

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub use linux::LinuxSys;
pub use recording::RecordingSys;

/// Mount flags (`MS_*`), typed: a call log reads `NOSUID | NODEV`, not `0x6`.
pub use rustix::mount::MountFlags;

/// `NOSUID | NODEV | ...` (or `(empty)`), as call logs and messages show flags.
pub fn flag_names(flags: MountFlags) -> String {
    let names: Vec<&str> = flags.iter_names().map(|(n, _)| n).collect();
    if names.is_empty() {
        "(empty)".to_string()
    } else {
        names.join(" | ")
    }
}

/// Signals, typed (`Signal::TERM`).
pub use rustix::process::Signal;

/// Whom [`Sys::kill`] signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillTarget {
    /// `kill(-1)`: every process but this one and the kernel's (PID 1 only).
    AllOthers,
    Process(i32),
}

/// `TERM`, `KILL`, ... as call logs show a signal.
pub fn signal_name(sig: Signal) -> String {
    let known = [(Signal::TERM, "TERM"), (Signal::KILL, "KILL"), (Signal::INT, "INT"), (Signal::HUP, "HUP")];
    match known.iter().find(|(s, _)| *s == sig) {
        Some((_, name)) => name.to_string(),
        None => sig.as_raw().to_string(),
    }
}

/// Interface flags (`IFF_*`).
pub const IFF_UP: u32 = 0x1;

/// What `reboot(2)` should do at the end of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootKind {
    PowerOff,
    Restart,
    Halt,
}

impl RebootKind {
    pub fn name(self) -> &'static str {
        match self {
            RebootKind::PowerOff => "poweroff",
            RebootKind::Restart => "reboot",
            RebootKind::Halt => "halt",
        }
    }
}

/// The privileged operations the agent needs. Paths are absolute paths of the running
/// system. Reads are here too so that tests can script what the "system" looks like.
pub trait Sys: Send + Sync {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// `mount(NULL, target, NULL, MS_REMOUNT | flags, data)`.
    fn remount(&self, target: &Path, flags: MountFlags, data: Option<&str>) -> io::Result<()>;
    fn umount(&self, target: &Path) -> io::Result<()>;
    /// `mkdir -p` with `mode` for the directories it creates.
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Character device node.
    fn mknod_char(&self, path: &Path, mode: u32, major: u32, minor: u32) -> io::Result<()>;
    fn symlink(&self, target: &str, link: &Path) -> io::Result<()>;
    fn write_file(&self, path: &Path, contents: &[u8]) -> io::Result<()>;
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Names in a directory (not `.`/`..`), sorted.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    fn exists(&self, path: &Path) -> bool;
    fn sethostname(&self, name: &str) -> io::Result<()>;
    /// Set a variable of the agent's own environment (inherited by what it runs).
    fn setenv(&self, name: &str, value: &str);
    fn sync(&self);
    /// Never returns on success.
    fn reboot(&self, kind: RebootKind) -> io::Result<()>;
    /// `reboot(RB_DISABLE_CAD)`: Ctrl-Alt-Del sends SIGINT to PID 1 instead of rebooting.
    fn disable_ctrl_alt_del(&self) -> io::Result<()>;
    /// `finit_module(open(path), params, flags)`.
    fn finit_module(&self, path: &Path, params: &str, flags: u32) -> io::Result<()>;
    /// `uname -r`.
    fn kernel_release(&self) -> String;
    fn if_get_flags(&self, ifname: &str) -> io::Result<u32>;
    fn if_set_flags(&self, ifname: &str, flags: u32) -> io::Result<()>;
    /// The interface's IPv4 address; `Ok(None)` when it has none (EADDRNOTAVAIL).
    fn if_get_ipv4(&self, ifname: &str) -> io::Result<Option<Ipv4Addr>>;
    fn if_set_ipv4(&self, ifname: &str, addr: Ipv4Addr) -> io::Result<()>;
    fn if_set_netmask(&self, ifname: &str, mask: Ipv4Addr) -> io::Result<()>;
    /// `kill(2)`.
    fn kill(&self, target: KillTarget, sig: Signal) -> io::Result<()>;
    /// A DHCP lease for `ifname` (up, no address yet), trying for at most `patience`.
    fn dhcp_acquire(&self, ifname: &str, patience: std::time::Duration)
        -> Result<crate::dhcp::Lease, String>;
    /// Renew `lease` in the background for as long as the agent runs.
    fn dhcp_keep_renewing(&self, ifname: &str, lease: &crate::dhcp::Lease);
    /// `mount(from, to, NULL, MS_MOVE, NULL)`: move a mount (and those under it).
    fn mount_move(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn chroot(&self, path: &Path) -> io::Result<()>;
    fn chdir(&self, path: &Path) -> io::Result<()>;
    /// `SIOCADDRT` 0.0.0.0/0 via `gateway` (on `ifname` when given).
    fn add_default_route(&self, gateway: Ipv4Addr, ifname: Option<&str>) -> io::Result<()>;
}

/// Whether `err` is the kernel's "already there" answer (`EEXIST`).
pub fn is_already_exists(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EEXIST) || err.kind() == io::ErrorKind::AlreadyExists
}

/// Mount points listed in a `/proc/self/mountinfo` text, with their filesystem type.
pub fn parse_mountinfo(text: &str) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        // id parent major:minor root mountpoint options [optional...] - fstype source superopts
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else { continue };
        if fields.len() < 5 || sep + 1 >= fields.len() {
            continue;
        }
        out.push((PathBuf::from(unescape_octal(fields[4])), fields[sep + 1].to_string()));
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_give_mount_point_and_type() {
        let text = "22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw\n\
                    23 1 0:5 / /dev rw - devtmpfs udev rw,size=1k\n\
                    24 1 0:6 / /mnt/a\\040b rw - tmpfs none rw\n\
                    garbage line\n";
        let m = parse_mountinfo(text);
        assert_eq!(
            m,
            vec![
                (PathBuf::from("/proc"), "proc".to_string()),
                (PathBuf::from("/dev"), "devtmpfs".to_string()),
                (PathBuf::from("/mnt/a b"), "tmpfs".to_string()),
            ]
        );
    }
}
