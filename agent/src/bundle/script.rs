//! Plain scripts: one script is one module; a folder of `NN-name.sh` scripts is one module
//! per script, in numeric order.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{err, identity_of, in_root, BundleError, BundleKind, ExecStep, LoadedBundle, Module, Step};

/// `NN-name.sh` → (NN, name).
fn numbered(file: &str) -> Option<(u64, String)> {
    let stem = file.strip_suffix(".sh")?;
    let (num, name) = stem.split_once('-')?;
    if num.is_empty() || name.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((num.parse().ok()?, name.to_string()))
}

pub(crate) fn has_numbered_scripts(host_dir: &Path) -> bool {
    std::fs::read_dir(host_dir)
        .map(|rd| rd.filter_map(|e| e.ok()).any(|e| numbered(&e.file_name().to_string_lossy()).is_some()))
        .unwrap_or(false)
}

fn exec_for(host: &Path, script: &Path) -> ExecStep {
    let s = script.to_string_lossy().into_owned();
    let executable = std::fs::metadata(host).map(|m| m.permissions().mode() & 0o111 != 0).unwrap_or(false);
    let argv: Vec<&str> = if executable { vec![&s] } else { vec!["/bin/sh", &s] };
    ExecStep::new(&argv, script.parent().unwrap_or(Path::new("/")))
}

pub(crate) fn load(root: &Path, path: &Path) -> Result<LoadedBundle, BundleError> {
    let host = in_root(root, path);
    let mut modules = Vec::new();
    let mut files = Vec::new();
    if host.is_dir() {
        let rd = std::fs::read_dir(&host).or_else(|e| err(format!("bundle {}: {e}", path.display())))?;
        let mut scripts: Vec<(u64, String, String)> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                numbered(&file).map(|(n, name)| (n, file, name))
            })
            .collect();
        scripts.sort();
        if scripts.is_empty() {
            return err(format!("bundle {}: no `NN-name.sh` script in this folder", path.display()));
        }
        for (_, file, name) in scripts {
            if modules.iter().any(|m: &Module| m.name == name) {
                return err(format!("bundle {}: two scripts are named {name}: rename one", path.display()));
            }
            let script = path.join(&file);
            let h = host.join(&file);
            modules.push(Module { name, steps: vec![Step::Exec(exec_for(&h, &script))] });
            files.push(h);
        }
    } else {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".sh").to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "script".into());
        modules.push(Module { name, steps: vec![Step::Exec(exec_for(&host, path))] });
        files.push(host.clone());
    }
    let names: Vec<String> = modules.iter().map(|m| m.name.clone()).collect();
    Ok(LoadedBundle {
        kind: BundleKind::Script,
        identity: identity_of(BundleKind::Script, &names, &files),
        modules,
        env: Vec::new(),
        locations: vec![PathBuf::from(path)],
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_names() {
        assert_eq!(numbered("01-base.sh"), Some((1, "base".into())));
        assert_eq!(numbered("10-gcc-stage3.sh"), Some((10, "gcc-stage3".into())));
        assert_eq!(numbered("base.sh"), None);
        assert_eq!(numbered("01-base.txt"), None);
    }
}
