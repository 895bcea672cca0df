//! Where things are inside an image made by `stagehand image`: the host writes them there,
//! the agent looks for them there. Absolute paths as the agent sees them; the host joins
//! [`in_image`] of them onto the image's root folder.

use std::path::{Path, PathBuf};

/// The agent binary, run by the kernel as `init=/init` or `rdinit=/init`.
pub const AGENT: &str = "/init";
/// The agent's configuration (JSON, see [`crate::config`]).
pub const CONFIG: &str = "/etc/stagehand/agent.json";
/// The image's key ([`crate::wire::Key::write_new_file`] writes it, [`crate::wire::Key::from_hex_file`] reads it).
pub const KEY: &str = "/etc/stagehand/key";
/// The folder holding the build bundle(s) the host put into the image.
pub const BUNDLE_DIR: &str = "/stagehand";
/// A Morph cross-bootstrap tarball carries its own bundle here.
pub const MORPH_BUNDLE: &str = "/native-bootstrap";
/// Checkpoints and other state that must survive a power cut.
pub const STATE_DIR: &str = "/var/lib/stagehand";
/// Module logs kept on the target.
pub const LOGS_DIR: &str = "/var/log/stagehand";
/// Kernel modules, one folder per kernel release.
pub const MODULES_DIR: &str = "/lib/modules";

/// `path` (absolute, as the agent sees it) relative to the image root, for joining onto
/// the root folder on the host: `/etc/stagehand/key` -> `etc/stagehand/key`.
pub fn in_image(path: &str) -> &Path {
    Path::new(path.trim_start_matches('/'))
}

/// The bundle's path inside the image for a bundle file named `file_name` (its
/// compression suffix kept, so the agent can tell how to open it), or for a folder.
pub fn bundle_path(file_name: Option<&str>) -> String {
    let Some(n) = file_name else { return format!("{BUNDLE_DIR}/bundle") };
    for ext in [".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar"] {
        if n.ends_with(ext) {
            return format!("{BUNDLE_DIR}/bundle{ext}");
        }
    }
    format!("{BUNDLE_DIR}/bundle.tar.gz")
}

/// `<image>.key`: where the host keeps the key of an image it wrote, beside the image.
pub fn key_beside(image: &Path) -> PathBuf {
    let mut s = image.as_os_str().to_os_string();
    s.push(".key");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_onto_a_root() {
        assert_eq!(Path::new("/img").join(in_image(KEY)), Path::new("/img/etc/stagehand/key"));
        assert_eq!(in_image(AGENT), Path::new("init"));
    }

    #[test]
    fn bundle_paths_keep_the_compression_suffix() {
        assert_eq!(bundle_path(Some("bootstrap-stage3-sysroot.tar.gz")), "/stagehand/bundle.tar.gz");
        assert_eq!(bundle_path(Some("x.tgz")), "/stagehand/bundle.tgz");
        assert_eq!(bundle_path(Some("x.tar")), "/stagehand/bundle.tar");
        assert_eq!(bundle_path(Some("odd")), "/stagehand/bundle.tar.gz");
        assert_eq!(bundle_path(None), "/stagehand/bundle");
        assert_eq!(key_beside(Path::new("out/img.cpio.gz")), Path::new("out/img.cpio.gz.key"));
    }
}
