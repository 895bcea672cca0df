//! `stagehand bundle`: the stage 3 build bundle, from `bst source-bundle` or given.

use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// `stagehand bundle --project DIR --target ARCH ELEMENT [--except E...] --out FILE`
#[derive(clap::Args, Debug)]
pub struct BundleCmd {
    /// Element to bundle, e.g. bootstrap/stage3-sysroot.bst.
    #[arg(required_unless_present = "from")]
    pub element: Option<String>,
    /// Baserock architecture name.
    #[arg(long, value_name = "ARCH")]
    pub target: String,
    /// BuildStream project folder.
    #[arg(long, value_name = "DIR", required_unless_present = "from")]
    pub project: Option<PathBuf>,
    /// Leave out this element and what only it needs (repeatable).
    #[arg(long, value_name = "ELEMENT")]
    pub except: Vec<String>,
    /// Compression of the bundle tarball.
    #[arg(long, value_enum, default_value = "gz")]
    pub compression: Compression,
    /// Use this bundle instead: a source-bundle tarball, a Morph cross-bootstrap tarball
    /// or a folder holding native-bootstrap or build.sh.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["project", "element"])]
    pub from: Option<PathBuf>,
    /// Bundle file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gz,
    None,
}

impl BundleCmd {
    pub fn run(self) -> Result<()> {
        let arch = crate::platform::arch(&self.target)?;
        crate::util::claim_output(&self.out, self.force)?;
        if let Some(from) = &self.from {
            let kind = if from.is_dir() {
                let kind = kind_of_tree(from)?;
                write_tarball(from, &self.out, self.compression == Compression::Gz)?;
                kind
            } else {
                let kind = kind_of_tarball(from)?;
                std::fs::copy(from, &self.out)
                    .with_context(|| format!("cannot copy {} to {}", from.display(), self.out.display()))?;
                kind
            };
            println!("bundle ({kind}) for {} written to {}", arch.name, self.out.display());
            return Ok(());
        }
        let element = self.element.as_deref().expect("clap requires ELEMENT without --from");
        let project_dir = self.project.as_ref().expect("clap requires --project without --from");
        let bst = crate::bst::require_bst()?;
        let project = crate::bst::Project::open(project_dir)?;
        project.require_element(element)?;
        for e in &self.except {
            project.require_element(e)?;
        }
        project.require_arch(&arch.bst_arch)?;
        crate::bst::ensure_cache_dir()?;
        let parent = self.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".stagehand-bundle")
            .tempdir_in(parent)
            .with_context(|| format!("cannot create a temporary folder in {}", parent.display()))?;
        let mut args: Vec<std::ffi::OsString> = vec!["source-bundle".into(), element.into()];
        for e in &self.except {
            args.push("--except".into());
            args.push(e.into());
        }
        args.push("--compression".into());
        args.push(
            match self.compression {
                Compression::Gz => "gz",
                Compression::None => "none",
            }
            .into(),
        );
        args.push("--directory".into());
        args.push(crate::util::absolute(tmp.path()).into());
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        crate::bst::run(&bst, project_dir, &arch.bst_arch, &refs)?;
        let made = std::fs::read_dir(tmp.path())?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name().is_some_and(|n| {
                    n.to_string_lossy().starts_with(&format!("{}.tar", normal_name(element)))
                })
            })
            .context("bst source-bundle wrote no tarball")?;
        kind_of_tarball(&made)?;
        std::fs::rename(&made, &self.out)
            .with_context(|| format!("cannot move the bundle to {}", self.out.display()))?;
        println!("bundle for {} written to {}", arch.name, self.out.display());
        Ok(())
    }
}

/// The bundle name of an element path: `bootstrap/stage3-sysroot.bst` → `bootstrap-stage3-sysroot`.
pub fn normal_name(element: &str) -> String {
    element.trim_end_matches(".bst").replace('/', "-")
}

/// `NN-name.sh`: one module of a script bundle.
fn is_numbered_script(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".sh") else { return false };
    let digits = stem.chars().take_while(|c| c.is_ascii_digit()).count();
    digits > 0 && stem[digits..].starts_with('-') && stem.len() > digits + 1
}

fn looks_like_build_sh(text: &str) -> bool {
    text.lines().any(|l| l.trim_start().starts_with("for module in"))
}

/// `buildstream` or `morph` for a folder holding a bundle, else an error.
pub fn kind_of_tree(dir: &Path) -> Result<&'static str> {
    if dir.join("native-bootstrap").is_file() {
        return Ok("morph");
    }
    let mut candidates = vec![dir.join("build.sh")];
    if let Ok(rd) = std::fs::read_dir(dir) {
        candidates.extend(rd.filter_map(|e| e.ok()).map(|e| e.path().join("build.sh")));
    }
    for c in candidates {
        if std::fs::read_to_string(&c).is_ok_and(|t| looks_like_build_sh(&t)) {
            return Ok("buildstream");
        }
    }
    if std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .any(|e| is_numbered_script(&e.file_name().to_string_lossy()))
    {
        return Ok("script");
    }
    anyhow::bail!(
        "{} does not look like a build bundle (no build.sh with a 'for module in' line, no native-bootstrap, no NN-name.sh scripts)",
        dir.display()
    )
}

/// `buildstream` or `morph` for a bundle tarball (gzip or plain), else an error.
pub fn kind_of_tarball(path: &Path) -> Result<&'static str> {
    let file =
        std::fs::File::open(path).with_context(|| format!("bundle {} does not exist", path.display()))?;
    let reader: Box<dyn Read> = if crate::util::is_gzip(path) {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    let not_a_bundle = || {
        anyhow::anyhow!(
        "{} does not look like a build bundle (no build.sh with a 'for module in' line, no native-bootstrap, no NN-name.sh scripts)",
        path.display()
    )
    };
    let mut scripts = false;
    let entries = archive.entries().map_err(|_| not_a_bundle())?;
    for entry in entries {
        let mut entry = entry.map_err(|_| not_a_bundle())?;
        let p = entry.path().map_err(|_| not_a_bundle())?.into_owned();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let depth = p.components().filter(|c| !matches!(c, std::path::Component::CurDir)).count();
        if name == "native-bootstrap" && depth == 1 {
            return Ok("morph");
        }
        if name == "build.sh" && depth <= 2 {
            let mut text = String::new();
            if entry.read_to_string(&mut text).is_ok() && looks_like_build_sh(&text) {
                return Ok("buildstream");
            }
        }
        scripts |= depth <= 2 && is_numbered_script(&name);
    }
    if scripts {
        return Ok("script");
    }
    Err(not_a_bundle())
}

/// Tar a bundle folder; the folder's own name becomes the top folder, as bst does.
fn write_tarball(dir: &Path, out: &Path, gz: bool) -> Result<()> {
    let file = std::fs::File::create(out).with_context(|| format!("cannot write {}", out.display()))?;
    let writer: Box<dyn std::io::Write> = if gz {
        Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()))
    } else {
        Box::new(file)
    };
    let mut builder = tar::Builder::new(writer);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    if dir.join("native-bootstrap").is_file() {
        builder.append_dir_all(".", dir)?;
    } else {
        let name = crate::util::absolute(dir)
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "bundle".into());
        builder.append_dir_all(Path::new(&name), dir)?;
    }
    builder.into_inner()?.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_name_matches_bst() {
        assert_eq!(normal_name("bootstrap/stage3-sysroot.bst"), "bootstrap-stage3-sysroot");
    }

    #[test]
    fn folder_bundles_are_recognised_and_tarred() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path().join("bootstrap-stage3");
        std::fs::create_dir_all(b.join("source")).unwrap();
        std::fs::write(b.join("build.sh"), "set -eu\nfor module in a b ; do\n  x\ndone\n").unwrap();
        assert_eq!(kind_of_tree(&b).unwrap(), "buildstream");
        let out = d.path().join("b.tar.gz");
        write_tarball(&b, &out, true).unwrap();
        assert_eq!(kind_of_tarball(&out).unwrap(), "buildstream");

        let m = d.path().join("morph");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("native-bootstrap"), "#!/bin/sh\n").unwrap();
        let out = d.path().join("m.tar");
        write_tarball(&m, &out, false).unwrap();
        assert_eq!(kind_of_tarball(&out).unwrap(), "morph");
    }

    #[test]
    fn script_bundles_are_recognised() {
        assert!(is_numbered_script("01-hello.sh") && is_numbered_script("10-gcc-stage3.sh"));
        assert!(
            !is_numbered_script("hello.sh")
                && !is_numbered_script("01.sh")
                && !is_numbered_script("01-.sh")
                && !is_numbered_script("01-x.txt")
        );
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("scripts");
        std::fs::create_dir_all(&s).unwrap();
        std::fs::write(s.join("01-hello.sh"), "echo hi\n").unwrap();
        assert_eq!(kind_of_tree(&s).unwrap(), "script");
        let out = d.path().join("s.tar.gz");
        write_tarball(&s, &out, true).unwrap();
        assert_eq!(kind_of_tarball(&out).unwrap(), "script");
    }

    #[test]
    fn random_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.tar.gz");
        std::fs::write(&f, b"not a tarball at all").unwrap();
        assert!(kind_of_tarball(&f).unwrap_err().to_string().contains("does not look like a build bundle"));
        assert!(kind_of_tree(d.path()).is_err());
    }
}
