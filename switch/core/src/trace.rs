//! Packet trace: what the datapath would do with one frame, and why, step by step (the
//! anchor is Open vSwitch's `ofproto/trace`).
//!
//! A trace runs the frame through the same checks forwarding uses
//! ([`crate::forward::Switch::trace`], [`crate::datapath::Datapath::trace`]) without
//! sending, learning or counting anything: the FDB is only looked at, the router's
//! verdict comes from a copy of the router, and storm control's buckets are not drawn
//! from. What the trace says learning *would* change is the FDB's view at that moment.
//!
//! [`FrameSpec`] builds the test frame `swctl trace` describes with flags; [`summarize`]
//! says in one line what a frame is (the trace's and `swctl capture`'s).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::port::{PortId, PortMode};
use crate::wire::checksum;
use crate::wire::{
    emit_header, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr, MacAddr, TcpPacket,
    VlanId,
};

/// One frame's way through the datapath.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    pub in_port: PortId,
    pub frame_len: usize,
    pub steps: Vec<Step>,
    /// Copies the frame would leave as, to ports, peers or up the uplink (0: dropped, or
    /// taken by the router).
    pub copies: usize,
    /// Names of the ports the steps mention (the controller fills them in).
    #[serde(default)]
    pub port_names: BTreeMap<PortId, String>,
}

/// What learning the source address would change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum LearnChange {
    /// A new entry.
    New,
    /// The entry already points at this port: its age is refreshed.
    Refresh,
    /// The entry points at another port: it would move here.
    Move { from: PortId },
    /// A static entry: learning never changes it.
    Static { port: PortId },
}

/// What the FDB says about the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum LookupResult {
    Broadcast,
    Multicast,
    Known { port: PortId },
    Unknown,
}

/// One step of a [`Trace`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// The port the frame came in on.
    Ingress {
        port: PortId,
        mode: PortMode,
        up: bool,
        port_security: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        storm_limit_pps: Option<u32>,
    },
    /// What the frame is.
    Parse {
        src: MacAddr,
        dst: MacAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<u16>,
        summary: String,
    },
    /// The VLAN it belongs to, by the port's mode.
    Classify { vlan: VlanId, tagged: bool },
    /// Port security let its sources in.
    PortSecurity,
    Learn {
        vlan: VlanId,
        mac: MacAddr,
        port: PortId,
        #[serde(flatten)]
        change: LearnChange,
    },
    Lookup {
        vlan: VlanId,
        mac: MacAddr,
        #[serde(flatten)]
        result: LookupResult,
    },
    /// Sent to every port of the VLAN but the ingress (storm control first, if limited).
    Flood {
        vlan: VlanId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        storm_limit_pps: Option<u32>,
    },
    /// An ARP request the router answers for a remote endpoint: only the router gets it.
    ArpSuppression { target: Ipv4Addr },
    /// A copy for a local port, tagged as that port needs.
    Output {
        port: PortId,
        vlan: VlanId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<VlanId>,
    },
    /// A copy for a VTEP peer, encapsulated in VXLAN.
    Encapsulate {
        port: PortId,
        remote: SocketAddr,
        vni: u32,
        path_mtu: u32,
        inner_len: usize,
        max_inner_len: usize,
    },
    /// A copy for the router, and what it decides.
    Router {
        vlan: VlanId,
        verdict: String,
        /// Why the router drops it, as its counters name the reason.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dropped: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        answers: Vec<String>,
    },
    /// Not forwarded (further): the datapath's drop reason, as its counters name it.
    Drop {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<PortId>,
        reason: String,
    },
}

impl Trace {
    fn port(&self, id: PortId) -> String {
        match self.port_names.get(&id) {
            Some(name) => format!("port {id} ({name})"),
            None => format!("port {id}"),
        }
    }

    /// The trace's last word: forwarded as how many copies, or dropped why.
    pub fn outcome(&self) -> String {
        let dropped = self.steps.iter().rev().find_map(|s| match s {
            Step::Drop { reason, .. } => Some(format!("dropped ({reason})")),
            Step::Router {
                dropped: Some(reason),
                ..
            } => Some(format!("dropped by the router ({reason})")),
            _ => None,
        });
        match (self.copies, dropped) {
            (0, Some(dropped)) => dropped,
            (0, None) => "taken by the router".to_string(),
            (1, _) => "forwarded: 1 copy".to_string(),
            (n, _) => format!("forwarded: {n} copies"),
        }
    }

    fn describe(&self, step: &Step) -> String {
        match step {
            Step::Ingress {
                port,
                mode,
                up,
                port_security,
                storm_limit_pps,
            } => {
                let mut text = format!(
                    "ingress: {}, {mode}, {}",
                    self.port(*port),
                    if *up { "up" } else { "down" }
                );
                if *port_security {
                    text.push_str(", port security on");
                }
                if let Some(pps) = storm_limit_pps {
                    text.push_str(&format!(", storm limit {pps} pps"));
                }
                text
            }
            Step::Parse {
                src,
                dst,
                tag,
                summary,
            } => {
                let tag = match tag {
                    Some(vid) => format!("802.1Q tag {vid}"),
                    None => "untagged".to_string(),
                };
                format!("frame: {src} > {dst}, {tag}: {summary}")
            }
            Step::Classify { vlan, tagged } => format!(
                "classify: VLAN {vlan} ({})",
                if *tagged {
                    "by its tag, which the port allows"
                } else {
                    "untagged: the port's untagged VLAN"
                }
            ),
            Step::PortSecurity => "port security: its MAC and addresses are the port's".into(),
            Step::Learn {
                vlan,
                mac,
                port,
                change,
            } => {
                let what = match change {
                    LearnChange::New => format!("would add {mac} on {}", self.port(*port)),
                    LearnChange::Refresh => {
                        format!("{mac} is already on {}: would refresh it", self.port(*port))
                    }
                    LearnChange::Move { from } => format!(
                        "{mac} is on {}: would move it to {}",
                        self.port(*from),
                        self.port(*port)
                    ),
                    LearnChange::Static { port } => {
                        format!("{mac} has a static entry on {}: unchanged", self.port(*port))
                    }
                };
                format!("learn: VLAN {vlan}: {what}")
            }
            Step::Lookup { vlan, mac, result } => match result {
                LookupResult::Broadcast => format!("lookup: {mac} is broadcast"),
                LookupResult::Multicast => format!("lookup: {mac} is multicast"),
                LookupResult::Known { port } => {
                    format!("lookup: VLAN {vlan} {mac} is on {}", self.port(*port))
                }
                LookupResult::Unknown => format!("lookup: VLAN {vlan} {mac} is unknown"),
            },
            Step::Flood {
                vlan,
                storm_limit_pps,
            } => match storm_limit_pps {
                Some(pps) => format!(
                    "flood: every port of VLAN {vlan} but the ingress (storm control: at most {pps} pps from this port)"
                ),
                None => format!("flood: every port of VLAN {vlan} but the ingress"),
            },
            Step::ArpSuppression { target } => format!(
                "ARP suppression: the router answers for {target} (a remote endpoint): only the router gets the request"
            ),
            Step::Output { port, tag, .. } => match tag {
                Some(tag) => format!("output: {}, tagged {tag}", self.port(*port)),
                None => format!("output: {}, untagged", self.port(*port)),
            },
            Step::Encapsulate {
                port,
                remote,
                vni,
                path_mtu,
                inner_len,
                max_inner_len,
            } => {
                let fits = if inner_len <= max_inner_len {
                    "fits".to_string()
                } else {
                    format!("too big (at most {max_inner_len})")
                };
                format!(
                    "output: {}: VXLAN VNI {vni} to {remote}, inner frame {inner_len} bytes, path MTU {path_mtu}: {fits}",
                    self.port(*port)
                )
            }
            Step::Router {
                vlan,
                verdict,
                answers,
                ..
            } => {
                let mut text = format!("router: from VLAN {vlan}: {verdict}");
                for answer in answers {
                    text.push_str(&format!("; answers {answer}"));
                }
                text
            }
            Step::Drop { port, reason } => match port {
                Some(port) => format!("drop: {reason} (a drop of {})", self.port(*port)),
                None => format!("drop: {reason}"),
            },
        }
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "trace: a frame of {} bytes into {}",
            self.frame_len,
            self.port(self.in_port)
        )?;
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "{:>3}. {}", i + 1, self.describe(step))?;
        }
        write!(f, "result: {}", self.outcome())
    }
}

/// The transport of a [`FrameSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

/// A test frame described by its fields, as `swctl trace` takes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    pub src: MacAddr,
    pub dst: MacAddr,
    /// An 802.1Q tag with this VLAN id (0 for a priority tag).
    pub vlan: Option<u16>,
    /// IPv4 source and destination; without them the frame carries no IP.
    pub ipv4: Option<(Ipv4Addr, Ipv4Addr)>,
    pub proto: Option<Proto>,
    pub dport: Option<u16>,
    pub sport: Option<u16>,
    /// The frame's whole length (its tag included), reached with zeros after the
    /// headers (as payload of the transport); without it, the headers padded to 60.
    pub len: Option<usize>,
}

/// Why a [`FrameSpec`] makes no frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("--proto, --sport and --dport need --ipv4-src and --ipv4-dst")]
    TransportWithoutIp,
    #[error("--sport and --dport need --proto tcp or udp")]
    PortsWithoutTransport,
    #[error("VLAN {0} is not a VLAN id (0-4095)")]
    BadVlan(u16),
    #[error("a frame of {len} bytes cannot hold its headers: give --len {min} or more")]
    TooShort { len: usize, min: usize },
    #[error("a frame of {len} bytes is more than one IPv4 packet can carry: at most {max}")]
    TooLong { len: usize, max: usize },
}

/// The ethertype of a frame without IP: IEEE's "local experimental" (802 §9.2).
pub const EXPERIMENTAL_ETHERTYPE: u16 = 0x88b5;

impl FrameSpec {
    /// A frame from `src` to `dst` and nothing more: untagged, no IP, 60 bytes. Other
    /// fields go on top of it: `FrameSpec { vlan: Some(10), ..FrameSpec::new(a, b) }`.
    pub fn new(src: MacAddr, dst: MacAddr) -> FrameSpec {
        FrameSpec {
            src,
            dst,
            vlan: None,
            ipv4: None,
            proto: None,
            dport: None,
            sport: None,
            len: None,
        }
    }

    /// The frame: Ethernet (tagged if asked), then IPv4 with a TCP SYN, a UDP datagram
    /// or an ICMP echo request (checksums right), or no IP at all (ethertype
    /// [`EXPERIMENTAL_ETHERTYPE`]); padded to Ethernet's minimum of 60 bytes.
    pub fn build(&self) -> Result<Vec<u8>, SpecError> {
        if self.ipv4.is_none() && (self.proto.is_some() || self.dport.is_some()) {
            return Err(SpecError::TransportWithoutIp);
        }
        if (self.dport.is_some() || self.sport.is_some())
            && !matches!(self.proto, Some(Proto::Tcp | Proto::Udp))
        {
            return Err(SpecError::PortsWithoutTransport);
        }
        let link = crate::wire::HEADER_LEN + if self.vlan.is_some() { 4 } else { 0 };
        let headers = match (self.ipv4, self.proto.unwrap_or(Proto::Icmp)) {
            (None, _) => link,
            (Some(_), Proto::Tcp) => link + 40,
            (Some(_), Proto::Udp | Proto::Icmp) => link + 28,
        };
        let max = link + usize::from(u16::MAX);
        let extra = match self.len {
            Some(len) if len < headers => return Err(SpecError::TooShort { len, min: headers }),
            Some(len) if len > max => return Err(SpecError::TooLong { len, max }),
            Some(len) => len - headers,
            None => 0,
        };
        let mut payload = Vec::new();
        let ethertype = match self.ipv4 {
            Some((src, dst)) => {
                let (protocol, transport) = self.transport(src, dst, extra);
                let mut ip = vec![0u8; 20];
                let repr = Ipv4Repr {
                    src,
                    dst,
                    protocol,
                    payload_len: transport.len(),
                    ttl: 64,
                    dont_frag: true,
                };
                // Checked above: the total length fits.
                let _ = repr.emit(&mut ip);
                payload.extend_from_slice(&ip);
                payload.extend_from_slice(&transport);
                EtherType::IPV4
            }
            None => {
                payload.resize(extra, 0);
                EtherType(EXPERIMENTAL_ETHERTYPE)
            }
        };
        let mut frame = vec![0u8; crate::wire::HEADER_LEN];
        match self.vlan {
            Some(vid) if vid > 4095 => return Err(SpecError::BadVlan(vid)),
            Some(vid) => {
                emit_header(&mut frame, self.dst, self.src, EtherType::VLAN);
                frame.extend_from_slice(&vid.to_be_bytes());
                frame.extend_from_slice(&ethertype.0.to_be_bytes());
            }
            None => emit_header(&mut frame, self.dst, self.src, ethertype),
        }
        frame.extend_from_slice(&payload);
        if frame.len() < 60 {
            frame.resize(60, 0);
        }
        Ok(frame)
    }

    /// The transport header and `extra` bytes of zeros after it, checksummed.
    fn transport(&self, src: Ipv4Addr, dst: Ipv4Addr, extra: usize) -> (IpProtocol, Vec<u8>) {
        let sport = self.sport.unwrap_or(40000);
        let dport = self.dport.unwrap_or(80);
        let pseudo = |protocol: IpProtocol, len: usize| {
            checksum::pseudo_header_v4(src.octets(), dst.octets(), protocol.0, len as u16)
        };
        let fill = |segment: &mut [u8], at: usize, start: u16| {
            let sum = checksum::add(start, checksum::sum(segment));
            let mut value = !sum;
            if value == 0 && at == 6 {
                // UDP: a computed zero is sent as all ones (RFC 768).
                value = 0xffff;
            }
            segment[at..at + 2].copy_from_slice(&value.to_be_bytes());
        };
        match self.proto.unwrap_or(Proto::Icmp) {
            Proto::Tcp => {
                let mut tcp = vec![0u8; 20 + extra];
                tcp[0..2].copy_from_slice(&sport.to_be_bytes());
                tcp[2..4].copy_from_slice(&dport.to_be_bytes());
                tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
                tcp[12] = 5 << 4;
                tcp[13] = 0x02; // SYN
                tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
                fill(&mut tcp, 16, pseudo(IpProtocol::TCP, 20 + extra));
                (IpProtocol::TCP, tcp)
            }
            Proto::Udp => {
                let mut udp = vec![0u8; 8 + extra];
                udp[0..2].copy_from_slice(&sport.to_be_bytes());
                udp[2..4].copy_from_slice(&dport.to_be_bytes());
                udp[4..6].copy_from_slice(&((8 + extra) as u16).to_be_bytes());
                fill(&mut udp, 6, pseudo(IpProtocol::UDP, 8 + extra));
                (IpProtocol::UDP, udp)
            }
            Proto::Icmp => {
                let mut icmp = vec![0u8; 8 + extra];
                icmp[0] = 8; // echo request
                icmp[4..6].copy_from_slice(&0x5359u16.to_be_bytes());
                icmp[6..8].copy_from_slice(&1u16.to_be_bytes());
                fill(&mut icmp, 2, 0);
                (IpProtocol::ICMP, icmp)
            }
        }
    }
}

/// One line on what `frame` (Ethernet) is: ARP, IPv4 with its transport, or its
/// ethertype. Never panics on a frame that is short or malformed; says so instead.
pub fn summarize(frame: &[u8]) -> String {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return format!("{} bytes, too short for Ethernet", frame.len());
    };
    let tag = match eth.tci() {
        Some(tci) => format!("vlan {} ", tci.vid()),
        None => String::new(),
    };
    format!(
        "{tag}{}",
        summarize_payload(eth.payload_ethertype(), eth.payload())
    )
}

/// What the payload of a frame is, by its ethertype (the tag is not repeated).
pub(crate) fn summarize_payload(ethertype: EtherType, payload: &[u8]) -> String {
    match ethertype {
        EtherType::ARP => {
            use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr};
            let parsed = ArpPacket::new_checked(payload).and_then(|p| ArpRepr::parse(&p));
            match parsed {
                Ok(ArpRepr::EthernetIpv4 {
                    operation,
                    source_hardware_addr,
                    source_protocol_addr,
                    target_protocol_addr,
                    ..
                }) => match operation {
                    ArpOperation::Request => {
                        format!("ARP who-has {target_protocol_addr} tell {source_protocol_addr}")
                    }
                    ArpOperation::Reply => {
                        format!("ARP reply {source_protocol_addr} is-at {source_hardware_addr}")
                    }
                    _ => "ARP (other operation)".to_string(),
                },
                _ => "ARP, malformed".to_string(),
            }
        }
        EtherType::IPV4 => match Ipv4Packet::new_checked(payload) {
            Ok(ip) => {
                let (src, dst) = (ip.src_addr(), ip.dst_addr());
                let transport = ip.payload();
                let detail = match ip.protocol() {
                    IpProtocol::TCP => match TcpPacket::new_checked(transport) {
                        Ok(tcp) => format!(
                            "TCP {src}:{} > {dst}:{} flags {:?}",
                            tcp.src_port(),
                            tcp.dst_port(),
                            tcp.flags()
                        ),
                        Err(_) => format!("TCP {src} > {dst}, truncated"),
                    },
                    IpProtocol::UDP => match transport.get(..4) {
                        Some(ports) => format!(
                            "UDP {src}:{} > {dst}:{}",
                            u16::from_be_bytes([ports[0], ports[1]]),
                            u16::from_be_bytes([ports[2], ports[3]])
                        ),
                        None => format!("UDP {src} > {dst}, truncated"),
                    },
                    IpProtocol::ICMP => match transport.first() {
                        Some(0) => format!("ICMP echo reply {src} > {dst}"),
                        Some(8) => format!("ICMP echo request {src} > {dst}"),
                        Some(3) => format!("ICMP unreachable {src} > {dst}"),
                        Some(11) => format!("ICMP time exceeded {src} > {dst}"),
                        Some(kind) => format!("ICMP type {kind} {src} > {dst}"),
                        None => format!("ICMP {src} > {dst}, truncated"),
                    },
                    other => format!("IPv4 {src} > {dst} protocol {}", other.0),
                };
                format!("{detail}, {} bytes of IP", ip.total_len())
            }
            Err(_) => "IPv4, malformed".to_string(),
        },
        EtherType::IPV6 => "IPv6".to_string(),
        other => format!("ethertype {:#06x}", other.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, last])
    }

    fn spec() -> FrameSpec {
        FrameSpec::new(mac(1), mac(2))
    }

    #[test]
    fn a_spec_without_ip_is_an_experimental_frame_of_60_bytes() {
        let frame = spec().build().unwrap();
        assert_eq!(frame.len(), 60);
        assert_eq!(&frame[0..6], &mac(2).0);
        assert_eq!(&frame[6..12], &mac(1).0);
        assert_eq!(&frame[12..14], &EXPERIMENTAL_ETHERTYPE.to_be_bytes());
        assert_eq!(summarize(&frame), "ethertype 0x88b5");
    }

    #[test]
    fn a_tcp_spec_is_a_valid_syn_that_etherparse_reads() {
        let frame = FrameSpec {
            vlan: Some(20),
            ipv4: Some(("10.0.0.2".parse().unwrap(), "10.0.1.3".parse().unwrap())),
            proto: Some(Proto::Tcp),
            dport: Some(443),
            ..spec()
        }
        .build()
        .unwrap();
        let parsed = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &parsed.net else {
            panic!("no IPv4: {parsed:?}");
        };
        assert_eq!(ip.header().source(), [10, 0, 0, 2]);
        let Some(etherparse::TransportSlice::Tcp(tcp)) = &parsed.transport else {
            panic!("no TCP");
        };
        assert_eq!(tcp.destination_port(), 443);
        assert!(tcp.syn());
        let sum = tcp
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), tcp.payload())
            .unwrap();
        assert_eq!(sum, tcp.checksum());
        assert!(ip.header().to_header().header_checksum == ip.header().header_checksum());
        let text = summarize(&frame);
        assert!(
            text.starts_with("vlan 20 TCP 10.0.0.2:40000 > 10.0.1.3:443"),
            "{text}"
        );
    }

    #[test]
    fn udp_and_icmp_specs_summarize() {
        let ips = Some(("10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap()));
        let udp = FrameSpec {
            ipv4: ips,
            proto: Some(Proto::Udp),
            dport: Some(53),
            ..spec()
        };
        assert!(summarize(&udp.build().unwrap()).starts_with("UDP 10.0.0.2:40000 > 10.0.0.1:53"));
        let icmp = FrameSpec {
            ipv4: ips,
            ..spec()
        };
        assert!(summarize(&icmp.build().unwrap()).starts_with("ICMP echo request"));
    }

    #[test]
    fn a_length_is_reached_inside_the_transport_with_checksums_right() {
        for (proto, len) in [(Proto::Udp, 1514), (Proto::Tcp, 9000), (Proto::Icmp, 1000)] {
            let frame = FrameSpec {
                ipv4: Some(("10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap())),
                proto: Some(proto),
                len: Some(len),
                ..spec()
            }
            .build()
            .unwrap();
            assert_eq!(frame.len(), len);
            let parsed = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = &parsed.net else {
                panic!("no IPv4");
            };
            assert_eq!(usize::from(ip.header().total_len()), len - 14);
            if let Some(etherparse::TransportSlice::Udp(udp)) = &parsed.transport {
                assert_eq!(usize::from(udp.length()), len - 14 - 20);
                let sum = udp
                    .to_header()
                    .calc_checksum_ipv4(&ip.header().to_header(), udp.payload())
                    .unwrap();
                assert_eq!(sum, udp.checksum());
            }
        }
        let plain = FrameSpec {
            len: Some(100),
            vlan: Some(7),
            ..spec()
        };
        assert_eq!(plain.build().unwrap().len(), 100);
        let short = FrameSpec {
            ipv4: Some(("10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap())),
            proto: Some(Proto::Tcp),
            len: Some(40),
            ..spec()
        };
        assert_eq!(short.build(), Err(SpecError::TooShort { len: 40, min: 54 }));
    }

    #[test]
    fn bad_specs_say_what_is_missing() {
        let ports = FrameSpec {
            dport: Some(80),
            ..spec()
        };
        assert_eq!(ports.build(), Err(SpecError::TransportWithoutIp));
        let icmp_ports = FrameSpec {
            ipv4: Some(("10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap())),
            proto: Some(Proto::Icmp),
            dport: Some(80),
            ..spec()
        };
        assert_eq!(icmp_ports.build(), Err(SpecError::PortsWithoutTransport));
        assert_eq!(
            FrameSpec {
                vlan: Some(5000),
                ..spec()
            }
            .build(),
            Err(SpecError::BadVlan(5000))
        );
    }

    #[test]
    fn summaries_never_panic_on_short_frames() {
        for len in 0..80 {
            let mut frame = vec![0u8; len];
            if len >= 14 {
                frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            }
            let _ = summarize(&frame);
            if len >= 14 {
                frame[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
                let _ = summarize(&frame);
            }
        }
    }
}
