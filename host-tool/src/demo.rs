//! `stagehand demo`: the whole loop on x86_64 under QEMU with small stand-ins: a busybox
//! stage 2, a two-module bundle, an initramfs; then boot, collect and verify.

use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `stagehand demo [--out DIR]`
#[derive(clap::Args, Debug)]
pub struct DemoCmd {
    /// Work and output folder.
    #[arg(long, value_name = "DIR", default_value = "stagehand-demo")]
    pub out: PathBuf,
    /// Agent binary to use instead of building one.
    #[arg(long, value_name = "FILE")]
    pub agent: Option<PathBuf>,
    /// Busybox binary for the stand-in stage 2 (Debian's busybox-static).
    #[arg(long, value_name = "FILE", default_value = "/bin/busybox")]
    pub busybox: PathBuf,
    /// Stop QEMU after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Start over in --out.
    #[arg(long)]
    pub force: bool,
}

/// A stage-2-shaped tree: busybox and its applets in /tools/bin, /usr/bin -> /tools/bin.
pub fn busybox_stage2(busybox: &Path, root: &Path) -> Result<()> {
    if !busybox.is_file() {
        anyhow::bail!("{} not found: apt-get install busybox-static, or pass --busybox", busybox.display());
    }
    let bin = root.join("tools/bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::create_dir_all(root.join("usr"))?;
    std::fs::create_dir_all(root.join("etc"))?;
    std::fs::copy(busybox, bin.join("busybox"))?;
    std::fs::set_permissions(bin.join("busybox"), std::fs::Permissions::from_mode(0o755))?;
    let list =
        std::process::Command::new(busybox).arg("--list").output().context("cannot run busybox --list")?;
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
    }
    std::os::unix::fs::symlink("/tools/bin", root.join("usr/bin"))?;
    std::os::unix::fs::symlink("tools/bin", root.join("bin"))?;
    Ok(())
}

/// A bundle in BuildStream's source-bundle layout whose modules need only a shell.
pub fn demo_bundle(out: &Path) -> Result<()> {
    let work = tempfile::tempdir()?;
    let top = work.path().join("demo-stage3");
    std::fs::create_dir_all(top.join("source"))?;
    std::fs::write(top.join("build.sh"), "#!/bin/sh\nset -eu\nexport PATH='/usr/bin:/usr/sbin/:/sbin:/bin:/tools/bin:/tools/sbin'\nexport SRCDIR='./source'\nfor module in hello greeting ; do\n    CURRENT_MODULE=\"$module\"\n    \"$SRCDIR/build-$module\"\ndone\n")?;
    std::fs::write(top.join("source/build-hello"), "#!/bin/sh\nset -e\nmkdir -p /usr/share/demo\necho 'hello from stage 3' > /usr/share/demo/hello\necho built hello\n")?;
    std::fs::write(
        top.join("source/build-greeting"),
        "#!/bin/sh\nset -e\ncat /usr/share/demo/hello > /usr/share/demo/greeting\necho built greeting\n",
    )?;
    for f in ["build.sh", "source/build-hello", "source/build-greeting"] {
        std::fs::set_permissions(top.join(f), std::fs::Permissions::from_mode(0o755))?;
    }
    let file = std::fs::File::create(out)?;
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    b.mode(tar::HeaderMode::Deterministic);
    b.append_dir_all("demo-stage3", &top)?;
    b.into_inner()?.finish()?;
    Ok(())
}

impl DemoCmd {
    pub fn run(self) -> Result<()> {
        if self.force && self.out.exists() {
            std::fs::remove_dir_all(&self.out)
                .with_context(|| format!("cannot remove {}", self.out.display()))?;
        }
        std::fs::create_dir_all(&self.out)?;
        let arch = crate::platform::arch("x86_64")?;
        let step = |s: &str| println!("== {s}");

        step("agent");
        let agent = match &self.agent {
            Some(a) => a.clone(),
            None => crate::platform::agent_binary(&arch)?,
        };
        step("stand-in stage 2 (busybox)");
        let stage2 = self.out.join("stage2");
        if !stage2.exists() {
            busybox_stage2(&self.busybox, &stage2)?;
        }
        step("bundle");
        let bundle = self.out.join("bundle.tar.gz");
        demo_bundle(&bundle)?;
        step("image (initramfs)");
        let image = self.out.join("image.cpio.gz");
        crate::image::ImageCmd {
            sysroot: stage2,
            bundle: Some(bundle),
            target: arch.name.clone(),
            channel: "serial:/dev/ttyS1,115200".parse().map_err(anyhow::Error::msg)?,
            format: crate::image::Format::Cpio,
            out: image.clone(),
            on_success: stagehand_proto::config::EndAction::Poweroff,
            on_failure: stagehand_proto::config::EndAction::Poweroff,
            agent: Some(agent),
            set: vec![],
            size: None,
            compress: true,
            force: true,
            kernel_modules: None,
            kernel_module: vec![],
            kernel: None,
            netboot_root: crate::image::netboot::DEFAULT_ROOT.parse().map_err(anyhow::Error::msg)?,
        }
        .run()?;
        step("boot under QEMU and collect");
        let run = self.out.join("run");
        crate::qemu::QemuCmd {
            target: arch.name.clone(),
            image,
            key: None,
            kernel: None,
            initrd: None,
            append: None,
            channel: crate::qemu::QemuChannel::Serial,
            port: 7000,
            memory: 512,
            out: run.clone(),
            timeout: self.timeout,
            force: true,
            root: None,
            kernel_modules: None,
        }
        .run()?;
        println!("verified sysroot tarball and report in {}", run.display());
        Ok(())
    }
}
