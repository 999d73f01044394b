//! Networks, endpoints and IP address management: the model users think in.
//!
//! A [`Network`] is Docker's CNM network: a group of endpoints that reach each other
//! directly, with an IPv4 subnet and a gateway that belongs to switchd's router. Each
//! network is carried on an internal VLAN (and, when it spans hosts, a VNI), which users
//! never pick. An [`Endpoint`] is one container interface attached to a network: a port,
//! an address and the MAC derived from it.
//!
//! # Contract
//!
//! * **Names** are 1 to 64 characters of letters, digits, `_`, `.` and `-`, starting
//!   with a letter or digit, and unique.
//! * **Subnets** are IPv4 with a prefix from /8 to /30, given without host bits, and never
//!   overlap another network's. Without one, the first /24 of [`DEFAULT_POOL`] that
//!   overlaps neither a network nor a route the host already has is taken.
//! * **Gateway**: a host address inside the subnet (default: the first one).
//! * **IPAM.** Addresses come from the subnet; the network address, the broadcast address
//!   and the gateway are never handed out, and no address is ever held by two endpoints.
//!   Automatic allocation is next-fit: it continues after the address handed out last, so
//!   a just-released address is not reused at once (a container that went away may still
//!   be in other containers' ARP caches). A requested address is granted only if it is
//!   a free host address of the subnet.
//! * **Removal** of a network is refused while it has endpoints.
//! * Nothing here performs I/O: [`Networks::plan`] validates a request and returns the
//!   network it would create, so the caller can set up the data path and the uplink,
//!   persist, and only then [`Networks::insert`] it. Every method that fails changes
//!   nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use switchyard_encap::Vni;

use crate::port::PortId;
use crate::portmap::{PortMapError, PortMapping};
use crate::wire::{MacAddr, VlanId};

/// Where subnets come from when a network is created without one: 172.20.0.0/14, as
/// /24s (1024 networks).
pub const DEFAULT_POOL: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(172, 20, 0, 0), 14);
/// The prefix of subnets taken from [`DEFAULT_POOL`].
pub const DEFAULT_POOL_PREFIX: u8 = 24;
/// Networks are carried on VLANs from here up to 4094, the first one no port uses.
pub const FIRST_NETWORK_VLAN: u16 = 3000;
/// The MTU of a network unless told otherwise.
pub const DEFAULT_MTU: u32 = 1500;
/// The MTU of a network with a VNI unless told otherwise: 1500 less VXLAN's 50 bytes.
pub const DEFAULT_OVERLAY_MTU: u32 = 1450;
pub const MIN_MTU: u32 = 68;
pub const MAX_MTU: u32 = 65535;
/// The longest network name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// The widest subnet a network may have (a /8 is 16 million addresses already).
const MIN_PREFIX: u8 = 8;

/// What a user asks for when creating a network; everything but the name is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    pub name: String,
    /// The network's id, when the caller has one (the Docker plugin passes Docker's):
    /// 1 to 64 lowercase hex digits, unique. Without it switchd makes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Ipv4Net>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Carry the network over the VXLAN overlay as this VNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<Vni>,
    /// Hand out automatic addresses only from this part of the subnet (Docker's
    /// `--ip-range`): on an overlay network each host gets its own range, so hosts that
    /// allocate independently never give out the same address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
    /// No uplink: containers reach only each other and the gateway.
    #[serde(default)]
    pub internal: bool,
    /// Source NAT for traffic that leaves the host through the uplink.
    #[serde(default)]
    pub masquerade: bool,
    /// `global`: the network is shared through the cluster store, on every node.
    #[serde(default, skip_serializing_if = "Scope::is_local")]
    pub scope: Scope,
    /// A LAN network (Docker's macvlan case): its VLAN leaves switchd through this host
    /// port (a port id, name or interface name), and its gateway is the LAN's own router,
    /// not switchd's. Needs `subnet` and `gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// With `parent`: the VLAN the LAN is on at the parent (default: the parent's
    /// untagged VLAN); one the parent carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<VlanId>,
    /// Addresses of the subnet never handed out (Docker's `--aux-address`): the LAN's
    /// other hosts, say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aux_addresses: Vec<Ipv4Addr>,
}

/// Where a network exists: on this host only, or on every node of the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Local,
    Global,
}

impl Scope {
    pub fn is_local(&self) -> bool {
        *self == Scope::Local
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Global => "global",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Scope, String> {
        match text {
            "local" => Ok(Scope::Local),
            "global" => Ok(Scope::Global),
            other => Err(format!("unknown scope {other:?}: use local or global")),
        }
    }
}

/// A network as switchd keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    /// 64 hex digits, like Docker's network ids.
    pub id: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The internal VLAN the network is carried on.
    pub vlan: VlanId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<Vni>,
    /// Where automatic addresses come from (default: the whole subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
    pub mtu: u32,
    pub internal: bool,
    pub masquerade: bool,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// The address handed out last, where next-fit allocation continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_allocated: Option<Ipv4Addr>,
    /// `global`: shared through the cluster store (see `crate::cluster`).
    #[serde(default, skip_serializing_if = "Scope::is_local")]
    pub scope: Scope,
    /// Other ids this node's callers know a global network by (each host's Docker has
    /// its own id for it): found by them like by its id; never shared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_ids: Vec<String>,
    /// A LAN network's parent host port (see [`NetworkConfig::parent`]): switchd's
    /// router has no interface on it, and its gateway is the LAN's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<PortId>,
    /// Addresses IPAM never hands out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aux_addresses: Vec<Ipv4Addr>,
}

impl Network {
    /// Whether this is a LAN network: reached through a host port, routed by the LAN's
    /// router, with nothing of switchd's router, uplink, NAT or DNS.
    pub fn is_lan(&self) -> bool {
        self.parent.is_some()
    }

    /// Whether switchd's router serves the network (its gateway, routes, NAT, DNS).
    pub fn is_routed_here(&self) -> bool {
        !self.is_lan()
    }

    /// `overlay` when the network spans hosts, `local` otherwise (Docker's driver names).
    pub fn driver(&self) -> &'static str {
        if self.vni.is_some() {
            "overlay"
        } else {
            "local"
        }
    }

    /// The MAC of switchd's router on this network, locally administered. An overlay
    /// network's comes from its VNI, so every host's router answers for the gateway with
    /// the same MAC (each host routes its own containers); a local network's from its VLAN.
    pub fn router_mac(&self) -> MacAddr {
        match self.vni {
            Some(vni) => {
                let [_, a, b, c] = vni.get().to_be_bytes();
                MacAddr([0x02, 0x53, 0x59, a, b, c])
            }
            None => {
                let [hi, lo] = self.vlan.get().to_be_bytes();
                MacAddr([0x02, 0x53, 0x58, 0x00, hi, lo])
            }
        }
    }

    /// Whether `ip` may be an endpoint's address: a host address of the subnet other than
    /// the gateway and the auxiliary addresses.
    pub fn is_assignable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(&ip)
            && ip != self.subnet.network()
            && ip != self.subnet.broadcast()
            && ip != self.gateway
            && !self.aux_addresses.contains(&ip)
    }
}

/// A container interface attached to a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    pub port: PortId,
    pub ip: Ipv4Addr,
    /// `02:42` and the address (see [`MacAddr::from_ipv4`]), set on the interface by
    /// whoever configures it, and known to the router without ARP.
    pub mac: MacAddr,
    /// The container runtime's id, when a CNI runtime attached it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Ports of switchd's namespace that forward to this endpoint (see [`crate::portmap`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<PortMapping>,
    /// The endpoint's DNS name on its network: a DNS label, unique within the network
    /// (compared without case). `NAME` and `NAME.NETWORK` resolve to `ip` for the
    /// network's members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// More names for it, labels too; several endpoints may share one (they answer
    /// together, in turns).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// A network request or an address request that cannot be granted. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid network name {0:?}: use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit")]
    InvalidName(String),
    #[error("network {0} already exists")]
    Exists(String),
    #[error("no such network {0}; create it with `swctl network create {0} --subnet CIDR`, or see `swctl network ls`")]
    NotFound(String),
    #[error("subnet {subnet} has host bits set; did you mean {}?", .subnet.trunc())]
    HostBits { subnet: Ipv4Net },
    #[error("subnet {0} is too small: a network needs at least /30 (a gateway and one container)")]
    TooSmall(Ipv4Net),
    #[error("subnet {0} is too large: give a prefix of /{MIN_PREFIX} or longer")]
    TooLarge(Ipv4Net),
    #[error(
        "subnet {subnet} overlaps network {other} ({other_subnet}); choose a subnet that does not"
    )]
    Overlap {
        subnet: Ipv4Net,
        other: String,
        other_subnet: Ipv4Net,
    },
    #[error("subnet {subnet} overlaps {route}, which this host already routes; choose another subnet, or create the network --internal")]
    OverlapsHostRoute { subnet: Ipv4Net, route: Ipv4Net },
    #[error("no free /{DEFAULT_POOL_PREFIX} left in {DEFAULT_POOL}; give a subnet with --subnet")]
    PoolExhausted,
    #[error("gateway {gateway} is outside subnet {subnet}; give a gateway inside it")]
    GatewayOutside { gateway: Ipv4Addr, subnet: Ipv4Net },
    #[error(
        "gateway {gateway} is the network or broadcast address of {subnet}; give a host address"
    )]
    GatewayNotHost { gateway: Ipv4Addr, subnet: Ipv4Net },
    #[error("invalid MTU {0}: give a value from {MIN_MTU} to {MAX_MTU}")]
    Mtu(u32),
    #[error("IP range {range} is not inside subnet {subnet}")]
    RangeOutside { range: Ipv4Net, subnet: Ipv4Net },
    #[error("VNI {vni} already carries network {other}")]
    VniTaken { vni: Vni, other: String },
    #[error("an --internal network has no uplink to masquerade through; drop one of the two")]
    InternalMasquerade,
    #[error("no free VLAN left for a network (VLANs {FIRST_NETWORK_VLAN}-4094 are all in use)")]
    NoVlan,
    #[error("invalid network id {0:?}: give 1 to 64 lowercase hexadecimal digits")]
    InvalidId(String),
    #[error("network id {id} is already network {other}'s")]
    IdTaken { id: String, other: String },
    #[error("{ip} is not reserved in network {network}")]
    NotReserved { ip: Ipv4Addr, network: String },
    #[error("network {name} has {count} endpoint(s) attached; detach them first (`swctl network inspect {name}` lists them)")]
    InUse { name: String, count: usize },
    #[error("address {ip} is outside network {network}'s subnet {subnet}")]
    AddressOutside {
        ip: Ipv4Addr,
        network: String,
        subnet: Ipv4Net,
    },
    #[error(
        "address {ip} is reserved in network {network} (the network, broadcast or gateway address)"
    )]
    AddressReserved { ip: Ipv4Addr, network: String },
    #[error(
        "address {ip} is already in use in network {network}; pick another, or leave it to IPAM"
    )]
    AddressTaken { ip: Ipv4Addr, network: String },
    #[error("network {network} has no free address left in {subnet}")]
    Exhausted { network: String, subnet: Ipv4Net },
    #[error("{0}")]
    PortMap(#[from] PortMapError),
    #[error("network {0} is --internal: nothing outside it can reach a published port; publish on a network that is not internal")]
    InternalPublish(String),
    #[error("network {0} is a LAN network: its containers are on the LAN already, reached at their own addresses; switchd publishes ports only on its own networks")]
    LanPublish(String),
    #[error("a LAN network (--parent) needs {0}")]
    LanNeeds(&'static str),
    #[error("a LAN network (--parent) cannot be {0}")]
    LanCannot(&'static str),
    #[error("--vlan goes with --parent (a LAN network); other networks get a VLAN of their own")]
    VlanWithoutParent,
    #[error("VLAN {vlan} already carries network {other}")]
    VlanTaken { vlan: VlanId, other: String },
    #[error(
        "auxiliary address {ip} is not a host address of subnet {subnet} other than the gateway"
    )]
    AuxOutside { ip: Ipv4Addr, subnet: Ipv4Net },
    #[error("published port {mapping} is taken: {other} already forwards to {ip} in network {network}; choose another host port")]
    HostPortTaken {
        mapping: PortMapping,
        other: PortMapping,
        ip: Ipv4Addr,
        network: String,
    },
    #[error("port {0} has no endpoint: only ports attached to a network publish ports")]
    NoEndpoint(PortId),
    #[error("invalid name {0:?}: a container's name or alias is a DNS label, 1 to 63 letters, digits or '-', not starting or ending with '-'")]
    InvalidEndpointName(String),
    #[error("name {name} is taken in network {network} (by {ip}); give another with --name")]
    NameTaken {
        name: String,
        network: String,
        ip: Ipv4Addr,
    },
}

/// Checks a container's name or alias: a DNS label, by the rule the DNS answers with
/// ([`crate::dns::check_label`]).
pub fn validate_endpoint_name(name: &str) -> Result<(), NetworkError> {
    crate::dns::check_label(name).map_err(|_| NetworkError::InvalidEndpointName(name.to_string()))
}

/// How much of a network's address space IPAM has handed out (see
/// [`Networks::address_usage`]).
///
/// An attach that names its address may take any of the subnet's host addresses but
/// the gateway; automatic allocation only walks the `ip_range` (the whole subnet without
/// one). So `used` counts the former and `pool`/`free` the latter, and `used + free` is
/// the subnet's assignable addresses only when there is no `ip_range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressUsage {
    /// The subnet's assignable addresses (its host addresses but the gateway) held by an
    /// endpoint, a reservation or another node, in the `ip_range` or not.
    pub used: u64,
    /// The addresses automatic allocation can hand out: the `ip_range`'s (the subnet's
    /// without one) less the subnet's network and broadcast addresses and the gateway.
    pub pool: u64,
    /// Of `pool`, the ones nobody holds: what automatic allocation can still hand out.
    pub free: u64,
}

/// An address IPAM set aside for someone who has no port yet: Docker's IPAM driver asks
/// for a container's address before its interface exists. An attach naming the address
/// with the owner as its container id takes it over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub network: String,
    pub ip: Ipv4Addr,
    pub owner: String,
}

/// Every network and endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Networks {
    networks: BTreeMap<String, Network>,
    endpoints: Vec<Endpoint>,
    reservations: Vec<Reservation>,
    /// Addresses of global networks other nodes hold (from the cluster store): never
    /// handed out here. Not saved; the store has them.
    foreign: BTreeMap<String, BTreeSet<Ipv4Addr>>,
}

impl Networks {
    pub fn new() -> Networks {
        Networks::default()
    }

    /// Rebuilds the model from saved networks and endpoints, checking what a hand-edited
    /// or damaged state file could get wrong.
    pub fn restore(
        networks: Vec<Network>,
        endpoints: Vec<Endpoint>,
    ) -> Result<Networks, RestoreError> {
        let mut model = Networks::new();
        for network in networks {
            if model.networks.contains_key(&network.name) {
                return Err(RestoreError(format!(
                    "network {} is listed twice",
                    network.name
                )));
            }
            if let Some(other) = model
                .networks
                .values()
                .find(|o| o.subnet.contains(&network.subnet) || network.subnet.contains(&o.subnet))
            {
                return Err(RestoreError(format!(
                    "networks {} and {} overlap",
                    network.name, other.name
                )));
            }
            if let Some(other) = model.networks.values().find(|o| o.vlan == network.vlan) {
                return Err(RestoreError(format!(
                    "networks {} and {} share VLAN {}",
                    network.name, other.name, network.vlan
                )));
            }
            model.networks.insert(network.name.clone(), network);
        }
        for endpoint in endpoints {
            let Some(network) = model.networks.get(&endpoint.network) else {
                return Err(RestoreError(format!(
                    "endpoint {} is on network {}, which does not exist",
                    endpoint.ip, endpoint.network
                )));
            };
            if !network.is_assignable(endpoint.ip) {
                return Err(RestoreError(format!(
                    "endpoint {} cannot be in network {}",
                    endpoint.ip, network.name
                )));
            }
            if model
                .address_holder(&endpoint.network, endpoint.ip)
                .is_some()
            {
                return Err(RestoreError(format!(
                    "address {} is held twice in network {}",
                    endpoint.ip, endpoint.network
                )));
            }
            if model.endpoint_of_port(endpoint.port).is_some() {
                return Err(RestoreError(format!(
                    "port {} has two endpoints",
                    endpoint.port
                )));
            }
            let published = endpoint.published.clone();
            let port = endpoint.port;
            let mut endpoint = endpoint;
            model
                .check_names(&mut endpoint)
                .map_err(|err| RestoreError(format!("port {port}'s endpoint: {err}")))?;
            model.endpoints.push(endpoint);
            model
                .publish(port, &published)
                .map_err(|err| RestoreError(format!("port {port}'s published ports: {err}")))?;
        }
        Ok(model)
    }

    pub fn get(&self, name: &str) -> Option<&Network> {
        self.networks.get(name)
    }

    /// Like [`Networks::get`], with the error a user should see.
    pub fn find(&self, name: &str) -> Result<&Network, NetworkError> {
        self.get(name)
            .ok_or_else(|| NetworkError::NotFound(name.to_string()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Network> {
        self.networks.values()
    }

    pub fn by_vlan(&self, vlan: VlanId) -> Option<&Network> {
        self.networks.values().find(|n| n.vlan == vlan)
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn endpoints_of<'a>(&'a self, network: &'a str) -> impl Iterator<Item = &'a Endpoint> {
        self.endpoints.iter().filter(move |e| e.network == network)
    }

    pub fn endpoint_of_port(&self, port: PortId) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.port == port)
    }

    fn address_holder(&self, network: &str, ip: Ipv4Addr) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|e| e.network == network && e.ip == ip)
    }

    /// Who reserved `ip` in `network`, if anyone.
    fn reserved_by(&self, network: &str, ip: Ipv4Addr) -> Option<&str> {
        self.reservations
            .iter()
            .find(|r| r.network == network && r.ip == ip)
            .map(|r| r.owner.as_str())
    }

    /// Whether `ip` is free in `network` for `claimant`: held by no endpoint, and
    /// reserved by nobody else.
    fn is_free_for(&self, network: &str, ip: Ipv4Addr, claimant: Option<&str>) -> bool {
        self.address_holder(network, ip).is_none()
            && !self
                .foreign
                .get(network)
                .is_some_and(|held| held.contains(&ip))
            && self
                .reserved_by(network, ip)
                .is_none_or(|owner| Some(owner) == claimant)
    }

    /// IPAM's use of `network` (see [`AddressUsage`]). `None` for an unknown network.
    pub fn address_usage(&self, network: &str) -> Option<AddressUsage> {
        let net = self.networks.get(network)?;
        let held = self
            .endpoints_of(network)
            .map(|e| e.ip)
            .chain(
                self.reservations
                    .iter()
                    .filter(|r| r.network == network)
                    .map(|r| r.ip),
            )
            .chain(self.foreign.get(network).into_iter().flatten().copied())
            .collect();
        Some(Self::usage_of(net, &held))
    }

    /// [`Networks::address_usage`] of every network, by name: one pass over the
    /// endpoints and reservations, whatever the number of networks.
    pub fn address_usages(&self) -> BTreeMap<&str, AddressUsage> {
        let mut held: BTreeMap<&str, BTreeSet<Ipv4Addr>> = BTreeMap::new();
        let local = self.endpoints.iter().map(|e| (e.network.as_str(), e.ip));
        let reserved = self.reservations.iter().map(|r| (r.network.as_str(), r.ip));
        for (network, ip) in local.chain(reserved) {
            held.entry(network).or_default().insert(ip);
        }
        for (network, ips) in &self.foreign {
            held.entry(network.as_str()).or_default().extend(ips);
        }
        let none = BTreeSet::new();
        self.networks
            .iter()
            .map(|(name, net)| {
                let held = held.get(name.as_str()).unwrap_or(&none);
                (name.as_str(), Self::usage_of(net, held))
            })
            .collect()
    }

    /// `net`'s usage, given the addresses held in it (any of them, assignable or not).
    fn usage_of(net: &Network, held: &BTreeSet<Ipv4Addr>) -> AddressUsage {
        let subnet = net.subnet;
        let pool = net.ip_range.unwrap_or(subnet);
        let size = 1u64 << (32 - u32::from(pool.prefix_len()));
        let excluded: BTreeSet<Ipv4Addr> = [subnet.network(), subnet.broadcast(), net.gateway]
            .into_iter()
            .filter(|ip| pool.contains(ip))
            .collect();
        let pool_size = size.saturating_sub(excluded.len() as u64);
        let assignable = held.iter().filter(|ip| net.is_assignable(**ip));
        let used = assignable.clone().count() as u64;
        let pool_used = assignable.filter(|ip| pool.contains(*ip)).count() as u64;
        AddressUsage {
            used,
            pool: pool_size,
            free: pool_size.saturating_sub(pool_used),
        }
    }

    /// Replaces what other nodes hold of global networks' addresses.
    pub fn set_foreign(&mut self, held: BTreeMap<String, BTreeSet<Ipv4Addr>>) {
        self.foreign = held;
    }

    /// Counts `ip` of `network` as held elsewhere (a claim lost to another node, before
    /// the store's watch says so).
    pub fn add_foreign(&mut self, network: &str, ip: Ipv4Addr) {
        self.foreign
            .entry(network.to_string())
            .or_default()
            .insert(ip);
    }

    pub fn reservations(&self) -> &[Reservation] {
        &self.reservations
    }

    /// The reservation `owner` holds, if any.
    pub fn reservation_of(&self, owner: &str) -> Option<&Reservation> {
        self.reservations.iter().find(|r| r.owner == owner)
    }

    /// Sets an address aside in `network` for `owner`: `requested` if it is free (or
    /// already `owner`'s), else the next free one. Returns it.
    pub fn reserve(
        &mut self,
        network: &str,
        requested: Option<Ipv4Addr>,
        owner: &str,
    ) -> Result<Ipv4Addr, NetworkError> {
        if let Some(existing) = self.reservations.iter().find(|r| {
            r.network == network && r.owner == owner && requested.is_none_or(|ip| ip == r.ip)
        }) {
            return Ok(existing.ip);
        }
        let ip = self.pick_address_for(network, requested, Some(owner))?;
        if let Some(net) = self.networks.get_mut(network) {
            net.last_allocated = Some(ip);
        }
        self.reservations
            .retain(|r| !(r.network == network && r.ip == ip));
        self.reservations.push(Reservation {
            network: network.to_string(),
            ip,
            owner: owner.to_string(),
        });
        Ok(ip)
    }

    /// Gives back a reserved address.
    pub fn release(&mut self, network: &str, ip: Ipv4Addr) -> Result<Reservation, NetworkError> {
        let index = self
            .reservations
            .iter()
            .position(|r| r.network == network && r.ip == ip)
            .ok_or_else(|| NetworkError::NotReserved {
                ip,
                network: network.to_string(),
            })?;
        Ok(self.reservations.remove(index))
    }

    /// The network called `key`, or whose id is `key`, or whose id starts with `key`
    /// (at least 12 digits, as Docker shortens ids) when only one does.
    pub fn find_by_name_or_id(&self, key: &str) -> Result<&Network, NetworkError> {
        if let Some(network) = self.networks.get(key) {
            return Ok(network);
        }
        let matches = |id: &String| id == key || (key.len() >= 12 && id.starts_with(key));
        let mut by_id = self
            .networks
            .values()
            .filter(|n| matches(&n.id) || n.local_ids.iter().any(matches));
        match (by_id.next(), by_id.next()) {
            (Some(network), None) => Ok(network),
            _ => Err(NetworkError::NotFound(key.to_string())),
        }
    }

    /// Adds `id` to the ids network `name` is known by on this node.
    pub fn add_local_id(&mut self, name: &str, id: &str) {
        if let Some(network) = self.networks.get_mut(name) {
            if !network.local_ids.iter().any(|known| known == id) {
                network.local_ids.push(id.to_string());
            }
        }
    }

    /// Removes `id` from the ids network `name` is known by.
    pub fn remove_local_id(&mut self, name: &str, id: &str) {
        if let Some(network) = self.networks.get_mut(name) {
            network.local_ids.retain(|known| known != id);
        }
    }

    /// Renames a network (its endpoints and reservations follow).
    pub fn rename(&mut self, name: &str, new_name: &str) -> Result<(), NetworkError> {
        validate_name(new_name)?;
        if self.networks.contains_key(new_name) {
            return Err(NetworkError::Exists(new_name.to_string()));
        }
        let mut network = self
            .networks
            .remove(name)
            .ok_or_else(|| NetworkError::NotFound(name.to_string()))?;
        network.name = new_name.to_string();
        self.networks.insert(new_name.to_string(), network);
        for endpoint in self.endpoints.iter_mut().filter(|e| e.network == name) {
            endpoint.network = new_name.to_string();
        }
        for reservation in self.reservations.iter_mut().filter(|r| r.network == name) {
            reservation.network = new_name.to_string();
        }
        Ok(())
    }

    /// Validates `config` and returns the network it would make, changing nothing.
    /// `host_routes` are the IPv4 routes the host already has (never overlapped, except
    /// by internal networks, which are not routed); `vlan_busy` says which VLANs ports
    /// or the overlay already use.
    pub fn plan(
        &self,
        config: &NetworkConfig,
        id: String,
        created: u64,
        host_routes: &[Ipv4Net],
        vlan_busy: impl Fn(VlanId) -> bool,
    ) -> Result<Network, NetworkError> {
        validate_name(&config.name)?;
        if self.networks.contains_key(&config.name) {
            return Err(NetworkError::Exists(config.name.clone()));
        }
        let id = match &config.id {
            Some(given) => {
                let hex = !given.is_empty()
                    && given.len() <= 64
                    && given
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                if !hex {
                    return Err(NetworkError::InvalidId(given.clone()));
                }
                if let Some(other) = self.networks.values().find(|n| n.id == *given) {
                    return Err(NetworkError::IdTaken {
                        id: given.clone(),
                        other: other.name.clone(),
                    });
                }
                given.clone()
            }
            None => id,
        };
        if config.internal && config.masquerade {
            return Err(NetworkError::InternalMasquerade);
        }
        let lan = config.parent.is_some();
        if lan {
            if config.subnet.is_none() {
                return Err(NetworkError::LanNeeds("--subnet, the LAN's"));
            }
            if config.gateway.is_none() {
                return Err(NetworkError::LanNeeds("--gateway, the LAN's router"));
            }
            for (bad, what) in [
                (
                    config.internal,
                    "--internal (it is reached through its parent)",
                ),
                (
                    config.masquerade,
                    "--masquerade (the LAN's router routes it)",
                ),
                (config.vni.is_some(), "an overlay network (--vni)"),
                (config.scope == Scope::Global, "global"),
            ] {
                if bad {
                    return Err(NetworkError::LanCannot(what));
                }
            }
        } else if config.vlan.is_some() {
            return Err(NetworkError::VlanWithoutParent);
        }
        // A LAN network is the LAN's, routed by its router: it may overlap what the
        // host routes (the host may well be on that LAN).
        let routed = !config.internal && !lan;
        let subnet = match config.subnet {
            Some(subnet) => {
                self.check_subnet(subnet)?;
                if routed {
                    if let Some(route) = host_routes.iter().find(|r| overlaps(**r, subnet)) {
                        return Err(NetworkError::OverlapsHostRoute {
                            subnet,
                            route: *route,
                        });
                    }
                }
                subnet
            }
            None => self.free_subnet(host_routes)?,
        };
        let gateway = match config.gateway {
            Some(gateway) => gateway,
            None => subnet
                .hosts()
                .next()
                .ok_or(NetworkError::TooSmall(subnet))?,
        };
        if !subnet.contains(&gateway) {
            return Err(NetworkError::GatewayOutside { gateway, subnet });
        }
        if gateway == subnet.network() || gateway == subnet.broadcast() {
            return Err(NetworkError::GatewayNotHost { gateway, subnet });
        }
        let default_mtu = if config.vni.is_some() {
            DEFAULT_OVERLAY_MTU
        } else {
            DEFAULT_MTU
        };
        if let Some(range) = config.ip_range {
            if range.addr() != range.network() {
                return Err(NetworkError::HostBits { subnet: range });
            }
            if !subnet.contains(&range) {
                return Err(NetworkError::RangeOutside { range, subnet });
            }
        }
        let mtu = config.mtu.unwrap_or(default_mtu);
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(NetworkError::Mtu(mtu));
        }
        let mut aux_addresses = config.aux_addresses.clone();
        aux_addresses.sort();
        aux_addresses.dedup();
        for ip in &aux_addresses {
            if !subnet.contains(ip)
                || *ip == subnet.network()
                || *ip == subnet.broadcast()
                || *ip == gateway
            {
                return Err(NetworkError::AuxOutside { ip: *ip, subnet });
            }
        }
        if let Some(vni) = config.vni {
            if let Some(other) = self.networks.values().find(|n| n.vni == Some(vni)) {
                return Err(NetworkError::VniTaken {
                    vni,
                    other: other.name.clone(),
                });
            }
        }
        // A LAN network's VLAN is the one the caller checked against its parent.
        let vlan = match config.vlan {
            Some(vlan) => {
                if let Some(other) = self.by_vlan(vlan) {
                    return Err(NetworkError::VlanTaken {
                        vlan,
                        other: other.name.clone(),
                    });
                }
                vlan
            }
            None if lan => return Err(NetworkError::LanNeeds("a VLAN")),
            None => (FIRST_NETWORK_VLAN..=VlanId::MAX)
                .filter_map(VlanId::new)
                .find(|v| !vlan_busy(*v) && self.by_vlan(*v).is_none())
                .ok_or(NetworkError::NoVlan)?,
        };
        Ok(Network {
            name: config.name.clone(),
            id,
            subnet,
            gateway,
            vlan,
            vni: config.vni,
            ip_range: config.ip_range,
            mtu,
            internal: config.internal,
            masquerade: config.masquerade,
            created,
            last_allocated: None,
            scope: config.scope,
            local_ids: Vec::new(),
            parent: None,
            aux_addresses,
        })
    }

    /// Whether a network from elsewhere (a cluster's record) has a shape this node
    /// would have made: subnet, gateway and MTU within the bounds [`Networks::plan`]
    /// checks.
    pub fn check_shape(subnet: Ipv4Net, gateway: Ipv4Addr, mtu: u32) -> Result<(), NetworkError> {
        if subnet.addr() != subnet.network() {
            return Err(NetworkError::HostBits { subnet });
        }
        if subnet.prefix_len() > 30 {
            return Err(NetworkError::TooSmall(subnet));
        }
        if subnet.prefix_len() < MIN_PREFIX {
            return Err(NetworkError::TooLarge(subnet));
        }
        if !subnet.contains(&gateway) {
            return Err(NetworkError::GatewayOutside { gateway, subnet });
        }
        if gateway == subnet.network() || gateway == subnet.broadcast() {
            return Err(NetworkError::GatewayNotHost { gateway, subnet });
        }
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(NetworkError::Mtu(mtu));
        }
        Ok(())
    }

    fn check_subnet(&self, subnet: Ipv4Net) -> Result<(), NetworkError> {
        if subnet.addr() != subnet.network() {
            return Err(NetworkError::HostBits { subnet });
        }
        if subnet.prefix_len() > 30 {
            return Err(NetworkError::TooSmall(subnet));
        }
        if subnet.prefix_len() < MIN_PREFIX {
            return Err(NetworkError::TooLarge(subnet));
        }
        if let Some(other) = self.networks.values().find(|n| overlaps(n.subnet, subnet)) {
            return Err(NetworkError::Overlap {
                subnet,
                other: other.name.clone(),
                other_subnet: other.subnet,
            });
        }
        Ok(())
    }

    pub fn free_subnet(&self, host_routes: &[Ipv4Net]) -> Result<Ipv4Net, NetworkError> {
        let candidates = DEFAULT_POOL
            .subnets(DEFAULT_POOL_PREFIX)
            .map_err(|_| NetworkError::PoolExhausted)?;
        for candidate in candidates {
            let taken = self
                .networks
                .values()
                .any(|n| overlaps(n.subnet, candidate))
                || host_routes.iter().any(|r| overlaps(*r, candidate));
            if !taken {
                return Ok(candidate);
            }
        }
        Err(NetworkError::PoolExhausted)
    }

    /// Adds a network [`Networks::plan`] made.
    pub fn insert(&mut self, network: Network) {
        self.networks.insert(network.name.clone(), network);
    }

    /// Removes a network without endpoints.
    pub fn remove(&mut self, name: &str) -> Result<Network, NetworkError> {
        self.check_removable(name)?;
        self.reservations.retain(|r| r.network != name);
        self.networks
            .remove(name)
            .ok_or_else(|| NetworkError::NotFound(name.to_string()))
    }

    /// Whether [`Networks::remove`] would succeed.
    pub fn check_removable(&self, name: &str) -> Result<&Network, NetworkError> {
        let network = self.find(name)?;
        let count = self.endpoints_of(name).count();
        if count > 0 {
            return Err(NetworkError::InUse {
                name: name.to_string(),
                count,
            });
        }
        Ok(network)
    }

    /// The address an endpoint would get: `requested` if it is free, else the next free
    /// one (of the IP range, when the network has one) after the last handed out. Changes nothing; [`Networks::add_endpoint`] takes it.
    pub fn pick_address(
        &self,
        network: &str,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, NetworkError> {
        self.pick_address_for(network, requested, None)
    }

    /// [`Networks::pick_address`], where an address `claimant` reserved counts as free.
    pub fn pick_address_for(
        &self,
        network: &str,
        requested: Option<Ipv4Addr>,
        claimant: Option<&str>,
    ) -> Result<Ipv4Addr, NetworkError> {
        let net = self.find(network)?;
        if let Some(ip) = requested {
            if !net.subnet.contains(&ip) {
                return Err(NetworkError::AddressOutside {
                    ip,
                    network: network.to_string(),
                    subnet: net.subnet,
                });
            }
            if !net.is_assignable(ip) {
                return Err(NetworkError::AddressReserved {
                    ip,
                    network: network.to_string(),
                });
            }
            if !self.is_free_for(network, ip, claimant) {
                return Err(NetworkError::AddressTaken {
                    ip,
                    network: network.to_string(),
                });
            }
            return Ok(ip);
        }
        let pool = net.ip_range.unwrap_or(net.subnet);
        let first = u32::from(pool.network());
        let last = u32::from(pool.broadcast());
        let size = last - first + 1;
        let begin = net
            .last_allocated
            .filter(|ip| pool.contains(ip))
            .map_or(0, |ip| (u32::from(ip) - first + 1) % size);
        // Walk the pool once, starting after the last address handed out.
        (0..size)
            .map(|step| Ipv4Addr::from(first + (begin + step) % size))
            .find(|ip| net.is_assignable(*ip) && self.is_free_for(network, *ip, claimant))
            .ok_or_else(|| NetworkError::Exhausted {
                network: network.to_string(),
                subnet: net.subnet,
            })
    }

    /// Records an endpoint at an address [`Networks::pick_address`] chose, with its name
    /// and aliases checked (labels; the name free in the network). Aliases repeated
    /// (also without case) are kept once.
    pub fn add_endpoint(&mut self, mut endpoint: Endpoint) -> Result<(), NetworkError> {
        let claimant = endpoint.container_id.as_deref();
        self.pick_address_for(&endpoint.network, Some(endpoint.ip), claimant)?;
        self.check_names(&mut endpoint)?;
        if let Some(network) = self.networks.get_mut(&endpoint.network) {
            network.last_allocated = Some(endpoint.ip);
        }
        // The endpoint takes over its owner's reservation.
        self.reservations
            .retain(|r| !(r.network == endpoint.network && r.ip == endpoint.ip));
        self.endpoints.push(endpoint);
        Ok(())
    }

    /// Checks `endpoint`'s name and aliases against the rules and the network's other
    /// endpoints; drops repeated aliases.
    fn check_names(&self, endpoint: &mut Endpoint) -> Result<(), NetworkError> {
        if let Some(name) = &endpoint.name {
            validate_endpoint_name(name)?;
            if let Some(other) = self.endpoints.iter().find(|e| {
                e.network == endpoint.network
                    && e.port != endpoint.port
                    && e.name
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
            }) {
                return Err(NetworkError::NameTaken {
                    name: name.clone(),
                    network: endpoint.network.clone(),
                    ip: other.ip,
                });
            }
        }
        let mut seen: Vec<String> = Vec::new();
        for alias in &endpoint.aliases {
            validate_endpoint_name(alias)?;
            if !seen.iter().any(|s| s.eq_ignore_ascii_case(alias)) {
                seen.push(alias.clone());
            }
        }
        endpoint.aliases = seen;
        Ok(())
    }

    /// Releases the address of the endpoint on `port`, returning it.
    pub fn remove_endpoint(&mut self, port: PortId) -> Option<Endpoint> {
        let index = self.endpoints.iter().position(|e| e.port == port)?;
        Some(self.endpoints.remove(index))
    }

    /// Replaces the published ports of the endpoint on `port` with `mappings` (checked
    /// on their own and against every other endpoint's; see [`crate::portmap`]).
    pub fn publish(&mut self, port: PortId, mappings: &[PortMapping]) -> Result<(), NetworkError> {
        let mappings: Vec<PortMapping> = mappings
            .iter()
            .map(|m| PortMapping {
                host_ip: m.host_ip.filter(|ip| !ip.is_unspecified()),
                ..*m
            })
            .collect();
        crate::portmap::check(&mappings)?;
        let index = self
            .endpoints
            .iter()
            .position(|e| e.port == port)
            .ok_or(NetworkError::NoEndpoint(port))?;
        let network = &self.endpoints[index].network;
        if !mappings.is_empty() && self.networks.get(network).is_some_and(|n| n.internal) {
            return Err(NetworkError::InternalPublish(network.clone()));
        }
        if !mappings.is_empty() && self.networks.get(network).is_some_and(Network::is_lan) {
            return Err(NetworkError::LanPublish(network.clone()));
        }
        for other in self.endpoints.iter().filter(|e| e.port != port) {
            for theirs in &other.published {
                if let Some(mine) = mappings.iter().find(|m| m.conflicts_with(theirs)) {
                    return Err(NetworkError::HostPortTaken {
                        mapping: *mine,
                        other: *theirs,
                        ip: other.ip,
                        network: other.network.clone(),
                    });
                }
            }
        }
        self.endpoints[index].published = mappings;
        Ok(())
    }

    /// The networks and endpoints, for saving.
    pub fn to_saved(&self) -> (Vec<Network>, Vec<Endpoint>) {
        (
            self.networks.values().cloned().collect(),
            self.endpoints.clone(),
        )
    }

    /// Restores reservations after [`Networks::restore`], checking them the same way.
    pub fn restore_reservations(
        &mut self,
        reservations: Vec<Reservation>,
    ) -> Result<(), RestoreError> {
        for reservation in reservations {
            let Some(network) = self.networks.get(&reservation.network) else {
                return Err(RestoreError(format!(
                    "a reservation of {} is in network {}, which does not exist",
                    reservation.ip, reservation.network
                )));
            };
            if !network.is_assignable(reservation.ip)
                || !self.is_free_for(&reservation.network, reservation.ip, None)
            {
                return Err(RestoreError(format!(
                    "reserved address {} cannot be in network {}",
                    reservation.ip, reservation.network
                )));
            }
            self.reservations.push(reservation);
        }
        Ok(())
    }
}

/// A saved state that breaks the model's rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreError(pub String);

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RestoreError {}

pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Checks a network name on its own: 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `_`,
/// `.` or `-`, starting with a letter or digit. (Clients such as the CNI plugin check names
/// with this before they ask switchd.)
pub fn validate_name(name: &str) -> Result<(), NetworkError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(NetworkError::InvalidName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn config(name: &str, subnet: Option<&str>) -> NetworkConfig {
        NetworkConfig {
            name: name.into(),
            subnet: subnet.map(net),
            ..NetworkConfig::default()
        }
    }

    fn create(model: &mut Networks, config: &NetworkConfig) -> Result<Network, NetworkError> {
        let network = model.plan(config, "0".repeat(64), 0, &[], |_| false)?;
        model.insert(network.clone());
        Ok(network)
    }

    fn attach(
        model: &mut Networks,
        network: &str,
        port: u32,
        want: Option<&str>,
    ) -> Result<Ipv4Addr, NetworkError> {
        let addr = model.pick_address(network, want.map(ip))?;
        model.add_endpoint(Endpoint {
            network: network.into(),
            port: PortId(port),
            ip: addr,
            mac: MacAddr::from_ipv4(addr),
            container_id: None,
            published: Vec::new(),
            name: None,
            aliases: Vec::new(),
        })?;
        Ok(addr)
    }

    #[test]
    fn address_usage_counts_what_ipam_cannot_hand_out() {
        let mut model = Networks::new();
        create(&mut model, &config("blue", Some("10.10.0.0/24"))).unwrap();
        let usage = |model: &Networks| model.address_usage("blue").unwrap();
        assert_eq!(
            usage(&model),
            AddressUsage {
                used: 0,
                pool: 253,
                free: 253,
            },
            "a /24 less network, broadcast and gateway"
        );
        attach(&mut model, "blue", 1, None).unwrap();
        attach(&mut model, "blue", 2, Some("10.10.0.50")).unwrap();
        model.reserve("blue", None, "owner").unwrap();
        model.add_foreign("blue", ip("10.10.0.50"));
        model.add_foreign("blue", ip("10.10.0.99"));
        let used = usage(&model);
        assert_eq!(
            used.used, 4,
            "two endpoints, a reservation, one more abroad"
        );
        assert_eq!(used.free, 249);
        assert_eq!(model.address_usage("nope"), None);
        assert_eq!(model.address_usages().get("blue"), Some(&used));
    }

    #[test]
    fn address_usage_frees_only_what_the_ip_range_hands_out() {
        let mut model = Networks::new();
        let ranged = NetworkConfig {
            // .0 (the subnet's network address) and .1 (the gateway) are in the range.
            ip_range: Some(net("10.30.0.0/29")),
            ..config("ov", Some("10.30.0.0/24"))
        };
        create(&mut model, &ranged).unwrap();
        create(&mut model, &config("other", Some("10.40.0.0/24"))).unwrap();
        let usage = |model: &Networks| model.address_usage("ov").unwrap();
        assert_eq!(
            usage(&model),
            AddressUsage {
                used: 0,
                pool: 6,
                free: 6,
            },
            "8 addresses less the network address and the gateway"
        );
        attach(&mut model, "ov", 1, None).unwrap();
        attach(&mut model, "ov", 2, Some("10.30.0.7")).unwrap();
        // Static addresses outside the range are used, but take nothing from the pool.
        attach(&mut model, "ov", 3, Some("10.30.0.200")).unwrap();
        model.add_foreign("ov", ip("10.30.0.201"));
        attach(&mut model, "other", 4, None).unwrap();
        assert_eq!(
            usage(&model),
            AddressUsage {
                used: 4,
                pool: 6,
                free: 4,
            }
        );
        for owner in ["a", "b", "c", "d"] {
            model.reserve("ov", None, owner).unwrap();
        }
        assert_eq!(usage(&model).free, 0);
        assert!(matches!(
            model.pick_address("ov", None),
            Err(NetworkError::Exhausted { .. })
        ));
        let all = model.address_usages();
        assert_eq!(all.get("ov"), Some(&usage(&model)));
        assert_eq!(all.get("other"), model.address_usage("other").as_ref());
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn defaults_need_no_flags() {
        let mut model = Networks::new();
        let blue = create(&mut model, &config("blue", Some("10.10.0.0/24"))).unwrap();
        assert_eq!(blue.gateway, ip("10.10.0.1"));
        assert_eq!(blue.mtu, DEFAULT_MTU);
        assert_eq!(blue.vlan.get(), FIRST_NETWORK_VLAN);
        assert_eq!(blue.driver(), "local");
        let auto = create(&mut model, &config("auto", None)).unwrap();
        assert_eq!(auto.subnet, net("172.20.0.0/24"));
        assert_eq!(auto.vlan.get(), FIRST_NETWORK_VLAN + 1);
        let overlay = create(
            &mut model,
            &NetworkConfig {
                vni: Vni::new(42),
                ..config("ov", None)
            },
        )
        .unwrap();
        assert_eq!(overlay.subnet, net("172.20.1.0/24"));
        assert_eq!(overlay.mtu, DEFAULT_OVERLAY_MTU);
        assert_eq!(overlay.driver(), "overlay");
    }

    #[test]
    fn automatic_subnets_avoid_host_routes_and_busy_vlans() {
        let model = Networks::new();
        let routes = [net("172.20.0.0/23"), net("172.20.2.128/25")];
        let busy = |v: VlanId| v.get() == FIRST_NETWORK_VLAN;
        let planned = model
            .plan(&config("x", None), String::new(), 0, &routes, busy)
            .unwrap();
        assert_eq!(planned.subnet, net("172.20.3.0/24"));
        assert_eq!(planned.vlan.get(), FIRST_NETWORK_VLAN + 1);
        let err = model
            .plan(
                &config("y", Some("172.20.1.0/24")),
                String::new(),
                0,
                &routes,
                busy,
            )
            .unwrap_err();
        assert!(
            matches!(err, NetworkError::OverlapsHostRoute { .. }),
            "{err}"
        );
        // An internal network is not routed, so it may shadow nothing.
        let internal = NetworkConfig {
            internal: true,
            ..config("y", Some("172.20.1.0/24"))
        };
        assert!(model
            .plan(&internal, String::new(), 0, &routes, busy)
            .is_ok());
    }

    #[test]
    fn bad_requests_are_refused_and_change_nothing() {
        let mut model = Networks::new();
        create(&mut model, &config("blue", Some("10.10.0.0/24"))).unwrap();
        let before = model.clone();
        let cases: Vec<(NetworkConfig, &str)> = vec![
            (config("blue", Some("10.99.0.0/24")), "already exists"),
            (config("-x", None), "invalid network name"),
            (config("a/b", None), "invalid network name"),
            (
                config("red", Some("10.10.0.128/25")),
                "overlaps network blue",
            ),
            (config("red", Some("10.0.0.0/8")), "overlaps network blue"),
            (
                config("red", Some("10.20.0.5/24")),
                "did you mean 10.20.0.0/24",
            ),
            (config("red", Some("10.20.0.0/31")), "too small"),
            (config("red", Some("0.0.0.0/0")), "too large"),
            (
                NetworkConfig {
                    gateway: Some(ip("10.30.0.1")),
                    ..config("red", Some("10.20.0.0/24"))
                },
                "outside subnet",
            ),
            (
                NetworkConfig {
                    gateway: Some(ip("10.20.0.255")),
                    ..config("red", Some("10.20.0.0/24"))
                },
                "network or broadcast",
            ),
            (
                NetworkConfig {
                    mtu: Some(10),
                    ..config("red", None)
                },
                "invalid MTU",
            ),
            (
                NetworkConfig {
                    internal: true,
                    masquerade: true,
                    ..config("red", None)
                },
                "no uplink",
            ),
        ];
        for (request, expected) in cases {
            let err = model
                .plan(&request, String::new(), 0, &[], |_| false)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{request:?}: {err}");
        }
        assert_eq!(model, before);
    }

    #[test]
    fn addresses_are_unique_and_skip_reserved_ones() {
        let mut model = Networks::new();
        create(&mut model, &config("tiny", Some("10.1.0.0/29"))).unwrap();
        // .0 network, .1 gateway, .7 broadcast: five addresses to hand out.
        let got: Vec<Ipv4Addr> = (0..5)
            .map(|port| attach(&mut model, "tiny", port, None).unwrap())
            .collect();
        assert_eq!(
            got,
            ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"].map(ip)
        );
        let err = attach(&mut model, "tiny", 9, None).unwrap_err();
        assert!(matches!(err, NetworkError::Exhausted { .. }), "{err}");
    }

    #[test]
    fn released_addresses_come_back_only_after_the_rest() {
        let mut model = Networks::new();
        create(&mut model, &config("tiny", Some("10.1.0.0/29"))).unwrap();
        let a = attach(&mut model, "tiny", 1, None).unwrap();
        attach(&mut model, "tiny", 2, None).unwrap();
        assert_eq!(model.remove_endpoint(PortId(1)).unwrap().ip, a);
        assert_eq!(attach(&mut model, "tiny", 3, None).unwrap(), ip("10.1.0.4"));
        for port in 4..7 {
            attach(&mut model, "tiny", port, None).unwrap();
        }
        // Wrapped around: the released .2 is the only one left.
        assert_eq!(model.endpoints_of("tiny").count(), 5);
        assert!(model.endpoints_of("tiny").any(|e| e.ip == a));
    }

    #[test]
    fn an_ip_range_confines_automatic_addresses() {
        let mut model = Networks::new();
        let ranged = NetworkConfig {
            ip_range: Some(net("10.30.0.128/30")),
            ..config("ov", Some("10.30.0.0/24"))
        };
        create(&mut model, &ranged).unwrap();
        let got: Vec<Ipv4Addr> = (0..4)
            .map(|port| attach(&mut model, "ov", port, None).unwrap())
            .collect();
        assert_eq!(
            got,
            ["10.30.0.128", "10.30.0.129", "10.30.0.130", "10.30.0.131"].map(ip)
        );
        assert!(matches!(
            attach(&mut model, "ov", 9, None),
            Err(NetworkError::Exhausted { .. })
        ));
        // A static address may lie anywhere in the subnet.
        assert_eq!(
            attach(&mut model, "ov", 9, Some("10.30.0.7")).unwrap(),
            ip("10.30.0.7")
        );
        let outside = NetworkConfig {
            ip_range: Some(net("10.31.0.0/28")),
            ..config("bad", Some("10.40.0.0/24"))
        };
        let err = model
            .plan(&outside, String::new(), 0, &[], |_| false)
            .unwrap_err();
        assert!(matches!(err, NetworkError::RangeOutside { .. }), "{err}");
    }

    #[test]
    fn overlay_gateways_share_a_mac_across_hosts() {
        let mut here = Networks::new();
        let mut there = Networks::new();
        let overlay = NetworkConfig {
            vni: Vni::new(0x123456),
            ..config("ov", Some("10.30.0.0/24"))
        };
        // The other host already uses VLAN 3000 for something else.
        create(&mut here, &overlay).unwrap();
        let there_net = there
            .plan(&overlay, String::new(), 0, &[], |v| {
                v.get() == FIRST_NETWORK_VLAN
            })
            .unwrap();
        there.insert(there_net.clone());
        let here_net = here.get("ov").unwrap();
        assert_ne!(here_net.vlan, there_net.vlan);
        assert_eq!(here_net.router_mac(), there_net.router_mac());
        assert_eq!(here_net.router_mac().to_string(), "02:53:59:12:34:56");
    }

    #[test]
    fn static_addresses_are_checked() {
        let mut model = Networks::new();
        create(&mut model, &config("blue", Some("10.10.0.0/24"))).unwrap();
        assert_eq!(
            attach(&mut model, "blue", 1, Some("10.10.0.50")).unwrap(),
            ip("10.10.0.50")
        );
        let taken = attach(&mut model, "blue", 2, Some("10.10.0.50")).unwrap_err();
        assert!(matches!(taken, NetworkError::AddressTaken { .. }));
        let outside = attach(&mut model, "blue", 2, Some("10.11.0.5")).unwrap_err();
        assert!(matches!(outside, NetworkError::AddressOutside { .. }));
        for reserved in ["10.10.0.0", "10.10.0.1", "10.10.0.255"] {
            let err = attach(&mut model, "blue", 2, Some(reserved)).unwrap_err();
            assert!(
                matches!(err, NetworkError::AddressReserved { .. }),
                "{reserved}"
            );
        }
        let missing = attach(&mut model, "nope", 2, None).unwrap_err();
        assert!(missing.to_string().contains("no such network nope"));
        assert_eq!(model.endpoints().len(), 1);
    }

    #[test]
    fn a_network_in_use_is_not_removed() {
        let mut model = Networks::new();
        create(&mut model, &config("blue", Some("10.10.0.0/24"))).unwrap();
        attach(&mut model, "blue", 1, None).unwrap();
        let err = model.remove("blue").unwrap_err();
        assert!(err.to_string().contains("1 endpoint(s) attached"), "{err}");
        model.remove_endpoint(PortId(1));
        assert_eq!(model.remove("blue").unwrap().name, "blue");
        assert!(matches!(
            model.remove("blue"),
            Err(NetworkError::NotFound(_))
        ));
    }

    #[test]
    fn saving_and_restoring_keeps_allocations() {
        let mut model = Networks::new();
        create(&mut model, &config("blue", Some("10.10.0.0/24"))).unwrap();
        create(&mut model, &config("red", Some("10.20.0.0/24"))).unwrap();
        attach(&mut model, "blue", 1, None).unwrap();
        attach(&mut model, "blue", 2, None).unwrap();
        attach(&mut model, "red", 3, Some("10.20.0.9")).unwrap();
        let (networks, endpoints) = model.to_saved();
        let json = serde_json::to_string(&(networks, endpoints)).unwrap();
        let (networks, endpoints): (Vec<Network>, Vec<Endpoint>) =
            serde_json::from_str(&json).unwrap();
        let mut restored = Networks::restore(networks, endpoints).unwrap();
        assert_eq!(restored, model);
        // The next address continues after the last one handed out before the restart.
        assert_eq!(
            attach(&mut restored, "blue", 4, None).unwrap(),
            ip("10.10.0.4")
        );
    }

    #[test]
    fn damaged_saves_are_refused() {
        let mut model = Networks::new();
        create(&mut model, &config("blue", Some("10.10.0.0/24"))).unwrap();
        attach(&mut model, "blue", 1, None).unwrap();
        let (networks, mut endpoints) = model.to_saved();
        endpoints.push(Endpoint {
            port: PortId(2),
            ..endpoints[0].clone()
        });
        let err = Networks::restore(networks.clone(), endpoints).unwrap_err();
        assert!(err.to_string().contains("held twice"), "{err}");
        let mut twice = networks.clone();
        twice.push(networks[0].clone());
        assert!(Networks::restore(twice, vec![]).is_err());
    }

    #[test]
    fn names_are_labels_unique_in_their_network_and_aliases_may_be_shared() {
        let mut model = Networks::new();
        create(&mut model, &config("blue", Some("10.10.0.0/24"))).unwrap();
        create(&mut model, &config("red", Some("10.20.0.0/24"))).unwrap();
        let endpoint =
            |network: &str, port: u32, last: u8, name: &str, aliases: &[&str]| Endpoint {
                network: network.into(),
                port: PortId(port),
                ip: Ipv4Addr::new(10, if network == "blue" { 10 } else { 20 }, 0, last),
                mac: MacAddr::from_ipv4(Ipv4Addr::new(10, 10, 0, last)),
                container_id: None,
                published: Vec::new(),
                name: Some(name.into()),
                aliases: aliases.iter().map(|a| a.to_string()).collect(),
            };
        model
            .add_endpoint(endpoint("blue", 1, 2, "web", &["api", "API", "www"]))
            .unwrap();
        assert_eq!(
            model.endpoint_of_port(PortId(1)).unwrap().aliases,
            ["api", "www"]
        );
        let err = model
            .add_endpoint(endpoint("blue", 2, 3, "WEB", &[]))
            .unwrap_err();
        assert!(
            matches!(err, NetworkError::NameTaken { ip, .. } if ip == Ipv4Addr::new(10, 10, 0, 2)),
            "{err}"
        );
        // Another network may use it; aliases may be shared.
        model
            .add_endpoint(endpoint("red", 3, 2, "web", &[]))
            .unwrap();
        model
            .add_endpoint(endpoint("blue", 4, 4, "web2", &["api"]))
            .unwrap();
        for bad in ["", "-web", "web-", "we_b", "w.b", &"a".repeat(64)] {
            assert!(validate_endpoint_name(bad).is_err(), "{bad:?}");
            let err = model
                .add_endpoint(endpoint("blue", 5, 5, bad, &[]))
                .unwrap_err();
            assert!(matches!(err, NetworkError::InvalidEndpointName(_)), "{err}");
        }
        assert!(model
            .add_endpoint(endpoint("blue", 5, 5, "ok", &["no_pe"]))
            .is_err());
        assert!(validate_endpoint_name("0web-1").is_ok());
        assert!(validate_endpoint_name(&"a".repeat(63)).is_ok());
        // A save with a name twice is refused.
        let (networks, mut endpoints) = model.to_saved();
        endpoints.push(endpoint("blue", 9, 9, "Web", &[]));
        let err = Networks::restore(networks, endpoints).unwrap_err();
        assert!(err.to_string().contains("taken"), "{err}");
    }
}
