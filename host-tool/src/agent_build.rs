//! `stagehand agent build`: the static agent for a target's Rust triple, built from the
//! project's own source tree with the linker settings under `linker-scripts/`, then checked
//! to be a static ELF binary of the right machine.

// `ensure_agent` and friends are the API image making calls; not all are used by the CLI itself.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{bail, Context as _};

use crate::targets::{self, elf, Libc, RustAgent, RustTarget, Target};

/// Environment variable naming the stagehand source tree (the workspace root).
pub const SOURCE_ENV: &str = "STAGEHAND_SOURCE";

/// `stagehand agent build --target ARCH [--out FILE] [--debug]`
#[derive(clap::Args, Debug)]
pub struct AgentCmd {
    #[command(subcommand)]
    action: AgentAction,
}

#[derive(clap::Subcommand, Debug)]
enum AgentAction {
    /// Build the static agent for an architecture.
    Build(BuildArgs),
    /// Check that FILE is a static agent binary for an architecture.
    Check {
        /// Baserock name (armv8l64, ppc64l, ...).
        #[arg(long)]
        target: String,
        file: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct BuildArgs {
    /// Baserock name (x86_64, armv8l64, ppc64l, ...; see `stagehand targets`).
    #[arg(long, value_name = "ARCH")]
    target: String,
    /// Where to put the binary [default: target/agents/ARCH/stagehand-agent in the source tree].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Optimised build (the default).
    #[arg(long, conflicts_with = "debug")]
    release: bool,
    /// Unoptimised build with debug assertions.
    #[arg(long)]
    debug: bool,
}

impl AgentCmd {
    pub fn run(self) -> anyhow::Result<()> {
        match self.action {
            AgentAction::Build(args) => {
                let target = targets::lookup(&args.target)?;
                let opts = BuildOptions {
                    profile: if args.debug { Profile::Debug } else { Profile::Release },
                    out: args.out,
                };
                let built = build_agent(&target, &opts)?;
                println!(
                    "agent for {} ({}): {} — {} bytes, {}",
                    target.name,
                    built.rust_triple,
                    built.path.display(),
                    built.size,
                    built.elf.describe()
                );
                Ok(())
            }
            AgentAction::Check { target, file } => {
                let target = targets::lookup(&target)?;
                let info = check_static_elf(&file, &target)?;
                println!(
                    "{}: {} — a static agent binary for {}",
                    file.display(),
                    info.describe(),
                    target.name
                );
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Release,
    Debug,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Debug => "debug",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub profile: Profile,
    /// None: `target/agents/<arch>/stagehand-agent` under the source tree.
    pub out: Option<PathBuf>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { profile: Profile::Release, out: None }
    }
}

#[derive(Debug, Clone)]
pub struct BuiltAgent {
    pub path: PathBuf,
    pub size: u64,
    pub rust_triple: String,
    pub elf: elf::ElfInfo,
}

/// The stagehand source tree: `$STAGEHAND_SOURCE`, else the tree this binary was built from.
pub fn source_root() -> anyhow::Result<PathBuf> {
    let (root, from) = match std::env::var_os(SOURCE_ENV) {
        Some(dir) => (PathBuf::from(dir), format!("${SOURCE_ENV}")),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
            "the build directory of this stagehand binary".to_string(),
        ),
    };
    if !root.join("agent").join("Cargo.toml").is_file() || !root.join("Cargo.toml").is_file() {
        bail!(
            "no stagehand source tree at {} ({from}): set {SOURCE_ENV} to the directory holding Cargo.toml, agent/ and linker-scripts/",
            root.display()
        );
    }
    Ok(root.canonicalize().unwrap_or(root))
}

/// Where `stagehand agent build` puts the agent of `target` by default.
pub fn default_agent_path(root: &Path, target: &Target) -> PathBuf {
    root.join("target").join("agents").join(&target.name).join("stagehand-agent")
}

/// The agent for `target`, built (or rebuilt, if the sources are newer) at the default path.
/// This is what image making calls.
pub fn ensure_agent(target: &Target) -> anyhow::Result<PathBuf> {
    let root = source_root()?;
    let out = default_agent_path(&root, target);
    if out.is_file() && !is_stale(&root, &out, target)? {
        check_static_elf(&out, target)?;
        return Ok(out);
    }
    Ok(build_agent(target, &BuildOptions { profile: Profile::Release, out: Some(out) })?.path)
}

/// Whether anything the agent is built from is newer than `out`.
fn is_stale(root: &Path, out: &Path, target: &Target) -> anyhow::Result<bool> {
    let built = mtime(out)?;
    let mut inputs = vec![root.join("Cargo.toml"), root.join("Cargo.lock"), root.join("agent")];
    if let RustAgent::Available(r) = &target.rust {
        inputs.push(root.join(&r.cargo_config));
    }
    for input in inputs {
        if newest_mtime(&input)?.is_some_and(|t| t > built) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn mtime(path: &Path) -> anyhow::Result<SystemTime> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .with_context(|| format!("cannot stat {}", path.display()))
}

fn newest_mtime(path: &Path) -> anyhow::Result<Option<SystemTime>> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(None);
    };
    let mut newest = meta.modified().ok();
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))? {
            let entry = entry?;
            if entry.file_name() == "target" {
                continue;
            }
            newest = newest.max(newest_mtime(&entry.path())?);
        }
    }
    Ok(newest)
}

/// Everything a build needs that is not there, as install instructions; checked before cargo.
pub fn preflight(root: &Path, target: &Target) -> anyhow::Result<RustTarget> {
    let r = match &target.rust {
        RustAgent::Available(r) => r.clone(),
        RustAgent::Unavailable { reason, would_need } => bail!(
            "no Rust standard library exists for {} on stable: {reason}. It would need {would_need}",
            target.name
        ),
    };
    let mut missing = Vec::new();
    if !rust_std_installed(&r.triple)? {
        missing.push(format!(
            "the Rust standard library for {}: run `rustup target add {}`",
            r.triple, r.triple
        ));
    }
    match r.libc {
        Libc::Musl => {
            if !rust_lld_available()? {
                missing.push("rust-lld (ships with rustup's rustc; Debian: apt-get install lld and put rust-lld on PATH)".into());
            }
        }
        Libc::Gnu => {
            let install = format!("apt-get install {}", r.debian_packages.join(" "));
            if find_in_path(&r.linker).is_none() {
                missing.push(format!("the cross linker {}: run `{install}`", r.linker));
            } else if !static_libc_present(&r.linker) {
                missing.push(format!("the static C library for {} (libc.a): run `{install}`", r.triple));
            }
        }
    }
    if !root.join(&r.cargo_config).is_file() {
        missing.push(format!("the linker settings {} in the source tree {}", r.cargo_config, root.display()));
    }
    if !missing.is_empty() {
        // Point at the setup script only where it really installs this target.
        let setup = std::fs::read_to_string(root.join("scripts").join("setup.sh")).unwrap_or_default();
        let words = |text: &str| -> Vec<String> {
            text.split(|c: char| c.is_whitespace() || "()\"'".contains(c)).map(str::to_string).collect()
        };
        // The default list comes before the `--cross-all` additions in setup.sh.
        let (default_part, cross_part) = setup.split_once("cross_all\" -eq 1").unwrap_or((&setup, ""));
        let hint = if words(default_part).contains(&r.triple) {
            " (scripts/setup.sh installs all of it)"
        } else if words(cross_part).contains(&r.triple) {
            " (scripts/setup.sh --cross-all installs all of it)"
        } else {
            ""
        };
        bail!(
            "cannot build the agent for {} ({}): missing {}{hint}",
            target.name,
            r.triple,
            missing.join("; ")
        );
    }
    Ok(r)
}

fn rustc() -> OsString {
    std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())
}

fn rust_std_installed(triple: &str) -> anyhow::Result<bool> {
    // Works with rustup and without it: the standard library lives in the sysroot.
    let out = Command::new(rustc())
        .args(["--print", "sysroot"])
        .output()
        .context("cannot run rustc (install Rust: scripts/setup.sh)")?;
    if !out.status.success() {
        bail!("`rustc --print sysroot` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(sysroot.join("lib").join("rustlib").join(triple).join("lib").is_dir())
}

fn rust_lld_available() -> anyhow::Result<bool> {
    if find_in_path("rust-lld").is_some() {
        return Ok(true);
    }
    let out = Command::new(rustc()).args(["--print", "sysroot"]).output().context("cannot run rustc")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let host = Command::new(rustc()).args(["--print", "host-tuple"]).output().ok();
    let host =
        host.filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let lib = sysroot.join("lib").join("rustlib");
    Ok(match host {
        Some(h) => lib.join(h).join("bin").join("rust-lld").is_file(),
        None => std::fs::read_dir(&lib)
            .map(|d| d.flatten().any(|e| e.path().join("bin").join("rust-lld").is_file()))
            .unwrap_or(false),
    })
}

fn static_libc_present(gcc: &str) -> bool {
    Command::new(gcc)
        .arg("-print-file-name=libc.a")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|p| p.is_absolute() && p.is_file())
}

/// `which`.
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn cargo_target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => root.join(d),
        None => root.join("target"),
    }
}

/// Builds the static agent for `target` and copies it to `opts.out`.
pub fn build_agent(target: &Target, opts: &BuildOptions) -> anyhow::Result<BuiltAgent> {
    let root = source_root()?;
    let r = preflight(&root, target)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root)
        .args(["build", "-p", "stagehand-agent", "--bin", "stagehand-agent", "--target", &r.triple])
        .arg("--config")
        .arg(root.join(&r.cargo_config));
    if opts.profile == Profile::Release {
        cmd.arg("--release");
    }
    // Flags from the environment would replace the ones in the fragment (crt-static above all).
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"] {
        if std::env::var_os(var).is_some() {
            log::info!("ignoring ${var} for the agent build: {} holds its flags", r.cargo_config);
            cmd.env_remove(var);
        }
    }
    log::info!(
        "building the agent for {} ({}, {}): cargo build -p stagehand-agent --target {} --config {}{}",
        target.name,
        r.triple,
        match r.libc {
            Libc::Musl => "musl, rust-lld, static",
            Libc::Gnu => "glibc crt-static",
        },
        r.triple,
        r.cargo_config,
        if opts.profile == Profile::Release { " --release" } else { "" }
    );
    let status = cmd.status().with_context(|| format!("cannot run {}", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!(
            "cargo build of the agent for {} ({}) failed ({status}); see cargo's output above",
            target.name,
            r.triple
        );
    }

    let built = cargo_target_dir(&root).join(&r.triple).join(opts.profile.dir()).join("stagehand-agent");
    let info = check_static_elf(&built, target)?;
    let out = opts.out.clone().unwrap_or_else(|| default_agent_path(&root, target));
    install(&built, &out)?;
    let size = std::fs::metadata(&out).with_context(|| format!("cannot stat {}", out.display()))?.len();
    Ok(BuiltAgent { path: out, size, rust_triple: r.triple, elf: info })
}

/// Copy through a temporary file in the same directory, so a reader never sees half a binary.
fn install(from: &Path, to: &Path) -> anyhow::Result<()> {
    let dir = to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = to.with_extension("partial");
    std::fs::copy(from, &tmp)
        .with_context(|| format!("cannot copy {} to {}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), to.display()))?;
    Ok(())
}

/// Checks that `path` is a statically linked ELF executable for `target`.
pub fn check_static_elf(path: &Path, target: &Target) -> anyhow::Result<elf::ElfInfo> {
    let info = elf::read(path)?;
    if !target.matches_elf(&info) {
        bail!(
            "{} is {}, not a binary for {} (ELF{} {} {})",
            path.display(),
            info.describe(),
            target.name,
            target.elf.class_bits,
            target.elf.data,
            target.elf.machine_name
        );
    }
    if !info.is_static() {
        bail!(
            "{} is {}: the agent must be statically linked (it runs as /init before any library exists); check {}",
            path.display(),
            info.describe(),
            match &target.rust {
                RustAgent::Available(r) => r.cargo_config.as_str(),
                RustAgent::Unavailable { .. } => "the linker settings",
            }
        );
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_std_targets_are_refused_before_cargo() {
        let root = source_root().unwrap();
        for name in ["armv8b64", "mips64l"] {
            let e = preflight(&root, &targets::lookup(name).unwrap()).unwrap_err().to_string();
            assert!(e.contains(&format!("no Rust standard library exists for {name} on stable")), "{e}");
            assert!(e.contains("build-std") && e.contains("rust-src"), "{e}");
        }
    }

    #[test]
    fn missing_tools_are_named_with_their_install_command() {
        let root = source_root().unwrap();
        let mut t = targets::lookup("ppc64l").unwrap();
        if let RustAgent::Available(r) = &mut t.rust {
            r.triple = "powerpc64le-unknown-linux-nothere".into();
            r.linker = "no-such-cross-gcc-for-stagehand".into();
            r.cargo_config = "linker-scripts/nothere.toml".into();
        }
        let e = preflight(&root, &t).unwrap_err().to_string();
        assert!(e.contains("rustup target add powerpc64le-unknown-linux-nothere"), "{e}");
        assert!(e.contains("apt-get install gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross"), "{e}");
        assert!(e.contains("linker settings"), "{e}");
    }

    #[test]
    fn host_test_binary_is_not_a_static_agent_for_other_machines() {
        // The running test binary: x86_64 and (with glibc) dynamically linked.
        let me = std::env::current_exe().unwrap();
        let info = elf::read(&me).unwrap();
        let arm = targets::lookup("armv8l64").unwrap();
        let e = check_static_elf(&me, &arm).unwrap_err().to_string();
        assert!(e.contains("not a binary for armv8l64"), "{e}");
        if cfg!(all(target_arch = "x86_64", target_env = "gnu")) && !info.is_static() {
            let e = check_static_elf(&me, &targets::lookup("x86_64").unwrap()).unwrap_err().to_string();
            assert!(e.contains("must be statically linked"), "{e}");
        }
    }

    #[test]
    fn staleness_follows_the_agent_sources() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("agent/src")).unwrap();
        for f in ["Cargo.toml", "Cargo.lock", "agent/Cargo.toml", "agent/src/main.rs"] {
            std::fs::write(root.join(f), "").unwrap();
        }
        let t = targets::lookup("x86_64").unwrap();
        let out = root.join("agent-bin");
        std::fs::write(&out, "").unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        let set = |p: &Path, t: SystemTime| {
            std::fs::File::options().write(true).open(p).unwrap().set_modified(t).unwrap()
        };
        for f in ["Cargo.toml", "Cargo.lock", "agent/Cargo.toml", "agent/src/main.rs"] {
            set(&root.join(f), old);
        }
        for d in ["agent/src", "agent"] {
            std::fs::File::open(root.join(d)).unwrap().set_modified(old).unwrap();
        }
        assert!(!is_stale(root, &out, &t).unwrap());
        set(&root.join("agent/src/main.rs"), SystemTime::now() + std::time::Duration::from_secs(5));
        assert!(is_stale(root, &out, &t).unwrap());
    }
}
