//! GNU tar headers, written by hand so every field is under control (deterministic output).

use std::io::{self, Write};

pub const BLOCK: usize = 512;

pub const REGULAR: u8 = b'0';
pub const HARDLINK: u8 = b'1';
pub const SYMLINK: u8 = b'2';
pub const CHAR: u8 = b'3';
pub const BLOCKDEV: u8 = b'4';
pub const DIR: u8 = b'5';
pub const FIFO: u8 = b'6';
const GNU_LONGNAME: u8 = b'L';
const GNU_LONGLINK: u8 = b'K';

pub struct Entry<'a> {
    pub name: &'a [u8],
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub link: &'a [u8],
    pub dev: Option<(u64, u64)>,
}

/// A numeric field: octal when it fits, GNU base-256 otherwise.
fn numeric(field: &mut [u8], value: u64) {
    let w = field.len();
    let digits = w - 1;
    if digits * 3 >= 64 || value < (1u64 << (digits * 3)) {
        let s = format!("{:0digits$o}", value);
        field[..digits].copy_from_slice(s.as_bytes());
        field[digits] = 0;
    } else {
        field.fill(0);
        field[0] = 0x80;
        let be = value.to_be_bytes();
        let n = be.len().min(w - 1);
        field[w - n..].copy_from_slice(&be[be.len() - n..]);
    }
}

fn raw_header(name: &[u8], kind: u8, e: &Entry<'_>, size: u64, link: &[u8]) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    numeric(&mut h[100..108], (e.mode & 0o7777) as u64);
    numeric(&mut h[108..116], e.uid);
    numeric(&mut h[116..124], e.gid);
    numeric(&mut h[124..136], size);
    numeric(&mut h[136..148], e.mtime.max(0) as u64);
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar ");
    h[263..265].copy_from_slice(b" \0");
    if let Some((major, minor)) = e.dev {
        numeric(&mut h[329..337], major);
        numeric(&mut h[337..345], minor);
    }
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    let s = format!("{:06o}\0 ", sum);
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

fn long(out: &mut dyn Write, kind: u8, e: &Entry<'_>, value: &[u8]) -> io::Result<u64> {
    let meta = Entry { mode: 0o644, uid: 0, gid: 0, mtime: 0, dev: None, ..*e };
    let h = raw_header(b"././@LongLink", kind, &meta, value.len() as u64 + 1, b"");
    out.write_all(&h)?;
    out.write_all(value)?;
    let len = value.len() + 1;
    let pad = (BLOCK - len % BLOCK) % BLOCK;
    out.write_all(&[0u8; BLOCK][..pad + 1])?;
    Ok((BLOCK + len + pad) as u64)
}

/// Write the header(s) of one entry; the caller writes `size` bytes of content then
/// [`pad`]. Returns the bytes written.
pub fn write_header(out: &mut dyn Write, e: &Entry<'_>) -> io::Result<u64> {
    let mut n = 0;
    if e.link.len() > 100 {
        n += long(out, GNU_LONGLINK, e, e.link)?;
    }
    if e.name.len() > 100 {
        n += long(out, GNU_LONGNAME, e, e.name)?;
    }
    out.write_all(&raw_header(e.name, e.kind, e, e.size, e.link))?;
    Ok(n + BLOCK as u64)
}

/// Zero padding after `size` bytes of content.
pub fn pad(out: &mut dyn Write, size: u64) -> io::Result<u64> {
    let pad = ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize;
    out.write_all(&[0u8; BLOCK][..pad])?;
    Ok(pad as u64)
}

/// The end-of-archive marker.
pub fn finish(out: &mut dyn Write) -> io::Result<u64> {
    out.write_all(&[0u8; 2 * BLOCK])?;
    Ok(2 * BLOCK as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_fields() {
        let mut f = [0u8; 8];
        numeric(&mut f, 0o755);
        assert_eq!(&f, b"0000755\0");
        numeric(&mut f, 1 << 30);
        assert_eq!(f[0], 0x80);
        assert_eq!(u64::from_be_bytes([0, f[1], f[2], f[3], f[4], f[5], f[6], f[7]]), 1 << 30);
        let mut s = [0u8; 12];
        numeric(&mut s, (8 << 30) - 1);
        assert_eq!(&s, b"77777777777\0");
        numeric(&mut s, 8 << 30);
        assert_eq!(s[0], 0x80);
    }

    #[test]
    fn header_is_read_by_the_tar_crate() {
        let long_name = format!("./{}/file", "d".repeat(150));
        let e = Entry {
            name: long_name.as_bytes(),
            kind: REGULAR,
            mode: 0o640,
            uid: 1000,
            gid: 100,
            size: 3,
            mtime: 1_700_000_000,
            link: b"",
            dev: None,
        };
        let mut v = Vec::new();
        write_header(&mut v, &e).unwrap();
        v.extend_from_slice(b"abc");
        pad(&mut v, 3).unwrap();
        finish(&mut v).unwrap();
        let mut ar = tar::Archive::new(&v[..]);
        let mut entries = ar.entries().unwrap();
        let ent = entries.next().unwrap().unwrap();
        assert_eq!(ent.path().unwrap().to_str().unwrap(), long_name);
        assert_eq!(ent.header().mode().unwrap(), 0o640);
        assert_eq!(ent.header().uid().unwrap(), 1000);
        assert_eq!(ent.header().mtime().unwrap(), 1_700_000_000);
        assert!(entries.next().is_none());
    }
}
