//! The control protocol between switchd and its clients (swctl, nsutil, switchyard-cni).
//!
//! A Unix stream socket (mode 0600, or 0660 for switchd's `--socket-group`). Each request
//! is one line of JSON, answered by one line of JSON: `{"result": ...}` on success,
//! `{"error": {"code": "...", "message": "..."}}` on failure. Clients decide on the
//! [`ErrorCode`], never on the message. A client may send several requests on one
//! connection, at least one every 30 s: switchd closes idle connections.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::controller::error::{ControlError, ErrorCode};
use crate::fdb::{FdbCounters, FdbEntry};
use crate::forward::{DropReason, PortCounters};
use crate::network::NetworkConfig;
use crate::port::{PortId, PortMode};
use crate::portmap::PortMapping;
use crate::router::{Neighbor, RouterCounters};
use crate::wire::{MacAddr, VlanId};
use ipnet::Ipv4Net;
use switchyard_encap::Vni;

/// Where switchd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/switchyard/switchd.sock";
/// Environment variable that overrides [`DEFAULT_SOCKET`] for every client.
pub const SOCKET_ENV: &str = "SWITCHYARD_SOCKET";

/// A request to switchd.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Is switchd there, and what is it? Answer: [`Status`].
    Status,
    /// The cluster store as this node sees it. Answer: [`ClusterStatus`].
    ClusterStatus,
    /// The cluster's nodes. Answer: `Vec<NodeInfo>`.
    NodeList,
    /// Create a TAP port inside a network namespace, or report the one already there
    /// for (namespace, ifname). Answer: [`Attached`].
    Attach(AttachRequest),
    /// Remove the port of (namespace, ifname), destroying its TAP. Answer: [`Detached`].
    Detach { netns: PathBuf, ifname: String },
    /// Remove a port by id or name. Answer: [`PortInfo`].
    PortDel { port: String },
    /// Make an existing interface a port (a host port: a NIC, bond or veth), or create
    /// a TAP in switchd's own namespace (an internal port). Answer: [`PortInfo`].
    PortAdd(PortAddRequest),
    /// Answer: `Vec<PortInfo>`.
    PortList,
    /// Change a port's VLAN mode, port security or storm limit (what is given). Answer:
    /// [`PortInfo`].
    PortSet {
        port: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<PortMode>,
        /// Port security on or off (see [`crate::port::PortSecurity`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port_security: Option<bool>,
        /// Flooded frames per second the port may send; 0 for no limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        storm_limit_pps: Option<u32>,
    },
    /// Answer: `Vec<FdbRecord>`.
    FdbShow {
        #[serde(default)]
        vlan: Option<VlanId>,
        #[serde(default)]
        port: Option<String>,
    },
    /// Add (or replace) a static entry. Answer: [`FdbRecord`].
    FdbAdd {
        mac: MacAddr,
        vlan: VlanId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vtep: Option<IpAddr>,
    },
    /// Remove an entry, static or learned. Answer: [`FdbRecord`].
    FdbDel { mac: MacAddr, vlan: VlanId },
    /// Remove learned entries (and static ones if asked). Answer: [`Flushed`].
    FdbFlush {
        #[serde(default)]
        vlan: Option<VlanId>,
        #[serde(default)]
        port: Option<String>,
        #[serde(default)]
        include_static: bool,
    },
    /// Answer: [`Stats`].
    Stats,
    /// The overlay: VTEP address, VLAN ↔ VNI map, peers, drops. Answer: [`VxlanInfo`].
    VxlanShow,
    /// Carry `vlan` over the overlay as `vni`. Answer: [`VxlanInfo`].
    VxlanMap { vlan: VlanId, vni: Vni },
    /// Stop carrying `vlan` over the overlay. Answer: [`VxlanInfo`].
    VxlanUnmap { vlan: VlanId },
    /// Add a remote VTEP, `IP` or `IP:PORT` (default: our VXLAN port). Answer: [`PeerInfo`].
    PeerAdd { addr: String },
    /// Remove a remote VTEP and what was learned behind it. Answer: [`PeerInfo`].
    PeerDel { addr: String },
    /// Answer: `Vec<PeerInfo>`.
    PeerList,
    /// Create a network. Answer: [`NetworkInfo`].
    NetworkCreate(NetworkConfig),
    /// Answer: `Vec<NetworkInfo>`.
    NetworkList,
    /// Answer: [`NetworkInfo`].
    NetworkInspect { name: String },
    /// Remove a network without endpoints. Answer: [`NetworkInfo`] as it was.
    NetworkRemove { name: String },
    /// The router: its interfaces, neighbours and counters. Answer: [`RouterInfo`].
    RouterShow,
    /// Rename a network (found by name or id). Answer: [`NetworkInfo`].
    NetworkRename { name: String, new_name: String },
    /// Set an address aside in a network for `owner` (which has no port yet): `ip` if
    /// free, else the next free one. An attach with that address and `owner` as its
    /// container id takes it over. Answer: [`Reserved`].
    AddressReserve {
        network: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<Ipv4Addr>,
        owner: String,
    },
    /// Give a reserved address back. Answer: [`Reserved`] as it was.
    AddressRelease { network: String, ip: Ipv4Addr },
    /// A subnet a new network could have (not created). Answer: [`Suggested`].
    SubnetSuggest {
        #[serde(default)]
        internal: bool,
    },
    /// The port's TAP was moved (by a container runtime) into the namespace at `netns`:
    /// switchd checks it through the TAP's descriptor and records where it is now, so a
    /// restart finds it. Answer: [`PortInfo`].
    PortMoved { port: String, netns: PathBuf },
    /// Replace the published ports of the port's endpoint (none: publish nothing), or
    /// with `add`, publish these beside the ones it has. The result is checked whole,
    /// against itself and every other endpoint's; a refusal changes nothing. Answer:
    /// [`EndpointInfo`].
    PortPublish {
        port: String,
        #[serde(default)]
        published: Vec<PortMapping>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        add: bool,
    },
    /// Stop publishing these ports of the port's endpoint (none: all of them); one it
    /// does not publish is refused, and nothing changes. Answer: [`EndpointInfo`].
    PortUnpublish {
        port: String,
        #[serde(default)]
        published: Vec<PortMapping>,
    },
    /// Run a frame (hex, Ethernet as the port would hand it over) through the datapath
    /// as if it came in on `port`, without sending, learning or counting anything.
    /// Answer: [`crate::trace::Trace`].
    Trace { port: String, frame: String },
    /// Stream copies of `port`'s frames: the answer line ([`CaptureStarted`]) is followed
    /// on the same connection by a pcapng file, until `count` frames were sent (if
    /// given), the port goes away, or the client closes the connection. Answered by the
    /// daemon; the connection carries nothing else afterwards.
    Capture {
        port: String,
        #[serde(default)]
        directions: crate::capture::Directions,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    },
    /// Replace switchd's log filter (a level, or directives such as
    /// `switchd=debug,warn`; see switchd's `--log`) until the next change or restart.
    /// Answered by the daemon. Answer: [`LogFilter`].
    LogLevel { filter: String },
    /// Become a VXLAN tunnel endpoint at `vtep`, `IP` or `IP:PORT` (port 4789 by
    /// default), without a restart; remembered in the state directory. Refused when
    /// switchd is a VTEP already. Answer: [`VxlanInfo`].
    VxlanEnable { vtep: String },
}

/// The answer to [`Request::Capture`], before the pcapng stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStarted {
    pub port: PortId,
    pub name: String,
    /// Bytes of frames switchd holds for the capture before it loses frames.
    pub budget: usize,
}

/// switchd's log filter after a [`Request::LogLevel`], and the one it replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFilter {
    pub filter: String,
    pub previous: String,
}

/// A reserved address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserved {
    pub network: String,
    /// The address with the network's prefix.
    pub address: Ipv4Net,
    pub owner: String,
}

/// A free subnet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggested {
    pub subnet: Ipv4Net,
}

/// [`Request::PortAdd`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PortAddRequest {
    /// The interface: an existing one (a host port), or, with `internal`, the name of
    /// the TAP to create.
    pub ifname: String,
    /// The namespace the interface is in (a path switchd can open); absent: switchd's
    /// own. Not with `internal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    /// Create a TAP named `ifname` in switchd's own namespace instead of attaching an
    /// existing interface.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// Default: access on VLAN 1 (as `nsutil attach` without `--vlan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PortMode>,
    /// Port security; off by default for host ports (they carry many MACs), as for
    /// TAPs otherwise (switchd knows no MAC for an internal port, so it is off too
    /// unless asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security: Option<bool>,
    /// Flooded frames per second the port may send; 0 for no limit; absent: switchd's
    /// `--storm-limit-pps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_limit_pps: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AttachRequest {
    /// The namespace, as a path switchd can open (`/run/netns/red`, `/proc/PID/ns/net`).
    pub netns: PathBuf,
    /// Name of the interface inside the namespace.
    pub ifname: String,
    pub mode: PortMode,
    /// A short human name for the namespace (`red`), used in port names.
    #[serde(default)]
    pub label: Option<String>,
    /// Attach to this network: the port joins its VLAN and IPAM assigns an address.
    /// `mode` is ignored then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// With `network`: this address instead of the next free one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// With `network`: the container runtime's id for the attachment (CNI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// With `ip`: the prefix the caller was given, which must be the network's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_len: Option<u8>,
    /// Without a network: the MAC the caller gives the interface (switchd refuses one
    /// already used on the port's VLANs, and port security allows only it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// Without a network: the IPv4 addresses the caller gives the interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Ipv4Addr>,
    /// Port security on or off; by default on for access ports whose MAC switchd knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security: Option<bool>,
    /// With `network`: ports to publish (as `PortPublish` would), checked with the
    /// attach and made with it, or neither.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<PortMapping>,
    /// With `network`: the endpoint's DNS name there (a label, unique in the network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// With `network`: more names, which other endpoints may share.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// What a container's interface on a network is to be configured with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInfo {
    pub network: String,
    /// The address with the network's prefix.
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub mac: MacAddr,
    pub mtu: u32,
    /// The port's name (`red/eth0`) and id.
    pub port: PortId,
    pub port_name: String,
    /// The interface name inside the namespace, and the namespace.
    pub ifname: String,
    pub netns: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Published ports (`docker run -p`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<PortMapping>,
    /// Its DNS name and aliases on the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Whether switchd's DNS answers on the gateway: false on a LAN network, whose
    /// gateway is the LAN's router (absent: true, as every switchd before LAN networks).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub dns: bool,
}

fn yes() -> bool {
    true
}

fn is_yes(value: &bool) -> bool {
    *value
}

/// A network as `swctl network inspect` shows it, close to `docker network inspect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub name: String,
    pub id: String,
    /// `local`, or `overlay` when it has a VNI.
    pub driver: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub vlan: VlanId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<Vni>,
    /// Where automatic addresses come from, when not the whole subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
    pub mtu: u32,
    pub internal: bool,
    pub masquerade: bool,
    /// The router's MAC on this network.
    pub gateway_mac: MacAddr,
    /// The settings as strings, like `docker network inspect`'s `Options`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub endpoints: Vec<EndpointInfo>,
    /// Addresses set aside for owners that have no port yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reservations: Vec<crate::network::Reservation>,
    /// `local`, or `global` when the network is shared through the cluster store.
    #[serde(default)]
    pub scope: crate::network::Scope,
    /// A global network's endpoints on other nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_endpoints: Vec<RemoteEndpointInfo>,
    /// The ids this node's callers know a global network by (each host's Docker's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_ids: Vec<String>,
    /// A LAN network's parent: the host port (by name) its VLAN (`vlan`) leaves
    /// through, to the LAN's own router (`gateway`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Addresses of the subnet IPAM never hands out (Docker's `--aux-address`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aux_addresses: Vec<Ipv4Addr>,
}

/// An endpoint of a global network on another node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEndpointInfo {
    pub node: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// The router's view: one interface per network, the neighbours it knows, its counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouterInfo {
    /// The uplink TUN's name, when a network has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<String>,
    pub neighbors: Vec<Neighbor>,
    pub counters: RouterCounters,
    /// The embedded DNS's counters.
    #[serde(default)]
    pub dns: crate::dns::DnsCounters,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub ports: usize,
    pub state_dir: PathBuf,
    /// Whether the embedded DNS answers on the gateways (`--dns`).
    #[serde(default)]
    pub dns: bool,
    /// This node's name, when switchd is a member of a cluster (`--cluster-store`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_node: Option<String>,
}

/// The cluster store as one node sees it (`swctl cluster status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The store, as given (`etcd://H:P,...`).
    pub store: String,
    pub node: String,
    /// The VTEP this node advertises.
    pub advertise: Option<SocketAddr>,
    /// Whether the store answers (registered, watching).
    pub connected: bool,
    /// The member this node talks to while connected (`H:P`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// This node's lease (hex, as etcdctl shows it) while registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    pub lease_ttl_secs: i64,
    /// The store revision this node's picture reflects.
    pub revision: i64,
    /// Seconds since the last change from the store was applied (or the last snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_secs_ago: Option<u64>,
    /// Nodes registered, this one included.
    pub nodes: usize,
    /// Tunnel peers the cluster made.
    pub peers: usize,
    pub global_networks: usize,
    /// Endpoints on other nodes.
    pub remote_endpoints: usize,
    /// Registrations since start (the first, and one after each outage or lost lease).
    pub registrations: u64,
    /// Fresh snapshots after the watch's revision was compacted away.
    pub compactions: u64,
    pub watch_events: u64,
    /// Records in the store that could not be read (skipped).
    pub unreadable_records: u64,
    /// Why the store is not connected, or the last problem with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One node of the cluster (`swctl node ls`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub vtep: SocketAddr,
    /// Whether this is the node answering.
    pub local: bool,
    /// Endpoints the node has registered.
    pub endpoints: usize,
    /// The tunnel port it has here (not for this node itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortId>,
    /// When its switchd started (RFC 3339, UTC).
    pub started: String,
}

/// An on/off flag as the command-line tools take it (`on`, `true`, `yes` / `off`,
/// `false`, `no`), for clap's `value_parser`.
pub fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("expected on or off, got {text:?}")),
    }
}

/// A VTEP address as `switchd --vtep` and [`Request::VxlanEnable`] take it: `IP`,
/// `IP:PORT` or `[IPv6]:PORT`, the port 4789 (IANA's) unless given; a unicast address
/// (this host's, which only binding it can tell) and a port other than 0.
pub fn parse_vtep(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let addr = text
        .parse::<SocketAddr>()
        .ok()
        .or_else(|| {
            text.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, switchyard_encap::vxlan::IANA_PORT))
        })
        .ok_or_else(|| {
            format!("invalid VTEP {text:?}: expected IP or IP:PORT, such as 192.0.2.1 or 192.0.2.1:8472")
        })?;
    if addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(format!(
            "invalid VTEP {text:?}: the VTEP needs this host's own unicast address"
        ));
    }
    if addr.port() == 0 {
        return Err(format!(
            "invalid VTEP {text:?}: give a UDP port (4789 by default), not 0"
        ));
    }
    Ok(addr)
}

/// A port as switchd reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortInfo {
    pub id: PortId,
    /// `label/ifname`, e.g. `red/eth0`.
    pub name: String,
    pub netns: PathBuf,
    pub ifname: String,
    /// Interface index inside the namespace.
    pub ifindex: u32,
    #[serde(flatten)]
    pub mode: PortMode,
    /// `up`, or why the port is not forwarding.
    pub state: String,
    /// The MAC switchd knows for the interface, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// Whether port security checks what the port sends (absent: off).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub port_security: bool,
    /// Flooded frames per second the port may send; absent for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_limit_pps: Option<u32>,
    /// `tap`, `host` or `internal` (absent: `tap`, from a switchd before host ports).
    #[serde(default)]
    pub kind: crate::controller::state::SavedPortKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attached {
    pub port: PortInfo,
    /// False when the port already existed.
    pub created: bool,
    /// The network attachment, when the request named a network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detached {
    /// The port removed, or `None` when nothing was attached there.
    pub port: Option<PortInfo>,
}

/// An FDB entry with its port's name, and the VTEP for remote MACs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FdbRecord {
    #[serde(flatten)]
    pub entry: FdbEntry,
    pub port_name: String,
    /// The underlay address of the VTEP the MAC sits behind, for remote entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flushed {
    pub removed: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortStats {
    pub id: PortId,
    pub name: String,
    #[serde(flatten)]
    pub counters: PortCounters,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FdbStats {
    pub entries: usize,
    pub max_entries: usize,
    pub max_per_port: usize,
    pub aging_secs: u64,
    #[serde(flatten)]
    pub counters: FdbCounters,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Local ports, then VTEP peers (named `vtep:ADDR`).
    pub ports: Vec<PortStats>,
    pub fdb: FdbStats,
    /// Drops that belong to no port, such as VXLAN from addresses that are not peers.
    #[serde(default)]
    pub unattributed_drops: BTreeMap<DropReason, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VniMapping {
    pub vlan: VlanId,
    pub vni: Vni,
}

/// A remote VTEP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    pub port: PortId,
    /// The cluster node whose VTEP this is, when the cluster added the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The path MTU the kernel reported towards the peer when it was added.
    pub path_mtu: u32,
    /// The largest inner IP packet that fits, encapsulated (path MTU less 50, or 70 on IPv6).
    pub inner_mtu: u32,
    #[serde(flatten)]
    pub counters: PortCounters,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VxlanInfo {
    /// The local VTEP address and UDP port.
    pub local: SocketAddr,
    pub map: Vec<VniMapping>,
    pub peers: Vec<PeerInfo>,
    /// Drops of VXLAN from addresses that are not peers.
    pub unattributed_drops: BTreeMap<DropReason, u64>,
    /// "Fragmentation needed" answers sent to containers for frames too big to encapsulate.
    pub icmp_frag_needed_sent: u64,
    pub accept_inner_tagged: bool,
}

/// The envelope of every answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply<T> {
    Result(T),
    Error(ErrorReply),
}

/// A refusal as it crosses the socket: coded, or (from a switchd older than the codes)
/// a bare message, which clients read as [`ErrorCode::Unknown`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ErrorReply {
    Coded(ControlError),
    Text(String),
}

impl From<ErrorReply> for ControlError {
    fn from(reply: ErrorReply) -> ControlError {
        match reply {
            ErrorReply::Coded(err) => err,
            ErrorReply::Text(message) => ControlError::new(ErrorCode::Unknown, message),
        }
    }
}

impl<T> Reply<T> {
    /// The answer to a request that was refused.
    pub fn refused(err: ControlError) -> Reply<T> {
        Reply::Error(ErrorReply::Coded(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_wire_form() {
        let request = Request::FdbAdd {
            mac: "02:42:0a:00:00:01".parse().unwrap(),
            vlan: VlanId::new(10).unwrap(),
            port: Some("red/eth0".into()),
            vtep: None,
        };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(
            json,
            r#"{"cmd":"fdb_add","mac":"02:42:0a:00:00:01","vlan":10,"port":"red/eth0"}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), request);
        let flush: Request = serde_json::from_str(r#"{"cmd":"fdb_flush"}"#).unwrap();
        assert_eq!(
            flush,
            Request::FdbFlush {
                vlan: None,
                port: None,
                include_static: false
            }
        );
    }

    #[test]
    fn bad_requests_do_not_decode() {
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"launch_missiles"}"#).is_err());
        assert!(
            serde_json::from_str::<Request>(r#"{"cmd":"fdb_del","mac":"x","vlan":1}"#).is_err()
        );
        assert!(serde_json::from_str::<Request>(
            r#"{"cmd":"fdb_del","mac":"02:00:00:00:00:01","vlan":0}"#
        )
        .is_err());
    }

    #[test]
    fn vtep_addresses_take_the_iana_port_unless_given() {
        let parsed = |text: &str| parse_vtep(text);
        assert_eq!(parsed("192.0.2.1"), Ok("192.0.2.1:4789".parse().unwrap()));
        assert_eq!(
            parsed(" 192.0.2.1:8472 "),
            Ok("192.0.2.1:8472".parse().unwrap())
        );
        assert_eq!(
            parsed("[2001:db8::1]"),
            Ok("[2001:db8::1]:4789".parse().unwrap())
        );
        for bad in ["", "0.0.0.0", "::", "239.1.1.1", "192.0.2.1:0", "host:4789"] {
            assert!(parsed(bad).is_err(), "{bad:?}");
        }
        let request: Request =
            serde_json::from_str(r#"{"cmd":"vxlan_enable","vtep":"192.0.2.1"}"#).unwrap();
        assert_eq!(
            request,
            Request::VxlanEnable {
                vtep: "192.0.2.1".into()
            }
        );
    }

    #[test]
    fn replies_wrap_results_and_errors() {
        let ok: Reply<Flushed> = serde_json::from_str(r#"{"result":{"removed":3}}"#).unwrap();
        assert!(matches!(ok, Reply::Result(Flushed { removed: 3 })));
        let err: Reply<Flushed> = serde_json::from_str(
            r#"{"error":{"code":"no_such_port","message":"no such port: 9"}}"#,
        )
        .unwrap();
        let Reply::Error(err) = err else {
            panic!("an error")
        };
        let err = ControlError::from(err);
        assert_eq!(err.code, ErrorCode::NoSuchPort);
        assert_eq!(err.message, "no such port: 9");
        // An older switchd's bare message still decodes.
        let old: Reply<Flushed> = serde_json::from_str(r#"{"error":"no such port: 9"}"#).unwrap();
        let Reply::Error(old) = old else {
            panic!("an error")
        };
        assert_eq!(ControlError::from(old).code, ErrorCode::Unknown);
        let refused = serde_json::to_string(&Reply::<Flushed>::refused(ControlError::new(
            ErrorCode::NetworkInUse,
            "in use",
        )))
        .unwrap();
        assert_eq!(
            refused,
            r#"{"error":{"code":"network_in_use","message":"in use"}}"#
        );
    }

    #[test]
    fn port_info_flattens_mode() {
        let info = PortInfo {
            id: PortId(1),
            name: "red/eth0".into(),
            netns: "/run/netns/red".into(),
            ifname: "eth0".into(),
            ifindex: 7,
            mode: PortMode::Access {
                vlan: VlanId::new(10).unwrap(),
            },
            state: "up".into(),
            mac: None,
            port_security: true,
            storm_limit_pps: Some(2000),
            kind: Default::default(),
        };
        let value = serde_json::to_value(&info).unwrap();
        assert_eq!(value["mode"], "access");
        assert_eq!(value["vlan"], 10);
        assert_eq!(serde_json::from_value::<PortInfo>(value).unwrap(), info);
    }
}
