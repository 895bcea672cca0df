//! Bundles that come as a gzip tarball: find out what they hold, then unpack them once.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::gunzip::GzDecoder;
use super::{err, hex_digest, in_root, open_folder, BundleError, BundleKind, LoadedBundle};

pub(crate) fn is_gzip(host: &Path) -> Result<bool, BundleError> {
    let mut magic = [0u8; 2];
    let mut f = File::open(host).or_else(|e| err(format!("bundle {}: {e}", host.display())))?;
    Ok(matches!(f.read(&mut magic), Ok(2)) && magic == [0x1f, 0x8b])
}

fn sha256_file(host: &Path, shown: &Path) -> Result<String, BundleError> {
    let mut f = File::open(host).or_else(|e| err(format!("bundle {}: {e}", shown.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).or_else(|e| err(format!("bundle {}: read error: {e}", shown.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex_digest(&h.finalize()))
}

fn archive(host: &Path) -> std::io::Result<tar::Archive<GzDecoder<BufReader<File>>>> {
    Ok(tar::Archive::new(GzDecoder::new(BufReader::new(File::open(host)?))))
}

enum Found {
    BuildStream(String),
    Morph,
}

/// Look at the entry names: `TOP/build.sh` or `native-bootstrap`.
fn scan(host: &Path, shown: &Path) -> Result<Found, BundleError> {
    let corrupt = |e: std::io::Error| BundleError(format!("bundle {}: corrupt tar.gz: {e}", shown.display()));
    let mut ar = archive(host).map_err(corrupt)?;
    let mut count = 0usize;
    for entry in ar.entries().map_err(corrupt)? {
        let entry = entry.map_err(corrupt)?;
        count += 1;
        let path = entry.path().map_err(corrupt)?;
        let parts: Vec<&std::ffi::OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s),
                _ => None,
            })
            .collect();
        match parts.as_slice() {
            [n] if *n == "native-bootstrap" => return Ok(Found::Morph),
            [top, n] if *n == "build.sh" => {
                return Ok(Found::BuildStream(top.to_string_lossy().into_owned()))
            }
            _ => {}
        }
    }
    if count == 0 {
        return err(format!("bundle {}: the tarball is empty or not a tar archive", shown.display()));
    }
    err(format!(
        "bundle {}: the tarball is not a bundle: expected TOP/build.sh with a `for module in` line \
         (BuildStream source bundle) or native-bootstrap (Morph)",
        shown.display()
    ))
}

fn unpack(host: &Path, shown: &Path, dest: &Path, ownership: bool) -> Result<(), BundleError> {
    let fail = |e: std::io::Error| {
        BundleError(format!("bundle {}: cannot unpack into {}: {e}", shown.display(), dest.display()))
    };
    std::fs::create_dir_all(dest).map_err(fail)?;
    let mut ar = archive(host).map_err(fail)?;
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    ar.set_unpack_xattrs(false);
    ar.set_preserve_ownerships(ownership);
    ar.unpack(dest).map_err(fail)
}

pub(crate) fn open(
    root: &Path,
    path: &Path,
    kind: BundleKind,
    work_dir: &Path,
) -> Result<LoadedBundle, BundleError> {
    let host = in_root(root, path);
    let found = scan(&host, path)?;
    match (&found, kind) {
        (Found::BuildStream(_), BundleKind::Morph) => {
            return err(format!("bundle {}: this is a BuildStream source bundle, not a Morph tree: use kind buildstream or auto", path.display()))
        }
        (Found::Morph, BundleKind::BuildStream) => {
            return err(format!("bundle {}: this is a Morph tree (native-bootstrap), not a BuildStream source bundle: use kind morph or auto", path.display()))
        }
        (_, BundleKind::Script) => {
            return err(format!("bundle {}: a script bundle cannot be a tarball", path.display()))
        }
        _ => {}
    }
    let identity = sha256_file(&host, path)?;
    let host_work = in_root(root, work_dir);
    let marker = host_work.join(format!(".unpacked-{identity}"));
    let done = marker.exists();
    let mut bundle = match found {
        Found::BuildStream(top) => {
            if !done {
                // A half-unpacked copy from an interrupted boot is replaced.
                let _ = std::fs::remove_dir_all(host_work.join(&top));
                unpack(&host, path, &host_work, false)?;
            }
            open_folder(root, &work_dir.join(&top), BundleKind::BuildStream, Some(identity))?
        }
        Found::Morph => {
            // Unpacked once only: a later boot must not put the cross-built files back
            // over what the native build already replaced.
            if !done {
                unpack(&host, path, root, true)?;
            }
            open_folder(root, Path::new("/"), BundleKind::Morph, Some(identity))?
        }
    };
    if !done {
        // The marker says the unpacked files are complete: they must reach the disk first,
        // or a power cut leaves the marker with empty files (ext4 writes file data late).
        rustix::fs::sync();
        let write = std::fs::create_dir_all(&host_work)
            .and_then(|_| crate::checkpoint::write_atomically(&marker, b""));
        if let Err(e) = write {
            bundle.warnings.push(format!(
                "cannot write {}: {e}: the bundle will be unpacked again on the next boot",
                marker.display()
            ));
        }
    }
    bundle.locations.push(PathBuf::from(path));
    bundle.locations.push(PathBuf::from(work_dir));
    Ok(bundle)
}
