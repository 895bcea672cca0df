//! Packs the built tree into a deterministic tarball, streamed to any writer.
//!
//! The archive is GNU tar: entries in byte order of their names, numeric owners, modes,
//! mtimes (seconds), symlinks, hard links, device nodes and fifos; names and link targets
//! longer than 100 bytes use GNU long-name records. Nothing host-dependent goes in (no
//! user names, no atime, no device numbers of the filesystem), so the same tree gives the
//! same bytes. Memory stays constant whatever the tree size: contents go through one fixed
//! buffer (only the table of multiply-linked inodes grows, with their number).
//!
//! Optionally the archive is gzipped on several threads ([`gzip::ParallelGzip`]) and a
//! copy is kept on the target's disk. The sha256 and length of what was written are
//! computed on the way out: they are those of the file the host stores.

mod exclude;
pub mod gzip;
mod tarball;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use exclude::{Excludes, DEFAULT_EXCLUDES};

const READ_BUF: usize = 256 * 1024;
const PROGRESS_EVERY: u64 = 8 << 20;
const MAX_WARNINGS: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GzipOptions {
    /// 0 (store) to 9 (smallest); 6 is gzip's default.
    pub level: u8,
    /// Compression threads; 0 means one per CPU.
    pub threads: usize,
}

impl Default for GzipOptions {
    fn default() -> GzipOptions {
        GzipOptions { level: 6, threads: 0 }
    }
}

#[derive(Clone, Debug)]
pub struct PackOptions {
    /// The tree to pack (from here; `/` on the board).
    pub root: PathBuf,
    pub excludes: Excludes,
    pub gzip: Option<GzipOptions>,
    /// Also write the archive to this file (from here). It is left out of the archive.
    pub keep_copy: Option<PathBuf>,
    /// Mtimes later than this (seconds since the epoch) are written as this, like GNU tar's
    /// `--clamp-mtime --mtime=@SOURCE_DATE_EPOCH`: the same build packs to the same bytes
    /// whenever it ran, resumed or not.
    pub clamp_mtime: Option<i64>,
}

impl PackOptions {
    pub fn new(root: impl Into<PathBuf>) -> PackOptions {
        PackOptions {
            root: root.into(),
            excludes: Excludes::defaults(),
            gzip: None,
            keep_copy: None,
            clamp_mtime: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackReport {
    /// Bytes of file content read from the tree.
    pub tree_bytes: u64,
    /// Bytes of archive written (after compression): the size of the stored file.
    pub archive_bytes: u64,
    /// sha256 (hex) of the archive bytes written.
    pub sha256: String,
    pub entries: u64,
    /// Files that changed while read, sockets left out, unreadable entries skipped...
    pub warnings: Vec<String>,
}

/// One line: what failed and where. The archive written so far is incomplete.
#[derive(Debug)]
pub struct PackError(pub String);

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PackError {}

/// Where the archive bytes go: the caller's writer, the optional copy, the hash.
struct Sink<'a> {
    out: &'a mut dyn Write,
    copy: Option<(File, PathBuf)>,
    sha: Sha256,
    written: u64,
    /// Set when the failure was the copy's, so the message names it.
    copy_error: Option<String>,
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write_all(buf)?;
        if let Some((f, path)) = &mut self.copy {
            if let Err(e) = f.write_all(buf) {
                self.copy_error = Some(format!("keep_copy {}: {e}", path.display()));
                return Err(e);
            }
        }
        self.sha.update(buf);
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

struct Walker<'p> {
    root: PathBuf,
    excludes: Excludes,
    links: HashMap<(u64, u64), Vec<u8>>,
    clamp_mtime: Option<i64>,
    link_pending: Option<(u64, u64)>,
    buf: Vec<u8>,
    tree_bytes: u64,
    entries: u64,
    warnings: Vec<String>,
    dropped_warnings: usize,
    last_progress: u64,
    progress: &'p mut dyn FnMut(u64, u64),
    archive_bytes: &'p dyn Fn() -> u64,
}

enum Fail {
    /// Reading the tree failed.
    Tree(String),
    /// Writing the archive failed.
    Out(io::Error),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        Fail::Out(e)
    }
}

impl Walker<'_> {
    fn warn(&mut self, msg: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(msg);
        } else {
            self.dropped_warnings += 1;
        }
    }

    /// Count an entry written; a multiply-linked one becomes the target of later links.
    fn written(&mut self, name: &[u8]) {
        self.entries += 1;
        if let Some(key) = self.link_pending.take() {
            self.links.insert(key, name.to_vec());
        }
    }

    /// `rel` is the entry's path inside the tree, without the leading `/` ("" for the root).
    fn entry(&mut self, out: &mut dyn Write, rel: &[u8]) -> Result<(), Fail> {
        self.link_pending = None;
        let host =
            if rel.is_empty() { self.root.clone() } else { self.root.join(std::ffi::OsStr::from_bytes(rel)) };
        let shown = format!("/{}", String::from_utf8_lossy(rel));
        let meta = match fs::symlink_metadata(&host) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !rel.is_empty() => {
                self.warn(format!("{shown} vanished while packing: left out"));
                return Ok(());
            }
            Err(e) => return Err(Fail::Tree(format!("cannot read {shown}: {e}"))),
        };
        let ft = meta.file_type();
        let mut name = b"./".to_vec();
        name.extend_from_slice(rel);
        if ft.is_dir() && !rel.is_empty() {
            name.push(b'/');
        }
        let mut e = tarball::Entry {
            name: &name,
            kind: tarball::REGULAR,
            mode: meta.mode(),
            uid: meta.uid() as u64,
            gid: meta.gid() as u64,
            size: 0,
            mtime: match self.clamp_mtime {
                Some(limit) => meta.mtime().min(limit),
                None => meta.mtime(),
            },
            link: b"",
            dev: None,
        };
        if ft.is_socket() {
            self.warn(format!("{shown} is a socket: left out"));
            return Ok(());
        }
        if !ft.is_dir() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                e.kind = tarball::HARDLINK;
                e.link = &first;
                tarball::write_header(out, &e)?;
                self.entries += 1;
                return Ok(());
            }
            // Recorded once the entry is written: a file that vanishes is no link target.
            self.link_pending = Some(key);
        }
        if ft.is_dir() {
            e.kind = tarball::DIR;
            tarball::write_header(out, &e)?;
            self.entries += 1;
            let rd = fs::read_dir(&host).map_err(|err| Fail::Tree(format!("cannot list {shown}: {err}")))?;
            let mut children: Vec<OsString> = Vec::new();
            for ent in rd {
                let ent = ent.map_err(|err| Fail::Tree(format!("cannot list {shown}: {err}")))?;
                children.push(ent.file_name());
            }
            children.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for child in children {
                let mut crel = rel.to_vec();
                if !crel.is_empty() {
                    crel.push(b'/');
                }
                crel.extend_from_slice(child.as_bytes());
                let abs = format!("/{}", String::from_utf8_lossy(&crel));
                if self.excludes.is_excluded(&abs) {
                    continue;
                }
                self.entry(out, &crel)?;
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(&host)
                .map_err(|err| Fail::Tree(format!("cannot read the symlink {shown}: {err}")))?;
            let target = target.into_os_string().into_vec();
            e.kind = tarball::SYMLINK;
            e.link = &target;
            tarball::write_header(out, &e)?;
            self.written(&name);
        } else if ft.is_char_device() || ft.is_block_device() {
            e.kind = if ft.is_char_device() { tarball::CHAR } else { tarball::BLOCKDEV };
            let rdev = meta.rdev();
            e.dev = Some((libc::major(rdev) as u64, libc::minor(rdev) as u64));
            tarball::write_header(out, &e)?;
            self.written(&name);
        } else if ft.is_fifo() {
            e.kind = tarball::FIFO;
            tarball::write_header(out, &e)?;
            self.written(&name);
        } else {
            let mut file = match File::open(&host) {
                Ok(f) => f,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    self.warn(format!("{shown} vanished while packing: left out"));
                    return Ok(());
                }
                Err(err) => return Err(Fail::Tree(format!("cannot open {shown}: {err}"))),
            };
            let size = meta.len();
            e.size = size;
            tarball::write_header(out, &e)?;
            self.written(&name);
            let mut left = size;
            while left > 0 {
                let want = left.min(self.buf.len() as u64) as usize;
                let n = match file.read(&mut self.buf[..want]) {
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(Fail::Tree(format!("cannot read {shown}: {err}"))),
                };
                if n == 0 {
                    self.warn(format!("{shown} shrank while packing: padded with zeros to {size} bytes"));
                    let zeros = [0u8; 8192];
                    while left > 0 {
                        let k = left.min(zeros.len() as u64) as usize;
                        out.write_all(&zeros[..k])?;
                        left -= k as u64;
                    }
                    break;
                }
                out.write_all(&self.buf[..n])?;
                left -= n as u64;
                self.tree_bytes += n as u64;
                if self.tree_bytes - self.last_progress >= PROGRESS_EVERY {
                    self.last_progress = self.tree_bytes;
                    (self.progress)(self.tree_bytes, (self.archive_bytes)());
                }
            }
            let mut probe = [0u8; 1];
            if matches!(file.read(&mut probe), Ok(1)) {
                self.warn(format!("{shown} grew while packing: cut at {size} bytes"));
            }
            tarball::pad(out, size)?;
        }
        Ok(())
    }
}

/// Pack `opts.root` into `out`. `progress(tree_bytes, archive_bytes)` is called every few
/// MiB and once at the end. On error nothing says the archive is complete: the caller
/// must not announce it as a finished file.
pub fn pack(
    opts: &PackOptions,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PackReport, PackError> {
    let mut excludes = opts.excludes.clone();
    let copy = match &opts.keep_copy {
        Some(p) => {
            if let Ok(rel) = p.strip_prefix(&opts.root) {
                excludes.add(&format!("/{}", rel.display()));
            }
            if let Some(dir) = p.parent() {
                let _ = fs::create_dir_all(dir);
            }
            let f = File::create(p).map_err(|e| PackError(format!("keep_copy {}: {e}", p.display())))?;
            Some((f, p.clone()))
        }
        None => None,
    };
    let root_meta = fs::metadata(&opts.root)
        .map_err(|e| PackError(format!("cannot pack {}: {e}", opts.root.display())))?;
    if !root_meta.is_dir() {
        return Err(PackError(format!("cannot pack {}: not a folder", opts.root.display())));
    }
    let mut sink = Sink { out, copy, sha: Sha256::new(), written: 0, copy_error: None };
    let counter = std::cell::Cell::new(0u64);
    let result = {
        let archive_bytes = || counter.get();
        let mut walker = Walker {
            root: opts.root.clone(),
            excludes,
            links: HashMap::new(),
            clamp_mtime: opts.clamp_mtime,
            link_pending: None,
            buf: vec![0u8; READ_BUF],
            tree_bytes: 0,
            entries: 0,
            warnings: Vec::new(),
            dropped_warnings: 0,
            last_progress: 0,
            progress,
            archive_bytes: &archive_bytes,
        };
        let res = match &opts.gzip {
            None => {
                let mut w =
                    BufWriter::with_capacity(64 * 1024, CountingRef { inner: &mut sink, counter: &counter });
                let r = walker.entry(&mut w, b"").and_then(|_| tarball::finish(&mut w).map_err(Fail::Out));
                r.and_then(|_| w.flush().map_err(Fail::Out))
            }
            Some(g) => {
                let threads = if g.threads == 0 { usable_cpus() } else { g.threads };
                let gz = gzip::ParallelGzip::new(
                    CountingRef { inner: &mut sink, counter: &counter },
                    g.level,
                    threads,
                );
                let mut w = BufWriter::with_capacity(64 * 1024, gz);
                let r = walker.entry(&mut w, b"").and_then(|_| tarball::finish(&mut w).map_err(Fail::Out));
                r.and_then(|_| {
                    let gz = w.into_inner().map_err(|e| Fail::Out(e.into_error()))?;
                    gz.finish().map(|_| ()).map_err(Fail::Out)
                })
            }
        };
        let tree_bytes = walker.tree_bytes;
        let entries = walker.entries;
        let mut warnings = std::mem::take(&mut walker.warnings);
        if walker.dropped_warnings > 0 {
            warnings.push(format!("... and {} more warnings", walker.dropped_warnings));
        }
        res.map(|_| (tree_bytes, entries, warnings))
    };
    let (tree_bytes, entries, warnings) = result.map_err(|f| match f {
        Fail::Tree(msg) => PackError(format!("{msg}: the archive is incomplete")),
        Fail::Out(e) => match sink.copy_error.take() {
            Some(msg) => PackError(format!("{msg}: the archive is incomplete")),
            None => PackError(format!("cannot write the archive: {e}")),
        },
    })?;
    if let Some((f, p)) = &sink.copy {
        f.sync_all().map_err(|e| PackError(format!("keep_copy {}: {e}", p.display())))?;
    }
    progress(tree_bytes, sink.written);
    Ok(PackReport {
        tree_bytes,
        archive_bytes: sink.written,
        sha256: crate::bundle::hex_digest(sink.sha.finalize().as_slice()),
        entries,
        warnings,
    })
}

struct CountingRef<'s, 'o> {
    inner: &'s mut Sink<'o>,
    counter: &'s std::cell::Cell<u64>,
}

impl Write for CountingRef<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.counter.set(self.inner.written);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Path helper for callers: exclusion pattern for a path inside the root.
pub fn pattern_for(path: &Path) -> String {
    format!("/{}", path.strip_prefix("/").unwrap_or(path).display())
}

/// CPUs this process may run on. Not `std::thread::available_parallelism`, whose cgroup
/// quota parsing is kilobytes of code for a case (a CPU-limited container) where it
/// would only lower the number of gzip workers.
fn usable_cpus() -> usize {
    // SAFETY: cpu_set_t is plain data; the kernel writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            (libc::CPU_COUNT(&set) as usize).max(1)
        } else {
            1
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn usable_cpus_counts_what_the_process_may_use() {
        let n = super::usable_cpus();
        assert!(n >= 1);
        let configured = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
        assert!(n as i64 <= configured as i64, "{n} usable of {configured} configured CPUs");
    }
}
