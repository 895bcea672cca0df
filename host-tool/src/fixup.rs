//! `stagehand fixup`: make a cross-built stage 2 sysroot fit to run a source bundle.
//!
//! The bundle installs straight into `/`, so a `/usr/bin -> /tools/bin` symlink would make
//! it write into the toolchain: it becomes a real folder holding only `sh` and `bash`
//! links for hard-coded shebangs. Mount points for /dev, /proc, /sys, /tmp and /run are
//! created, and /etc/resolv.conf when a name server is given. Running it twice changes
//! nothing the second time.

use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `stagehand fixup DIR [--nameserver IP]`
#[derive(clap::Args, Debug)]
pub struct FixupCmd {
    /// Root folder of the sysroot to fix up.
    pub dir: PathBuf,
    /// Write /etc/resolv.conf with this name server.
    #[arg(long, value_name = "IP")]
    pub nameserver: Option<std::net::IpAddr>,
}

impl FixupCmd {
    pub fn run(self) -> Result<()> {
        if !self.dir.is_dir() {
            anyhow::bail!("{} is not a folder; give the sysroot's root folder", self.dir.display());
        }
        let changes = fixup(&self.dir, self.nameserver)?;
        print_changes(&self.dir, &changes);
        Ok(())
    }
}

pub fn print_changes(root: &Path, changes: &[String]) {
    if changes.is_empty() {
        println!("fixup: {} needs no changes", root.display());
    }
    for c in changes {
        println!("fixup: {c}");
    }
}

const MOUNT_POINTS: &[(&str, u32)] =
    &[("dev", 0o755), ("proc", 0o555), ("sys", 0o555), ("tmp", 0o1777), ("run", 0o755)];
const SHELLS: &[&str] = &["sh", "bash"];

/// Apply the fix-ups to the tree at `root`; returns what was changed, one line each.
pub fn fixup(root: &Path, nameserver: Option<std::net::IpAddr>) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    fix_usr_bin(root, &mut changes)?;
    for (name, mode) in MOUNT_POINTS {
        let p = root.join(name);
        // debootstrap run in a container leaves `/proc -> /proc`: a loop once booted.
        if std::fs::read_link(&p).is_ok_and(|t| t == Path::new("/").join(name)) {
            std::fs::remove_file(&p).with_context(|| format!("cannot remove the symlink {}", p.display()))?;
            changes.push(format!("removed the self-referencing symlink /{name} -> /{name}"));
        }
        if std::fs::symlink_metadata(&p).is_err() {
            std::fs::create_dir(&p).with_context(|| format!("cannot create {}", p.display()))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
            changes.push(format!("created mount point /{name}"));
        }
    }
    if let Some(ip) = nameserver {
        let wanted = format!("nameserver {ip}\n");
        let etc = root.join("etc");
        let conf = etc.join("resolv.conf");
        let current = match std::fs::symlink_metadata(&conf) {
            Ok(m) if m.file_type().is_file() => std::fs::read_to_string(&conf).ok(),
            _ => None,
        };
        if current.as_deref() != Some(wanted.as_str()) {
            std::fs::create_dir_all(&etc)?;
            if std::fs::symlink_metadata(&conf).is_ok() {
                std::fs::remove_file(&conf).with_context(|| format!("cannot replace {}", conf.display()))?;
            }
            std::fs::write(&conf, &wanted).with_context(|| format!("cannot write {}", conf.display()))?;
            changes.push(format!("wrote /etc/resolv.conf (nameserver {ip})"));
        }
    }
    Ok(changes)
}

fn points_at_tools_bin(target: &Path) -> bool {
    let t = target.to_string_lossy();
    let t = t.trim_end_matches('/');
    t == "/tools/bin" || t == "tools/bin" || t == "../tools/bin"
}

fn fix_usr_bin(root: &Path, changes: &mut Vec<String>) -> Result<()> {
    let usr_bin = root.join("usr/bin");
    if let Ok(target) = std::fs::read_link(&usr_bin) {
        if !points_at_tools_bin(&target) {
            return Ok(());
        }
        std::fs::remove_file(&usr_bin)?;
        std::fs::create_dir(&usr_bin).with_context(|| format!("cannot create {}", usr_bin.display()))?;
        std::fs::set_permissions(&usr_bin, std::fs::Permissions::from_mode(0o755))?;
        changes.push(format!("replaced /usr/bin -> {} with a folder", target.display()));
    } else if !usr_bin.is_dir() {
        return Ok(());
    }
    // Shebang links only where the toolchain has the shell.
    for shell in SHELLS {
        let tool = root.join("tools/bin").join(shell);
        let link = usr_bin.join(shell);
        if std::fs::symlink_metadata(&tool).is_ok() && std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("/tools/bin/{shell}"), &link)
                .with_context(|| format!("cannot create {}", link.display()))?;
            changes.push(format!("linked /usr/bin/{shell} -> /tools/bin/{shell}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn stage2_tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("tools/bin")).unwrap();
        std::fs::create_dir_all(d.path().join("usr")).unwrap();
        std::fs::write(d.path().join("tools/bin/bash"), b"").unwrap();
        symlink("bash", d.path().join("tools/bin/sh")).unwrap();
        symlink("/tools/bin", d.path().join("usr/bin")).unwrap();
        d
    }

    #[test]
    fn a_mount_point_that_links_to_itself_becomes_a_folder() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/proc", d.path().join("proc")).unwrap();
        let changes = fixup(d.path(), None).unwrap();
        assert!(d.path().join("proc").symlink_metadata().unwrap().is_dir());
        assert!(changes.iter().any(|c| c.contains("self-referencing symlink /proc")), "{changes:?}");
        assert!(fixup(d.path(), None).unwrap().is_empty());
    }

    #[test]
    fn usr_bin_symlink_becomes_a_folder_with_shell_links() {
        let d = stage2_tree();
        let changes = fixup(d.path(), None).unwrap();
        let usr_bin = d.path().join("usr/bin");
        assert!(std::fs::symlink_metadata(&usr_bin).unwrap().is_dir());
        assert_eq!(std::fs::read_link(usr_bin.join("sh")).unwrap(), Path::new("/tools/bin/sh"));
        assert_eq!(std::fs::read_link(usr_bin.join("bash")).unwrap(), Path::new("/tools/bin/bash"));
        assert!(d.path().join("tmp").is_dir());
        assert_eq!(changes.len(), 1 + 2 + 5);
    }

    #[test]
    fn only_existing_shells_are_linked() {
        let d = stage2_tree();
        std::fs::remove_file(d.path().join("tools/bin/bash")).unwrap();
        std::fs::remove_file(d.path().join("tools/bin/sh")).unwrap();
        fixup(d.path(), None).unwrap();
        assert!(std::fs::symlink_metadata(d.path().join("usr/bin/bash")).is_err());
        assert!(std::fs::symlink_metadata(d.path().join("usr/bin/sh")).is_err());
    }

    #[test]
    fn second_run_changes_nothing() {
        let d = stage2_tree();
        let ns = Some("10.0.2.3".parse().unwrap());
        assert!(!fixup(d.path(), ns).unwrap().is_empty());
        assert!(fixup(d.path(), ns).unwrap().is_empty());
        assert_eq!(
            std::fs::read_to_string(d.path().join("etc/resolv.conf")).unwrap(),
            "nameserver 10.0.2.3\n"
        );
    }

    #[test]
    fn other_usr_bin_symlinks_are_left_alone() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("usr/local")).unwrap();
        symlink("local", d.path().join("usr/bin")).unwrap();
        fixup(d.path(), None).unwrap();
        assert!(std::fs::read_link(d.path().join("usr/bin")).is_ok());
    }

    #[test]
    fn dangling_resolv_conf_link_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        symlink("/run/systemd/resolve/stub-resolv.conf", d.path().join("etc/resolv.conf")).unwrap();
        fixup(d.path(), Some("1.1.1.1".parse().unwrap())).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("etc/resolv.conf")).unwrap(),
            "nameserver 1.1.1.1\n"
        );
    }
}
