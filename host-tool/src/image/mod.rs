//! `stagehand image`: a bootable stage 2 root with the agent as /init, its configuration,
//! the bundle and a fresh key, written as a folder, a tarball, an initramfs or an ext4 image.

pub mod kmods;
pub mod netboot;
pub mod newc;

use anyhow::{Context, Result};
use stagehand_proto::channel::ChannelSpec;
use stagehand_proto::config::{Config, EndAction};
use stagehand_proto::paths::{self, in_image};
use stagehand_proto::wire::Key;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A folder (for an NFS export or a chroot).
    Dir,
    /// A tarball (gzip with --compress).
    Tar,
    /// A newc cpio initramfs (gzip with --compress).
    Cpio,
    /// An ext4 file system image (mke2fs -d, no mounting).
    Ext4,
    /// A folder with `root/` (the image folder `stagehand serve nfs` exports) and `tftp/`
    /// (kernel, the agent's own initramfs with the NIC and NFS modules, boot.ipxe,
    /// pxelinux.cfg/default) for a lab's TFTP server.
    Netboot,
}

/// `stagehand image --sysroot DIR|TAR --bundle FILE --target ARCH --channel C --format F --out PATH`
#[derive(clap::Args, Debug)]
pub struct ImageCmd {
    /// Stage 2 sysroot: a folder or a tarball.
    #[arg(long, value_name = "DIR|TAR")]
    pub sysroot: PathBuf,
    /// Build bundle: a tarball or folder (from `stagehand bundle`). Default: the sysroot's
    /// own /native-bootstrap (a Morph cross-bootstrap tarball carries its bundle).
    #[arg(long, value_name = "FILE|DIR")]
    pub bundle: Option<PathBuf>,
    /// Baserock architecture name.
    #[arg(long, value_name = "ARCH")]
    pub target: String,
    /// How the agent reaches the host, in the agent's own syntax: serial:DEV,BAUD (a baud
    /// rate, flow=rtscts and oneway are optional), console or console:DEV (oneway
    /// optional), tcp:HOST:PORT or file:PATH. DEV may be the kernel's name (ttyS1).
    #[arg(long, value_name = "CHANNEL")]
    pub channel: ChannelSpec,
    /// Image format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Output path (a folder for --format dir).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// What the agent does after a successful run: poweroff, reboot, halt, shell or exit
    /// (exit: container mode only; as PID 1 it powers off).
    #[arg(long, value_name = "ACTION", default_value = "poweroff")]
    pub on_success: EndAction,
    /// What the agent does after a failed run (same choices).
    #[arg(long, value_name = "ACTION", default_value = "poweroff")]
    pub on_failure: EndAction,
    /// Agent binary to embed (default: build it for the target).
    #[arg(long, value_name = "FILE")]
    pub agent: Option<PathBuf>,
    /// Extra agent setting, KEY=VALUE, any key of docs/config.md (or env.NAME=VALUE).
    /// VALUE as on the kernel command line (lists comma-separated), or JSON when it starts
    /// with [ { or ". Checked here with the agent's own validator.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// ext4 image size (e.g. 2G, 800M); default: tree size × 1.5 + 512 MiB.
    #[arg(long, value_name = "SIZE")]
    pub size: Option<String>,
    /// gzip the tar or cpio output.
    #[arg(long)]
    pub compress: bool,
    /// Replace --out (and its .key) if they exist.
    #[arg(long)]
    pub force: bool,
    /// A kernel's `modules/<version>` folder (with modules.dep): the modules the agent is
    /// told to load (`--set modules=...`, `--kernel-module`) and those `stagehand qemu`
    /// wirings use, with their dependencies, go to /lib/modules/VERSION in the image.
    #[arg(long, value_name = "DIR")]
    pub kernel_modules: Option<PathBuf>,
    /// A further module to copy with --kernel-modules (repeatable). With --format netboot
    /// the agent's initramfs loads it before DHCP: name the board's NIC driver here.
    #[arg(long = "kernel-module", value_name = "NAME")]
    pub kernel_module: Vec<String>,
    /// --format netboot: the kernel to put in tftp/ (default: the one `stagehand qemu`
    /// boots for the target; its modules folder is then the default --kernel-modules).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// --format netboot: the root the boot files name (the agent's `root` syntax; an empty
    /// server means the DHCP server that answered).
    #[arg(long, value_name = "ROOT", default_value = netboot::DEFAULT_ROOT)]
    pub netboot_root: stagehand_proto::root::RootSpec,
}

/// The agent's configuration file for one image: the keys given, each checked by the
/// contract's validator, and the whole document loaded back as the agent would load it.
pub fn agent_config(
    target: &str,
    bundle_in_image: &str,
    bundle_kind: Option<&str>,
    channel: &ChannelSpec,
    on_success: EndAction,
    on_failure: EndAction,
    sets: &[String],
) -> Result<serde_json::Value> {
    let mut cfg = serde_json::json!({
        "target": target,
        "bundle": bundle_in_image,
        "channel": channel.to_string(),
        "on_success": on_success.name(),
        "on_failure": on_failure.name(),
    });
    if let Some(kind) = bundle_kind {
        cfg["bundle_kind"] = kind.into();
    }
    for s in sets {
        let (k, v) = s.split_once('=').with_context(|| format!("--set {s:?} is not KEY=VALUE"))?;
        if let Some(name) = k.strip_prefix("env.") {
            if name.is_empty() || name.contains('\0') {
                anyhow::bail!("--set {s:?}: name the variable, like --set env.MAKEFLAGS=-j4");
            }
            if !cfg["env"].is_object() {
                cfg["env"] = serde_json::json!({});
            }
            cfg["env"][name] = v.into();
            continue;
        }
        let value = Config::value_from_text(k, v).map_err(|e| anyhow::anyhow!("--set {s:?}: {e}"))?;
        cfg[k] = value;
    }
    let mut warnings = Vec::new();
    Config::default().apply_json(&cfg.to_string(), "agent.json", &mut warnings);
    if let Some(w) = warnings.first() {
        anyhow::bail!("the agent would not accept this configuration: {w}");
    }
    Ok(cfg)
}

/// What the image holds besides the sysroot.
pub struct Payload<'a> {
    pub agent: &'a Path,
    /// `None` when the bundle is already in the sysroot.
    pub bundle: Option<&'a Path>,
    pub config: serde_json::Value,
    pub key: &'a Key,
}

/// Put the agent, its configuration, the bundle and the key into `root`.
pub fn embed(root: &Path, p: &Payload, bundle_in_image: &str) -> Result<()> {
    let init = root.join(in_image(paths::AGENT));
    if std::fs::symlink_metadata(&init).is_ok() {
        std::fs::remove_file(&init).with_context(|| format!("cannot replace {}", init.display()))?;
    }
    std::fs::copy(p.agent, &init).with_context(|| format!("cannot copy the agent {}", p.agent.display()))?;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))?;
    let config = root.join(in_image(paths::CONFIG));
    std::fs::create_dir_all(config.parent().expect("the configuration has a folder"))?;
    let mut json = serde_json::to_vec_pretty(&p.config)?;
    json.push(b'\n');
    std::fs::write(&config, json)?;
    let key = root.join(in_image(paths::KEY));
    if std::fs::symlink_metadata(&key).is_ok() {
        std::fs::remove_file(&key).with_context(|| format!("cannot replace {}", key.display()))?;
    }
    p.key.write_new_file(&key)?;
    if let Some(bundle) = p.bundle {
        let dest = root.join(in_image(bundle_in_image));
        std::fs::create_dir_all(dest.parent().expect("bundle path has a folder"))?;
        if bundle.is_dir() {
            crate::util::run(std::process::Command::new("cp").arg("-a").arg(bundle).arg(&dest))
                .with_context(|| format!("cannot copy the bundle {}", bundle.display()))?;
        } else {
            std::fs::copy(bundle, &dest)
                .with_context(|| format!("cannot copy the bundle {}", bundle.display()))?;
        }
    } else if !root.join(in_image(bundle_in_image)).is_file() {
        anyhow::bail!("the sysroot has no {bundle_in_image}: give the build bundle with --bundle");
    }
    // A kernel console before devtmpfs is mounted; needs root, the cpio writer adds it anyway.
    let console = root.join("dev/console");
    if std::fs::symlink_metadata(&console).is_err() {
        let _ = rustix::fs::mknodat(
            rustix::fs::CWD,
            &console,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            rustix::fs::makedev(5, 1),
        );
    }
    Ok(())
}

/// Bytes used by the files under `root` (what `du --apparent-size` would say, roughly).
pub fn tree_size(root: &Path) -> Result<u64> {
    let mut total = 0;
    for rel in newc::sorted_tree(root)? {
        let m = std::fs::symlink_metadata(root.join(rel))?;
        total += m.len().max(4096);
    }
    Ok(total)
}

/// `2G`, `800M`, `512K` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        Some('T' | 't') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| anyhow::anyhow!("bad size '{s}'; use e.g. 2G or 800M"))?;
    Ok(n * mult)
}

pub fn auto_ext4_size(tree_bytes: u64) -> u64 {
    let bytes = tree_bytes + tree_bytes / 2 + (512 << 20);
    bytes.div_ceil(1 << 20) << 20
}

fn write_compressible(
    out: &Path,
    compress: bool,
    f: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let file = std::fs::File::create(out).with_context(|| format!("cannot write {}", out.display()))?;
    let mut file = std::io::BufWriter::new(file);
    if compress {
        let mut gz = flate2::write::GzEncoder::new(&mut file, flate2::Compression::default());
        f(&mut gz)?;
        gz.finish()?;
    } else {
        f(&mut file)?;
    }
    file.flush()?;
    Ok(())
}

/// Write the tree at `root` in `format` to `out` (which does not exist yet).
pub fn write_format(
    root: &Path,
    format: Format,
    out: &Path,
    compress: bool,
    size: Option<u64>,
) -> Result<()> {
    match format {
        Format::Netboot => anyhow::bail!("--format netboot is two folders: `stagehand image` writes it"),
        Format::Dir => {
            std::fs::rename(root, out).with_context(|| format!("cannot move the tree to {}", out.display()))
        }
        Format::Cpio => write_compressible(out, compress, |w| {
            newc::write_tree(root, w)?;
            Ok(())
        }),
        Format::Tar => write_compressible(out, compress, |w| {
            let mut b = tar::Builder::new(w);
            b.follow_symlinks(false);
            b.mode(tar::HeaderMode::Deterministic);
            for rel in newc::sorted_tree(root)? {
                let full = root.join(&rel);
                let meta = std::fs::symlink_metadata(&full)?;
                use std::os::unix::fs::{FileTypeExt, MetadataExt};
                let ft = meta.file_type();
                if ft.is_char_device() || ft.is_block_device() {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(if ft.is_char_device() {
                        tar::EntryType::Char
                    } else {
                        tar::EntryType::Block
                    });
                    h.set_mode(meta.mode() & 0o7777);
                    h.set_uid(0);
                    h.set_gid(0);
                    h.set_mtime(0);
                    h.set_size(0);
                    h.set_device_major(libc::major(meta.rdev()))?;
                    h.set_device_minor(libc::minor(meta.rdev()))?;
                    h.set_cksum();
                    b.append_data(&mut h, &rel, std::io::empty())?;
                } else if ft.is_socket() || ft.is_fifo() {
                    continue;
                } else {
                    b.append_path_with_name(&full, &rel)
                        .with_context(|| format!("cannot add {} to the tarball", rel.display()))?;
                }
            }
            b.finish()?;
            Ok(())
        }),
        Format::Ext4 => {
            let mke2fs = crate::util::which("mke2fs")
                .or_else(|| Some(PathBuf::from("/sbin/mke2fs")).filter(|p| p.exists()))
                .context("mke2fs is not installed: apt-get install e2fsprogs")?;
            let bytes = match size {
                Some(s) => s,
                None => auto_ext4_size(tree_size(root)?),
            };
            let out_abs = crate::util::absolute(out);
            let status = std::process::Command::new(mke2fs)
                // Inode tables zeroed here, not by the guest kernel's ext4lazyinit thread:
                // under TCG that thread competes with the build, and when the agent powers
                // off it is cut short ("I/O error, dev vda ... WRITE_ZEROES").
                .args(["-q", "-F", "-t", "ext4", "-E", "lazy_itable_init=0", "-d"])
                .arg(root)
                .arg(&out_abs)
                .arg(format!("{}k", bytes / 1024))
                .status()
                .context("cannot run mke2fs")?;
            if !status.success() {
                let _ = std::fs::remove_file(&out_abs);
                anyhow::bail!("mke2fs failed ({status}); is --size large enough for the tree?");
            }
            Ok(())
        }
    }
}

/// Kernel command lines that boot this image with the agent as init.
pub fn kernel_cmdlines(format: Format, console: &str, out: &Path) -> Vec<(&'static str, String)> {
    let tail = format!("console={console} panic=-1");
    match format {
        Format::Cpio => vec![("initramfs", format!("rdinit=/init {tail}"))],
        Format::Ext4 => vec![("disk", format!("root=/dev/vda rw init=/init {tail}"))],
        Format::Tar => {
            vec![("disk (unpacked onto a partition)", format!("root=/dev/vda rw init=/init {tail}"))]
        }
        Format::Netboot => vec![],
        Format::Dir => vec![
            (
                "the agent's own initramfs, served by `stagehand serve nfs`",
                format!("rdinit=/init ip=dhcp stagehand.root=nfs:HOST:/export,vers=4.2 {tail}"),
            ),
            (
                "NFS root mounted by the kernel or its initrd (NFSv3)",
                format!(
                    "root=/dev/nfs nfsroot=HOST:{},vers=3,tcp ip=dhcp rw init=/init {tail}",
                    crate::util::absolute(out).display()
                ),
            ),
            ("disk (copied onto a partition)", format!("root=/dev/vda rw init=/init {tail}")),
        ],
    }
}

impl ImageCmd {
    pub fn run(self) -> Result<()> {
        let arch = crate::platform::arch(&self.target)?;
        if std::fs::symlink_metadata(&self.sysroot).is_err() {
            anyhow::bail!("sysroot {} does not exist", self.sysroot.display());
        }
        let (bundle_kind, bundle_in_image) = match &self.bundle {
            Some(b) if b.is_dir() => (crate::bundle::kind_of_tree(b)?, paths::bundle_path(None)),
            Some(b) if b.is_file() => (
                crate::bundle::kind_of_tarball(b)?,
                paths::bundle_path(Some(&b.file_name().unwrap_or_default().to_string_lossy())),
            ),
            Some(b) => {
                anyhow::bail!("bundle {} does not exist (make one with `stagehand bundle`)", b.display())
            }
            None => ("morph", paths::MORPH_BUNDLE.to_string()),
        };
        let size = self.size.as_deref().map(parse_size).transpose()?;
        if self.compress && matches!(self.format, Format::Dir | Format::Ext4 | Format::Netboot) {
            anyhow::bail!("--compress applies to --format tar or cpio only");
        }
        let key_out = paths::key_beside(&self.out);
        crate::util::claim_output(&self.out, self.force)?;
        crate::util::claim_output(&key_out, self.force)?;
        let agent = match &self.agent {
            Some(a) if a.is_file() => a.clone(),
            Some(a) => anyhow::bail!("agent {} does not exist", a.display()),
            None => crate::platform::agent_binary(&arch)?,
        };
        let config = agent_config(
            &arch.name,
            &bundle_in_image,
            Some(bundle_kind),
            &self.channel,
            self.on_success,
            self.on_failure,
            &self.set,
        )?;
        let modules = agent_modules(&config);
        if !self.kernel_module.is_empty() && self.kernel_modules.is_none() && self.format != Format::Netboot {
            anyhow::bail!("--kernel-module needs --kernel-modules (the kernel's modules/VERSION folder)");
        }
        let netboot_kernel = match self.format {
            Format::Netboot => Some(crate::kernel::find(&arch.target, self.kernel.as_deref())?),
            _ => None,
        };
        let kernel_modules = self.kernel_modules.clone().or_else(|| netboot_kernel.as_ref()?.modules.clone());
        let key = Key::generate().context("cannot get random bytes for a fresh key")?;

        let parent = self.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)?;
        let work = tempfile::Builder::new()
            .prefix(".stagehand-image")
            .tempdir_in(parent)
            .with_context(|| format!("cannot create a work folder in {}", parent.display()))?;
        let root = work.path().join("root");
        log::info!("copying the sysroot {}", self.sysroot.display());
        crate::sysroot::install(&self.sysroot, &root)?;
        let changes = crate::fixup::fixup(&root, None)?;
        crate::fixup::print_changes(&self.sysroot, &changes);
        embed(
            &root,
            &Payload { agent: &agent, bundle: self.bundle.as_deref(), config, key: &key },
            &bundle_in_image,
        )?;
        if let Some(dir) = &kernel_modules {
            let mut required = self.kernel_module.clone();
            required.extend(modules);
            let wired = arch.target.qemu.wiring.as_ref().map(|w| w.modules()).unwrap_or_default();
            let done = kmods::install(dir, &required, &wired, &root)?;
            log::info!(
                "{} module files for kernel {} in /lib/modules/{}{}",
                done.files,
                done.version,
                done.version,
                if done.builtin.is_empty() {
                    String::new()
                } else {
                    format!(" (built in: {})", done.builtin.join(" "))
                }
            );
        }
        log::info!("writing the {:?} image", self.format);
        let netboot_line = match &netboot_kernel {
            Some(kernel) => {
                let staged = work.path().join("out");
                let tftp = staged.join("tftp");
                std::fs::create_dir_all(&tftp)?;
                let mut load = self.kernel_module.clone();
                load.extend(
                    arch.target.qemu.wiring.as_ref().map(|w| w.tcp.modules.clone()).unwrap_or_default(),
                );
                let made = netboot::write_initramfs(
                    &root,
                    kernel_modules.as_deref(),
                    &load,
                    &["nfsv4", "nfsv3"],
                    &tftp.join(netboot::TFTP_INITRAMFS),
                )?;
                if kernel_modules.is_none() {
                    log::warn!("no kernel modules folder: the initramfs carries none (give --kernel-modules unless the NIC and NFS are built into the kernel)");
                }
                log::info!("the agent's initramfs loads {} before DHCP", made.loads.join(" "));
                let line = netboot::kernel_cmdline(&arch.console, &self.netboot_root.to_string());
                netboot::write_tftp_dir(&tftp, &kernel.image, &line)?;
                std::fs::rename(&root, staged.join("root"))?;
                std::fs::rename(&staged, &self.out)
                    .with_context(|| format!("cannot move the image to {}", self.out.display()))?;
                Some(line)
            }
            None => {
                write_format(&root, self.format, &self.out, self.compress, size)?;
                None
            }
        };
        key.write_new_file(&key_out)?;

        println!("image: {}", self.out.display());
        println!("key:   {} (give it to `stagehand collect --key`)", key_out.display());
        if let Some(line) = netboot_line {
            let out = crate::util::absolute(&self.out);
            println!(
                "TFTP folder: {} (vmlinuz, initrd.img, boot.ipxe, pxelinux.cfg/default)",
                out.join("tftp").display()
            );
            println!(
                "NFS root:    {} (export it: stagehand serve nfs --image {})",
                out.join("root").display(),
                out.display()
            );
            println!("kernel command line (netboot): {line}");
        }
        for (what, line) in kernel_cmdlines(self.format, &arch.console, &self.out) {
            println!("kernel command line ({what}): {line}");
        }
        Ok(())
    }
}

/// The modules the agent will load, read from `config` by the agent's own loader (a
/// JSON string is one module there, not a comma-separated list).
fn agent_modules(config: &serde_json::Value) -> Vec<String> {
    netboot::config_modules(&config.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(channel: &str, sets: &[&str]) -> Result<serde_json::Value> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let channel: ChannelSpec = channel.parse().map_err(anyhow::Error::msg)?;
        agent_config(
            "x86_64",
            "/stagehand/bundle.tar.gz",
            Some("buildstream"),
            &channel,
            EndAction::Poweroff,
            EndAction::Shell,
            &sets,
        )
    }

    #[test]
    fn config_has_the_agreed_keys_and_overrides() {
        let c = config(
            "console",
            &[
                "ip=10.0.2.15::10.0.2.2:255.255.255.0",
                "one_way_repeats=3",
                "hostname=board",
                "modules=e1000,virtio_net",
                "env.MAKEFLAGS=-j4",
            ],
        )
        .unwrap();
        assert_eq!(c["target"], "x86_64");
        assert_eq!(c["bundle"], "/stagehand/bundle.tar.gz");
        assert_eq!(c["channel"], "console");
        assert_eq!(c["on_failure"], "shell");
        assert_eq!(c["one_way_repeats"], 3);
        assert_eq!(c["hostname"], "board");
        assert_eq!(c["modules"], serde_json::json!(["e1000", "virtio_net"]));
        assert_eq!(c["env"], serde_json::json!({"MAKEFLAGS": "-j4"}));
        let mut warnings = Vec::new();
        let mut loaded = Config::default();
        loaded.apply_json(&c.to_string(), "agent.json", &mut warnings);
        assert_eq!(warnings, Vec::<String>::new());
        assert_eq!(loaded.on_failure, EndAction::Shell);
    }

    #[test]
    fn settings_the_agent_would_refuse_are_refused_here_with_one_line() {
        for (sets, needle) in [
            (&["novalue"][..], "not KEY=VALUE"),
            (&["gzip_level=12"], "0 to 9"),
            (&["frobnicate=1"], "unknown setting"),
            (&["ip=10.0.2.15/24"], "ip="),
            (&["channel=tcp:h:0"], "port 0"),
            (&["env.=x"], "name the variable"),
        ] {
            let e = format!("{:#}", config("console", sets).unwrap_err());
            assert!(e.contains(needle) && !e.contains('\n'), "{sets:?}: {e}");
        }
    }

    #[test]
    fn the_channels_the_agent_refuses_do_not_parse_here_either() {
        for s in [
            "tcp:10.0.2.2:0",
            "console,oneway",
            "console:/dev/ttyS0,flow=rtscts",
            "serial:/dev/ttyS1,20000000",
        ] {
            assert!(s.parse::<ChannelSpec>().is_err(), "{s}");
        }
        assert_eq!(
            "serial:ttyS1,115200".parse::<ChannelSpec>().unwrap().to_string(),
            "serial:/dev/ttyS1,115200"
        );
    }

    #[test]
    fn the_modules_copied_are_the_ones_the_agent_will_load() {
        let c = config("console", &["modules=e1000,virtio_net"]).unwrap();
        assert_eq!(agent_modules(&c), ["e1000", "virtio_net"]);
        // A JSON string is one module name for the agent: the host reads it the same way.
        let c = config("console", &[r#"modules="virtio_blk""#]).unwrap();
        assert_eq!(agent_modules(&c), ["virtio_blk"]);
        assert!(agent_modules(&config("console", &[]).unwrap()).is_empty());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("800M").unwrap(), 800 << 20);
        assert!(parse_size("lots").is_err());
        assert_eq!(auto_ext4_size(100 << 20), 662 << 20);
    }
}
