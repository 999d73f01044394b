//! The controller's side effects: small traits that switchd implements over the OS layer
//! (`switchyard-os`) and tests implement in memory ([`super::fake`]).
//!
//! Each method does one thing to the world outside the process and says whether it
//! worked. None is called with the controller in a half-changed state: the controller
//! changes its model, derives the [`super::plan::Plan`] of steps that bring the world in
//! line, and runs it through these traits.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::error::ControlError;
use super::state::{SavedPort, SavedState};
use crate::cluster::Txn;
use crate::port::PortId;
use crate::portmap::Protocol;

/// Which namespace something lives in: device and inode of its nsfs file (tell
/// namespaces apart while both are alive) and the kernel's cookie (never reused within
/// a boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NamespaceId {
    pub dev: u64,
    pub ino: u64,
    pub cookie: u64,
}

/// One masquerade (source NAT) rule: traffic from `subnet` that leaves through any
/// interface but `uplink` (switchd's own TUN) is masqueraded.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Masquerade {
    /// The network's subnet; host bits are ignored.
    pub subnet: Ipv4Net,
    /// switchd's uplink TUN (an interface name, 1 to 15 bytes).
    pub uplink: String,
}

impl std::fmt::Display for Masquerade {
    /// The rule in `nft` syntax.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.subnet.prefix_len() > 0 {
            write!(f, "ip saddr {} ", self.subnet.trunc())?;
        }
        write!(f, "oifname != {:?} masquerade", self.uplink)
    }
}

/// One published port as destination NAT: what arrives for `host_port` (on `host_ip`,
/// or any address of switchd's namespace) goes to `target:target_port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortForward {
    pub protocol: Protocol,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub target: Ipv4Addr,
    pub target_port: u16,
}

impl std::fmt::Display for PortForward {
    /// The rule in `nft` syntax.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host_ip {
            Some(ip) => write!(f, "ip daddr {ip} ")?,
            None => write!(f, "fib daddr type local ")?,
        }
        write!(
            f,
            "{} dport {} dnat to {}:{}",
            self.protocol, self.host_port, self.target, self.target_port
        )
    }
}

/// Everything switchd's NAT table holds: masquerading networks and published ports.
/// Published ports also need two masquerade rules of their own through `uplink`: for
/// containers that reach a published port (hairpin: in and out through the uplink) and
/// for clients on 127.0.0.1 of switchd's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatRules {
    pub masquerade: Vec<Masquerade>,
    pub forwards: Vec<PortForward>,
    /// switchd's uplink TUN.
    pub uplink: String,
}

impl NatRules {
    /// No rules: the table goes.
    pub fn is_empty(&self) -> bool {
        self.masquerade.is_empty() && self.forwards.is_empty()
    }
}

/// Ports' TAP devices and the namespaces they live in.
pub trait Links {
    /// Opens the network namespace at `path` and identifies it.
    fn identify_netns(&mut self, path: &Path) -> Result<NamespaceId, ControlError>;

    /// Whether `path` still names the namespace with this device and inode.
    fn netns_is(&self, path: &Path, dev: u64, ino: u64) -> bool;

    /// Creates the TAP `ifname` inside the namespace at `netns` for port `port`, and
    /// starts forwarding what it sends. Returns its interface index.
    fn create_tap(&mut self, port: PortId, netns: &Path, ifname: &str)
        -> Result<u32, ControlError>;

    /// Finds a saved port's TAP again after a restart (checking that the path still
    /// names the namespace it was attached in, with `same_boot` saying whether cookies
    /// can be compared) and starts forwarding. The error says why it is down.
    fn reattach_tap(&mut self, port: &SavedPort, same_boot: bool) -> Result<(), String>;

    /// Where `port`'s TAP is now, from its descriptor: the namespace it lives in, its
    /// name and its interface index there.
    fn locate_tap(&mut self, port: PortId) -> Result<(NamespaceId, String, u32), ControlError>;

    /// Stops forwarding for `port` and deletes its TAP.
    fn destroy_tap(&mut self, port: PortId) -> Result<(), ControlError>;

    /// Removes what a change that never finished may have left of `port`'s TAP: the
    /// TAP named `port.ifname` in its namespace, if there is one. True if it removed one.
    fn discard_tap(&mut self, port: &SavedPort) -> Result<bool, ControlError>;
}

/// How the controller names switchd's own network namespace in a port's record
/// ([`super::state::SavedPort::netns`]): internal ports and host ports of switchd's
/// namespace live here. The identity checks (device, inode, cookie) hold across restarts
/// as for any other path: a switchd started in another namespace sees another cookie.
pub const OWN_NETNS: &str = "/proc/self/ns/net";

/// What the kernel says about an interface (rtnetlink's link message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkFacts {
    pub ifindex: u32,
    pub mtu: u32,
    pub mac: Option<crate::wire::MacAddr>,
    /// `IFF_LOOPBACK`.
    pub loopback: bool,
    /// The interface index of its master (a Linux bridge or bond it is enslaved to).
    pub master: Option<u32>,
    /// The master's name, when it has a master and the name could be read.
    pub master_name: Option<String>,
    /// `IFLA_INFO_KIND` (`veth`, `bond`, `bridge`, `tun`, ...); `None` for a physical NIC.
    pub kind: Option<String>,
    /// Operationally up (`IFF_RUNNING` / `IF_OPER_UP`, or `IF_OPER_UNKNOWN` with
    /// `IFF_UP`, as for TAPs and veths whose state the driver does not report).
    pub up: bool,
}

/// Host ports: existing interfaces switchd reads and writes through a packet socket.
/// `netns` is `None` for switchd's own namespace.
pub trait HostPorts {
    /// The interface `ifname` of the namespace, or `None` when there is none (the
    /// namespace itself missing is an error, `namespace_unavailable`). Changes nothing.
    fn link_facts(
        &mut self,
        netns: Option<&Path>,
        ifname: &str,
    ) -> Result<Option<LinkFacts>, ControlError>;

    /// Opens a packet socket (`PACKET_VNET_HDR`, promiscuous) on `ifname` for port `port`
    /// and starts forwarding through it (switchd: a thread), marking the port up.
    /// Returns the interface index it opened. Opening a port that is open already
    /// closes the old socket first (the interface came back with a new index).
    fn open_host_port(
        &mut self,
        port: PortId,
        netns: Option<&Path>,
        ifname: &str,
    ) -> Result<u32, ControlError>;

    /// Stops forwarding for `port` and closes its socket; the interface stays as it was
    /// (its promiscuous mode went with the socket). Nothing to do when it is not open.
    fn close_host_port(&mut self, port: PortId);
}

/// The uplink to the host, its routes, and the NAT table.
pub trait Routing {
    /// IPv4 subnets the host already routes (main table, not the default route, not
    /// through the uplink): what a new network must not shadow.
    fn host_routes(&mut self) -> Result<Vec<Ipv4Net>, ControlError>;

    /// Creates the uplink TUN, if there is none yet, and starts routing through it.
    fn create_uplink(&mut self) -> Result<(), ControlError>;

    /// The uplink's name, once it exists.
    fn uplink_name(&self) -> Option<String>;

    /// Routes `subnet` into the uplink with `mtu` as its path MTU.
    fn route(&mut self, subnet: Ipv4Net, mtu: u32) -> Result<(), ControlError>;

    fn unroute(&mut self, subnet: Ipv4Net) -> Result<(), ControlError>;

    /// Replaces the whole NAT table with `rules` (none: the table goes).
    fn replace_nat(&mut self, rules: &NatRules) -> Result<(), ControlError>;
}

/// The VXLAN underlay.
pub trait Underlay {
    /// This switchd's VTEP address, when it has one (`--vtep`, the state directory's,
    /// or one enabled since).
    fn vtep(&self) -> Option<SocketAddr>;

    /// Becomes the VTEP `local` while running (`swctl vxlan enable`): binds the
    /// underlay's sockets with the checks of a start with `--vtep` (an address of this
    /// host, a free port, no other switchd on it), and starts sending and receiving.
    /// Returns the address bound. Only asked when there is no VTEP yet; there is no
    /// undoing it while switchd runs.
    fn enable_vtep(&mut self, local: SocketAddr) -> Result<SocketAddr, ControlError>;

    /// The path MTU towards `peer`, as the kernel knows it.
    fn path_mtu(&mut self, peer: SocketAddr) -> u32;
}

/// The state directory.
pub trait Store {
    /// Replaces the saved state atomically.
    fn save(&mut self, state: &SavedState) -> Result<(), ControlError>;

    /// A new random id for a network (64 hex digits, like Docker's).
    fn random_id(&mut self) -> Result<String, ControlError>;
}

/// The cluster store (etcd), when switchd is a member of a cluster.
pub trait Cluster {
    /// This node's name, when switchd was started with a cluster store.
    fn cluster_node(&self) -> Option<String>;

    /// Runs `txn` on the store; true if its compares held and its writes were made.
    /// Fails with [`super::ErrorCode::StoreUnavailable`] when the store does not answer
    /// in time, having changed nothing the controller knows of.
    fn cluster_txn(&mut self, txn: &Txn) -> Result<bool, ControlError>;
}

/// Everything the controller does to the world.
pub trait Effects: Links + HostPorts + Routing + Underlay + Store + Cluster {}

impl<T: Links + HostPorts + Routing + Underlay + Store + Cluster> Effects for T {}
