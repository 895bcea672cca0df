//! `stagehand serve nfs`: a user-space NFS server (nfs-ganesha) exporting an image folder,
//! for an agent that mounts it as its root (`root=nfs:...`), until Ctrl-C.

use anyhow::{Context, Result};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The NFSv4 pseudo path of the export.
pub const PSEUDO: &str = "/export";
pub const INSTALL_HINT: &str = "apt-get install nfs-ganesha nfs-ganesha-vfs";

#[derive(clap::Args, Debug)]
pub struct ServeCmd {
    #[command(subcommand)]
    pub what: ServeWhat,
}

#[derive(clap::Subcommand, Debug)]
pub enum ServeWhat {
    /// Export an image folder (`stagehand image --format dir`) over NFS with nfs-ganesha.
    Nfs(NfsCmd),
}

#[derive(clap::Args, Debug)]
pub struct NfsCmd {
    /// The image folder to export (read-write: the build happens in it).
    #[arg(long, value_name = "DIR")]
    pub image: PathBuf,
    /// Address and TCP port to listen on. 127.0.0.1 serves QEMU guests (they reach it as
    /// 10.0.2.2); a board needs an address of the host on the board's network.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:2049")]
    pub listen: SocketAddrV4,
    /// NFS version: 4 (one TCP port, no rpcbind) or 3 (needs rpcbind running on the host,
    /// and a MOUNT port: --mount-port).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(3..=4))]
    pub version: u8,
    /// NFSv3's MOUNT port.
    #[arg(long, value_name = "PORT", default_value_t = 20048)]
    pub mount_port: u16,
    /// Stop by itself after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub for_secs: Option<u64>,
}

/// The ganesha configuration exporting `dir` (absolute) on `listen`.
pub fn ganesha_conf(dir: &Path, listen: SocketAddrV4, version: u8, mount_port: u16) -> String {
    let (protocols, udp) = if version == 3 { ("3, 4", "true") } else { ("4", "false") };
    format!(
        r#"NFS_CORE_PARAM {{
  Bind_addr = {addr};
  NFS_Port = {port};
  MNT_Port = {mount_port};
  Protocols = {protocols};
  Enable_UDP = {udp};
  Enable_NLM = false;
  Enable_RQUOTA = false;
}}
NFSV4 {{ Graceless = true; }}
EXPORT {{
  Export_Id = 1;
  Path = "{dir}";
  Pseudo = "{PSEUDO}";
  Protocols = {protocols};
  Transports = TCP;
  Access_Type = RW;
  Squash = No_Root_Squash;
  SecType = sys;
  # QEMU's user-mode network gives the guest's connections ordinary source ports.
  PrivilegedPort = false;
  FSAL {{ Name = VFS; }}
}}
LOG {{ Default_Log_Level = EVENT; }}
"#,
        addr = listen.ip(),
        port = listen.port(),
        dir = dir.display(),
    )
}

/// The agent's `root` setting for this server, as a board reaching it at `server` sees it.
pub fn root_setting(server: &str, dir: &Path, listen: SocketAddrV4, version: u8, mount_port: u16) -> String {
    if version == 3 {
        format!("nfs:{server}:{},vers=3,port={},mountport={mount_port}", dir.display(), listen.port())
    } else {
        format!("nfs:{server}:{PSEUDO},vers=4.2,port={}", listen.port())
    }
}

/// Kernel command lines that netboot the agent's initramfs onto this export.
pub fn kernel_lines(dir: &Path, listen: SocketAddrV4, version: u8, mount_port: u16) -> Vec<(String, String)> {
    let ip = *listen.ip();
    let mut lines = Vec::new();
    if ip.is_loopback() {
        let root = root_setting("10.0.2.2", dir, listen, version, mount_port);
        lines.push((
            "a QEMU guest (user-mode network)".to_string(),
            format!("rdinit=/init ip=dhcp stagehand.root={root}"),
        ));
    } else {
        let server = if ip.is_unspecified() { "SERVER".to_string() } else { ip.to_string() };
        let root = root_setting(&server, dir, listen, version, mount_port);
        lines.push(("a board".to_string(), format!("rdinit=/init ip=dhcp stagehand.root={root}")));
    }
    lines
}

fn wait_for_port(addr: SocketAddrV4, child: &mut std::process::Child, patience: Duration) -> Result<bool> {
    let deadline = Instant::now() + patience;
    let probe =
        if addr.ip().is_unspecified() { SocketAddrV4::new(Ipv4Addr::LOCALHOST, addr.port()) } else { addr };
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&probe.into(), Duration::from_millis(200)).is_ok() {
            return Ok(true);
        }
        if child.try_wait()?.is_some() {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(false)
}

fn blocked_stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

impl ServeCmd {
    pub fn run(self) -> Result<()> {
        match self.what {
            ServeWhat::Nfs(cmd) => cmd.run(),
        }
    }
}

/// A running nfs-ganesha exporting one folder; stopped (SIGTERM, then SIGKILL) on drop.
pub struct NfsServer {
    child: std::process::Child,
    pub listen: SocketAddrV4,
    pub version: u8,
    pub mount_port: u16,
    /// The exported folder, canonical.
    pub dir: PathBuf,
    /// Holds the configuration and ganesha's log.
    work: tempfile::TempDir,
}

impl NfsServer {
    /// Start ganesha exporting `image` (an image folder) on `listen`; returns once it accepts
    /// connections. `stop_signals_blocked`: the caller takes SIGINT/SIGTERM/SIGHUP itself,
    /// so ganesha is started with an empty signal mask.
    pub fn start(image: &Path, listen: SocketAddrV4, version: u8, mount_port: u16) -> Result<NfsServer> {
        let ganesha = crate::util::which("ganesha.nfsd")
            .or_else(|| Some(PathBuf::from("/usr/bin/ganesha.nfsd")).filter(|p| p.exists()))
            .with_context(|| format!("nfs-ganesha is not installed: {INSTALL_HINT}"))?;
        let dir = std::fs::canonicalize(image)
            .with_context(|| format!("image folder {} does not exist", image.display()))?;
        if !dir.join(stagehand_proto::paths::in_image(stagehand_proto::paths::CONFIG)).is_file() {
            anyhow::bail!(
                "{} has no {}: export a folder written by `stagehand image --format dir`",
                dir.display(),
                stagehand_proto::paths::CONFIG
            );
        }
        if std::net::TcpListener::bind(listen).is_err() {
            anyhow::bail!("{listen} is in use or not an address of this host: pick another --listen");
        }
        if version == 3 {
            let rpc = Command::new("rpcinfo").args(["-p", &listen.ip().to_string()]).output();
            if !rpc.is_ok_and(|o| o.status.success()) {
                anyhow::bail!(
                    "NFSv3 needs rpcbind on {} (nfs-ganesha registers with it): start rpcbind, or use --version 4",
                    listen.ip()
                );
            }
        }
        let work = tempfile::Builder::new().prefix("stagehand-nfs").tempdir()?;
        let conf = work.path().join("ganesha.conf");
        std::fs::write(&conf, ganesha_conf(&dir, listen, version, mount_port))?;
        let log_file = work.path().join("ganesha.log");
        let mut cmd = Command::new(&ganesha);
        cmd.arg("-F").arg("-L").arg(&log_file).arg("-f").arg(&conf).arg("-p").arg(work.path().join("pid"));
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        use std::os::unix::process::CommandExt;
        // SAFETY: sigprocmask is async-signal-safe; the child starts with nothing blocked
        // even when this process takes its stop signals with sigtimedwait.
        unsafe {
            cmd.pre_exec(|| {
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("cannot start {}", ganesha.display()))?;
        let mut server = NfsServer { child, listen, version, mount_port, dir, work };
        if !wait_for_port(listen, &mut server.child, Duration::from_secs(30))? {
            let tail = std::fs::read_to_string(server.log_file()).unwrap_or_default();
            let last: Vec<&str> = tail.lines().filter(|l| l.contains("FATAL") || l.contains("MAJ")).collect();
            anyhow::bail!(
                "nfs-ganesha did not start on {listen}: {}",
                last.last().copied().unwrap_or("see its log (no FATAL line)")
            );
        }
        Ok(server)
    }

    pub fn log_file(&self) -> PathBuf {
        self.work.path().join("ganesha.log")
    }

    /// The agent's `root` setting for this export, as a guest reaching it at `server` sees it.
    pub fn root_setting(&self, server: &str) -> String {
        root_setting(server, &self.dir, self.listen, self.version, self.mount_port)
    }

    /// `Some(status)` when ganesha ended by itself.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Keep ganesha's log at `to` (for a run folder) when the server stops.
    pub fn copy_log(&self, to: &Path) {
        let _ = std::fs::copy(self.log_file(), to);
    }

    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NfsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_loopback_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl NfsCmd {
    pub fn run(self) -> Result<()> {
        // Stop signals are taken here (sigtimedwait below); ganesha gets its own default set.
        let set = blocked_stop_signals();
        // SAFETY: blocking signals of this (single-threaded) process.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        let mut server = NfsServer::start(&self.image, self.listen, self.version, self.mount_port)?;
        println!("serving {} over NFSv{} on {}", server.dir.display(), self.version, self.listen);
        for (who, line) in kernel_lines(&server.dir, self.listen, self.version, self.mount_port) {
            println!("kernel command line for {who}: {line}");
        }
        println!("stop with Ctrl-C");
        let until = self.for_secs.map(|s| Instant::now() + Duration::from_secs(s));
        let timeout = libc::timespec { tv_sec: 1, tv_nsec: 0 };
        let reason = loop {
            // SAFETY: valid set and timeout; the signal's info is not needed.
            let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
            if sig > 0 {
                break format!("signal {sig}");
            }
            if let Some(status) = server.exited()? {
                anyhow::bail!(
                    "nfs-ganesha stopped by itself ({status}); its log: {}",
                    server.log_file().display()
                );
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                break "--for-secs elapsed".to_string();
            }
        };
        drop(server);
        println!("stopped ({reason}); nothing is left listening on {}", self.listen);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_needs_one_port_and_no_rpcbind() {
        let listen: SocketAddrV4 = "127.0.0.1:41000".parse().unwrap();
        let c = ganesha_conf(Path::new("/srv/img"), listen, 4, 20048);
        assert!(c.contains("Bind_addr = 127.0.0.1;") && c.contains("NFS_Port = 41000;"));
        assert!(c.contains("Protocols = 4;") && c.contains("Enable_UDP = false;"));
        assert!(c.contains("Path = \"/srv/img\";") && c.contains("Pseudo = \"/export\";"));
        assert!(!c.contains("Register_With_Rpcbind"), "not a ganesha 4.3 option");
        let lines = kernel_lines(Path::new("/srv/img"), listen, 4, 20048);
        assert_eq!(
            lines[0].1,
            "rdinit=/init ip=dhcp stagehand.root=nfs:10.0.2.2:/export,vers=4.2,port=41000"
        );
    }

    #[test]
    fn the_printed_root_is_one_the_agent_accepts() {
        for (listen, v) in [("127.0.0.1:2049", 4), ("192.0.2.7:2049", 3), ("0.0.0.0:2049", 4)] {
            let listen: SocketAddrV4 = listen.parse().unwrap();
            for (_, line) in kernel_lines(Path::new("/srv/img"), listen, v, 20048) {
                let root = line.split("stagehand.root=").nth(1).unwrap().replace("SERVER", "192.0.2.1");
                let spec: stagehand_proto::root::RootSpec = root.parse().unwrap_or_else(|e| panic!("{e}"));
                assert!(spec.needs_network());
            }
        }
        let v3 =
            root_setting("192.0.2.7", Path::new("/srv/img"), "192.0.2.7:2049".parse().unwrap(), 3, 20048);
        assert_eq!(v3, "nfs:192.0.2.7:/srv/img,vers=3,port=2049,mountport=20048");
        assert!(ganesha_conf(Path::new("/x"), "127.0.0.1:1".parse().unwrap(), 3, 5).contains("MNT_Port = 5;"));
    }
}
