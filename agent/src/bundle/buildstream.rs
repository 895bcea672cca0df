//! `bst source-bundle` output: `build.sh` names the modules, `source/build-<module>` builds
//! and installs each one into `/`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{
    err, export_lines, identity_of, in_root, BundleError, BundleKind, ExecStep, LoadedBundle, Module, Step,
};

/// The module list from build.sh's `for module in a b c ; do` line.
pub(crate) fn module_list(build_sh: &str) -> Option<Vec<String>> {
    build_sh.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix("for module in ")?;
        let list = rest.split(';').next()?;
        let list = list.strip_suffix(" do").unwrap_or(list);
        Some(list.split_whitespace().map(str::to_string).collect())
    })
}

/// `dir` is the bundle's top folder, inside `root`.
pub(crate) fn load(root: &Path, dir: &Path, identity: Option<String>) -> Result<LoadedBundle, BundleError> {
    let build_sh_path = in_root(root, &dir.join("build.sh"));
    let text = std::fs::read_to_string(&build_sh_path).or_else(|e| {
        err(format!(
            "bundle {}: cannot read build.sh: {e} (expected a BuildStream source bundle)",
            dir.display()
        ))
    })?;
    let Some(modules) = module_list(&text) else {
        return err(format!(
            "bundle {}: build.sh has no `for module in ... ; do` line: not a BuildStream source bundle",
            dir.display()
        ));
    };
    if modules.is_empty() {
        return err(format!("bundle {}: build.sh lists no modules", dir.display()));
    }
    let env = export_lines(&text);
    let srcdir = env
        .iter()
        .rev()
        .find(|(k, _)| k == "SRCDIR")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "./source".into());
    let srcdir = dir.join(srcdir.trim_start_matches("./"));
    let mut files = vec![build_sh_path];
    let mut out = Vec::new();
    for name in &modules {
        let script = srcdir.join(format!("build-{name}"));
        let host = in_root(root, &script);
        let meta = std::fs::metadata(&host).or_else(|_| {
            err(format!(
                "bundle {}: module {name} is listed in build.sh but {} is missing: incomplete bundle",
                dir.display(),
                script.display()
            ))
        })?;
        files.push(host);
        let script_s = script.to_string_lossy().into_owned();
        let argv: Vec<&str> =
            if meta.permissions().mode() & 0o111 != 0 { vec![&script_s] } else { vec!["/bin/sh", &script_s] };
        out.push(Module {
            name: name.clone(),
            steps: vec![Step::Exec(ExecStep::new(&argv, dir)), Step::Exec(ExecStep::ldconfig(true))],
        });
    }
    let identity = identity.unwrap_or_else(|| identity_of(BundleKind::BuildStream, &modules, &files));
    Ok(LoadedBundle {
        kind: BundleKind::BuildStream,
        identity,
        modules: out,
        env,
        locations: vec![PathBuf::from(dir)],
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_line_is_found() {
        let s = "set -eu\nfor module in base hello gcc-stage3 ; do\n  x\ndone\n";
        assert_eq!(module_list(s).unwrap(), vec!["base", "hello", "gcc-stage3"]);
        assert_eq!(module_list("for module in a b; do").unwrap(), vec!["a", "b"]);
        assert!(module_list("echo hi").is_none());
    }
}
