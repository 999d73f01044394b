//! `cargo bench -p switchyard --bench core`: the forwarding core alone, in process, on
//! one core. Prints what it measured; asserts nothing (speed lives in benchmarks).
//!
//! * forwarding: 64-byte frames between learned unicast hosts on access ports, through
//!   `Switch::process` and `Switch::execute` (the same calls switchd makes), with a
//!   `send` that only counts;
//! * the MAC table at 1 million entries: memory (process RSS growth) and lookups/s.

use std::hint::black_box;
use std::time::{Duration, Instant};

use switchyard::fdb::{FdbConfig, MacTable};
use switchyard::sim::{access, frame};
use switchyard::wire::{MacAddr, PacketBuf, VlanId};
use switchyard::{PortId, Switch, Time};

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

fn forwarding() {
    const HOSTS: u32 = 16;
    let mut switch = Switch::new(FdbConfig::default());
    for p in 0..HOSTS {
        switch.set_port(PortId(p), access(10));
    }
    // 64-byte frames (60 + 4 bytes FCS on a real wire), host p -> host p+1.
    let frames: Vec<PacketBuf> = (0..HOSTS)
        .map(|p| PacketBuf::from_wire(&frame(mac((p + 1) % HOSTS), mac(p), None, b""), false))
        .collect();
    // Learn every host first: from here on it is all known unicast.
    for (p, f) in frames.iter().enumerate() {
        switch.process(Time::ZERO, PortId(p as u32), f.frame());
    }
    let mut packets = frames;
    let mut sent = 0u64;
    let mut i = 0usize;
    let now = Time::from_secs(1);
    let per_second = rate(Duration::from_secs(2), 1, || {
        let p = i % HOSTS as usize;
        i += 1;
        let packet = &mut packets[p];
        let decision = switch.process(now, PortId(p as u32), packet.frame());
        switch.execute(decision, packet, |_, _, wire| {
            sent += black_box(wire.frame().len()) as u64;
            Ok(())
        });
    });
    println!(
        "forwarding: {:.1} M learned-unicast 64-byte frames/s on one core",
        per_second / 1e6
    );
    black_box(sent);
}

fn million_entry_table() {
    const ENTRIES: u32 = 1_000_000;
    let before = rss_kib();
    let mut fdb = MacTable::new(FdbConfig {
        aging: Duration::from_secs(300),
        max_entries: ENTRIES as usize,
        max_per_port: ENTRIES as usize,
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
    forwarding();
    million_entry_table();
}
