//! The QEMU command line, assembled by small pure functions from the target's definition
//! (`targets/*.json`, `qemu` and `qemu.wiring`) and the boot's choices. No I/O here.

use crate::targets::{Target, Wiring};
use anyhow::Result;
use stagehand_proto::channel::ChannelSpec;
use std::path::Path;

/// The guest address under QEMU's user-mode network, and the host's alias seen from it.
pub const GUEST_IP: &str = "10.0.2.15";
pub const HOST_ALIAS: &str = "10.0.2.2";

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    Cpio,
    Ext4,
}

/// The host side of the agent's link as QEMU arguments, and what the agent is told on the
/// kernel command line (`stagehand.channel`, `stagehand.modules`, `stagehand.ip`).
#[derive(Debug, PartialEq, Eq)]
pub struct ChannelWiring {
    /// QEMU arguments for the channel (the console's own `-serial` included).
    pub qemu_args: Vec<String>,
    pub agent_channel: ChannelSpec,
    /// Kernel modules the agent loads before it opens the channel (dependencies come
    /// from modules.dep).
    pub modules: Vec<String>,
    /// Static IPv4 set-up for the agent, kernel `ip=` syntax.
    pub ip: Option<String>,
    /// Further kernel command line words the wiring needs.
    pub kernel_args: Vec<String>,
}

/// The socket chardev the collector connects to (QEMU listens on `sock`).
pub fn socket_chardev(sock: &Path) -> String {
    format!("socket,id=channel,path={},server=on,wait=off", sock.display())
}

fn expand(args: &[String], chardev: &str, disk: &str) -> Vec<String> {
    args.iter().map(|a| a.replace("{chardev}", chardev).replace("{disk}", disk)).collect()
}

pub fn wiring_of<'a>(target: &'a Target, what: &str) -> Result<&'a Wiring> {
    target.qemu.wiring.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "{what} is not wired for QEMU's {} machine yet: use --channel console (targets/{}.json has no qemu.wiring)",
            target.qemu.machine,
            target.name
        )
    })
}

/// How `channel` is wired for `target`. `console_log` receives the console when the
/// channel is elsewhere; `sock` is the unix socket of serial-like channels; `port` the
/// host's TCP port.
pub fn channel_wiring(
    target: &Target,
    channel: QemuChannel,
    console_log: &Path,
    sock: &Path,
    port: u16,
) -> Result<ChannelWiring> {
    let chardev = socket_chardev(sock);
    let console_to_file = vec!["-serial".to_string(), format!("file:{}", console_log.display())];
    Ok(match channel {
        QemuChannel::Console => ChannelWiring {
            qemu_args: vec!["-chardev".into(), chardev, "-serial".into(), "chardev:channel".into()],
            agent_channel: ChannelSpec::default(),
            modules: vec![],
            ip: None,
            kernel_args: target
                .qemu
                .wiring
                .as_ref()
                .map(|w| w.console_kernel_args.clone())
                .unwrap_or_default(),
        },
        QemuChannel::Serial => {
            let w = wiring_of(target, "a second serial link")?;
            let spec = w.serial.agent_channel.as_deref().unwrap_or_default();
            ChannelWiring {
                qemu_args: [console_to_file, expand(&w.serial.qemu_args, &chardev, "")].concat(),
                agent_channel: spec.parse().map_err(|e| {
                    anyhow::anyhow!("targets/{}.json: qemu.wiring.serial.agent_channel: {e}", target.name)
                })?,
                modules: w.serial.modules.clone(),
                ip: None,
                kernel_args: vec![],
            }
        }
        QemuChannel::Tcp => {
            let w = wiring_of(target, "--channel tcp")?;
            ChannelWiring {
                qemu_args: [console_to_file, expand(&w.tcp.qemu_args, &chardev, "")].concat(),
                agent_channel: ChannelSpec::Tcp { host: HOST_ALIAS.into(), port },
                modules: w.tcp.modules.clone(),
                ip: Some(format!("{GUEST_IP}::{HOST_ALIAS}:255.255.255.0:::off")),
                kernel_args: vec![],
            }
        }
    })
}

/// The words the agent reads from the kernel command line for this wiring.
pub fn agent_words(w: &ChannelWiring) -> Vec<String> {
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

/// The kernel command line: the image's root and init, the console, the agent's words,
/// then the user's `--append`.
pub fn kernel_append(kind: ImageKind, console: &str, words: &[String], extra: Option<&str>) -> String {
    let mut append = match kind {
        ImageKind::Cpio => format!("rdinit=/init console={console} panic=-1"),
        ImageKind::Ext4 => format!("root=/dev/vda rw init=/init console={console} panic=-1"),
    };
    for word in words.iter().map(String::as_str).chain(extra) {
        append.push(' ');
        append.push_str(word);
    }
    append
}

/// Machine, CPU, memory and the switches every boot has (TCG, no display, no reboot, no
/// monitor); `networked` says whether the channel wiring brings its own NIC.
pub fn machine_args(target: &Target, memory_mib: u32, networked: bool) -> Vec<String> {
    let q = &target.qemu;
    let mut args: Vec<String> = vec!["-accel".into(), "tcg".into(), "-M".into(), q.machine.clone()];
    if !q.cpu.is_empty() {
        args.extend(["-cpu".into(), q.cpu.clone()]);
    }
    args.extend(q.extra_args.iter().cloned());
    args.extend(["-m".into(), memory_mib.to_string()]);
    args.extend(["-display", "none", "-no-reboot", "-monitor", "none"].map(String::from));
    if !networked {
        if let Some(w) = &q.wiring {
            args.extend(w.no_network.iter().cloned());
        }
    }
    args
}

/// `-kernel`, `-append` and what carries the image: the initramfs, or the disk (with the
/// initrd that mounts it, when there is one).
pub fn boot_args(
    target: &Target,
    kind: ImageKind,
    kernel: &Path,
    append: &str,
    image: &Path,
    initrd: Option<&Path>,
) -> Result<Vec<String>> {
    let mut args = vec!["-kernel".into(), kernel.display().to_string(), "-append".into(), append.to_string()];
    match kind {
        ImageKind::Cpio => args.extend(["-initrd".into(), image.display().to_string()]),
        ImageKind::Ext4 => {
            let w = wiring_of(target, "a disk root")?;
            if w.disk_root_needs_initrd && initrd.is_none() {
                anyhow::bail!(
                    "{} cannot mount an ext4 root by itself (Debian builds its block driver and ext4 as modules): pass --initrd, or make a `--format cpio` image",
                    target.name
                );
            }
            args.extend(expand(&w.disk, "", &image.display().to_string()));
            if let Some(i) = initrd {
                args.extend(["-initrd".into(), i.display().to_string()]);
            }
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::lookup;

    fn wire(target: &str, ch: QemuChannel, port: u16) -> Result<ChannelWiring> {
        channel_wiring(
            &lookup(target).unwrap(),
            ch,
            Path::new("/o/console.log"),
            Path::new("/o/ch.sock"),
            port,
        )
    }

    #[test]
    fn each_machine_gets_a_second_link_and_the_agent_is_told_what_to_load() {
        let pc = wire("x86_64", QemuChannel::Serial, 7000).unwrap();
        assert_eq!(pc.agent_channel.to_string(), "serial:/dev/ttyS1,115200");
        assert!(pc.modules.is_empty());
        assert_eq!(
            pc.qemu_args,
            [
                "-serial",
                "file:/o/console.log",
                "-chardev",
                "socket,id=channel,path=/o/ch.sock,server=on,wait=off",
                "-serial",
                "chardev:channel"
            ]
        );
        let arm = wire("armv8l64", QemuChannel::Serial, 7000).unwrap();
        assert_eq!(arm.agent_channel.to_string(), "serial:/dev/vport0p1,115200");
        assert_eq!(arm.modules, ["virtio_mmio", "virtio_console"]);
        assert!(arm.qemu_args.contains(&"virtserialport,chardev=channel,name=stagehand.0".to_string()));
        assert_eq!(
            agent_words(&arm),
            ["stagehand.channel=serial:/dev/vport0p1,115200", "stagehand.modules=virtio_mmio,virtio_console"]
        );
        assert_eq!(
            wire("ppc64l", QemuChannel::Serial, 7000).unwrap().agent_channel.to_string(),
            "serial:/dev/hvc1,115200"
        );
        let e = wire("mips64l", QemuChannel::Serial, 7000).unwrap_err().to_string();
        assert!(e.contains("--channel console") && e.contains("malta"), "{e}");
    }

    #[test]
    fn tcp_wiring_names_the_port_the_nic_and_a_static_address() {
        let pc = wire("x86_64", QemuChannel::Tcp, 41234).unwrap();
        assert_eq!(pc.agent_channel.to_string(), "tcp:10.0.2.2:41234");
        assert_eq!(pc.modules, ["e1000"]);
        assert!(pc.qemu_args.contains(&"e1000,netdev=net0,romfile=".to_string()));
        assert_eq!(pc.ip.as_deref(), Some("10.0.2.15::10.0.2.2:255.255.255.0:::off"));
        assert_eq!(wire("armv8l64", QemuChannel::Tcp, 1).unwrap().modules, ["virtio_mmio", "virtio_net"]);
        for t in ["x86_64", "armv8l64", "ppc64l", "mips64l"] {
            let c = wire(t, QemuChannel::Console, 1).unwrap();
            assert_eq!(c.agent_channel, ChannelSpec::default());
        }
        assert_eq!(wire("ppc64l", QemuChannel::Console, 1).unwrap().kernel_args, ["sysctl.kernel.sysrq=0"]);
    }

    #[test]
    fn every_word_the_agent_is_given_is_one_its_loader_accepts() {
        for t in crate::targets::all().unwrap() {
            for ch in [QemuChannel::Serial, QemuChannel::Tcp, QemuChannel::Console] {
                let Ok(w) = channel_wiring(t, ch, Path::new("/c"), Path::new("/s"), 7000) else { continue };
                let mut c = stagehand_proto::config::Config::default();
                let mut warnings = Vec::new();
                c.apply_cmdline(&agent_words(&w).join(" "), &mut warnings);
                assert_eq!(warnings, Vec::<String>::new(), "{} {ch:?}", t.name);
                assert_eq!(c.channel, w.agent_channel);
            }
        }
    }

    #[test]
    fn the_kernel_command_line_puts_the_users_words_last() {
        let words = vec!["stagehand.channel=console".to_string()];
        assert_eq!(
            kernel_append(ImageKind::Cpio, "ttyS0", &words, Some("loglevel=7")),
            "rdinit=/init console=ttyS0 panic=-1 stagehand.channel=console loglevel=7"
        );
        assert_eq!(
            kernel_append(ImageKind::Ext4, "ttyAMA0", &[], None),
            "root=/dev/vda rw init=/init console=ttyAMA0 panic=-1"
        );
    }

    #[test]
    fn machine_args_come_from_the_target_and_drop_the_default_nic_when_unused() {
        let x86 = lookup("x86_64").unwrap();
        assert_eq!(
            machine_args(&x86, 512, false).join(" "),
            "-accel tcg -M pc -cpu max -m 512 -display none -no-reboot -monitor none -nic none"
        );
        assert!(!machine_args(&x86, 512, true).contains(&"-nic".to_string()));
        let ppc = machine_args(&lookup("ppc64l").unwrap(), 1024, false).join(" ");
        assert!(
            ppc.starts_with("-accel tcg -M pseries -cpu power9 -vga none -machine cap-cfpc=broken"),
            "{ppc}"
        );
    }

    #[test]
    fn disks_attach_per_machine_and_need_an_initrd_where_the_kernel_cannot_mount_them() {
        let (k, img, initrd) = (Path::new("/k"), Path::new("/r.img"), Path::new("/i"));
        let x86 = boot_args(&lookup("x86_64").unwrap(), ImageKind::Ext4, k, "a", img, None).unwrap();
        assert_eq!(x86, ["-kernel", "/k", "-append", "a", "-drive", "file=/r.img,format=raw,if=virtio"]);
        let arm = lookup("armv8l64").unwrap();
        let e = boot_args(&arm, ImageKind::Ext4, k, "a", img, None).unwrap_err().to_string();
        assert!(e.contains("--initrd") && e.contains("--format cpio"), "{e}");
        let a = boot_args(&arm, ImageKind::Ext4, k, "a", img, Some(initrd)).unwrap();
        assert_eq!(
            a[4..],
            [
                "-drive",
                "file=/r.img,format=raw,if=none,id=disk0",
                "-device",
                "virtio-blk-device,drive=disk0",
                "-initrd",
                "/i"
            ]
        );
        let cpio = boot_args(&arm, ImageKind::Cpio, k, "a", Path::new("/x.cpio.gz"), None).unwrap();
        assert_eq!(cpio[4..], ["-initrd", "/x.cpio.gz"]);
    }
}
