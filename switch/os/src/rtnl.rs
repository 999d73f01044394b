//! A small synchronous rtnetlink client: the few link, address and route operations that
//! wiring a container (nsutil) and the uplink's routes (switchd) need, over a blocking
//! `NETLINK_ROUTE` socket.
//!
//! A socket talks to the network namespace of the thread that opened it, so open an
//! [`Rtnl`] inside nsutil's `Netns::run` to configure a container.
//!
//! Every change is sent with `NLM_F_REQUEST | NLM_F_ACK` and the reply is read up to the
//! kernel's acknowledgement, so an operation has taken effect (or failed with the
//! kernel's errno, and its extended-ack message when there is one) when it returns.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_ACK,
    NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;
use serde::Serialize;
use switchyard::wire::MacAddr;

pub use crate::linkwatch::{LinkEvent, LinkWatcher};

/// `IFNAMSIZ - 1`: the longest interface name the kernel accepts.
pub const MAX_IFNAME_LEN: usize = 15;

/// The main routing table, where `ip route add` puts routes.
pub const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// `NLMSGERR_ATTR_MSG`: the extended-ack attribute carrying the kernel's message.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// An rtnetlink operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RtnlError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] io::Error),

    #[error("no interface named {name} in this network namespace")]
    NoSuchLink { name: String },

    #[error("no interface with index {index} in this network namespace")]
    NoSuchIndex { index: u32 },

    #[error(transparent)]
    InvalidName(#[from] InvalidIfname),

    #[error("cannot rename {name} while it is up; bring it down first")]
    LinkIsUp { name: String },

    #[error("cannot add a default route via {gateway}: the namespace already has one via {existing}{}", .dev.as_ref().map(|d| format!(" dev {d}")).unwrap_or_default())]
    OtherDefaultRoute {
        gateway: IpAddr,
        existing: String,
        dev: Option<String>,
    },

    /// The kernel refused; `what` says what was asked.
    #[error("{what} failed: {}{}{}", .errno.desc(), .detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default(), hint(*.errno))]
    Kernel {
        what: String,
        errno: Errno,
        /// The kernel's extended-ack message, when it sent one.
        detail: Option<String>,
    },

    #[error("{what} failed: netlink socket error: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },

    #[error("{what} failed: cannot decode the kernel's answer: {message}")]
    Decode { what: String, message: String },
}

fn hint(errno: Errno) -> &'static str {
    match errno {
        Errno::EPERM | Errno::EACCES => "; this needs root (CAP_NET_ADMIN)",
        _ => "",
    }
}

impl RtnlError {
    /// The kernel's errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            RtnlError::Kernel { errno, .. } => Some(*errno),
            RtnlError::NoSuchLink { .. } | RtnlError::NoSuchIndex { .. } => Some(Errno::ENODEV),
            _ => None,
        }
    }
}

/// An interface name the kernel would refuse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid interface name {name:?}: {reason}")]
pub struct InvalidIfname {
    pub name: String,
    pub reason: &'static str,
}

/// Checks an interface name the way the kernel will: 1 to 15 bytes, no `/` or `:`, no
/// whitespace, not `.` or `..`.
pub fn validate_ifname(name: &str) -> Result<(), InvalidIfname> {
    let reason = if name.is_empty() {
        Some("the name is empty")
    } else if name.len() > MAX_IFNAME_LEN {
        Some("interface names are at most 15 bytes")
    } else if name.contains('/') || name.contains(':') {
        Some("an interface name cannot contain '/' or ':'")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("an interface name cannot contain spaces or control characters")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not interface names")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(InvalidIfname {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A network interface as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// The hardware address, for links that have an Ethernet one.
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Up and able to pass traffic (`IFF_RUNNING`: operational state up or unknown,
    /// which for a veth means its peer is up too, for a NIC that it has a carrier).
    pub oper_up: bool,
    /// The loopback interface (`IFF_LOOPBACK`).
    pub loopback: bool,
    /// The index of the bridge, bond or VRF the interface is enslaved to (`IFLA_MASTER`).
    pub master: Option<u32>,
    /// The driver's kind (`IFLA_INFO_KIND`): `bridge`, `bond`, `veth`, `tun`, `vxlan`,
    /// ...; `None` for physical NICs and loopback.
    pub kind: Option<String>,
}

/// A route as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    /// `0.0.0.0/0` or `::/0` for a default route.
    pub destination: IpNet,
    pub gateway: Option<IpAddr>,
    /// The output interface.
    pub ifindex: Option<u32>,
    pub table: u32,
    pub metric: Option<u32>,
}

impl Route {
    pub fn is_default(&self) -> bool {
        self.destination.prefix_len() == 0
    }
}

/// What an idempotent add found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// The kernel made it.
    Created,
    /// It was there already; nothing changed.
    AlreadyPresent,
}

/// A blocking rtnetlink connection in the namespace of the thread that opened it.
pub struct Rtnl {
    socket: Socket,
    sequence: u32,
}

impl fmt::Debug for Rtnl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rtnl")
            .field("sequence", &self.sequence)
            .finish()
    }
}

impl Rtnl {
    /// Opens a `NETLINK_ROUTE` socket in the calling thread's network namespace.
    pub fn open() -> Result<Rtnl, RtnlError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(RtnlError::Socket)?;
        socket.bind_auto().map_err(RtnlError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(RtnlError::Socket)?;
        // Best effort: the kernel's own words in errors, without the request echoed back.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Rtnl {
            socket,
            sequence: 0,
        })
    }

    /// The interface called `name`.
    pub fn link(&mut self, name: &str) -> Result<Link, RtnlError> {
        validate_ifname(name)?;
        let what = format!("looking up interface {name}");
        match self.request(&what, get_link_by_name(name), 0) {
            Err(err) if err.errno() == Some(Errno::ENODEV) => Err(RtnlError::NoSuchLink {
                name: name.to_string(),
            }),
            Err(err) => Err(err),
            Ok(replies) => first_link(&what, replies),
        }
    }

    /// The interface with index `index`.
    pub fn link_by_index(&mut self, index: u32) -> Result<Link, RtnlError> {
        let what = format!("looking up interface index {index}");
        let mut message = LinkMessage::default();
        message.header.index = index;
        match self.request(&what, RouteNetlinkMessage::GetLink(message), 0) {
            Err(err) if err.errno() == Some(Errno::ENODEV) => Err(RtnlError::NoSuchIndex { index }),
            Err(err) => Err(err),
            Ok(replies) => first_link(&what, replies),
        }
    }

    /// Whether an interface called `name` exists.
    pub fn link_exists(&mut self, name: &str) -> Result<bool, RtnlError> {
        match self.link(name) {
            Ok(_) => Ok(true),
            Err(RtnlError::NoSuchLink { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// The index of the interface called `name`.
    pub fn link_index(&mut self, name: &str) -> Result<u32, RtnlError> {
        self.link(name).map(|link| link.index)
    }

    /// Every interface in the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, RtnlError> {
        let what = "listing interfaces";
        let replies = self.dump(what, RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(message) => Some(link_from_message(&message)),
                _ => None,
            })
            .collect())
    }

    pub fn set_mac(&mut self, link: &Link, mac: MacAddr) -> Result<(), RtnlError> {
        let what = format!("setting the MAC address of {} to {mac}", link.name);
        let message = set_link(
            link.index,
            vec![LinkAttribute::Address(mac.octets().to_vec())],
        );
        self.request(&what, message, 0).map(drop)
    }

    pub fn set_mtu(&mut self, link: &Link, mtu: u32) -> Result<(), RtnlError> {
        let what = format!("setting the MTU of {} to {mtu}", link.name);
        let message = set_link(link.index, vec![LinkAttribute::Mtu(mtu)]);
        self.request(&what, message, 0).map(drop)
    }

    /// Brings the interface administratively up.
    pub fn set_up(&mut self, link: &Link) -> Result<(), RtnlError> {
        let what = format!("bringing {} up", link.name);
        self.request(&what, set_link_flags(link.index, true), 0)
            .map(drop)
    }

    /// Deletes the interface with index `index`. An interface already gone is no error.
    pub fn delete_link(&mut self, index: u32) -> Result<(), RtnlError> {
        let what = format!("deleting interface index {index}");
        let mut message = LinkMessage::default();
        message.header.index = index;
        match self.request(&what, RouteNetlinkMessage::DelLink(message), 0) {
            Err(err) if err.errno() == Some(Errno::ENODEV) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Brings the interface administratively down.
    pub fn set_down(&mut self, link: &Link) -> Result<(), RtnlError> {
        let what = format!("bringing {} down", link.name);
        self.request(&what, set_link_flags(link.index, false), 0)
            .map(drop)
    }

    /// Renames the interface. The kernel allows this only while it is down.
    pub fn rename(&mut self, link: &Link, new_name: &str) -> Result<(), RtnlError> {
        validate_ifname(new_name)?;
        let current = self.link_by_index(link.index)?;
        if current.up {
            return Err(RtnlError::LinkIsUp { name: current.name });
        }
        let what = format!("renaming {} to {new_name}", current.name);
        let message = set_link(
            link.index,
            vec![LinkAttribute::IfName(new_name.to_string())],
        );
        self.request(&what, message, 0).map(drop)
    }

    /// Adds `addr` (host address and prefix, such as `10.0.0.1/24`) to the interface.
    /// Adding an address that is already there succeeds with [`Added::AlreadyPresent`].
    pub fn add_address(&mut self, link: &Link, addr: IpNet) -> Result<Added, RtnlError> {
        let what = format!("adding address {addr} to {}", link.name);
        let message = RouteNetlinkMessage::NewAddress(new_address(link.index, addr));
        match self.request(&what, message, NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => Ok(Added::Created),
            Err(err) if err.errno() == Some(Errno::EEXIST) => Ok(Added::AlreadyPresent),
            Err(err) => Err(err),
        }
    }

    /// The addresses on the interface, with their prefix lengths.
    pub fn addresses(&mut self, link: &Link) -> Result<Vec<IpNet>, RtnlError> {
        let what = format!("listing the addresses of {}", link.name);
        let replies = self.dump(
            &what,
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewAddress(message) if message.header.index == link.index => {
                    address_from_message(&message)
                }
                _ => None,
            })
            .collect())
    }

    /// Adds a default route via `gateway` out of the interface, in the main table. A
    /// default route via the same gateway already there succeeds with
    /// [`Added::AlreadyPresent`]; one via another gateway is an error.
    pub fn add_default_route(&mut self, link: &Link, gateway: IpAddr) -> Result<Added, RtnlError> {
        let what = format!("adding a default route via {gateway} dev {}", link.name);
        let message = RouteNetlinkMessage::NewRoute(default_route(link.index, gateway));
        match self.request(&what, message, NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => Ok(Added::Created),
            Err(err) if err.errno() == Some(Errno::EEXIST) => {
                let existing = self.all_routes()?.into_iter().find(|route| {
                    route.is_default()
                        && route.table == MAIN_TABLE
                        && route.destination.addr().is_ipv4() == gateway.is_ipv4()
                });
                match existing {
                    Some(route)
                        if route.gateway == Some(gateway) && route.ifindex == Some(link.index) =>
                    {
                        Ok(Added::AlreadyPresent)
                    }
                    Some(route) => {
                        let dev = match route.ifindex {
                            Some(index) => self.link_by_index(index).ok().map(|link| link.name),
                            None => None,
                        };
                        Err(RtnlError::OtherDefaultRoute {
                            gateway,
                            existing: route
                                .gateway
                                .map_or_else(|| "no gateway".to_string(), |gw| gw.to_string()),
                            dev,
                        })
                    }
                    None => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// Routes `destination` straight out of the interface (no gateway) in the main table,
    /// with a path MTU when `mtu` is given, replacing a route to the same destination.
    pub fn replace_link_route(
        &mut self,
        link: &Link,
        destination: IpNet,
        mtu: Option<u32>,
    ) -> Result<(), RtnlError> {
        let what = format!("routing {destination} through {}", link.name);
        let message = RouteNetlinkMessage::NewRoute(link_route(link.index, destination, mtu));
        self.request(&what, message, NLM_F_CREATE | NLM_F_REPLACE)
            .map(drop)
    }

    /// Removes the route to `destination` out of the interface. A route that is not there
    /// is not an error.
    pub fn delete_link_route(&mut self, link: &Link, destination: IpNet) -> Result<(), RtnlError> {
        let what = format!("removing the route to {destination} through {}", link.name);
        let message = RouteNetlinkMessage::DelRoute(link_route(link.index, destination, None));
        match self.request(&what, message, 0) {
            Ok(_) => Ok(()),
            Err(err) if err.errno() == Some(Errno::ESRCH) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The routes out of the interface in the main table, IPv4 and IPv6.
    pub fn routes(&mut self, link: &Link) -> Result<Vec<Route>, RtnlError> {
        Ok(self
            .all_routes()?
            .into_iter()
            .filter(|route| route.table == MAIN_TABLE && route.ifindex == Some(link.index))
            .collect())
    }

    /// Every route in every table.
    pub fn all_routes(&mut self) -> Result<Vec<Route>, RtnlError> {
        let replies = self.dump(
            "listing routes",
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewRoute(message) => route_from_message(&message),
                _ => None,
            })
            .collect())
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1).max(1);
        self.sequence
    }

    /// Sends a request with `NLM_F_ACK` and collects the messages answering it up to the
    /// acknowledgement.
    fn request(
        &mut self,
        what: &str,
        message: RouteNetlinkMessage,
        extra_flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, RtnlError> {
        let flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
        self.exchange(what, message, flags)
    }

    /// Sends a dump request and collects every message up to `NLMSG_DONE`.
    fn dump(
        &mut self,
        what: &str,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, RtnlError> {
        self.exchange(what, message, NLM_F_REQUEST | NLM_F_DUMP)
    }

    fn exchange(
        &mut self,
        what: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, RtnlError> {
        let sequence = self.next_sequence();
        let bytes = encode(message, flags, sequence);
        let io_err = |source| RtnlError::Io {
            what: what.to_string(),
            source,
        };
        self.socket.send(&bytes, 0).map_err(io_err)?;
        let mut replies = Vec::new();
        loop {
            let (buf, _) = self.socket.recv_from_full().map_err(io_err)?;
            let mut offset = 0;
            while offset < buf.len() {
                let frame = &buf[offset..];
                let header =
                    NetlinkBuffer::new_checked(frame).map_err(|err| RtnlError::Decode {
                        what: what.to_string(),
                        message: err.to_string(),
                    })?;
                let length = header.length() as usize;
                let outer_flags = header.flags();
                let ours = header.sequence_number() == sequence;
                offset += align4(length.max(1));
                if !ours {
                    continue;
                }
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&frame[..length])
                    .map_err(|err| RtnlError::Decode {
                    what: what.to_string(),
                    message: err.to_string(),
                })?;
                match parsed.payload {
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    NetlinkPayload::Error(error) => match error.code {
                        None => return Ok(replies),
                        Some(code) => {
                            return Err(RtnlError::Kernel {
                                what: what.to_string(),
                                errno: Errno::from_raw(code.get().abs()),
                                detail: extack_message(outer_flags, &error.header),
                            })
                        }
                    },
                    NetlinkPayload::Done(done) => {
                        if done.code != 0 {
                            return Err(RtnlError::Kernel {
                                what: what.to_string(),
                                errno: Errno::from_raw(done.code.abs()),
                                detail: None,
                            });
                        }
                        return Ok(replies);
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(io_err(io::Error::other("netlink buffer overrun")))
                    }
                    _ => {}
                }
            }
        }
    }
}

/// `len` rounded up to netlink's 4-byte alignment.
pub const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Serialises `message` as one netlink message with `flags` and `sequence`.
pub(crate) fn encode(message: RouteNetlinkMessage, flags: u16, sequence: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = sequence;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    packet.finalize();
    let mut bytes = vec![0; packet.buffer_len()];
    packet.serialize(&mut bytes);
    bytes
}

/// The `NLMSGERR_ATTR_MSG` string of an error's extended ack, if the kernel sent one.
/// `payload` is what follows the error code: the request's header (all of the request
/// unless `NLM_F_CAPPED`), then the TLVs when `NLM_F_ACK_TLVS` is set. Any netlink
/// family's errors carry it (switchd's nftables client uses it too).
pub fn extack_message(outer_flags: u16, payload: &[u8]) -> Option<String> {
    if outer_flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let request = NetlinkBuffer::new_checked(payload).ok()?;
    let skip = if outer_flags & NLM_F_CAPPED != 0 {
        16
    } else {
        align4(request.length() as usize)
    };
    for nla in NlasIterator::new(payload.get(skip..)?) {
        let nla = nla.ok()?;
        if nla.kind() == NLMSGERR_ATTR_MSG {
            let text = String::from_utf8_lossy(nla.value());
            let text = text.trim_end_matches('\0').trim();
            return (!text.is_empty()).then(|| text.to_string());
        }
    }
    None
}

fn get_link_by_name(name: &str) -> RouteNetlinkMessage {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_string()));
    RouteNetlinkMessage::GetLink(message)
}

fn set_link(index: u32, attributes: Vec<LinkAttribute>) -> RouteNetlinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.attributes = attributes;
    RouteNetlinkMessage::SetLink(message)
}

fn set_link_flags(index: u32, up: bool) -> RouteNetlinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.header.change_mask = LinkFlags::Up;
    if up {
        message.header.flags = LinkFlags::Up;
    }
    RouteNetlinkMessage::SetLink(message)
}

fn new_address(index: u32, addr: IpNet) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.index = index;
    message.header.prefix_len = addr.prefix_len();
    message.header.scope = AddressScope::Universe;
    message.header.family = match addr {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    message
        .attributes
        .push(AddressAttribute::Local(addr.addr()));
    message
        .attributes
        .push(AddressAttribute::Address(addr.addr()));
    if let IpNet::V4(net) = addr {
        // As `ip addr add ... brd +` and the CNI plugins do; /31 and /32 have none.
        if net.prefix_len() < 31 {
            message
                .attributes
                .push(AddressAttribute::Broadcast(net.broadcast()));
        }
    }
    message
}

/// A main-table unicast route message out of interface `index`, without destination
/// or gateway attributes yet.
fn route_message(
    index: u32,
    family: AddressFamily,
    prefix_len: u8,
    protocol: RouteProtocol,
    scope: RouteScope,
) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = family;
    message.header.destination_prefix_length = prefix_len;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = protocol;
    message.header.scope = scope;
    message.header.kind = RouteType::Unicast;
    message.attributes.push(RouteAttribute::Oif(index));
    message
}

fn default_route(index: u32, gateway: IpAddr) -> RouteMessage {
    let family = match gateway {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    let mut message = route_message(index, family, 0, RouteProtocol::Boot, RouteScope::Universe);
    message
        .attributes
        .insert(0, RouteAttribute::Gateway(RouteAddress::from(gateway)));
    message
}

fn link_route(index: u32, destination: IpNet, mtu: Option<u32>) -> RouteMessage {
    let family = match destination {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    let mut message = route_message(
        index,
        family,
        destination.prefix_len(),
        RouteProtocol::Static,
        RouteScope::Link,
    );
    message.attributes.insert(
        0,
        RouteAttribute::Destination(RouteAddress::from(destination.network())),
    );
    if let Some(mtu) = mtu {
        message
            .attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
    }
    message
}

fn first_link(what: &str, replies: Vec<RouteNetlinkMessage>) -> Result<Link, RtnlError> {
    replies
        .into_iter()
        .find_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(message) => Some(link_from_message(&message)),
            _ => None,
        })
        .ok_or_else(|| RtnlError::Decode {
            what: what.to_string(),
            message: "the kernel answered without the interface".to_string(),
        })
}

pub(crate) fn link_from_message(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: message.header.flags.contains(LinkFlags::Up),
        oper_up: message.header.flags.contains(LinkFlags::Running),
        loopback: message.header.flags.contains(LinkFlags::Loopback),
        master: None,
        kind: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                link.mac = MacAddr::from_slice(bytes)
            }
            LinkAttribute::Controller(master) if *master != 0 => link.master = Some(*master),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        link.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn address_from_message(message: &AddressMessage) -> Option<IpNet> {
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on
    // point-to-point links, and the same as IFA_LOCAL otherwise. IPv6 sends only
    // IFA_ADDRESS.
    let mut local = None;
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    IpNet::new(local.or(address)?, message.header.prefix_len).ok()
}

fn route_from_message(message: &RouteMessage) -> Option<Route> {
    let family = message.header.address_family;
    let unspecified = match family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let mut route = Route {
        destination: IpNet::new(unspecified, 0).ok()?,
        gateway: None,
        ifindex: None,
        table: u32::from(message.header.table),
        metric: None,
    };
    let mut destination = unspecified;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(addr) => destination = route_ip(addr)?,
            RouteAttribute::Gateway(addr) => route.gateway = route_ip(addr),
            RouteAttribute::Oif(index) => route.ifindex = Some(*index),
            RouteAttribute::Table(table) => route.table = *table,
            RouteAttribute::Priority(metric) => route.metric = Some(*metric),
            _ => {}
        }
    }
    route.destination = IpNet::new(destination, message.header.destination_prefix_length).ok()?;
    Some(route)
}

fn route_ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> NetlinkMessage<RouteNetlinkMessage> {
        NetlinkMessage::deserialize(bytes).unwrap()
    }

    #[test]
    fn ifnames_follow_kernel_rules() {
        for good in ["eth0", "a", "x".repeat(15).as_str(), "veth-1.2"] {
            assert!(validate_ifname(good).is_ok(), "{good:?} refused");
        }
        for bad in [
            "",
            "x".repeat(16).as_str(),
            "a/b",
            "a b",
            "a:1",
            ".",
            "..",
            "tab\t",
        ] {
            assert!(validate_ifname(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn address_request_bytes() {
        let addr: IpNet = "10.0.0.1/24".parse().unwrap();
        let message = RouteNetlinkMessage::NewAddress(new_address(7, addr));
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        let bytes = encode(message, flags, 5);
        #[rustfmt::skip]
        let expected: [u8; 48] = [
            48, 0, 0, 0,            // length
            20, 0,                  // RTM_NEWADDR
            0x05, 0x06,             // REQUEST | ACK | EXCL | CREATE
            5, 0, 0, 0,             // sequence
            0, 0, 0, 0,             // port
            2, 24, 0, 0,            // AF_INET, /24, flags, scope universe
            7, 0, 0, 0,             // ifindex
            8, 0, 2, 0, 10, 0, 0, 1,       // IFA_LOCAL
            8, 0, 1, 0, 10, 0, 0, 1,       // IFA_ADDRESS
            8, 0, 4, 0, 10, 0, 0, 255,     // IFA_BROADCAST
        ];
        assert_eq!(bytes, expected);
        let back = parse(&bytes);
        match back.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(message)) => {
                assert_eq!(address_from_message(&message), Some(addr));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ipv6_and_point_to_point_addresses_have_no_broadcast() {
        let v6 = new_address(3, "fd00::2/64".parse().unwrap());
        assert_eq!(v6.header.family, AddressFamily::Inet6);
        assert!(!v6
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Broadcast(_))));
        let p2p = new_address(3, "10.0.0.1/31".parse().unwrap());
        assert!(!p2p
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Broadcast(_))));
    }

    #[test]
    fn link_up_sets_flag_and_change_mask() {
        let bytes = encode(set_link_flags(9, true), NLM_F_REQUEST | NLM_F_ACK, 1);
        // nlmsghdr, then ifinfomsg: family, pad, type, index, flags, change.
        assert_eq!(bytes.len(), 32);
        assert_eq!(&bytes[4..6], &19u16.to_ne_bytes()); // RTM_SETLINK
        assert_eq!(&bytes[20..24], &9u32.to_ne_bytes());
        assert_eq!(&bytes[24..28], &1u32.to_ne_bytes());
        assert_eq!(&bytes[28..32], &1u32.to_ne_bytes());
        let down = encode(set_link_flags(9, false), NLM_F_REQUEST | NLM_F_ACK, 1);
        assert_eq!(&down[24..28], &0u32.to_ne_bytes());
        assert_eq!(&down[28..32], &1u32.to_ne_bytes());
    }

    #[test]
    fn default_route_message() {
        let gateway: IpAddr = "10.0.0.254".parse().unwrap();
        let bytes = encode(
            RouteNetlinkMessage::NewRoute(default_route(4, gateway)),
            NLM_F_REQUEST | NLM_F_ACK,
            1,
        );
        match parse(&bytes).payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(message)) => {
                assert_eq!(message.header.table, RouteHeader::RT_TABLE_MAIN);
                let route = route_from_message(&message).unwrap();
                assert!(route.is_default());
                assert_eq!(route.destination.to_string(), "0.0.0.0/0");
                assert_eq!(route.gateway, Some(gateway));
                assert_eq!(route.ifindex, Some(4));
                assert_eq!(route.table, MAIN_TABLE);
            }
            other => panic!("unexpected {other:?}"),
        }
        let v6 = default_route(4, "fd00::1".parse().unwrap());
        assert_eq!(v6.header.address_family, AddressFamily::Inet6);
        assert_eq!(
            route_from_message(&v6).unwrap().destination.to_string(),
            "::/0"
        );
    }

    #[test]
    fn link_lookup_carries_the_name() {
        let bytes = encode(get_link_by_name("eth0"), NLM_F_REQUEST | NLM_F_ACK, 1);
        match parse(&bytes).payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetLink(message)) => {
                assert_eq!(message.header.index, 0);
                assert_eq!(
                    message.attributes,
                    vec![LinkAttribute::IfName("eth0".into())]
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn extended_ack_message_is_extracted() {
        // A capped error payload: the request's 16-byte header, then NLMSGERR_ATTR_MSG.
        let mut payload = vec![0u8; 16];
        payload[..4].copy_from_slice(&32u32.to_ne_bytes());
        let text = b"MTU too small\0";
        let nla_len = 4 + text.len();
        payload.extend_from_slice(&(nla_len as u16).to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        payload.resize(align4(payload.len()), 0);
        assert_eq!(
            extack_message(NLM_F_ACK_TLVS | NLM_F_CAPPED, &payload).as_deref(),
            Some("MTU too small")
        );
        assert_eq!(extack_message(NLM_F_CAPPED, &payload), None);
    }

    #[test]
    fn kernel_errors_say_what_failed() {
        let err = RtnlError::Kernel {
            what: "setting the MTU of eth0 to 70000".into(),
            errno: Errno::EINVAL,
            detail: Some("MTU greater than device maximum".into()),
        };
        assert_eq!(
            err.to_string(),
            "setting the MTU of eth0 to 70000 failed: Invalid argument (MTU greater than device maximum)"
        );
        let denied = RtnlError::Kernel {
            what: "bringing eth0 up".into(),
            errno: Errno::EPERM,
            detail: None,
        };
        assert!(
            denied.to_string().ends_with("needs root (CAP_NET_ADMIN)"),
            "{denied}"
        );
    }
}
