//! A rough timing of segmentation and checksumming, for information only (no assertion on
//! speed). Run it in release mode:
//!
//! ```text
//! cargo test -p switchyard-encap --release --test segment_speed -- --ignored --nocapture
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use switchyard_encap::checksum;
use switchyard_encap::segment::{segment, GsoKind, Offload};

/// An IPv4/TCP super-frame with `payload` bytes (partial checksum, as from a TAP).
fn tcp4_super_frame(payload: usize) -> Vec<u8> {
    let mut frame = vec![0u8; 54 + payload];
    frame[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    let total = (20 + 20 + payload) as u16;
    frame[14..34].copy_from_slice(&[
        0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    frame[16..18].copy_from_slice(&total.to_be_bytes());
    frame[34..54].copy_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0x01, 0xf6, 0, 0, 0, 0,
    ]);
    for (i, byte) in frame[54..].iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(31);
    }
    frame
}

fn time<F: FnMut()>(mut f: F) -> Duration {
    // Warm up, then take the best of a few rounds.
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
fn segment_speed() {
    let payload = 65535 - 40;
    let frame = tcp4_super_frame(payload);
    let offload = Offload {
        kind: GsoKind::TcpV4,
        ecn: false,
        segment_size: 1448,
        needs_csum: true,
        csum_start: 34,
        csum_offset: 16,
    };
    let mut out = Vec::new();
    let per_frame = time(|| {
        let layout = segment(&offload, black_box(&frame), 8, 1514, &mut out).unwrap();
        black_box(layout);
    });
    let count = payload.div_ceil(1448);
    println!(
        "segment: {} KiB TCPv4 super-frame into {count} segments of 1448: {:?} per super-frame, {:.1} GB/s of payload",
        frame.len() / 1024,
        per_frame,
        payload as f64 / per_frame.as_secs_f64() / 1e9
    );

    let copy = time(|| {
        out.clear();
        out.extend_from_slice(black_box(&frame));
        black_box(&out);
    });
    println!("memcpy of the same frame, for scale: {copy:?}");

    for len in [64usize, 1448, 65536] {
        let data = &frame[..len.min(frame.len())];
        let t = time(|| {
            black_box(checksum::sum(black_box(data)));
        });
        println!(
            "checksum::sum over {} bytes: {:?} ({:.1} GB/s)",
            data.len(),
            t,
            data.len() as f64 / t.as_secs_f64() / 1e9
        );
    }
}
