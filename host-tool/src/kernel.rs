//! Which kernel (and initrd) boots a target under QEMU: the one given, the Debian kernel
//! in /boot for an x86_64 guest on an x86_64 host, else the one `scripts/kernels.sh` put
//! in the cache.

use crate::targets::Target;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// A kernel made available by `scripts/kernels.sh` in the cache.
#[derive(Debug, Clone)]
pub struct CachedKernel {
    pub image: PathBuf,
    pub initrd: Option<PathBuf>,
    pub version: String,
    /// `modules/<version>`: holds modules.dep.
    pub modules: PathBuf,
}

/// The kernel a boot uses.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub image: PathBuf,
    /// The initrd that goes with it by default (Debian's), if any.
    pub initrd: Option<PathBuf>,
    /// Set when it came from the cache.
    pub cached: Option<CachedKernel>,
    /// Its `modules/<version>` folder (with modules.dep), when known: the cache's, or
    /// `/lib/modules/<version>` for the host's own Debian kernel.
    pub modules: Option<PathBuf>,
}

/// `${STAGEHAND_CACHE:-$HOME/.cache/stagehand}`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("STAGEHAND_CACHE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/stagehand")
        }
    }
}

/// The cached Debian kernel for `target`, or an error saying how to get one.
pub fn cached_kernel(target: &Target) -> Result<CachedKernel> {
    cached_kernel_in(&cache_dir(), target)
}

pub fn cached_kernel_in(cache: &Path, target: &Target) -> Result<CachedKernel> {
    let arch = &target.name;
    let name = target
        .kernel
        .cache_name
        .as_deref()
        .with_context(|| format!("no Debian kernel is known for {arch}: build one and pass --kernel"))?;
    let dir = cache.join("kernels").join(name);
    let version = std::fs::read_to_string(dir.join("version"))
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let image = dir.join("vmlinuz");
    match version {
        Some(version) if image.is_file() => Ok(CachedKernel {
            initrd: Some(dir.join("initrd.img")).filter(|p| p.is_file()),
            modules: dir.join("modules").join(&version),
            image,
            version,
        }),
        _ => anyhow::bail!(
            "no kernel for {arch} in {}: run `scripts/kernels.sh {name}` (or pass --kernel)",
            dir.display()
        ),
    }
}

/// The newest `vmlinuz-*` in `boot`, its `initrd.img-*` if present, and its version.
pub fn debian_kernel_in(boot: &Path) -> Option<(PathBuf, Option<PathBuf>, String)> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir(boot)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .collect();
    kernels.sort();
    let k = kernels.pop()?;
    let version = k.file_name()?.to_string_lossy().trim_start_matches("vmlinuz-").to_string();
    let initrd = boot.join(format!("initrd.img-{version}"));
    Some((k, initrd.exists().then_some(initrd), version))
}

/// The kernel for `target`: `explicit` if given, else Debian's own for an x86_64 guest on
/// an x86_64 host, else the cache.
pub fn find(target: &Target, explicit: Option<&Path>) -> Result<Kernel> {
    let kernel = match explicit {
        Some(k) => Kernel { image: k.to_path_buf(), initrd: None, cached: None, modules: None },
        None => {
            let native = target.name == "x86_64" && std::env::consts::ARCH == "x86_64";
            match debian_kernel_in(Path::new("/boot")).filter(|_| native) {
                Some((image, initrd, version)) => {
                    let modules = Some(Path::new("/lib/modules").join(version))
                        .filter(|m| m.join("modules.dep").is_file());
                    Kernel { image, initrd, cached: None, modules }
                }
                None => {
                    let c = cached_kernel(target).with_context(|| {
                        if native {
                            "no kernel in /boot either: apt-get install linux-image-amd64, or pass --kernel"
                        } else {
                            "no kernel for this target"
                        }
                    })?;
                    let modules = Some(c.modules.clone()).filter(|m| m.join("modules.dep").is_file());
                    Kernel { image: c.image.clone(), initrd: c.initrd.clone(), cached: Some(c), modules }
                }
            }
        }
    };
    if !kernel.image.is_file() {
        anyhow::bail!("kernel {} does not exist", kernel.image.display());
    }
    Ok(kernel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::lookup;

    #[test]
    fn kernels_are_found_in_the_cache_or_the_script_is_named() {
        let e = cached_kernel(&lookup("ppc64b").unwrap()).unwrap_err().to_string();
        assert!(e.contains("--kernel"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let arm = lookup("armv8l64").unwrap();
        let e = cached_kernel_in(d.path(), &arm).unwrap_err().to_string();
        assert!(e.contains("scripts/kernels.sh aarch64"), "{e}");
        let k = d.path().join("kernels/aarch64");
        std::fs::create_dir_all(k.join("modules/6.1.0-9-arm64")).unwrap();
        std::fs::write(k.join("vmlinuz"), b"k").unwrap();
        std::fs::write(k.join("version"), b"6.1.0-9-arm64\n").unwrap();
        let c = cached_kernel_in(d.path(), &arm).unwrap();
        assert_eq!(c.version, "6.1.0-9-arm64");
        assert_eq!(c.modules, k.join("modules/6.1.0-9-arm64"));
        assert!(c.initrd.is_none());
    }

    #[test]
    fn the_newest_debian_kernel_comes_with_its_initrd() {
        let d = tempfile::tempdir().unwrap();
        assert!(debian_kernel_in(d.path()).is_none());
        for f in [
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz-6.1.0-10-amd64",
            "initrd.img-6.1.0-9-amd64",
            "config-6.1.0-9-amd64",
        ] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        // sorted by name: -9 comes after -10
        let (k, i, v) = debian_kernel_in(d.path()).unwrap();
        assert_eq!(k, d.path().join("vmlinuz-6.1.0-9-amd64"));
        assert_eq!(v, "6.1.0-9-amd64");
        assert_eq!(i, Some(d.path().join("initrd.img-6.1.0-9-amd64")));
        let e = find(&lookup("x86_64").unwrap(), Some(&d.path().join("nope"))).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}
