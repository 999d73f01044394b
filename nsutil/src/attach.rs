//! Attaching a network namespace to switchd, and detaching it: the workflow shared by
//! `nsutil attach` and the CNI plugin.
//!
//! switchd creates the TAP inside the namespace under its final name; this side then
//! configures it there (MAC, MTU, up, address, default route) over rtnetlink.
//!
//! * If any step after switchd created the port fails, the port is removed again by its
//!   id, so a failed attach leaves nothing behind. If that removal fails too, the error
//!   says how to remove the port by hand.
//! * If switchd's answer to the attach is lost (the connection broke or timed out), it
//!   may or may not have made the port; a port that is still down, as switchd makes
//!   it, is detached again on a fresh connection.
//! * If (namespace, ifname) is attached already, nothing is created. A port in another
//!   VLAN mode, or with another address, is an error and is left alone. A port that an
//!   earlier, interrupted attach left unconfigured (no address, or down when no address
//!   is asked for) is configured now; a configured one is reported as it is.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Serialize;
use switchyard::control::{
    AttachRequest, Attached, Detached, EndpointInfo, ErrorCode, PortInfo, Request,
};
use switchyard::network::{validate_endpoint_name, NetworkError};
use switchyard::port::{PortId, PortMode};
use switchyard::portmap::PortMapping;
use switchyard::wire::MacAddr;
use switchyard_os::client::{Client, ClientError};

use crate::netns::{Netns, NetnsError, NetnsId, NetnsRef};
use crate::rtnl::{validate_ifname, InvalidIfname, Link, Rtnl, RtnlError};

/// The interface name a container gets unless told otherwise.
pub const DEFAULT_IFNAME: &str = "eth0";
/// The MTU unless told otherwise.
pub const DEFAULT_MTU: u32 = 1500;
/// The smallest MTU accepted (the IPv4 minimum).
pub const MIN_MTU: u32 = 68;
/// The largest MTU accepted.
pub const MAX_MTU: u32 = 65535;
/// The smallest MTU IPv6 works with.
pub const MIN_IPV6_MTU: u32 = 1280;

/// What to attach, and how to configure the interface.
#[derive(Clone, Debug, PartialEq)]
pub struct AttachOptions {
    pub netns: NetnsRef,
    /// The interface name inside the namespace.
    pub ifname: String,
    /// The interface's address with its prefix, such as `10.0.0.1/24`.
    pub addr: Option<IpNet>,
    /// Installed as the default route; must lie inside `addr`'s subnet.
    pub gateway: Option<IpAddr>,
    pub mode: PortMode,
    /// `None`: [`default_mac`].
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// Attach to this switchd network: switchd's IPAM assigns the address, and the
    /// network decides VLAN, gateway, MAC and MTU; `mode`, `addr`, `gateway`, `mac` and
    /// `mtu` are then taken from switchd's answer.
    pub network: Option<String>,
    /// With `network`: ask for this address instead of the next free one.
    pub network_ip: Option<Ipv4Addr>,
    /// With `network`: the container runtime's id for the attachment (CNI).
    pub container_id: Option<String>,
    /// With `network_ip`: the prefix length the user gave, which must be the network's.
    pub network_prefix: Option<u8>,
    /// Port security on or off; `None`: switchd's default (on for an access port).
    pub port_security: Option<bool>,
    /// With `network`: ports to publish on switchd's namespace, made with the endpoint.
    pub published: Vec<PortMapping>,
    /// With `network`: the endpoint's DNS name, refused when taken; `None`:
    /// `fallback_name`, or [`AttachOptions::default_name`] without one, left out when
    /// taken.
    pub name: Option<String>,
    /// The name to use when `name` is `None` (the CNI plugin's pod name).
    pub fallback_name: Option<String>,
    /// With `network`: more DNS names, which other endpoints may share.
    pub aliases: Vec<String>,
}

impl AttachOptions {
    /// Options with the defaults: `eth0`, no address, access port on VLAN 1, MTU 1500.
    pub fn new(netns: NetnsRef) -> AttachOptions {
        AttachOptions {
            netns,
            ifname: DEFAULT_IFNAME.to_string(),
            addr: None,
            gateway: None,
            mode: PortMode::default(),
            mac: None,
            mtu: DEFAULT_MTU,
            network: None,
            network_ip: None,
            container_id: None,
            network_prefix: None,
            port_security: None,
            published: Vec::new(),
            name: None,
            fallback_name: None,
            aliases: Vec::new(),
        }
    }

    /// The name an endpoint gets when none is given: a named namespace's name, when it
    /// is a DNS label (`web` for `/run/netns/web`); otherwise none.
    pub fn default_name(&self) -> Option<String> {
        if let Some(name) = &self.fallback_name {
            return Some(name.clone()).filter(|n| validate_endpoint_name(n).is_ok());
        }
        match &self.netns {
            NetnsRef::Named(name) if validate_endpoint_name(name).is_ok() => Some(name.clone()),
            _ => None,
        }
    }

    /// The options with what switchd assigned on a network filled in.
    fn with_endpoint(&self, port: &PortInfo, endpoint: &EndpointInfo) -> AttachOptions {
        AttachOptions {
            addr: Some(IpNet::V4(endpoint.address)),
            gateway: Some(IpAddr::V4(endpoint.gateway)),
            mode: port.mode.clone(),
            mac: Some(endpoint.mac),
            mtu: endpoint.mtu,
            published: endpoint.published.clone(),
            name: endpoint.name.clone(),
            aliases: endpoint.aliases.clone(),
            ..self.clone()
        }
    }

    /// Checks the options on their own, before anything is touched.
    pub fn validate(&self) -> Result<(), OptionsError> {
        validate_ifname(&self.ifname)?;
        if self.network.is_none() && !self.published.is_empty() {
            return Err(OptionsError::PublishWithoutNetwork);
        }
        if self.network.is_none() && (self.name.is_some() || !self.aliases.is_empty()) {
            return Err(OptionsError::NameWithoutNetwork);
        }
        for name in self.name.iter().chain(&self.aliases) {
            validate_endpoint_name(name).map_err(OptionsError::Name)?;
        }
        if self.network.is_some() {
            // switchd checks the rest against the network.
            return Ok(());
        }
        if let Some(ip) = self.network_ip {
            return Err(OptionsError::AddressWithoutNetwork { ip });
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(OptionsError::Mtu { mtu: self.mtu });
        }
        if let Some(mac) = self.mac {
            if !mac.is_valid_source() {
                return Err(OptionsError::Mac { mac });
            }
        }
        if let Some(addr) = self.addr {
            validate_host_address(addr)?;
            if addr.addr().is_ipv6() && self.mtu < MIN_IPV6_MTU {
                return Err(OptionsError::Ipv6Mtu { mtu: self.mtu });
            }
        }
        if let Some(gateway) = self.gateway {
            let Some(addr) = self.addr else {
                return Err(OptionsError::GatewayWithoutAddress { gateway });
            };
            if gateway.is_ipv4() != addr.addr().is_ipv4() {
                return Err(OptionsError::GatewayFamily { gateway, addr });
            }
            if gateway == addr.addr() {
                return Err(OptionsError::GatewayIsAddress { gateway });
            }
            if !addr.contains(&gateway) {
                return Err(OptionsError::GatewayOutsideSubnet {
                    gateway,
                    addr,
                    subnet: addr.trunc(),
                });
            }
            if let IpNet::V4(net) = addr {
                if net.prefix_len() < 31
                    && (IpAddr::V4(net.network()) == gateway
                        || IpAddr::V4(net.broadcast()) == gateway)
                {
                    return Err(OptionsError::GatewayNotHost {
                        gateway,
                        subnet: addr.trunc(),
                    });
                }
            }
        }
        Ok(())
    }
}

fn validate_host_address(addr: IpNet) -> Result<(), OptionsError> {
    let ip = addr.addr();
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
        return Err(OptionsError::NotHostAddress {
            addr,
            why: "it is unspecified, multicast or loopback",
        });
    }
    if let IpNet::V4(net) = addr {
        if net.prefix_len() < 31 {
            if net.addr() == net.network() {
                return Err(OptionsError::NotHostAddress {
                    addr,
                    why: "it is the network address of its subnet",
                });
            }
            if net.addr() == net.broadcast() {
                return Err(OptionsError::NotHostAddress {
                    addr,
                    why: "it is the broadcast address of its subnet",
                });
            }
        }
    }
    Ok(())
}

/// An attach option is wrong on its own; nothing was touched.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum OptionsError {
    #[error(transparent)]
    Ifname(#[from] InvalidIfname),

    #[error("invalid MTU {mtu}: give a value from {MIN_MTU} to {MAX_MTU}")]
    Mtu { mtu: u32 },

    #[error("published ports need a network: add --network NAME")]
    PublishWithoutNetwork,

    #[error("names and aliases are a network's: add --network NAME")]
    NameWithoutNetwork,

    #[error(transparent)]
    Name(NetworkError),

    #[error("address {ip} without a prefix needs a network to come from: add --network NAME, or give the address as CIDR")]
    AddressWithoutNetwork { ip: Ipv4Addr },

    #[error("MTU {mtu} is too small for IPv6, which needs at least {MIN_IPV6_MTU}")]
    Ipv6Mtu { mtu: u32 },

    #[error("MAC address {mac} cannot be an interface's address (multicast or all zero); give a unicast address such as 02:42:0a:00:00:01")]
    Mac { mac: MacAddr },

    #[error("address {addr} cannot be an interface's address: {why}")]
    NotHostAddress { addr: IpNet, why: &'static str },

    #[error(
        "gateway {gateway} needs an address on the interface: give the address (--ip CIDR) too"
    )]
    GatewayWithoutAddress { gateway: IpAddr },

    #[error("gateway {gateway} and address {addr} are of different IP versions")]
    GatewayFamily { gateway: IpAddr, addr: IpNet },

    #[error("gateway {gateway} is the interface's own address; the gateway is another host on the subnet")]
    GatewayIsAddress { gateway: IpAddr },

    #[error("gateway {gateway} is outside {subnet}, the subnet of {addr}; give a gateway inside it, or a wider prefix")]
    GatewayOutsideSubnet {
        gateway: IpAddr,
        addr: IpNet,
        subnet: IpNet,
    },

    #[error(
        "gateway {gateway} is the network or broadcast address of {subnet}; give a host address"
    )]
    GatewayNotHost { gateway: IpAddr, subnet: IpNet },
}

/// Attaching or detaching failed. Every message says what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Options(#[from] OptionsError),

    #[error(transparent)]
    Netns(#[from] NetnsError),

    /// switchd is unreachable, or refused.
    #[error("cannot {action} {port}: {source}")]
    Switchd {
        action: &'static str,
        port: String,
        #[source]
        source: ClientError,
    },

    /// switchd created the port, then configuring it in the namespace failed. The port
    /// has been removed again.
    #[error("configuring {port} in its namespace failed: {source}")]
    Configure {
        port: String,
        #[source]
        source: RtnlError,
    },

    /// The port was already attached, and reading its state failed.
    #[error("{port} is attached, but reading its state failed: {source}")]
    Inspect {
        port: String,
        #[source]
        source: RtnlError,
    },

    /// The port is attached already in another VLAN mode; nothing was changed.
    #[error("{port} is already attached as {existing}; change it with `swctl port set {switchd_name} {}` or `{detach}` first", swctl_mode_args(.requested))]
    ModeMismatch {
        port: String,
        /// The port's name as switchd knows it.
        switchd_name: String,
        existing: PortMode,
        requested: PortMode,
        /// The command that detaches the port.
        detach: String,
    },

    /// The port is attached already with other addresses; nothing was changed.
    #[error("{port} is already attached with {}; detach first to change its address to {requested}: `{detach}`", join(.existing))]
    AddressMismatch {
        port: String,
        existing: Vec<IpNet>,
        requested: IpNet,
        /// The command that detaches the port.
        detach: String,
    },

    /// An earlier attach was interrupted before it configured the port, and configuring
    /// it now failed. The port is left as it was (it was not made by this attach).
    #[error("{source}; {port} was left unconfigured by an earlier, interrupted attach and stays so: remove it with `{detach}`, or fix the cause and attach again")]
    Complete {
        port: String,
        #[source]
        source: Box<AttachError>,
        /// The command that detaches the port.
        detach: String,
    },

    /// Attaching failed after switchd made the port, and so did removing the port again.
    #[error("{source}; removing the half-made port {port} failed too ({rollback}); remove it with `swctl port del {port}`")]
    RollbackFailed {
        #[source]
        source: Box<AttachError>,
        rollback: ClientError,
        /// The port left behind.
        port: PortId,
    },
}

/// The `swctl port set` flags that give a port `mode`.
fn swctl_mode_args(mode: &PortMode) -> String {
    match mode {
        PortMode::Access { vlan } => format!("--vlan {vlan}"),
        PortMode::Trunk {
            allowed,
            native: None,
        } => format!("--trunk {allowed}"),
        PortMode::Trunk {
            allowed,
            native: Some(native),
        } => format!("--trunk {allowed} --native {native}"),
    }
}

fn join(addresses: &[IpNet]) -> String {
    let text: Vec<String> = addresses.iter().map(IpNet::to_string).collect();
    text.join(" ")
}

/// The `nsutil detach` command for (namespace, ifname).
fn detach_command(netns: &NetnsRef, ifname: &str) -> String {
    if ifname == DEFAULT_IFNAME {
        format!("nsutil detach {netns}")
    } else {
        format!("nsutil detach {netns} --ifname {ifname}")
    }
}

/// What an attach assigned (or, when the port already existed, what is there now).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attachment {
    /// The switchd network, when attached to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The namespace's label (`red`, `pid:123`, or its path).
    pub netns: String,
    pub netns_path: PathBuf,
    pub ifname: String,
    /// True when this attach made the port; false when (namespace, ifname) was attached
    /// already.
    pub created: bool,
    /// True when the port was attached already but left unconfigured by an earlier,
    /// interrupted attach, and this attach configured it. When both this and `created`
    /// are false, nothing was changed.
    pub completed: bool,
    pub port: PortInfo,
    pub mac: MacAddr,
    pub mtu: u32,
    /// The addresses on the interface (link-local ones left out).
    pub addresses: Vec<IpNet>,
    pub gateway: Option<IpAddr>,
    /// The endpoint's published ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<PortMapping>,
    /// The endpoint's DNS name and aliases on its network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl fmt::Display for Attachment {
    /// `attached red/eth0: port 3, access vlan 10, mac 02:42:0a:00:00:01, 10.0.0.1/24 via 10.0.0.254`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = format!("{}/{}", self.netns, self.ifname);
        if self.created {
            write!(f, "attached {name}: ")?;
        } else if self.completed {
            write!(
                f,
                "attached {name} (completed an earlier, interrupted attach): "
            )?;
        } else {
            write!(f, "{name} already attached: ")?;
        }
        match &self.network {
            Some(network) => write!(
                f,
                "network {network}, port {}, mac {}",
                self.port.id, self.mac
            )?,
            None => write!(
                f,
                "port {}, {}, mac {}",
                self.port.id, self.port.mode, self.mac
            )?,
        }
        if !self.addresses.is_empty() {
            let addresses: Vec<String> = self.addresses.iter().map(IpNet::to_string).collect();
            write!(f, ", {}", addresses.join(" "))?;
        }
        if let Some(gateway) = self.gateway {
            write!(f, " via {gateway}")?;
        }
        if self.mtu != DEFAULT_MTU {
            write!(f, ", mtu {}", self.mtu)?;
        }
        if let Some(name) = &self.name {
            write!(f, ", name {name}")?;
        }
        if !self.aliases.is_empty() {
            write!(f, ", aliases {}", self.aliases.join(" "))?;
        }
        if !self.published.is_empty() {
            let list = switchyard::portmap::join(&self.published, " ", "");
            write!(f, ", publishing {list}")?;
        }
        Ok(())
    }
}

/// The MAC an interface gets unless one is given: Docker's `02:42:a.b.c.d` for an IPv4
/// address, otherwise [`derived_mac`].
pub fn default_mac(addr: Option<IpNet>, netns: NetnsId, ifname: &str) -> MacAddr {
    match addr {
        Some(IpNet::V4(net)) => MacAddr::from_ipv4(net.addr()),
        _ => derived_mac(netns, ifname),
    }
}

/// A locally administered unicast MAC (first octet `02`) from a hash of (namespace,
/// interface name): the same for the same interface as long as the namespace lives.
pub fn derived_mac(netns: NetnsId, ifname: &str) -> MacAddr {
    // FNV-1a, 64 bits: tiny, and stable across Rust releases (unlike std's hashers).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in netns
        .to_bytes()
        .iter()
        .chain([0u8].iter())
        .chain(ifname.as_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let h = hash.to_be_bytes();
    MacAddr([0x02, h[0], h[1], h[2], h[3], h[4]])
}

fn port_name(netns: &NetnsRef, ifname: &str) -> String {
    format!("{netns}/{ifname}")
}

/// Attaches the namespace to switchd through the control socket at `socket`, and
/// configures the interface. See the module documentation for the steps, and for what
/// happens when (namespace, ifname) is attached already.
pub fn attach(socket: &Path, options: &AttachOptions) -> Result<Attachment, AttachError> {
    options.validate()?;
    let netns = Netns::open(&options.netns)?;
    let port = port_name(&options.netns, &options.ifname);
    let switchd_err = |source| AttachError::Switchd {
        action: "attach",
        port: port.clone(),
        source,
    };
    let mut client = Client::connect(socket).map_err(switchd_err)?;
    let label = match &options.netns {
        NetnsRef::Path(_) => None,
        other => Some(other.label()),
    };
    let mut request = AttachRequest {
        netns: options.netns.path(),
        ifname: options.ifname.clone(),
        mode: options.mode.clone(),
        label,
        network: options.network.clone(),
        ip: options.network_ip,
        container_id: options.container_id.clone(),
        prefix_len: options.network_prefix,
        // On a network, switchd assigns the MAC and the address.
        mac: options.network.is_none().then(|| {
            options
                .mac
                .unwrap_or_else(|| default_mac(options.addr, netns.id(), &options.ifname))
        }),
        addresses: match (&options.network, options.addr) {
            (None, Some(IpNet::V4(addr))) => vec![addr.addr()],
            _ => Vec::new(),
        },
        port_security: options.port_security,
        published: options.published.clone(),
        name: options
            .network
            .as_ref()
            .and(options.name.clone().or_else(|| options.default_name())),
        aliases: options.aliases.clone(),
    };
    let attached: Attached = loop {
        match client.call(&Request::Attach(request.clone())) {
            Ok(attached) => break attached,
            // A name nobody asked for, taken: the endpoint goes without one.
            Err(ClientError::Refused(err))
                if err.code == ErrorCode::NameTaken
                    && options.name.is_none()
                    && request.name.is_some() =>
            {
                request.name = None;
            }
            Err(source @ (ClientError::Io { .. } | ClientError::Protocol(_))) => {
                // switchd may have made the port before the answer was lost.
                remove_unanswered(socket, &netns, options);
                return Err(switchd_err(source));
            }
            Err(source) => return Err(switchd_err(source)),
        }
    };
    let assigned;
    let options = match &attached.endpoint {
        Some(endpoint) => {
            assigned = options.with_endpoint(&attached.port, endpoint);
            &assigned
        }
        None => options,
    };
    if !attached.created {
        return resume(&netns, options, attached.port);
    }
    let mac = options
        .mac
        .unwrap_or_else(|| default_mac(options.addr, netns.id(), &options.ifname));
    match netns.run(|| configure(options, &port, mac)) {
        Ok(routed) => Ok(configured(options, attached.port, mac, true, routed)),
        Err(err) => Err(roll_back(&mut client, socket, attached.port.id, err)),
    }
}

/// The report of a port this call configured (whether it made the port or completed it).
/// What an attach did; `routed` says whether the default route via the gateway is in
/// place (a second network's interface leaves the first network's default route alone).
fn configured(
    options: &AttachOptions,
    port: PortInfo,
    mac: MacAddr,
    created: bool,
    routed: bool,
) -> Attachment {
    Attachment {
        network: options.network.clone(),
        netns: options.netns.label(),
        netns_path: options.netns.path(),
        ifname: options.ifname.clone(),
        created,
        completed: !created,
        port,
        mac,
        mtu: options.mtu,
        addresses: options.addr.into_iter().collect(),
        gateway: options.gateway.filter(|_| routed),
        published: options.published.clone(),
        name: options.name.clone(),
        aliases: options.aliases.clone(),
    }
}

/// Runs inside the namespace: the configuration steps after switchd made the TAP. Each
/// step is idempotent, so this also completes a port an interrupted attach left behind.
/// Configures the interface; returns whether the default route via the gateway is set.
fn configure(options: &AttachOptions, port: &str, mac: MacAddr) -> Result<bool, AttachError> {
    let fail = |source| AttachError::Configure {
        port: port.to_string(),
        source,
    };
    let mut rtnl = Rtnl::open().map_err(fail)?;
    let link = rtnl.link(&options.ifname).map_err(fail)?;
    rtnl.set_mac(&link, mac).map_err(fail)?;
    rtnl.set_mtu(&link, options.mtu).map_err(fail)?;
    let lo = rtnl.link("lo").map_err(fail)?;
    rtnl.set_up(&lo).map_err(fail)?;
    rtnl.set_up(&link).map_err(fail)?;
    if let Some(addr) = options.addr {
        rtnl.add_address(&link, addr).map_err(fail)?;
    }
    if let Some(gateway) = options.gateway {
        match rtnl.add_default_route(&link, gateway) {
            Ok(_) => {}
            // A second network's interface, as with Docker: the first network keeps
            // the default route; this one is reached through its subnet route.
            Err(RtnlError::OtherDefaultRoute { .. }) if options.network.is_some() => {
                return Ok(false)
            }
            Err(err) => return Err(fail(err)),
        }
    }
    Ok(options.gateway.is_some())
}

/// An interface as it is now.
struct LinkState {
    link: Link,
    /// Without link-local addresses.
    addresses: Vec<IpNet>,
    gateway: Option<IpAddr>,
}

/// Reads the interface's state; runs inside the namespace.
fn read_state(ifname: &str) -> Result<LinkState, RtnlError> {
    let mut rtnl = Rtnl::open()?;
    let link = rtnl.link(ifname)?;
    let addresses = rtnl
        .addresses(&link)?
        .into_iter()
        .filter(|addr| !is_link_local(addr))
        .collect();
    let gateway = rtnl
        .routes(&link)?
        .into_iter()
        .filter(|route| route.is_default())
        .find_map(|route| route.gateway);
    Ok(LinkState {
        link,
        addresses,
        gateway,
    })
}

/// switchd reported (namespace, ifname) attached already. A port in another mode or with
/// another address is an error and left alone; one an interrupted attach left
/// unconfigured is configured now; otherwise it is reported as it is.
fn resume(
    netns: &Netns,
    options: &AttachOptions,
    port: PortInfo,
) -> Result<Attachment, AttachError> {
    let name = port_name(&options.netns, &options.ifname);
    let detach = detach_command(&options.netns, &options.ifname);
    if port.mode != options.mode {
        return Err(AttachError::ModeMismatch {
            port: name,
            switchd_name: port.name,
            existing: port.mode,
            requested: options.mode.clone(),
            detach,
        });
    }
    let state = netns.run(|| {
        read_state(&options.ifname).map_err(|source| AttachError::Inspect {
            port: name.clone(),
            source,
        })
    })?;
    // configure() brings the link up before it adds the address, so an attach that
    // stopped anywhere before its address (or, without one, before `up`) shows here.
    let unconfigured = match options.addr {
        Some(_) => state.addresses.is_empty(),
        None => !state.link.up,
    };
    if unconfigured {
        let mac = options
            .mac
            .unwrap_or_else(|| default_mac(options.addr, netns.id(), &options.ifname));
        return match netns.run(|| configure(options, &name, mac)) {
            Ok(routed) => Ok(configured(options, port, mac, false, routed)),
            Err(source) => Err(AttachError::Complete {
                port: name,
                source: Box::new(source),
                detach,
            }),
        };
    }
    if let Some(addr) = options.addr {
        if !state.addresses.contains(&addr) {
            return Err(AttachError::AddressMismatch {
                port: name,
                existing: state.addresses,
                requested: addr,
                detach,
            });
        }
    }
    Ok(Attachment {
        network: options.network.clone(),
        netns: options.netns.label(),
        netns_path: options.netns.path(),
        ifname: options.ifname.clone(),
        created: false,
        completed: false,
        port,
        mac: state
            .link
            .mac
            .unwrap_or_else(|| default_mac(None, netns.id(), &options.ifname)),
        mtu: state.link.mtu,
        addresses: state.addresses,
        gateway: state.gateway,
        published: options.published.clone(),
        name: options.name.clone(),
        aliases: options.aliases.clone(),
    })
}

fn is_link_local(addr: &IpNet) -> bool {
    match addr {
        IpNet::V4(net) => net.addr().is_link_local(),
        IpNet::V6(net) => net.addr().segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Removes port `id`, which this attach made, after `err`; returns the error to report.
/// Removal goes by id, not by (namespace, ifname), so it removes exactly that port or
/// fails, however the namespace path resolves now. It uses the same connection, or a
/// new one if that broke.
fn roll_back(client: &mut Client, socket: &Path, id: PortId, err: AttachError) -> AttachError {
    let request = Request::PortDel {
        port: id.to_string(),
    };
    let removed = match client.call::<PortInfo>(&request) {
        Err(ClientError::Io { .. }) => {
            Client::connect(socket).and_then(|mut client| client.call::<PortInfo>(&request))
        }
        other => other,
    };
    match removed {
        Ok(_) => err,
        Err(rollback) => AttachError::RollbackFailed {
            source: Box::new(err),
            rollback,
            port: id,
        },
    }
}

/// Best effort, after switchd's answer to an attach was lost: detaches (namespace,
/// ifname) on a new connection, unless its interface is up. switchd makes TAPs down, so
/// an interface that is up was configured before this attach, and stays.
fn remove_unanswered(socket: &Path, netns: &Netns, options: &AttachOptions) {
    let up = netns.run(|| {
        let inspect = |source| AttachError::Inspect {
            port: port_name(&options.netns, &options.ifname),
            source,
        };
        match Rtnl::open().map_err(inspect)?.link(&options.ifname) {
            Ok(link) => Ok(link.up),
            Err(RtnlError::NoSuchLink { .. }) => Ok(false),
            Err(err) => Err(inspect(err)),
        }
    });
    if matches!(up, Ok(true)) {
        return;
    }
    let request = Request::Detach {
        netns: options.netns.path(),
        ifname: options.ifname.clone(),
    };
    let _ = Client::connect(socket).and_then(|mut client| client.call::<Detached>(&request));
}

/// Detaches (namespace, ifname) from switchd; its TAP disappears. `Ok(None)` when
/// nothing was attached there, which is not an error. The namespace need not exist any
/// more.
pub fn detach(
    socket: &Path,
    netns: &NetnsRef,
    ifname: &str,
) -> Result<Option<PortInfo>, AttachError> {
    validate_ifname(ifname).map_err(OptionsError::from)?;
    let port = port_name(netns, ifname);
    let switchd_err = |source| AttachError::Switchd {
        action: "detach",
        port: port.clone(),
        source,
    };
    let mut client = Client::connect(socket).map_err(switchd_err)?;
    let detached: Detached = client
        .call(&Request::Detach {
            netns: netns.path(),
            ifname: ifname.to_string(),
        })
        .map_err(switchd_err)?;
    Ok(detached.port)
}

/// Every port switchd has.
pub fn ports(socket: &Path) -> Result<Vec<PortInfo>, ClientError> {
    Client::connect(socket)?.call(&Request::PortList)
}

/// Whether `port` lives in the namespace `id` (compared by identity, so any path to the
/// namespace matches).
pub fn port_is_in(port: &PortInfo, id: NetnsId) -> bool {
    NetnsId::of(&port.netns).is_ok_and(|port_id| port_id == id)
}

/// Detaches every port switchd has in the namespace, as before deleting it. Returns the
/// ports removed.
pub fn detach_all(socket: &Path, netns: &Netns) -> Result<Vec<PortInfo>, AttachError> {
    let all = format!("{}/*", netns.reference());
    let switchd_err = |port: &str, action| {
        let port = port.to_string();
        move |source| AttachError::Switchd {
            action,
            port,
            source,
        }
    };
    let mut client = Client::connect(socket).map_err(switchd_err(&all, "detach"))?;
    let ports: Vec<PortInfo> = client
        .call(&Request::PortList)
        .map_err(switchd_err(&all, "list the ports of"))?;
    let mut removed = Vec::new();
    for port in ports
        .into_iter()
        .filter(|port| port_is_in(port, netns.id()))
    {
        let name = port_name(netns.reference(), &port.ifname);
        let detached: Detached = client
            .call(&Request::Detach {
                netns: port.netns.clone(),
                ifname: port.ifname.clone(),
            })
            .map_err(switchd_err(&name, "detach"))?;
        removed.extend(detached.port);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard::wire::VlanId;

    fn options() -> AttachOptions {
        let mut options = AttachOptions::new(NetnsRef::parse("red").unwrap());
        options.addr = Some("10.0.0.1/24".parse().unwrap());
        options.gateway = Some("10.0.0.254".parse().unwrap());
        options
    }

    #[test]
    fn defaults() {
        let options = AttachOptions::new(NetnsRef::parse("red").unwrap());
        assert_eq!(options.ifname, "eth0");
        assert_eq!(options.mtu, 1500);
        assert_eq!(
            options.mode,
            PortMode::Access {
                vlan: VlanId::DEFAULT
            }
        );
        assert!(options.validate().is_ok());
        assert!(self::options().validate().is_ok());
    }

    #[test]
    fn gateway_must_be_a_host_in_the_subnet() {
        let mut outside = options();
        outside.gateway = Some("10.0.1.1".parse().unwrap());
        let err = outside.validate().unwrap_err();
        assert!(matches!(err, OptionsError::GatewayOutsideSubnet { .. }));
        assert_eq!(
            err.to_string(),
            "gateway 10.0.1.1 is outside 10.0.0.0/24, the subnet of 10.0.0.1/24; give a gateway inside it, or a wider prefix"
        );
        let mut itself = options();
        itself.gateway = Some("10.0.0.1".parse().unwrap());
        assert!(matches!(
            itself.validate(),
            Err(OptionsError::GatewayIsAddress { .. })
        ));
        let mut family = options();
        family.gateway = Some("fd00::1".parse().unwrap());
        assert!(matches!(
            family.validate(),
            Err(OptionsError::GatewayFamily { .. })
        ));
        let mut broadcast = options();
        broadcast.gateway = Some("10.0.0.255".parse().unwrap());
        assert!(matches!(
            broadcast.validate(),
            Err(OptionsError::GatewayNotHost { .. })
        ));
        let mut alone = options();
        alone.addr = None;
        assert!(matches!(
            alone.validate(),
            Err(OptionsError::GatewayWithoutAddress { .. })
        ));
        let mut v6 = options();
        v6.addr = Some("fd00::2/64".parse().unwrap());
        v6.gateway = Some("fd00::1".parse().unwrap());
        assert!(v6.validate().is_ok());
        let mut p2p = options();
        p2p.addr = Some("10.0.0.0/31".parse().unwrap());
        p2p.gateway = Some("10.0.0.1".parse().unwrap());
        assert!(p2p.validate().is_ok());
    }

    #[test]
    fn addresses_must_be_host_addresses() {
        for bad in [
            "10.0.0.0/24",
            "10.0.0.255/24",
            "0.0.0.0/0",
            "224.0.0.1/24",
            "127.0.0.1/8",
            "::/64",
            "ff02::1/64",
        ] {
            let mut options = options();
            options.addr = Some(bad.parse().unwrap());
            options.gateway = None;
            assert!(
                matches!(options.validate(), Err(OptionsError::NotHostAddress { .. })),
                "{bad} accepted"
            );
        }
        let mut host = options();
        host.addr = Some("10.0.0.7/32".parse().unwrap());
        host.gateway = None;
        assert!(host.validate().is_ok());
    }

    #[test]
    fn mtu_ifname_and_mac_are_checked() {
        for (mtu, ok) in [
            (67, false),
            (68, true),
            (1500, true),
            (65535, true),
            (65536, false),
        ] {
            let mut options = options();
            options.mtu = mtu;
            assert_eq!(options.validate().is_ok(), ok, "mtu {mtu}");
        }
        let mut v6 = options();
        v6.addr = Some("fd00::2/64".parse().unwrap());
        v6.gateway = None;
        v6.mtu = 1279;
        assert!(matches!(v6.validate(), Err(OptionsError::Ipv6Mtu { .. })));
        for bad in ["", "sixteen-bytes-xx", "a/b", "a b"] {
            let mut options = options();
            options.ifname = bad.into();
            assert!(
                matches!(options.validate(), Err(OptionsError::Ifname(_))),
                "{bad:?}"
            );
        }
        let mut mac = options();
        mac.mac = Some("01:00:5e:00:00:01".parse().unwrap());
        assert!(matches!(mac.validate(), Err(OptionsError::Mac { .. })));
        mac.mac = Some(MacAddr::ZERO);
        assert!(matches!(mac.validate(), Err(OptionsError::Mac { .. })));
    }

    #[test]
    fn default_mac_is_docker_style_for_ipv4() {
        let id = NetnsId {
            dev: 4,
            ino: 4026532290,
        };
        let mac = default_mac(Some("10.0.0.1/24".parse().unwrap()), id, "eth0");
        assert_eq!(mac.to_string(), "02:42:0a:00:00:01");
    }

    #[test]
    fn derived_mac_is_stable_local_unicast() {
        let id = NetnsId {
            dev: 4,
            ino: 4026532290,
        };
        let mac = default_mac(Some("fd00::2/64".parse().unwrap()), id, "eth0");
        assert_eq!(mac, derived_mac(id, "eth0"));
        assert_eq!(mac, default_mac(None, id, "eth0"));
        assert_eq!(mac.octets()[0], 0x02);
        assert!(mac.is_valid_source());
        // A fixed value: the derivation must not change between releases.
        assert_eq!(mac.to_string(), "02:f3:0d:77:11:02");
        let other_ns = derived_mac(
            NetnsId {
                dev: 4,
                ino: 4026532291,
            },
            "eth0",
        );
        let other_if = derived_mac(id, "eth1");
        assert_ne!(mac, other_ns);
        assert_ne!(mac, other_if);
        assert_ne!(other_ns, other_if);
    }

    #[test]
    fn human_line() {
        let port = PortInfo {
            id: switchyard::PortId(3),
            name: "red/eth0".into(),
            netns: "/run/netns/red".into(),
            ifname: "eth0".into(),
            ifindex: 2,
            mode: PortMode::Access {
                vlan: VlanId::new(10).unwrap(),
            },
            state: "up".into(),
            mac: None,
            port_security: true,
            storm_limit_pps: Some(2000),
            kind: Default::default(),
        };
        let mut attachment = Attachment {
            network: None,
            netns: "red".into(),
            netns_path: "/run/netns/red".into(),
            ifname: "eth0".into(),
            created: true,
            completed: false,
            port,
            mac: "02:42:0a:00:00:01".parse().unwrap(),
            mtu: 1500,
            addresses: vec!["10.0.0.1/24".parse().unwrap()],
            gateway: Some("10.0.0.254".parse().unwrap()),
            published: Vec::new(),
            name: None,
            aliases: Vec::new(),
        };
        assert_eq!(
            attachment.to_string(),
            "attached red/eth0: port 3, access vlan 10, mac 02:42:0a:00:00:01, 10.0.0.1/24 via 10.0.0.254"
        );
        attachment.created = false;
        attachment.completed = true;
        assert_eq!(
            attachment.to_string(),
            "attached red/eth0 (completed an earlier, interrupted attach): port 3, access vlan 10, mac 02:42:0a:00:00:01, 10.0.0.1/24 via 10.0.0.254"
        );
        attachment.completed = false;
        attachment.gateway = None;
        attachment.mtu = 9000;
        assert_eq!(
            attachment.to_string(),
            "red/eth0 already attached: port 3, access vlan 10, mac 02:42:0a:00:00:01, 10.0.0.1/24, mtu 9000"
        );
        let json = serde_json::to_value(&attachment).unwrap();
        assert_eq!(json["port"]["id"], 3);
        assert_eq!(json["port"]["vlan"], 10);
        assert_eq!(json["addresses"][0], "10.0.0.1/24");
        assert_eq!(json["created"], false);
        assert_eq!(json["completed"], false);
    }

    #[test]
    fn conflicts_say_what_to_do() {
        let vlan = |id| PortMode::Access {
            vlan: VlanId::new(id).unwrap(),
        };
        let mode = AttachError::ModeMismatch {
            port: "red/eth0".into(),
            switchd_name: "red/eth0".into(),
            existing: vlan(10),
            requested: vlan(20),
            detach: detach_command(&NetnsRef::parse("red").unwrap(), "eth0"),
        };
        assert_eq!(
            mode.to_string(),
            "red/eth0 is already attached as access vlan 10; change it with `swctl port set red/eth0 --vlan 20` or `nsutil detach red` first"
        );
        let trunk = AttachError::ModeMismatch {
            port: "red/t0".into(),
            switchd_name: "red/t0".into(),
            existing: vlan(10),
            requested: PortMode::Trunk {
                allowed: "10,20-22".parse().unwrap(),
                native: VlanId::new(5),
            },
            detach: detach_command(&NetnsRef::parse("red").unwrap(), "t0"),
        };
        assert_eq!(
            trunk.to_string(),
            "red/t0 is already attached as access vlan 10; change it with `swctl port set red/t0 --trunk 10,20-22 --native 5` or `nsutil detach red --ifname t0` first"
        );
        let address = AttachError::AddressMismatch {
            port: "red/eth0".into(),
            existing: vec!["10.0.0.1/24".parse().unwrap()],
            requested: "10.0.0.2/24".parse().unwrap(),
            detach: "nsutil detach red".into(),
        };
        assert_eq!(
            address.to_string(),
            "red/eth0 is already attached with 10.0.0.1/24; detach first to change its address to 10.0.0.2/24: `nsutil detach red`"
        );
        let rollback = AttachError::RollbackFailed {
            source: Box::new(AttachError::Options(OptionsError::Mtu { mtu: 1 })),
            rollback: ClientError::Refused(switchyard::control::ControlError::new(
                switchyard::control::ErrorCode::NoSuchPort,
                "no such port \"7\"",
            )),
            port: switchyard::PortId(7),
        };
        assert_eq!(
            rollback.to_string(),
            "invalid MTU 1: give a value from 68 to 65535; removing the half-made port 7 failed too (no such port \"7\"); remove it with `swctl port del 7`"
        );
    }
}
