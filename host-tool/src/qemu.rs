//! `stagehand qemu`: boot an image under QEMU (TCG) and collect from it in the same process.

use crate::collect::{self, source, SessionOpts};
use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QemuChannel {
    /// A second serial port (the guest's ttyS1 on x86), read through a socket.
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
    /// Kernel to boot (default: the Debian kernel in /boot for x86_64).
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
    /// Host port for --channel tcp.
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
        anyhow::bail!("{} is a folder; QEMU needs `stagehand image --format cpio` or `--format ext4`", path.display());
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
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot").ok()?
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

impl QemuCmd {
    pub fn run(self) -> Result<()> {
        let arch = crate::platform::arch(&self.target)?;
        let kind = image_kind(&self.image)?;
        if self.channel == QemuChannel::Serial && !matches!(arch.name.as_str(), "x86_64" | "x86_32") {
            anyhow::bail!(
                "QEMU's {} machine has one serial port: use --channel console or tcp (and make the image with the matching --channel)",
                arch.qemu_machine
            );
        }
        let key_path = self.key.clone().unwrap_or_else(|| crate::image::key_path_for(&self.image));
        let key = collect::link::read_key(&key_path)?;
        let qemu_bin = crate::util::which(&arch.qemu_binary)
            .with_context(|| format!("{} is not installed (Debian package {})", arch.qemu_binary, arch.target.qemu.debian_package))?;
        let host_is_x86_64 = std::env::consts::ARCH == "x86_64";
        let (kernel, default_initrd) = match &self.kernel {
            Some(k) => (k.clone(), None),
            None if arch.name == "x86_64" && host_is_x86_64 => debian_kernel()
                .context("no kernel in /boot: apt-get install linux-image-amd64, or pass --kernel")?,
            None => anyhow::bail!(
                "pass --kernel for {} (Debian's {} has one)",
                arch.name,
                arch.target.kernel.debian_package.as_deref().unwrap_or("archive has none; build one")
            ),
        };
        if !kernel.is_file() {
            anyhow::bail!("kernel {} does not exist", kernel.display());
        }
        std::fs::create_dir_all(&self.out).with_context(|| format!("cannot create {}", self.out.display()))?;
        let console_name = if self.channel == QemuChannel::Console { "console.log" } else { "channel-console.log" };
        let (mut demux, mut link) = collect::prepare_out(&self.out, key, self.force, console_name)?;

        let console = arch.console.clone();
        let mut append = match kind {
            ImageKind::Cpio => format!("rdinit=/init console={console} panic=-1"),
            ImageKind::Ext4 => format!("root=/dev/vda rw init=/init console={console} panic=-1"),
        };
        if let Some(extra) = &self.append {
            append.push(' ');
            append.push_str(extra);
        }
        let sock = self.out.join("qemu-channel.sock");
        let _ = std::fs::remove_file(&sock);
        let mut cmd = Command::new(&qemu_bin);
        cmd.args(["-accel", "tcg", "-M", &arch.qemu_machine]);
        if let Some(cpu) = &arch.qemu_cpu {
            cmd.args(["-cpu", cpu]);
        }
        cmd.args(&arch.qemu_extra_args);
        cmd.args(["-m", &self.memory.to_string(), "-display", "none", "-no-reboot", "-monitor", "none"]);
        cmd.arg("-kernel").arg(&kernel).arg("-append").arg(&append);
        match kind {
            ImageKind::Cpio => {
                cmd.arg("-initrd").arg(&self.image);
            }
            ImageKind::Ext4 => {
                cmd.arg("-drive").arg(format!("file={},format=raw,if=virtio", crate::util::absolute(&self.image).display()));
                if let Some(initrd) = self.initrd.clone().or(default_initrd) {
                    cmd.arg("-initrd").arg(initrd);
                }
            }
        }
        let chardev = format!("socket,id=channel,path={},server=on,wait=off", sock.display());
        match self.channel {
            QemuChannel::Console => {
                cmd.args(["-chardev", &chardev, "-serial", "chardev:channel"]);
            }
            QemuChannel::Serial => {
                cmd.arg("-serial").arg(format!("file:{}", self.out.join("console.log").display()));
                cmd.args(["-chardev", &chardev, "-serial", "chardev:channel"]);
            }
            QemuChannel::Tcp => {
                cmd.arg("-serial").arg(format!("file:{}", self.out.join("console.log").display()));
                cmd.args(["-nic", "user,model=e1000"]);
            }
        }
        let qemu_log = std::fs::File::create(self.out.join("qemu.log"))?;
        cmd.stdin(Stdio::null()).stdout(qemu_log.try_clone()?).stderr(qemu_log);
        // For --channel tcp the collector listens before the guest can connect.
        let mut src: Box<dyn source::Source> = if self.channel == QemuChannel::Tcp {
            Box::new(source::ListenSource::bind(&format!("127.0.0.1:{}", self.port))?)
        } else {
            Box::new(NotYet)
        };
        eprintln!("stagehand: {} {}", qemu_bin.display(), cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
        let mut child = cmd.spawn().with_context(|| format!("cannot start {}", qemu_bin.display()))?;
        let started = Instant::now();
        if self.channel != QemuChannel::Tcp {
            match source::UnixClientSource::connect(&sock, Duration::from_secs(10)) {
                Ok(s) => src = Box::new(s),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e.context(format!("QEMU did not open its channel; see {}", self.out.join("qemu.log").display())));
                }
            }
        }
        let mut display = collect::ui::for_stdout();
        display.line(&format!("booting {} under QEMU ({}), collecting into {}", self.image.display(), arch.name, self.out.display()));
        let timeout = Duration::from_secs(self.timeout);
        let mut exited = None;
        let session = collect::run_session(src.as_mut(), link.as_mut(), &mut demux, display.as_mut(), &SessionOpts { timeout: Some(timeout) }, &mut || {
            if exited.is_none() {
                exited = child.try_wait().ok().flatten();
            }
            exited.is_some()
        });
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
            display.line(&format!("QEMU did not power off by itself; stopped it after {}", crate::collect::ui::human_secs(started.elapsed().as_secs_f64())));
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
}
