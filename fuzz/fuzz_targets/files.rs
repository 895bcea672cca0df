//! Arbitrary bytes as the files the agent reads from the target's disk: a bundle (tar.gz,
//! a BuildStream `build.sh`, a Morph `native-bootstrap`) and its own checkpoint. Opening
//! them may fail with a one-line error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagehand_agent::bundle::{self, BundleKind};
use stagehand_agent::checkpoint::Checkpoint;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    let Ok(dir) = tempfile_dir() else { return };
    let root = dir.as_path();
    let _ = match which % 4 {
        0 => {
            let _ = std::fs::write(root.join("bundle.tar.gz"), body);
            bundle::open(root, Path::new("/bundle.tar.gz"), BundleKind::Auto, Path::new("/work")).map(|_| ())
        }
        1 => {
            let top = root.join("b");
            let _ = std::fs::create_dir_all(top.join("source"));
            let _ = std::fs::write(top.join("build.sh"), body);
            bundle::open(root, Path::new("/b"), BundleKind::Auto, Path::new("/work")).map(|_| ())
        }
        2 => {
            let _ = std::fs::write(root.join("native-bootstrap"), body);
            bundle::open(root, Path::new("/native-bootstrap"), BundleKind::Morph, Path::new("/work"))
                .map(|_| ())
        }
        _ => {
            let state = root.join("state");
            let _ = std::fs::create_dir_all(&state);
            let _ = std::fs::write(state.join("state.json"), body);
            let _ = Checkpoint::open(&state, "id", &["a".to_string(), "b".to_string()]);
            Ok(())
        }
    };
    let _ = std::fs::remove_dir_all(root);
});

/// A fresh folder under /dev/shm (fast) or the temp dir.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let base = if Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir =
        base.join(format!("stagehand-fuzz-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
