//! Embeds every architecture definition under `targets/` into the host tool, so adding an
//! architecture is adding one JSON file.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dir = manifest.join("..").join("targets");
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the architecture table {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();

    let mut out =
        String::from("/// Every `targets/*.json`, as (file name, contents), sorted by file name.\n");
    out.push_str("pub(crate) const TARGET_FILES: &[(&str, &str)] = &[\n");
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).expect("target file names are UTF-8");
        let abs = path.canonicalize().expect("target file exists");
        writeln!(out, "    ({name:?}, include_str!({:?})),", abs.display().to_string()).unwrap();
        println!("cargo:rerun-if-changed={}", abs.display());
    }
    out.push_str("];\n");

    let dest =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("target_files.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
}
