//! Loading kernel modules by name, like `modprobe` but with nothing but `finit_module`.
//!
//! Dependencies come from `/lib/modules/$(uname -r)/modules.dep` (read with
//! [`stagehand_proto::kmod::ModuleIndex`]); modules already loaded (`/proc/modules`) or
//! built in (`modules.builtin`) are skipped; `EEXIST` counts as loaded. Compressed modules
//! are handed to the kernel with `MODULE_INIT_COMPRESSED_FILE`, which kernels >= 5.17
//! built with `CONFIG_MODULE_DECOMPRESS` understand; older kernels get a clear error.

use crate::sys::{is_already_exists, Sys};
use stagehand_proto::kmod::{compression_of, loaded_modules, module_name, ModuleIndex};
use std::path::{Path, PathBuf};

/// `finit_module` flag: the file is compressed, the kernel decompresses it.
pub const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// What [`load_modules`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// One line per module loaded or skipped.
    pub done: Vec<String>,
    /// One line per requested module that could not be loaded.
    pub errors: Vec<String>,
}

/// Load `names` (and their dependencies) into the running kernel.
pub fn load_modules(sys: &dyn Sys, names: &[String]) -> LoadReport {
    let mut report = LoadReport::default();
    let mut loaded = sys
        .read_file(Path::new("/proc/modules"))
        .map(|t| loaded_modules(&String::from_utf8_lossy(&t)))
        .unwrap_or_default();
    // Loaded already (by the initramfs before a root switch, say): no modules.dep needed.
    let names: Vec<String> = names
        .iter()
        .map(|n| module_name(n))
        .filter(|n| {
            let have = loaded.contains(n);
            if have {
                report.done.push(format!("module {n} already loaded"));
            }
            !have
        })
        .collect();
    if names.is_empty() {
        return report;
    }
    let dir = PathBuf::from("/lib/modules").join(sys.kernel_release());
    let dep_path = dir.join("modules.dep");
    let dep_text = match sys.read_file(&dep_path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) => {
            report.errors.push(format!(
                "cannot read {} ({e}): the image needs this kernel's modules and their modules.dep (run depmod {})",
                dep_path.display(),
                sys.kernel_release()
            ));
            return report;
        }
    };
    let builtin_text =
        sys.read_file(&dir.join("modules.builtin")).map(|t| String::from_utf8_lossy(&t).into_owned());
    let index = ModuleIndex::parse(&dep_text, builtin_text.as_deref().unwrap_or(""));

    for name in names {
        if loaded.contains(&name) {
            report.done.push(format!("module {name} already loaded"));
            continue;
        }
        if index.is_builtin(&name) {
            report.done.push(format!("module {name} is built into the kernel"));
            continue;
        }
        let paths = match index.resolve(&name) {
            Ok(p) => p,
            Err(e) => {
                report.errors.push(e);
                continue;
            }
        };
        for rel in paths {
            let m = module_name(&rel);
            if loaded.contains(&m) {
                continue;
            }
            match load_one(sys, &dir.join(&rel), &rel) {
                Ok(line) => {
                    report.done.push(line);
                    loaded.insert(m);
                }
                Err(e) => {
                    report.errors.push(if m == name { e } else { format!("{e} (needed by {name})") });
                    break;
                }
            }
        }
    }
    report
}

fn load_one(sys: &dyn Sys, path: &Path, rel: &str) -> Result<String, String> {
    let name = module_name(rel);
    let compression = compression_of(rel);
    let flags = if compression.is_some() { MODULE_INIT_COMPRESSED_FILE } else { 0 };
    match sys.finit_module(path, "", flags) {
        Ok(()) => Ok(format!("module {name} loaded from {}", path.display())),
        Err(e) if is_already_exists(&e) => Ok(format!("module {name} already loaded")),
        Err(e) => match compression {
            Some(ext)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(libc::ENOEXEC)
                ) =>
            {
                Err(format!(
                    "module {name}: {} is compressed ({ext}) and this kernel refused it ({e}): it needs \
                 CONFIG_MODULE_DECOMPRESS (Linux 5.17 or later); put an uncompressed .ko in the image",
                    path.display()
                ))
            }
            _ => Err(format!("module {name}: finit_module {}: {e}", path.display())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::RecordingSys;

    /// A slice of a real modules.dep: plain, compressed and dashed names, nested dependencies.
    const DEP: &str = include_str!("../../tests/fixtures/modules.dep");

    fn sys_with(loaded: &str) -> RecordingSys {
        let sys = RecordingSys::new();
        sys.add_file("/lib/modules/6.1.0-test/modules.dep", DEP);
        sys.add_file("/lib/modules/6.1.0-test/modules.builtin", "kernel/drivers/tty/serial/8250/8250.ko\n");
        sys.add_file("/proc/modules", loaded);
        sys
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn loads_in_order_and_skips_what_is_loaded() {
        let sys = sys_with("virtio 16384 2 - Live 0x0\n");
        let r = load_modules(&sys, &names(&["virtio_blk", "ext4", "8250", "virtio-ring"]));
        assert_eq!(r.errors, Vec::<String>::new());
        let m = "/lib/modules/6.1.0-test/kernel";
        assert_eq!(
            sys.calls(),
            vec![
                format!("finit_module {m}/drivers/virtio/virtio_ring.ko params=\"\" flags=0"),
                format!("finit_module {m}/drivers/block/virtio_blk.ko params=\"\" flags=0"),
                format!("finit_module {m}/fs/jbd2/jbd2.ko params=\"\" flags=0"),
                format!("finit_module {m}/fs/mbcache.ko params=\"\" flags=0"),
                format!("finit_module {m}/lib/crc16.ko params=\"\" flags=0"),
                format!("finit_module {m}/fs/ext4/ext4.ko params=\"\" flags=0"),
            ]
        );
        assert!(r.done.iter().any(|l| l.contains("8250 is built into")));
        assert!(r.done.iter().any(|l| l.contains("virtio_ring already loaded")));
    }

    #[test]
    fn eexist_counts_as_loaded() {
        let sys = sys_with("");
        sys.fail("finit_module /lib/modules/6.1.0-test/kernel/drivers/net", libc::EEXIST);
        let r = load_modules(&sys, &names(&["e1000"]));
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.done, vec!["module e1000 already loaded"]);
    }

    #[test]
    fn compressed_modules_use_the_kernel_decompressor_or_fail_clearly() {
        let sys = sys_with("virtio 1 0 - Live 0x0\nvirtio_ring 1 0 - Live 0x0\n");
        let r = load_modules(&sys, &names(&["virtio_console"]));
        assert!(r.errors.is_empty());
        assert!(sys.calls()[0].ends_with("virtio_console.ko.xz params=\"\" flags=4"), "{:?}", sys.calls());

        let sys = sys_with("virtio 1 0 - Live 0x0\nvirtio_ring 1 0 - Live 0x0\n");
        sys.fail("finit_module", libc::EINVAL);
        let r = load_modules(&sys, &names(&["virtio_console"]));
        assert_eq!(r.errors.len(), 1);
        assert!(
            r.errors[0].contains("compressed (.xz)") && r.errors[0].contains("CONFIG_MODULE_DECOMPRESS"),
            "{}",
            r.errors[0]
        );
    }

    #[test]
    fn a_failing_dependency_stops_that_module_only() {
        let sys = sys_with("");
        sys.fail("finit_module /lib/modules/6.1.0-test/kernel/lib/crc16.ko", libc::ENOEXEC);
        let r = load_modules(&sys, &names(&["ext4", "e1000"]));
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].contains("crc16") && r.errors[0].contains("needed by ext4"), "{}", r.errors[0]);
        assert!(sys.calls().last().unwrap().contains("e1000.ko"));
        assert!(!sys.calls().iter().any(|c| c.contains("ext4.ko")));
    }

    #[test]
    fn a_missing_modules_dep_is_explained() {
        let sys = RecordingSys::new();
        let r = load_modules(&sys, &names(&["e1000"]));
        assert!(r.errors[0].contains("modules.dep") && r.errors[0].contains("depmod"), "{:?}", r.errors);
        assert!(load_modules(&sys, &[]).errors.is_empty());
    }

    #[test]
    fn modules_loaded_before_a_root_switch_need_no_modules_dep_in_the_new_root() {
        let sys = RecordingSys::new();
        sys.add_file("/proc/modules", "e1000 1 0 - Live 0x0\nnfsv4 1 0 - Live 0x0\n");
        let r = load_modules(&sys, &names(&["e1000", "nfsv4"]));
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.done, ["module e1000 already loaded", "module nfsv4 already loaded"]);
        assert!(sys.calls().iter().all(|c| !c.starts_with("finit_module")), "{:?}", sys.calls());
    }
}
