//! The two things the verbs need from the architecture table and the agent builder,
//! in the shape they use them. Only this file knows how `targets` and `agent_build`
//! spell their fields.

use std::path::PathBuf;

/// What the verbs need to know about one architecture.
#[derive(Clone, Debug)]
pub struct Arch {
    /// Baserock name, e.g. `armv8l64`.
    pub name: String,
    /// Value of the BuildStream project's `arch` option.
    pub bst_arch: String,
    /// QEMU system emulator binary, machine and CPU.
    pub qemu_binary: String,
    pub qemu_machine: String,
    pub qemu_cpu: Option<String>,
    /// The kernel's name of the first serial port (`ttyS0`, `ttyAMA0`, ...).
    pub console: String,
}

struct Row {
    name: &'static str,
    qemu: &'static str,
    machine: &'static str,
    cpu: Option<&'static str>,
    console: &'static str,
}

// Interim table until the architecture table lands; same names as targets/.
const ROWS: &[Row] = &[
    Row { name: "x86_64", qemu: "qemu-system-x86_64", machine: "q35", cpu: None, console: "ttyS0" },
    Row { name: "x86_32", qemu: "qemu-system-i386", machine: "pc", cpu: None, console: "ttyS0" },
    Row { name: "armv8l64", qemu: "qemu-system-aarch64", machine: "virt", cpu: Some("cortex-a57"), console: "ttyAMA0" },
    Row { name: "armv7lhf", qemu: "qemu-system-arm", machine: "virt", cpu: Some("cortex-a15"), console: "ttyAMA0" },
    Row { name: "ppc64l", qemu: "qemu-system-ppc64", machine: "pseries", cpu: None, console: "hvc0" },
    Row { name: "ppc64b", qemu: "qemu-system-ppc64", machine: "pseries", cpu: None, console: "hvc0" },
    Row { name: "riscv64", qemu: "qemu-system-riscv64", machine: "virt", cpu: None, console: "ttyS0" },
];

/// The architecture called `name`, or an error listing the valid names.
pub fn arch(name: &str) -> anyhow::Result<Arch> {
    match ROWS.iter().find(|r| r.name == name) {
        Some(r) => Ok(Arch {
            name: r.name.into(),
            bst_arch: r.name.into(),
            qemu_binary: r.qemu.into(),
            qemu_machine: r.machine.into(),
            qemu_cpu: r.cpu.map(Into::into),
            console: r.console.into(),
        }),
        None => anyhow::bail!(
            "unknown architecture '{name}'; valid: {}",
            ROWS.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The static agent for `arch`, built if needed.
pub fn agent_binary(arch: &Arch) -> anyhow::Result<PathBuf> {
    anyhow::bail!(
        "building the agent for {} is not available in this build; pass --agent FILE",
        arch.name
    )
}
