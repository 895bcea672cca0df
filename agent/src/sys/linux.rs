//! The real system calls behind [`Sys`], with rustix where it has them and libc for the
//! network ioctls.

use super::{KillTarget, MountFlags, RebootKind, Signal, Sys};
use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// The running Linux system.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxSys;

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{s:?} contains a NUL byte")))
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{} contains a NUL byte", p.display()))
    })
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `struct ifreq`: the name, then a union of at most 24 bytes (`struct ifmap` on 64-bit).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn new(ifname: &str) -> io::Result<IfReq> {
        let bytes = ifname.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{ifname:?} is not a valid interface name (1 to 15 bytes)"),
            ));
        }
        let mut req = IfReq { name: [0; libc::IFNAMSIZ], data: [0; 24] };
        req.name[..bytes.len()].copy_from_slice(bytes);
        Ok(req)
    }

    fn set_sockaddr_in(&mut self, addr: Ipv4Addr) {
        self.data = [0; 24];
        self.data[..16].copy_from_slice(&sockaddr_in_bytes(addr));
    }

    fn sockaddr_in_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.data[4], self.data[5], self.data[6], self.data[7])
    }
}

/// A `struct sockaddr_in` (16 bytes) as the kernel wants it in ifreq and rtentry.
fn sockaddr_in_bytes(addr: Ipv4Addr) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    b[4..8].copy_from_slice(&addr.octets());
    b
}

/// `struct rtentry` from `<net/route.h>`, defined here because not every libc target has it.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: [u8; 16],
    rt_gateway: [u8; 16],
    rt_genmask: [u8; 16],
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

const RTF_UP: libc::c_ushort = 0x0001;
const RTF_GATEWAY: libc::c_ushort = 0x0002;
const SIOCADDRT: libc::c_ulong = 0x890B;
const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
const SIOCSIFFLAGS: libc::c_ulong = 0x8914;
const SIOCGIFADDR: libc::c_ulong = 0x8915;
const SIOCSIFADDR: libc::c_ulong = 0x8916;
const SIOCSIFNETMASK: libc::c_ulong = 0x891C;

fn inet_socket() -> io::Result<OwnedFd> {
    use rustix::net::{socket, AddressFamily, SocketType};
    socket(AddressFamily::INET, SocketType::DGRAM, None).map_err(io::Error::from)
}

fn ifreq_ioctl(request: libc::c_ulong, req: &mut IfReq) -> io::Result<()> {
    let sock = inet_socket()?;
    // SAFETY: `req` is a live, correctly sized `struct ifreq` for the duration of the call.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), request as _, req as *mut IfReq) })
}

impl Sys for LinuxSys {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        let (source, target, fstype) = (cstring(source)?, cpath(target)?, cstring(fstype)?);
        let data = data.map(cstring).transpose()?;
        let data_ptr = data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr() as *const libc::c_void);
        // SAFETY: all pointers are NUL-terminated strings that outlive the call.
        check(unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                flags.bits() as libc::c_ulong,
                data_ptr,
            )
        })
    }

    fn dhcp_acquire(
        &self,
        ifname: &str,
        patience: std::time::Duration,
    ) -> Result<crate::dhcp::Lease, String> {
        crate::dhcp::acquire(ifname, patience)
    }

    fn dhcp_keep_renewing(&self, ifname: &str, lease: &crate::dhcp::Lease) {
        crate::dhcp::keep_renewing(ifname.to_string(), lease.clone())
    }

    fn mount_move(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (cpath(from)?, cpath(to)?);
        // SAFETY: NUL-terminated paths that outlive the call; null type and data.
        check(unsafe {
            libc::mount(from.as_ptr(), to.as_ptr(), std::ptr::null(), libc::MS_MOVE, std::ptr::null())
        })
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        let p = cpath(path)?;
        // SAFETY: a NUL-terminated path.
        check(unsafe { libc::chroot(p.as_ptr()) })
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        std::env::set_current_dir(path)
    }

    fn kill(&self, target: KillTarget, sig: Signal) -> io::Result<()> {
        let pid = match target {
            KillTarget::AllOthers => -1,
            KillTarget::Process(pid) => pid,
        };
        // SAFETY: plain kill(2).
        check(unsafe { libc::kill(pid, sig.as_raw()) })
    }

    fn remount(&self, target: &Path, flags: MountFlags, data: Option<&str>) -> io::Result<()> {
        let target = cpath(target)?;
        let data = data.map(cstring).transpose()?;
        let data_ptr = data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr() as *const libc::c_void);
        let flags = flags.bits() as libc::c_ulong | libc::MS_REMOUNT;
        // SAFETY: as in `mount`; null source and type are allowed for a remount.
        check(unsafe { libc::mount(std::ptr::null(), target.as_ptr(), std::ptr::null(), flags, data_ptr) })
    }

    fn umount(&self, target: &Path) -> io::Result<()> {
        rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()).map_err(io::Error::from)
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        std::fs::DirBuilder::new().recursive(true).mode(mode).create(path)
    }

    fn mknod_char(&self, path: &Path, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        use rustix::fs::{mknodat, FileType, Mode, CWD};
        let dev = rustix::fs::makedev(major, minor);
        mknodat(CWD, path, FileType::CharacterDevice, Mode::from_raw_mode(mode), dev).map_err(io::Error::from)
    }

    fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn write_file(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        std::fs::write(path, contents)
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        rustix::system::sethostname(name.as_bytes()).map_err(io::Error::from)
    }

    fn setenv(&self, name: &str, value: &str) {
        // The agent sets its environment during boot, before it starts any other thread
        // that reads the environment.
        unsafe { std::env::set_var(name, value) }
    }

    fn sync(&self) {
        rustix::fs::sync();
    }

    fn reboot(&self, kind: RebootKind) -> io::Result<()> {
        use rustix::system::RebootCommand;
        let cmd = match kind {
            RebootKind::PowerOff => RebootCommand::PowerOff,
            RebootKind::Restart => RebootCommand::Restart,
            RebootKind::Halt => RebootCommand::Halt,
        };
        rustix::system::reboot(cmd).map_err(io::Error::from)
    }

    fn disable_ctrl_alt_del(&self) -> io::Result<()> {
        rustix::system::reboot(rustix::system::RebootCommand::CadOff).map_err(io::Error::from)
    }

    fn finit_module(&self, path: &Path, params: &str, flags: u32) -> io::Result<()> {
        let file = std::fs::File::open(path)?;
        let params = cstring(params)?;
        rustix::system::finit_module(&file, &params, flags as libc::c_int).map_err(io::Error::from)
    }

    fn kernel_release(&self) -> String {
        rustix::system::uname().release().to_string_lossy().into_owned()
    }

    fn if_get_flags(&self, ifname: &str) -> io::Result<u32> {
        let mut req = IfReq::new(ifname)?;
        ifreq_ioctl(SIOCGIFFLAGS, &mut req)?;
        Ok(u16::from_ne_bytes([req.data[0], req.data[1]]) as u32)
    }

    fn if_set_flags(&self, ifname: &str, flags: u32) -> io::Result<()> {
        let mut req = IfReq::new(ifname)?;
        req.data[..2].copy_from_slice(&(flags as u16).to_ne_bytes());
        ifreq_ioctl(SIOCSIFFLAGS, &mut req)
    }

    fn if_get_ipv4(&self, ifname: &str) -> io::Result<Option<Ipv4Addr>> {
        let mut req = IfReq::new(ifname)?;
        match ifreq_ioctl(SIOCGIFADDR, &mut req) {
            Ok(()) => Ok(Some(req.sockaddr_in_addr())),
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn if_set_ipv4(&self, ifname: &str, addr: Ipv4Addr) -> io::Result<()> {
        let mut req = IfReq::new(ifname)?;
        req.set_sockaddr_in(addr);
        ifreq_ioctl(SIOCSIFADDR, &mut req)
    }

    fn if_set_netmask(&self, ifname: &str, mask: Ipv4Addr) -> io::Result<()> {
        let mut req = IfReq::new(ifname)?;
        req.set_sockaddr_in(mask);
        ifreq_ioctl(SIOCSIFNETMASK, &mut req)
    }

    fn add_default_route(&self, gateway: Ipv4Addr, ifname: Option<&str>) -> io::Result<()> {
        let dev = ifname.map(cstring).transpose()?;
        let mut rt = RtEntry {
            rt_pad1: 0,
            rt_dst: sockaddr_in_bytes(Ipv4Addr::UNSPECIFIED),
            rt_gateway: sockaddr_in_bytes(gateway),
            rt_genmask: sockaddr_in_bytes(Ipv4Addr::UNSPECIFIED),
            rt_flags: RTF_UP | RTF_GATEWAY,
            rt_pad2: 0,
            rt_pad3: 0,
            rt_pad4: std::ptr::null_mut(),
            rt_metric: 0,
            rt_dev: dev.as_ref().map_or(std::ptr::null_mut(), |d| d.as_ptr() as *mut libc::c_char),
            rt_mtu: 0,
            rt_window: 0,
            rt_irtt: 0,
        };
        let sock = inet_socket()?;
        // SAFETY: `rt` is a complete `struct rtentry`; `rt_dev` outlives the call.
        check(unsafe { libc::ioctl(sock.as_raw_fd(), SIOCADDRT as _, &mut rt as *mut RtEntry) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_flags_can_be_read_without_privileges() {
        let flags = LinuxSys.if_get_flags("lo").expect("every Linux network namespace has lo");
        // IFF_LOOPBACK
        assert_ne!(flags & 0x8, 0, "lo flags {flags:#x} lack IFF_LOOPBACK");
    }

    #[test]
    fn interface_names_are_checked() {
        let err = LinuxSys.if_get_flags("a-name-that-is-far-too-long").unwrap_err();
        assert!(err.to_string().contains("not a valid interface name"), "{err}");
    }
}
