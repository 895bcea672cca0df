//! Bringing the machine up before the build: the file systems every build needs, host
//! name, loopback, `PATH`, kernel modules, static IPv4, resolver.
//!
//! As PID 1 ([`Mode::Pid1`]) every step is done; `/proc` is always mounted afresh so
//! that it shows this PID namespace, and "already mounted" (`EBUSY`, e.g. Debian's initrd
//! moved its `/dev` over) counts as success. In [`Mode::Container`] whatever is already
//! there is left alone, and nothing that would change the host (host name, modules,
//! interfaces) is touched. Each step yields a [`Step`]; only an essential step can fail
//! the boot, the others end as warnings.

use crate::config::{Config, Mode};
use crate::kmod;
use crate::netcfg;
use crate::sys::{parse_mountinfo, MountFlags as mf, Sys, IFF_UP};
use stagehand_proto::ip::IpConfig;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootOptions {
    /// [`Mode::Pid1`] or [`Mode::Container`] ([`Mode::Auto`] counts as container).
    pub mode: Mode,
    pub hostname: Option<String>,
    pub remount_rw: bool,
    pub modules: Vec<String>,
    pub ip: Option<String>,
    pub nameservers: Vec<String>,
    /// `PATH` for the agent and everything it runs.
    pub path: String,
}

impl BootOptions {
    pub fn from_config(cfg: &Config, mode: Mode) -> BootOptions {
        BootOptions {
            mode,
            hostname: cfg.hostname.clone(),
            remount_rw: cfg.remount_rw,
            modules: cfg.modules.clone(),
            ip: cfg.ip.clone(),
            nameservers: cfg.nameserver.clone(),
            path: cfg.path.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepStatus {
    Done,
    Skipped,
    /// Did not work, the run goes on.
    Warning,
    /// An essential step did not work: the run cannot go on.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub status: StepStatus,
    pub detail: String,
}

impl Step {
    /// `boot: proc: done: mounted proc on /proc` style log line.
    pub fn line(&self) -> String {
        let status = match self.status {
            StepStatus::Done => "done",
            StepStatus::Skipped => "skipped",
            StepStatus::Warning => "WARNING",
            StepStatus::Failed => "FAILED",
        };
        format!("boot: {}: {status}: {}", self.name, self.detail)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootReport {
    pub steps: Vec<Step>,
    /// The interface and lease, when the agent configured the network by DHCP.
    pub lease: Option<(String, crate::dhcp::Lease)>,
}

impl BootReport {
    /// No essential step failed.
    pub fn ok(&self) -> bool {
        !self.steps.iter().any(|s| s.status == StepStatus::Failed)
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| matches!(s.status, StepStatus::Warning | StepStatus::Failed))
    }
}

/// How long `ip=dhcp` waits for a lease before the boot fails.
pub const DHCP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

pub const DEFAULT_NODES: &[(&str, u32, u32, u32)] = &[
    ("null", 0o666, 1, 3),
    ("zero", 0o666, 1, 5),
    ("full", 0o666, 1, 7),
    ("random", 0o666, 1, 8),
    ("urandom", 0o666, 1, 9),
    ("tty", 0o666, 5, 0),
    ("console", 0o600, 5, 1),
    ("ptmx", 0o666, 5, 2),
];

pub const DEFAULT_DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

struct Booter<'a> {
    sys: &'a dyn Sys,
    pid1: bool,
    mounted: Vec<(PathBuf, String)>,
    report: BootReport,
    log: &'a mut dyn FnMut(&Step),
}

fn is_busy(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EBUSY)
}

impl Booter<'_> {
    fn step(&mut self, name: &'static str, status: StepStatus, detail: impl Into<String>) {
        let step = Step { name, status, detail: detail.into() };
        (self.log)(&step);
        self.report.steps.push(step);
    }

    fn fail_status(&self, essential: bool) -> StepStatus {
        if essential {
            StepStatus::Failed
        } else {
            StepStatus::Warning
        }
    }

    fn refresh_mounts(&mut self) {
        self.mounted = self
            .sys
            .read_file(Path::new("/proc/self/mountinfo"))
            .map(|t| parse_mountinfo(&String::from_utf8_lossy(&t)))
            .unwrap_or_default();
    }

    /// The type of what is visibly mounted exactly at `target`. mountinfo lists mounts
    /// in the order they were made: a later mount on `target` or on a parent of it hides
    /// an earlier one (e.g. the old `/dev/pts` under a fresh `/dev`).
    fn mounted_type(&self, target: &str) -> Option<&str> {
        let target = Path::new(target);
        let (p, t) = self.mounted.iter().rev().find(|(p, _)| target.starts_with(p) && p != Path::new("/"))?;
        (p == target).then_some(t.as_str())
    }

    /// Mount unless already there; returns whether it is mounted now.
    #[allow(clippy::too_many_arguments)]
    fn mount(
        &mut self,
        name: &'static str,
        fstype: &str,
        target: &str,
        flags: mf,
        data: Option<&str>,
        essential: bool,
    ) -> bool {
        if let Some(t) = self.mounted_type(target) {
            let t = t.to_string();
            self.step(name, StepStatus::Skipped, format!("{target} is already mounted ({t})"));
            return true;
        }
        if self.holds_files_of_a_host(target) {
            self.step(
                name,
                StepStatus::Skipped,
                format!("container mode: {target} is not empty: left as it is"),
            );
            return true;
        }
        if let Err(e) = self.sys.mkdir_all(Path::new(target), 0o755) {
            if !self.sys.exists(Path::new(target)) {
                let st = self.fail_status(essential);
                self.step(name, st, format!("cannot create {target}: {e}"));
                return false;
            }
        }
        match self.sys.mount(fstype, Path::new(target), fstype, flags, data) {
            Ok(()) => {
                self.step(name, StepStatus::Done, format!("mounted {fstype} on {target}"));
                true
            }
            Err(e) if is_busy(&e) => {
                self.step(name, StepStatus::Done, format!("{target} was already mounted"));
                true
            }
            Err(e) => {
                let st = self.fail_status(essential);
                self.step(name, st, format!("mount {fstype} on {target}: {e}"));
                false
            }
        }
    }

    /// In container mode nothing is mounted over a folder that already has files: a
    /// chroot's empty `/tmp` gets a tmpfs, a live system's `/tmp` or `/run` is left alone.
    fn holds_files_of_a_host(&self, target: &str) -> bool {
        !self.pid1 && self.sys.list_dir(Path::new(target)).is_ok_and(|entries| !entries.is_empty())
    }

    fn proc(&mut self) {
        if !self.pid1 {
            self.refresh_mounts();
            if let Some(t) = self.mounted_type("/proc") {
                let t = t.to_string();
                self.step("proc", StepStatus::Skipped, format!("/proc is already mounted ({t})"));
                return;
            }
        }
        let _ = self.sys.mkdir_all(Path::new("/proc"), 0o555);
        match self.sys.mount("proc", Path::new("/proc"), "proc", mf::NOSUID | mf::NODEV | mf::NOEXEC, None) {
            Ok(()) => self.step("proc", StepStatus::Done, "mounted proc on /proc"),
            Err(e) => {
                let st = self.fail_status(self.pid1);
                self.step("proc", st, format!("mount proc on /proc: {e}"))
            }
        }
        self.refresh_mounts();
    }

    fn dev(&mut self) {
        if let Some(t) = self.mounted_type("/dev") {
            if t == "devtmpfs" || !self.pid1 {
                let t = t.to_string();
                self.step("dev", StepStatus::Skipped, format!("/dev is already mounted ({t})"));
                self.dev_links();
                return;
            }
        }
        if !self.pid1 && self.sys.exists(Path::new("/dev/null")) {
            self.step("dev", StepStatus::Skipped, "/dev already has device nodes");
            return;
        }
        let _ = self.sys.mkdir_all(Path::new("/dev"), 0o755);
        let err =
            match self.sys.mount("devtmpfs", Path::new("/dev"), "devtmpfs", mf::NOSUID, Some("mode=0755")) {
                Ok(()) => {
                    self.step("dev", StepStatus::Done, "mounted devtmpfs on /dev");
                    self.dev_links();
                    return;
                }
                Err(e) if is_busy(&e) => {
                    self.step("dev", StepStatus::Done, "/dev was already mounted (devtmpfs)");
                    self.dev_links();
                    return;
                }
                Err(e) => e,
            };
        // No devtmpfs (kernel without it, or a user namespace): a tmpfs with the nodes
        // every build needs.
        if let Err(e) = self.sys.mount("tmpfs", Path::new("/dev"), "tmpfs", mf::NOSUID, Some("mode=0755")) {
            self.step(
                "dev",
                StepStatus::Failed,
                format!("devtmpfs ({err}) and tmpfs ({e}) both failed on /dev"),
            );
            return;
        }
        let mut missing = Vec::new();
        for (name, mode, major, minor) in DEFAULT_NODES {
            let path = PathBuf::from("/dev").join(name);
            if let Err(e) = self.sys.mknod_char(&path, *mode, *major, *minor) {
                if *name == "ptmx" && self.sys.symlink("pts/ptmx", &path).is_ok() {
                    continue;
                }
                missing.push(format!("{name} ({e})"));
            }
        }
        self.dev_links();
        if missing.is_empty() {
            self.step(
                "dev",
                StepStatus::Done,
                format!("no devtmpfs ({err}): tmpfs on /dev with the essential nodes"),
            );
        } else {
            self.step(
                "dev",
                StepStatus::Warning,
                format!("no devtmpfs ({err}): tmpfs on /dev, but could not create {}", missing.join(", ")),
            );
        }
    }

    fn dev_links(&mut self) {
        for (name, target) in DEFAULT_DEV_LINKS {
            let link = PathBuf::from("/dev").join(name);
            if !self.sys.exists(&link) {
                let _ = self.sys.symlink(target, &link);
            }
        }
    }

    fn devpts(&mut self) {
        if self.mounted_type("/dev/pts").is_some() {
            self.step("devpts", StepStatus::Skipped, "/dev/pts is already mounted");
            return;
        }
        if self.holds_files_of_a_host("/dev/pts") {
            self.step("devpts", StepStatus::Skipped, "container mode: /dev/pts is not empty: left as it is");
            return;
        }
        let _ = self.sys.mkdir_all(Path::new("/dev/pts"), 0o755);
        let flags = mf::NOSUID | mf::NOEXEC;
        let first = self.sys.mount(
            "devpts",
            Path::new("/dev/pts"),
            "devpts",
            flags,
            Some("gid=5,mode=620,ptmxmode=666"),
        );
        // gid 5 (tty) may not exist in a user namespace.
        let result = match first {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.sys.mount(
                "devpts",
                Path::new("/dev/pts"),
                "devpts",
                flags,
                Some("mode=620,ptmxmode=666"),
            ),
            r => r,
        };
        match result {
            Ok(()) => self.step("devpts", StepStatus::Done, "mounted devpts on /dev/pts"),
            Err(e) if is_busy(&e) => self.step("devpts", StepStatus::Done, "/dev/pts was already mounted"),
            Err(e) => self.step("devpts", StepStatus::Warning, format!("mount devpts on /dev/pts: {e}")),
        }
    }

    fn remount_root(&mut self) {
        match self.sys.remount(Path::new("/"), mf::empty(), None) {
            Ok(()) => self.step("remount", StepStatus::Done, "/ is read-write"),
            Err(e) => {
                let st = self.fail_status(self.pid1);
                self.step("remount", st, format!("remount / read-write: {e}"))
            }
        }
    }

    fn hostname(&mut self, name: &str) {
        if !self.pid1 {
            self.step("hostname", StepStatus::Skipped, "container mode: the host name is not the agent's");
            return;
        }
        match self.sys.sethostname(name) {
            Ok(()) => self.step("hostname", StepStatus::Done, format!("host name {name}")),
            Err(e) => self.step("hostname", StepStatus::Warning, format!("sethostname {name}: {e}")),
        }
    }

    fn loopback(&mut self) {
        match self.sys.if_get_flags("lo") {
            Ok(f) if f & IFF_UP != 0 => self.step("loopback", StepStatus::Skipped, "lo is already up"),
            Ok(f) => match self.sys.if_set_flags("lo", f | IFF_UP) {
                Ok(()) => self.step("loopback", StepStatus::Done, "lo is up"),
                Err(e) => self.step("loopback", StepStatus::Warning, format!("bringing lo up: {e}")),
            },
            Err(e) => self.step("loopback", StepStatus::Warning, format!("reading lo flags: {e}")),
        }
    }

    fn modules(&mut self, names: &[String]) {
        if !self.pid1 {
            self.step("modules", StepStatus::Skipped, "container mode: kernel modules are the host's");
            return;
        }
        let r = kmod::load_modules(self.sys, names);
        for line in r.done {
            self.step("modules", StepStatus::Done, line);
        }
        for line in r.errors {
            self.step("modules", StepStatus::Warning, line);
        }
    }

    fn network(&mut self, ip: &IpConfig) {
        match ip {
            IpConfig::Off => {}
            IpConfig::Automatic(_) if !self.pid1 => {
                self.step("network", StepStatus::Skipped, "container mode: interfaces are the host's")
            }
            IpConfig::Automatic(how) => self.dhcp(how),
            IpConfig::Static(_) if !self.pid1 => {
                self.step("network", StepStatus::Skipped, "container mode: interfaces are the host's")
            }
            IpConfig::Static(cfg) => match netcfg::apply(self.sys, cfg) {
                Ok(lines) => {
                    for l in lines {
                        self.step("network", StepStatus::Done, l);
                    }
                }
                Err(e) => self.step("network", StepStatus::Warning, e),
            },
        }
    }

    /// `ip=dhcp` as PID 1: bring the first interface up, get a lease, configure it, renew
    /// it while the agent runs. An interface an initrd already configured is left alone.
    fn dhcp(&mut self, how: &str) {
        let dev = match netcfg::first_interface(self.sys) {
            Ok(d) => d,
            Err(e) => return self.step("network", StepStatus::Failed, format!("ip={how}: {e}")),
        };
        match self.sys.if_get_ipv4(&dev) {
            Ok(Some(a)) => {
                return self.step(
                    "network",
                    StepStatus::Skipped,
                    format!("{dev} already has {a} (set before the agent ran)"),
                )
            }
            Ok(None) => {}
            Err(e) => {
                return self.step(
                    "network",
                    StepStatus::Failed,
                    format!("network interface {dev}: {e} (is its driver loaded? see the modules setting)"),
                )
            }
        }
        let up = self.sys.if_get_flags(&dev).and_then(|f| self.sys.if_set_flags(&dev, f | IFF_UP));
        if let Err(e) = up {
            return self.step("network", StepStatus::Failed, format!("{dev}: bringing it up: {e}"));
        }
        let lease = match self.sys.dhcp_acquire(&dev, DHCP_PATIENCE) {
            Ok(l) => l,
            Err(e) => return self.step("network", StepStatus::Failed, e),
        };
        self.step("dhcp", StepStatus::Done, format!("{dev}: lease {}", lease.describe()));
        let cfg = stagehand_proto::ip::StaticIp {
            client: Some(lease.address),
            netmask: Some(lease.netmask),
            gateway: lease.router,
            device: Some(dev.clone()),
            ..Default::default()
        };
        match netcfg::apply(self.sys, &cfg) {
            Ok(lines) => lines.into_iter().for_each(|l| self.step("network", StepStatus::Done, l)),
            Err(e) => return self.step("network", StepStatus::Failed, e),
        }
        self.sys.dhcp_keep_renewing(&dev, &lease);
        self.report.lease = Some((dev, lease));
    }

    fn resolver(&mut self, servers: &[String]) {
        let text: String = servers.iter().map(|s| format!("nameserver {s}\n")).collect();
        let _ = self.sys.mkdir_all(Path::new("/etc"), 0o755);
        match self.sys.write_file(Path::new("/etc/resolv.conf"), text.as_bytes()) {
            Ok(()) => {
                self.step("resolver", StepStatus::Done, format!("/etc/resolv.conf: {}", servers.join(", ")))
            }
            Err(e) => self.step("resolver", StepStatus::Warning, format!("writing /etc/resolv.conf: {e}")),
        }
    }
}

/// Run the boot sequence. `log` sees every step as it ends; the report has them all.
pub fn boot(sys: &dyn Sys, opts: &BootOptions, log: &mut dyn FnMut(&Step)) -> BootReport {
    let pid1 = opts.mode == Mode::Pid1;
    let mut b = Booter { sys, pid1, mounted: Vec::new(), report: BootReport::default(), log };
    let tmp_flags = mf::NOSUID | mf::NODEV;

    b.proc();
    b.dev();
    b.refresh_mounts();
    b.mount("sysfs", "sysfs", "/sys", mf::NOSUID | mf::NODEV | mf::NOEXEC, None, false);
    b.devpts();
    b.mount("shm", "tmpfs", "/dev/shm", tmp_flags, Some("mode=1777"), false);
    b.mount("tmp", "tmpfs", "/tmp", tmp_flags, Some("mode=1777"), false);
    b.mount("run", "tmpfs", "/run", tmp_flags, Some("mode=0755"), false);
    if opts.remount_rw {
        b.remount_root();
    }

    let ip = match opts.ip.as_deref().map(stagehand_proto::ip::parse_ip) {
        Some(Ok(ip)) => ip,
        Some(Err(e)) => {
            b.step("network", StepStatus::Warning, e);
            IpConfig::Off
        }
        None => IpConfig::Off,
    };
    let ip_hostname = match &ip {
        IpConfig::Static(s) => s.hostname.clone(),
        _ => None,
    };
    if let Some(name) = opts.hostname.clone().or(ip_hostname) {
        b.hostname(&name);
    }
    b.loopback();
    sys.setenv("PATH", &opts.path);
    b.step("path", StepStatus::Done, format!("PATH={}", opts.path));
    if !opts.modules.is_empty() {
        b.modules(&opts.modules);
    }
    b.network(&ip);
    let mut servers = opts.nameservers.clone();
    if let IpConfig::Static(s) = &ip {
        servers.extend(s.dns.iter().map(|a| a.to_string()).filter(|a| !opts.nameservers.contains(a)));
    }
    if let Some((_, lease)) = &b.report.lease {
        servers.extend(lease.dns.iter().map(|a| a.to_string()).filter(|a| !opts.nameservers.contains(a)));
    }
    if !servers.is_empty() {
        b.resolver(&servers);
    }
    b.report
}

/// Set the console log level (`/proc/sys/kernel/printk`), e.g. 1 while the uplink shares
/// the console so kernel messages do not interleave with frames. Returns the old level.
pub fn set_console_loglevel(sys: &dyn Sys, level: u32) -> io::Result<u32> {
    let path = Path::new("/proc/sys/kernel/printk");
    let old = sys.read_file(path)?;
    let old =
        String::from_utf8_lossy(&old).split_whitespace().next().and_then(|w| w.parse().ok()).unwrap_or(7);
    sys.write_file(path, format!("{level}\n").as_bytes())?;
    Ok(old)
}

/// What the running kernel says of itself, like `uname -srvm` (for the hello record).
pub fn kernel_description() -> String {
    let u = rustix::system::uname();
    [u.sysname(), u.release(), u.version(), u.machine()]
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The kernel's boot id (`/proc/sys/kernel/random/boot_id`); in a container, or when
/// /proc is missing, a fresh random id in the same format.
pub fn boot_id(sys: &dyn Sys, mode: Mode) -> String {
    if mode == Mode::Pid1 {
        if let Ok(id) = sys.read_file(Path::new("/proc/sys/kernel/random/boot_id")) {
            let id = String::from_utf8_lossy(&id).trim().to_string();
            if !id.is_empty() {
                return id;
            }
        }
    }
    let mut b = [0u8; 16];
    if rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        b[..16].copy_from_slice(&t.as_nanos().to_le_bytes());
    }
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::RecordingSys;

    fn opts(mode: Mode) -> BootOptions {
        BootOptions {
            mode,
            hostname: None,
            remount_rw: false,
            modules: vec![],
            ip: None,
            nameservers: vec![],
            path: crate::config::DEFAULT_PATH.into(),
        }
    }

    fn run(sys: &RecordingSys, o: &BootOptions) -> BootReport {
        let mut lines = Vec::new();
        let r = boot(sys, o, &mut |s| lines.push(s.line()));
        assert_eq!(lines.len(), r.steps.len());
        r
    }

    #[test]
    fn pid1_on_a_bare_kernel_mounts_everything_in_order() {
        let sys = RecordingSys::new();
        sys.set_interface("lo", 0x8, None);
        let mut o = opts(Mode::Pid1);
        o.hostname = Some("board".into());
        o.remount_rw = true;
        o.nameservers = vec!["10.0.2.3".into()];
        let r = run(&sys, &o);
        assert!(r.ok(), "{r:#?}");
        let calls: Vec<String> = sys.calls().into_iter().filter(|c| !c.starts_with("mkdir")).collect();
        assert_eq!(
            calls,
            vec![
                "mount proc /proc source=proc flags=NODEV | NOEXEC | NOSUID data=-",
                "mount devtmpfs /dev source=devtmpfs flags=NOSUID data=mode=0755",
                "symlink /dev/fd -> /proc/self/fd",
                "symlink /dev/stdin -> /proc/self/fd/0",
                "symlink /dev/stdout -> /proc/self/fd/1",
                "symlink /dev/stderr -> /proc/self/fd/2",
                "mount sysfs /sys source=sysfs flags=NODEV | NOEXEC | NOSUID data=-",
                "mount devpts /dev/pts source=devpts flags=NOEXEC | NOSUID data=gid=5,mode=620,ptmxmode=666",
                "mount tmpfs /dev/shm source=tmpfs flags=NODEV | NOSUID data=mode=1777",
                "mount tmpfs /tmp source=tmpfs flags=NODEV | NOSUID data=mode=1777",
                "mount tmpfs /run source=tmpfs flags=NODEV | NOSUID data=mode=0755",
                "remount / flags=(empty) data=-",
                "sethostname board",
                "if_set_flags lo 0x9",
                "setenv PATH=/usr/bin:/usr/sbin:/bin:/sbin:/tools/bin:/tools/sbin",
                "write /etc/resolv.conf \"nameserver 10.0.2.3\\n\"",
            ]
        );
    }

    #[test]
    fn busy_devtmpfs_counts_as_mounted() {
        let sys = RecordingSys::new();
        sys.set_interface("lo", 0x9, None);
        sys.fail("mount devtmpfs", libc::EBUSY);
        let r = run(&sys, &opts(Mode::Pid1));
        assert!(r.ok());
        let dev = r.steps.iter().find(|s| s.name == "dev").unwrap();
        assert_eq!(dev.status, StepStatus::Done);
        assert!(sys.calls_starting("mount tmpfs /dev ").is_empty());
        assert!(r.steps.iter().any(|s| s.name == "loopback" && s.status == StepStatus::Skipped));
    }

    #[test]
    fn without_devtmpfs_a_tmpfs_dev_gets_the_essential_nodes() {
        let sys = RecordingSys::new();
        sys.set_interface("lo", 0x9, None);
        sys.fail("mount devtmpfs", libc::ENODEV);
        let r = run(&sys, &opts(Mode::Pid1));
        assert!(r.ok());
        assert_eq!(sys.calls_starting("mount tmpfs /dev ").len(), 1);
        let nodes = sys.calls_starting("mknod");
        assert_eq!(nodes.len(), 8);
        assert_eq!(nodes[0], "mknod /dev/null c 1 3 666");
        assert_eq!(nodes[7], "mknod /dev/ptmx c 5 2 666");
        assert_eq!(sys.calls_starting("symlink").len(), 4);
    }

    #[test]
    fn mknod_refused_in_a_user_namespace_is_a_warning() {
        let sys = RecordingSys::new();
        sys.set_interface("lo", 0x9, None);
        sys.fail("mount devtmpfs", libc::EPERM).fail("mknod", libc::EPERM).fail("mount sysfs", libc::EPERM);
        let r = run(&sys, &opts(Mode::Pid1));
        assert!(r.ok(), "warnings only: {r:#?}");
        let dev = r.steps.iter().find(|s| s.name == "dev").unwrap();
        assert_eq!(dev.status, StepStatus::Warning);
        assert!(dev.detail.contains("null") && dev.detail.contains("console"), "{}", dev.detail);
        assert!(sys.calls().contains(&"symlink /dev/ptmx -> pts/ptmx".to_string()));
        assert_eq!(r.warnings().count(), 2);
    }

    #[test]
    fn proc_failing_as_pid1_fails_the_boot() {
        let sys = RecordingSys::new();
        sys.fail("mount proc", libc::EPERM);
        assert!(!run(&sys, &opts(Mode::Pid1)).ok());
    }

    #[test]
    fn container_mode_leaves_what_is_there_and_the_host_alone() {
        let sys = RecordingSys::new();
        sys.add_file(
            "/proc/self/mountinfo",
            "1 0 0:1 / / rw - overlay o rw\n2 1 0:2 / /proc rw - proc proc rw\n3 1 0:3 / /dev rw - tmpfs t rw\n\
             4 3 0:4 / /dev/pts rw - devpts d rw\n5 1 0:5 / /sys ro - sysfs s ro\n6 3 0:6 / /dev/shm rw - tmpfs s rw\n",
        );
        sys.add_file("/dev/fd", "");
        sys.add_file("/dev/stdin", "").add_file("/dev/stdout", "").add_file("/dev/stderr", "");
        sys.set_interface("lo", 0x9, None);
        let mut o = opts(Mode::Container);
        o.hostname = Some("x".into());
        o.modules = vec!["e1000".into()];
        o.ip = Some("10.0.2.15".into());
        let r = run(&sys, &o);
        assert!(r.ok());
        let calls: Vec<String> = sys.calls().into_iter().filter(|c| !c.starts_with("mkdir")).collect();
        assert_eq!(
            calls,
            vec![
                "mount tmpfs /tmp source=tmpfs flags=NODEV | NOSUID data=mode=1777",
                "mount tmpfs /run source=tmpfs flags=NODEV | NOSUID data=mode=0755",
                "setenv PATH=/usr/bin:/usr/sbin:/bin:/sbin:/tools/bin:/tools/sbin",
            ]
        );
        assert_eq!(r.steps.iter().filter(|s| s.status == StepStatus::Skipped).count(), 9, "{r:#?}");
    }

    #[test]
    fn container_mode_never_mounts_over_a_live_systems_folders() {
        let sys = RecordingSys::new();
        sys.add_file(
            "/proc/self/mountinfo",
            "1 0 0:1 / / rw - ext4 r rw\n2 1 0:2 / /proc rw - proc proc rw\n",
        );
        sys.add_file("/dev/null", "").add_file("/dev/pts/ptmx", "").add_file("/dev/shm/x", "");
        sys.add_file("/tmp/a-users-file", "").add_file("/run/lock", "").add_file("/sys/kernel", "");
        sys.set_interface("lo", 0x9, None);
        let r = run(&sys, &opts(Mode::Container));
        assert!(r.ok(), "{r:#?}");
        let mounts: Vec<String> = sys.calls().into_iter().filter(|c| c.starts_with("mount")).collect();
        assert!(mounts.is_empty(), "mounted over a live system: {mounts:?}");
    }

    #[test]
    fn modules_network_and_dns_from_ip_are_applied() {
        let sys = RecordingSys::new();
        sys.set_interface("lo", 0x9, None).set_interface("eth0", 0x1002, None);
        sys.add_file("/lib/modules/6.1.0-test/modules.dep", "kernel/e1000.ko:\n");
        let mut o = opts(Mode::Pid1);
        o.modules = vec!["e1000".into(), "missing".into()];
        o.ip = Some("10.0.2.15::10.0.2.2:255.255.255.0:guest:eth0::10.0.2.3".into());
        let r = run(&sys, &o);
        assert!(r.ok());
        let tail: Vec<String> =
            sys.calls().into_iter().skip_while(|c| !c.starts_with("sethostname")).collect();
        assert_eq!(
            tail,
            vec![
                "sethostname guest",
                "setenv PATH=/usr/bin:/usr/sbin:/bin:/sbin:/tools/bin:/tools/sbin",
                "finit_module /lib/modules/6.1.0-test/kernel/e1000.ko params=\"\" flags=0",
                "if_set_ipv4 eth0 10.0.2.15",
                "if_set_netmask eth0 255.255.255.0",
                "if_set_flags eth0 0x1003",
                "route add default via 10.0.2.2 dev eth0",
                "mkdir /etc 755",
                "write /etc/resolv.conf \"nameserver 10.0.2.3\\n\"",
            ]
        );
        assert_eq!(r.warnings().count(), 1);
        assert!(r.warnings().next().unwrap().detail.contains("missing"));
    }

    #[test]
    fn a_bad_ip_is_a_warning() {
        let sys = RecordingSys::new();
        sys.set_interface("lo", 0x9, None);
        let mut o = opts(Mode::Pid1);
        o.ip = Some("10.0.2.999".into());
        let r = run(&sys, &o);
        assert!(r.ok());
        assert_eq!(r.warnings().count(), 1);
    }

    fn lease() -> crate::dhcp::Lease {
        crate::dhcp::Lease {
            address: "10.0.2.15".parse().unwrap(),
            netmask: "255.255.255.0".parse().unwrap(),
            router: Some("10.0.2.2".parse().unwrap()),
            dns: vec!["10.0.2.3".parse().unwrap()],
            server: "10.0.2.2".parse().unwrap(),
            next_server: None,
            lease_secs: 86400,
            renew_secs: 43200,
        }
    }

    fn dhcp_sys() -> RecordingSys {
        let sys = RecordingSys::new();
        sys.add_dir("/sys/class/net").add_dir("/sys/class/net/lo").add_dir("/sys/class/net/eth0");
        sys.set_interface("lo", 0x9, None);
        sys.set_interface("eth0", 0x1002, None);
        sys
    }

    #[test]
    fn dhcp_brings_the_interface_up_configures_the_lease_and_keeps_renewing() {
        let sys = dhcp_sys();
        sys.set_lease(lease());
        let mut o = opts(Mode::Pid1);
        o.ip = Some("dhcp".into());
        let r = run(&sys, &o);
        assert!(r.ok(), "{r:#?}");
        let net: Vec<String> = sys
            .calls()
            .into_iter()
            .filter(|c| c.contains("eth0") || c.starts_with("dhcp") || c.contains("resolv"))
            .collect();
        assert_eq!(
            net,
            [
                "if_set_flags eth0 0x1003",
                "dhcp eth0 60s",
                "if_set_ipv4 eth0 10.0.2.15",
                "if_set_netmask eth0 255.255.255.0",
                "if_set_flags eth0 0x1003",
                "route add default via 10.0.2.2 dev eth0",
                "dhcp renew eth0 10.0.2.15 every 43200s",
                "write /etc/resolv.conf \"nameserver 10.0.2.3\\n\"",
            ]
        );
        assert_eq!(r.lease.as_ref().map(|(d, l)| (d.as_str(), l.address)), Some(("eth0", lease().address)));
    }

    #[test]
    fn no_lease_fails_the_boot_saying_why_and_a_configured_interface_is_left_alone() {
        let sys = dhcp_sys();
        let mut o = opts(Mode::Pid1);
        o.ip = Some("dhcp".into());
        let r = run(&sys, &o);
        assert!(!r.ok());
        assert!(r.warnings().any(|s| s.detail.contains("no answer from a DHCP server on eth0")), "{r:#?}");

        let sys = dhcp_sys();
        sys.set_interface("eth0", 0x1043, Some("10.0.2.15".parse().unwrap()));
        let r = run(&sys, &o);
        assert!(r.ok());
        assert!(!sys.calls().iter().any(|c| c.starts_with("dhcp")));
        let mut c = opts(Mode::Container);
        c.ip = Some("dhcp".into());
        let sys = dhcp_sys();
        assert!(run(&sys, &c).ok());
        assert!(!sys.calls().iter().any(|c| c.starts_with("dhcp")));
    }

    #[test]
    fn identity_for_the_hello_record() {
        assert!(kernel_description().starts_with("Linux "));
        let sys = RecordingSys::new();
        sys.add_file("/proc/sys/kernel/random/boot_id", "0f4c2a5e-1b2c-4d3e-8f90-123456789abc\n");
        assert_eq!(boot_id(&sys, Mode::Pid1), "0f4c2a5e-1b2c-4d3e-8f90-123456789abc");
        let a = boot_id(&sys, Mode::Container);
        assert_eq!(a.len(), 36);
        assert_ne!(a, boot_id(&sys, Mode::Container));
    }

    #[test]
    fn console_loglevel_is_lowered_and_the_old_one_returned() {
        let sys = RecordingSys::new();
        sys.add_file("/proc/sys/kernel/printk", "7\t4\t1\t7\n");
        assert_eq!(set_console_loglevel(&sys, 1).unwrap(), 7);
        assert_eq!(sys.file("/proc/sys/kernel/printk").unwrap(), b"1\n");
    }
}
