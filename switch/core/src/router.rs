//! switchd's built-in IPv4 router: the pure core.
//!
//! Each named *network* is one VLAN with an IPv4 subnet and a gateway address that belongs
//! to this router (an [`Interface`]). The router sits on a switch port that is a member of
//! every network's VLAN, and on an *uplink*: a TUN device in switchd's namespace that
//! carries raw IPv4 packets (no link header) to and from the host. [`Router::from_switch`]
//! takes a frame the switch delivered (untagged, with the VLAN it came from);
//! [`Router::from_uplink`] takes a packet from the host. Both return a [`Verdict`] about
//! that packet, edit it in place when it is forwarded, and push the packets the router
//! originates (ARP, ICMP, released held packets) onto `out`.
//!
//! [`crate::wire`]'s views parse and emit Ethernet, IPv4 and ICMP (its
//! [`Icmpv4Error`] builds the ICMP errors and decides which
//! packets never get one); smoltcp's `wire` module parses and emits ARP. This module is
//! the policy. It performs no I/O and never reads a clock: time is an argument.
//!
//! # Contract
//!
//! * **No panics** on any input bytes; every read is length-checked.
//! * **What gets touched.** A forwarded packet has its TTL decremented and its IPv4 header
//!   checksum updated incrementally (RFC 1624), nothing else: the L4 checksum may be
//!   partial (offload) and GSO super-packets up to 64 KiB pass as they are. Bytes after
//!   the IPv4 total length (Ethernet padding) are ignored, never rejected. A total length
//!   of 0 (BIG TCP beyond 64 KiB) is malformed.
//! * **IPv4 checks**, in both directions: version 4, IHL ≥ 5, header ≤ total length ≤
//!   buffer, valid header checksum; otherwise `Malformed`.
//! * **From the switch.** A frame shorter than an Ethernet header (or than the 802.1Q tag
//!   its EtherType announces) is `Malformed`. An unknown VLAN, or a destination MAC that
//!   is neither broadcast nor the interface's MAC, is `NotForRouter` (the switch floods
//!   unknown unicast to the router's port too). A multicast or zero source MAC is
//!   `Malformed`. Then:
//!   * *ARP* is answered when it asks for the interface's gateway (a unicast reply to the
//!     sender, from the interface's MAC), and learned from (see Neighbours). Other ARP is
//!     `Consumed` silently; non-Ethernet/IPv4 ARP is `Malformed`.
//!   * *IPv4* must be addressed to the interface's MAC (broadcast IPv4 is `NotForRouter`).
//!     Its source must be a host address of the interface's subnet, not the gateway, else
//!     `SpoofedSource`. By destination, first match wins:
//!     the gateway: an ICMP echo request is answered (`Consumed`); with DNS on
//!     ([`Router::set_dns`]) UDP to port 53 is [`RouterOutput::Dns`] and TCP to port 53
//!     [`RouterOutput::DnsTcp`] (`Consumed`, unfragmented and from a unicast source;
//!     L4 checksums unchecked); anything else is `ToGateway`; the subnet's network or
//!     broadcast address: `InvalidDestination`; another address of the same subnet:
//!     `SameNetwork` (it is on-link, no routing needed);
//!     another network's subnet or gateway: `Isolated` (Docker's isolation between
//!     networks); a non-routable address (unspecified, loopback, link-local, multicast,
//!     broadcast, 240/4): `InvalidDestination`; otherwise, if the network has no uplink
//!     (`--internal`): `NoUplink`; TTL ≤ 1: `TtlExpired`, with an ICMP time exceeded to
//!     the sender in `out` unless RFC 1812 §4.3.2.7 forbids one (an ICMP error, a
//!     fragment other than the first, a broadcast or multicast destination, a source that
//!     is not a unicast host: `switchyard_wire::icmpv4::may_answer`); else TTL is
//!     decremented and the verdict is `ToUplink`.
//!   * Other ethertypes (IPv6...) are `UnsupportedProtocol`.
//! * **From the uplink.** The interface whose subnet contains the destination (longest
//!   prefix; ties: lowest VLAN) routes it; none is `NoRoute`, one without uplink is
//!   `NoUplink`. The gateway answers ICMP echo with a reply to the uplink (`Consumed`),
//!   anything else is `ToGateway`; the network and broadcast addresses are
//!   `InvalidDestination`; TTL ≤ 1 is `TtlExpired` (time exceeded to the uplink, by the
//!   same rule as from the switch). A known
//!   neighbour gets `ToSwitch` with the Ethernet addresses to prepend, TTL decremented. The
//!   uplink is the host's own stack, so sources are not checked.
//! * **Unresolved next hops.** An unknown neighbour gets an ARP request (broadcast, from
//!   the gateway), at most one per address per [`ARP_RETRY`]. If the caller allows it
//!   (`can_hold`), the packet is copied, TTL decremented, into a queue of
//!   [`HOLD_PER_ADDRESS`] per address (a full queue drops its oldest, as Linux's
//!   `unres_qlen`) and the verdict is `Held`; else `Unresolved`. At most
//!   [`MAX_UNRESOLVED`] addresses are pending; beyond that the one asked about longest ago
//!   is given up (its packets count as `HoldQueueFull`). Held packets are released as
//!   [`RouterOutput::ToSwitch`] frames when the address resolves (by ARP, or by the next
//!   packet to it once a static neighbour was set), and dropped as `Unresolved` after
//!   [`HOLD_TIME`].
//! * **Neighbours** are (VLAN, IPv4) → MAC. *Static* ones (endpoints whose MAC switchd
//!   assigned) never age and ARP never overwrites them. *Learned* ones come from any ARP
//!   request or reply on the VLAN whose sender is a host address of the subnet (not
//!   0.0.0.0 probes, not the gateway) with a unicast MAC; each ARP from the sender
//!   reconfirms the entry. A learned entry is unusable [`NEIGHBOR_REACHABLE`] after its
//!   last confirmation; one in use during its last stretch (after
//!   [`NEIGHBOR_REFRESH_AFTER`]) is reconfirmed with a unicast ARP request first, so busy
//!   flows are not held up at expiry. At most [`MAX_LEARNED_NEIGHBORS`] learned entries:
//!   learning one more evicts the least recently confirmed. Statics are not bounded (only
//!   switchd adds them).
//! * **Interfaces.** [`Router::set_interface`] adds or replaces by VLAN; a replacement
//!   forgets learned neighbours and held packets that no longer fit it.
//!   [`Router::remove_interface`] forgets the VLAN's neighbours, static ones included, and
//!   drops its held packets (counted as `NoRoute`).
//! * **Counters** only ever increase.
//! * **Cost.** Neighbour lookups are a hash probe; subnet matching scans the interfaces
//!   (there is one per network).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hashbrown::{HashMap, HashSet};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use smoltcp::wire as smol;

use crate::time::Time;
use crate::wire::icmpv4::{self, Icmpv4Error, Icmpv4Packet, Icmpv4Type, Quote};
use crate::wire::udp::UdpPacket;
use crate::wire::{
    emit_header, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr, MacAddr, TcpPacket,
    VlanId,
};

/// How long after its last confirmation a learned neighbour stops being used.
pub const NEIGHBOR_REACHABLE: Duration = Duration::from_secs(300);
/// A learned neighbour used after this long since its last confirmation is reconfirmed.
pub const NEIGHBOR_REFRESH_AFTER: Duration = Duration::from_secs(270);
/// Learned neighbours in all; statics are not counted.
pub const MAX_LEARNED_NEIGHBORS: usize = 4096;
/// At most one ARP request per address in this interval.
pub const ARP_RETRY: Duration = Duration::from_secs(1);
/// How long a packet waits for its next hop to resolve.
pub const HOLD_TIME: Duration = Duration::from_secs(3);
/// Packets held per unresolved address (Linux's `unres_qlen` is 3 too).
pub const HOLD_PER_ADDRESS: usize = 3;
/// Unresolved addresses tracked at once.
pub const MAX_UNRESOLVED: usize = 256;

/// TTL of the packets the router originates.
const ORIGINATED_TTL: u8 = 64;
const ETH_LEN: usize = crate::wire::HEADER_LEN;

/// One network the router serves: a VLAN, its subnet and the router's address on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub vlan: VlanId,
    pub subnet: Ipv4Net,
    /// Inside `subnet`; the router answers ARP and ICMP echo for it.
    pub gateway: Ipv4Addr,
    /// The router's MAC on this VLAN.
    pub mac: MacAddr,
    /// False for `--internal` networks: never routed to or from the uplink.
    pub uplink: bool,
}

/// What to do with the packet handed to [`Router::from_switch`] or [`Router::from_uplink`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// From the switch: send `frame[14..]` (TTL already decremented) to the uplink.
    ToUplink,
    /// From the uplink: prepend this Ethernet header (ethertype IPv4) and send it on
    /// `vlan` (TTL already decremented).
    ToSwitch {
        vlan: VlanId,
        dst: MacAddr,
        src: MacAddr,
    },
    /// Handled by the router (ARP, ICMP echo to a gateway); answers, if any, are in `out`.
    Consumed,
    /// A copy is kept until the next hop resolves; an ARP request is in `out` unless one
    /// for the same address went out less than [`ARP_RETRY`] ago.
    Held,
    Drop(RouterDrop),
}

/// A packet the router originates or releases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouterOutput {
    /// A complete untagged Ethernet frame for `vlan`: an ARP reply or request, an ICMP
    /// reply or error, or a released held packet.
    ToSwitch { vlan: VlanId, frame: Vec<u8> },
    /// A complete IPv4 packet for the uplink: an ICMP reply or error to the host.
    ToUplink { packet: Vec<u8> },
    /// A DNS query to a gateway, for the DNS service (only with [`Router::set_dns`] on).
    Dns(DnsQuery),
    /// A TCP segment to a gateway's port 53, for the DNS service's TCP responder (only
    /// with [`Router::set_dns`] on).
    DnsTcp(DnsSegment),
}

/// The port the router takes DNS queries on, on every gateway address.
pub const DNS_PORT: u16 = 53;

/// A DNS query over UDP from a container to its gateway: where it came from and the DNS
/// message. The answer goes back as [`DnsQuery::reply_frame`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuery {
    pub vlan: VlanId,
    pub client_mac: MacAddr,
    pub client: SocketAddrV4,
    pub gateway: Ipv4Addr,
    pub gateway_mac: MacAddr,
    /// The UDP payload: the DNS message as sent.
    pub message: Vec<u8>,
}

impl DnsQuery {
    /// The untagged Ethernet frame that answers the query with `message`: UDP from the
    /// gateway's port 53 to the client's port, checksummed. Empty when `message` cannot
    /// fit in one IPv4 packet.
    pub fn reply_frame(&self, message: &[u8]) -> Vec<u8> {
        crate::dns::DnsClient::of(self).reply_frame(message)
    }
}

/// A TCP segment from a container to its gateway's port 53: where it came from and the
/// segment (header and payload, cut to the IPv4 total length; its checksum unchecked, as
/// a query's). [`crate::dns::TcpResponder`] makes sense of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSegment {
    pub vlan: VlanId,
    pub client_mac: MacAddr,
    pub client: SocketAddrV4,
    pub gateway: Ipv4Addr,
    pub gateway_mac: MacAddr,
    /// The TCP segment: a header (options included) [`TcpPacket::new_checked`] accepts,
    /// then the data.
    pub segment: Vec<u8>,
}

/// Why the router did not forward a packet. Counted in [`RouterCounters::drops`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouterDrop {
    /// Truncated or invalid Ethernet, ARP, IPv4 or ICMP.
    Malformed,
    /// Unknown VLAN, someone else's MAC, or broadcast IPv4.
    NotForRouter,
    /// An ethertype other than IPv4 and ARP (IPv6...), or an ARP operation other than
    /// request and reply.
    UnsupportedProtocol,
    /// TTL ≤ 1 on a packet that would be forwarded.
    TtlExpired,
    /// Between two networks: Docker keeps networks apart.
    Isolated,
    /// To or from the uplink on an internal network.
    NoUplink,
    /// From the uplink to an address no network contains (or the network went away
    /// while the packet was held).
    NoRoute,
    /// The next hop did not resolve: not held (`can_hold` false) or held too long.
    Unresolved,
    /// From the switch with a source outside the network's subnet, or the gateway's.
    SpoofedSource,
    /// Traffic to a gateway address other than ICMP echo.
    ToGateway,
    /// Evicted from a full hold queue.
    HoldQueueFull,
    /// A network or broadcast address, or one that is never routed (loopback,
    /// link-local, multicast...).
    InvalidDestination,
    /// From the switch to another host of the sender's own subnet: it is on-link.
    SameNetwork,
}

impl RouterDrop {
    pub const ALL: [RouterDrop; 13] = [
        RouterDrop::Malformed,
        RouterDrop::NotForRouter,
        RouterDrop::UnsupportedProtocol,
        RouterDrop::TtlExpired,
        RouterDrop::Isolated,
        RouterDrop::NoUplink,
        RouterDrop::NoRoute,
        RouterDrop::Unresolved,
        RouterDrop::SpoofedSource,
        RouterDrop::ToGateway,
        RouterDrop::HoldQueueFull,
        RouterDrop::InvalidDestination,
        RouterDrop::SameNetwork,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouterDrop::Malformed => "malformed",
            RouterDrop::NotForRouter => "not_for_router",
            RouterDrop::UnsupportedProtocol => "unsupported_protocol",
            RouterDrop::TtlExpired => "ttl_expired",
            RouterDrop::Isolated => "isolated",
            RouterDrop::NoUplink => "no_uplink",
            RouterDrop::NoRoute => "no_route",
            RouterDrop::Unresolved => "unresolved",
            RouterDrop::SpoofedSource => "spoofed_source",
            RouterDrop::ToGateway => "to_gateway",
            RouterDrop::HoldQueueFull => "hold_queue_full",
            RouterDrop::InvalidDestination => "invalid_destination",
            RouterDrop::SameNetwork => "same_network",
        }
    }
}

impl fmt::Display for RouterDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Monotonic counters of router activity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterCounters {
    pub drops: BTreeMap<RouterDrop, u64>,
    pub arp_replies_sent: u64,
    /// Of those, answers for remote endpoints (ARP suppression).
    #[serde(default)]
    pub arp_suppressed: u64,
    /// Requests for unresolved addresses and reconfirmations of learned ones.
    pub arp_requests_sent: u64,
    pub echo_replies_sent: u64,
    /// DNS queries to a gateway handed to the DNS service.
    #[serde(default)]
    pub dns_queries: u64,
    /// TCP segments to a gateway's port 53 handed to the DNS service.
    #[serde(default)]
    pub dns_tcp_segments: u64,
    pub time_exceeded_sent: u64,
    /// `ToUplink` verdicts.
    pub routed_to_uplink: u64,
    /// `ToSwitch` verdicts (released held packets are counted in `released`).
    pub routed_to_switch: u64,
    pub held: u64,
    pub released: u64,
}

/// One neighbour as reported by [`Router::neighbors`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbor {
    pub vlan: VlanId,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    #[serde(rename = "static")]
    pub is_static: bool,
    /// Seconds since the last confirmation, as of the latest time the router was given
    /// (0 for static neighbours).
    pub age_secs: u64,
}

type NeighborKey = (VlanId, Ipv4Addr);

#[derive(Clone, Copy, Debug)]
enum NeighborKind {
    Static,
    Learned {
        confirmed: Time,
        last_probe: Option<Time>,
    },
}

#[derive(Clone, Copy, Debug)]
struct NeighborEntry {
    mac: MacAddr,
    kind: NeighborKind,
}

/// An address being resolved: when it was last asked for, and the packets waiting for it.
struct Pending {
    last_request: Time,
    held: VecDeque<HeldPacket>,
}

struct HeldPacket {
    since: Time,
    /// The IPv4 packet, TTL already decremented.
    packet: Vec<u8>,
}

/// The router. See the module documentation for its contract.
pub struct Router {
    interfaces: BTreeMap<VlanId, Interface>,
    neighbors: HashMap<NeighborKey, NeighborEntry>,
    /// Learned neighbours by last confirmation, oldest first: the expiry and eviction
    /// order. Holds exactly the learned entries of `neighbors`.
    learned_by_age: BTreeSet<(Time, VlanId, Ipv4Addr)>,
    pending: HashMap<NeighborKey, Pending>,
    /// Static neighbours on other hosts (a cluster's remote endpoints), whose ARP the
    /// router answers itself so that asking for them floods nothing across the overlay.
    proxied: HashSet<NeighborKey>,
    counters: RouterCounters,
    /// Whether UDP to a gateway's port 53 goes to the DNS service.
    dns: bool,
    /// The latest time any call passed in: what [`Router::neighbors`] measures age against.
    clock: Time,
}

impl Default for Router {
    fn default() -> Self {
        Router::new()
    }
}

impl Router {
    pub fn new() -> Router {
        Router {
            interfaces: BTreeMap::new(),
            neighbors: HashMap::new(),
            learned_by_age: BTreeSet::new(),
            pending: HashMap::new(),
            proxied: HashSet::new(),
            counters: RouterCounters::default(),
            dns: false,
            clock: Time::ZERO,
        }
    }

    /// A copy to ask what the router would do (a packet trace) without changing this
    /// one: everything but the packets held for unresolved neighbours (up to
    /// [`MAX_UNRESOLVED`] × [`HOLD_PER_ADDRESS`] whole packets), which no verdict on
    /// a frame from the switch depends on; their addresses stay pending.
    pub fn dry_run_copy(&self) -> Router {
        Router {
            interfaces: self.interfaces.clone(),
            neighbors: self.neighbors.clone(),
            learned_by_age: self.learned_by_age.clone(),
            pending: self
                .pending
                .iter()
                .map(|(key, pending)| {
                    let empty = Pending {
                        last_request: pending.last_request,
                        held: VecDeque::new(),
                    };
                    (*key, empty)
                })
                .collect(),
            proxied: self.proxied.clone(),
            counters: self.counters.clone(),
            dns: self.dns,
            clock: self.clock,
        }
    }

    /// Whether DNS queries to a gateway (UDP port 53) become [`RouterOutput::Dns`], and
    /// TCP segments to its port 53 [`RouterOutput::DnsTcp`]; off, they are dropped as
    /// [`RouterDrop::ToGateway`].
    pub fn set_dns(&mut self, on: bool) {
        self.dns = on;
    }

    /// Adds an interface, or replaces the one on the same VLAN. Learned neighbours and held
    /// packets that no longer fit the new interface are forgotten; statics stay.
    pub fn set_interface(&mut self, iface: Interface) {
        let vlan = iface.vlan;
        if self.interfaces.insert(vlan, iface).is_none() {
            return;
        }
        let stale: Vec<Ipv4Addr> = self
            .neighbors
            .iter()
            .filter(|((v, ip), entry)| {
                *v == vlan
                    && matches!(entry.kind, NeighborKind::Learned { .. })
                    && !is_learnable(&iface, *ip)
            })
            .map(|((_, ip), _)| *ip)
            .collect();
        for ip in stale {
            self.forget_neighbor((vlan, ip));
        }
        let undeliverable: Vec<NeighborKey> = self
            .pending
            .keys()
            .filter(|(v, ip)| *v == vlan && !(iface.uplink && is_learnable(&iface, *ip)))
            .copied()
            .collect();
        for key in undeliverable {
            self.drop_pending(key, RouterDrop::NoRoute);
        }
    }

    /// Removes the interface on `vlan` with all its neighbours (static ones too) and drops
    /// its held packets.
    pub fn remove_interface(&mut self, vlan: VlanId) -> Option<Interface> {
        let removed = self.interfaces.remove(&vlan)?;
        let keys: Vec<NeighborKey> = self
            .neighbors
            .keys()
            .filter(|(v, _)| *v == vlan)
            .copied()
            .collect();
        for key in keys {
            self.forget_neighbor(key);
        }
        let keys: Vec<NeighborKey> = self
            .pending
            .keys()
            .filter(|(v, _)| *v == vlan)
            .copied()
            .collect();
        for key in keys {
            self.drop_pending(key, RouterDrop::NoRoute);
        }
        Some(removed)
    }

    /// The interfaces in ascending VLAN order.
    pub fn interfaces(&self) -> impl Iterator<Item = &Interface> {
        self.interfaces.values()
    }

    pub fn interface(&self, vlan: VlanId) -> Option<&Interface> {
        self.interfaces.get(&vlan)
    }

    /// A static neighbour (an endpoint whose MAC switchd assigned): never aged, never
    /// overwritten by ARP. Replaces a learned entry for the same address.
    pub fn set_static_neighbor(&mut self, vlan: VlanId, ip: Ipv4Addr, mac: MacAddr) {
        self.forget_neighbor((vlan, ip));
        self.neighbors.insert(
            (vlan, ip),
            NeighborEntry {
                mac,
                kind: NeighborKind::Static,
            },
        );
    }

    /// A static neighbour on another host (a cluster's remote endpoint): routed to like
    /// any static one, and ARP requests for it are answered by the router with `mac`
    /// (ARP suppression), so they need not cross the overlay.
    pub fn set_remote_neighbor(&mut self, vlan: VlanId, ip: Ipv4Addr, mac: MacAddr) {
        self.set_static_neighbor(vlan, ip, mac);
        self.proxied.insert((vlan, ip));
    }

    /// Whether the router answers ARP requests for `ip` on `vlan` on its own behalf
    /// (a remote neighbour's): such requests need go nowhere else.
    pub fn answers_arp_for(&self, vlan: VlanId, ip: Ipv4Addr) -> bool {
        self.proxied.contains(&(vlan, ip))
    }

    /// Forgets a neighbour, static or learned.
    pub fn remove_neighbor(&mut self, vlan: VlanId, ip: Ipv4Addr) {
        self.forget_neighbor((vlan, ip));
    }

    /// A frame the switch delivered on `vlan`: untagged Ethernet. When the verdict is
    /// [`Verdict::ToUplink`] the TTL has been decremented in place and the caller writes
    /// `frame[14..]` to the uplink (any Ethernet padding after the IPv4 total length
    /// goes along; the host's stack trims it).
    pub fn from_switch(
        &mut self,
        now: Time,
        vlan: VlanId,
        frame: &mut [u8],
        out: &mut Vec<RouterOutput>,
    ) -> Verdict {
        self.tick(now);
        let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
            return self.reject(RouterDrop::Malformed);
        };
        let (dst, src, ethertype) = (eth.dst(), eth.src(), eth.ethertype());
        let Some(iface) = self.interfaces.get(&vlan).copied() else {
            return self.reject(RouterDrop::NotForRouter);
        };
        if dst != iface.mac && !dst.is_broadcast() {
            return self.reject(RouterDrop::NotForRouter);
        }
        // Answers go back to the source address; the switch never delivers such frames.
        if !src.is_valid_source() {
            return self.reject(RouterDrop::Malformed);
        }
        let Some(payload) = frame.get_mut(ETH_LEN..) else {
            return self.reject(RouterDrop::Malformed);
        };
        match ethertype {
            EtherType::ARP => self.arp_from_switch(now, &iface, payload, out),
            EtherType::IPV4 if dst == iface.mac => self.ipv4_from_switch(&iface, src, payload, out),
            EtherType::IPV4 => self.reject(RouterDrop::NotForRouter),
            _ => self.reject(RouterDrop::UnsupportedProtocol),
        }
    }

    /// An IPv4 packet from the uplink. `can_hold`: whether the router may keep a copy while
    /// it resolves the next hop (false for packets with offload metadata the caller cannot
    /// keep). The TTL is decremented in place when the verdict is [`Verdict::ToSwitch`].
    pub fn from_uplink(
        &mut self,
        now: Time,
        packet: &mut [u8],
        can_hold: bool,
        out: &mut Vec<RouterOutput>,
    ) -> Verdict {
        self.tick(now);
        let Some(header) = Ipv4Header::parse(packet) else {
            // The uplink is a TUN: anything that is not IPv4 (IPv6 from the host's stack)
            // arrives here too.
            let reason = match packet.first().map(|b| b >> 4) {
                Some(4) | None => RouterDrop::Malformed,
                Some(_) => RouterDrop::UnsupportedProtocol,
            };
            return self.reject(reason);
        };
        let Some(iface) = self.route(header.dst) else {
            return self.reject(RouterDrop::NoRoute);
        };
        if !iface.uplink {
            return self.reject(RouterDrop::NoUplink);
        }
        let whole = packet.get(..header.total_len).unwrap_or_default();
        if header.dst == iface.gateway {
            return match answer_echo(iface.gateway, &header, whole) {
                Local::Reply(reply) => {
                    out.push(RouterOutput::ToUplink { packet: reply });
                    self.counters.echo_replies_sent += 1;
                    Verdict::Consumed
                }
                Local::NotEcho => self.reject(RouterDrop::ToGateway),
                Local::Malformed => self.reject(RouterDrop::Malformed),
            };
        }
        if is_network_or_broadcast(iface.subnet, header.dst) {
            return self.reject(RouterDrop::InvalidDestination);
        }
        if header.ttl <= 1 {
            // From a TUN: no link-layer destination to check.
            if let Some(error) = time_exceeded(iface.gateway, whole, None) {
                out.push(RouterOutput::ToUplink { packet: error });
                self.counters.time_exceeded_sent += 1;
            }
            return self.reject(RouterDrop::TtlExpired);
        }

        let key = (iface.vlan, header.dst);
        if let Some(mac) = self.resolve(now, key, &iface, out) {
            // Packets held for this address go first, to keep their order.
            self.release(now, key, mac, &iface, out);
            decrement_ttl(packet);
            self.counters.routed_to_switch += 1;
            return Verdict::ToSwitch {
                vlan: iface.vlan,
                dst: mac,
                src: iface.mac,
            };
        }

        let total_len = header.total_len;
        let (pending, created) = self.pending_entry(now, key);
        let ask = created || now >= pending.last_request + ARP_RETRY;
        if ask {
            pending.last_request = now;
        }
        let mut evicted = false;
        if can_hold {
            if pending.held.len() >= HOLD_PER_ADDRESS {
                pending.held.pop_front();
                evicted = true;
            }
            decrement_ttl(packet);
            pending.held.push_back(HeldPacket {
                since: now,
                packet: packet.get(..total_len).unwrap_or_default().to_vec(),
            });
        }
        if ask {
            out.push(RouterOutput::ToSwitch {
                vlan: iface.vlan,
                frame: arp_frame(
                    MacAddr::BROADCAST,
                    smol::ArpOperation::Request,
                    (iface.mac, iface.gateway),
                    (MacAddr::ZERO, header.dst),
                ),
            });
            self.counters.arp_requests_sent += 1;
        }
        if evicted {
            self.count_drop(RouterDrop::HoldQueueFull, 1);
        }
        if can_hold {
            self.counters.held += 1;
            Verdict::Held
        } else {
            self.reject(RouterDrop::Unresolved)
        }
    }

    /// Expires learned neighbours and held packets whose time has come.
    pub fn handle_timeout(&mut self, now: Time) {
        self.tick(now);
        while let Some(&(confirmed, vlan, ip)) = self.learned_by_age.first() {
            if now < confirmed + NEIGHBOR_REACHABLE {
                break;
            }
            self.learned_by_age.pop_first();
            self.neighbors.remove(&(vlan, ip));
        }
        self.expire_pending(now);
    }

    /// When [`Router::handle_timeout`] next has something to do.
    pub fn next_timeout(&self) -> Option<Time> {
        let neighbor = self
            .learned_by_age
            .first()
            .map(|(confirmed, _, _)| *confirmed + NEIGHBOR_REACHABLE);
        let pending = self.pending.values().map(Pending::deadline).min();
        neighbor.into_iter().chain(pending).min()
    }

    pub fn counters(&self) -> RouterCounters {
        self.counters.clone()
    }

    /// Usable neighbours, sorted by VLAN and address.
    pub fn neighbors(&self) -> Vec<Neighbor> {
        let mut list: Vec<Neighbor> = self
            .neighbors
            .iter()
            .filter_map(|(&(vlan, ip), entry)| {
                let (is_static, age_secs) = match entry.kind {
                    NeighborKind::Static => (true, 0),
                    NeighborKind::Learned { confirmed, .. } => {
                        if self.clock >= confirmed + NEIGHBOR_REACHABLE {
                            return None;
                        }
                        (false, self.clock.since(confirmed).as_secs())
                    }
                };
                Some(Neighbor {
                    vlan,
                    ip,
                    mac: entry.mac,
                    is_static,
                    age_secs,
                })
            })
            .collect();
        list.sort_by_key(|n| (n.vlan, n.ip));
        list
    }

    fn tick(&mut self, now: Time) {
        self.clock = self.clock.max(now);
    }

    fn count_drop(&mut self, reason: RouterDrop, n: u64) {
        if n > 0 {
            *self.counters.drops.entry(reason).or_default() += n;
        }
    }

    fn reject(&mut self, reason: RouterDrop) -> Verdict {
        self.count_drop(reason, 1);
        Verdict::Drop(reason)
    }

    /// The interface that routes `dst` from the uplink: longest prefix, then lowest VLAN.
    fn route(&self, dst: Ipv4Addr) -> Option<Interface> {
        self.interfaces
            .values()
            .filter(|iface| iface.subnet.contains(&dst))
            .max_by_key(|iface| (iface.subnet.prefix_len(), Reverse(iface.vlan)))
            .copied()
    }

    fn belongs_to_other_network(&self, vlan: VlanId, ip: Ipv4Addr) -> bool {
        self.interfaces
            .values()
            .any(|other| other.vlan != vlan && (other.subnet.contains(&ip) || other.gateway == ip))
    }

    fn arp_from_switch(
        &mut self,
        now: Time,
        iface: &Interface,
        payload: &[u8],
        out: &mut Vec<RouterOutput>,
    ) -> Verdict {
        let Ok(packet) = smol::ArpPacket::new_checked(payload) else {
            return self.reject(RouterDrop::Malformed);
        };
        let Ok(smol::ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr: sender_ip,
            target_protocol_addr: target_ip,
            ..
        }) = smol::ArpRepr::parse(&packet)
        else {
            return self.reject(RouterDrop::Malformed);
        };
        if !matches!(
            operation,
            smol::ArpOperation::Request | smol::ArpOperation::Reply
        ) {
            return self.reject(RouterDrop::UnsupportedProtocol);
        }
        let sender_mac = mac_from(source_hardware_addr);
        self.learn(now, iface, sender_ip, sender_mac, out);
        if operation == smol::ArpOperation::Request
            && target_ip == iface.gateway
            && sender_mac.is_valid_source()
        {
            out.push(RouterOutput::ToSwitch {
                vlan: iface.vlan,
                frame: arp_frame(
                    sender_mac,
                    smol::ArpOperation::Reply,
                    (iface.mac, iface.gateway),
                    (sender_mac, sender_ip),
                ),
            });
            self.counters.arp_replies_sent += 1;
        } else if operation == smol::ArpOperation::Request
            && sender_mac.is_valid_source()
            && self.proxied.contains(&(iface.vlan, target_ip))
        {
            // A remote endpoint's address: answered here, in its name (ARP suppression).
            if let Some(entry) = self.neighbors.get(&(iface.vlan, target_ip)) {
                out.push(RouterOutput::ToSwitch {
                    vlan: iface.vlan,
                    frame: arp_frame(
                        sender_mac,
                        smol::ArpOperation::Reply,
                        (entry.mac, target_ip),
                        (sender_mac, sender_ip),
                    ),
                });
                self.counters.arp_replies_sent += 1;
                self.counters.arp_suppressed += 1;
            }
        }
        Verdict::Consumed
    }

    fn ipv4_from_switch(
        &mut self,
        iface: &Interface,
        src_mac: MacAddr,
        packet: &mut [u8],
        out: &mut Vec<RouterOutput>,
    ) -> Verdict {
        let Some(header) = Ipv4Header::parse(packet) else {
            return self.reject(RouterDrop::Malformed);
        };
        if !is_learnable(iface, header.src) {
            return self.reject(RouterDrop::SpoofedSource);
        }
        let whole = packet.get(..header.total_len).unwrap_or_default();
        let reply_to_sender = |ip_packet: Vec<u8>| RouterOutput::ToSwitch {
            vlan: iface.vlan,
            frame: ethernet_frame(src_mac, iface.mac, EtherType::IPV4, &ip_packet),
        };
        let dst = header.dst;
        if dst == iface.gateway {
            if self.dns && header.protocol == IpProtocol::UDP && !header.fragment {
                return match dns_query(iface, src_mac, &header, whole) {
                    Some(query) => {
                        out.push(RouterOutput::Dns(query));
                        self.counters.dns_queries += 1;
                        Verdict::Consumed
                    }
                    None => self.reject(RouterDrop::ToGateway),
                };
            }
            if self.dns && header.protocol == IpProtocol::TCP && !header.fragment {
                return match dns_segment(iface, src_mac, &header, whole) {
                    Some(segment) => {
                        out.push(RouterOutput::DnsTcp(segment));
                        self.counters.dns_tcp_segments += 1;
                        Verdict::Consumed
                    }
                    None => self.reject(RouterDrop::ToGateway),
                };
            }
            return match answer_echo(iface.gateway, &header, whole) {
                Local::Reply(reply) => {
                    out.push(reply_to_sender(reply));
                    self.counters.echo_replies_sent += 1;
                    Verdict::Consumed
                }
                Local::NotEcho => self.reject(RouterDrop::ToGateway),
                Local::Malformed => self.reject(RouterDrop::Malformed),
            };
        }
        if iface.subnet.contains(&dst) {
            return if is_network_or_broadcast(iface.subnet, dst) {
                self.reject(RouterDrop::InvalidDestination)
            } else {
                self.reject(RouterDrop::SameNetwork)
            };
        }
        if self.belongs_to_other_network(iface.vlan, dst) {
            return self.reject(RouterDrop::Isolated);
        }
        if !is_routable(dst) {
            return self.reject(RouterDrop::InvalidDestination);
        }
        if !iface.uplink {
            return self.reject(RouterDrop::NoUplink);
        }
        if header.ttl <= 1 {
            // It came addressed to the interface's MAC (from_switch checked).
            if let Some(error) = time_exceeded(iface.gateway, whole, Some(iface.mac)) {
                out.push(reply_to_sender(error));
                self.counters.time_exceeded_sent += 1;
            }
            return self.reject(RouterDrop::TtlExpired);
        }
        decrement_ttl(packet);
        self.counters.routed_to_uplink += 1;
        Verdict::ToUplink
    }

    /// The MAC to send to `key`, if it is known and usable. Reconfirms a learned entry
    /// that is about to expire.
    fn resolve(
        &mut self,
        now: Time,
        key: NeighborKey,
        iface: &Interface,
        out: &mut Vec<RouterOutput>,
    ) -> Option<MacAddr> {
        let entry = self.neighbors.get_mut(&key)?;
        let NeighborKind::Learned {
            confirmed,
            last_probe,
        } = &mut entry.kind
        else {
            return Some(entry.mac);
        };
        if now >= *confirmed + NEIGHBOR_REACHABLE {
            return None;
        }
        if now >= *confirmed + NEIGHBOR_REFRESH_AFTER
            && last_probe.is_none_or(|probed| now >= probed + ARP_RETRY)
        {
            *last_probe = Some(now);
            // Unicast, as Linux's probes: no need to bother the whole VLAN.
            out.push(RouterOutput::ToSwitch {
                vlan: iface.vlan,
                frame: arp_frame(
                    entry.mac,
                    smol::ArpOperation::Request,
                    (iface.mac, iface.gateway),
                    (MacAddr::ZERO, key.1),
                ),
            });
            self.counters.arp_requests_sent += 1;
        }
        Some(entry.mac)
    }

    /// Records what an ARP packet says about its sender, then releases packets held for it.
    fn learn(
        &mut self,
        now: Time,
        iface: &Interface,
        ip: Ipv4Addr,
        mac: MacAddr,
        out: &mut Vec<RouterOutput>,
    ) {
        if !is_learnable(iface, ip) || !mac.is_valid_source() || mac == iface.mac {
            return;
        }
        let key = (iface.vlan, ip);
        let mac = match self.neighbors.get(&key).copied() {
            // A static entry stands; packets held for it still go to its MAC.
            Some(NeighborEntry {
                mac: static_mac,
                kind: NeighborKind::Static,
            }) => static_mac,
            Some(NeighborEntry {
                kind: NeighborKind::Learned { confirmed, .. },
                ..
            }) => {
                self.learned_by_age.remove(&(confirmed, key.0, key.1));
                self.insert_learned(key, mac, now);
                mac
            }
            None => {
                if self.learned_by_age.len() >= MAX_LEARNED_NEIGHBORS {
                    if let Some((_, vlan, ip)) = self.learned_by_age.pop_first() {
                        self.neighbors.remove(&(vlan, ip));
                    }
                }
                self.insert_learned(key, mac, now);
                mac
            }
        };
        self.release(now, key, mac, iface, out);
    }

    fn insert_learned(&mut self, key: NeighborKey, mac: MacAddr, now: Time) {
        self.learned_by_age.insert((now, key.0, key.1));
        self.neighbors.insert(
            key,
            NeighborEntry {
                mac,
                kind: NeighborKind::Learned {
                    confirmed: now,
                    last_probe: None,
                },
            },
        );
    }

    fn forget_neighbor(&mut self, key: NeighborKey) {
        self.proxied.remove(&key);
        if let Some(NeighborEntry {
            kind: NeighborKind::Learned { confirmed, .. },
            ..
        }) = self.neighbors.remove(&key)
        {
            self.learned_by_age.remove(&(confirmed, key.0, key.1));
        }
    }

    /// The pending entry for `key`, made room for and created if need be; true if it is
    /// new (so nobody has asked for the address yet).
    fn pending_entry(&mut self, now: Time, key: NeighborKey) -> (&mut Pending, bool) {
        let created = !self.pending.contains_key(&key);
        if created {
            if self.pending.len() >= MAX_UNRESOLVED {
                self.expire_pending(now);
            }
            if self.pending.len() >= MAX_UNRESOLVED {
                let oldest = self
                    .pending
                    .iter()
                    .min_by_key(|(_, pending)| pending.last_request)
                    .map(|(key, _)| *key);
                if let Some(oldest) = oldest {
                    self.drop_pending(oldest, RouterDrop::HoldQueueFull);
                }
            }
        }
        let pending = self.pending.entry(key).or_insert_with(|| Pending {
            last_request: now,
            held: VecDeque::new(),
        });
        (pending, created)
    }

    fn drop_pending(&mut self, key: NeighborKey, reason: RouterDrop) {
        if let Some(pending) = self.pending.remove(&key) {
            self.count_drop(reason, pending.held.len() as u64);
        }
    }

    fn expire_pending(&mut self, now: Time) {
        let mut expired = 0u64;
        self.pending.retain(|_, pending| {
            while pending
                .held
                .front()
                .is_some_and(|held| now >= held.since + HOLD_TIME)
            {
                pending.held.pop_front();
                expired += 1;
            }
            now < pending.deadline()
        });
        self.count_drop(RouterDrop::Unresolved, expired);
    }

    /// Sends the packets held for `key` to `mac`, except those held too long.
    fn release(
        &mut self,
        now: Time,
        key: NeighborKey,
        mac: MacAddr,
        iface: &Interface,
        out: &mut Vec<RouterOutput>,
    ) {
        let Some(pending) = self.pending.remove(&key) else {
            return;
        };
        let mut stale = 0;
        for held in pending.held {
            if now >= held.since + HOLD_TIME {
                stale += 1;
                continue;
            }
            out.push(RouterOutput::ToSwitch {
                vlan: iface.vlan,
                frame: ethernet_frame(mac, iface.mac, EtherType::IPV4, &held.packet),
            });
            self.counters.released += 1;
        }
        self.count_drop(RouterDrop::Unresolved, stale);
    }
}

impl Pending {
    /// When the oldest held packet expires or, with none held, when the entry is no
    /// longer needed to pace ARP requests.
    fn deadline(&self) -> Time {
        match self.held.front() {
            Some(held) => held.since + HOLD_TIME,
            None => self.last_request + ARP_RETRY,
        }
    }
}

/// The fields of a validated IPv4 header the router needs.
struct Ipv4Header {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    protocol: IpProtocol,
    header_len: usize,
    total_len: usize,
    /// A fragment (first or later): not reassembled, so never delivered locally.
    fragment: bool,
}

impl Ipv4Header {
    /// Checks version, lengths and header checksum; `None` if any is wrong.
    fn parse(packet: &[u8]) -> Option<Ipv4Header> {
        let ip = Ipv4Packet::new_checked(packet).ok()?;
        if !ip.verify_checksum() {
            return None;
        }
        Some(Ipv4Header {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            ttl: ip.ttl(),
            protocol: ip.protocol(),
            header_len: ip.header_len(),
            total_len: ip.total_len(),
            fragment: ip.is_fragment(),
        })
    }
}

/// What a packet to a gateway address amounts to.
enum Local {
    /// An echo request; here is the IPv4 echo reply.
    Reply(Vec<u8>),
    NotEcho,
    Malformed,
}

/// Answers an ICMP echo request to `gateway`. `packet` is the whole IPv4 packet, trimmed
/// to its total length.
fn answer_echo(gateway: Ipv4Addr, header: &Ipv4Header, packet: &[u8]) -> Local {
    // Fragments would need reassembly; a reply to a non-unicast source would be an
    // amplifier.
    if header.protocol != IpProtocol::ICMP || header.fragment || !is_unicast(header.src) {
        return Local::NotEcho;
    }
    let Some(payload) = packet.get(header.header_len..) else {
        return Local::Malformed;
    };
    let Ok(icmp) = Icmpv4Packet::new_checked(payload) else {
        return Local::Malformed;
    };
    if !icmp.verify_checksum() {
        return Local::Malformed;
    }
    if icmp.msg_type() != Icmpv4Type::ECHO_REQUEST || icmp.code() != 0 {
        return Local::NotEcho;
    }
    // The reply is the request with another type: same identifier, sequence and data.
    let mut message = payload.to_vec();
    let Ok(mut reply) = Icmpv4Packet::new_checked(&mut message[..]) else {
        return Local::Malformed;
    };
    reply.set_msg_type(Icmpv4Type::ECHO_REPLY);
    reply.fill_checksum();
    Local::Reply(ipv4_packet(gateway, header.src, IpProtocol::ICMP, &message))
}

/// The DNS query in `packet` (UDP to the gateway's port 53 from a unicast source, its
/// length field within the packet), if it is one.
fn dns_query(
    iface: &Interface,
    src_mac: MacAddr,
    header: &Ipv4Header,
    packet: &[u8],
) -> Option<DnsQuery> {
    if !is_unicast(header.src) {
        return None;
    }
    let payload = packet.get(header.header_len..)?;
    let udp = UdpPacket::new_checked(payload).ok()?;
    if udp.dst_port() != DNS_PORT {
        return None;
    }
    // The checksum is not checked: a container's kernel leaves it to the TAP's offload
    // (only the pseudo-header's sum is in it), and the DNS service reads any bytes safely.
    // The length field must lie within the packet (and cover the 8-byte header).
    let udp = UdpPacket::new_checked(payload.get(..udp.len())?).ok()?;
    Some(DnsQuery {
        vlan: iface.vlan,
        client_mac: src_mac,
        client: SocketAddrV4::new(header.src, udp.src_port()),
        gateway: iface.gateway,
        gateway_mac: iface.mac,
        message: udp.payload().to_vec(),
    })
}

/// The TCP segment in `packet` to the gateway's port 53 from a unicast source, if it is
/// one.
fn dns_segment(
    iface: &Interface,
    src_mac: MacAddr,
    header: &Ipv4Header,
    packet: &[u8],
) -> Option<DnsSegment> {
    if !is_unicast(header.src) {
        return None;
    }
    let segment = packet.get(header.header_len..)?;
    let tcp = TcpPacket::new_checked(segment).ok()?;
    if tcp.dst_port() != DNS_PORT {
        return None;
    }
    // The checksum is not checked, as a query's over UDP: the TAP's offload leaves it
    // partial.
    Some(DnsSegment {
        vlan: iface.vlan,
        client_mac: src_mac,
        client: SocketAddrV4::new(header.src, tcp.src_port()),
        gateway: iface.gateway,
        gateway_mac: iface.mac,
        segment: segment.to_vec(),
    })
}

/// An ICMP time exceeded from `gateway` about `packet` (the whole IPv4 packet, trimmed to
/// its total length), quoting as much of it as fits in 576 bytes (at least its header and
/// 8 bytes of payload, as RFC 792 asks). `link_dst` is the Ethernet destination it
/// arrived with, if any. None for packets that must not get one: RFC 1812 §4.3.2.7, as
/// [`icmpv4::may_answer`] applies it.
fn time_exceeded(gateway: Ipv4Addr, packet: &[u8], link_dst: Option<MacAddr>) -> Option<Vec<u8>> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    let error =
        Icmpv4Error::ttl_expired(gateway, ip.src_addr(), Quote::UpTo(icmpv4::MAX_ERROR_LEN));
    let mut out = Vec::new();
    error.emit(&ip, link_dst, &mut out).ok()?;
    Some(out)
}

/// A fresh IPv4 packet (no options, DF set) around `payload`.
pub(crate) fn ipv4_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    payload: &[u8],
) -> Vec<u8> {
    let repr = Ipv4Repr {
        src,
        dst,
        protocol,
        payload_len: payload.len(),
        ttl: ORIGINATED_TTL,
        dont_frag: true,
    };
    let mut packet = vec![0; crate::wire::ipv4::HEADER_LEN];
    // Only an echo reply to an echo request that fit in an IPv4 packet gets here, and the
    // header is as long as the request's or shorter: it cannot be too long.
    if repr.emit(&mut packet).is_err() {
        return Vec::new();
    }
    packet.extend_from_slice(payload);
    packet
}

pub(crate) fn ethernet_frame(
    dst: MacAddr,
    src: MacAddr,
    ethertype: EtherType,
    payload: &[u8],
) -> Vec<u8> {
    let mut frame = vec![0; ETH_LEN];
    emit_header(&mut frame, dst, src, ethertype);
    frame.extend_from_slice(payload);
    frame
}

/// An Ethernet frame carrying an ARP packet from `sender` about `target`, each a
/// (MAC, IPv4) pair; sent from the sender's MAC to `eth_dst`.
fn arp_frame(
    eth_dst: MacAddr,
    operation: smol::ArpOperation,
    sender: (MacAddr, Ipv4Addr),
    target: (MacAddr, Ipv4Addr),
) -> Vec<u8> {
    let repr = smol::ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: smol::EthernetAddress(sender.0.octets()),
        source_protocol_addr: sender.1,
        target_hardware_addr: smol::EthernetAddress(target.0.octets()),
        target_protocol_addr: target.1,
    };
    let mut arp = vec![0; repr.buffer_len()];
    repr.emit(&mut smol::ArpPacket::new_unchecked(&mut arp[..]));
    ethernet_frame(eth_dst, sender.0, EtherType::ARP, &arp)
}

/// Decrements the TTL of a validated IPv4 packet and updates the header checksum
/// incrementally (RFC 1624), leaving every other byte alone.
fn decrement_ttl(packet: &mut [u8]) {
    if let Ok(mut ip) = Ipv4Packet::new_checked(packet) {
        ip.decrement_ttl();
    }
}

fn mac_from(address: smol::EthernetAddress) -> MacAddr {
    MacAddr(address.0)
}

/// The subnet's network or broadcast address. /31 and /32 have neither (RFC 3021).
fn is_network_or_broadcast(subnet: Ipv4Net, ip: Ipv4Addr) -> bool {
    subnet.prefix_len() <= 30 && (ip == subnet.network() || ip == subnet.broadcast())
}

/// A host address of the interface's subnet other than the gateway: a valid source from
/// the switch and a possible neighbour.
fn is_learnable(iface: &Interface, ip: Ipv4Addr) -> bool {
    iface.subnet.contains(&ip)
        && ip != iface.gateway
        && !ip.is_unspecified()
        && !is_network_or_broadcast(iface.subnet, ip)
}

fn is_unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
}

/// An address a router may forward to (RFC 1812 §5.3.7, RFC 3927 §2.7).
fn is_routable(ip: Ipv4Addr) -> bool {
    let reserved = ip.octets()[0] >= 240;
    is_unicast(ip) && !ip.is_loopback() && !ip.is_link_local() && !reserved
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use smoltcp::phy::ChecksumCapabilities;

    const ROUTER1: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const ROUTER2: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
    const ROUTER3: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x03]);
    /// 10.1.0.2 on network 1.
    const CONTAINER: MacAddr = MacAddr([0x02, 0x42, 10, 1, 0, 2]);
    const STRANGER: MacAddr = MacAddr([0x02, 0x42, 0xde, 0xad, 0xbe, 0xef]);

    fn vlan(id: u16) -> VlanId {
        VlanId::new(id).unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn ms(millis: u64) -> Time {
        Time::from_millis(millis)
    }

    fn iface(id: u16, subnet: &str, gateway: &str, mac: MacAddr, uplink: bool) -> Interface {
        Interface {
            vlan: vlan(id),
            subnet: subnet.parse().unwrap(),
            gateway: ip(gateway),
            mac,
            uplink,
        }
    }

    /// Network 1 (VLAN 10) and 2 (VLAN 20) reach the uplink; 3 (VLAN 30) is internal.
    fn router() -> Router {
        let mut router = Router::new();
        router.set_interface(iface(10, "10.1.0.0/24", "10.1.0.1", ROUTER1, true));
        router.set_interface(iface(20, "10.2.0.0/24", "10.2.0.1", ROUTER2, true));
        router.set_interface(iface(30, "10.3.0.0/24", "10.3.0.1", ROUTER3, false));
        router
    }

    fn ipv4(src: &str, dst: &str, ttl: u8, protocol: smol::IpProtocol, payload: &[u8]) -> Vec<u8> {
        let repr = smol::Ipv4Repr {
            src_addr: ip(src),
            dst_addr: ip(dst),
            next_header: protocol,
            payload_len: payload.len(),
            hop_limit: ttl,
        };
        let mut packet = vec![0; repr.buffer_len() + payload.len()];
        let mut view = smol::Ipv4Packet::new_unchecked(&mut packet[..]);
        repr.emit(&mut view, &ChecksumCapabilities::default());
        view.payload_mut().copy_from_slice(payload);
        packet
    }

    fn echo_request(src: &str, dst: &str, ttl: u8, data: &[u8]) -> Vec<u8> {
        let repr = smol::Icmpv4Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 7,
            data,
        };
        let mut icmp = vec![0; repr.buffer_len()];
        repr.emit(
            &mut smol::Icmpv4Packet::new_unchecked(&mut icmp[..]),
            &ChecksumCapabilities::default(),
        );
        ipv4(src, dst, ttl, smol::IpProtocol::Icmp, &icmp)
    }

    /// A UDP-ish datagram: the router never looks past the IPv4 header.
    fn udp(src: &str, dst: &str, ttl: u8) -> Vec<u8> {
        ipv4(
            src,
            dst,
            ttl,
            smol::IpProtocol::Udp,
            b"\x30\x39\x00\x35\x00\x0c\xab\xcdping",
        )
    }

    fn eth(dst: MacAddr, src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        frame.extend_from_slice(&dst.octets());
        frame.extend_from_slice(&src.octets());
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    fn arp(
        eth_dst: MacAddr,
        operation: smol::ArpOperation,
        sender: (MacAddr, &str),
        target: (MacAddr, &str),
    ) -> Vec<u8> {
        let repr = smol::ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr: smol::EthernetAddress(sender.0.octets()),
            source_protocol_addr: ip(sender.1),
            target_hardware_addr: smol::EthernetAddress(target.0.octets()),
            target_protocol_addr: ip(target.1),
        };
        let mut payload = vec![0; repr.buffer_len()];
        repr.emit(&mut smol::ArpPacket::new_unchecked(&mut payload[..]));
        eth(eth_dst, sender.0, 0x0806, &payload)
    }

    fn switch_in(
        router: &mut Router,
        now: Time,
        id: u16,
        mut frame: Vec<u8>,
    ) -> (Verdict, Vec<RouterOutput>, Vec<u8>) {
        let mut out = Vec::new();
        let verdict = router.from_switch(now, vlan(id), &mut frame, &mut out);
        (verdict, out, frame)
    }

    fn uplink_in(
        router: &mut Router,
        now: Time,
        mut packet: Vec<u8>,
        can_hold: bool,
    ) -> (Verdict, Vec<RouterOutput>, Vec<u8>) {
        let mut out = Vec::new();
        let verdict = router.from_uplink(now, &mut packet, can_hold, &mut out);
        (verdict, out, packet)
    }

    fn to_container(ip_packet: &[u8]) -> Vec<u8> {
        eth(ROUTER1, CONTAINER, 0x0800, ip_packet)
    }

    fn drops(router: &Router, reason: RouterDrop) -> u64 {
        router
            .counters()
            .drops
            .get(&reason)
            .copied()
            .unwrap_or_default()
    }

    /// Checks the IPv4 header checksum (smoltcp's default capabilities verify it).
    fn parse_ipv4(packet: &[u8]) -> (smol::Ipv4Repr, &[u8]) {
        let view = smol::Ipv4Packet::new_checked(packet).unwrap();
        assert!(view.verify_checksum());
        let repr = smol::Ipv4Repr::parse(&view, &ChecksumCapabilities::default()).unwrap();
        (repr, view.payload())
    }

    /// Checks the ICMP checksum too.
    fn parse_icmp(payload: &[u8]) -> smol::Icmpv4Repr<'_> {
        let view = smol::Icmpv4Packet::new_checked(payload).unwrap();
        smol::Icmpv4Repr::parse(&view, &ChecksumCapabilities::default()).unwrap()
    }

    fn parse_arp_frame(frame: &[u8]) -> (MacAddr, MacAddr, smol::ArpRepr) {
        let eth = smol::EthernetFrame::new_checked(frame).unwrap();
        assert_eq!(eth.ethertype(), smol::EthernetProtocol::Arp);
        let arp = smol::ArpPacket::new_checked(eth.payload()).unwrap();
        (
            mac_from(eth.dst_addr()),
            mac_from(eth.src_addr()),
            smol::ArpRepr::parse(&arp).unwrap(),
        )
    }

    fn only_switch_frame(out: &[RouterOutput]) -> (VlanId, &[u8]) {
        match out {
            [RouterOutput::ToSwitch { vlan, frame }] => (*vlan, frame),
            other => panic!("expected one frame for the switch, got {other:?}"),
        }
    }

    #[test]
    fn answers_arp_for_the_gateway() {
        let mut router = router();
        #[rustfmt::skip]
        let request = vec![
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0x0a, 0x01, 0x00, 0x02, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
            0x02, 0x42, 0x0a, 0x01, 0x00, 0x02, 10, 1, 0, 2,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 1, 0, 1,
            // Ethernet padding to 60 bytes.
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        #[rustfmt::skip]
        let expected_reply = vec![
            0x02, 0x42, 0x0a, 0x01, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02,
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 10, 1, 0, 1,
            0x02, 0x42, 0x0a, 0x01, 0x00, 0x02, 10, 1, 0, 2,
        ];
        let (verdict, out, _) = switch_in(&mut router, ms(0), 10, request);
        assert_eq!(verdict, Verdict::Consumed);
        assert_eq!(
            out,
            vec![RouterOutput::ToSwitch {
                vlan: vlan(10),
                frame: expected_reply
            }]
        );
        assert_eq!(router.counters().arp_replies_sent, 1);
        // The requester was learned on the way.
        let neighbors = router.neighbors();
        assert_eq!(neighbors.len(), 1);
        assert_eq!(
            (neighbors[0].vlan, neighbors[0].ip, neighbors[0].mac),
            (vlan(10), ip("10.1.0.2"), CONTAINER)
        );
        assert!(!neighbors[0].is_static);
    }

    #[test]
    fn answers_a_probe_for_the_gateway_without_learning() {
        let mut router = router();
        let probe = arp(
            MacAddr::BROADCAST,
            smol::ArpOperation::Request,
            (CONTAINER, "0.0.0.0"),
            (MacAddr::ZERO, "10.1.0.1"),
        );
        let (verdict, out, _) = switch_in(&mut router, ms(0), 10, probe);
        assert_eq!(verdict, Verdict::Consumed);
        let (_, frame) = only_switch_frame(&out);
        let (
            dst,
            _,
            smol::ArpRepr::EthernetIpv4 {
                target_protocol_addr,
                ..
            },
        ) = parse_arp_frame(frame)
        else {
            unreachable!()
        };
        assert_eq!((dst, target_protocol_addr), (CONTAINER, ip("0.0.0.0")));
        assert!(router.neighbors().is_empty());
    }

    #[test]
    fn ignores_arp_for_other_addresses() {
        let mut router = router();
        for target in ["10.1.0.3", "10.2.0.1", "8.8.8.8"] {
            let request = arp(
                MacAddr::BROADCAST,
                smol::ArpOperation::Request,
                (CONTAINER, "10.1.0.2"),
                (MacAddr::ZERO, target),
            );
            let (verdict, out, _) = switch_in(&mut router, ms(0), 10, request);
            assert_eq!(verdict, Verdict::Consumed);
            assert!(out.is_empty(), "answered ARP for {target}");
        }
        // The gateway of network 1 is not answered on network 2.
        let request = arp(
            MacAddr::BROADCAST,
            smol::ArpOperation::Request,
            (STRANGER, "10.2.0.9"),
            (MacAddr::ZERO, "10.1.0.1"),
        );
        let (_, out, _) = switch_in(&mut router, ms(0), 20, request);
        assert!(out.is_empty());
        assert_eq!(router.counters().arp_replies_sent, 0);
    }

    #[test]
    fn does_not_learn_outside_the_subnet_or_the_gateway() {
        let mut router = router();
        for sender in ["10.2.0.5", "10.1.0.1", "10.1.0.255", "10.1.0.0", "0.0.0.0"] {
            let frame = arp(
                MacAddr::BROADCAST,
                smol::ArpOperation::Request,
                (STRANGER, sender),
                (MacAddr::ZERO, "10.1.0.9"),
            );
            switch_in(&mut router, ms(0), 10, frame);
        }
        assert!(router.neighbors().is_empty());
    }

    #[test]
    fn answers_echo_to_the_gateway() {
        let mut router = router();
        let request = echo_request("10.1.0.2", "10.1.0.1", 64, b"abcdefgh12345678");
        let (verdict, out, _) = switch_in(&mut router, ms(0), 10, to_container(&request));
        assert_eq!(verdict, Verdict::Consumed);
        let (id, frame) = only_switch_frame(&out);
        assert_eq!(id, vlan(10));
        let eth = smol::EthernetFrame::new_checked(frame).unwrap();
        assert_eq!(mac_from(eth.dst_addr()), CONTAINER);
        assert_eq!(mac_from(eth.src_addr()), ROUTER1);
        assert_eq!(eth.ethertype(), smol::EthernetProtocol::Ipv4);
        let (repr, payload) = parse_ipv4(eth.payload());
        assert_eq!(
            (repr.src_addr, repr.dst_addr),
            (ip("10.1.0.1"), ip("10.1.0.2"))
        );
        assert_eq!(repr.next_header, smol::IpProtocol::Icmp);
        assert_eq!(
            parse_icmp(payload),
            smol::Icmpv4Repr::EchoReply {
                ident: 0x1234,
                seq_no: 7,
                data: b"abcdefgh12345678"
            }
        );
        assert_eq!(router.counters().echo_replies_sent, 1);
    }

    #[test]
    fn other_traffic_to_the_gateway_is_dropped() {
        let mut router = router();
        let datagram = udp("10.1.0.2", "10.1.0.1", 64);
        let (verdict, out, _) = switch_in(&mut router, ms(0), 10, to_container(&datagram));
        assert_eq!(verdict, Verdict::Drop(RouterDrop::ToGateway));
        assert!(out.is_empty());
        // An echo with a broken ICMP checksum is malformed.
        let mut request = echo_request("10.1.0.2", "10.1.0.1", 64, b"x");
        let last = request.len() - 1;
        request[last] ^= 0xff;
        let (verdict, _, _) = switch_in(&mut router, ms(0), 10, to_container(&request));
        assert_eq!(verdict, Verdict::Drop(RouterDrop::Malformed));
    }

    #[test]
    fn networks_are_isolated() {
        let mut router = router();
        for dst in ["10.2.0.1", "10.2.0.5", "10.3.0.1", "10.3.0.7", "10.2.0.255"] {
            let request = echo_request("10.1.0.2", dst, 64, b"hi");
            let (verdict, out, _) = switch_in(&mut router, ms(0), 10, to_container(&request));
            assert_eq!(verdict, Verdict::Drop(RouterDrop::Isolated), "to {dst}");
            assert!(out.is_empty());
        }
        assert_eq!(drops(&router, RouterDrop::Isolated), 5);
    }

    #[test]
    fn routes_external_traffic_to_the_uplink() {
        let mut router = router();
        let datagram = udp("10.1.0.2", "8.8.8.8", 64);
        let (verdict, out, frame) = switch_in(&mut router, ms(0), 10, to_container(&datagram));
        assert_eq!(verdict, Verdict::ToUplink);
        assert!(out.is_empty());
        let sent = &frame[14..];
        let (repr, _) = parse_ipv4(sent);
        assert_eq!(repr.hop_limit, 63);
        // Only TTL and header checksum changed, and the checksum is what a full
        // recomputation gives.
        let mut expected = udp("10.1.0.2", "8.8.8.8", 63);
        assert_eq!(sent, &expected[..]);
        smol::Ipv4Packet::new_unchecked(&mut expected[..]).fill_checksum();
        assert_eq!(sent, &expected[..]);
        assert_eq!(router.counters().routed_to_uplink, 1);
    }

    #[test]
    fn keeps_ethernet_padding() {
        let mut router = router();
        let mut frame = to_container(&udp("10.1.0.2", "1.1.1.1", 9));
        frame.resize(60, 0);
        let (verdict, _, frame) = switch_in(&mut router, ms(0), 10, frame);
        assert_eq!(verdict, Verdict::ToUplink);
        assert_eq!(frame.len(), 60);
        assert_eq!(parse_ipv4(&frame[14..]).0.hop_limit, 8);
    }

    #[test]
    fn ttl_one_expires_with_an_icmp_error() {
        let mut router = router();
        let datagram = udp("10.1.0.2", "8.8.8.8", 1);
        let (verdict, out, frame) = switch_in(&mut router, ms(0), 10, to_container(&datagram));
        assert_eq!(verdict, Verdict::Drop(RouterDrop::TtlExpired));
        assert_eq!(
            &frame[14..],
            &datagram[..],
            "a dropped packet is left alone"
        );
        let (_, reply) = only_switch_frame(&out);
        let eth = smol::EthernetFrame::new_checked(reply).unwrap();
        assert_eq!(mac_from(eth.dst_addr()), CONTAINER);
        let (repr, payload) = parse_ipv4(eth.payload());
        assert_eq!(
            (repr.src_addr, repr.dst_addr),
            (ip("10.1.0.1"), ip("10.1.0.2"))
        );
        match parse_icmp(payload) {
            smol::Icmpv4Repr::TimeExceeded {
                reason,
                header,
                data,
            } => {
                assert_eq!(reason, smol::Icmpv4TimeExceeded::TtlExpired);
                assert_eq!(header.dst_addr, ip("8.8.8.8"));
                assert_eq!(data, &datagram[20..]);
            }
            other => panic!("expected time exceeded, got {other:?}"),
        }
        assert_eq!(router.counters().time_exceeded_sent, 1);

        // A big packet is quoted only as far as fits in 576 bytes.
        let big = ipv4("10.1.0.2", "8.8.8.8", 1, smol::IpProtocol::Udp, &[7; 3000]);
        let (_, out, _) = switch_in(&mut router, ms(0), 10, to_container(&big));
        let (_, reply) = only_switch_frame(&out);
        assert_eq!(reply.len(), 14 + 576);
        assert_eq!(&reply[14 + 28..], &big[..576 - 28]);

        // No ICMP error about an ICMP error.
        let error = eth.payload().to_vec();
        let mut looped = ipv4(
            "10.1.0.2",
            "8.8.8.8",
            0,
            smol::IpProtocol::Icmp,
            &error[20..],
        );
        smol::Ipv4Packet::new_unchecked(&mut looped[..]).fill_checksum();
        let (verdict, out, _) = switch_in(&mut router, ms(0), 10, to_container(&looped));
        assert_eq!(verdict, Verdict::Drop(RouterDrop::TtlExpired));
        assert!(out.is_empty());
    }

    /// `packet` with its IPv4 header edited by `edit` and its checksum made right again.
    fn edited(mut packet: Vec<u8>, edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
        edit(&mut packet);
        smol::Ipv4Packet::new_unchecked(&mut packet[..]).fill_checksum();
        packet
    }

    #[test]
    fn time_exceeded_follows_rfc_1812() {
        let mut router = router();
        let from_switch = |router: &mut Router, packet: &[u8]| {
            let (verdict, out, _) = switch_in(router, ms(0), 10, to_container(packet));
            assert_eq!(verdict, Verdict::Drop(RouterDrop::TtlExpired));
            out.len()
        };
        let from_uplink = |router: &mut Router, packet: Vec<u8>| {
            let (verdict, out, _) = uplink_in(router, ms(0), packet, true);
            assert_eq!(verdict, Verdict::Drop(RouterDrop::TtlExpired));
            out.len()
        };
        let icmp = |src: &str, dst: &str, msg_type: u8| {
            let message = [msg_type, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
            ipv4(src, dst, 1, smol::IpProtocol::Icmp, &message)
        };

        // (a) No error about an ICMP error, whichever way it comes; other ICMP (echo,
        // timestamp) gets one.
        for msg_type in [3, 4, 5, 11, 12] {
            assert_eq!(
                from_switch(&mut router, &icmp("10.1.0.2", "8.8.8.8", msg_type)),
                0
            );
            assert_eq!(
                from_uplink(&mut router, icmp("1.1.1.1", "10.1.0.2", msg_type)),
                0
            );
        }
        for msg_type in [0, 8, 13] {
            assert_eq!(
                from_switch(&mut router, &icmp("10.1.0.2", "8.8.8.8", msg_type)),
                1
            );
            assert_eq!(
                from_uplink(&mut router, icmp("1.1.1.1", "10.1.0.2", msg_type)),
                1
            );
        }

        // (b) No error about a later fragment; the first one gets one.
        let later = |packet| edited(packet, |p| p[6..8].copy_from_slice(&[0x00, 0xb9]));
        let first = |packet| edited(packet, |p| p[6] = 0x20);
        assert_eq!(
            from_switch(&mut router, &later(udp("10.1.0.2", "8.8.8.8", 1))),
            0
        );
        assert_eq!(
            from_uplink(&mut router, later(udp("1.1.1.1", "10.1.0.2", 1))),
            0
        );
        assert_eq!(
            from_switch(&mut router, &first(udp("10.1.0.2", "8.8.8.8", 1))),
            1
        );
        assert_eq!(
            from_uplink(&mut router, first(udp("1.1.1.1", "10.1.0.2", 1))),
            1
        );

        // (c) Broadcast and multicast destinations never get this far (they are not
        // routed), so the rule is shown on the builder the router calls, at both layers.
        let gateway = ip("10.1.0.1");
        for dst in ["255.255.255.255", "224.0.0.1", "239.255.255.250"] {
            assert_eq!(
                time_exceeded(gateway, &udp("10.1.0.2", dst, 1), None),
                None,
                "{dst}"
            );
        }
        let unicast = udp("10.1.0.2", "8.8.8.8", 1);
        assert!(time_exceeded(gateway, &unicast, Some(ROUTER1)).is_some());
        for mac in [MacAddr::BROADCAST, MacAddr([0x01, 0x00, 0x5e, 0, 0, 1])] {
            assert_eq!(time_exceeded(gateway, &unicast, Some(mac)), None, "{mac}");
        }

        // (d) No error to a source that is not a unicast host. From the switch such a
        // source is already spoofed; from the uplink it is not checked, so the rule holds.
        for src in [
            "0.0.0.0",
            "127.0.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert_eq!(
                from_uplink(&mut router, udp(src, "10.1.0.2", 1)),
                0,
                "{src}"
            );
            assert_eq!(time_exceeded(gateway, &udp(src, "8.8.8.8", 1), None), None);
            let (verdict, out, _) = switch_in(
                &mut router,
                ms(0),
                10,
                to_container(&udp(src, "8.8.8.8", 1)),
            );
            assert_eq!(verdict, Verdict::Drop(RouterDrop::SpoofedSource));
            assert!(out.is_empty());
        }
        assert_eq!(router.counters().time_exceeded_sent, 2 * 3 + 2);
    }

    #[test]
    fn echo_reply_bytes_are_what_smoltcp_would_emit() {
        let mut router = router();
        let request = echo_request("10.1.0.2", "10.1.0.1", 64, b"abcdefgh12345678");
        let (_, out, _) = switch_in(&mut router, ms(0), 10, to_container(&request));
        let (_, frame) = only_switch_frame(&out);
        let reply = smol::Icmpv4Repr::EchoReply {
            ident: 0x1234,
            seq_no: 7,
            data: b"abcdefgh12345678",
        };
        let ip = smol::Ipv4Repr {
            src_addr: ip("10.1.0.1"),
            dst_addr: ip("10.1.0.2"),
            next_header: smol::IpProtocol::Icmp,
            payload_len: reply.buffer_len(),
            hop_limit: 64,
        };
        let mut expected = vec![0; ip.buffer_len() + reply.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut view = smol::Ipv4Packet::new_unchecked(&mut expected[..]);
        ip.emit(&mut view, &caps);
        reply.emit(
            &mut smol::Icmpv4Packet::new_unchecked(view.payload_mut()),
            &caps,
        );
        assert_eq!(&frame[14..], &expected[..]);
        assert_eq!(&frame[..14], &eth(CONTAINER, ROUTER1, 0x0800, &[])[..]);
    }

    #[test]
    fn internal_networks_do_not_reach_the_uplink() {
        let mut router = router();
        let frame = eth(ROUTER3, STRANGER, 0x0800, &udp("10.3.0.2", "8.8.8.8", 64));
        let (verdict, _, _) = switch_in(&mut router, ms(0), 30, frame);
        assert_eq!(verdict, Verdict::Drop(RouterDrop::NoUplink));
        // But their gateway still answers pings.
        let ping = eth(
            ROUTER3,
            STRANGER,
            0x0800,
            &echo_request("10.3.0.2", "10.3.0.1", 64, b""),
        );
        let (verdict, out, _) = switch_in(&mut router, ms(0), 30, ping);
        assert_eq!(verdict, Verdict::Consumed);
        assert_eq!(out.len(), 1);
        // And the host cannot reach them.
        let (verdict, out, _) =
            uplink_in(&mut router, ms(0), udp("192.168.1.1", "10.3.0.2", 64), true);
        assert_eq!(verdict, Verdict::Drop(RouterDrop::NoUplink));
        assert!(out.is_empty());
        let ping = echo_request("192.168.1.1", "10.3.0.1", 64, b"");
        let (verdict, _, _) = uplink_in(&mut router, ms(0), ping, true);
        assert_eq!(verdict, Verdict::Drop(RouterDrop::NoUplink));
    }

    #[test]
    fn spoofed_sources_are_dropped() {
        let mut router = router();
        for src in [
            "10.2.0.5",
            "10.1.0.1",
            "10.1.0.255",
            "0.0.0.0",
            "192.168.0.1",
        ] {
            let frame = to_container(&udp(src, "8.8.8.8", 64));
            let (verdict, _, _) = switch_in(&mut router, ms(0), 10, frame);
            assert_eq!(
                verdict,
                Verdict::Drop(RouterDrop::SpoofedSource),
                "from {src}"
            );
        }
    }

    #[test]
    fn special_destinations_are_dropped() {
        let mut router = router();
        let cases = [
            ("10.1.0.255", RouterDrop::InvalidDestination),
            ("10.1.0.0", RouterDrop::InvalidDestination),
            ("10.1.0.3", RouterDrop::SameNetwork),
            ("127.0.0.1", RouterDrop::InvalidDestination),
            ("169.254.1.1", RouterDrop::InvalidDestination),
            ("224.0.0.251", RouterDrop::InvalidDestination),
            ("255.255.255.255", RouterDrop::InvalidDestination),
            ("0.0.0.0", RouterDrop::InvalidDestination),
            ("240.0.0.1", RouterDrop::InvalidDestination),
        ];
        for (dst, reason) in cases {
            let frame = to_container(&udp("10.1.0.2", dst, 64));
            let (verdict, _, _) = switch_in(&mut router, ms(0), 10, frame);
            assert_eq!(verdict, Verdict::Drop(reason), "to {dst}");
        }
        for dst in ["10.2.0.0", "10.2.0.255"] {
            let (verdict, _, _) = uplink_in(&mut router, ms(0), udp("1.1.1.1", dst, 64), true);
            assert_eq!(verdict, Verdict::Drop(RouterDrop::InvalidDestination));
        }
    }

    #[test]
    fn frames_not_for_the_router() {
        let mut router = router();
        let datagram = udp("10.1.0.2", "8.8.8.8", 64);
        // Someone else's MAC (flooded unknown unicast), the router's MAC of another
        // VLAN, multicast, broadcast IPv4, an unknown VLAN.
        for (id, dst) in [
            (10, STRANGER),
            (10, ROUTER2),
            (10, MacAddr([0x01, 0, 0x5e, 0, 0, 0xfb])),
            (10, MacAddr::BROADCAST),
            (99, ROUTER1),
        ] {
            let frame = eth(dst, CONTAINER, 0x0800, &datagram);
            let (verdict, out, frame) = switch_in(&mut router, ms(0), id, frame);
            assert_eq!(verdict, Verdict::Drop(RouterDrop::NotForRouter), "to {dst}");
            assert!(out.is_empty());
            assert_eq!(&frame[14..], &datagram[..]);
        }
        let ipv6 = eth(ROUTER1, CONTAINER, 0x86dd, &[0x60; 40]);
        let (verdict, _, _) = switch_in(&mut router, ms(0), 10, ipv6);
        assert_eq!(verdict, Verdict::Drop(RouterDrop::UnsupportedProtocol));
        assert_eq!(drops(&router, RouterDrop::NotForRouter), 5);
    }

    #[test]
    fn ipv6_from_the_uplink_is_unsupported_not_malformed() {
        let mut router = router();
        let mut ipv6 = vec![0u8; 48];
        ipv6[0] = 0x60;
        let (verdict, out, _) = uplink_in(&mut router, ms(0), ipv6, true);
        assert_eq!(verdict, Verdict::Drop(RouterDrop::UnsupportedProtocol));
        assert!(out.is_empty());
        let (verdict, _, _) = uplink_in(&mut router, ms(0), vec![0x45, 0, 0], true);
        assert_eq!(verdict, Verdict::Drop(RouterDrop::Malformed));
    }

    #[test]
    fn malformed_ipv4_is_rejected() {
        let mut router = router();
        let good = udp("10.1.0.2", "8.8.8.8", 64);
        let mut bad_checksum = good.clone();
        bad_checksum[10] ^= 1;
        let mut bad_version = good.clone();
        bad_version[0] = 0x65;
        let mut short_ihl = good.clone();
        short_ihl[0] = 0x44;
        let mut too_long = good.clone();
        too_long[3] = 0xff;
        let mut zero_len = good.clone();
        zero_len[2..4].copy_from_slice(&[0, 0]);
        for packet in [
            bad_checksum,
            bad_version,
            short_ihl,
            too_long,
            zero_len,
            good[..19].to_vec(),
        ] {
            let (verdict, _, _) = switch_in(&mut router, ms(0), 10, to_container(&packet));
            assert_eq!(verdict, Verdict::Drop(RouterDrop::Malformed));
            // The uplink carries other IP versions too: those are unsupported, not broken.
            let expected = if packet[0] >> 4 == 4 {
                RouterDrop::Malformed
            } else {
                RouterDrop::UnsupportedProtocol
            };
            let (verdict, _, _) = uplink_in(&mut router, ms(0), packet, true);
            assert_eq!(verdict, Verdict::Drop(expected));
        }
        let (verdict, _, _) = switch_in(&mut router, ms(0), 10, vec![0xff; 13]);
        assert_eq!(verdict, Verdict::Drop(RouterDrop::Malformed));
        let from_multicast = eth(
            ROUTER1,
            MacAddr([0x01, 0, 0x5e, 0, 0, 1]),
            0x0800,
            &echo_request("10.1.0.2", "10.1.0.1", 64, b""),
        );
        let (verdict, out, _) = switch_in(&mut router, ms(0), 10, from_multicast);
        assert_eq!(verdict, Verdict::Drop(RouterDrop::Malformed));
        assert!(out.is_empty());
        let truncated_arp = arp(
            MacAddr::BROADCAST,
            smol::ArpOperation::Request,
            (CONTAINER, "10.1.0.2"),
            (MacAddr::ZERO, "10.1.0.1"),
        )[..40]
            .to_vec();
        let (verdict, out, _) = switch_in(&mut router, ms(0), 10, truncated_arp);
        assert_eq!(verdict, Verdict::Drop(RouterDrop::Malformed));
        assert!(out.is_empty());
    }

    #[test]
    fn uplink_to_a_static_neighbor() {
        let mut router = router();
        router.set_static_neighbor(vlan(20), ip("10.2.0.5"), STRANGER);
        let packet = udp("192.168.1.10", "10.2.0.5", 64);
        let (verdict, out, sent) = uplink_in(&mut router, ms(0), packet, false);
        assert_eq!(
            verdict,
            Verdict::ToSwitch {
                vlan: vlan(20),
                dst: STRANGER,
                src: ROUTER2
            }
        );
        assert!(out.is_empty());
        assert_eq!(parse_ipv4(&sent).0.hop_limit, 63);
        assert_eq!(router.counters().routed_to_switch, 1);
        assert!(router.neighbors()[0].is_static);
    }

    #[test]
    fn arp_never_overwrites_a_static_neighbor() {
        let mut router = router();
        router.set_static_neighbor(vlan(10), ip("10.1.0.2"), CONTAINER);
        let claim = arp(
            MacAddr::BROADCAST,
            smol::ArpOperation::Reply,
            (STRANGER, "10.1.0.2"),
            (MacAddr::BROADCAST, "10.1.0.2"),
        );
        switch_in(&mut router, ms(0), 10, claim);
        let (verdict, _, _) = uplink_in(&mut router, ms(1), udp("1.1.1.1", "10.1.0.2", 64), true);
        assert_eq!(
            verdict,
            Verdict::ToSwitch {
                vlan: vlan(10),
                dst: CONTAINER,
                src: ROUTER1
            }
        );
        // Statics never age.
        router.handle_timeout(Time::from_secs(100_000));
        assert_eq!(router.neighbors().len(), 1);
        assert_eq!(router.next_timeout(), None);
    }

    #[test]
    fn unknown_neighbor_is_resolved_and_the_packet_released() {
        let mut router = router();
        let packet = udp("192.168.1.10", "10.1.0.2", 64);
        let (verdict, out, _) = uplink_in(&mut router, ms(1000), packet.clone(), true);
        assert_eq!(verdict, Verdict::Held);
        let (id, frame) = only_switch_frame(&out);
        assert_eq!(id, vlan(10));
        let (dst, src, request) = parse_arp_frame(frame);
        assert_eq!((dst, src), (MacAddr::BROADCAST, ROUTER1));
        assert_eq!(
            request,
            smol::ArpRepr::EthernetIpv4 {
                operation: smol::ArpOperation::Request,
                source_hardware_addr: smol::EthernetAddress(ROUTER1.octets()),
                source_protocol_addr: ip("10.1.0.1"),
                target_hardware_addr: smol::EthernetAddress([0; 6]),
                target_protocol_addr: ip("10.1.0.2"),
            }
        );
        assert_eq!(router.next_timeout(), Some(ms(4000)));

        // A second packet within a second is held without asking again.
        let (verdict, out, _) = uplink_in(&mut router, ms(1500), packet.clone(), true);
        assert_eq!(verdict, Verdict::Held);
        assert!(out.is_empty());
        assert_eq!(router.counters().arp_requests_sent, 1);

        let reply = arp(
            ROUTER1,
            smol::ArpOperation::Reply,
            (CONTAINER, "10.1.0.2"),
            (ROUTER1, "10.1.0.1"),
        );
        let (verdict, out, _) = switch_in(&mut router, ms(1600), 10, reply);
        assert_eq!(verdict, Verdict::Consumed);
        assert_eq!(out.len(), 2);
        let expected = eth(
            CONTAINER,
            ROUTER1,
            0x0800,
            &udp("192.168.1.10", "10.1.0.2", 63),
        );
        for released in &out {
            assert_eq!(
                released,
                &RouterOutput::ToSwitch {
                    vlan: vlan(10),
                    frame: expected.clone()
                }
            );
        }
        let counters = router.counters();
        assert_eq!((counters.held, counters.released), (2, 2));

        // Now it is known.
        let (verdict, out, _) = uplink_in(&mut router, ms(1700), packet, true);
        assert!(matches!(verdict, Verdict::ToSwitch { dst: CONTAINER, .. }));
        assert!(out.is_empty());
    }

    #[test]
    fn asks_again_after_a_second() {
        let mut router = router();
        let packet = udp("192.168.1.10", "10.1.0.2", 64);
        let (_, out, _) = uplink_in(&mut router, ms(0), packet.clone(), false);
        assert_eq!(out.len(), 1);
        let (_, out, _) = uplink_in(&mut router, ms(999), packet.clone(), false);
        assert!(out.is_empty());
        let (_, out, _) = uplink_in(&mut router, ms(1000), packet, false);
        assert_eq!(out.len(), 1);
        assert_eq!(router.counters().arp_requests_sent, 2);
    }

    #[test]
    fn unresolved_without_holding() {
        let mut router = router();
        let packet = udp("192.168.1.10", "10.1.0.2", 64);
        let (verdict, out, sent) = uplink_in(&mut router, ms(0), packet.clone(), false);
        assert_eq!(verdict, Verdict::Drop(RouterDrop::Unresolved));
        assert_eq!(out.len(), 1, "the ARP request still goes out");
        assert_eq!(sent, packet, "a dropped packet is left alone");
        assert_eq!(router.counters().held, 0);
    }

    #[test]
    fn held_packets_expire() {
        let mut router = router();
        let packet = udp("192.168.1.10", "10.1.0.2", 64);
        uplink_in(&mut router, ms(0), packet, true);
        assert_eq!(router.next_timeout(), Some(ms(3000)));
        router.handle_timeout(ms(2999));
        assert_eq!(drops(&router, RouterDrop::Unresolved), 0);
        router.handle_timeout(ms(3000));
        assert_eq!(drops(&router, RouterDrop::Unresolved), 1);
        assert_eq!(router.next_timeout(), None);
        let reply = arp(
            ROUTER1,
            smol::ArpOperation::Reply,
            (CONTAINER, "10.1.0.2"),
            (ROUTER1, "10.1.0.1"),
        );
        let (_, out, _) = switch_in(&mut router, ms(3100), 10, reply);
        assert!(out.is_empty());
        assert_eq!(router.counters().released, 0);
    }

    #[test]
    fn stale_held_packets_are_not_released_late() {
        let mut router = router();
        uplink_in(&mut router, ms(0), udp("1.1.1.1", "10.1.0.2", 64), true);
        // handle_timeout was not called in time: the reply must not release it.
        let reply = arp(
            ROUTER1,
            smol::ArpOperation::Reply,
            (CONTAINER, "10.1.0.2"),
            (ROUTER1, "10.1.0.1"),
        );
        let (_, out, _) = switch_in(&mut router, ms(5000), 10, reply);
        assert!(out.is_empty());
        assert_eq!(drops(&router, RouterDrop::Unresolved), 1);
    }

    #[test]
    fn hold_queue_keeps_the_newest_three() {
        let mut router = router();
        for ttl in [10, 20, 30, 40] {
            let (verdict, _, _) =
                uplink_in(&mut router, ms(0), udp("1.1.1.1", "10.1.0.2", ttl), true);
            assert_eq!(verdict, Verdict::Held);
        }
        assert_eq!(drops(&router, RouterDrop::HoldQueueFull), 1);
        let reply = arp(
            ROUTER1,
            smol::ArpOperation::Reply,
            (CONTAINER, "10.1.0.2"),
            (ROUTER1, "10.1.0.1"),
        );
        let (_, out, _) = switch_in(&mut router, ms(10), 10, reply);
        let ttls: Vec<u8> = out
            .iter()
            .map(|output| match output {
                RouterOutput::ToSwitch { frame, .. } => parse_ipv4(&frame[14..]).0.hop_limit,
                other => panic!("released elsewhere: {other:?}"),
            })
            .collect();
        assert_eq!(ttls, vec![19, 29, 39]);
    }

    /// UDP from `src:sport` to `dst:dport`, checksummed (or with checksum 0).
    fn udp_to(
        src: &str,
        sport: u16,
        dst: &str,
        dport: u16,
        data: &[u8],
        checksum: bool,
    ) -> Vec<u8> {
        let repr = smol::UdpRepr {
            src_port: sport,
            dst_port: dport,
        };
        let mut datagram = vec![0; repr.header_len() + data.len()];
        let mut view = smol::UdpPacket::new_unchecked(&mut datagram[..]);
        repr.emit(
            &mut view,
            &smol::IpAddress::Ipv4(ip(src)),
            &smol::IpAddress::Ipv4(ip(dst)),
            data.len(),
            |payload| payload.copy_from_slice(data),
            &ChecksumCapabilities::default(),
        );
        if !checksum {
            datagram[6..8].copy_from_slice(&[0, 0]);
        }
        ipv4(src, dst, 64, smol::IpProtocol::Udp, &datagram)
    }

    #[test]
    fn dns_to_a_gateway_goes_to_the_dns_service_and_the_reply_is_well_formed() {
        let mut router = router();
        let query = udp_to("10.1.0.2", 40000, "10.1.0.1", 53, b"a dns message", true);
        let frame = eth(ROUTER1, CONTAINER, 0x0800, &query);
        // Off: traffic to the gateway other than ping.
        let (verdict, out, _) = switch_in(&mut router, ms(1), 10, frame.clone());
        assert_eq!(verdict, Verdict::Drop(RouterDrop::ToGateway));
        assert!(out.is_empty());

        router.set_dns(true);
        let (verdict, out, _) = switch_in(&mut router, ms(2), 10, frame);
        assert_eq!(verdict, Verdict::Consumed);
        let [RouterOutput::Dns(got)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(got.message, b"a dns message");
        assert_eq!(got.client, "10.1.0.2:40000".parse().unwrap());
        assert_eq!(
            (got.gateway, got.gateway_mac, got.client_mac),
            (ip("10.1.0.1"), ROUTER1, CONTAINER)
        );
        assert_eq!(router.counters().dns_queries, 1);

        // The answer: gateway:53 to the client, a checksum smoltcp accepts.
        let reply = got.reply_frame(b"the answer");
        let eth_view = smol::EthernetFrame::new_checked(&reply[..]).unwrap();
        assert_eq!(eth_view.dst_addr().0, CONTAINER.octets());
        assert_eq!(eth_view.src_addr().0, ROUTER1.octets());
        let ip_view = smol::Ipv4Packet::new_checked(eth_view.payload()).unwrap();
        assert!(ip_view.verify_checksum());
        assert_eq!(ip_view.src_addr(), ip("10.1.0.1"));
        assert_eq!(ip_view.dst_addr(), ip("10.1.0.2"));
        let udp_view = smol::UdpPacket::new_checked(ip_view.payload()).unwrap();
        assert_eq!((udp_view.src_port(), udp_view.dst_port()), (53, 40000));
        assert!(udp_view.verify_checksum(
            &smol::IpAddress::Ipv4(ip("10.1.0.1")),
            &smol::IpAddress::Ipv4(ip("10.1.0.2"))
        ));
        assert_eq!(udp_view.payload(), b"the answer");

        // No checksum is fine (nor is it checked: the TAP's offload leaves it partial);
        // another port, or a lie about the length not.
        let unchecked = udp_to("10.1.0.2", 40000, "10.1.0.1", 53, b"q", false);
        let (verdict, _, _) = switch_in(
            &mut router,
            ms(3),
            10,
            eth(ROUTER1, CONTAINER, 0x0800, &unchecked),
        );
        assert_eq!(verdict, Verdict::Consumed);
        let mut long = udp_to("10.1.0.2", 40000, "10.1.0.1", 53, b"q", false);
        long[24..26].copy_from_slice(&200u16.to_be_bytes());
        for bad in [long, udp_to("10.1.0.2", 40000, "10.1.0.1", 54, b"q", true)] {
            let (verdict, out, _) = switch_in(
                &mut router,
                ms(4),
                10,
                eth(ROUTER1, CONTAINER, 0x0800, &bad),
            );
            assert_eq!(verdict, Verdict::Drop(RouterDrop::ToGateway));
            assert!(out.is_empty());
        }
        assert_eq!(router.counters().dns_queries, 2);
    }

    #[test]
    fn tcp_to_a_gateways_port_53_goes_to_the_dns_service() {
        let mut router = router();
        // 40000 → 53, SYN, data offset 6 (an MSS option), checksum left 0 (offload).
        let tcp_to = |port: u16| {
            let mut tcp = vec![
                0x9c, 0x40, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x02, 0xff, 0xff,
            ];
            tcp[2..4].copy_from_slice(&port.to_be_bytes());
            tcp.extend_from_slice(&[0, 0, 0, 0, 2, 4, 5, 0xb4]);
            ipv4("10.1.0.2", "10.1.0.1", 64, smol::IpProtocol::Tcp, &tcp)
        };
        let frame = eth(ROUTER1, CONTAINER, 0x0800, &tcp_to(53));
        let (verdict, _, _) = switch_in(&mut router, ms(1), 10, frame.clone());
        assert_eq!(verdict, Verdict::Drop(RouterDrop::ToGateway), "DNS off");

        router.set_dns(true);
        let (verdict, out, _) = switch_in(&mut router, ms(2), 10, frame);
        assert_eq!(verdict, Verdict::Consumed);
        let [RouterOutput::DnsTcp(got)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(got.client, "10.1.0.2:40000".parse().unwrap());
        assert_eq!((got.gateway, got.gateway_mac), (ip("10.1.0.1"), ROUTER1));
        assert_eq!(got.segment.len(), 24);
        assert_eq!(router.counters().dns_tcp_segments, 1);

        // Another port, or a header that does not fit, is not DNS.
        let mut short = tcp_to(53);
        short[20 + 12] = 0xf0;
        let short = ipv4(
            "10.1.0.2",
            "10.1.0.1",
            64,
            smol::IpProtocol::Tcp,
            &short[20..],
        );
        for bad in [tcp_to(80), short] {
            let (verdict, out, _) = switch_in(
                &mut router,
                ms(3),
                10,
                eth(ROUTER1, CONTAINER, 0x0800, &bad),
            );
            assert_eq!(verdict, Verdict::Drop(RouterDrop::ToGateway));
            assert!(out.is_empty());
        }
    }

    #[test]
    fn pending_addresses_are_bounded() {
        let mut router = Router::new();
        router.set_interface(iface(10, "10.8.0.0/16", "10.8.0.1", ROUTER1, true));
        for i in 0..MAX_UNRESOLVED + 1 {
            let dst = Ipv4Addr::new(10, 8, 1 + (i / 200) as u8, 2 + (i % 200) as u8);
            let packet = udp("1.1.1.1", &dst.to_string(), 64);
            let (verdict, out, _) = uplink_in(&mut router, ms(i as u64), packet, true);
            assert_eq!(verdict, Verdict::Held);
            assert_eq!(out.len(), 1);
        }
        assert_eq!(router.pending.len(), MAX_UNRESOLVED);
        assert_eq!(drops(&router, RouterDrop::HoldQueueFull), 1);
        assert!(!router.pending.contains_key(&(vlan(10), ip("10.8.1.2"))));
    }

    #[test]
    fn held_packets_go_first_once_a_static_neighbor_appears() {
        let mut router = router();
        uplink_in(&mut router, ms(0), udp("1.1.1.1", "10.1.0.2", 30), true);
        router.set_static_neighbor(vlan(10), ip("10.1.0.2"), CONTAINER);
        let (verdict, out, _) =
            uplink_in(&mut router, ms(10), udp("1.1.1.1", "10.1.0.2", 40), true);
        assert!(matches!(verdict, Verdict::ToSwitch { dst: CONTAINER, .. }));
        let (_, frame) = only_switch_frame(&out);
        assert_eq!(parse_ipv4(&frame[14..]).0.hop_limit, 29);
    }

    #[test]
    fn host_pings_a_gateway() {
        let mut router = router();
        let request = echo_request("192.168.1.10", "10.2.0.1", 64, b"0123456789");
        let (verdict, out, _) = uplink_in(&mut router, ms(0), request, false);
        assert_eq!(verdict, Verdict::Consumed);
        let [RouterOutput::ToUplink { packet }] = &out[..] else {
            panic!("expected an echo reply to the uplink, got {out:?}");
        };
        let (repr, payload) = parse_ipv4(packet);
        assert_eq!(
            (repr.src_addr, repr.dst_addr),
            (ip("10.2.0.1"), ip("192.168.1.10"))
        );
        assert_eq!(
            parse_icmp(payload),
            smol::Icmpv4Repr::EchoReply {
                ident: 0x1234,
                seq_no: 7,
                data: b"0123456789"
            }
        );
        let (verdict, _, _) = uplink_in(&mut router, ms(0), udp("1.1.1.1", "10.2.0.1", 64), true);
        assert_eq!(verdict, Verdict::Drop(RouterDrop::ToGateway));
    }

    #[test]
    fn uplink_without_route_or_with_expiring_ttl() {
        let mut router = router();
        let (verdict, _, _) = uplink_in(&mut router, ms(0), udp("1.1.1.1", "172.16.0.1", 64), true);
        assert_eq!(verdict, Verdict::Drop(RouterDrop::NoRoute));
        let (verdict, out, _) = uplink_in(&mut router, ms(0), udp("1.1.1.1", "10.1.0.2", 1), true);
        assert_eq!(verdict, Verdict::Drop(RouterDrop::TtlExpired));
        let [RouterOutput::ToUplink { packet }] = &out[..] else {
            panic!("expected time exceeded to the uplink, got {out:?}");
        };
        let (repr, payload) = parse_ipv4(packet);
        assert_eq!(
            (repr.src_addr, repr.dst_addr),
            (ip("10.1.0.1"), ip("1.1.1.1"))
        );
        assert!(matches!(
            parse_icmp(payload),
            smol::Icmpv4Repr::TimeExceeded { .. }
        ));
    }

    #[test]
    fn gso_sized_packets_pass_untouched_but_for_ttl() {
        let mut router = router();
        // A 20 KB TCP super-packet whose TCP checksum is partial (offloaded): garbage to
        // anyone who would check it.
        let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let packet = ipv4(
            "10.1.0.2",
            "93.184.216.34",
            64,
            smol::IpProtocol::Tcp,
            &payload,
        );
        let (verdict, _, frame) = switch_in(&mut router, ms(0), 10, to_container(&packet));
        assert_eq!(verdict, Verdict::ToUplink);
        let (repr, sent_payload) = parse_ipv4(&frame[14..]);
        assert_eq!(repr.hop_limit, 63);
        assert_eq!(sent_payload, &payload[..]);

        router.set_static_neighbor(vlan(10), ip("10.1.0.2"), CONTAINER);
        let packet = ipv4(
            "93.184.216.34",
            "10.1.0.2",
            50,
            smol::IpProtocol::Tcp,
            &payload,
        );
        let (verdict, _, sent) = uplink_in(&mut router, ms(0), packet, false);
        assert!(matches!(verdict, Verdict::ToSwitch { .. }));
        let (repr, sent_payload) = parse_ipv4(&sent);
        assert_eq!(repr.hop_limit, 49);
        assert_eq!(sent_payload, &payload[..]);
    }

    #[test]
    fn learned_neighbors_expire() {
        let mut router = router();
        let announce = arp(
            MacAddr::BROADCAST,
            smol::ArpOperation::Request,
            (CONTAINER, "10.1.0.2"),
            (MacAddr::ZERO, "10.1.0.2"),
        );
        switch_in(&mut router, Time::from_secs(10), 10, announce);
        assert_eq!(router.next_timeout(), Some(Time::from_secs(310)));
        router.handle_timeout(Time::from_secs(70));
        assert_eq!(router.neighbors()[0].age_secs, 60);

        // Past its reachable time it is not used, even before handle_timeout runs.
        let (verdict, _, _) = uplink_in(
            &mut router,
            Time::from_secs(310),
            udp("1.1.1.1", "10.1.0.2", 64),
            false,
        );
        assert_eq!(verdict, Verdict::Drop(RouterDrop::Unresolved));
        assert!(router.neighbors().is_empty());
        router.handle_timeout(Time::from_secs(310));
        assert!(router.neighbors.is_empty() && router.learned_by_age.is_empty());
    }

    #[test]
    fn busy_neighbors_are_reconfirmed_before_expiry() {
        let mut router = router();
        let reply = arp(
            ROUTER1,
            smol::ArpOperation::Reply,
            (CONTAINER, "10.1.0.2"),
            (ROUTER1, "10.1.0.1"),
        );
        switch_in(&mut router, Time::ZERO, 10, reply.clone());
        let packet = udp("1.1.1.1", "10.1.0.2", 64);
        let (_, out, _) = uplink_in(&mut router, Time::from_secs(100), packet.clone(), true);
        assert!(out.is_empty());
        let (verdict, out, _) = uplink_in(&mut router, Time::from_secs(280), packet.clone(), true);
        assert!(matches!(verdict, Verdict::ToSwitch { .. }));
        let (_, frame) = only_switch_frame(&out);
        let (dst, _, _) = parse_arp_frame(frame);
        assert_eq!(dst, CONTAINER, "the probe is unicast");
        let (_, out, _) = uplink_in(&mut router, Time::from_millis(280_500), packet, true);
        assert!(out.is_empty(), "at most one probe a second");
        // The answer reconfirms the entry.
        switch_in(&mut router, Time::from_secs(281), 10, reply);
        assert_eq!(router.next_timeout(), Some(Time::from_secs(581)));
    }

    #[test]
    fn learned_neighbors_are_bounded() {
        let mut router = Router::new();
        router.set_interface(iface(10, "10.8.0.0/16", "10.8.0.1", ROUTER1, true));
        router.set_static_neighbor(vlan(10), ip("10.8.0.2"), STRANGER);
        for i in 0..=MAX_LEARNED_NEIGHBORS {
            let sender = Ipv4Addr::new(10, 8, 1 + (i / 250) as u8, 1 + (i % 250) as u8);
            let mac = MacAddr::from_ipv4(sender);
            let frame = arp(
                MacAddr::BROADCAST,
                smol::ArpOperation::Request,
                (mac, &sender.to_string()),
                (MacAddr::ZERO, "10.8.0.1"),
            );
            switch_in(&mut router, ms(i as u64), 10, frame);
        }
        assert_eq!(router.learned_by_age.len(), MAX_LEARNED_NEIGHBORS);
        assert_eq!(router.neighbors().len(), MAX_LEARNED_NEIGHBORS + 1);
        // The oldest learned went; the static stayed.
        assert!(!router.neighbors.contains_key(&(vlan(10), ip("10.8.1.1"))));
        assert!(router.neighbors.contains_key(&(vlan(10), ip("10.8.1.2"))));
        assert!(router.neighbors.contains_key(&(vlan(10), ip("10.8.0.2"))));
    }

    #[test]
    fn removing_an_interface_forgets_its_state() {
        let mut router = router();
        router.set_static_neighbor(vlan(10), ip("10.1.0.9"), STRANGER);
        router.set_static_neighbor(vlan(20), ip("10.2.0.9"), STRANGER);
        let announce = arp(
            MacAddr::BROADCAST,
            smol::ArpOperation::Request,
            (CONTAINER, "10.1.0.2"),
            (MacAddr::ZERO, "10.1.0.2"),
        );
        switch_in(&mut router, ms(0), 10, announce);
        uplink_in(&mut router, ms(0), udp("1.1.1.1", "10.1.0.3", 64), true);
        let removed = router.remove_interface(vlan(10)).unwrap();
        assert_eq!(removed.gateway, ip("10.1.0.1"));
        assert_eq!(router.remove_interface(vlan(10)), None);
        assert_eq!(router.interfaces().count(), 2);
        let left: Vec<Ipv4Addr> = router.neighbors().iter().map(|n| n.ip).collect();
        assert_eq!(left, vec![ip("10.2.0.9")]);
        assert!(router.pending.is_empty() && router.learned_by_age.is_empty());
        assert_eq!(drops(&router, RouterDrop::NoRoute), 1);
        let (verdict, _, _) = uplink_in(&mut router, ms(0), udp("1.1.1.1", "10.1.0.9", 64), true);
        assert_eq!(verdict, Verdict::Drop(RouterDrop::NoRoute));
    }

    #[test]
    fn replacing_an_interface_forgets_what_no_longer_fits() {
        let mut router = router();
        let announce = arp(
            MacAddr::BROADCAST,
            smol::ArpOperation::Request,
            (CONTAINER, "10.1.0.2"),
            (MacAddr::ZERO, "10.1.0.2"),
        );
        switch_in(&mut router, ms(0), 10, announce);
        router.set_interface(iface(10, "10.1.0.0/24", "10.1.0.1", ROUTER1, false));
        assert_eq!(router.neighbors().len(), 1);
        router.set_interface(iface(10, "10.9.0.0/24", "10.9.0.1", ROUTER1, true));
        assert!(router.neighbors().is_empty());
        assert!(router.learned_by_age.is_empty());
    }

    #[test]
    fn longest_prefix_wins_from_the_uplink() {
        let mut router = router();
        router.set_interface(iface(40, "10.1.0.128/25", "10.1.0.129", ROUTER3, true));
        router.set_static_neighbor(vlan(40), ip("10.1.0.200"), STRANGER);
        let (verdict, _, _) = uplink_in(&mut router, ms(0), udp("1.1.1.1", "10.1.0.200", 64), true);
        assert!(matches!(verdict, Verdict::ToSwitch { vlan: v, .. } if v == vlan(40)));
    }

    #[test]
    fn counters_serialize_with_reason_names() {
        let mut router = router();
        switch_in(
            &mut router,
            ms(0),
            99,
            to_container(&udp("10.1.0.2", "8.8.8.8", 64)),
        );
        let json = serde_json::to_value(router.counters()).unwrap();
        assert_eq!(json["drops"]["not_for_router"], 1);
        for reason in RouterDrop::ALL {
            let text = serde_json::to_string(&reason).unwrap();
            assert_eq!(text, format!("\"{}\"", reason.as_str()));
        }
    }

    #[test]
    fn incremental_checksum_edge_cases() {
        // RFC 1624 §3: the update must not produce 0xffff where a recomputation gives 0.
        for ttl in 1..=255u8 {
            for protocol in [0u8, 1, 6, 17, 255] {
                let mut packet = ipv4("10.1.0.2", "8.8.8.8", ttl, protocol.into(), b"");
                let mut expected = packet.clone();
                decrement_ttl(&mut packet);
                expected[8] = ttl - 1;
                smol::Ipv4Packet::new_unchecked(&mut expected[..]).fill_checksum();
                assert_eq!(packet, expected, "ttl {ttl} protocol {protocol}");
            }
        }
    }

    proptest! {
        #[test]
        fn ttl_decrement_matches_recomputation(
            header in proptest::collection::vec(any::<u8>(), 20..=60),
            ttl in 1..=255u8,
        ) {
            let mut packet = header;
            let ihl = (packet.len() / 4) as u8;
            packet.truncate(usize::from(ihl) * 4);
            packet[0] = 0x40 | ihl;
            let total_len = packet.len() as u16;
            packet[2..4].copy_from_slice(&total_len.to_be_bytes());
            packet[8] = ttl;
            smol::Ipv4Packet::new_unchecked(&mut packet[..]).fill_checksum();
            let mut expected = packet.clone();
            expected[8] = ttl - 1;
            smol::Ipv4Packet::new_unchecked(&mut expected[..]).fill_checksum();
            decrement_ttl(&mut packet);
            prop_assert_eq!(packet, expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            id in prop_oneof![Just(10u16), Just(30), Just(99)],
            prefix in 0..4usize,
            can_hold in any::<bool>(),
        ) {
            let mut router = router();
            router.set_static_neighbor(vlan(10), ip("10.1.0.2"), CONTAINER);
            // Give the garbage a plausible head, so it gets past the first checks.
            let head = match prefix {
                0 => Vec::new(),
                1 => eth(ROUTER1, CONTAINER, 0x0800, &[]),
                2 => eth(MacAddr::BROADCAST, CONTAINER, 0x0806, &[]),
                _ => eth(ROUTER1, CONTAINER, 0x0800, &[0x45]),
            };
            let mut frame = [head, bytes.clone()].concat();
            let mut out = Vec::new();
            let verdict = router.from_switch(ms(0), vlan(id), &mut frame, &mut out);
            if verdict == Verdict::ToUplink {
                prop_assert!(smol::Ipv4Packet::new_checked(&frame[14..]).unwrap().verify_checksum());
            }
            let mut packet = bytes;
            router.from_uplink(ms(1), &mut packet, can_hold, &mut out);
            router.handle_timeout(ms(10_000));
        }

        #[test]
        fn mutated_packets_never_panic(
            flips in proptest::collection::vec((0..64usize, any::<u8>()), 1..6),
            cut in 0..80usize,
            fix_checksum in any::<bool>(),
        ) {
            let mut router = router();
            let templates = [
                echo_request("10.1.0.2", "10.1.0.1", 64, b"abcdefgh"),
                udp("10.1.0.2", "8.8.8.8", 2),
                udp("192.168.1.1", "10.1.0.5", 2),
            ];
            for template in templates {
                let mut packet = template;
                for &(at, value) in &flips {
                    if let Some(byte) = packet.get_mut(at % 64) {
                        *byte ^= value;
                    }
                }
                if fix_checksum && packet.len() >= 20 {
                    let ihl = usize::from(packet[0] & 0x0f) * 4;
                    if (20..=packet.len()).contains(&ihl) {
                        packet[10..12].copy_from_slice(&[0, 0]);
                        let sum = !smol::checksum::data(&packet[..ihl]);
                        packet[10..12].copy_from_slice(&sum.to_be_bytes());
                    }
                }
                packet.truncate(packet.len().min(cut + 20));
                let mut out = Vec::new();
                let mut frame = to_container(&packet);
                let verdict = router.from_switch(ms(0), vlan(10), &mut frame, &mut out);
                if verdict == Verdict::ToUplink {
                    prop_assert!(smol::Ipv4Packet::new_checked(&frame[14..]).unwrap().verify_checksum());
                }
                router.from_uplink(ms(0), &mut packet, true, &mut out);
            }
        }
    }
}
