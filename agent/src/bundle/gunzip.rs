//! Streaming gzip reader over miniz_oxide's inflate, with the CRC and length checks, so a
//! truncated or corrupt bundle is reported instead of half unpacked.

use std::io::{self, Read};

use miniz_oxide::inflate::stream::InflateState;
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

const IN_BUF: usize = 64 * 1024;

pub struct GzDecoder<R: Read> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    state: Box<InflateState>,
    crc: crc32fast::Hasher,
    size: u32,
    /// true while inside a member's deflate data.
    in_member: bool,
    members: u32,
    done: bool,
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("corrupt gzip data: {what}"))
}

impl<R: Read> GzDecoder<R> {
    pub fn new(inner: R) -> GzDecoder<R> {
        GzDecoder {
            inner,
            buf: vec![0; IN_BUF],
            pos: 0,
            len: 0,
            eof: false,
            state: InflateState::new_boxed(DataFormat::Raw),
            crc: crc32fast::Hasher::new(),
            size: 0,
            in_member: false,
            members: 0,
            done: false,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.pos == self.len && !self.eof {
            self.pos = 0;
            self.len = self.inner.read(&mut self.buf)?;
            if self.len == 0 {
                self.eof = true;
            }
        }
        Ok(())
    }

    fn byte(&mut self) -> io::Result<Option<u8>> {
        self.fill()?;
        if self.pos == self.len {
            return Ok(None);
        }
        self.pos += 1;
        Ok(Some(self.buf[self.pos - 1]))
    }

    fn need(&mut self) -> io::Result<u8> {
        self.byte()?.ok_or_else(|| corrupt("the file ends early (truncated?)"))
    }

    /// Read a member header; `Ok(false)` at a clean end of file.
    fn header(&mut self, first: bool) -> io::Result<bool> {
        let Some(b0) = self.byte()? else {
            return if first { Err(corrupt("empty file")) } else { Ok(false) };
        };
        let b1 = self.need()?;
        if b0 != 0x1f || b1 != 0x8b {
            return Err(if first {
                corrupt("not a gzip file (bad magic)")
            } else {
                corrupt("garbage after the end")
            });
        }
        if self.need()? != 8 {
            return Err(corrupt("unknown compression method"));
        }
        let flags = self.need()?;
        for _ in 0..6 {
            self.need()?;
        }
        if flags & 4 != 0 {
            let n = self.need()? as usize | (self.need()? as usize) << 8;
            for _ in 0..n {
                self.need()?;
            }
        }
        for bit in [8u8, 16] {
            if flags & bit != 0 {
                while self.need()? != 0 {}
            }
        }
        if flags & 2 != 0 {
            self.need()?;
            self.need()?;
        }
        self.state.reset(DataFormat::Raw);
        self.crc = crc32fast::Hasher::new();
        self.size = 0;
        self.in_member = true;
        self.members += 1;
        Ok(true)
    }

    fn trailer(&mut self) -> io::Result<()> {
        let mut t = [0u8; 8];
        for b in t.iter_mut() {
            *b = self.need()?;
        }
        let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let size = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        let ours = std::mem::take(&mut self.crc).finalize();
        if crc != ours || size != self.size {
            return Err(corrupt("checksum mismatch"));
        }
        self.in_member = false;
        Ok(())
    }
}

impl<R: Read> Read for GzDecoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.done {
                return Ok(0);
            }
            if !self.in_member && !self.header(self.members == 0)? {
                self.done = true;
                return Ok(0);
            }
            self.fill()?;
            let input = &self.buf[self.pos..self.len];
            let flush = if self.eof { MZFlush::Finish } else { MZFlush::None };
            let res = miniz_oxide::inflate::stream::inflate(&mut self.state, input, out, flush);
            self.pos += res.bytes_consumed;
            let produced = &out[..res.bytes_written];
            self.crc.update(produced);
            self.size = self.size.wrapping_add(produced.len() as u32);
            match res.status {
                Ok(MZStatus::StreamEnd) => {
                    self.trailer()?;
                    if res.bytes_written > 0 {
                        return Ok(res.bytes_written);
                    }
                }
                Ok(_) => {
                    if res.bytes_written > 0 {
                        return Ok(res.bytes_written);
                    }
                    if self.eof && res.bytes_consumed == 0 {
                        return Err(corrupt("the file ends early (truncated?)"));
                    }
                }
                Err(MZError::Buf) if self.eof => return Err(corrupt("the file ends early (truncated?)")),
                Err(MZError::Buf) => {}
                Err(_) => return Err(corrupt("invalid deflate data")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_and_truncation() {
        let mut v = Vec::new();
        assert!(GzDecoder::new(&b"hello world, not gzip"[..]).read_to_end(&mut v).is_err());
        let mut g = crate::pack::gzip::ParallelGzip::new(Vec::new(), 6, 1);
        std::io::Write::write_all(&mut g, &vec![7u8; 300_000]).unwrap();
        let gz = g.finish().unwrap();
        let mut back = Vec::new();
        GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), 300_000);
        for cut in [5, 20, gz.len() / 2, gz.len() - 3] {
            let mut v = Vec::new();
            assert!(GzDecoder::new(&gz[..cut]).read_to_end(&mut v).is_err(), "cut at {cut}");
        }
        let mut bad = gz.clone();
        let n = bad.len();
        bad[n - 6] ^= 1;
        let mut v = Vec::new();
        assert!(GzDecoder::new(&bad[..]).read_to_end(&mut v).is_err());
    }
}
