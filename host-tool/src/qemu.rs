//! `stagehand qemu`: boot an image under QEMU (TCG) and collect from it in the same process.

use crate::collect::{self, source, SessionOpts};
use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QemuChannel {
    /// A link apart from the console, read through a socket: the second UART on x86
    /// (ttyS1), a virtio-serial port on ARM `virt` (/dev/vport0p1), hvc1 on pseries.
    Serial,
    /// The console port itself, shared with kernel messages.
    Console,
    /// User-mode networking: the guest connects to 10.0.2.2:PORT, which reaches the
    /// collector on the host's 127.0.0.1:PORT.
    Tcp,
}

/// `stagehand qemu --target ARCH --image PATH --out DIR`
#[derive(clap::Args, Debug)]
pub struct QemuCmd {
    /// Baserock architecture name.
    #[arg(long, value_name = "ARCH")]
    pub target: String,
    /// Image from `stagehand image`: cpio(.gz) initramfs or ext4.
    #[arg(long, value_name = "PATH")]
    pub image: PathBuf,
    /// Key of the image (default: <image>.key).
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
}

#[derive(Debug, PartialEq, Eq)]
pub enum ImageKind {
    Cpio,
    Ext4,
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

/// The newest Debian kernel in /boot, and its initrd if present.
fn debian_kernel() -> Option<(PathBuf, Option<PathBuf>)> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .collect();
    kernels.sort();
    let k = kernels.pop()?;
    let version = k.file_name()?.to_string_lossy().trim_start_matches("vmlinuz-").to_string();
    let initrd = PathBuf::from(format!("/boot/initrd.img-{version}"));
    Some((k, initrd.exists().then_some(initrd)))
}

/// The machine families whose wiring differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// x86 `pc`: two UARTs, PCI, SeaBIOS.
    Pc,
    /// ARM `virt` (32 and 64 bit): one PL011, virtio over MMIO.
    ArmVirt,
    /// POWER `pseries`: spapr-vty consoles (hvc0, hvc1, ...), PCI.
    Pseries,
    /// Anything else: only the console is known to work.
    Other,
}

pub fn family(machine: &str) -> Family {
    match machine {
        "pc" | "q35" => Family::Pc,
        "virt" => Family::ArmVirt,
        "pseries" => Family::Pseries,
        _ => Family::Other,
    }
}

/// Host side of the agent's link, as QEMU arguments, and what the agent is told on the
/// kernel command line (`stagehand.channel`, `stagehand.modules`, `stagehand.ip`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wiring {
    /// QEMU arguments for the channel (the console's own `-serial` included).
    pub qemu_args: Vec<String>,
    /// The agent's channel, in its own syntax.
    pub agent_channel: String,
    /// Kernel modules the agent loads before it opens the channel (by name; their
    /// dependencies come from modules.dep).
    pub modules: Vec<&'static str>,
    /// Static IPv4 set-up for the agent, kernel `ip=` syntax.
    pub ip: Option<String>,
    /// Further kernel command line words the wiring needs.
    pub kernel_args: Vec<String>,
}

/// The guest address under QEMU's user-mode network, and the host's alias seen from it.
pub const GUEST_IP: &str = "10.0.2.15";
pub const HOST_ALIAS: &str = "10.0.2.2";

/// The socket chardev the collector connects to (QEMU listens on `sock`).
fn socket_chardev(sock: &Path) -> String {
    format!("socket,id=channel,path={},server=on,wait=off", sock.display())
}

/// How `channel` is wired on `family`. `console_log` receives the console when the
/// channel is elsewhere; `sock` is the unix socket for serial-like channels.
pub fn wiring(
    family: Family,
    channel: QemuChannel,
    console_log: &Path,
    sock: &Path,
    port: u16,
) -> Result<Wiring> {
    let console_to_file = vec!["-serial".to_string(), format!("file:{}", console_log.display())];
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    Ok(match (channel, family) {
        (QemuChannel::Console, f) => Wiring {
            qemu_args: vec![
                "-chardev".into(),
                socket_chardev(sock),
                "-serial".into(),
                "chardev:channel".into(),
            ],
            agent_channel: "console".into(),
            // The hvc console driver treats ^O (0x0f) from the host as a SysRq prefix and the
            // next byte as the command (`o`: power off): the host's acknowledgements are
            // binary. With SysRq off the byte after a 0x0f is still dropped, which the
            // protocol's checksums and retransmission absorb.
            kernel_args: if f == Family::Pseries { vec!["sysctl.kernel.sysrq=0".into()] } else { vec![] },
            ..Wiring::default()
        },
        (QemuChannel::Serial, Family::Pc) => Wiring {
            qemu_args: [
                console_to_file,
                vec!["-chardev".into(), socket_chardev(sock), "-serial".into(), "chardev:channel".into()],
            ]
            .concat(),
            agent_channel: "serial:/dev/ttyS1,115200".into(),
            ..Wiring::default()
        },
        // `virt` has a single PL011: the second link is a virtio-serial port over MMIO.
        (QemuChannel::Serial, Family::ArmVirt) => Wiring {
            qemu_args: [
                console_to_file,
                s(&["-device", "virtio-serial-device", "-chardev"]),
                vec![socket_chardev(sock)],
                s(&["-device", "virtserialport,chardev=channel,name=stagehand.0"]),
            ]
            .concat(),
            agent_channel: "serial:/dev/vport0p1".into(),
            modules: vec!["virtio_mmio", "virtio_console"],
            ..Wiring::default()
        },
        // Each further -serial on pseries is another spapr-vty: hvc1.
        (QemuChannel::Serial, Family::Pseries) => Wiring {
            qemu_args: [
                console_to_file,
                vec!["-chardev".into(), socket_chardev(sock), "-serial".into(), "chardev:channel".into()],
            ]
            .concat(),
            agent_channel: "serial:/dev/hvc1".into(),
            ..Wiring::default()
        },
        (QemuChannel::Tcp, f) => {
            let (nic, modules): (&str, Vec<&'static str>) = match f {
                Family::Pc => ("e1000,netdev=net0,romfile=", vec!["e1000"]),
                Family::ArmVirt => ("virtio-net-device,netdev=net0", vec!["virtio_mmio", "virtio_net"]),
                Family::Pseries => ("spapr-vlan,netdev=net0", vec!["ibmveth"]),
                Family::Other => {
                    anyhow::bail!("--channel tcp is not wired for this machine yet: use --channel console")
                }
            };
            Wiring {
                qemu_args: [console_to_file, s(&["-netdev", "user,id=net0", "-device", nic])].concat(),
                agent_channel: format!("tcp:{HOST_ALIAS}:{port}"),
                modules,
                ip: Some(format!("{GUEST_IP}::{HOST_ALIAS}:255.255.255.0:::off")),
                kernel_args: vec![],
            }
        }
        (QemuChannel::Serial, Family::Other) => {
            anyhow::bail!("no second serial link is wired for this machine: use --channel console or tcp")
        }
    })
}

/// Every module a `stagehand qemu` wiring may ask the agent to load: what
/// `stagehand image --kernel-modules` puts into an image by default.
pub const WIRING_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_pci",
    "virtio_console",
    "virtio_net",
    "e1000",
    "ibmveth",
    "virtio_blk",
    "crc32c_generic",
    "ext4",
];

/// The words the agent reads from the kernel command line for this wiring.
pub fn agent_words(w: &Wiring) -> Vec<String> {
    let mut words = vec![format!("stagehand.channel={}", w.agent_channel)];
    if !w.modules.is_empty() {
        words.push(format!("stagehand.modules={}", w.modules.join(",")));
    }
    if let Some(ip) = &w.ip {
        words.push(format!("stagehand.ip={ip}"));
    }
    words.extend(w.kernel_args.iter().cloned());
    words
}

/// A kernel made available by `scripts/kernels.sh` in the cache.
#[derive(Debug, Clone)]
pub struct CachedKernel {
    pub image: PathBuf,
    pub initrd: Option<PathBuf>,
    pub version: String,
    /// `modules/<version>`: holds modules.dep.
    pub modules: PathBuf,
}

/// `${STAGEHAND_CACHE:-$HOME/.cache/stagehand}`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("STAGEHAND_CACHE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/stagehand")
        }
    }
}

/// The folder name `scripts/kernels.sh` uses for an architecture.
pub fn kernel_cache_name(arch: &str) -> Option<&'static str> {
    match arch {
        "x86_64" => Some("x86_64"),
        "armv8l64" => Some("aarch64"),
        "ppc64l" => Some("ppc64le"),
        "armv7lhf" | "armv7l" => Some("armv7"),
        _ => None,
    }
}

/// The cached Debian kernel for `arch`, or an error saying how to get one.
pub fn cached_kernel(arch: &str) -> Result<CachedKernel> {
    cached_kernel_in(&cache_dir(), arch)
}

pub fn cached_kernel_in(cache: &Path, arch: &str) -> Result<CachedKernel> {
    let name = kernel_cache_name(arch)
        .with_context(|| format!("no Debian kernel is known for {arch}: build one and pass --kernel"))?;
    let dir = cache.join("kernels").join(name);
    let version = std::fs::read_to_string(dir.join("version"))
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let image = dir.join("vmlinuz");
    match version {
        Some(version) if image.is_file() => Ok(CachedKernel {
            initrd: Some(dir.join("initrd.img")).filter(|p| p.is_file()),
            modules: dir.join("modules").join(&version),
            image,
            version,
        }),
        _ => anyhow::bail!(
            "no kernel for {arch} in {}: run `scripts/kernels.sh {name}` (or pass --kernel)",
            dir.display()
        ),
    }
}

impl QemuCmd {
    pub fn run(self) -> Result<()> {
        let arch = crate::platform::arch(&self.target)?;
        let kind = image_kind(&self.image)?;
        let fam = family(&arch.qemu_machine);
        let key_path = self.key.clone().unwrap_or_else(|| crate::image::key_path_for(&self.image));
        let key = collect::link::read_key(&key_path)?;
        let qemu_bin = crate::util::which(&arch.qemu_binary).with_context(|| {
            format!(
                "{} is not installed (Debian package {})",
                arch.qemu_binary, arch.target.qemu.debian_package
            )
        })?;
        let host_is_x86_64 = std::env::consts::ARCH == "x86_64";
        let mut cached = None;
        let (kernel, default_initrd) = match &self.kernel {
            Some(k) => (k.clone(), None),
            None if arch.name == "x86_64" && host_is_x86_64 => match debian_kernel() {
                Some(k) => k,
                None => {
                    let c = cached_kernel(&arch.name).context(
                        "no kernel in /boot either: apt-get install linux-image-amd64, or pass --kernel",
                    )?;
                    cached = Some(c.clone());
                    (c.image, c.initrd)
                }
            },
            None => {
                let c = cached_kernel(&arch.name)?;
                cached = Some(c.clone());
                (c.image, c.initrd)
            }
        };
        if let Some(c) = &cached {
            eprintln!("stagehand: kernel {} from {}", c.version, c.image.display());
        }
        if !kernel.is_file() {
            anyhow::bail!("kernel {} does not exist", kernel.display());
        }
        let initrd = self.initrd.clone().or(default_initrd);
        if kind == ImageKind::Ext4 && fam != Family::Pc && initrd.is_none() {
            anyhow::bail!(
                "{} cannot mount an ext4 root by itself (Debian builds virtio_blk and ext4 as modules): pass --initrd, or make a `--format cpio` image",
                arch.name
            );
        }
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("cannot create {}", self.out.display()))?;
        let console_name =
            if self.channel == QemuChannel::Console { "console.log" } else { "channel-console.log" };
        let (mut demux, mut link) = collect::prepare_out(&self.out, key, self.force, console_name)?;

        let sock = self.out.join("qemu-channel.sock");
        let _ = std::fs::remove_file(&sock);
        // For --channel tcp the collector listens before the guest can connect; port 0 picks a free one.
        let listener = if self.channel == QemuChannel::Tcp {
            Some(source::ListenSource::bind(&format!("127.0.0.1:{}", self.port))?)
        } else {
            None
        };
        let port = listener.as_ref().and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(self.port);
        let wired = wiring(fam, self.channel, &self.out.join("console.log"), &sock, port)?;
        if !wired.modules.is_empty() {
            let from = cached
                .as_ref()
                .map(|c| c.modules.display().to_string())
                .unwrap_or_else(|| "KERNEL/modules/VERSION".into());
            eprintln!(
                "stagehand: the agent loads {} for this channel: the image must carry them (stagehand image --kernel-modules {from})",
                wired.modules.join(" ")
            );
        }

        let console = arch.console.clone();
        let mut append = match kind {
            ImageKind::Cpio => format!("rdinit=/init console={console} panic=-1"),
            ImageKind::Ext4 => format!("root=/dev/vda rw init=/init console={console} panic=-1"),
        };
        for word in agent_words(&wired) {
            append.push(' ');
            append.push_str(&word);
        }
        if let Some(extra) = &self.append {
            append.push(' ');
            append.push_str(extra);
        }
        let mut cmd = Command::new(&qemu_bin);
        cmd.args(["-accel", "tcg", "-M", &arch.qemu_machine]);
        if let Some(cpu) = &arch.qemu_cpu {
            cmd.args(["-cpu", cpu]);
        }
        cmd.args(&arch.qemu_extra_args);
        cmd.args(["-m", &self.memory.to_string(), "-display", "none", "-no-reboot", "-monitor", "none"]);
        if fam == Family::Pc && self.channel != QemuChannel::Tcp {
            // Without it QEMU adds an e1000 whose option ROM costs seconds under TCG.
            cmd.args(["-nic", "none"]);
        }
        cmd.arg("-kernel").arg(&kernel).arg("-append").arg(&append);
        match kind {
            ImageKind::Cpio => {
                cmd.arg("-initrd").arg(&self.image);
            }
            ImageKind::Ext4 => {
                let file = crate::util::absolute(&self.image);
                if fam == Family::ArmVirt {
                    cmd.arg("-drive").arg(format!("file={},format=raw,if=none,id=disk0", file.display()));
                    cmd.args(["-device", "virtio-blk-device,drive=disk0"]);
                } else {
                    cmd.arg("-drive").arg(format!("file={},format=raw,if=virtio", file.display()));
                }
                if let Some(initrd) = &initrd {
                    cmd.arg("-initrd").arg(initrd);
                }
            }
        }
        cmd.args(&wired.qemu_args);
        let qemu_log = std::fs::File::create(self.out.join("qemu.log"))?;
        cmd.stdin(Stdio::null()).stdout(qemu_log.try_clone()?).stderr(qemu_log);
        // For --channel tcp the collector listens before the guest can connect.
        let mut src: Box<dyn source::Source> = match listener {
            Some(l) => Box::new(l),
            None => Box::new(NotYet),
        };
        eprintln!(
            "stagehand: {} {}",
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
        session?;
        collect::conclude(&self.out, &demux, display.as_mut())
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

    #[test]
    fn each_machine_gets_a_second_link_and_the_agent_is_told_what_to_load() {
        let (log, sock) = (Path::new("/o/console.log"), Path::new("/o/ch.sock"));
        let pc = wiring(Family::Pc, QemuChannel::Serial, log, sock, 7000).unwrap();
        assert_eq!(pc.agent_channel, "serial:/dev/ttyS1,115200");
        assert!(pc.modules.is_empty());
        assert_eq!(pc.qemu_args.iter().filter(|a| *a == "-serial").count(), 2);
        let arm = wiring(Family::ArmVirt, QemuChannel::Serial, log, sock, 7000).unwrap();
        assert_eq!(arm.agent_channel, "serial:/dev/vport0p1");
        assert_eq!(arm.modules, vec!["virtio_mmio", "virtio_console"]);
        assert!(arm.qemu_args.contains(&"virtio-serial-device".to_string()));
        assert!(arm.qemu_args.contains(&"virtserialport,chardev=channel,name=stagehand.0".to_string()));
        assert_eq!(
            agent_words(&arm),
            vec!["stagehand.channel=serial:/dev/vport0p1", "stagehand.modules=virtio_mmio,virtio_console"]
        );
        let ppc = wiring(Family::Pseries, QemuChannel::Serial, log, sock, 7000).unwrap();
        assert_eq!(ppc.agent_channel, "serial:/dev/hvc1");
        assert!(wiring(Family::Other, QemuChannel::Serial, log, sock, 7000).is_err());
    }

    #[test]
    fn tcp_wiring_names_the_port_the_nic_and_a_static_address() {
        let (log, sock) = (Path::new("/o/console.log"), Path::new("/o/ch.sock"));
        let pc = wiring(Family::Pc, QemuChannel::Tcp, log, sock, 41234).unwrap();
        assert_eq!(pc.agent_channel, "tcp:10.0.2.2:41234");
        assert_eq!(pc.modules, vec!["e1000"]);
        assert!(pc.qemu_args.contains(&"e1000,netdev=net0,romfile=".to_string()));
        assert_eq!(pc.ip.as_deref(), Some("10.0.2.15::10.0.2.2:255.255.255.0:::off"));
        let arm = wiring(Family::ArmVirt, QemuChannel::Tcp, log, sock, 1).unwrap();
        assert_eq!(arm.modules, vec!["virtio_mmio", "virtio_net"]);
        for f in [Family::Pc, Family::ArmVirt, Family::Pseries] {
            let w = wiring(f, QemuChannel::Tcp, log, sock, 1).unwrap();
            assert!(
                w.modules.iter().all(|m| WIRING_MODULES.contains(m)),
                "{f:?}: {:?} not all copied by image --kernel-modules",
                w.modules
            );
            let c = wiring(f, QemuChannel::Console, log, sock, 1).unwrap();
            assert_eq!(c.agent_channel, "console");
        }
    }

    #[test]
    fn kernels_are_found_in_the_cache_or_the_script_is_named() {
        assert_eq!(kernel_cache_name("armv8l64"), Some("aarch64"));
        assert_eq!(kernel_cache_name("ppc64l"), Some("ppc64le"));
        assert_eq!(kernel_cache_name("armv7lhf"), Some("armv7"));
        assert_eq!(kernel_cache_name("ppc64b"), None);
        let e = cached_kernel("ppc64b").unwrap_err().to_string();
        assert!(e.contains("--kernel"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let e = cached_kernel_in(d.path(), "armv8l64").unwrap_err().to_string();
        assert!(e.contains("scripts/kernels.sh aarch64"), "{e}");
        let k = d.path().join("kernels/aarch64");
        std::fs::create_dir_all(k.join("modules/6.1.0-9-arm64")).unwrap();
        std::fs::write(k.join("vmlinuz"), b"k").unwrap();
        std::fs::write(k.join("version"), b"6.1.0-9-arm64\n").unwrap();
        let c = cached_kernel_in(d.path(), "armv8l64").unwrap();
        assert_eq!(c.version, "6.1.0-9-arm64");
        assert_eq!(c.modules, k.join("modules/6.1.0-9-arm64"));
        assert!(c.initrd.is_none());
    }
}
