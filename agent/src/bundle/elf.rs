//! Refuse a sysroot built for another architecture before running anything in it.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::BundleError;

/// ELF `e_machine` of a file, if it is an ELF file.
fn machine(path: &Path) -> Option<u16> {
    let mut head = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    if &head[..4] != b"\x7fELF" {
        return None;
    }
    let bytes = [head[18], head[19]];
    Some(if head[5] == 2 { u16::from_be_bytes(bytes) } else { u16::from_le_bytes(bytes) })
}

pub(crate) fn machine_name(m: u16) -> &'static str {
    match m {
        2 => "sparc",
        3 => "x86 (i386)",
        8 => "mips",
        20 => "ppc",
        21 => "ppc64",
        22 => "s390",
        40 => "arm",
        43 => "sparc64",
        62 => "x86_64",
        183 => "aarch64",
        243 => "riscv",
        258 => "loongarch",
        _ => "an unknown machine",
    }
}

/// 64-bit kernels that also run the 32-bit binaries of the same family.
fn compatible(own: u16, other: u16) -> bool {
    matches!((own, other), (62, 3) | (183, 40) | (21, 20) | (43, 2))
}

/// Follow symlinks of `path` as if `root` were `/`.
pub(crate) fn resolve_in_root(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut todo: VecDeque<OsString> = path.components().filter_map(normal).collect();
    let mut cur = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let cand = cur.join(&c);
        let meta = std::fs::symlink_metadata(root.join(&cand)).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = std::fs::read_link(root.join(&cand)).ok()?;
            if target.is_absolute() {
                cur = PathBuf::new();
            }
            for part in target.components().filter_map(normal).collect::<Vec<_>>().into_iter().rev() {
                todo.push_front(part);
            }
        } else {
            cur = cand;
        }
    }
    Some(root.join(cur))
}

fn normal(c: Component<'_>) -> Option<OsString> {
    match c {
        Component::Normal(s) => Some(s.to_os_string()),
        Component::ParentDir => Some("..".into()),
        _ => None,
    }
}

const PROBES: &[&str] =
    &["/bin/sh", "/usr/bin/env", "/bin/cp", "/usr/bin/find", "/bin/cpio", "/tools/bin/sh", "/tools/bin/bash"];

/// Compare the ELF machine of a few programs of the root with the one this agent runs
/// on. An error for a foreign architecture; warnings for what could not be checked.
pub fn check_architecture(root: &Path) -> Result<Vec<String>, BundleError> {
    let Some(own) = machine(Path::new("/proc/self/exe")) else {
        return Ok(Vec::new());
    };
    let mut warnings = Vec::new();
    let mut checked = 0;
    for probe in PROBES {
        let Some(host) = resolve_in_root(root, Path::new(probe)) else {
            continue;
        };
        let Some(m) = machine(&host) else { continue };
        checked += 1;
        if m == own {
            continue;
        }
        let msg = format!(
            "{probe} in the sysroot is for {} (ELF machine {m}) but this machine is {} (ELF machine {own})",
            machine_name(m),
            machine_name(own)
        );
        if compatible(own, m) {
            warnings.push(format!("{msg}: running it in 32-bit compatibility mode"));
        } else {
            return Err(BundleError(format!(
                "the sysroot's binaries are for another architecture: {msg}; boot this image on the board it was built for"
            )));
        }
    }
    if checked == 0 && resolve_in_root(root, Path::new("/bin/sh")).is_none_or(|p| !p.exists()) {
        warnings.push("the root has no /bin/sh: the module scripts will not start".into());
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::write(r.join("usr/bin/dash"), b"x").unwrap();
        std::os::unix::fs::symlink("/usr/bin", r.join("bin")).unwrap();
        std::os::unix::fs::symlink("dash", r.join("usr/bin/sh")).unwrap();
        assert_eq!(resolve_in_root(r, Path::new("/bin/sh")).unwrap(), r.join("usr/bin/dash"));
    }

    #[test]
    fn foreign_binaries_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("bin")).unwrap();
        let own = machine(Path::new("/proc/self/exe")).unwrap();
        let other: u16 = if own == 62 { 183 } else { 62 };
        let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        elf.resize(18, 0);
        elf.extend_from_slice(&other.to_le_bytes());
        std::fs::write(r.join("bin/sh"), &elf).unwrap();
        let e = check_architecture(r).unwrap_err();
        assert!(e.0.contains("another architecture"), "{e}");
        std::fs::copy("/proc/self/exe", r.join("bin/sh")).unwrap();
        assert!(check_architecture(r).unwrap().is_empty());
    }
}
