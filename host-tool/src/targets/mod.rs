//! The architecture table: one definition per architecture under `targets/`, embedded at
//! build time (see `build.rs`), from which every name of an architecture is derived:
//! Baserock/Morph name, `uname -m`, GNU triples, kernel ARCH, BuildStream arch option,
//! Rust target of the agent, serial consoles, QEMU settings and wiring, Debian kernel, ELF
//! identity.
//!
//! This module is the model and the table; [`resolve`] answers "which target is `uname -m`
//! X", [`render`] turns targets into text, [`cmd`] is the `stagehand targets` verb.

pub mod cmd;
pub mod elf;
pub mod render;
pub mod resolve;

use std::fmt::Write as _;
use std::sync::OnceLock;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

include!(concat!(env!("OUT_DIR"), "/target_files.rs"));

/// One architecture, as written in `targets/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Baserock/Morph name (`armv8l64`, `ppc64b`, ...): the name used everywhere in stagehand.
    pub name: String,
    pub summary: String,
    /// Whether Morph's `valid_archs` has this name (else it is a BuildStream-era or new one).
    pub in_morph: bool,
    /// `uname -m` values that may mean this architecture.
    pub uname_m: Vec<String>,
    /// How to tell this architecture from another with the same `uname -m`, when there is one.
    pub uname_m_rule: Option<String>,
    pub endian: Endian,
    /// Word size in bits (32 or 64).
    pub bits: u8,
    pub gnu_cpu: String,
    /// The part after `gnu` in the triple: "", "eabi", "abi64".
    pub gnu_abi: String,
    /// `<cpu>-baserock-linux-gnu<abi>`
    pub gnu_triple: String,
    /// `<cpu>-bootstrap-linux-gnu<abi>`: the stage-1 cross toolchain's triple.
    pub stage1_triple: String,
    /// The kernel's `ARCH=` (arm, arm64, powerpc, ...).
    pub kernel_arch: String,
    /// Value of BuildStream's `arch` project option (same as the Baserock name).
    pub bst_arch: String,
    pub rust: RustAgent,
    pub consoles: Consoles,
    pub qemu: Qemu,
    pub kernel: Kernel,
    pub elf: ElfId,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endian {
    Little,
    Big,
}

impl std::fmt::Display for Endian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Endian::Little => "little-endian",
            Endian::Big => "big-endian",
        })
    }
}

/// How the static agent is built for a target, or why it cannot be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum RustAgent {
    Available(RustTarget),
    Unavailable {
        /// Why no agent can be built with stable Rust from rustup.
        reason: String,
        /// What it would take.
        would_need: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RustTarget {
    /// Rust target triple, e.g. `aarch64-unknown-linux-musl`.
    pub triple: String,
    pub libc: Libc,
    /// `rust-lld` for musl, Debian's cross gcc for gnu.
    pub linker: String,
    /// Cargo configuration fragment holding the linker settings, relative to the source root.
    pub cargo_config: String,
    /// Debian packages providing the linker and the static C library (empty for musl).
    pub debian_packages: Vec<String>,
    /// qemu-user binary that runs the agent on the build machine (None: runs natively).
    pub qemu_user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Libc {
    Musl,
    Gnu,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consoles {
    /// The console device under QEMU (no `/dev/`).
    pub qemu: String,
    /// The usual console devices on boards of this family.
    pub boards: Vec<BoardConsole>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardConsole {
    pub device: String,
    pub boards: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qemu {
    /// System emulator, e.g. `qemu-system-aarch64`.
    pub binary: String,
    /// Debian package providing it.
    pub debian_package: String,
    /// `-M` value.
    pub machine: String,
    /// `-cpu` value.
    pub cpu: String,
    /// Console device the kernel should be given (`console=`).
    pub console: String,
    /// Further arguments this machine needs.
    pub extra_args: Vec<String>,
    /// Whether a boot with these settings has been seen working.
    pub boot_verified: bool,
    /// How the agent's links and a disk are attached on this machine; `None`: only the
    /// console is known to work.
    pub wiring: Option<Wiring>,
}

/// The per-machine QEMU wiring `stagehand qemu` uses. In argument lists `{chardev}` stands
/// for the channel's socket chardev (`socket,id=channel,path=...`) and `{disk}` for the
/// disk image's path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wiring {
    /// A link apart from the console (second UART, virtio-serial port, hvc1).
    pub serial: Link,
    /// A NIC on QEMU's user-mode network.
    pub tcp: Link,
    /// Arguments that attach `{disk}` as the guest's /dev/vda.
    pub disk: Vec<String>,
    /// Modules an agent-mounted disk root needs (the agent or an initrd loads them).
    pub disk_modules: Vec<String>,
    /// Whether a disk root needs an initrd with this machine's Debian kernel (its block
    /// driver and ext4 are modules).
    pub disk_root_needs_initrd: bool,
    /// Arguments when no network is wired (e.g. `-nic none`: no default NIC's option ROM).
    pub no_network: Vec<String>,
    /// Kernel command line words needed when the channel shares the console.
    pub console_kernel_args: Vec<String>,
    pub note: Option<String>,
}

/// One way of wiring the agent's channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub qemu_args: Vec<String>,
    /// The agent's `channel` setting for it; `None` for TCP (the port is chosen at boot).
    pub agent_channel: Option<String>,
    /// Kernel modules the agent loads before it opens the channel.
    pub modules: Vec<String>,
}

impl Wiring {
    /// Every module this wiring may ask an agent to load: what `stagehand image
    /// --kernel-modules` copies into an image for the target by default.
    pub fn modules(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        for m in self.serial.modules.iter().chain(&self.tcp.modules).chain(&self.disk_modules) {
            if !all.contains(&m.as_str()) {
                all.push(m);
            }
        }
        all
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// Debian package with a kernel that boots under `qemu` (None: Debian has none).
    pub debian_package: Option<String>,
    /// Debian architecture of that package (`arm64`, `ppc64el`, ...).
    pub debian_arch: Option<String>,
    /// Glob of the kernel image inside the package, relative to its root.
    pub image_path: Option<String>,
    pub note: Option<String>,
    /// Folder name under the kernel cache (`scripts/kernels.sh NAME`), when that script
    /// fetches a kernel for this target.
    pub cache_name: Option<String>,
}

/// What the ELF header of a binary for this target says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElfId {
    /// `e_machine`.
    pub machine: u16,
    pub machine_name: String,
    /// 32 or 64 (`EI_CLASS`).
    pub class_bits: u8,
    /// `EI_DATA`.
    pub data: Endian,
    /// For 32-bit ARM: "hard" or "soft" float calling convention (`Tag_ABI_VFP_args`).
    pub arm_float_abi: Option<String>,
}

impl Target {
    /// The Rust target triple of the agent, if one can be built.
    pub fn rust_triple(&self) -> Option<&str> {
        match &self.rust {
            RustAgent::Available(r) => Some(&r.triple),
            RustAgent::Unavailable { .. } => None,
        }
    }

    /// The console device under QEMU (no `/dev/`).
    pub fn console(&self) -> &str {
        &self.qemu.console
    }

    /// Whether a binary with this ELF identity belongs to this target.
    pub fn matches_elf(&self, info: &elf::ElfInfo) -> bool {
        if info.machine != self.elf.machine
            || info.class_bits != self.elf.class_bits
            || info.data != self.elf.data
        {
            return false;
        }
        match (self.elf.arm_float_abi.as_deref(), info.arm_float_abi()) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        }
    }
}

/// Every architecture, sorted by name. The table is parsed once.
pub fn all() -> anyhow::Result<&'static [Target]> {
    static TABLE: OnceLock<Result<Vec<Target>, String>> = OnceLock::new();
    TABLE
        .get_or_init(|| parse_table(TARGET_FILES).map_err(|e| format!("{e:#}")))
        .as_deref()
        .map_err(|e| anyhow::anyhow!("the built-in architecture table is broken: {e}"))
}

fn parse_table(files: &[(&str, &str)]) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::with_capacity(files.len());
    for (file, text) in files {
        let t: Target = serde_json::from_str(text).with_context(|| format!("targets/{file}"))?;
        if format!("{}.json", t.name) != *file {
            bail!("targets/{file} defines {:?}: the file must be named after the target", t.name);
        }
        targets.push(t);
    }
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(targets)
}

/// All Baserock names, sorted.
pub fn names() -> anyhow::Result<Vec<&'static str>> {
    Ok(all()?.iter().map(|t| t.name.as_str()).collect())
}

/// The target with this Baserock name; an unknown name is an error listing the valid ones.
pub fn lookup(name: &str) -> anyhow::Result<Target> {
    let table = all()?;
    if let Some(t) = table.iter().find(|t| t.name == name) {
        return Ok(t.clone());
    }
    let mut msg = format!("unknown architecture {name:?}; valid names: {}", names()?.join(", "));
    let by_uname = candidates_for_uname(name)?;
    if !by_uname.is_empty() {
        let c: Vec<&str> = by_uname.iter().map(|t| t.name.as_str()).collect();
        let _ = write!(
            msg,
            " (`uname -m` {name} means {}: see `stagehand targets resolve {name}`)",
            c.join(" or ")
        );
    }
    bail!(msg)
}

/// Targets whose `uname -m` list has this value.
pub fn candidates_for_uname(uname_m: &str) -> anyhow::Result<Vec<&'static Target>> {
    Ok(all()?.iter().filter(|t| t.uname_m.iter().any(|u| u == uname_m)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: [&str; 9] =
        ["x86_64", "x86_32", "armv7lhf", "armv8l64", "armv8b64", "ppc64l", "ppc64b", "riscv64", "mips64l"];

    /// Every key of `parsed` (serialised back) must be written out in the file: a field left
    /// out of a JSON file (read as None/default) fails here.
    fn missing_keys(raw: &serde_json::Value, parsed: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        if let (Some(r), Some(p)) = (raw.as_object(), parsed.as_object()) {
            for (k, pv) in p {
                match r.get(k) {
                    None => out.push(format!("{at}.{k}")),
                    Some(rv) => missing_keys(rv, pv, &format!("{at}.{k}"), out),
                }
            }
        }
    }

    #[test]
    fn every_file_parses_with_every_field() {
        assert!(TARGET_FILES.len() >= REQUIRED.len());
        for (file, text) in TARGET_FILES {
            let t: Target = serde_json::from_str(text).unwrap_or_else(|e| panic!("targets/{file}: {e}"));
            let raw: serde_json::Value = serde_json::from_str(text).unwrap();
            let back = serde_json::to_value(&t).unwrap();
            let mut missing = Vec::new();
            missing_keys(&raw, &back, &t.name, &mut missing);
            assert!(missing.is_empty(), "targets/{file} leaves out {missing:?}");
        }
        all().expect("table parses");
    }

    #[test]
    fn required_architectures_are_there() {
        for name in REQUIRED {
            lookup(name).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn names_are_unique_and_derived_names_follow_the_scheme() {
        let table = all().unwrap();
        let mut names: Vec<&str> = table.iter().map(|t| t.name.as_str()).collect();
        names.dedup();
        assert_eq!(names.len(), table.len(), "duplicate target names");
        for t in table {
            assert_eq!(t.bst_arch, t.name, "{}: bst arch option is the Baserock name", t.name);
            assert_eq!(t.gnu_triple, format!("{}-baserock-linux-gnu{}", t.gnu_cpu, t.gnu_abi), "{}", t.name);
            assert_eq!(
                t.stage1_triple,
                format!("{}-bootstrap-linux-gnu{}", t.gnu_cpu, t.gnu_abi),
                "{}",
                t.name
            );
            assert!(t.bits == 32 || t.bits == 64, "{}", t.name);
            assert_eq!(t.bits, t.elf.class_bits, "{}", t.name);
            assert_eq!(t.endian, t.elf.data, "{}", t.name);
            assert!(!t.uname_m.is_empty(), "{}", t.name);
            assert!(!t.consoles.boards.is_empty(), "{}", t.name);
            assert_eq!(t.consoles.qemu, t.qemu.console, "{}", t.name);
            assert_eq!(
                t.kernel.debian_package.is_some(),
                t.kernel.image_path.is_some(),
                "{}: a kernel package comes with its image path",
                t.name
            );
            assert!(
                t.kernel.debian_package.is_some() || t.kernel.note.is_some(),
                "{}: say where a kernel comes from",
                t.name
            );
        }
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let e = lookup("nonsense").unwrap_err().to_string();
        assert!(e.contains("unknown architecture \"nonsense\""), "{e}");
        for name in REQUIRED {
            assert!(e.contains(name), "{e}");
        }
        let e = lookup("aarch64").unwrap_err().to_string();
        assert!(e.contains("armv8l64"), "{e}");
        let e = resolve::resolve("nonsense", None).unwrap_err().to_string();
        assert!(e.contains("armv8l64") && e.contains("aarch64"), "{e}");
        let e = resolve::resolve("armv8l64", None).unwrap_err().to_string();
        assert!(e.contains("pass --target armv8l64"), "{e}");
    }

    #[test]
    fn rust_settings_are_consistent() {
        for t in all().unwrap() {
            match &t.rust {
                RustAgent::Available(r) => {
                    assert_eq!(r.cargo_config, format!("linker-scripts/{}.toml", r.triple), "{}", t.name);
                    match r.libc {
                        Libc::Musl => {
                            assert!(r.triple.contains("-musl"), "{}", t.name);
                            assert_eq!(r.linker, "rust-lld", "{}", t.name);
                            assert!(r.debian_packages.is_empty(), "{}", t.name);
                        }
                        Libc::Gnu => {
                            assert!(r.triple.contains("-gnu"), "{}", t.name);
                            assert!(r.debian_packages.iter().any(|p| p.starts_with("gcc-")), "{}", t.name);
                            assert!(
                                r.debian_packages.iter().any(|p| p.starts_with("libc6-dev-")),
                                "{}",
                                t.name
                            );
                        }
                    }
                    // The fragment under linker-scripts/ names the same linker and links statically.
                    let fragment = std::fs::read_to_string(
                        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(&r.cargo_config),
                    )
                    .unwrap_or_else(|e| panic!("{}: {}: {e}", t.name, r.cargo_config));
                    assert!(fragment.contains(&format!("[target.{}]", r.triple)), "{}", r.cargo_config);
                    assert!(fragment.contains(&format!("linker = \"{}\"", r.linker)), "{}", r.cargo_config);
                    assert!(fragment.contains("target-feature=+crt-static"), "{}", r.cargo_config);
                }
                RustAgent::Unavailable { reason, would_need } => {
                    assert!(reason.contains("no Rust standard library"), "{}: {reason}", t.name);
                    assert!(
                        would_need.contains("build-std") && would_need.contains("rust-src"),
                        "{}",
                        t.name
                    );
                }
            }
        }
        for name in ["armv8b64", "mips64l"] {
            assert!(lookup(name).unwrap().rust_triple().is_none(), "{name}");
        }
        assert_eq!(lookup("armv8l64").unwrap().rust_triple(), Some("aarch64-unknown-linux-musl"));
    }

    #[test]
    fn wired_machines_name_a_channel_the_agent_accepts_and_modules_it_can_load() {
        for t in all().unwrap() {
            let Some(w) = &t.qemu.wiring else { continue };
            let spec: stagehand_proto::channel::ChannelSpec =
                w.serial.agent_channel.as_deref().expect("a serial link names its device").parse().unwrap();
            assert!(matches!(spec, stagehand_proto::channel::ChannelSpec::Serial { .. }), "{}", t.name);
            assert!(w.tcp.agent_channel.is_none(), "{}: the TCP port is chosen at boot", t.name);
            assert!(
                w.serial.qemu_args.iter().any(|a| a == "{chardev}"),
                "{}: the serial link uses the socket",
                t.name
            );
            assert!(w.disk.iter().any(|a| a.contains("{disk}")), "{}", t.name);
            for m in w.modules() {
                assert!(!m.is_empty() && !m.contains('-') && !m.contains('/'), "{}: module {m:?}", t.name);
            }
        }
        let x86 = lookup("x86_64").unwrap();
        assert_eq!(
            x86.qemu.wiring.unwrap().modules(),
            vec!["e1000", "virtio_pci", "virtio_blk", "crc32c_generic", "ext4"]
        );
    }

    #[test]
    fn misnamed_or_incomplete_files_are_rejected() {
        let (_, text) = TARGET_FILES.iter().find(|(f, _)| *f == "riscv64.json").unwrap();
        assert!(parse_table(&[("other.json", text)]).is_err());
        let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
        v.as_object_mut().unwrap().remove("kernel_arch");
        assert!(parse_table(&[("riscv64.json", &v.to_string())]).is_err());
        let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
        v.as_object_mut().unwrap().insert("surprise".into(), 1.into());
        assert!(parse_table(&[("riscv64.json", &v.to_string())]).is_err());
    }
}
