//! gzip output with parallel deflate, pigz style.
//!
//! The input is cut into fixed 128 KiB blocks; each block is deflated on its own (no
//! dictionary shared across blocks) and ends with a sync flush, the last one with the
//! final-block bit. Block boundaries depend only on the byte offset, never on the number of
//! threads, so the output is the same bytes whatever `threads` is. At most `2 * threads`
//! blocks are in flight, so memory stays constant whatever the input size.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use miniz_oxide::deflate::core::{
    compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};

pub const BLOCK_SIZE: usize = 128 * 1024;

struct Job {
    seq: u64,
    data: Vec<u8>,
    last: bool,
}

type Done = (u64, io::Result<Vec<u8>>);

/// A `Write` that gzips what it is given into `out`. Call [`ParallelGzip::finish`] at the end:
/// dropping it without finishing leaves an incomplete gzip stream.
pub struct ParallelGzip<W: Write> {
    out: Option<W>,
    block: Vec<u8>,
    crc: crc32fast::Hasher,
    total_in: u64,
    next_seq: u64,
    next_to_write: u64,
    in_flight: usize,
    max_in_flight: usize,
    pending: BTreeMap<u64, Vec<u8>>,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    header_written: bool,
}

impl<W: Write> ParallelGzip<W> {
    /// `level` 0..=10 (miniz levels; 6 is gzip's default); `threads` at least 1.
    pub fn new(out: W, level: u8, threads: usize) -> ParallelGzip<W> {
        let threads = threads.max(1);
        let max_in_flight = threads * 2;
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(max_in_flight);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let flags = create_comp_flags_from_zip_params(level.min(10) as i32, -15, 0);
        let workers = (0..threads)
            .map(|i| {
                let job_rx = Arc::clone(&job_rx);
                let done_tx = done_tx.clone();
                std::thread::Builder::new()
                    .name(format!("deflate-{i}"))
                    .spawn(move || worker(flags, &job_rx, &done_tx))
                    .expect("cannot start a compression thread")
            })
            .collect();
        ParallelGzip {
            out: Some(out),
            block: Vec::with_capacity(BLOCK_SIZE),
            crc: crc32fast::Hasher::new(),
            total_in: 0,
            next_seq: 0,
            next_to_write: 0,
            in_flight: 0,
            max_in_flight,
            pending: BTreeMap::new(),
            jobs: Some(job_tx),
            done: done_rx,
            workers,
            header_written: false,
        }
    }

    fn sink(&mut self) -> &mut W {
        self.out.as_mut().expect("the writer is only taken by finish")
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            // No name, no mtime (deterministic), XFL 0, OS 3 (Unix).
            self.sink().write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])?;
            self.header_written = true;
        }
        Ok(())
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        while self.in_flight >= self.max_in_flight {
            self.collect_one()?;
        }
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_SIZE));
        let job = Job { seq: self.next_seq, data, last };
        self.next_seq += 1;
        self.in_flight += 1;
        self.jobs
            .as_ref()
            .and_then(|tx| tx.send(job).ok())
            .ok_or_else(|| io::Error::other("gzip: compression threads stopped"))?;
        // Write whatever is already done, without waiting.
        while let Ok((seq, res)) = self.done.try_recv() {
            self.accept(seq, res)?;
        }
        Ok(())
    }

    fn collect_one(&mut self) -> io::Result<()> {
        let (seq, res) =
            self.done.recv().map_err(|_| io::Error::other("gzip: compression threads stopped"))?;
        self.accept(seq, res)
    }

    fn accept(&mut self, seq: u64, res: io::Result<Vec<u8>>) -> io::Result<()> {
        self.in_flight -= 1;
        self.pending.insert(seq, res?);
        self.write_header()?;
        while let Some(bytes) = self.pending.remove(&self.next_to_write) {
            self.sink().write_all(&bytes)?;
            self.next_to_write += 1;
        }
        Ok(())
    }

    /// Compress what is left, write the trailer and give back the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_header()?;
        self.submit(true)?;
        while self.in_flight > 0 {
            self.collect_one()?;
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        let size = self.total_in as u32;
        self.sink().write_all(&crc.to_le_bytes())?;
        self.sink().write_all(&size.to_le_bytes())?;
        self.sink().flush()?;
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        Ok(self.out.take().expect("the writer is only taken here"))
    }
}

impl<W: Write> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK_SIZE - self.block.len();
        let n = room.min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.total_in += n as u64;
        if self.block.len() == BLOCK_SIZE {
            self.submit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Block boundaries must not depend on when callers flush: only pass on the
        // blocks that are complete.
        self.sink().flush()
    }
}

fn worker(flags: u32, jobs: &Mutex<Receiver<Job>>, done: &mpsc::Sender<Done>) {
    let mut comp = Box::new(CompressorOxide::new(flags));
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        comp.reset();
        let res = deflate_block(&mut comp, &job.data, job.last);
        if done.send((job.seq, res)).is_err() {
            return;
        }
    }
}

fn deflate_block(comp: &mut CompressorOxide, input: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let flush = if last { TDEFLFlush::Finish } else { TDEFLFlush::Sync };
    let mut out = vec![0u8; input.len() + input.len() / 8 + 1024];
    let mut in_pos = 0;
    let mut out_pos = 0;
    loop {
        let (status, used, written) = compress(comp, &input[in_pos..], &mut out[out_pos..], flush);
        in_pos += used;
        out_pos += written;
        match status {
            TDEFLStatus::Done => break,
            TDEFLStatus::Okay if in_pos == input.len() && out_pos < out.len() => break,
            TDEFLStatus::Okay => {
                let grow = out.len();
                out.resize(grow * 2, 0);
            }
            _ => return Err(io::Error::other("gzip: deflate failed")),
        }
    }
    out.truncate(out_pos);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::gunzip::GzDecoder;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                if i % 3 == 0 {
                    (x >> 24) as u8
                } else {
                    b"stagehand "[i % 10]
                }
            })
            .collect()
    }

    fn gz(data: &[u8], level: u8, threads: usize) -> Vec<u8> {
        let mut g = ParallelGzip::new(Vec::new(), level, threads);
        for chunk in data.chunks(7777) {
            g.write_all(chunk).unwrap();
        }
        g.finish().unwrap()
    }

    #[test]
    fn round_trips_and_is_identical_across_thread_counts() {
        for len in [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE * 3 + 17] {
            let data = sample(len);
            let one = gz(&data, 6, 1);
            let three = gz(&data, 6, 3);
            assert_eq!(one, three, "len {len}");
            let mut back = Vec::new();
            GzDecoder::new(&one[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "len {len}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10))]
        #[test]
        fn any_input_round_trips_the_same_with_any_thread_count(
            data in proptest::collection::vec(0u8..4, 0..200_000),
            threads in 1usize..4,
            level in 0u8..10,
        ) {
            let gz = gz(&data, level, threads);
            proptest::prop_assert_eq!(&gz, &self::gz(&data, level, 1));
            let mut back = Vec::new();
            GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
            proptest::prop_assert_eq!(back, data);
        }
    }

    #[test]
    fn level_zero_and_nine_round_trip() {
        let data = sample(BLOCK_SIZE * 2 + 5);
        for level in [0, 1, 9] {
            let mut back = Vec::new();
            GzDecoder::new(&gz(&data, level, 2)[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
        }
    }
}
