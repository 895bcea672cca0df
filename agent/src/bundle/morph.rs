//! Morph cross-bootstrap trees: `/native-bootstrap` exports the build environment and
//! builds chunk N with `env DESTDIR=/N.inst $SRCDIR/build-N`, then copies /N.inst into /.

use std::path::{Path, PathBuf};

use super::{
    err, export_lines, identity_of, in_root, BundleError, BundleKind, ExecStep, LoadedBundle, Module, Step,
};

/// Chunk names in the order native-bootstrap builds them.
pub(crate) fn chunk_list(script: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in script.lines() {
        for marker in ["$SRCDIR/build-", "${SRCDIR}/build-", "\"$SRCDIR\"/build-"] {
            if let Some(pos) = line.find(marker) {
                let rest = &line[pos + marker.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != ';' && *c != '"' && *c != '\'')
                    .collect();
                if !name.is_empty() && !out.contains(&name) {
                    out.push(name);
                }
                break;
            }
        }
    }
    out
}

/// `dir` holds `native-bootstrap` (the root `/` of a Morph tree).
pub(crate) fn load(root: &Path, dir: &Path, identity: Option<String>) -> Result<LoadedBundle, BundleError> {
    let script_path = dir.join("native-bootstrap");
    let host_script = in_root(root, &script_path);
    let text = std::fs::read_to_string(&host_script).or_else(|e| {
        err(format!(
            "bundle {}: cannot read native-bootstrap: {e} (expected a Morph cross-bootstrap tree)",
            dir.display()
        ))
    })?;
    let env = export_lines(&text);
    let chunks = chunk_list(&text);
    if chunks.is_empty() {
        return err(format!(
            "bundle {}: native-bootstrap has no `env DESTDIR=/N.inst $SRCDIR/build-N` line: no chunk to build",
            script_path.display()
        ));
    }
    let srcdir = env
        .iter()
        .rev()
        .find(|(k, _)| k == "SRCDIR")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "/src".into());
    let srcdir = dir.join(srcdir);
    let mut files = vec![host_script];
    let mut modules = Vec::new();
    let mut locations = vec![script_path.clone(), srcdir.clone()];
    for name in &chunks {
        let script = srcdir.join(format!("build-{name}"));
        let host = in_root(root, &script);
        if !host.is_file() {
            return err(format!(
                "bundle {}: chunk {name} is listed in native-bootstrap but {} is missing: incomplete tree",
                dir.display(),
                script.display()
            ));
        }
        files.push(host);
        let inst = PathBuf::from(format!("/{name}.inst"));
        let mut build = ExecStep::new(&[&script.to_string_lossy()], "/");
        build.env.push(("DESTDIR".into(), inst.to_string_lossy().into_owned()));
        let install = ExecStep::new(&["/bin/sh", "-c", "find . | cpio -umdp /"], &inst);
        // native-bootstrap removes /N.inst only when /N.inst/N.build exists; a resumed run
        // must start clean whatever was left, so it is always removed.
        modules.push(Module {
            name: name.clone(),
            steps: vec![
                Step::Remove(inst.clone()),
                Step::MakeDir(inst.clone()),
                Step::Exec(build),
                Step::Exec(install),
                Step::Exec(ExecStep::ldconfig(false)),
            ],
        });
        locations.push(inst);
    }
    let identity = identity.unwrap_or_else(|| identity_of(BundleKind::Morph, &chunks, &files));
    Ok(LoadedBundle { kind: BundleKind::Morph, identity, modules, env, locations, warnings: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_found_in_order() {
        let s = r#"#!/bin/sh
set -eu
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:/tools/bin:/tools/sbin
export SRCDIR=/src
export CFLAGS="-O2"
if [ -d /zlib.inst/zlib.build ]; then rm -rf /zlib.inst; fi
mkdir /zlib.inst
env DESTDIR=/zlib.inst $SRCDIR/build-zlib
(cd /zlib.inst; find . | cpio -umdp /)
env DESTDIR=/gcc.inst "$SRCDIR"/build-gcc
"#;
        assert_eq!(chunk_list(s), vec!["zlib", "gcc"]);
    }
}
