//! Putting an existing sysroot in place: a folder (a `bst checkout`, a debootstrap tree)
//! or a tarball (`bst checkout --tar`, a Morph cross-bootstrap tarball, a tar of a
//! checkout folder), compressed or not.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

/// Folder names that mark the top of a root file system.
const ROOT_NAMES: &[&str] = &["bin", "sbin", "usr", "lib", "lib64", "etc", "tools", "src", "var"];

/// Copy or unpack the sysroot at `from` into the (new or empty) folder `dest`.
pub fn install(from: &Path, dest: &Path) -> Result<()> {
    let meta =
        std::fs::metadata(from).with_context(|| format!("sysroot {} does not exist", from.display()))?;
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    if meta.is_dir() {
        // cp -a keeps symlinks, hard links, modes, owners and device nodes.
        crate::util::run(Command::new("cp").arg("-a").arg(from.join(".")).arg(dest))
            .with_context(|| format!("cannot copy {} to {}", from.display(), dest.display()))?;
    } else {
        // GNU tar reads gzip, bzip2 and xz by itself and recreates every kind of entry.
        crate::util::run(
            Command::new("tar").args(["-x", "-p", "--numeric-owner", "-f"]).arg(from).arg("-C").arg(dest),
        )
        .with_context(|| format!("cannot unpack {} (is it a tarball?)", from.display()))?;
        hoist_single_top_folder(dest)?;
    }
    if dest.join("debootstrap").is_dir() {
        log::info!(
            "note: {} is a debootstrap --foreign tree; its second stage has not run yet",
            from.display()
        );
    }
    Ok(())
}

/// A tarball made with `tar -c ./stage2-ARCH` has the whole root under one folder.
fn hoist_single_top_folder(dest: &Path) -> Result<()> {
    let entries: Vec<_> = std::fs::read_dir(dest)?.collect::<std::io::Result<_>>()?;
    if entries.len() != 1 {
        return Ok(());
    }
    let only = &entries[0];
    let name = only.file_name();
    if !only.file_type()?.is_dir() || ROOT_NAMES.contains(&name.to_string_lossy().as_ref()) {
        return Ok(());
    }
    let inner = only.path();
    let parked = dest.join(format!(".{}-unpacking", name.to_string_lossy()));
    std::fs::rename(&inner, &parked)?;
    for child in std::fs::read_dir(&parked)? {
        let child = child?;
        std::fs::rename(child.path(), dest.join(child.file_name()))?;
    }
    std::fs::remove_dir(&parked)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarball_with_one_top_folder_is_hoisted() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src/stage2-x");
        std::fs::create_dir_all(src.join("tools/bin")).unwrap();
        std::fs::write(src.join("tools/bin/sh"), b"#!").unwrap();
        let tarball = d.path().join("s.tar.gz");
        crate::util::run(
            Command::new("tar")
                .arg("-czf")
                .arg(&tarball)
                .arg("-C")
                .arg(d.path().join("src"))
                .arg("./stage2-x"),
        )
        .unwrap();
        let dest = d.path().join("out");
        install(&tarball, &dest).unwrap();
        assert!(dest.join("tools/bin/sh").is_file());
    }

    #[test]
    fn root_tarball_stays_as_is() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("tools/bin")).unwrap();
        let tarball = d.path().join("s.tar");
        crate::util::run(Command::new("tar").arg("-cf").arg(&tarball).arg("-C").arg(&src).arg(".")).unwrap();
        let dest = d.path().join("out");
        install(&tarball, &dest).unwrap();
        assert!(dest.join("tools/bin").is_dir());
    }

    #[test]
    fn missing_sysroot_is_named() {
        let err = install(Path::new("/nonexistent/sysroot"), Path::new("/tmp/x-never")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sysroot"));
    }
}
