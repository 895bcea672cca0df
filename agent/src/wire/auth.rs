//! The per-image key: 32 random bytes, stored as 64 hex digits and a newline.

/// HMAC-SHA256 key shared by one image and the host that collects from it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub [u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}
