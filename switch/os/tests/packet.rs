//! Host ports (`PacketPort`), link facts and link events against a veth pair whose ends
//! sit in two test namespaces, as root. Nothing touches the machine's own namespace.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::wire::VNET_HDR_LEN;
use switchyard_os::netns::{self, Netns, NetnsRef};
use switchyard_os::packet::{is_link_down, PacketError, PacketPort};
use switchyard_os::rtnl::{LinkEvent, LinkWatcher, Rtnl};

type Error = Box<dyn std::error::Error + Send + Sync>;
/// An 802.1Q/802.1ad tag: (TPID, TCI).
type Tag = (u16, u16);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// An experimental EtherType (IEEE 802 local), so no kernel stack answers test frames.
const TEST_ETHERTYPE: u16 = 0x88b5;
const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xbb];

/// A namespace named `syt-pkt-PID-N`, deleted on drop even when the test fails.
struct TestNs {
    name: String,
}

impl TestNs {
    fn new() -> TestNs {
        let name = format!(
            "syt-pkt-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        netns::create(&name).expect("create test namespace");
        TestNs { name }
    }

    fn open(&self) -> Netns {
        Netns::open(&NetnsRef::Named(self.name.clone())).expect("open test namespace")
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        let output = Command::new("ip").args(&full).output().expect("run ip");
        assert!(
            output.status.success(),
            "ip {}: {}",
            full.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn promiscuity(&self, ifname: &str) -> u32 {
        let shown = self.ip(&["-d", "link", "show", ifname]);
        let after = shown
            .split("promiscuity ")
            .nth(1)
            .unwrap_or_else(|| panic!("no promiscuity in {shown}"));
        after
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .expect("promiscuity count")
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if netns::delete(&self.name).is_err() {
            let _ = Command::new("ip")
                .args(["netns", "delete", &self.name])
                .status();
        }
    }
}

/// Namespace A with `p0`, namespace B with its peer `p1`, both up.
struct Pair {
    a: TestNs,
    b: TestNs,
}

fn pair() -> Pair {
    let a = TestNs::new();
    let b = TestNs::new();
    a.ip(&[
        "link", "add", "p0", "type", "veth", "peer", "name", "p1", "netns", &b.name,
    ]);
    a.ip(&["link", "set", "p0", "up"]);
    b.ip(&["link", "set", "p1", "up"]);
    Pair { a, b }
}

/// A wire image: a zero vnet header, then an Ethernet frame with `tags` ((TPID, TCI),
/// outermost first), the test EtherType and `payload`.
fn wire(tags: &[(u16, u16)], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; VNET_HDR_LEN];
    out.extend_from_slice(&MAC_B);
    out.extend_from_slice(&MAC_A);
    for (tpid, tci) in tags {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&tci.to_be_bytes());
    }
    out.extend_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Reads `port` until a wire image `want` accepts arrives, or `timeout` passes.
fn read_until(
    port: &PacketPort,
    timeout: Duration,
    mut want: impl FnMut(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 70_000];
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match port.read(&mut buf) {
            Ok(n) if want(&buf[..n]) => return Some(buf[..n].to_vec()),
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(err) => panic!("read failed: {err}"),
        }
    }
    None
}

fn read_marked(port: &PacketPort, marker: &[u8]) -> Option<Vec<u8>> {
    read_until(port, Duration::from_secs(2), |w| contains(w, marker))
}

#[test]
#[ignore = "needs root: makes namespaces and a veth pair; run by make test"]
fn frames_cross_both_ways_and_tags_are_restored() {
    let pair = pair();
    let a = PacketPort::open_in(&pair.a.open(), "p0").unwrap();
    let b = PacketPort::open_in(&pair.b.open(), "p1").unwrap();
    assert_eq!(a.name(), "p0");
    assert!(a.ifindex() > 0);

    // Each way, untagged: the frame arrives as written, after a vnet header.
    let sent = wire(&[], b"a-to-b untagged");
    assert_eq!(a.write(&sent).unwrap(), sent.len());
    let got = read_marked(&b, b"a-to-b untagged").expect("frame from A on B");
    assert_eq!(got[VNET_HDR_LEN..], sent[VNET_HDR_LEN..]);
    assert_eq!(got[1], 0, "gso_type of a plain frame");
    let sent = wire(&[], b"b-to-a untagged");
    b.write(&sent).unwrap();
    let got = read_marked(&a, b"b-to-a untagged").expect("frame from B on A");
    assert_eq!(got[VNET_HDR_LEN..], sent[VNET_HDR_LEN..]);

    // Tagged from the peer, in a mix that exercises both buffer layouts (after an
    // untagged frame, after a tagged one), 802.1ad outer tags, and priority bits.
    let cases: [(&[Tag], &[u8]); 6] = [
        (&[(0x8100, 10 | (3 << 13))], b"tagged vid 10 pcp 3"),
        (&[(0x8100, 20)], b"tagged vid 20"),
        (&[], b"untagged between"),
        (&[(0x88a8, 100), (0x8100, 30)], b"qinq 100 30"),
        (&[(0x8100, 4094)], b"tagged vid 4094"),
        (&[], b"untagged after"),
    ];
    for (tags, marker) in &cases {
        let sent = wire(tags, marker);
        b.write(&sent).unwrap();
        let got = read_marked(&a, marker)
            .unwrap_or_else(|| panic!("{} not read", String::from_utf8_lossy(marker)));
        assert_eq!(
            got[VNET_HDR_LEN..],
            sent[VNET_HDR_LEN..],
            "{}",
            String::from_utf8_lossy(marker)
        );
    }

    // Writes on a port are not read back on it.
    a.write(&wire(&[], b"own write")).unwrap();
    a.write(&wire(&[(0x8100, 10)], b"own tagged write"))
        .unwrap();
    assert!(read_marked(&b, b"own tagged write").is_some());
    assert!(
        read_until(&a, Duration::from_millis(300), |w| contains(w, b"own")).is_none(),
        "a port read its own write"
    );

    // A batch.
    let batch: Vec<Vec<u8>> = (0..5)
        .map(|i| wire(&[], format!("batch {i}").as_bytes()))
        .collect();
    let refs: Vec<&[u8]> = batch.iter().map(|w| w.as_slice()).collect();
    assert_eq!(a.write_batch(&refs).unwrap(), 5);
    for i in 0..5 {
        assert!(read_marked(&b, format!("batch {i}").as_bytes()).is_some());
    }
    assert_eq!(a.oversized(), 0);
    let stats = a.statistics().unwrap();
    assert_eq!(stats.dropped, 0, "{stats:?}");
}

#[test]
#[ignore = "needs root: makes namespaces and a veth pair; run by make test"]
fn promiscuous_only_while_open() {
    let pair = pair();
    assert_eq!(pair.a.promiscuity("p0"), 0);
    let port = PacketPort::open_in(&pair.a.open(), "p0").unwrap();
    // Counted, but not shown as the PROMISC flag: that flag is only the user's setting.
    assert_eq!(pair.a.promiscuity("p0"), 1);
    drop(port);
    assert_eq!(pair.a.promiscuity("p0"), 0);
    // Promiscuity the user set stays theirs.
    pair.a.ip(&["link", "set", "p0", "promisc", "on"]);
    let port = PacketPort::open_in(&pair.a.open(), "p0").unwrap();
    assert_eq!(pair.a.promiscuity("p0"), 2);
    drop(port);
    assert_eq!(pair.a.promiscuity("p0"), 1);
}

#[test]
#[ignore = "needs root: makes namespaces and a veth pair; run by make test"]
fn bad_names_are_refused() {
    let pair = pair();
    let ns = pair.a.open();
    let err = PacketPort::open_in(&ns, "nope0").unwrap_err();
    assert!(
        matches!(err, PacketError::NoSuchInterface(ref n) if n == "nope0"),
        "{err}"
    );
    assert!(err.to_string().contains("nope0"), "{err}");
    // p1 is in the other namespace.
    assert!(matches!(
        PacketPort::open_in(&ns, "p1").unwrap_err(),
        PacketError::NoSuchInterface(_)
    ));
    assert!(matches!(
        PacketPort::open_in(&ns, "much-too-long-name").unwrap_err(),
        PacketError::InvalidName(_)
    ));
}

/// A TCP/IPv4 super-frame as switchd would write it: vnet header with TSO and a
/// partial checksum, `tags`, IPv4 and TCP headers, `payload_len` bytes of payload.
fn tcp_super_frame(tags: &[(u16, u16)], payload_len: usize) -> Vec<u8> {
    let l2 = 14 + 4 * tags.len();
    let mut out = vec![0u8; VNET_HDR_LEN];
    out[0] = 1; // NEEDS_CSUM
    out[1] = 1; // GSO_TCPV4
    out[2..4].copy_from_slice(&((l2 + 40) as u16).to_ne_bytes());
    out[4..6].copy_from_slice(&1448u16.to_ne_bytes());
    out[6..8].copy_from_slice(&((l2 + 20) as u16).to_ne_bytes());
    out[8..10].copy_from_slice(&16u16.to_ne_bytes());
    out.extend_from_slice(&MAC_B);
    out.extend_from_slice(&MAC_A);
    for (tpid, tci) in tags {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&tci.to_be_bytes());
    }
    out.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (40 + payload_len) as u16;
    let mut ip = [
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 9, 9, 1, 10, 9, 9, 2,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let sum = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&ip);
    let tcp = [
        0x13, 0x88, 0x13, 0x89, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
    ];
    out.extend_from_slice(&tcp);
    out.extend((0..payload_len).map(|i| (i % 251) as u8));
    out
}

#[test]
#[ignore = "needs root: makes namespaces and a veth pair; run by make test"]
fn written_super_frames_arrive_whole() {
    let pair = pair();
    let a = PacketPort::open_in(&pair.a.open(), "p0").unwrap();
    let b = PacketPort::open_in(&pair.b.open(), "p1").unwrap();
    for tags in [vec![], vec![(0x8100u16, 30u16)]] {
        let sent = tcp_super_frame(&tags, 20_000);
        assert_eq!(a.write(&sent).unwrap(), sent.len(), "tags {tags:?}");
        let got = read_until(&b, Duration::from_secs(2), |w| w.len() > 2000)
            .unwrap_or_else(|| panic!("no super-frame with tags {tags:?}"));
        assert_eq!(got.len(), sent.len(), "tags {tags:?}");
        assert_eq!(got[VNET_HDR_LEN..], sent[VNET_HDR_LEN..], "tags {tags:?}");
        let l2 = 14 + 4 * tags.len();
        assert_eq!(got[1] & 0x7f, 1, "gso_type TCPV4");
        assert_eq!(u16::from_ne_bytes([got[4], got[5]]), 1448, "gso_size");
        assert_eq!(got[0] & 1, 1, "NEEDS_CSUM");
        assert_eq!(
            u16::from_ne_bytes([got[6], got[7]]) as usize,
            l2 + 20,
            "csum_start"
        );
        assert_eq!(u16::from_ne_bytes([got[8], got[9]]), 16, "csum_offset");
        assert_eq!(
            u16::from_ne_bytes([got[2], got[3]]) as usize,
            l2 + 40,
            "hdr_len"
        );
    }
    // Not segmented, but with a partial checksum (a TAP's locally generated frame), and
    // one marked DATA_VALID: both are taken, and the partial checksum stays partial.
    let mut small = tcp_super_frame(&[(0x8100, 40)], 100);
    small[1] = 0;
    small[2..6].fill(0);
    assert_eq!(a.write(&small).unwrap(), small.len());
    let got = read_until(&b, Duration::from_secs(2), |w| w.len() == small.len())
        .expect("small NEEDS_CSUM frame");
    assert_eq!(got[VNET_HDR_LEN..], small[VNET_HDR_LEN..]);
    assert_eq!((got[0] & 1, got[1]), (1, 0));
    assert_eq!(
        u16::from_ne_bytes([got[6], got[7]]),
        38,
        "csum_start past the tag"
    );
    let mut valid = wire(&[], b"data valid");
    valid[0] = 2;
    a.write(&valid).unwrap();
    assert!(read_marked(&b, b"data valid").is_some());
}

fn listen_in(ns: &Netns, addr: &str) -> TcpListener {
    let addr = addr.to_string();
    ns.run(|| Ok::<_, Error>(TcpListener::bind(addr)?))
        .expect("listen")
}

fn connect_in(ns: &Netns, addr: &str) -> TcpStream {
    let addr = addr.to_string();
    ns.run(|| Ok::<_, Error>(TcpStream::connect(addr)?))
        .expect("connect")
}

#[test]
#[ignore = "needs root: makes namespaces and a veth pair; run by make test"]
fn tso_from_the_peer_arrives_as_super_frames() {
    let pair = pair();
    pair.a.ip(&["addr", "add", "10.9.0.1/24", "dev", "p0"]);
    pair.b.ip(&["addr", "add", "10.9.0.2/24", "dev", "p1"]);
    let (a_ns, b_ns) = (pair.a.open(), pair.b.open());
    let port = PacketPort::open_in(&a_ns, "p0").unwrap();
    let listener = listen_in(&a_ns, "10.9.0.1:5201");
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut sink = vec![0u8; 1 << 16];
        let mut total = 0;
        while let Ok(n) = conn.read(&mut sink) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    let done = Arc::new(AtomicBool::new(false));
    let mut conn = connect_in(&b_ns, "10.9.0.1:5201");
    let sender = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let block = vec![0x5au8; 1 << 20];
            for _ in 0..16 {
                conn.write_all(&block).unwrap();
            }
            drop(conn);
            done.store(true, Ordering::Relaxed);
        })
    };
    let mut buf = vec![0u8; 70_000];
    let (mut frames, mut gso_frames, mut largest) = (0, 0, 0);
    let mut csum_starts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
        match port.read(&mut buf) {
            Ok(n) => {
                frames += 1;
                largest = largest.max(n - VNET_HDR_LEN);
                if buf[1] != 0 {
                    gso_frames += 1;
                    if buf[0] & 1 != 0 && csum_starts.len() < 4 {
                        csum_starts.push(u16::from_ne_bytes([buf[6], buf[7]]));
                    }
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(50))
            }
            Err(err) => panic!("read: {err}"),
        }
    }
    sender.join().unwrap();
    assert_eq!(receiver.join().unwrap(), 16 << 20);
    eprintln!(
        "read {frames} frames from the peer's TCP stream: {gso_frames} GSO, largest {largest} bytes, csum_start {csum_starts:?}, kernel {:?}",
        port.statistics().unwrap()
    );
    assert!(gso_frames > 0 && largest > 1514, "no super-frames");
    // Ethernet 14 + IPv4 20: the TCP header's offset.
    assert!(csum_starts.iter().all(|&s| s == 34), "{csum_starts:?}");
}

/// Waits up to 3 s for an event about `ifindex` that `want` accepts, polling the
/// watcher's descriptor as an event loop would.
fn wait_event(
    watcher: &mut LinkWatcher,
    ifindex: u32,
    want: impl Fn(&LinkEvent) -> bool,
) -> LinkEvent {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let mut fds = [PollFd::new(watcher.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(100u16));
        for event in watcher.events() {
            if event.ifindex == ifindex && want(&event) {
                return event;
            }
            seen.push(event);
        }
    }
    panic!("no matching event for index {ifindex}; saw {seen:?}");
}

#[test]
#[ignore = "needs root: makes namespaces and a veth pair; run by make test"]
fn link_watcher_sees_down_up_and_delete() {
    let pair = pair();
    let a_ns = pair.a.open();
    let mut watcher = LinkWatcher::open_in(&a_ns).unwrap();
    let port = PacketPort::open_in(&a_ns, "p0").unwrap();
    let peer = PacketPort::open_in(&pair.b.open(), "p1").unwrap();
    let index = port.ifindex();
    assert!(watcher.events().iter().all(|e| e.ifindex != index || e.up));

    pair.a.ip(&["link", "set", "p0", "down"]);
    let event = wait_event(&mut watcher, index, |e| !e.up);
    assert_eq!((event.name.as_str(), event.gone), ("p0", false));
    let mut buf = vec![0u8; 70_000];
    let read = port.read(&mut buf);
    eprintln!("read after down: {read:?}");
    assert!(matches!(&read, Err(err) if is_link_down(err)), "{read:?}");
    let write = port.write(&wire(&[], b"while down"));
    eprintln!("write while down: {write:?}");
    assert!(matches!(&write, Err(err) if is_link_down(err)), "{write:?}");

    pair.a.ip(&["link", "set", "p0", "up"]);
    let event = wait_event(&mut watcher, index, |e| e.up);
    assert_eq!(event.name, "p0");
    peer.write(&wire(&[], b"after up again")).unwrap();
    assert!(read_marked(&port, b"after up again").is_some());

    // The peer going down takes the carrier away: not running.
    pair.b.ip(&["link", "set", "p1", "down"]);
    wait_event(&mut watcher, index, |e| !e.up && !e.gone);
    pair.b.ip(&["link", "set", "p1", "up"]);
    wait_event(&mut watcher, index, |e| e.up);

    // Renamed: same index, new name.
    pair.a.ip(&["link", "set", "p0", "down"]);
    pair.a.ip(&["link", "set", "p0", "name", "p0x"]);
    wait_event(&mut watcher, index, |e| e.name == "p0x");
    pair.a.ip(&["link", "set", "p0x", "up"]);
    wait_event(&mut watcher, index, |e| e.up);

    pair.a.ip(&["link", "del", "p0x"]);
    let event = wait_event(&mut watcher, index, |e| e.gone);
    assert_eq!((event.name.as_str(), event.up), ("p0x", false));
    let read = port.read(&mut buf);
    let write = port.write(&wire(&[], b"after delete"));
    eprintln!("after delete: read {read:?}, write {write:?}");
    assert!(matches!(&write, Err(err) if is_link_down(err)), "{write:?}");
}

#[test]
#[ignore = "needs root: makes namespaces and a veth pair; run by make test"]
fn link_facts_for_refusing_bad_ports() {
    let pair = pair();
    pair.a.ip(&["link", "add", "br0", "type", "bridge"]);
    pair.a.ip(&["link", "set", "p0", "master", "br0"]);
    netns::run_in(&NetnsRef::Named(pair.a.name.clone()), || {
        let mut rtnl = Rtnl::open()?;
        let lo = rtnl.link("lo")?;
        assert!(
            lo.loopback && lo.master.is_none() && lo.kind.is_none(),
            "{lo:?}"
        );
        let br = rtnl.link("br0")?;
        assert_eq!(br.kind.as_deref(), Some("bridge"));
        assert!(!br.loopback && br.master.is_none());
        let p0 = rtnl.link("p0")?;
        assert_eq!(p0.kind.as_deref(), Some("veth"));
        assert_eq!(p0.master, Some(br.index));
        assert!(p0.up && p0.oper_up && !p0.loopback, "{p0:?}");
        assert!(rtnl.links()?.iter().any(|l| l.index == br.index));
        Ok::<_, Error>(())
    })
    .unwrap();
    pair.b.ip(&["link", "set", "p1", "down"]);
    netns::run_in(&NetnsRef::Named(pair.a.name.clone()), || {
        let mut rtnl = Rtnl::open()?;
        let p0 = rtnl.link("p0")?;
        assert!(p0.up && !p0.oper_up, "{p0:?}");
        Ok::<_, Error>(())
    })
    .unwrap();
}

#[test]
#[ignore = "needs root: makes namespaces and veth pairs; run by make test"]
fn link_watcher_recovers_from_an_overflow() {
    let ns = TestNs::new();
    let names: Vec<String> = (0..24).map(|i| format!("v{i}")).collect();
    for name in &names {
        ns.ip(&[
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            &format!("w{name}"),
        ]);
    }
    let indexes: Vec<u32> = netns::run_in(&NetnsRef::Named(ns.name.clone()), || {
        let mut rtnl = Rtnl::open()?;
        let mut indexes = Vec::new();
        for name in &names {
            indexes.push(rtnl.link(name)?.index);
            indexes.push(rtnl.link(&format!("w{name}"))?.index);
        }
        Ok::<_, Error>(indexes)
    })
    .unwrap();
    // The watcher knows them all; then its queue shrinks to the smallest the kernel
    // allows, so that the burst below overflows it.
    let mut watcher = LinkWatcher::open_in(&ns.open()).unwrap();
    nix::sys::socket::setsockopt(&watcher.as_fd(), nix::sys::socket::sockopt::RcvBuf, &0).unwrap();
    for name in &names {
        ns.ip(&["link", "set", name, "up"]);
    }
    for name in &names {
        ns.ip(&["link", "del", name]);
    }
    // Whatever was lost, the last word on every interface is that it is gone.
    let mut last = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        for event in watcher.events() {
            last.insert(event.ifindex, event);
        }
        if indexes.iter().all(|i| last.get(i).is_some_and(|e| e.gone)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for index in &indexes {
        let event = last.get(index);
        assert!(event.is_some_and(|e| e.gone), "index {index}: {event:?}");
    }
}
