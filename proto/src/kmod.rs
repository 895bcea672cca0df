//! The kernel's module index, as both sides read it: `modules.dep` and `modules.builtin`
//! of `/lib/modules/<release>`, module names as the kernel spells them, dependency order.
//!
//! The host copies a module's closure into an image ([`ModuleIndex::closure`] and
//! [`ModuleIndex::subset`]); the agent loads it, dependencies first
//! ([`ModuleIndex::resolve`]). Compressed modules (`.ko.xz`, `.ko.zst`, `.ko.gz`) are named
//! like plain ones.

use std::collections::{BTreeSet, HashMap, HashSet};

pub const COMPRESSED_SUFFIXES: &[&str] = &[".ko.xz", ".ko.zst", ".ko.gz"];

/// `kernel/drivers/block/virtio_blk.ko.xz` -> `virtio_blk`; dashes become underscores,
/// as the kernel names modules.
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = COMPRESSED_SUFFIXES
        .iter()
        .chain(std::iter::once(&".ko"))
        .find_map(|s| base.strip_suffix(s))
        .unwrap_or(base);
    stem.replace('-', "_")
}

/// `.xz`, `.zst` or `.gz` for a compressed module file.
pub fn compression_of(path: &str) -> Option<&'static str> {
    COMPRESSED_SUFFIXES.iter().find(|s| path.ends_with(*s)).map(|s| &s[3..])
}

/// What `modules.dep` and `modules.builtin` say.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    /// name -> (path relative to the modules directory, direct dependencies as paths)
    entries: HashMap<String, (String, Vec<String>)>,
    builtin: HashSet<String>,
}

impl ModuleIndex {
    pub fn parse(modules_dep: &str, modules_builtin: &str) -> ModuleIndex {
        let mut entries = HashMap::new();
        for line in modules_dep.lines() {
            let Some((path, deps)) = line.split_once(':') else { continue };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            let deps = deps.split_whitespace().map(str::to_string).collect();
            entries.insert(module_name(path), (path.to_string(), deps));
        }
        let builtin =
            modules_builtin.lines().map(str::trim).filter(|l| !l.is_empty()).map(module_name).collect();
        ModuleIndex { entries, builtin }
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&module_name(name))
    }

    /// Whether `name` is a loadable module of this kernel.
    pub fn has(&self, name: &str) -> bool {
        self.entries.contains_key(&module_name(name))
    }

    /// The files a module needs (itself and every dependency modules.dep lists for it),
    /// or `None` when this kernel has no such module.
    pub fn closure(&self, name: &str) -> Option<Vec<String>> {
        let (path, deps) = self.entries.get(&module_name(name))?;
        let mut files = vec![path.clone()];
        files.extend(deps.iter().cloned());
        Some(files)
    }

    /// The `modules.dep` lines of exactly `files` (those that are modules), so an image
    /// that holds only some modules gets an index of only those.
    pub fn subset(&self, files: &BTreeSet<String>) -> String {
        let mut out = String::new();
        let mut lines: Vec<(&String, &(String, Vec<String>))> = self.entries.iter().collect();
        lines.sort_by(|a, b| a.0.cmp(b.0));
        for (_, (path, deps)) in lines {
            if files.contains(path) {
                out.push_str(path);
                out.push(':');
                for d in deps {
                    out.push(' ');
                    out.push_str(d);
                }
                out.push('\n');
            }
        }
        out
    }

    /// Module paths to load for `name`, dependencies first, `name` last.
    pub fn resolve(&self, name: &str) -> Result<Vec<String>, String> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        self.visit(&module_name(name), &mut seen, &mut order, 0)?;
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut HashSet<String>,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), String> {
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        if depth > 64 {
            return Err(format!(
                "module dependencies of {name} nest deeper than 64: modules.dep looks broken, rerun depmod"
            ));
        }
        let Some((path, deps)) = self.entries.get(name) else {
            if self.builtin.contains(name) {
                return Ok(());
            }
            return Err(format!("kernel module {name} is not in modules.dep: is it built for this kernel? (check the name, or run depmod)"));
        };
        // modules.dep lists the deepest dependency last; modprobe loads from the end.
        for dep in deps.iter().rev() {
            self.visit(&module_name(dep), seen, order, depth + 1)?;
        }
        order.push(path.clone());
        Ok(())
    }
}

/// Names in a `/proc/modules` text.
pub fn loaded_modules(proc_modules: &str) -> HashSet<String> {
    proc_modules.lines().filter_map(|l| l.split_whitespace().next()).map(module_name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slice of a real modules.dep: plain, compressed and dashed names, nested dependencies.
    const DEP: &str = include_str!("../../tests/fixtures/modules.dep");

    #[test]
    fn names_are_normalised() {
        assert_eq!(module_name("kernel/net/9p/9pnet-virtio.ko"), "9pnet_virtio");
        assert_eq!(module_name("a/b/virtio_console.ko.xz"), "virtio_console");
        assert_eq!(module_name("e1000"), "e1000");
    }

    #[test]
    fn dependencies_resolve_deepest_first() {
        let idx = ModuleIndex::parse(DEP, "");
        assert_eq!(
            idx.resolve("virtio_blk").unwrap(),
            vec![
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/block/virtio_blk.ko"
            ]
        );
        assert_eq!(
            idx.resolve("9pnet-virtio").unwrap(),
            vec!["kernel/net/9p/9pnet.ko", "kernel/net/9p/9pnet-virtio.ko"]
        );
        assert!(idx.resolve("nosuch").unwrap_err().contains("nosuch is not in modules.dep"));
    }

    #[test]
    fn closure_and_subset_name_only_what_was_asked() {
        let idx = ModuleIndex::parse(DEP, "");
        let files: BTreeSet<String> = idx.closure("9pnet-virtio").unwrap().into_iter().collect();
        assert_eq!(files.len(), 2);
        assert_eq!(
            idx.subset(&files),
            "kernel/net/9p/9pnet.ko:\nkernel/net/9p/9pnet-virtio.ko: kernel/net/9p/9pnet.ko\n"
        );
        assert!(idx.closure("nosuch").is_none());
        assert!(idx.has("virtio-console") && !idx.has("nosuch"));
    }

    #[test]
    fn compressed_names_agree_with_plain_ones() {
        assert_eq!(module_name("kernel/x/virtio_console.ko.zst"), module_name("virtio-console"));
        assert_eq!(compression_of("a/b.ko.xz"), Some(".xz"));
        assert_eq!(compression_of("a/b.ko"), None);
        // a name that merely contains ".ko" is not cut short
        assert_eq!(module_name("kernel/x/foo.kobj.ko"), "foo.kobj");
    }
}
