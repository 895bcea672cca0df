//! Frame layout, integrity (CRC-32) and authentication (HMAC-SHA256/128), and the
//! [`Decoder`] that splits a noisy byte stream into console text and frames.
//!
//! On the line a frame is `00 COBS(raw) 00`, with `raw` =
//! `header(12) | payload | tag(16) | crc32(4)`; see `docs/protocol.md`.

use super::auth::{Key, TAG_LEN};
use super::{cobs, StreamId};

/// First header byte without the direction bit: magic `0b1010_010` = protocol version 1.
pub const MAGIC: u8 = 0xA4;
pub const HEADER_LEN: usize = 12;
pub const CRC_LEN: usize = 4;
/// Largest payload (the length field is a u16).
pub const MAX_PAYLOAD: usize = u16::MAX as usize;
/// Stream id and offset in front of the bytes of a data message.
pub const DATA_HEADER_LEN: usize = 12;
/// Most stream bytes one data frame can carry.
pub const MAX_DATA: usize = MAX_PAYLOAD - DATA_HEADER_LEN;
/// Bytes a data frame adds to its stream bytes before COBS: header, data header, tag, CRC.
pub const DATA_FRAME_OVERHEAD: usize = HEADER_LEN + DATA_HEADER_LEN + TAG_LEN + CRC_LEN;
/// Longest encoded frame (without delimiters) the decoder accepts by default.
pub const MAX_ENCODED: usize = cobs::max_encoded_len(HEADER_LEN + MAX_PAYLOAD + TAG_LEN + CRC_LEN);
/// Most acknowledged streams and SACK ranges per stream in one ack.
pub const MAX_ACK_STREAMS: usize = 32;
pub const MAX_SACKS: usize = 8;

/// Which way a frame travels; part of the authenticated header, so a frame cannot be
/// reflected back to its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    AgentToHost = 0,
    HostToAgent = 1,
}

pub mod msg_type {
    pub const HELLO: u8 = 0x01;
    pub const DATA: u8 = 0x02;
    pub const END: u8 = 0x03;
    pub const HEARTBEAT: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Random per agent run; host frames carry the agent's session they answer.
    pub session: u32,
    /// Per session and direction, +1 for every frame sent (retransmissions included).
    pub seq: u32,
    pub msg: Message,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// JSON of [`crate::events::Hello`], opaque here.
    Hello(Vec<u8>),
    Data {
        stream: StreamId,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// The stream is `len` bytes long with this sha256.
    End {
        stream: StreamId,
        len: u64,
        sha256: [u8; 32],
    },
    Heartbeat,
    Ack(Ack),
}

/// Host → agent: what arrived. The first ack that echoes a hello is the resume point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ack {
    /// Seq of the latest hello the host received from this session.
    pub hello_seq: u32,
    /// Frames of this session received intact / frame candidates that failed the CRC,
    /// both counted since the host started (wrapping).
    pub good: u32,
    pub bad: u32,
    pub streams: Vec<StreamAck>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamAck {
    pub stream: StreamId,
    /// The end record was received.
    pub ended: bool,
    /// Every byte below this offset was received.
    pub cum: u64,
    /// Received ranges `[start, end)` above `cum`, ascending, disjoint.
    pub sacks: Vec<(u64, u64)>,
}

/// Why a frame (or something that looked like one) was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// Not valid COBS, too short, or CRC mismatch: line noise.
    Corrupt,
    /// Longer than the decoder's limit: dropped without buffering it.
    TooLong,
    /// Intact, but sent in the direction this end sends.
    WrongDirection,
    /// Intact (CRC good) but the HMAC tag does not match: another key, or a forgery.
    BadTag,
    /// Authenticated but not understood (unknown type, bad lengths): a newer peer?
    Malformed,
    /// A sequence number already seen: a replay.
    Replayed,
    /// Authenticated, but of a session that is not the current one.
    OtherSession,
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RejectReason::Corrupt => "corrupt frame (line noise: CRC mismatch)",
            RejectReason::TooLong => "over-long frame dropped",
            RejectReason::WrongDirection => "frame in the wrong direction (reflected?)",
            RejectReason::BadTag => "intact frame with a bad authentication tag: wrong --key?",
            RejectReason::Malformed => "authenticated frame not understood (protocol version?)",
            RejectReason::Replayed => "replayed frame",
            RejectReason::OtherSession => "frame from another session (an earlier run?)",
        })
    }
}

/// Append `00 COBS(raw frame) 00` to `out`. The payload must fit [`MAX_PAYLOAD`] (callers
/// size data frames with [`MAX_DATA`]; anything longer is cut, which the peer rejects).
pub fn encode(frame: &Frame, key: &Key, dir: Direction, out: &mut Vec<u8>) {
    let mut raw = Vec::with_capacity(HEADER_LEN + 64 + TAG_LEN + CRC_LEN);
    raw.extend_from_slice(&[MAGIC | dir as u8, 0]);
    raw.extend_from_slice(&frame.session.to_le_bytes());
    raw.extend_from_slice(&frame.seq.to_le_bytes());
    raw.extend_from_slice(&[0, 0]);
    raw[1] = encode_payload(&frame.msg, &mut raw);
    let len = (raw.len() - HEADER_LEN).min(MAX_PAYLOAD);
    raw.truncate(HEADER_LEN + len);
    raw[10..12].copy_from_slice(&(len as u16).to_le_bytes());
    let tag = key.tag(&raw);
    raw.extend_from_slice(&tag);
    let crc = crc32fast::hash(&raw);
    raw.extend_from_slice(&crc.to_le_bytes());
    out.push(0);
    cobs::encode_into(&raw, out);
    out.push(0);
}

/// Wire size of a data frame carrying `n` stream bytes, delimiters included.
pub fn data_frame_wire_len(n: usize) -> usize {
    cobs::max_encoded_len(n + DATA_FRAME_OVERHEAD) + 2
}

fn encode_payload(msg: &Message, out: &mut Vec<u8>) -> u8 {
    match msg {
        Message::Hello(json) => {
            out.extend_from_slice(json);
            msg_type::HELLO
        }
        Message::Data { stream, offset, bytes } => {
            out.extend_from_slice(&stream.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(bytes);
            msg_type::DATA
        }
        Message::End { stream, len, sha256 } => {
            out.extend_from_slice(&stream.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(sha256);
            msg_type::END
        }
        Message::Heartbeat => msg_type::HEARTBEAT,
        Message::Ack(ack) => {
            out.extend_from_slice(&ack.hello_seq.to_le_bytes());
            put_varint(out, ack.good as u64);
            put_varint(out, ack.bad as u64);
            let streams = &ack.streams[..ack.streams.len().min(MAX_ACK_STREAMS)];
            put_varint(out, streams.len() as u64);
            for s in streams {
                put_varint(out, s.stream as u64);
                out.push(s.ended as u8);
                put_varint(out, s.cum);
                let sacks = &s.sacks[..s.sacks.len().min(MAX_SACKS)];
                put_varint(out, sacks.len() as u64);
                let mut prev = s.cum;
                for &(start, end) in sacks {
                    put_varint(out, start.wrapping_sub(prev));
                    put_varint(out, end.wrapping_sub(start));
                    prev = end;
                }
            }
            msg_type::ACK
        }
    }
}

/// Unsigned LEB128.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

fn decode_payload(ty: u8, p: &[u8]) -> Option<Message> {
    let mut r = Reader(p);
    let msg = match ty {
        msg_type::HELLO => return Some(Message::Hello(p.to_vec())),
        msg_type::DATA => {
            let stream = r.u32()?;
            let offset = r.u64()?;
            offset.checked_add(r.0.len() as u64)?;
            return Some(Message::Data { stream, offset, bytes: r.0.to_vec() });
        }
        msg_type::END => {
            Message::End { stream: r.u32()?, len: r.u64()?, sha256: r.take(32)?.try_into().ok()? }
        }
        msg_type::HEARTBEAT => Message::Heartbeat,
        msg_type::ACK => {
            let mut ack = Ack { hello_seq: r.u32()?, ..Ack::default() };
            ack.good = r.varint()? as u32;
            ack.bad = r.varint()? as u32;
            let n = r.varint()? as usize;
            if n > MAX_ACK_STREAMS {
                return None;
            }
            for _ in 0..n {
                let stream = u32::try_from(r.varint()?).ok()?;
                let ended = r.u8()? & 1 == 1;
                let cum = r.varint()?;
                let ns = r.varint()? as usize;
                if ns > MAX_SACKS {
                    return None;
                }
                let mut sacks = Vec::with_capacity(ns);
                let mut prev = cum;
                for _ in 0..ns {
                    let start = prev.checked_add(r.varint()?)?;
                    let end = start.checked_add(r.varint()?)?;
                    sacks.push((start, end));
                    prev = end;
                }
                ack.streams.push(StreamAck { stream, ended, cum, sacks });
            }
            Message::Ack(ack)
        }
        _ => return None,
    };
    r.0.is_empty().then_some(msg)
}

/// Check and parse one raw (COBS-decoded) frame.
pub fn parse(raw: &[u8], key: &Key, expect: Direction) -> Result<Frame, RejectReason> {
    if raw.len() < HEADER_LEN + TAG_LEN + CRC_LEN {
        return Err(RejectReason::Corrupt);
    }
    let (body, crc) = raw.split_at(raw.len() - CRC_LEN);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(RejectReason::Corrupt);
    }
    if body[0] & !1 != MAGIC {
        return Err(RejectReason::Malformed);
    }
    if body[0] & 1 != expect as u8 {
        return Err(RejectReason::WrongDirection);
    }
    let (signed, tag) = body.split_at(body.len() - TAG_LEN);
    if !key.verify(signed, tag) {
        return Err(RejectReason::BadTag);
    }
    let mut r = Reader(&signed[2..HEADER_LEN]);
    let (session, seq) = (r.u32().unwrap_or(0), r.u32().unwrap_or(0));
    let len = u16::from_le_bytes([signed[10], signed[11]]) as usize;
    if len != signed.len() - HEADER_LEN {
        return Err(RejectReason::Malformed);
    }
    let msg = decode_payload(signed[1], &signed[HEADER_LEN..]).ok_or(RejectReason::Malformed)?;
    Ok(Frame { session, seq, msg })
}

/// What [`Decoder::push`] found in the byte stream, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Bytes between frames (console output); never contains `0x00`.
    Text(Vec<u8>),
    Frame(Frame),
    Rejected(RejectReason),
}

enum State {
    /// Just after a `00` (or at the very start), `Some(code)` once one byte came.
    Start(Option<u8>),
    Text,
    Frame,
    /// Inside an over-long frame: drop until the next `00`.
    Skip,
}

/// Splits a byte stream into text and frames. Memory is bounded by `max_encoded`.
///
/// A chunk between two `00` bytes is a frame candidate when its second byte is the magic
/// byte (any direction); otherwise it is text and streamed out at once. Every input byte
/// ends up in exactly one [`Decoded`] item, except the `00` delimiters.
pub struct Decoder {
    key: Key,
    expect: Direction,
    max_encoded: usize,
    state: State,
    buf: Vec<u8>,
}

impl Decoder {
    pub fn new(key: Key, expect: Direction) -> Decoder {
        Decoder::with_limit(key, expect, MAX_ENCODED)
    }

    pub fn with_limit(key: Key, expect: Direction, max_encoded: usize) -> Decoder {
        Decoder { key, expect, max_encoded, state: State::Start(None), buf: Vec::new() }
    }

    pub fn push(&mut self, input: &[u8]) -> Vec<Decoded> {
        let mut out = Vec::new();
        let mut text = Vec::new();
        for &b in input {
            if b == 0 {
                match std::mem::replace(&mut self.state, State::Start(None)) {
                    State::Start(Some(c)) => text.push(c),
                    State::Frame => {
                        flush_text(&mut text, &mut out);
                        let item = match cobs::decode(&self.buf) {
                            Some(raw) => match parse(&raw, &self.key, self.expect) {
                                Ok(f) => Decoded::Frame(f),
                                Err(r) => Decoded::Rejected(r),
                            },
                            None => Decoded::Rejected(RejectReason::Corrupt),
                        };
                        out.push(item);
                        self.buf.clear();
                    }
                    _ => {}
                }
                continue;
            }
            match self.state {
                State::Start(None) => self.state = State::Start(Some(b)),
                State::Start(Some(c)) => {
                    if b & !1 == MAGIC && c >= 2 {
                        self.buf.clear();
                        self.buf.extend_from_slice(&[c, b]);
                        self.state = State::Frame;
                    } else {
                        text.extend_from_slice(&[c, b]);
                        self.state = State::Text;
                    }
                }
                State::Text => text.push(b),
                State::Frame => {
                    if self.buf.len() >= self.max_encoded {
                        flush_text(&mut text, &mut out);
                        out.push(Decoded::Rejected(RejectReason::TooLong));
                        self.buf = Vec::new();
                        self.state = State::Skip;
                    } else {
                        self.buf.push(b);
                    }
                }
                State::Skip => {}
            }
        }
        flush_text(&mut text, &mut out);
        out
    }
}

fn flush_text(text: &mut Vec<u8>, out: &mut Vec<Decoded>) {
    if !text.is_empty() {
        out.push(Decoded::Text(std::mem::take(text)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key(std::array::from_fn(|i| i as u8))
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
    }

    /// The worked example of docs/protocol.md; keep both in sync.
    #[test]
    fn worked_example_matches_the_doc() {
        let f = Frame {
            session: 0x1234_5678,
            seq: 1,
            msg: Message::Data { stream: 2, offset: 0x100, bytes: b"hi\0".to_vec() },
        };
        let mut raw = Vec::new();
        encode(&f, &key(), Direction::AgentToHost, &mut raw);
        assert_eq!(
            hex(&raw),
            "00 08 a4 02 78 56 34 12 01 01 01 02 0f 02 02 01 01 01 02 01 01 01 01 01 01 03 68 \
             69 15 1e 93 20 62 63 ee f5 6f 0f 41 e2 2f 36 6b 67 88 a4 77 6d be 00"
        );
        let mut d = Decoder::new(key(), Direction::AgentToHost);
        assert_eq!(d.push(&raw), vec![Decoded::Frame(f)]);
    }

    #[test]
    fn every_message_round_trips() {
        let msgs = vec![
            Message::Hello(br#"{"agent_version":"0.1.0"}"#.to_vec()),
            Message::Data { stream: 7, offset: u64::MAX - 4, bytes: vec![0, 1, 0, 2] },
            Message::End { stream: 3, len: 99, sha256: [0xab; 32] },
            Message::Heartbeat,
            Message::Ack(Ack {
                hello_seq: 9,
                good: 1000,
                bad: 3,
                streams: vec![
                    StreamAck { stream: 0, ended: true, cum: 5, sacks: vec![] },
                    StreamAck {
                        stream: 4,
                        ended: false,
                        cum: 1 << 40,
                        sacks: vec![(1 << 40 | 10, 1 << 40 | 20), (1 << 41, 1 << 42)],
                    },
                ],
            }),
        ];
        for (i, msg) in msgs.into_iter().enumerate() {
            for dir in [Direction::AgentToHost, Direction::HostToAgent] {
                let f = Frame { session: 77, seq: i as u32, msg: msg.clone() };
                let mut wire = Vec::new();
                encode(&f, &key(), dir, &mut wire);
                assert_eq!(Decoder::new(key(), dir).push(&wire), vec![Decoded::Frame(f.clone())]);
                let other = if dir == Direction::AgentToHost {
                    Direction::HostToAgent
                } else {
                    Direction::AgentToHost
                };
                assert_eq!(
                    Decoder::new(key(), other).push(&wire),
                    vec![Decoded::Rejected(RejectReason::WrongDirection)]
                );
                assert_eq!(
                    Decoder::new(Key([9; 32]), dir).push(&wire),
                    vec![Decoded::Rejected(RejectReason::BadTag)]
                );
            }
        }
    }

    #[test]
    fn text_around_frames_and_split_pushes() {
        let f = Frame { session: 1, seq: 2, msg: Message::Heartbeat };
        let mut wire = b"login: ".to_vec();
        encode(&f, &key(), Direction::AgentToHost, &mut wire);
        wire.extend_from_slice(b"[ 1.0] eth0 up\n");
        let mut d = Decoder::new(key(), Direction::AgentToHost);
        let mut items = Vec::new();
        for b in &wire {
            items.extend(d.push(std::slice::from_ref(b)));
        }
        let text: Vec<u8> = items
            .iter()
            .flat_map(|i| match i {
                Decoded::Text(t) => t.clone(),
                _ => vec![],
            })
            .collect();
        assert_eq!(text, b"login: [ 1.0] eth0 up\n");
        assert!(items.contains(&Decoded::Frame(f)));
    }

    #[test]
    fn over_long_frame_is_dropped_with_bounded_memory() {
        let f =
            Frame { session: 1, seq: 2, msg: Message::Data { stream: 1, offset: 0, bytes: vec![7; 3000] } };
        let mut wire = Vec::new();
        encode(&f, &key(), Direction::AgentToHost, &mut wire);
        let mut d = Decoder::with_limit(key(), Direction::AgentToHost, 1000);
        assert_eq!(d.push(&wire), vec![Decoded::Rejected(RejectReason::TooLong)]);
        assert!(d.buf.capacity() <= 1000);
        let small = Frame { session: 1, seq: 3, msg: Message::Heartbeat };
        wire.clear();
        encode(&small, &key(), Direction::AgentToHost, &mut wire);
        assert_eq!(d.push(&wire), vec![Decoded::Frame(small)]);
    }

    #[test]
    fn flipped_bit_is_corrupt_not_bad_tag() {
        let f =
            Frame { session: 1, seq: 2, msg: Message::Data { stream: 1, offset: 0, bytes: vec![7; 100] } };
        let mut wire = Vec::new();
        encode(&f, &key(), Direction::AgentToHost, &mut wire);
        wire[50] ^= 0x10;
        assert_eq!(
            Decoder::new(key(), Direction::AgentToHost).push(&wire),
            vec![Decoded::Rejected(RejectReason::Corrupt)]
        );
    }
}
