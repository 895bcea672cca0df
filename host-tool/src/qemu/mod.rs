//! `stagehand qemu`: boot an image under QEMU (TCG) and collect from it in the same process.
//!
//! [`crate::kernel`] finds what to boot, [`cmdline`] assembles the command line (pure functions
//! over the target's definition); this module runs QEMU beside the collector.

pub mod cmdline;

pub use cmdline::{ImageKind, QemuChannel};

use crate::collect::{self, source, SessionOpts};
use crate::kernel;
use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `stagehand qemu --target ARCH --image PATH --out DIR`
#[derive(clap::Args, Debug)]
pub struct QemuCmd {
    /// Baserock architecture name.
    #[arg(long, value_name = "ARCH")]
    pub target: String,
    /// Image from `stagehand image`: cpio(.gz) initramfs or ext4.
    #[arg(long, value_name = "PATH")]
    pub image: PathBuf,
    /// Key of the image (default: IMAGE.key beside the image).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Kernel to boot (default: the Debian kernel in /boot for x86_64, else the one
    /// `scripts/kernels.sh` put in the cache).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk for an ext4 image (default: the Debian initrd matching the kernel).
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Extra kernel command line, appended to the one the image needs.
    #[arg(long, value_name = "ARGS")]
    pub append: Option<String>,
    /// How the agent's channel is wired (must match the image's --channel).
    #[arg(long, value_enum, default_value = "serial")]
    pub channel: QemuChannel,
    /// Host port for --channel tcp (0: any free port).
    #[arg(long, default_value_t = 7000)]
    pub port: u16,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory: u32,
    /// Output folder: console.log (QEMU's console), qemu.log and everything collect writes.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Stop QEMU after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub timeout: u64,
    /// Replace a finished result in --out.
    #[arg(long)]
    pub force: bool,
    /// Netboot a folder image (`stagehand image --format dir` or `--format netboot`): the
    /// host serves it over NFSv4 (nfs-ganesha on loopback), the guest boots the agent's own
    /// initramfs, gets its address by DHCP and mounts the folder as its root.
    #[arg(long, value_enum, value_name = "HOW")]
    pub root: Option<RootVia>,
    /// The kernel's `modules/<version>` folder for the netboot initramfs (default: the
    /// cached kernel's, or /lib/modules/VERSION for the host's own kernel).
    #[arg(long, value_name = "DIR")]
    pub kernel_modules: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootVia {
    /// NFSv4 from nfs-ganesha on 127.0.0.1 (the guest reaches it as 10.0.2.2).
    Nfs,
}

/// What a netboot needs kept alive during the boot, and what it adds to the boot.
struct Netboot {
    server: crate::serve::NfsServer,
    initramfs: PathBuf,
    root: String,
    modules: Vec<String>,
}

/// Tell an initramfs from an ext4 image by their bytes.
pub fn image_kind(path: &Path) -> Result<ImageKind> {
    let meta = std::fs::metadata(path).with_context(|| format!("image {} does not exist", path.display()))?;
    if meta.is_dir() {
        anyhow::bail!(
            "{} is a folder; QEMU needs `stagehand image --format cpio` or `--format ext4`",
            path.display()
        );
    }
    let mut head = vec![0u8; 2048];
    let n = std::fs::File::open(path)?.read(&mut head)?;
    head.truncate(n);
    if head.starts_with(b"070701") {
        return Ok(ImageKind::Cpio);
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(path)?);
        let mut magic = [0u8; 6];
        if gz.read_exact(&mut magic).is_ok() && &magic == b"070701" {
            return Ok(ImageKind::Cpio);
        }
    }
    if head.len() >= 1082 && head[1080] == 0x53 && head[1081] == 0xef {
        return Ok(ImageKind::Ext4);
    }
    anyhow::bail!("{} is neither a cpio initramfs nor an ext4 image", path.display())
}

impl QemuCmd {
    pub fn run(self) -> Result<()> {
        let arch = crate::platform::arch(&self.target)?;
        let kind = if self.root.is_some() { ImageKind::Cpio } else { image_kind(&self.image)? };
        let key_path = self.key.clone().unwrap_or_else(|| stagehand_proto::paths::key_beside(&self.image));
        let key = collect::link::read_key(&key_path)?;
        let qemu_bin = crate::util::which(&arch.qemu_binary).with_context(|| {
            format!(
                "{} is not installed (Debian package {})",
                arch.qemu_binary, arch.target.qemu.debian_package
            )
        })?;
        let kernel = kernel::find(&arch.target, self.kernel.as_deref())?;
        if let Some(c) = &kernel.cached {
            log::info!("kernel {} from {}", c.version, c.image.display());
        }
        let initrd = self.initrd.clone().or(kernel.initrd.clone());
        // The folder a netboot serves, found before anything is written to --out.
        let netboot_root = self.root.map(|_| crate::image::netboot::image_root(&self.image)).transpose()?;
        let sock = self.out.join("qemu-channel.sock");
        // The listener, the wiring and the disk come before anything is written to --out.
        // For --channel tcp the collector listens before the guest can connect; port 0 picks a free one.
        let listener = if self.channel == QemuChannel::Tcp {
            Some(source::ListenSource::bind(&format!("127.0.0.1:{}", self.port))?)
        } else {
            None
        };
        let port = listener.as_ref().and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(self.port);
        let wired =
            cmdline::channel_wiring(&arch.target, self.channel, &self.out.join("console.log"), &sock, port)?;
        if !wired.modules.is_empty() && self.root.is_none() {
            let from = kernel
                .cached
                .as_ref()
                .map(|c| c.modules.display().to_string())
                .unwrap_or_else(|| "KERNEL/modules/VERSION".into());
            log::info!(
                "the agent loads {} for this channel: the image must carry them (stagehand image --kernel-modules {from})",
                wired.modules.join(" ")
            );
        }
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("cannot create {}", self.out.display()))?;
        // `--root nfs` is the one way yet: the folder is served over NFSv4.
        let net = match &netboot_root {
            Some(root) => Some(self.netboot(&arch, &kernel, &wired, root)?),
            None => None,
        };
        let mut wired = wired;
        let mut words = Vec::new();
        if let Some(n) = &net {
            wired.modules = n.modules.clone();
            if wired.ip.is_none() {
                words.push("stagehand.ip=dhcp".to_string());
            }
            words.push(format!("stagehand.root={}", n.root));
            if self.channel != QemuChannel::Tcp {
                // The NIC first: on virtio-mmio machines the channel's port keeps its
                // number (vport0p1) only when its device is not pushed down by a later one.
                let nic = cmdline::wiring_of(&arch.target, "a NIC for the NFS root")?.tcp.qemu_args.clone();
                wired.qemu_args.splice(0..0, nic);
            }
        }
        words.splice(0..0, cmdline::agent_words(&wired));
        let append = cmdline::kernel_append(kind, &arch.console, &words, self.append.as_deref());
        let image =
            net.as_ref().map(|n| n.initramfs.clone()).unwrap_or_else(|| crate::util::absolute(&self.image));
        let boot_args =
            cmdline::boot_args(&arch.target, kind, &kernel.image, &append, &image, initrd.as_deref())?;
        let console_name =
            if self.channel == QemuChannel::Console { "console.log" } else { "channel-console.log" };
        let (mut demux, mut link) = collect::prepare_out(&self.out, key, self.force, console_name)?;
        let _ = std::fs::remove_file(&sock);

        let mut cmd = Command::new(&qemu_bin);
        cmd.args(cmdline::machine_args(
            &arch.target,
            self.memory,
            self.channel == QemuChannel::Tcp || net.is_some(),
        ));
        cmd.args(boot_args);
        cmd.args(&wired.qemu_args);
        let qemu_log = std::fs::File::create(self.out.join("qemu.log"))?;
        cmd.stdin(Stdio::null()).stdout(qemu_log.try_clone()?).stderr(qemu_log);
        // For --channel tcp the collector listens before the guest can connect.
        let mut src: Box<dyn source::Source> = match listener {
            Some(l) => Box::new(l),
            None => Box::new(NotYet),
        };
        log::info!(
            "{} {}",
            qemu_bin.display(),
            cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
        );
        let mut child = cmd.spawn().with_context(|| format!("cannot start {}", qemu_bin.display()))?;
        let started = Instant::now();
        if self.channel != QemuChannel::Tcp {
            match source::UnixClientSource::connect(&sock, Duration::from_secs(10)) {
                Ok(s) => src = Box::new(s),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e.context(format!(
                        "QEMU did not open its channel; see {}",
                        self.out.join("qemu.log").display()
                    )));
                }
            }
        }
        let mut display = collect::ui::for_stdout();
        display.line(&format!(
            "booting {} under QEMU ({}), collecting into {}",
            self.image.display(),
            arch.name,
            self.out.display()
        ));
        let timeout = Duration::from_secs(self.timeout);
        let mut exited = None;
        let session = collect::run_session(
            src.as_mut(),
            link.as_mut(),
            &mut demux,
            display.as_mut(),
            &SessionOpts { timeout: Some(timeout) },
            &mut || {
                if exited.is_none() {
                    exited = child.try_wait().ok().flatten();
                }
                exited.is_some()
            },
        );
        // The agent powers the machine off by itself; give it a moment, then stop QEMU.
        let grace = Instant::now();
        let mut status = exited;
        while status.is_none() && grace.elapsed() < Duration::from_secs(15) && started.elapsed() < timeout {
            status = child.try_wait().ok().flatten();
            std::thread::sleep(Duration::from_millis(100));
        }
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            display.line(&format!(
                "QEMU did not power off by itself; stopped it after {}",
                crate::collect::ui::human_secs(started.elapsed().as_secs_f64())
            ));
        }
        let _ = std::fs::remove_file(&sock);
        if let Some(n) = &net {
            n.server.copy_log(&self.out.join("nfs-server.log"));
        }
        drop(net);
        session?;
        collect::conclude(&self.out, &demux, display.as_mut())
    }
}

impl QemuCmd {
    /// Serve the image folder over NFSv4 on loopback and write the agent's initramfs with
    /// the modules for the NIC, the channel and NFS.
    fn netboot(
        &self,
        arch: &crate::platform::Arch,
        kernel: &kernel::Kernel,
        wired: &cmdline::ChannelWiring,
        root: &Path,
    ) -> Result<Netboot> {
        let modules_dir = self.kernel_modules.clone().or(kernel.modules.clone()).with_context(|| {
            format!("the modules folder of {} is not known: pass --kernel-modules", kernel.image.display())
        })?;
        let nic = &cmdline::wiring_of(&arch.target, "a NIC for the NFS root")?.tcp;
        // write_initramfs adds each name once to what the image already loads.
        let load = [wired.modules.as_slice(), nic.modules.as_slice()].concat();
        let initramfs = self.out.join("netboot-initrd.img");
        let made =
            crate::image::netboot::write_initramfs(root, Some(&modules_dir), &load, &["nfsv4"], &initramfs)?;
        let port = crate::serve::free_loopback_port()?;
        let listen = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
        let server = crate::serve::NfsServer::start(root, listen, 4, 0)?;
        log::info!("serving {} over NFSv4 on {listen}", server.dir.display());
        // No server address: the agent mounts from the DHCP server, as on a lab's network.
        let root_word = format!("nfs::{},vers=4.2,port={port}", crate::serve::PSEUDO);
        Ok(Netboot { server, initramfs, root: root_word, modules: made.loads })
    }
}

/// Placeholder until QEMU's socket is connected.
struct NotYet;
impl source::Source for NotYet {
    fn read(&mut self, _: &mut [u8], t: Duration) -> Result<source::Got> {
        std::thread::sleep(t);
        Ok(source::Got::Idle)
    }
    fn write(&mut self, _: &[u8]) -> Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        "nothing yet".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_kinds_by_content() {
        let d = tempfile::tempdir().unwrap();
        let cpio = d.path().join("a.cpio");
        std::fs::write(&cpio, b"070701000000").unwrap();
        assert_eq!(image_kind(&cpio).unwrap(), ImageKind::Cpio);
        let gz = d.path().join("a.cpio.gz");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut e, b"070701000000").unwrap();
        std::fs::write(&gz, e.finish().unwrap()).unwrap();
        assert_eq!(image_kind(&gz).unwrap(), ImageKind::Cpio);
        let mut ext4 = vec![0u8; 4096];
        ext4[1080] = 0x53;
        ext4[1081] = 0xef;
        let img = d.path().join("root.img");
        std::fs::write(&img, ext4).unwrap();
        assert_eq!(image_kind(&img).unwrap(), ImageKind::Ext4);
        assert!(image_kind(d.path()).unwrap_err().to_string().contains("--format cpio"));
        let junk = d.path().join("junk");
        std::fs::write(&junk, b"hello").unwrap();
        assert!(image_kind(&junk).is_err());
    }
}
