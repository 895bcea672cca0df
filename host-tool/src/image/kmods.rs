//! Kernel modules for the agent to load: the named modules and their dependencies, copied
//! from a kernel's `modules/<version>` folder into the image's `/lib/modules/<version>`,
//! with a `modules.dep` that lists only what was copied.

use anyhow::{Context, Result};
use stagehand_proto::kmod::{module_name, ModuleIndex};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What [`install`] did.
#[derive(Debug, Default)]
pub struct Installed {
    pub version: String,
    pub files: usize,
    /// Asked for but built into the kernel.
    pub builtin: Vec<String>,
    /// Optional names this kernel does not have (neither module nor built in).
    pub absent: Vec<String>,
}

/// Copy `required` (an error when missing) and `optional` modules with their dependencies
/// from `src` (`.../modules/<version>`, holding modules.dep) into `root/lib/modules/<version>`.
pub fn install(src: &Path, required: &[String], optional: &[&str], root: &Path) -> Result<Installed> {
    let dep_file = src.join("modules.dep");
    let text = std::fs::read_to_string(&dep_file).with_context(|| {
        format!("{} has no modules.dep: give the kernel's modules/<version> folder (run `depmod -b` if it is missing)", src.display())
    })?;
    let version = src
        .canonicalize()
        .unwrap_or_else(|_| src.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("the modules folder has no name (it must be named after the kernel version)")?;
    let builtin = std::fs::read_to_string(src.join("modules.builtin")).unwrap_or_default();
    let dep = ModuleIndex::parse(&text, &builtin);
    let mut done = Installed { version: version.clone(), ..Installed::default() };
    let mut files = BTreeSet::new();
    let wanted = required.iter().map(|n| (n.as_str(), true)).chain(optional.iter().map(|n| (*n, false)));
    for (name, must) in wanted {
        let norm = module_name(name);
        match dep.closure(&norm) {
            Some(f) => files.extend(f),
            None if dep.is_builtin(&norm) => done.builtin.push(norm),
            None if must => anyhow::bail!(
                "kernel {version} has no module {name} (not in {}, not built in)",
                dep_file.display()
            ),
            None => done.absent.push(norm),
        }
    }
    let dest = root.join("lib/modules").join(&version);
    std::fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
    for f in &files {
        let from: PathBuf = src.join(f);
        let to = dest.join(f);
        std::fs::create_dir_all(to.parent().expect("a module path has a folder"))?;
        std::fs::copy(&from, &to).with_context(|| format!("cannot copy the module {}", from.display()))?;
    }
    std::fs::write(dest.join("modules.dep"), dep.subset(&files))?;
    for extra in ["modules.builtin", "modules.softdep"] {
        if src.join(extra).is_file() {
            std::fs::copy(src.join(extra), dest.join(extra))?;
        }
    }
    done.files = files.len();
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(dir: &Path) -> PathBuf {
        let src = dir.join("modules/6.1.0-test");
        for f in [
            "kernel/a/virtio_mmio.ko",
            "kernel/b/virtio_console.ko",
            "kernel/c/net_failover.ko",
            "kernel/c/failover.ko",
            "kernel/c/virtio_net.ko",
            "kernel/d/unused.ko",
        ] {
            std::fs::create_dir_all(src.join(f).parent().unwrap()).unwrap();
            std::fs::write(src.join(f), f).unwrap();
        }
        std::fs::write(
            src.join("modules.dep"),
            "kernel/a/virtio_mmio.ko:\nkernel/b/virtio_console.ko:\nkernel/c/failover.ko:\nkernel/c/net_failover.ko: kernel/c/failover.ko\nkernel/c/virtio_net.ko: kernel/c/net_failover.ko kernel/c/failover.ko\nkernel/d/unused.ko:\n",
        )
        .unwrap();
        std::fs::write(src.join("modules.builtin"), "kernel/drivers/virtio/virtio.ko\n").unwrap();
        src
    }

    #[test]
    fn copies_the_closure_and_a_matching_modules_dep() {
        let d = tempfile::tempdir().unwrap();
        let src = kernel(d.path());
        let root = d.path().join("root");
        let done = install(&src, &["virtio-net".into()], &["virtio_mmio", "virtio", "e1000"], &root).unwrap();
        assert_eq!(done.version, "6.1.0-test");
        assert_eq!(done.files, 4);
        assert_eq!(done.builtin, vec!["virtio"]);
        assert_eq!(done.absent, vec!["e1000"]);
        let dest = root.join("lib/modules/6.1.0-test");
        assert!(dest.join("kernel/c/failover.ko").is_file());
        assert!(!dest.join("kernel/d/unused.ko").exists());
        assert!(!dest.join("kernel/b/virtio_console.ko").exists());
        let dep = std::fs::read_to_string(dest.join("modules.dep")).unwrap();
        assert_eq!(dep.lines().count(), 4);
        assert!(dep.contains("kernel/c/virtio_net.ko: kernel/c/net_failover.ko kernel/c/failover.ko\n"));
        assert!(dest.join("modules.builtin").is_file());
    }

    #[test]
    fn a_required_module_the_kernel_lacks_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let src = kernel(d.path());
        let e = install(&src, &["nosuch".into()], &[], &d.path().join("root")).unwrap_err().to_string();
        assert!(e.contains("no module nosuch"), "{e}");
        let e = install(d.path(), &[], &[], &d.path().join("root")).unwrap_err().to_string();
        assert!(e.contains("modules.dep"), "{e}");
    }
}
