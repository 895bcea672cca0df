//! Property tests of the frame codec on damaged byte streams.

use proptest::prelude::*;
use stagehand_proto::wire::frame::{encode, Ack, Decoded, Decoder, Direction, Frame, Message, StreamAck};
use stagehand_proto::wire::Key;

fn key() -> Key {
    Key([7; 32])
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Message::Hello),
        (any::<u32>(), 0u64..1 << 40, proptest::collection::vec(any::<u8>(), 0..600))
            .prop_map(|(stream, offset, bytes)| Message::Data { stream, offset, bytes }),
        (any::<u32>(), any::<u64>(), any::<[u8; 32]>()).prop_map(|(stream, len, sha256)| Message::End {
            stream,
            len,
            sha256
        }),
        Just(Message::Heartbeat),
        (any::<u32>(), any::<u32>(), 0u64..1 << 30, 0usize..4).prop_map(|(hello_seq, good, cum, n)| {
            Message::Ack(Ack {
                hello_seq,
                good,
                bad: good / 3,
                streams: (0..n as u32)
                    .map(|i| StreamAck {
                        stream: i,
                        ended: i % 2 == 0,
                        cum,
                        sacks: vec![(cum + 10, cum + 20 + i as u64)],
                    })
                    .collect(),
            })
        }),
    ]
}

/// Console text: no NUL, and not the magic byte (which after a NUL starts a frame).
fn text() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("no NUL, no magic", |b| *b != 0 && *b & !1 != 0xA4),
        0..80,
    )
}

#[derive(Clone, Debug)]
enum Item {
    Text(Vec<u8>),
    Frame(Frame),
}

fn items() -> impl Strategy<Value = Vec<Item>> {
    let item = prop_oneof![
        text().prop_map(Item::Text),
        (any::<u32>(), any::<u32>(), message()).prop_map(|(session, seq, msg)| Item::Frame(Frame {
            session,
            seq,
            msg
        })),
    ];
    proptest::collection::vec(item, 1..12)
}

fn wire(items: &[Item]) -> Vec<u8> {
    let mut w = Vec::new();
    for i in items {
        match i {
            Item::Text(t) => w.extend_from_slice(t),
            Item::Frame(f) => encode(f, &key(), Direction::AgentToHost, &mut w),
        }
    }
    w
}

fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> Vec<Decoded> {
    let mut d = Decoder::new(key(), Direction::AgentToHost);
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts {
        let c = c % (bytes.len() + 1);
        if c > at {
            out.extend(d.push(&bytes[at..c]));
            at = c;
        }
    }
    out.extend(d.push(&bytes[at..]));
    out
}

/// Damage applied to a byte stream.
#[derive(Clone, Debug)]
enum Damage {
    FlipBit(usize, u8),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Insert(usize, Vec<u8>),
    Swap(usize, usize, usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Damage::FlipBit(p, b)),
        (any::<usize>(), 1usize..40).prop_map(|(p, n)| Damage::Delete(p, n)),
        (any::<usize>(), 1usize..300).prop_map(|(p, n)| Damage::Duplicate(p, n)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..50))
            .prop_map(|(p, v)| Damage::Insert(p, v)),
        (any::<usize>(), any::<usize>(), 1usize..200).prop_map(|(a, b, n)| Damage::Swap(a, b, n)),
    ]
}

fn apply(w: &mut Vec<u8>, d: &Damage) {
    let len = w.len().max(1);
    match d {
        Damage::FlipBit(p, b) if !w.is_empty() => w[p % len] ^= 1 << b,
        Damage::Delete(p, n) if !w.is_empty() => {
            let s = p % len;
            w.drain(s..(s + n).min(w.len()));
        }
        Damage::Duplicate(p, n) if !w.is_empty() => {
            let s = p % len;
            let part = w[s..(s + n).min(w.len())].to_vec();
            w.splice(s..s, part);
        }
        Damage::Insert(p, v) => {
            let s = p % (w.len() + 1);
            w.splice(s..s, v.iter().copied());
        }
        Damage::Swap(a, b, n) if w.len() > 2 * n => {
            let (a, b) = (a % (w.len() - n), b % (w.len() - n));
            let (a, b) = (a.min(b), a.max(b));
            if a + n <= b {
                let pa = w[a..a + n].to_vec();
                let pb = w[b..b + n].to_vec();
                w.splice(b..b + n, pa);
                w.splice(a..a + n, pb);
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Intact streams: every frame decodes, in order, and the text is exactly the text,
    /// however the bytes are split into pushes.
    #[test]
    fn intact_stream_decodes_exactly(items in items(), cuts in proptest::collection::vec(any::<usize>(), 0..20)) {
        let mut cuts = cuts;
        cuts.sort();
        // A trailing NUL ends the last text chunk (a lone byte after a NUL waits for the next
        // byte to tell text from a frame start).
        let mut w = wire(&items);
        w.push(0);
        let out = decode_in_pieces(&w, &cuts);
        let want_frames: Vec<&Frame> = items.iter().filter_map(|i| match i { Item::Frame(f) => Some(f), _ => None }).collect();
        let got_frames: Vec<&Frame> = out.iter().filter_map(|d| match d { Decoded::Frame(f) => Some(f), _ => None }).collect();
        prop_assert_eq!(got_frames, want_frames);
        let want_text: Vec<u8> = items.iter().flat_map(|i| match i { Item::Text(t) => t.clone(), _ => vec![] }).collect();
        let got_text: Vec<u8> = out.iter().flat_map(|d| match d { Decoded::Text(t) => t.clone(), _ => vec![] }).collect();
        prop_assert_eq!(got_text, want_text);
        prop_assert!(out.iter().all(|d| !matches!(d, Decoded::Rejected(_))));
    }

    /// Damaged streams: nothing that was not sent is ever accepted, and the decoder always
    /// resynchronises: an intact frame after the damage decodes.
    #[test]
    fn damage_never_forges_and_always_resyncs(
        items in items(),
        damages in proptest::collection::vec(damage(), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut w = wire(&items);
        for d in &damages {
            apply(&mut w, d);
        }
        let last = Frame { session: 1, seq: 2, msg: Message::Data { stream: 3, offset: 4, bytes: b"after the noise".to_vec() } };
        encode(&last, &key(), Direction::AgentToHost, &mut w);
        let mut cuts = cuts;
        cuts.sort();
        let out = decode_in_pieces(&w, &cuts);
        let sent: Vec<&Frame> = items.iter().filter_map(|i| match i { Item::Frame(f) => Some(f), _ => None }).collect();
        let mut got_last = false;
        for d in &out {
            match d {
                Decoded::Frame(f) if *f == last => got_last = true,
                Decoded::Frame(f) => prop_assert!(sent.contains(&f), "accepted a frame never sent: {:?}", f),
                Decoded::Text(t) => prop_assert!(!t.contains(&0)),
                Decoded::Rejected(_) => {}
            }
        }
        prop_assert!(got_last, "did not resynchronise");
        prop_assert_eq!(out.iter().filter(|d| matches!(d, Decoded::Frame(f) if *f == last)).count(), 1);
    }

    /// Arbitrary bytes never panic and text never exceeds the input.
    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let out = Decoder::with_limit(key(), Direction::AgentToHost, 512).push(&bytes);
        let text: usize = out.iter().map(|d| match d { Decoded::Text(t) => t.len(), _ => 0 }).sum();
        prop_assert!(text <= bytes.iter().filter(|&&b| b != 0).count());
    }
}
