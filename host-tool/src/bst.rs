//! Running BuildStream 1.x: checks before the first call, output streamed line by line.

use anyhow::{Context, Result};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use yaml_rust2::{Yaml, YamlLoader};

pub const INSTALL_HINT: &str = "apt-get install buildstream bubblewrap";

/// A BuildStream project folder, checked for what the verbs need.
pub struct Project {
    pub dir: PathBuf,
    pub element_path: PathBuf,
    conf: Yaml,
}

impl Project {
    pub fn open(dir: &Path) -> Result<Project> {
        let conf_path = dir.join("project.conf");
        let text = std::fs::read_to_string(&conf_path).with_context(|| {
            format!("{} is not a BuildStream project (no readable project.conf)", dir.display())
        })?;
        let conf = parse_conf(&text).with_context(|| format!("{}", conf_path.display()))?;
        let element_path = conf["element-path"].as_str().unwrap_or(".").to_string();
        Ok(Project { dir: dir.to_path_buf(), element_path: dir.join(element_path), conf })
    }

    pub fn require_element(&self, element: &str) -> Result<()> {
        if !self.element_path.join(element).is_file() {
            anyhow::bail!(
                "the project {} has no element {element} (looked in {})",
                self.dir.display(),
                self.element_path.display()
            );
        }
        Ok(())
    }

    /// The project's `arch` option must exist and accept `value`.
    pub fn require_arch(&self, value: &str) -> Result<()> {
        match arch_values(&self.conf) {
            None => anyhow::bail!(
                "{}/project.conf declares no 'arch' option; add one under options: (type: arch or enum)",
                self.dir.display()
            ),
            Some(values) if values.is_empty() || values.iter().any(|v| v == value) => Ok(()),
            Some(values) => anyhow::bail!(
                "{}/project.conf's arch option does not list '{value}' (it has: {})",
                self.dir.display(),
                values.join(", ")
            ),
        }
    }
}

/// project.conf as YAML (anchors, flow style and comments as BuildStream reads them).
pub fn parse_conf(text: &str) -> Result<Yaml> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| {
        anyhow::anyhow!("not valid YAML: {e}; BuildStream would refuse it too (fix the file)")
    })?;
    match docs.into_iter().next() {
        None => Ok(Yaml::Hash(Default::default())),
        Some(doc @ Yaml::Hash(_)) => Ok(doc),
        Some(_) => anyhow::bail!("expected a mapping of settings at the top (name:, options:, ...)"),
    }
}

/// The `values` of `options: arch:` (an empty list when the option exists but lists
/// none); `None` when there is no such option.
pub fn arch_values(conf: &Yaml) -> Option<Vec<String>> {
    let arch = &conf["options"]["arch"];
    if arch.is_badvalue() || arch.is_null() {
        return None;
    }
    let values = match &arch["values"] {
        Yaml::Array(items) => items
            .iter()
            .filter_map(|v| match v {
                Yaml::String(s) => Some(s.clone()),
                // BuildStream takes `values: [1, 2]` as strings too.
                Yaml::Integer(i) => Some(i.to_string()),
                Yaml::Real(r) => Some(r.clone()),
                _ => None,
            })
            .filter(|v| !v.is_empty())
            .collect(),
        _ => Vec::new(),
    };
    Some(values)
}

/// `bst` on PATH, or an error saying how to install it.
pub fn require_bst() -> Result<PathBuf> {
    crate::util::which("bst")
        .ok_or_else(|| anyhow::anyhow!("bst (BuildStream 1.x) is not installed: {INSTALL_HINT}"))
}

/// BuildStream 1.6 crashes on a fresh machine unless its build cache folder exists.
pub fn ensure_cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    let dir = base.join("buildstream/build");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Run `bst --option arch ARCH <args>` in `project`, echoing its output as it comes.
pub fn run(bst: &Path, project: &Path, arch: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
    let mut cmd = Command::new(bst);
    cmd.arg("--no-interactive")
        .arg("--no-colors")
        .arg("-C")
        .arg(project)
        .args(["--option", "arch", arch])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!(
        "bst --option arch {arch} {}",
        args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );
    log::info!("running {shown}");
    let mut child = cmd.spawn().with_context(|| format!("cannot start {}", bst.display()))?;
    let tail = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    let mut readers = Vec::new();
    let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().expect("piped"));
    let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().expect("piped"));
    for pipe in [out, err] {
        let tail = tail.clone();
        readers.push(std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                // bst's own output, passed through as it comes (not a line of ours).
                eprintln!("  | {line}");
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                t.push_back(line);
                if t.len() > 15 {
                    t.pop_front();
                }
            }
        }));
    }
    let status = child.wait()?;
    for r in readers {
        let _ = r.join();
    }
    if !status.success() {
        let t = tail.lock().unwrap_or_else(|e| e.into_inner());
        anyhow::bail!(
            "{shown} failed ({status}); last lines:\n{}",
            t.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(conf: &str) -> Option<Vec<String>> {
        arch_values(&parse_conf(conf).unwrap())
    }

    #[test]
    fn arch_values_block_list() {
        let conf = "name: p\noptions:\n  arch:\n    type: arch\n    description: x\n    values:\n    - x86_64\n    - armv8l64\n  other:\n    type: bool\n";
        assert_eq!(values(conf).unwrap(), vec!["x86_64", "armv8l64"]);
    }

    #[test]
    fn arch_values_inline_list() {
        let conf = "options:\n  arch:\n    type: enum\n    values: [x86_64, 'ppc64b']\n";
        assert_eq!(values(conf).unwrap(), vec!["x86_64", "ppc64b"]);
    }

    #[test]
    fn no_arch_option() {
        assert!(values("name: p\noptions:\n  debug:\n    type: bool\n").is_none());
        assert!(values("name: p\n").is_none());
        assert!(values("").is_none());
    }

    #[test]
    fn a_real_projects_yaml_reads_right() {
        // Anchors and aliases, flow mappings, comments, quoting: what the indentation
        // reader used to get wrong.
        let conf = r#"
name: baserock  # the project
element-path: "elements"
arches: &arches [x86_64, armv8l64, 'ppc64b', "riscv64"]
options:
  arch: {type: arch, description: "Machine architecture", values: *arches}
  # arch:  (a comment that looks like the option)
  bootstrap_build_arch:
    type: arch
    values:
      - x86_64
"#;
        assert_eq!(values(conf).unwrap(), vec!["x86_64", "armv8l64", "ppc64b", "riscv64"]);
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("project.conf"), conf).unwrap();
        let p = Project::open(d.path()).unwrap();
        assert_eq!(p.element_path, d.path().join("elements"));
        assert!(p.require_arch("ppc64b").is_ok());
        let e = p.require_arch("ppc64").unwrap_err().to_string();
        assert!(e.contains("does not list 'ppc64'") && e.contains("ppc64b"), "{e}");
    }

    #[test]
    fn broken_yaml_is_named_with_the_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("project.conf"), "options:\n  arch: [unclosed\n").unwrap();
        let e = format!("{:#}", Project::open(d.path()).err().unwrap());
        assert!(e.contains("project.conf") && e.contains("not valid YAML"), "{e}");
        std::fs::write(d.path().join("project.conf"), "- a list\n").unwrap();
        let e = format!("{:#}", Project::open(d.path()).err().unwrap());
        assert!(e.contains("mapping"), "{e}");
    }

    #[test]
    fn element_path_is_read() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("project.conf"), "name: p\nelement-path: elements\n").unwrap();
        let p = Project::open(d.path()).unwrap();
        assert_eq!(p.element_path, d.path().join("elements"));
        assert!(p.require_element("nope.bst").unwrap_err().to_string().contains("no element nope.bst"));
        assert!(p.require_arch("x86_64").unwrap_err().to_string().contains("no 'arch' option"));
    }

    proptest::proptest! {
        #[test]
        fn arch_values_never_panics(conf in "(options:|  arch:|    values:|    - [a-z0-9_]{0,8}|    values: \\[[a-z, ]{0,12}\\]|[ a-z:#&*\\[\\]{}-]{0,12}|\n){0,24}") {
            if let Ok(doc) = parse_conf(&conf) {
                let _ = arch_values(&doc);
            }
        }
    }
}
