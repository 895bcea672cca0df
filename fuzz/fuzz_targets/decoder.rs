//! Arbitrary bytes into the frame decoder, the host's receiver and the agent's sender.
//!
//! First byte: bit 0 picks the mode, the rest how the input is split into pushes (state
//! carried across pushes is covered).
//! - raw mode: the bytes go on the line as they are (noise, truncated frames, text);
//! - signed mode: each piece (split at `0xFF`) becomes the header and payload of a frame
//!   with a valid tag and CRC, so authenticated but hostile messages reach the parsers and
//!   the state machines (bad lengths, huge offsets, odd acks, sessions, replays).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagehand_proto::wire::frame::{Decoded, Decoder, Direction};
use stagehand_proto::wire::receiver::{Receiver, RxEvent};
use stagehand_proto::wire::sender::{Sender, SenderConfig};
use stagehand_proto::wire::{cobs, Key, Priority};
use std::time::{Duration, Instant};

fn signed(key: &Key, body: &[u8], out: &mut Vec<u8>) {
    let mut raw = body.to_vec();
    raw.extend_from_slice(&key.tag(body));
    let crc = crc32fast::hash(&raw);
    raw.extend_from_slice(&crc.to_le_bytes());
    out.push(0);
    cobs::encode_into(&raw, out);
    out.push(0);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let key = Key([7; 32]);
    let wire = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut w = Vec::new();
        for piece in rest.split(|&b| b == 0xFF) {
            signed(&key, piece, &mut w);
        }
        w
    };
    let step = (mode >> 1) as usize + 1;
    let mut dec = Decoder::with_limit(key.clone(), Direction::AgentToHost, 4096);
    let mut rx = Receiver::new(key.clone());
    let mut tx = Sender::with_session(key, b"{}".to_vec(), SenderConfig::for_link(true, Some(11520)), 1);
    tx.open(2, Priority::Bulk);
    let _ = tx.write(2, &[1; 3000]);
    let mut now = Instant::now();
    let mut delivered = std::collections::BTreeMap::<u32, u64>::new();
    for chunk in wire.chunks(step) {
        for d in dec.push(chunk) {
            if let Decoded::Text(t) = d {
                assert!(!t.contains(&0));
            }
        }
        for ev in rx.handle_input(chunk, now) {
            if let RxEvent::Data { stream, offset, bytes } = ev {
                let next = delivered.entry(stream).or_default();
                assert_eq!(*next, offset, "delivery not contiguous");
                *next += bytes.len() as u64;
            }
        }
        while rx.poll_transmit(now).is_some() {}
        tx.handle_input(chunk, now);
        for _ in 0..4 {
            let _ = tx.poll_transmit(now);
        }
        now += Duration::from_millis(7);
    }
    let _ = rx.snapshot();
    let _ = tx.is_done();
});
