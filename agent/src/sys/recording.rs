//! A [`Sys`] that performs nothing and records every call as one line of text, so that
//! tests assert the exact sequence of side effects. Reads are served from a scripted
//! in-memory file table; any call can be scripted to fail with an errno.

use super::{flag_names, signal_name, KillTarget, MountFlags, RebootKind, Signal, Sys};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Default)]
struct State {
    lease: Option<crate::dhcp::Lease>,
    calls: Vec<String>,
    files: BTreeMap<PathBuf, Vec<u8>>,
    dirs: BTreeSet<PathBuf>,
    failures: Vec<(String, i32)>,
    if_flags: BTreeMap<String, u32>,
    if_addr: BTreeMap<String, Ipv4Addr>,
    env: BTreeMap<String, String>,
}

/// See the module documentation.
#[derive(Default)]
pub struct RecordingSys {
    state: Mutex<State>,
    release: String,
}

impl RecordingSys {
    pub fn new() -> RecordingSys {
        RecordingSys { state: Mutex::default(), release: "6.1.0-test".to_string() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serve `contents` when `path` is read; also makes `path` exist.
    pub fn add_file(&self, path: &str, contents: impl AsRef<[u8]>) -> &Self {
        self.lock().files.insert(PathBuf::from(path), contents.as_ref().to_vec());
        self
    }

    /// Make `path` an existing directory (listed by `list_dir` of its parent).
    pub fn add_dir(&self, path: &str) -> &Self {
        self.lock().dirs.insert(PathBuf::from(path));
        self
    }

    /// Every recorded call whose line starts with `prefix` fails with `errno`.
    pub fn fail(&self, prefix: &str, errno: i32) -> &Self {
        self.lock().failures.push((prefix.to_string(), errno));
        self
    }

    pub fn set_interface(&self, name: &str, flags: u32, addr: Option<Ipv4Addr>) -> &Self {
        let mut st = self.lock();
        st.if_flags.insert(name.to_string(), flags);
        if let Some(a) = addr {
            st.if_addr.insert(name.to_string(), a);
        }
        self
    }

    /// The lease `dhcp_acquire` hands out (none: it fails as with no server).
    pub fn set_lease(&self, lease: crate::dhcp::Lease) -> &Self {
        self.lock().lease = Some(lease);
        self
    }

    /// The recorded side effects, in order. Reads are not recorded.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Recorded calls that start with `prefix`.
    pub fn calls_starting(&self, prefix: &str) -> Vec<String> {
        self.calls().into_iter().filter(|c| c.starts_with(prefix)).collect()
    }

    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        self.lock().files.get(Path::new(path)).cloned()
    }

    pub fn env(&self, name: &str) -> Option<String> {
        self.lock().env.get(name).cloned()
    }

    fn record(&self, line: String) -> io::Result<()> {
        let mut st = self.lock();
        let failure = st.failures.iter().find(|(p, _)| line.starts_with(p.as_str())).map(|(_, e)| *e);
        st.calls.push(line);
        match failure {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    fn scripted_failure(&self, line: &str) -> io::Result<()> {
        let st = self.lock();
        match st.failures.iter().find(|(p, _)| line.starts_with(p.as_str())) {
            Some((_, errno)) => Err(io::Error::from_raw_os_error(*errno)),
            None => Ok(()),
        }
    }
}

impl Sys for RecordingSys {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        self.record(format!(
            "mount {fstype} {} source={source} flags={} data={}",
            target.display(),
            flag_names(flags),
            data.unwrap_or("-")
        ))
    }

    fn remount(&self, target: &Path, flags: MountFlags, data: Option<&str>) -> io::Result<()> {
        self.record(format!(
            "remount {} flags={} data={}",
            target.display(),
            flag_names(flags),
            data.unwrap_or("-")
        ))
    }

    fn dhcp_acquire(
        &self,
        ifname: &str,
        patience: std::time::Duration,
    ) -> Result<crate::dhcp::Lease, String> {
        self.record(format!("dhcp {ifname} {}s", patience.as_secs())).map_err(|e| e.to_string())?;
        self.lock().lease.clone().ok_or_else(|| format!("DHCP: no answer from a DHCP server on {ifname}"))
    }

    fn dhcp_keep_renewing(&self, ifname: &str, lease: &crate::dhcp::Lease) {
        let _ = self.record(format!("dhcp renew {ifname} {} every {}s", lease.address, lease.renew_secs));
    }

    fn mount_move(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.record(format!("mount --move {} {}", from.display(), to.display()))
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        self.record(format!("chroot {}", path.display()))
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        self.record(format!("chdir {}", path.display()))
    }

    fn kill(&self, target: KillTarget, sig: Signal) -> io::Result<()> {
        let who = match target {
            KillTarget::AllOthers => "-1".to_string(),
            KillTarget::Process(pid) => pid.to_string(),
        };
        self.record(format!("kill {who} {}", signal_name(sig)))
    }

    fn umount(&self, target: &Path) -> io::Result<()> {
        self.record(format!("umount {}", target.display()))
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.record(format!("mkdir {} {mode:o}", path.display()))?;
        self.lock().dirs.insert(path.to_path_buf());
        Ok(())
    }

    fn mknod_char(&self, path: &Path, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        self.record(format!("mknod {} c {major} {minor} {mode:o}", path.display()))?;
        self.lock().files.insert(path.to_path_buf(), Vec::new());
        Ok(())
    }

    fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
        self.record(format!("symlink {} -> {target}", link.display()))?;
        self.lock().files.insert(link.to_path_buf(), Vec::new());
        Ok(())
    }

    fn write_file(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        self.record(format!("write {} {:?}", path.display(), String::from_utf8_lossy(contents)))?;
        self.lock().files.insert(path.to_path_buf(), contents.to_vec());
        Ok(())
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.scripted_failure(&format!("read {}", path.display()))?;
        self.lock().files.get(path).cloned().ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = self.lock();
        let mut names: Vec<String> = st
            .dirs
            .iter()
            .chain(st.files.keys())
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        if names.is_empty() && !st.dirs.contains(path) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.lock();
        st.files.contains_key(path) || st.dirs.contains(path)
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.record(format!("sethostname {name}"))
    }

    fn setenv(&self, name: &str, value: &str) {
        let _ = self.record(format!("setenv {name}={value}"));
        self.lock().env.insert(name.to_string(), value.to_string());
    }

    fn sync(&self) {
        let _ = self.record("sync".to_string());
    }

    fn reboot(&self, kind: RebootKind) -> io::Result<()> {
        self.record(format!("reboot {}", kind.name()))
    }

    fn disable_ctrl_alt_del(&self) -> io::Result<()> {
        self.record("reboot cad-off".to_string())
    }

    fn finit_module(&self, path: &Path, params: &str, flags: u32) -> io::Result<()> {
        self.record(format!("finit_module {} params={params:?} flags={flags}", path.display()))
    }

    fn kernel_release(&self) -> String {
        self.release.clone()
    }

    fn if_get_flags(&self, ifname: &str) -> io::Result<u32> {
        self.scripted_failure(&format!("if_get_flags {ifname}"))?;
        self.lock().if_flags.get(ifname).copied().ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    fn if_set_flags(&self, ifname: &str, flags: u32) -> io::Result<()> {
        self.record(format!("if_set_flags {ifname} {flags:#x}"))?;
        self.lock().if_flags.insert(ifname.to_string(), flags);
        Ok(())
    }

    fn if_get_ipv4(&self, ifname: &str) -> io::Result<Option<Ipv4Addr>> {
        self.scripted_failure(&format!("if_get_ipv4 {ifname}"))?;
        let st = self.lock();
        if !st.if_flags.contains_key(ifname) {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        Ok(st.if_addr.get(ifname).copied())
    }

    fn if_set_ipv4(&self, ifname: &str, addr: Ipv4Addr) -> io::Result<()> {
        self.record(format!("if_set_ipv4 {ifname} {addr}"))?;
        self.lock().if_addr.insert(ifname.to_string(), addr);
        Ok(())
    }

    fn if_set_netmask(&self, ifname: &str, mask: Ipv4Addr) -> io::Result<()> {
        self.record(format!("if_set_netmask {ifname} {mask}"))
    }

    fn add_default_route(&self, gateway: Ipv4Addr, ifname: Option<&str>) -> io::Result<()> {
        self.record(format!("route add default via {gateway} dev {}", ifname.unwrap_or("-")))
    }
}
