//! `cargo bench -p switchyard --bench core`: the forwarding core alone, in process, on
//! one core. Prints what it measured; asserts nothing (speed lives in benchmarks).
//!
//! * forwarding: 64-byte frames between learned unicast hosts on access ports, through
//!   the datapath's `Worker::handle_port` (the call switchd's threads make), with an
//!   `Io` that only counts;
//! * the same from 1, 2 and 4 threads on disjoint port pairs of one shared datapath
//!   (nothing shared but the datapath: how it scales without a global lock);
//! * the MAC table at 1 million entries: memory (process RSS growth) and lookups/s;
//! * `--capture`: forwarding with a live capture of the egress port (a reader thread
//!   draining it), against the same without, alternated in one run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::datapath::{Datapath, Transmit, Worker};
use switchyard::fdb::{FdbConfig, MacTable};
use switchyard::sim::{access, frame};
use switchyard::wire::{MacAddr, VlanId, VNET_HDR_LEN};
use switchyard::{PortId, Time};

fn mac(n: u32) -> MacAddr {
    let [a, b, c, d] = n.to_be_bytes();
    MacAddr([0x02, 0, a, b, c, d])
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Runs `f` repeatedly for about `for_at_least`; returns operations per second, where
/// each call of `f` does `per_call` operations.
fn rate(for_at_least: Duration, per_call: u64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < for_at_least {
        for _ in 0..64 {
            f();
        }
        calls += 64;
    }
    (calls * per_call) as f64 / start.elapsed().as_secs_f64()
}

/// A datapath with `ports` access ports on VLAN 10, every host learned.
fn learned_datapath(ports: u32) -> Arc<Datapath> {
    let dp = Arc::new(Datapath::new(FdbConfig::default()));
    for p in 1..=ports {
        dp.switch().set_port(PortId(p), access(10));
        let _ = dp
            .switch()
            .fdb()
            .learn(Time::ZERO, vlan10(), mac(p), PortId(p));
    }
    dp
}

fn vlan10() -> VlanId {
    VlanId::new(10).unwrap()
}

/// The wire image (zero vnet header + 64-byte frame) host `from` sends to host `to`.
fn wire(from: u32, to: u32) -> Vec<u8> {
    [
        &[0u8; VNET_HDR_LEN][..],
        &frame(mac(to), mac(from), None, b""),
    ]
    .concat()
}

/// Forwards learned-unicast 64-byte frames between the ports `pair` (one to the other
/// and back) through `worker`, for about `for_at_least`; returns frames per second.
fn forward_pair(worker: &mut Worker, pair: (u32, u32), for_at_least: Duration) -> f64 {
    let frames = [
        (pair.0, wire(pair.0, pair.1)),
        (pair.1, wire(pair.1, pair.0)),
    ];
    let now = Time::from_secs(1);
    let mut sent = 0u64;
    let mut io = |t: Transmit<'_>| {
        if let Transmit::Port { wire, .. } = t {
            sent += black_box(wire.len()) as u64;
        }
        Ok(())
    };
    let mut i = 0usize;
    let per_second = rate(for_at_least, 1, || {
        let (port, wire) = &frames[i & 1];
        i += 1;
        let buffer = worker.frame_buffer(&mut io);
        buffer[..wire.len()].copy_from_slice(wire);
        worker.handle_port(now, PortId(*port), wire.len(), &mut io);
    });
    black_box(sent);
    per_second
}

fn forwarding() {
    let dp = learned_datapath(16);
    let mut worker = Worker::new(Arc::clone(&dp));
    let per_second = forward_pair(&mut worker, (1, 2), Duration::from_secs(2));
    println!(
        "forwarding: {:.1} M learned-unicast 64-byte frames/s on one core",
        per_second / 1e6
    );
}

/// The same, from 1, 2 and 4 threads at once, each on its own pair of ports of one
/// shared datapath: how the core scales when nothing but the datapath is shared.
fn forwarding_threads() {
    let mut one = 0.0;
    for threads in [1u32, 2, 4] {
        let dp = learned_datapath(2 * threads);
        let total: f64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let dp = Arc::clone(&dp);
                    scope.spawn(move || {
                        let mut worker = Worker::new(dp);
                        forward_pair(&mut worker, (2 * t + 1, 2 * t + 2), Duration::from_secs(2))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        if threads == 1 {
            one = total;
        }
        println!(
            "forwarding, {threads} thread(s) on disjoint port pairs: {:.1} M frames/s in all, {:.2} x one thread",
            total / 1e6,
            total / one
        );
    }
}

fn million_entry_table() {
    const ENTRIES: u32 = 1_000_000;
    let before = rss_kib();
    let fdb = MacTable::new(FdbConfig {
        aging: Duration::from_secs(300),
        max_entries: ENTRIES as usize,
        max_per_port: ENTRIES as usize,
        ..FdbConfig::default()
    });
    let vlan = VlanId::new(10).unwrap();
    for n in 0..ENTRIES {
        fdb.learn(Time::ZERO, vlan, mac(n), PortId(n % 64));
    }
    let grown_mib = (rss_kib().saturating_sub(before)) as f64 / 1024.0;
    assert_eq!(fdb.len(), ENTRIES as usize);
    let mut n = 0u32;
    let mut hits = 0u64;
    let lookups = rate(Duration::from_secs(2), 1, || {
        // A stride through the table, so lookups do not stay in cache.
        n = n.wrapping_add(7919) % ENTRIES;
        hits += u64::from(fdb.lookup(Time::from_secs(1), vlan, mac(n)).is_some());
    });
    println!(
        "fdb: {ENTRIES} entries in {grown_mib:.1} MiB; {:.1} M lookups/s",
        lookups / 1e6
    );
    black_box(hits);
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("core benchmarks: run with `cargo bench -p switchyard --bench core`");
        return;
    }
    if std::env::args().any(|a| a == "--capture") {
        capture();
        return;
    }
    forwarding();
    forwarding_threads();
    million_entry_table();
}

/// What a capture of the egress port costs the thread that forwards: three rounds of
/// two seconds without a capture and two seconds with one, alternated.
fn capture() {
    use switchyard::capture::{CaptureTap, Directions, DEFAULT_BUDGET};
    let dp = learned_datapath(4);
    let mut worker = Worker::new(Arc::clone(&dp));
    let (mut without, mut with, mut lost) = (0.0, 0.0, 0);
    for _ in 0..3 {
        without += forward_pair(&mut worker, (1, 2), Duration::from_secs(2));
        let (tap, reader) = CaptureTap::new(Directions::Both, DEFAULT_BUDGET);
        dp.switch()
            .add_capture(PortId(2), Arc::clone(&tap))
            .unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let drain = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if reader.recv_timeout(Duration::from_millis(10)).is_some() {
                        n += 1;
                    }
                }
                n
            })
        };
        with += forward_pair(&mut worker, (1, 2), Duration::from_secs(2));
        dp.switch().remove_capture(PortId(2), &tap);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        black_box(drain.join().unwrap());
        lost += tap.lost();
    }
    println!(
        "capture: {:.1} M frames/s without, {:.1} M with a capture of the egress port ({:.2} x), {lost} frames lost to the full queue",
        without / 3e6,
        with / 3e6,
        with / without
    );
}
