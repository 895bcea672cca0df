//! Netboot: the agent's own small initramfs (the agent, its configuration and key, and the
//! kernel modules it needs before its root is mounted: the NIC, NFS or 9p, the channel) and
//! the boot files a lab's TFTP server hands out. The root itself stays an image folder,
//! the one `stagehand serve nfs` exports.

use super::kmods::{self, Installed};
use super::newc;
use anyhow::{Context, Result};
use stagehand_proto::config::Config;
use stagehand_proto::paths::{self, in_image};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Mount points the agent uses before and during the root switch.
pub const MOUNT_POINTS: &[&str] = &["dev", "proc", "sys", "run", "tmp", "newroot"];

/// The root the boot files name: NFSv4 from the DHCP server (`next-server`, or the DHCP
/// server itself) on the port `stagehand serve nfs` listens on by default.
pub const DEFAULT_ROOT: &str = "nfs::/export,vers=4.2";

/// The folder of an image that holds `/init` and `/etc/stagehand/agent.json`: `dir` itself
/// (`--format dir`) or `dir/root` (`--format netboot`).
pub fn image_root(dir: &Path) -> Result<PathBuf> {
    for root in [dir.to_path_buf(), dir.join("root")] {
        if root.join(in_image(paths::CONFIG)).is_file() {
            return Ok(root);
        }
    }
    anyhow::bail!(
        "{} is not an image folder (no {}): make one with `stagehand image --format dir` or `--format netboot`",
        dir.display(),
        paths::CONFIG
    )
}

/// The modules the agent of `config` loads, read with the agent's own loader.
pub fn config_modules(config_text: &str) -> Vec<String> {
    let mut c = Config::default();
    c.apply_json(config_text, "agent.json", &mut Vec::new());
    c.modules
}

/// What [`write_initramfs`] put in.
#[derive(Debug, Default)]
pub struct Initramfs {
    /// The modules copied (none without a modules folder).
    pub modules: Option<Installed>,
    /// The `modules` setting of the initramfs' configuration.
    pub loads: Vec<String>,
}

/// Write the agent's netboot initramfs (gzip newc) for the image folder `root` to `out`.
/// `kernel_modules`: the kernel's `modules/<version>` folder; `load` are loaded by the agent
/// before the network comes up (the NIC, the channel's), `carry` only copied (what the root's
/// mount needs: the agent loads those itself). The configuration is the image's own, with
/// `load` added to its `modules`, so both sides of the switch name the same link and key.
pub fn write_initramfs(
    root: &Path,
    kernel_modules: Option<&Path>,
    load: &[String],
    carry: &[&str],
    out: &Path,
) -> Result<Initramfs> {
    let config_path = root.join(in_image(paths::CONFIG));
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let mut config: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON: write the image again", config_path.display()))?;
    let mut loads = config_modules(&text);
    for m in load {
        if !loads.contains(m) {
            loads.push(m.clone());
        }
    }
    config["modules"] = loads.clone().into();

    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let work = tempfile::Builder::new().prefix(".stagehand-initramfs").tempdir_in(parent)?;
    let tree = work.path();
    std::fs::set_permissions(tree, std::fs::Permissions::from_mode(0o755))?;
    for d in MOUNT_POINTS {
        std::fs::create_dir_all(tree.join(d))?;
    }
    let init = tree.join(in_image(paths::AGENT));
    std::fs::copy(root.join(in_image(paths::AGENT)), &init)
        .with_context(|| format!("{} has no agent at {}", root.display(), paths::AGENT))?;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))?;
    let cfg = tree.join(in_image(paths::CONFIG));
    std::fs::create_dir_all(cfg.parent().expect("the configuration has a folder"))?;
    std::fs::write(&cfg, format!("{}\n", serde_json::to_string_pretty(&config)?))?;
    let key_from = root.join(in_image(paths::KEY));
    let key = stagehand_proto::wire::Key::from_hex_file(&key_from)
        .with_context(|| format!("the image's key {} cannot be read", key_from.display()))?;
    key.write_new_file(&tree.join(in_image(paths::KEY)))?;
    let modules = match kernel_modules {
        Some(dir) => Some(kmods::install(dir, &loads, carry, tree)?),
        None => None,
    };
    let file = std::fs::File::create(out).with_context(|| format!("cannot write {}", out.display()))?;
    let mut gz = flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::default());
    newc::write_tree(tree, &mut gz)?;
    gz.finish()?.flush()?;
    Ok(Initramfs { modules, loads })
}

/// The kernel command line a netbooted board needs with the agent's initramfs.
pub fn kernel_cmdline(console: &str, root: &str) -> String {
    format!("rdinit=/init console={console} panic=-1 ip=dhcp stagehand.root={root}")
}

/// `boot.ipxe`: kernel and initramfs from the TFTP server that answered (iPXE's
/// `${next-server}`), relative names so any TFTP root works.
pub fn ipxe_script(cmdline: &str) -> String {
    format!("#!ipxe\n# stagehand netboot: the agent's initramfs mounts its root over NFS\nkernel vmlinuz {cmdline}\ninitrd {TFTP_INITRAMFS}\nboot\n")
}

/// `pxelinux.cfg/default` for PXELINUX (and U-Boot's `pxe get; pxe boot`).
pub fn pxelinux_config(cmdline: &str) -> String {
    format!("DEFAULT stagehand\nLABEL stagehand\n  KERNEL vmlinuz\n  INITRD {TFTP_INITRAMFS}\n  APPEND {cmdline}\n")
}

/// The name of the initramfs in the TFTP folder (what the boot files load).
pub const TFTP_INITRAMFS: &str = "initrd.img";

/// The rest of the TFTP folder beside its [`TFTP_INITRAMFS`]: `vmlinuz`, `boot.ipxe`,
/// `pxelinux.cfg/default`.
pub fn write_tftp_dir(dir: &Path, kernel: &Path, cmdline: &str) -> Result<()> {
    std::fs::create_dir_all(dir.join("pxelinux.cfg"))?;
    std::fs::copy(kernel, dir.join("vmlinuz"))
        .with_context(|| format!("cannot copy the kernel {}", kernel.display()))?;
    std::fs::write(dir.join("boot.ipxe"), ipxe_script(cmdline))?;
    std::fs::write(dir.join("pxelinux.cfg/default"), pxelinux_config(cmdline))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn image(dir: &Path, config: &str) -> PathBuf {
        let root = dir.join("img");
        std::fs::create_dir_all(root.join("etc/stagehand")).unwrap();
        std::fs::write(root.join("init"), b"\x7fELF agent").unwrap();
        std::fs::write(root.join(in_image(paths::CONFIG)), config).unwrap();
        let key = stagehand_proto::wire::Key::generate().unwrap();
        key.write_new_file(&root.join(in_image(paths::KEY))).unwrap();
        root
    }

    fn entries(cpio_gz: &Path) -> Vec<(String, Vec<u8>)> {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(cpio_gz).unwrap()).read_to_end(&mut raw).unwrap();
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let h = &raw[at..at + 110];
            assert_eq!(&h[..6], b"070701");
            let field = |i: usize| {
                usize::from_str_radix(std::str::from_utf8(&h[6 + i * 8..14 + i * 8]).unwrap(), 16).unwrap()
            };
            let (size, namesize) = (field(6), field(11));
            let name = String::from_utf8(raw[at + 110..at + 110 + namesize - 1].to_vec()).unwrap();
            let data_at = (at + 110 + namesize).div_ceil(4) * 4;
            if name == "TRAILER!!!" {
                return out;
            }
            out.push((name, raw[data_at..data_at + size].to_vec()));
            at = (data_at + size).div_ceil(4) * 4;
        }
    }

    #[test]
    fn the_initramfs_carries_the_agent_its_key_and_the_modules_to_load() {
        let d = tempfile::tempdir().unwrap();
        let root =
            image(d.path(), r#"{"target":"x86_64","channel":"serial:/dev/ttyS1","modules":["virtio_blk"]}"#);
        let kdir = d.path().join("modules/6.1.0-test");
        for f in [
            "kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
            "kernel/fs/nfs/nfsv4.ko",
            "kernel/fs/nfs/nfs.ko",
            "kernel/drivers/block/virtio_blk.ko",
        ] {
            std::fs::create_dir_all(kdir.join(f).parent().unwrap()).unwrap();
            std::fs::write(kdir.join(f), f).unwrap();
        }
        std::fs::write(
            kdir.join("modules.dep"),
            "kernel/drivers/net/ethernet/intel/e1000/e1000.ko:\nkernel/fs/nfs/nfsv4.ko: kernel/fs/nfs/nfs.ko\nkernel/fs/nfs/nfs.ko:\nkernel/drivers/block/virtio_blk.ko:\n",
        )
        .unwrap();
        let out = d.path().join("initrd.img");
        let made = write_initramfs(&root, Some(&kdir), &["e1000".into()], &["nfsv4", "9p"], &out).unwrap();
        assert_eq!(made.loads, ["virtio_blk", "e1000"]);
        let m = made.modules.unwrap();
        assert_eq!((m.files, m.absent.as_slice()), (4, &["9p".to_string()][..]));
        let files = entries(&out);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "init",
            "etc/stagehand/agent.json",
            "etc/stagehand/key",
            "newroot",
            "dev/console",
            "proc",
            "sys",
            "run",
            "lib/modules/6.1.0-test/modules.dep",
            "lib/modules/6.1.0-test/kernel/fs/nfs/nfs.ko",
        ] {
            assert!(names.contains(&want), "{want} not in {names:?}");
        }
        let find = |n: &str| files.iter().find(|(name, _)| name == n).unwrap().1.clone();
        assert_eq!(find("init"), b"\x7fELF agent");
        assert_eq!(find("etc/stagehand/key"), std::fs::read(root.join("etc/stagehand/key")).unwrap());
        let cfg = String::from_utf8(find("etc/stagehand/agent.json")).unwrap();
        assert_eq!(config_modules(&cfg), ["virtio_blk", "e1000"]);
        let mut w = Vec::new();
        Config::default().apply_json(&cfg, "agent.json", &mut w);
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn image_folders_are_found_or_named_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let root = image(d.path(), "{}");
        assert_eq!(image_root(&root).unwrap(), root);
        assert!(image_root(d.path()).unwrap_err().to_string().contains("--format dir"));
        std::fs::rename(&root, d.path().join("root")).unwrap();
        assert_eq!(image_root(d.path()).unwrap(), d.path().join("root"));
        let e = write_initramfs(&d.path().join("nope"), None, &[], &[], &d.path().join("i")).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }

    #[test]
    fn boot_files_name_the_initramfs_and_a_root_the_agent_accepts() {
        let line = kernel_cmdline("ttyS0", DEFAULT_ROOT);
        let root = stagehand_proto::config::cmdline_value(&line, "stagehand.root").unwrap();
        let spec: stagehand_proto::root::RootSpec = root.parse().unwrap();
        assert!(spec.needs_network());
        assert!(
            ipxe_script(&line).starts_with("#!ipxe\n")
                && ipxe_script(&line).contains("initrd initrd.img\nboot\n")
        );
        assert!(pxelinux_config(&line).contains(&format!("APPEND {line}\n")));
    }
}
