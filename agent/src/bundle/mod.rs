//! Stage 3 build bundles: what to run, in which order, with which environment.
//!
//! Three formats are understood, each turned into the same [`Bundle`] interface: an ordered
//! list of [`Module`]s made of [`Step`]s, plus the environment the bundle exports.
//! - [`BundleKind::BuildStream`]: a `bst source-bundle` (tar.gz or unpacked folder);
//! - [`BundleKind::Morph`]: a Morph cross-bootstrap tree driven by `/native-bootstrap`;
//! - [`BundleKind::Script`]: one shell script, or a folder of `NN-name.sh` scripts.
//!
//! Every path in a bundle is a path *inside* the target's root (`/src/build-gcc`); the
//! `root` parameter says where that root is from here (`/` on the board, a temporary
//! folder in tests), and [`in_root`] maps one to the other.

mod buildstream;
mod elf;
pub mod gunzip;
mod morph;
mod script;
mod targz;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};

pub use elf::check_architecture;

/// The format of a bundle; `Auto` asks [`open`] to find out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleKind {
    Auto,
    BuildStream,
    Morph,
    Script,
}

impl BundleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BundleKind::Auto => "auto",
            BundleKind::BuildStream => "buildstream",
            BundleKind::Morph => "morph",
            BundleKind::Script => "script",
        }
    }
}

impl fmt::Display for BundleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BundleKind {
    type Err = BundleError;
    fn from_str(s: &str) -> Result<BundleKind, BundleError> {
        match s {
            "auto" => Ok(BundleKind::Auto),
            "buildstream" | "bst" => Ok(BundleKind::BuildStream),
            "morph" => Ok(BundleKind::Morph),
            "script" => Ok(BundleKind::Script),
            other => Err(BundleError(format!(
                "unknown bundle kind `{other}`: use auto, buildstream, morph or script"
            ))),
        }
    }
}

/// One thing to do for a module, run in order; the first failing step fails the module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Run a program.
    Exec(ExecStep),
    /// `rm -rf` a path inside the root (a clean start for a module that is run again).
    Remove(PathBuf),
    /// `mkdir -p` a path inside the root.
    MakeDir(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecStep {
    /// Program (a path inside the root, or a name looked up on PATH) and its arguments.
    pub argv: Vec<String>,
    /// Working directory inside the root.
    pub cwd: PathBuf,
    /// Variables set for this step only, on top of the module environment.
    pub env: Vec<(String, String)>,
    /// Skip the step when this path does not exist inside the root (`ldconfig`).
    pub only_if_exists: Option<PathBuf>,
    /// A failure of this step does not fail the module.
    pub ignore_failure: bool,
}

impl ExecStep {
    pub fn new(argv: &[&str], cwd: impl Into<PathBuf>) -> ExecStep {
        ExecStep {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: cwd.into(),
            env: Vec::new(),
            only_if_exists: None,
            ignore_failure: false,
        }
    }

    /// The `ldconfig` the bundle formats run after every module.
    pub fn ldconfig(ignore_failure: bool) -> ExecStep {
        ExecStep {
            only_if_exists: Some(PathBuf::from("/sbin/ldconfig")),
            ignore_failure,
            ..ExecStep::new(&["/sbin/ldconfig"], "/")
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub steps: Vec<Step>,
}

/// A bundle ready to run. Cheap to query; nothing here runs anything.
pub trait Bundle: Send {
    fn kind(&self) -> BundleKind;
    /// sha256 (hex) that changes when the bundle changes: of the tarball file, or of the
    /// kind, module list and scripts of an unpacked bundle. Checkpoints are tied to it.
    fn identity(&self) -> &str;
    fn modules(&self) -> &[Module];
    /// Variables the bundle exports for every module (PATH, SRCDIR, ...), in order.
    fn env(&self) -> &[(String, String)];
    /// Folders (inside the root) that belong to the bundle, not to the built system:
    /// the packer leaves them out.
    fn locations(&self) -> &[PathBuf];
    /// Things worth telling the host that did not stop the bundle from loading.
    fn warnings(&self) -> &[String];
    fn module_names(&self) -> Vec<String> {
        self.modules().iter().map(|m| m.name.clone()).collect()
    }
}

/// The one implementation the three formats share; their loaders differ.
#[derive(Clone, Debug)]
pub struct LoadedBundle {
    pub kind: BundleKind,
    pub identity: String,
    pub modules: Vec<Module>,
    pub env: Vec<(String, String)>,
    pub locations: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

impl Bundle for LoadedBundle {
    fn kind(&self) -> BundleKind {
        self.kind
    }
    fn identity(&self) -> &str {
        &self.identity
    }
    fn modules(&self) -> &[Module] {
        &self.modules
    }
    fn env(&self) -> &[(String, String)] {
        &self.env
    }
    fn locations(&self) -> &[PathBuf] {
        &self.locations
    }
    fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// One line saying what is wrong with the bundle and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleError(pub String);

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BundleError {}

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T, BundleError> {
    Err(BundleError(msg.into()))
}

/// Where a path inside the target root is from here.
pub fn in_root(root: &Path, path: &Path) -> PathBuf {
    let rel = path.strip_prefix("/").unwrap_or(path);
    if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// Open the bundle at `path` (a path inside `root`).
///
/// Tarballs (`.tar.gz`, `.tgz`, or any file starting with the gzip magic) are unpacked
/// first: a BuildStream bundle into `work_dir` (inside the root), a Morph tree into the
/// root itself. Unpacking is done once per bundle identity: a marker file in `work_dir`
/// keeps a later boot from unpacking again over what the build already changed.
pub fn open(
    root: &Path,
    path: &Path,
    kind: BundleKind,
    work_dir: &Path,
) -> Result<Box<dyn Bundle>, BundleError> {
    let host = in_root(root, path);
    let meta = std::fs::metadata(&host).or_else(|e| {
        err(format!("bundle {}: {}: give the path of a bundle tarball, folder or script", path.display(), e))
    })?;
    let mut bundle = if meta.is_file() && targz::is_gzip(&host)? {
        targz::open(root, path, kind, work_dir)?
    } else if meta.is_dir() {
        open_folder(root, path, kind, None)?
    } else {
        let named = |n: &str| path.file_name().is_some_and(|f| f == n);
        let parent = path.parent().unwrap_or(Path::new("/"));
        match kind {
            BundleKind::Auto | BundleKind::Morph if named("native-bootstrap") => {
                morph::load(root, parent, None)?
            }
            BundleKind::Auto | BundleKind::BuildStream if named("build.sh") => {
                buildstream::load(root, parent, None)?
            }
            BundleKind::Auto | BundleKind::Script => script::load(root, path)?,
            other => {
                return err(format!(
                    "bundle {}: a {other} bundle is a tar.gz or a folder, this is a plain file",
                    path.display()
                ))
            }
        }
    };
    bundle.warnings.extend(check_architecture(root)?);
    Ok(Box::new(bundle))
}

/// An unpacked bundle: which format the folder holds.
fn open_folder(
    root: &Path,
    dir: &Path,
    kind: BundleKind,
    identity: Option<String>,
) -> Result<LoadedBundle, BundleError> {
    let host = in_root(root, dir);
    // A folder holding the bundle's single top folder (what a source bundle unpacks to).
    if matches!(kind, BundleKind::Auto | BundleKind::BuildStream) && !host.join("build.sh").exists() {
        if let Some(top) = single_subdir(&host) {
            if host.join(&top).join("build.sh").is_file() {
                return buildstream::load(root, &dir.join(top), identity);
            }
        }
    }
    match kind {
        BundleKind::BuildStream => return buildstream::load(root, dir, identity),
        BundleKind::Morph => return morph::load(root, dir, identity),
        BundleKind::Script => return script::load(root, dir),
        BundleKind::Auto => {}
    }
    if host.join("native-bootstrap").is_file() {
        return morph::load(root, dir, identity);
    }
    if host.join("build.sh").is_file() {
        return buildstream::load(root, dir, identity);
    }
    if script::has_numbered_scripts(&host) {
        return script::load(root, dir);
    }
    err(format!(
        "bundle {}: not a bundle: expected `build.sh` with a `for module in` line (BuildStream), \
         `native-bootstrap` (Morph) or `NN-name.sh` scripts",
        dir.display()
    ))
}

fn single_subdir(dir: &Path) -> Option<std::ffi::OsString> {
    let mut names = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'));
    let first = names.next()?;
    if names.next().is_some() || !first.file_type().ok()?.is_dir() {
        return None;
    }
    Some(first.file_name())
}

/// Identity of an unpacked bundle: kind, module names and the bytes of the given files.
pub(crate) fn identity_of(kind: BundleKind, modules: &[String], files: &[PathBuf]) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_str().as_bytes());
    for m in modules {
        h.update(b"\0module\0");
        h.update(m.as_bytes());
    }
    for f in files {
        h.update(b"\0file\0");
        h.update(f.as_os_str().as_encoded_bytes());
        if let Ok(bytes) = std::fs::read(f) {
            h.update(&bytes);
        }
    }
    hex_digest(&h.finalize())
}

pub fn hex_digest(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse the value of a shell assignment: `'a b'`, `"a b"` or `a`. Only the forms the
/// bundle generators write are understood; anything else is taken as it stands.
pub(crate) fn shell_value(raw: &str) -> String {
    let raw = raw.trim();
    let raw = raw.strip_suffix(';').unwrap_or(raw).trim_end();
    for q in ['\'', '"'] {
        if let Some(inner) = raw.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return if q == '"' {
                inner.replace("\\\"", "\"").replace("\\$", "$")
            } else {
                inner.to_string()
            };
        }
    }
    raw.to_string()
}

/// `export K=V` / `export K='V'` lines of a script, in order (only the first assignment
/// of each line, which is what the generators write).
pub(crate) fn export_lines(script: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in script.lines() {
        let Some(rest) = line.trim_start().strip_prefix("export ") else {
            continue;
        };
        let Some((k, v)) = rest.split_once('=') else {
            continue;
        };
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let v = shell_value(v);
        out.retain(|(old, _)| old != k);
        out.push((k.to_string(), v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_lines_are_parsed() {
        let s = "set -eu\nexport PATH='/usr/bin:/bin'\nexport SRCDIR=./source\nexport CFLAGS=\"-O2 -g\"\n  export X=1 ;\nexport PATH=/tools/bin\n";
        assert_eq!(
            export_lines(s),
            vec![
                ("SRCDIR".into(), "./source".into()),
                ("CFLAGS".into(), "-O2 -g".into()),
                ("X".into(), "1".into()),
                ("PATH".into(), "/tools/bin".into()),
            ]
        );
    }

    #[test]
    fn in_root_maps_absolute_paths() {
        assert_eq!(in_root(Path::new("/tmp/r"), Path::new("/src/x")), PathBuf::from("/tmp/r/src/x"));
        assert_eq!(in_root(Path::new("/"), Path::new("/src/x")), PathBuf::from("/src/x"));
        assert_eq!(in_root(Path::new("/tmp/r"), Path::new("/")), PathBuf::from("/tmp/r"));
    }

    #[test]
    fn kinds_parse() {
        assert_eq!("morph".parse::<BundleKind>().unwrap(), BundleKind::Morph);
        assert!("rpm".parse::<BundleKind>().unwrap_err().0.contains("auto, buildstream"));
    }
}
