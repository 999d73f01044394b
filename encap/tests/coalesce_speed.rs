//! A rough timing of coalescing (parse, continues, merge_into), for information only (no
//! assertion on speed). Run it in release mode:
//!
//! ```text
//! cargo test -p switchyard-encap --release --test coalesce_speed -- --ignored --nocapture
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use switchyard_encap::coalesce::{continues, merge_into, TcpSegment};
use switchyard_encap::segment::{segment, GsoKind, Offload};

/// The 1448-byte IPv4/TCP segments of a 64 KiB super-frame, as a receiver gets them.
fn segments() -> Vec<Vec<u8>> {
    let payload = 65535 - 40;
    let mut frame = vec![0u8; 54 + payload];
    frame[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14..34].copy_from_slice(&[
        0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    frame[16..18].copy_from_slice(&((20 + 20 + payload) as u16).to_be_bytes());
    frame[34..54].copy_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0x01, 0xf6, 0, 0, 0, 0,
    ]);
    for (i, byte) in frame[54..].iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(31);
    }
    let offload = Offload {
        kind: GsoKind::TcpV4,
        ecn: false,
        segment_size: 1448,
        needs_csum: true,
        csum_start: 34,
        csum_offset: 16,
    };
    let mut out = Vec::new();
    let layout = segment(&offload, &frame, 0, 1514, &mut out).unwrap();
    layout.records(&out).map(<[u8]>::to_vec).collect()
}

fn time<F: FnMut()>(mut f: F) -> Duration {
    for _ in 0..50 {
        f();
    }
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..200 {
                f();
            }
            start.elapsed() / 200
        })
        .min()
        .unwrap()
}

#[test]
#[ignore = "timing, run by hand in release mode"]
fn coalesce_speed() {
    let frames = segments();
    let mut parsed: Vec<(&[u8], TcpSegment)> = Vec::with_capacity(frames.len());
    let mut buffer = vec![0u8; 70_000];
    let per_run = time(|| {
        parsed.clear();
        let mut merged = 0;
        for frame in &frames {
            let frame = black_box(frame.as_slice());
            let seg = TcpSegment::parse(frame).unwrap();
            if let Some(&(prev, p)) = parsed.last() {
                assert!(continues(prev, &p, frame, &seg, merged));
            }
            merged += seg.payload_len();
            parsed.push((frame, seg));
        }
        black_box(merge_into(&parsed, &mut buffer).unwrap());
    });
    println!(
        "coalesce: {} segments of 1448 into one frame: {:?} per run ({:?} per segment)",
        frames.len(),
        per_run,
        per_run / frames.len() as u32
    );
}
