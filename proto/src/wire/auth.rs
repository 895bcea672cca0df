//! The per-image key: 32 random bytes, stored as 64 hex digits and a newline.

use hmac::{KeyInit, Mac};
use std::path::Path;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Bytes of HMAC-SHA256 kept in each frame (RFC 2104 section 5 truncation, left-most bytes).
pub const TAG_LEN: usize = 16;

/// HMAC-SHA256 key shared by one image and the host that collects from it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub [u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A fresh random key from the kernel's random source.
    pub fn generate() -> std::io::Result<Key> {
        let mut k = [0u8; 32];
        let mut filled = 0;
        while filled < k.len() {
            match rustix::rand::getrandom(&mut k[filled..], rustix::rand::GetRandomFlags::empty()) {
                Ok(n) => filled += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => {
                    use std::io::Read;
                    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut k)).map_err(
                        |e| {
                            std::io::Error::new(
                                e.kind(),
                                format!(
                                    "cannot read random bytes for a key from getrandom or /dev/urandom: {e}"
                                ),
                            )
                        },
                    )?;
                    filled = k.len();
                }
            }
        }
        Ok(Key(k))
    }

    /// Parse 64 hex digits (surrounding whitespace allowed).
    pub fn from_hex(s: &str) -> Result<Key, String> {
        let s = s.trim();
        if s.len() != 64 {
            return Err(format!("a key is 64 hex digits (32 bytes), this one has {} characters", s.len()));
        }
        let mut k = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let hex = |c: u8| (c as char).to_digit(16);
            match (hex(pair[0]), hex(pair[1])) {
                (Some(h), Some(l)) => k[i] = (h * 16 + l) as u8,
                _ => {
                    return Err(format!(
                        "a key is 64 hex digits, found a non-hex character at position {}",
                        i * 2 + 1
                    ))
                }
            }
        }
        Ok(Key(k))
    }

    /// Read a key file written by [`Key::write_new_file`].
    pub fn from_hex_file(path: &Path) -> std::io::Result<Key> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot read key file {}: {e}", path.display()))
        })?;
        Key::from_hex(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("key file {}: {e}; regenerate it or pass the image's key", path.display()),
            )
        })
    }

    /// The key file's whole text: 64 lowercase hex digits and a newline.
    pub fn file_text(&self) -> String {
        format!("{}\n", self.to_hex())
    }

    /// Write a new key file, readable by its owner only from the first byte on (never
    /// written first and chmodded after). Fails if `path` exists.
    pub fn write_new_file(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot create key file {}: {e}", path.display()))
            })?;
        f.write_all(self.file_text().as_bytes())?;
        f.sync_all()
    }

    /// 64 lowercase hex digits, no newline.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// HMAC-SHA256(key, msg) truncated to [`TAG_LEN`] bytes.
    pub fn tag(&self, msg: &[u8]) -> [u8; TAG_LEN] {
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(msg);
        let full = mac.finalize().into_bytes();
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(&full[..TAG_LEN]);
        t
    }

    /// Constant-time comparison of `tag` with the tag of `msg`.
    pub fn verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        let want = self.tag(msg);
        tag.len() == TAG_LEN && want.iter().zip(tag).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let k = Key::generate().unwrap();
        assert_eq!(Key::from_hex(&format!("{}\n", k.to_hex())).unwrap(), k);
        assert!(Key::from_hex("abc").unwrap_err().contains("64 hex digits"));
        assert!(Key::from_hex(&"g".repeat(64)).unwrap_err().contains("non-hex"));
        assert_ne!(Key::generate().unwrap(), k);
    }

    #[test]
    fn key_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "00".repeat(31) + "ff\n").unwrap();
        assert_eq!(Key::from_hex_file(&p).unwrap().0[31], 0xff);
        std::fs::write(&p, "nope").unwrap();
        let e = Key::from_hex_file(&p).unwrap_err().to_string();
        assert!(e.contains("key file") && e.contains("64 hex digits"), "{e}");
    }

    #[test]
    fn a_new_key_file_is_private_from_the_start_and_never_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img.key");
        let k = Key::generate().unwrap();
        k.write_new_file(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(Key::from_hex_file(&p).unwrap(), k);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), k.file_text());
        let e = Key::generate().unwrap().write_new_file(&p).unwrap_err().to_string();
        assert!(e.contains("img.key"), "{e}");
        assert_eq!(Key::from_hex_file(&p).unwrap(), k, "the first key is kept");
    }

    #[test]
    fn rfc4231_case_2_truncated() {
        // RFC 4231 test case 2 uses a short key; ours are 32 bytes, but HMAC is the same.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let full = mac.finalize().into_bytes();
        assert_eq!(full[..4], [0x5b, 0xdc, 0xc1, 0x46]);
    }
}
