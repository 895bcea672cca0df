//! Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999): the encoded form of any
//! byte string contains no `0x00`, so `0x00` can delimit frames on the line. Overhead is
//! one byte per started 254-byte block.

/// Largest encoded size of `len` input bytes.
pub const fn max_encoded_len(len: usize) -> usize {
    len + len / 254 + 1
}

/// Append the COBS encoding of `src` (without any delimiter) to `out`.
pub fn encode_into(src: &[u8], out: &mut Vec<u8>) {
    out.reserve(max_encoded_len(src.len()));
    let mut code_at = out.len();
    out.push(0);
    let mut code: u8 = 1;
    for &b in src {
        if b == 0 {
            out[code_at] = code;
            code_at = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
            if code == 0xFF {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[code_at] = code;
}

/// Decode one COBS block sequence (no delimiters). `None` if it is not valid COBS: a zero
/// byte inside, or a code that points past the end.
pub fn decode(src: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(src.len());
    let mut i = 0;
    while i < src.len() {
        let code = src[i] as usize;
        if code == 0 || i + code > src.len() {
            return None;
        }
        let block = &src[i + 1..i + code];
        if block.contains(&0) {
            return None;
        }
        out.extend_from_slice(block);
        i += code;
        if code < 0xFF && i < src.len() {
            out.push(0);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vectors() {
        let cases: &[(&[u8], &[u8])] = &[
            (&[], &[1]),
            (&[0], &[1, 1]),
            (&[0, 0], &[1, 1, 1]),
            (&[0x11, 0x22, 0x00, 0x33], &[3, 0x11, 0x22, 2, 0x33]),
            (&[0x11, 0x00, 0x00, 0x00], &[2, 0x11, 1, 1, 1]),
        ];
        for (raw, enc) in cases {
            let mut out = Vec::new();
            encode_into(raw, &mut out);
            assert_eq!(&out[..], *enc, "encoding {raw:02x?}");
            assert_eq!(decode(enc).as_deref(), Some(*raw));
        }
        let long: Vec<u8> = (1..=254).collect();
        let mut out = Vec::new();
        encode_into(&long, &mut out);
        assert_eq!(out[0], 0xFF);
        assert_eq!(out.len(), 256);
        assert_eq!(decode(&out).unwrap(), long);
    }

    #[test]
    fn rejects_invalid() {
        assert_eq!(decode(&[3, 1]), None);
        assert_eq!(decode(&[2, 0]), None);
        assert_eq!(decode(&[0]), None);
    }

    proptest! {
        #[test]
        fn round_trips(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut enc = Vec::new();
            encode_into(&data, &mut enc);
            prop_assert!(!enc.contains(&0));
            prop_assert!(enc.len() <= max_encoded_len(data.len()));
            prop_assert_eq!(decode(&enc).unwrap(), data);
        }
    }
}
