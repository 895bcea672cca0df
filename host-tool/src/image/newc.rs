//! A newc ("070701") cpio writer for initramfs images: every entry owned by root, entries
//! in sorted path order, device nodes written without needing mknod on the host.

use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

pub struct NewcWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;

impl<W: Write> NewcWriter<W> {
    pub fn new(out: W) -> Self {
        NewcWriter { out, next_ino: 1, written: 0 }
    }

    fn pad(&mut self) -> std::io::Result<()> {
        let rem = (self.written % 4) as usize;
        if rem != 0 {
            self.put(&[0u8; 4][..4 - rem])?;
        }
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// One entry; `name` has no leading `/` (e.g. `dev/console`).
    pub fn entry(
        &mut self,
        name: &str,
        mode: u32,
        mtime: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> std::io::Result<()> {
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if mode & 0o170000 == S_IFDIR { 2 } else { 1 };
        let header = format!(
            "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}{dmaj:08x}{dmin:08x}{rmaj:08x}{rmin:08x}{namesize:08x}{check:08x}",
            uid = 0, gid = 0, size = data.len(), dmaj = 0, dmin = 0,
            rmaj = rdev.0, rmin = rdev.1, namesize = name.len() + 1, check = 0
        );
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.entry("TRAILER!!!", 0, 0, (0, 0), &[])?;
        Ok(self.out)
    }
}

/// Every path under `root`, relative, sorted, parents before children.
pub fn sorted_tree(root: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    fn walk(root: &Path, rel: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
        let dir = root.join(rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let meta = std::fs::symlink_metadata(root.join(&r))?;
            out.push(r.clone());
            if meta.is_dir() {
                walk(root, &r, out)?;
            }
        }
        Ok(())
    }
    walk(root, Path::new(""), &mut out)?;
    Ok(out)
}

/// Write the tree at `root` as a newc archive, adding `/dev/console` (char 5,1) when the
/// tree lacks it so the kernel can open a console before anything is mounted.
pub fn write_tree<W: Write>(root: &Path, out: W) -> Result<W> {
    use std::os::unix::ffi::OsStrExt;
    let mut w = NewcWriter::new(out);
    let paths = sorted_tree(root)?;
    let has_dev = root.join("dev").is_dir();
    let has_console = std::fs::symlink_metadata(root.join("dev/console")).is_ok();
    // The root itself, as `find . | cpio -o` writes it: without it the kernel's rootfs keeps
    // its own mode (1777), and a sysroot packed from the booted initramfs inherits that.
    let root_meta = std::fs::metadata(root).with_context(|| format!("cannot read {}", root.display()))?;
    w.entry(
        ".",
        S_IFDIR | (root_meta.permissions().mode() & 0o7777),
        root_meta.mtime().clamp(0, u32::MAX as i64) as u32,
        (0, 0),
        &[],
    )?;
    if !has_dev {
        w.entry("dev", S_IFDIR | 0o755, 0, (0, 0), &[])?;
    }
    let mut console_done = has_console;
    for rel in &paths {
        let name = String::from_utf8_lossy(rel.as_os_str().as_bytes()).into_owned();
        // Place dev/console right after dev/ and before anything sorted later.
        if !console_done && name.as_str() > "dev/console" && name.starts_with("dev/") {
            w.entry("dev/console", S_IFCHR | 0o600, 0, (5, 1), &[])?;
            console_done = true;
        }
        let full = root.join(rel);
        let meta = std::fs::symlink_metadata(&full)?;
        let ft = meta.file_type();
        let perm = meta.permissions().mode() & 0o7777;
        let mtime = meta.mtime().clamp(0, u32::MAX as i64) as u32;
        use std::os::unix::fs::FileTypeExt;
        if ft.is_dir() {
            w.entry(&name, S_IFDIR | perm, mtime, (0, 0), &[])?;
            if name == "dev" && !console_done && !std::fs::read_dir(&full)?.any(|_| true) {
                w.entry("dev/console", S_IFCHR | 0o600, 0, (5, 1), &[])?;
                console_done = true;
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&full)?;
            w.entry(&name, S_IFLNK | 0o777, mtime, (0, 0), target.as_os_str().as_bytes())?;
        } else if ft.is_file() {
            let data = std::fs::read(&full).with_context(|| format!("cannot read {}", full.display()))?;
            w.entry(&name, S_IFREG | perm, mtime, (0, 0), &data)?;
        } else if ft.is_char_device() || ft.is_block_device() {
            let rdev = meta.rdev();
            let kind = if ft.is_char_device() { S_IFCHR } else { S_IFBLK };
            w.entry(&name, kind | perm, mtime, (libc::major(rdev), libc::minor(rdev)), &[])?;
        } else if ft.is_fifo() {
            w.entry(&name, S_IFIFO | perm, mtime, (0, 0), &[])?;
        }
        // Sockets are left out: they mean nothing in an image.
    }
    if !console_done {
        w.entry("dev/console", S_IFCHR | 0o600, 0, (5, 1), &[])?;
    }
    Ok(w.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_and_padding() {
        let mut w = NewcWriter::new(Vec::new());
        w.entry("init", S_IFREG | 0o755, 7, (0, 0), b"abc").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(&bytes[14..22], b"000081ed"); // mode
        assert_eq!(&bytes[54..62], b"00000003"); // filesize
                                                 // 110-byte header + "init\0" = 115, padded to 116; data 3 padded to 4.
        assert_eq!(&bytes[110..115], b"init\0");
        assert_eq!(&bytes[116..119], b"abc");
        assert_eq!(&bytes[120..126], b"070701");
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn tree_is_sorted_and_has_a_console() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("dev")).unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("init"), b"x").unwrap();
        let bytes = write_tree(d.path(), Vec::new()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let dev = text.find("dev\0").unwrap();
        let console = text.find("dev/console\0").unwrap();
        let etc = text.find("etc\0").unwrap();
        assert!(dev < console && console < etc);
    }

    #[test]
    fn the_root_entry_comes_first_with_the_tree_mode() {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(d.path().join("init"), b"x").unwrap();
        let entries = read_back(&write_tree(d.path(), Vec::new()).unwrap());
        assert_eq!(entries[0].0, ".");
        assert_eq!(entries[0].1, S_IFDIR | 0o755);
    }

    /// Read every entry back with an independent newc reader.
    fn read_back(bytes: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        loop {
            let mut reader = cpio::NewcReader::new(rest).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            let e = reader.entry();
            let (name, mode, uid) = (e.name().to_string(), e.mode(), e.uid());
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut data).unwrap();
            out.push((name, mode, uid, data));
            rest = reader.finish().unwrap();
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn any_tree_reads_back_sorted_and_whole(
            files in proptest::collection::btree_map("[a-c]{1,3}(/[a-c]{1,3}){0,2}", proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 1..12),
            exec in proptest::prelude::any::<bool>(),
        ) {
            use std::os::unix::fs::PermissionsExt;
            let d = tempfile::tempdir().unwrap();
            let mut expected = std::collections::BTreeMap::new();
            for (path, data) in &files {
                let p = d.path().join(path);
                // A name that is already a file cannot also be a folder: skip those.
                if p.ancestors().skip(1).any(|a| a.is_file()) || p.is_dir() {
                    continue;
                }
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, data).unwrap();
                let mode = if exec { 0o755 } else { 0o644 };
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
                expected.insert(path.clone(), (mode, data.clone()));
            }
            let bytes = write_tree(d.path(), Vec::new()).unwrap();
            let entries = read_back(&bytes);
            let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
            // Parents come before their children, and the console is there.
            for (i, n) in names.iter().enumerate() {
                if let Some((parent, _)) = n.rsplit_once('/') {
                    proptest::prop_assert!(names[..i].contains(&parent), "{} before its folder", n);
                }
            }
            proptest::prop_assert!(entries.iter().any(|e| e.0 == "dev/console" && e.1 == S_IFCHR | 0o600));
            proptest::prop_assert!(entries.iter().all(|e| e.2 == 0));
            for (path, (mode, data)) in &expected {
                let e = entries.iter().find(|e| &e.0 == path).unwrap();
                proptest::prop_assert_eq!(e.1, S_IFREG | mode);
                proptest::prop_assert_eq!(&e.3, data);
            }
            // Same tree, same bytes.
            proptest::prop_assert_eq!(write_tree(d.path(), Vec::new()).unwrap(), bytes);
        }
    }
}
