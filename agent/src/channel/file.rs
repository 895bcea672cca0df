//! A local file as the link: frames are appended, nothing comes back (one-way). For
//! machines whose root is on NFS or a shared disk that the host reads afterwards.

use crate::wire::Transport;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct FileTransport {
    path: PathBuf,
    file: File,
}

impl FileTransport {
    pub fn open(path: &Path) -> io::Result<FileTransport> {
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot open channel file {}: {e}", path.display()))
        })?;
        Ok(FileTransport { path: path.to_path_buf(), file })
    }
}

impl Transport for FileTransport {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn read_timeout(&mut self, _buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        std::thread::sleep(timeout);
        Ok(0)
    }

    fn is_two_way(&self) -> bool {
        false
    }

    fn reconnect(&mut self) -> io::Result<()> {
        let _ = self.file.sync_all();
        *self = FileTransport::open(&self.path)?;
        Ok(())
    }

    fn nominal_rate(&self) -> Option<u64> {
        None
    }

    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }
}

impl Drop for FileTransport {
    fn drop(&mut self) {
        let _ = self.file.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_is_one_way() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("uplink.bin");
        std::fs::write(&p, b"old").unwrap();
        let mut t = FileTransport::open(&p).unwrap();
        assert!(!t.is_two_way());
        t.write_all(b"\x00frame\x00").unwrap();
        t.reconnect().unwrap();
        t.write_all(b"more").unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(t.read_timeout(&mut buf, Duration::from_millis(1)).unwrap(), 0);
        assert_eq!(t.describe(), format!("file:{}", p.display()));
        drop(t);
        assert_eq!(std::fs::read(&p).unwrap(), b"old\x00frame\x00more");
        let e = FileTransport::open(Path::new("/nonexistent-dir/x")).err().unwrap();
        assert!(e.to_string().contains("cannot open channel file /nonexistent-dir/x"));
    }
}
