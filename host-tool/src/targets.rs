//! The architecture table: one definition per architecture under `targets/`, embedded at
//! build time (see `build.rs`), from which every name of an architecture is derived:
//! Baserock/Morph name, `uname -m`, GNU triples, kernel ARCH, BuildStream arch option,
//! Rust target of the agent, serial consoles, QEMU settings, Debian kernel, ELF identity.

// The lookup API is for the image, qemu and stage2 modules; not all of it is used by the CLI.

pub mod elf;

use std::fmt::Write as _;
use std::path::PathBuf;
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

    fn rust_cell(&self) -> String {
        match &self.rust {
            RustAgent::Available(r) => {
                format!("{} ({})", r.triple, if r.libc == Libc::Musl { "musl" } else { "gnu+crt-static" })
            }
            RustAgent::Unavailable { reason, .. } => {
                format!("none: {}", reason.split(" (").next().unwrap_or(reason))
            }
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

/// The answer to "which architecture is `uname -m` X (whose binary is this ELF)?".
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    pub uname_m: String,
    /// Every target this `uname -m` can mean.
    pub candidates: Vec<String>,
    /// Those left after looking at the ELF file, when one was given.
    pub matching: Vec<String>,
    /// Set when more than one target is left: what to do about it.
    pub ambiguity: Option<String>,
    /// What the ELF file said, when one was given.
    pub elf: Option<String>,
}

impl Resolution {
    /// The one target meant, if it is not ambiguous.
    pub fn unique(&self) -> Option<&str> {
        match self.matching.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// Resolves a `uname -m` value, optionally narrowed by a native binary of the machine.
pub fn resolve(uname_m: &str, elf_file: Option<&std::path::Path>) -> anyhow::Result<Resolution> {
    let candidates = candidates_for_uname(uname_m)?;
    if candidates.is_empty() {
        let mut unames: Vec<&str> =
            all()?.iter().flat_map(|t| t.uname_m.iter().map(String::as_str)).collect();
        unames.sort_unstable();
        unames.dedup();
        let hint = if all()?.iter().any(|t| t.name == uname_m) {
            format!(" ({uname_m:?} is a target name, not a `uname -m` value: pass --target {uname_m})")
        } else {
            String::new()
        };
        bail!(
            "unknown `uname -m` value {uname_m:?}{hint}; valid `uname -m` values: {}; valid target names: {}",
            unames.join(", "),
            names()?.join(", ")
        );
    }
    let mut matching: Vec<&Target> = candidates.clone();
    let mut elf_desc = None;
    if let Some(path) = elf_file {
        let info = elf::read(path)?;
        elf_desc = Some(info.describe());
        matching.retain(|t| t.matches_elf(&info));
        if matching.is_empty() {
            bail!(
                "{} ({}) is not a binary of any target `uname -m` {uname_m} means ({}): pass a binary from the machine itself, e.g. a copy of its /bin/sh",
                path.display(),
                info.describe(),
                candidates.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let ambiguity = (matching.len() > 1).then(|| ambiguity_advice(uname_m, &matching, elf_file.is_some()));
    Ok(Resolution {
        uname_m: uname_m.to_string(),
        candidates: candidates.iter().map(|t| t.name.clone()).collect(),
        matching: matching.iter().map(|t| t.name.clone()).collect(),
        ambiguity,
        elf: elf_desc,
    })
}

fn ambiguity_advice(uname_m: &str, matching: &[&Target], had_elf: bool) -> String {
    let names: Vec<&str> = matching.iter().map(|t| t.name.as_str()).collect();
    let mut advice = format!("`uname -m` {uname_m} is AMBIGUOUS: it can mean {}.", names.join(" or "));
    // Same machine, two naming generations (Morph's ppc64, BuildStream's ppc64b): prefer the
    // BuildStream-era name, which is what the definitions the tool builds use.
    let same_machine = matching.windows(2).all(|w| w[0].elf == w[1].elf);
    if same_machine {
        let preferred = matching.iter().find(|t| !t.in_morph).unwrap_or(&matching[0]);
        let _ = write!(
            advice,
            " They are one machine under two names; pass --target {} explicitly (or the name your definitions use).",
            preferred.name
        );
    } else {
        for t in matching {
            if let Some(rule) = &t.uname_m_rule {
                let _ = write!(advice, " {}: {rule}.", t.name);
            }
        }
        if !had_elf {
            let _ = write!(
                advice,
                " Give --elf FILE (a binary from that machine, e.g. its /bin/sh) to decide, or pass --target explicitly."
            );
        } else {
            let _ = write!(advice, " Pass --target explicitly.");
        }
    }
    advice
}

/// `stagehand targets [--json] [show NAME | resolve UNAME_M [--elf FILE]]`
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TargetsCmd {
    /// Print every field of every target as JSON.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    action: Option<TargetsAction>,
}

#[derive(clap::Subcommand, Debug)]
enum TargetsAction {
    /// Every field of one target.
    Show {
        /// Baserock name (armv8l64, ppc64l, ...).
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Which target(s) a `uname -m` value means.
    Resolve {
        /// What `uname -m` prints on the machine.
        uname_m: String,
        /// A native binary of that machine (e.g. its /bin/sh): its ELF header decides
        /// endianness and, for 32-bit ARM, the float ABI (Tag_ABI_VFP_args).
        #[arg(long, value_name = "FILE")]
        elf: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

impl TargetsCmd {
    pub fn run(self) -> anyhow::Result<()> {
        match self.action {
            None if self.json => println!("{}", serde_json::to_string_pretty(all()?)?),
            None => print!("{}", table_text(all()?)),
            Some(TargetsAction::Show { name, json }) => {
                let t = lookup(&name)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&t)?);
                } else {
                    print!("{}", show_text(&t));
                }
            }
            Some(TargetsAction::Resolve { uname_m, elf, json }) => {
                let r = resolve(&uname_m, elf.as_deref())?;
                if let Some(advice) = &r.ambiguity {
                    eprintln!("warning: {advice}");
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                } else {
                    print!("{}", resolution_text(&r));
                }
            }
        }
        Ok(())
    }
}

fn resolution_text(r: &Resolution) -> String {
    let mut s = String::new();
    if let Some(e) = &r.elf {
        let _ = writeln!(s, "ELF: {e}");
    }
    match r.unique() {
        Some(one) => {
            let _ = writeln!(s, "{}: {one}", r.uname_m);
        }
        None => {
            let _ = writeln!(s, "{}: AMBIGUOUS: {}", r.uname_m, r.matching.join(" | "));
        }
    }
    s
}

/// The human table printed by `stagehand targets`.
pub fn table_text(targets: &[Target]) -> String {
    let header = ["NAME", "UNAME -M", "GNU TRIPLE", "KERNEL ARCH", "CONSOLE", "QEMU", "RUST TARGET"];
    let rows: Vec<[String; 7]> = targets
        .iter()
        .map(|t| {
            [
                t.name.clone(),
                t.uname_m.join(",") + if t.uname_m_rule.is_some() { "*" } else { "" },
                t.gnu_triple.clone(),
                t.kernel_arch.clone(),
                t.console().to_string(),
                format!("{} -M {} -cpu {}", t.qemu.binary, t.qemu.machine, t.qemu.cpu),
                t.rust_cell(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut s = String::new();
    let mut line = |cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == last {
                let _ = writeln!(s, "{cell}");
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    s.push_str("* this `uname -m` is shared with another target: see `stagehand targets resolve UNAME_M`\n");
    s
}

fn show_text(t: &Target) -> String {
    let mut s = String::new();
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let _ = writeln!(s, "{} — {}", t.name, t.summary);
    let _ = writeln!(s, "  in Morph valid_archs: {}", if t.in_morph { "yes" } else { "no" });
    let _ = writeln!(s, "  uname -m:        {}", t.uname_m.join(", "));
    if let Some(rule) = &t.uname_m_rule {
        let _ = writeln!(s, "                   {rule}");
    }
    let _ = writeln!(s, "  word size:       {}-bit {}", t.bits, t.endian);
    let _ = writeln!(s, "  GNU triple:      {}", t.gnu_triple);
    let _ = writeln!(s, "  stage-1 triple:  {}", t.stage1_triple);
    let _ = writeln!(s, "  kernel ARCH:     {}", t.kernel_arch);
    let _ = writeln!(s, "  bst arch option: {}", t.bst_arch);
    match &t.rust {
        RustAgent::Available(r) => {
            let _ = writeln!(s, "  Rust target:     {} (linker {}, {})", r.triple, r.linker, r.cargo_config);
            if !r.debian_packages.is_empty() {
                let _ =
                    writeln!(s, "                   needs apt-get install {}", r.debian_packages.join(" "));
            }
        }
        RustAgent::Unavailable { reason, would_need } => {
            let _ = writeln!(s, "  Rust target:     none: {reason}");
            let _ = writeln!(s, "                   would need {would_need}");
        }
    }
    let _ = writeln!(s, "  console (QEMU):  {}", t.consoles.qemu);
    for b in &t.consoles.boards {
        let _ = writeln!(s, "  console (board): {} — {}", b.device, b.boards);
    }
    let q = &t.qemu;
    let _ = writeln!(
        s,
        "  QEMU:            {} -M {} -cpu {} {} (console={}, package {}, boot {})",
        q.binary,
        q.machine,
        q.cpu,
        q.extra_args.join(" "),
        q.console,
        q.debian_package,
        if q.boot_verified { "verified" } else { "not yet verified" }
    );
    let k = &t.kernel;
    let _ = writeln!(
        s,
        "  kernel package:  {} ({}), image {}",
        opt(&k.debian_package),
        opt(&k.debian_arch),
        opt(&k.image_path)
    );
    if let Some(note) = &k.note {
        let _ = writeln!(s, "                   {note}");
    }
    let e = &t.elf;
    let _ =
        writeln!(s, "  ELF:             {} ({}), ELF{} {}", e.machine_name, e.machine, e.class_bits, e.data);
    for n in &t.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    s
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
    fn uname_values_resolve_back() {
        for t in all().unwrap() {
            for u in &t.uname_m {
                let r = resolve(u, None).unwrap();
                assert!(r.matching.contains(&t.name), "{u} does not resolve to {}", t.name);
                if r.matching.len() > 1 {
                    assert!(r.ambiguity.is_some());
                    // Every shared value carries a rule explaining how to decide.
                    assert!(t.uname_m_rule.is_some(), "{}: {u} is shared but has no uname_m_rule", t.name);
                } else {
                    assert_eq!(r.unique(), Some(t.name.as_str()));
                }
            }
        }
    }

    #[test]
    fn morph_mapping_examples() {
        let one = |u: &str| resolve(u, None).unwrap().unique().map(str::to_string);
        assert_eq!(one("x86_64").as_deref(), Some("x86_64"));
        assert_eq!(one("i686").as_deref(), Some("x86_32"));
        assert_eq!(one("i386").as_deref(), Some("x86_32"));
        assert_eq!(one("aarch64").as_deref(), Some("armv8l64"));
        assert_eq!(one("aarch64_be").as_deref(), Some("armv8b64"));
        assert_eq!(one("ppc64le").as_deref(), Some("ppc64l"));
        let ppc = resolve("ppc64", None).unwrap();
        assert_eq!(ppc.matching, vec!["ppc64", "ppc64b"]);
        assert!(ppc.ambiguity.unwrap().contains("pass --target ppc64b explicitly"));
        let arm = resolve("armv7l", None).unwrap();
        assert_eq!(arm.matching, vec!["armv7l", "armv7lhf"]);
        assert!(arm.ambiguity.unwrap().contains("Tag_ABI_VFP_args"));
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
        let e = resolve("nonsense", None).unwrap_err().to_string();
        assert!(e.contains("armv8l64") && e.contains("aarch64"), "{e}");
        let e = resolve("armv8l64", None).unwrap_err().to_string();
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
    fn table_lists_every_target_with_its_rust_cell() {
        let text = table_text(all().unwrap());
        for t in all().unwrap() {
            assert!(text.lines().any(|l| l.starts_with(&format!("{} ", t.name))), "{}", t.name);
        }
        assert!(text.contains("none: no Rust standard library"));
        assert!(text.contains("powerpc64le-unknown-linux-gnu (gnu+crt-static)"));
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
