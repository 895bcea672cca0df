//! Running BuildStream 1.x: checks before the first call, output streamed line by line.

use anyhow::{Context, Result};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const INSTALL_HINT: &str = "apt-get install buildstream bubblewrap";

/// A BuildStream project folder, checked for what the verbs need.
pub struct Project {
    pub dir: PathBuf,
    pub element_path: PathBuf,
    conf: String,
}

impl Project {
    pub fn open(dir: &Path) -> Result<Project> {
        let conf_path = dir.join("project.conf");
        let conf = std::fs::read_to_string(&conf_path).with_context(|| {
            format!("{} is not a BuildStream project (no readable project.conf)", dir.display())
        })?;
        let element_path = top_level_value(&conf, "element-path").unwrap_or_else(|| ".".into());
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

fn top_level_value(conf: &str, key: &str) -> Option<String> {
    conf.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let v = rest.trim().trim_matches(|c| c == '\'' || c == '"');
        (!v.is_empty()).then(|| v.to_string())
    })
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The `values` of `options: arch:` in project.conf (an empty list when the option exists
/// but lists none); `None` when there is no such option. Indentation-based, enough for
/// the flat YAML BuildStream projects use.
pub fn arch_values(conf: &str) -> Option<Vec<String>> {
    let lines: Vec<&str> =
        conf.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')).collect();
    let opts = lines.iter().position(|l| l.trim_end() == "options:")?;
    let mut i = opts + 1;
    while i < lines.len() && indent(lines[i]) > 0 {
        if lines[i].trim_end().trim() == "arch:" {
            let arch_indent = indent(lines[i]);
            let mut values = Vec::new();
            let mut j = i + 1;
            while j < lines.len() && indent(lines[j]) > arch_indent {
                let t = lines[j].trim();
                if let Some(inline) = t.strip_prefix("values:") {
                    let inline = inline.trim();
                    if let Some(list) = inline.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                        values.extend(
                            list.split(',')
                                .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_string()),
                        );
                    } else {
                        let vi = indent(lines[j]);
                        let mut k = j + 1;
                        while k < lines.len() && indent(lines[k]) >= vi && lines[k].trim().starts_with('-') {
                            values.push(
                                lines[k].trim()[1..]
                                    .trim()
                                    .trim_matches(|c| c == '\'' || c == '"')
                                    .to_string(),
                            );
                            k += 1;
                        }
                    }
                }
                j += 1;
            }
            return Some(values.into_iter().filter(|v| !v.is_empty()).collect());
        }
        i += 1;
    }
    None
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

    #[test]
    fn arch_values_block_list() {
        let conf = "name: p\noptions:\n  arch:\n    type: arch\n    description: x\n    values:\n    - x86_64\n    - armv8l64\n  other:\n    type: bool\n";
        assert_eq!(arch_values(conf).unwrap(), vec!["x86_64", "armv8l64"]);
    }

    #[test]
    fn arch_values_inline_list() {
        let conf = "options:\n  arch:\n    type: enum\n    values: [x86_64, 'ppc64b']\n";
        assert_eq!(arch_values(conf).unwrap(), vec!["x86_64", "ppc64b"]);
    }

    #[test]
    fn no_arch_option() {
        assert!(arch_values("name: p\noptions:\n  debug:\n    type: bool\n").is_none());
        assert!(arch_values("name: p\n").is_none());
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
        fn arch_values_never_panics(conf in "(options:|  arch:|    values:|    - [a-z0-9_]{0,8}|    values: \\[[a-z, ]{0,12}\\]|[ a-z:#-]{0,12}|\n){0,24}") {
            let _ = arch_values(&conf);
        }
    }
}
