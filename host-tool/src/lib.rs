//! The stagehand host tool as a library: `main` is a thin shell over [`cli::main`], and
//! tests and the end-to-end suite drive these modules instead of copying their facts.
//!
//! Modules in their order: each uses only those above it (no cycles).
//! 1. [`util`]: files, hashes, processes, exit codes; [`logging`]: the one logger.
//! 2. [`targets`]: the architecture table (`targets/*.json`): model, `uname -m`
//!    resolution, ELF identification, per-machine QEMU wiring; [`platform`] is the one
//!    place verbs read a target's fields; [`kernel`]: which kernel (and modules) boots a
//!    target.
//! 3. [`agent_build`]: the static agent's cross-build.
//! 4. [`bst`], [`sysroot`], [`fixup`], [`track`]: BuildStream, sysroot copies, fix-ups,
//!    BuildStream `tar` sources.
//! 5. [`stage2`], [`bundle`], [`image`]: the verbs that make things; [`serve`]: the NFS
//!    server a netbooted agent mounts its root from.
//! 6. [`collect`]: the receiving side: sources, link, demux, report, UI.
//! 7. [`qemu`]: the QEMU command line (pure functions), the boot-and-collect verb.
//! 8. [`report`], [`demo`]: what sits on top of the rest.
//! 9. [`cli`]: the command tree.
//!
//! What the host and the agent agree on is not here: it is `stagehand_proto`.

pub mod logging;
pub mod util;

pub mod kernel;
pub mod platform;
pub mod targets;

pub mod agent_build;

pub mod bst;
pub mod fixup;
pub mod sysroot;
pub mod track;

pub mod bundle;
pub mod image;
pub mod serve;
pub mod stage2;

pub mod collect;

pub mod qemu;

pub mod demo;
pub mod report;

pub mod cli;
