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
    pub qemu_extra_args: Vec<String>,
    pub console: String,
    pub target: crate::targets::Target,
}

/// The architecture called `name`, or an error listing the valid names.
pub fn arch(name: &str) -> anyhow::Result<Arch> {
    let t = crate::targets::lookup(name)?;
    Ok(Arch {
        name: t.name.clone(),
        bst_arch: t.bst_arch.clone(),
        qemu_binary: t.qemu.binary.clone(),
        qemu_machine: t.qemu.machine.clone(),
        qemu_cpu: Some(t.qemu.cpu.clone()).filter(|c| !c.is_empty()),
        qemu_extra_args: t.qemu.extra_args.clone(),
        console: t.qemu.console.clone(),
        target: t,
    })
}

/// The static agent for `arch`, built if needed.
pub fn agent_binary(arch: &Arch) -> anyhow::Result<PathBuf> {
    crate::agent_build::ensure_agent(&arch.target)
}
