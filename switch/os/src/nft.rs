//! NAT in switchd's own network namespace: source NAT (masquerade) for the networks that
//! ask for it and destination NAT for published ports, in one nftables table,
//! `ip switchyard`, owned entirely by switchd and rewritten whole on every change.
//!
//! ```text
//! table ip switchyard {
//!     chain postrouting {
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr 10.10.0.0/24 oifname != "sy-uplink" masquerade
//!         iifname "sy-uplink" oifname "sy-uplink" masquerade      # published: hairpin
//!         ip saddr 127.0.0.0/8 oifname "sy-uplink" masquerade     # published: localhost
//!     }
//!     chain prerouting {
//!         type nat hook prerouting priority dstnat; policy accept;
//!         fib daddr type local tcp dport 8080 dnat to 10.10.0.2:80
//!     }
//!     chain output {
//!         type nat hook output priority -100; policy accept;
//!         fib daddr type local tcp dport 8080 dnat to 10.10.0.2:80
//!     }
//! }
//! ```
//!
//! One masquerade rule per masquerading network: traffic from the network's subnet that
//! leaves through any interface other than switchd's uplink TUN gets that interface's
//! address. One destination NAT rule per published port, in `prerouting` (clients
//! elsewhere, whose address the container sees) and in `output` (clients in switchd's
//! namespace). Two more rules exist while any port is published: a container that
//! reaches a published port comes in through the uplink and, after the DNAT, goes out
//! through it again, so it is masqueraded for the answer to come back the same way
//! (hairpin); and a client on 127.0.0.1 is masqueraded, since 127.0.0.1 means nothing
//! to the container (the uplink has `route_localnet` for that).
//! The prerouting and output chains exist only while a port is published.
//!
//! The messages are nf_tables netlink (`NETLINK_NETFILTER`) built here, sent over a
//! `netlink-sys` socket with `netlink-packet-core` framing: no `nft` process, no C
//! library (libnftnl/libmnl), no `unsafe`. Every change is one nfnetlink batch, which the
//! kernel applies atomically or not at all, and every message in it asks for an
//! acknowledgement, so a call has taken effect (or failed with the kernel's errno for the
//! step that failed) when it returns.
//!
//! Sockets talk to the namespace of the thread that opens them: call [`apply`] and
//! [`remove`] from a thread in switchd's own namespace, never from a helper that entered
//! a container's. Calls are not serialised here; the last batch the kernel sees wins.

use std::io;
use std::time::Duration;

use crate::rtnl::{align4, extack_message};
use ipnet::Ipv4Net;
use netlink_packet_core::{
    DecodeError, Emitable, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable, Nla, NLA_F_NESTED, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE,
    NLM_F_REQUEST,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

/// switchd's table (family `ip`).
pub const TABLE: &str = "switchyard";
/// The source NAT chain.
pub const CHAIN: &str = "postrouting";
/// The destination NAT chains of published ports.
pub const PREROUTING: &str = "prerouting";
pub const OUTPUT: &str = "output";

/// How long to wait for the kernel's answer to a batch. The kernel handles a batch while
/// it is being sent, so the answer is normally queued before `send` returns.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

pub use switchyard::controller::{Masquerade, NatRules, PortForward};

/// Managing switchd's NAT table failed. Nothing changed: a batch is all or nothing.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    #[error("invalid NAT rules: uplink interface name {uplink:?} {reason}")]
    InvalidRule {
        uplink: String,
        reason: &'static str,
    },

    #[error("nftables is not available in this kernel ({needs}): {what} failed: {}{}; use a kernel with it (or load the module), or turn masquerading off", .errno.desc(), detail_suffix(.detail))]
    Unavailable {
        what: String,
        needs: &'static str,
        errno: Errno,
        detail: Option<String>,
    },

    #[error("{what} failed: {}; switchd needs CAP_NET_ADMIN in its network namespace to manage NAT (run it as root)", .errno.desc())]
    PermissionDenied { what: String, errno: Errno },

    #[error("{what} failed: {}{}", .errno.desc(), detail_suffix(.detail))]
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

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

/// Replaces switchd's table with exactly `rules`, atomically: one batch deletes the
/// table if it exists, then creates table, chains and rules. No rules remove the table
/// entirely.
pub fn apply(rules: &NatRules) -> Result<(), NatError> {
    for uplink in rules.masquerade.iter().map(|r| &r.uplink) {
        validate(uplink)?;
    }
    let published = !rules.forwards.is_empty();
    if published {
        validate(&rules.uplink)?;
    }
    let mut batch = Batch::default();
    // Deleting a table that does not exist fails the whole batch, so make sure it does
    // first: adding an existing table without NLM_F_EXCL changes nothing.
    batch.push(
        Step::Table,
        format!("making sure table ip {TABLE} exists before replacing it"),
        NFT_MSG_NEWTABLE,
        NLM_F_CREATE,
        table_attrs(),
    );
    batch.push(
        Step::Table,
        format!("deleting table ip {TABLE}"),
        NFT_MSG_DELTABLE,
        0,
        table_attrs(),
    );
    if rules.is_empty() {
        return batch.commit();
    }
    batch.push(
        Step::Table,
        format!("creating table ip {TABLE}"),
        NFT_MSG_NEWTABLE,
        NLM_F_CREATE,
        table_attrs(),
    );
    let mut chains = vec![(CHAIN, NF_INET_POST_ROUTING, NF_IP_PRI_NAT_SRC, "srcnat")];
    if published {
        chains.push((PREROUTING, NF_INET_PRE_ROUTING, NF_IP_PRI_NAT_DST, "dstnat"));
        chains.push((OUTPUT, NF_INET_LOCAL_OUT, NF_IP_PRI_NAT_DST, "-100"));
    }
    for (chain, hook, priority, said) in chains {
        batch.push(
            Step::Chain,
            format!(
                "creating chain ip {TABLE} {chain} \
                 (type nat hook {chain} priority {said}; policy accept)"
            ),
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            chain_attrs(chain, hook, priority),
        );
    }
    let mut add = |step, chain: &str, rule: String, exprs: Vec<Attr>| {
        batch.push(
            step,
            format!("adding the rule `{rule}` to ip {TABLE} {chain}"),
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            rule_attrs(chain, exprs),
        );
    };
    for rule in &rules.masquerade {
        add(Step::Rule, CHAIN, rule.to_string(), masquerade_exprs(rule));
    }
    if published {
        let uplink = &rules.uplink;
        add(
            Step::Rule,
            CHAIN,
            format!("iifname {uplink:?} oifname {uplink:?} masquerade"),
            hairpin_exprs(uplink),
        );
        add(
            Step::Rule,
            CHAIN,
            format!("ip saddr 127.0.0.0/8 oifname {uplink:?} masquerade"),
            localhost_exprs(uplink),
        );
        for forward in &rules.forwards {
            for chain in [PREROUTING, OUTPUT] {
                add(
                    Step::Forward,
                    chain,
                    forward.to_string(),
                    forward_exprs(forward),
                );
            }
        }
    }
    batch.commit()
}

/// Removes switchd's table if present (idempotent).
pub fn remove() -> Result<(), NatError> {
    apply(&NatRules::default())
}

fn validate(uplink: &str) -> Result<(), NatError> {
    let reason = if uplink.is_empty() {
        Some("is empty")
    } else if uplink.len() >= IFNAMSIZ {
        Some("is longer than 15 bytes")
    } else if uplink.contains('\0') {
        Some("contains a NUL byte")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(NatError::InvalidRule {
            uplink: uplink.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

// --- nf_tables netlink: constants from <linux/netfilter/nfnetlink.h> and nf_tables.h ---

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNETLINK_V0: u8 = 0;
const AF_UNSPEC: u8 = 0;
const NFPROTO_IPV4: u8 = 2;

const NFT_MSG_NEWTABLE: u8 = 0;
const NFT_MSG_DELTABLE: u8 = 2;
const NFT_MSG_NEWCHAIN: u8 = 3;
const NFT_MSG_NEWRULE: u8 = 6;

const NFTA_TABLE_NAME: u16 = 1;

const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_INET_POST_ROUTING: u32 = 4;
/// `srcnat`.
const NF_IP_PRI_NAT_SRC: i32 = 100;
/// `dstnat`.
const NF_IP_PRI_NAT_DST: i32 = -100;
const NF_ACCEPT: u32 = 1;

const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;

const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;

const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;

const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_L4PROTO: u32 = 16;

const NFTA_FIB_DREG: u16 = 1;
const NFTA_FIB_RESULT: u16 = 2;
const NFTA_FIB_FLAGS: u16 = 3;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
/// `RTN_LOCAL`: the address is one of this namespace's.
const RTN_LOCAL: u32 = 2;

const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;

const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFTA_NAT_REG_ADDR_MAX: u16 = 4;
const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
const NFTA_NAT_REG_PROTO_MAX: u16 = 6;
const NFTA_NAT_FLAGS: u16 = 7;
const NFT_NAT_DNAT: u32 = 1;
const NF_NAT_RANGE_MAP_IPS: u32 = 1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;

/// The first two 16-byte data registers.
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
const IFNAMSIZ: usize = 16;
/// Offsets of the source and destination addresses in the IPv4 header.
const IPV4_SADDR_OFFSET: u32 = 12;
const IPV4_DADDR_OFFSET: u32 = 16;
/// Offset of the destination port in the TCP and UDP headers.
const DPORT_OFFSET: u32 = 2;

fn table_attrs() -> Vec<Attr> {
    vec![Attr::string(NFTA_TABLE_NAME, TABLE)]
}

/// `type nat hook HOOK priority PRIORITY; policy accept;`
fn chain_attrs(name: &str, hook: u32, priority: i32) -> Vec<Attr> {
    vec![
        Attr::string(NFTA_CHAIN_TABLE, TABLE),
        Attr::string(NFTA_CHAIN_NAME, name),
        Attr::Nested(
            NFTA_CHAIN_HOOK,
            vec![
                Attr::be32(NFTA_HOOK_HOOKNUM, hook),
                Attr::be32(NFTA_HOOK_PRIORITY, priority as u32),
            ],
        ),
        Attr::be32(NFTA_CHAIN_POLICY, NF_ACCEPT),
        Attr::string(NFTA_CHAIN_TYPE, "nat"),
    ]
}

fn rule_attrs(chain: &str, exprs: Vec<Attr>) -> Vec<Attr> {
    vec![
        Attr::string(NFTA_RULE_TABLE, TABLE),
        Attr::string(NFTA_RULE_CHAIN, chain),
        Attr::Nested(NFTA_RULE_EXPRESSIONS, exprs),
    ]
}

/// `ip saddr SUBNET oifname != "UPLINK" masquerade`, as the same expressions `nft`
/// compiles it to.
fn masquerade_exprs(rule: &Masquerade) -> Vec<Attr> {
    let mut exprs = saddr_match(rule.subnet);
    exprs.extend(interface(NFT_META_OIFNAME, NFT_CMP_NEQ, &rule.uplink));
    exprs.push(Attr::expr("masq", Vec::new()));
    exprs
}

/// `iifname "UPLINK" oifname "UPLINK" masquerade`.
fn hairpin_exprs(uplink: &str) -> Vec<Attr> {
    let mut exprs = interface(NFT_META_IIFNAME, NFT_CMP_EQ, uplink);
    exprs.extend(interface(NFT_META_OIFNAME, NFT_CMP_EQ, uplink));
    exprs.push(Attr::expr("masq", Vec::new()));
    exprs
}

/// `ip saddr 127.0.0.0/8 oifname "UPLINK" masquerade`.
fn localhost_exprs(uplink: &str) -> Vec<Attr> {
    let loopback = Ipv4Net::new(std::net::Ipv4Addr::new(127, 0, 0, 0), 8).expect("/8");
    let mut exprs = saddr_match(loopback);
    exprs.extend(interface(NFT_META_OIFNAME, NFT_CMP_EQ, uplink));
    exprs.push(Attr::expr("masq", Vec::new()));
    exprs
}

/// `meta iifname|oifname ==|!= "NAME"`: interface names compare as all IFNAMSIZ bytes,
/// NUL-padded, an exact match.
fn interface(key: u32, op: u32, name: &str) -> Vec<Attr> {
    let mut padded = [0u8; IFNAMSIZ];
    padded[..name.len()].copy_from_slice(name.as_bytes());
    vec![meta(key), cmp(op, &padded)]
}

fn meta(key: u32) -> Attr {
    Attr::expr(
        "meta",
        vec![
            Attr::be32(NFTA_META_KEY, key),
            Attr::be32(NFTA_META_DREG, NFT_REG_1),
        ],
    )
}

fn payload(base: u32, offset: u32, len: u32) -> Attr {
    Attr::expr(
        "payload",
        vec![
            Attr::be32(NFTA_PAYLOAD_DREG, NFT_REG_1),
            Attr::be32(NFTA_PAYLOAD_BASE, base),
            Attr::be32(NFTA_PAYLOAD_OFFSET, offset),
            Attr::be32(NFTA_PAYLOAD_LEN, len),
        ],
    )
}

fn immediate(register: u32, value: &[u8]) -> Attr {
    Attr::expr(
        "immediate",
        vec![
            Attr::be32(NFTA_IMMEDIATE_DREG, register),
            Attr::data(NFTA_IMMEDIATE_DATA, value),
        ],
    )
}

/// `ip daddr HOST_IP` or `fib daddr type local`, then `PROTO dport HOST_PORT dnat to
/// TARGET:TARGET_PORT`, as `nft` compiles it.
fn forward_exprs(forward: &PortForward) -> Vec<Attr> {
    let mut exprs = match forward.host_ip {
        Some(ip) => vec![
            payload(NFT_PAYLOAD_NETWORK_HEADER, IPV4_DADDR_OFFSET, 4),
            cmp(NFT_CMP_EQ, &ip.octets()),
        ],
        None => vec![
            Attr::expr(
                "fib",
                vec![
                    Attr::be32(NFTA_FIB_DREG, NFT_REG_1),
                    Attr::be32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE),
                    Attr::be32(NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR),
                ],
            ),
            // The address type is a host-order u32 in the register.
            cmp(NFT_CMP_EQ, &RTN_LOCAL.to_ne_bytes()),
        ],
    };
    exprs.push(meta(NFT_META_L4PROTO));
    exprs.push(cmp(NFT_CMP_EQ, &[forward.protocol.number()]));
    exprs.push(payload(NFT_PAYLOAD_TRANSPORT_HEADER, DPORT_OFFSET, 2));
    exprs.push(cmp(NFT_CMP_EQ, &forward.host_port.to_be_bytes()));
    exprs.push(immediate(NFT_REG_1, &forward.target.octets()));
    exprs.push(immediate(NFT_REG_2, &forward.target_port.to_be_bytes()));
    exprs.push(Attr::expr(
        "nat",
        vec![
            Attr::be32(NFTA_NAT_TYPE, NFT_NAT_DNAT),
            Attr::be32(NFTA_NAT_FAMILY, u32::from(NFPROTO_IPV4)),
            Attr::be32(NFTA_NAT_REG_ADDR_MIN, NFT_REG_1),
            Attr::be32(NFTA_NAT_REG_ADDR_MAX, NFT_REG_1),
            Attr::be32(NFTA_NAT_REG_PROTO_MIN, NFT_REG_2),
            Attr::be32(NFTA_NAT_REG_PROTO_MAX, NFT_REG_2),
            Attr::be32(
                NFTA_NAT_FLAGS,
                NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED,
            ),
        ],
    ));
    exprs
}

/// `ip saddr SUBNET`: load the whole bytes of the prefix and compare; a prefix that ends
/// inside a byte loads the address and masks it first. `/0` matches everything and
/// needs no expression.
fn saddr_match(subnet: Ipv4Net) -> Vec<Attr> {
    let prefix = usize::from(subnet.prefix_len());
    let network = subnet.network().octets();
    if prefix == 0 {
        return Vec::new();
    }
    let load = |len: usize| payload(NFT_PAYLOAD_NETWORK_HEADER, IPV4_SADDR_OFFSET, len as u32);
    if prefix % 8 == 0 {
        let len = prefix / 8;
        return vec![load(len), cmp(NFT_CMP_EQ, &network[..len])];
    }
    let mask = subnet.netmask().octets();
    vec![
        load(4),
        Attr::expr(
            "bitwise",
            vec![
                Attr::be32(NFTA_BITWISE_SREG, NFT_REG_1),
                Attr::be32(NFTA_BITWISE_DREG, NFT_REG_1),
                Attr::be32(NFTA_BITWISE_LEN, 4),
                Attr::data(NFTA_BITWISE_MASK, &mask),
                Attr::data(NFTA_BITWISE_XOR, &[0; 4]),
            ],
        ),
        cmp(NFT_CMP_EQ, &network),
    ]
}

fn cmp(op: u32, value: &[u8]) -> Attr {
    Attr::expr(
        "cmp",
        vec![
            Attr::be32(NFTA_CMP_SREG, NFT_REG_1),
            Attr::be32(NFTA_CMP_OP, op),
            Attr::data(NFTA_CMP_DATA, value),
        ],
    )
}

/// A netlink attribute: bytes, or more attributes (sent with `NLA_F_NESTED`).
#[derive(Clone, Debug)]
enum Attr {
    Bytes(u16, Vec<u8>),
    Nested(u16, Vec<Attr>),
}

impl Attr {
    /// A NUL-terminated string, as nf_tables expects names.
    fn string(kind: u16, value: &str) -> Attr {
        let mut bytes = Vec::with_capacity(value.len() + 1);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
        Attr::Bytes(kind, bytes)
    }

    /// nf_tables integers are big-endian.
    fn be32(kind: u16, value: u32) -> Attr {
        Attr::Bytes(kind, value.to_be_bytes().to_vec())
    }

    /// An `nft_data_attributes` value.
    fn data(kind: u16, value: &[u8]) -> Attr {
        Attr::Nested(kind, vec![Attr::Bytes(NFTA_DATA_VALUE, value.to_vec())])
    }

    /// One element of a rule's expression list.
    fn expr(name: &str, data: Vec<Attr>) -> Attr {
        Attr::Nested(
            NFTA_LIST_ELEM,
            vec![
                Attr::string(NFTA_EXPR_NAME, name),
                Attr::Nested(NFTA_EXPR_DATA, data),
            ],
        )
    }
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self {
            Attr::Bytes(_, bytes) => bytes.len(),
            Attr::Nested(_, attrs) => attrs.as_slice().buffer_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Attr::Bytes(kind, _) => *kind,
            Attr::Nested(kind, _) => *kind | NLA_F_NESTED,
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Attr::Bytes(_, bytes) => buffer[..bytes.len()].copy_from_slice(bytes),
            Attr::Nested(_, attrs) => attrs.as_slice().emit(buffer),
        }
    }
}

/// One nfnetlink message: `struct nfgenmsg`, then attributes.
#[derive(Clone, Debug)]
struct NfMessage {
    message_type: u16,
    family: u8,
    res_id: u16,
    attrs: Vec<Attr>,
}

impl NfMessage {
    fn nftables(kind: u8, attrs: Vec<Attr>) -> NfMessage {
        NfMessage {
            message_type: (NFNL_SUBSYS_NFTABLES << 8) | u16::from(kind),
            family: NFPROTO_IPV4,
            res_id: 0,
            attrs,
        }
    }

    /// `NFNL_MSG_BATCH_BEGIN` or `_END`, addressed to nf_tables.
    fn batch(message_type: u16) -> NfMessage {
        NfMessage {
            message_type,
            family: AF_UNSPEC,
            res_id: NFNL_SUBSYS_NFTABLES,
            attrs: Vec::new(),
        }
    }
}

impl NetlinkSerializable for NfMessage {
    fn message_type(&self) -> u16 {
        self.message_type
    }

    fn buffer_len(&self) -> usize {
        4 + self.attrs.as_slice().buffer_len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        buffer[0] = self.family;
        buffer[1] = NFNETLINK_V0;
        buffer[2..4].copy_from_slice(&self.res_id.to_be_bytes());
        self.attrs.as_slice().emit(&mut buffer[4..]);
    }
}

/// Anything the kernel answers besides errors and acknowledgements, kept raw (only the
/// tests' dumps read it).
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
struct Reply {
    message_type: u16,
    payload: Vec<u8>,
}

impl NetlinkDeserializable for Reply {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Reply, DecodeError> {
        Ok(Reply {
            message_type: header.message_type,
            payload: payload.to_vec(),
        })
    }
}

/// Which kind of object a message creates or deletes, for telling a missing kernel
/// feature from another failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Batch,
    Table,
    Chain,
    Rule,
    Forward,
}

/// What a step needs from the kernel, for errors that say it is missing.
fn needs(step: Step) -> &'static str {
    match step {
        Step::Batch => "CONFIG_NF_TABLES, module nf_tables",
        Step::Table => "CONFIG_NF_TABLES_IPV4",
        Step::Chain => "CONFIG_NFT_NAT, module nft_chain_nat",
        Step::Rule => "CONFIG_NFT_MASQ, module nft_masq",
        Step::Forward => "CONFIG_NFT_NAT and CONFIG_NFT_FIB_IPV4, modules nft_nat and nft_fib_ipv4",
    }
}

/// The messages of one nfnetlink batch, each with what it does for error messages.
#[derive(Default)]
struct Batch {
    messages: Vec<(Step, String, u8, u16, Vec<Attr>)>,
}

impl Batch {
    fn push(&mut self, step: Step, what: String, kind: u8, flags: u16, attrs: Vec<Attr>) {
        self.messages.push((step, what, kind, flags, attrs));
    }

    /// Sends the batch in one datagram and waits for the kernel's answer to each message.
    fn commit(self) -> Result<(), NatError> {
        let what_batch = format!("replacing nftables table ip {TABLE}");
        // Sequence numbers: 1 for BATCH_BEGIN, 2.. for the messages, then BATCH_END.
        let mut bytes = encode(NfMessage::batch(NFNL_MSG_BATCH_BEGIN), NLM_F_REQUEST, 1);
        let mut steps = Vec::with_capacity(self.messages.len());
        for (index, (step, what, kind, flags, attrs)) in self.messages.into_iter().enumerate() {
            let message = NfMessage::nftables(kind, attrs);
            bytes.extend(encode(
                message,
                NLM_F_REQUEST | NLM_F_ACK | flags,
                index as u32 + 2,
            ));
            steps.push((step, what));
        }
        let end = steps.len() as u32 + 2;
        bytes.extend(encode(
            NfMessage::batch(NFNL_MSG_BATCH_END),
            NLM_F_REQUEST,
            end,
        ));

        let socket = open_socket(&what_batch)?;
        let io_err = |source| NatError::Io {
            what: what_batch.clone(),
            source,
        };
        socket.send(&bytes, 0).map_err(io_err)?;

        // Every message asked for an acknowledgement, and the kernel answers each one
        // (acknowledgement or error) even after a failure, so wait for all of them. A
        // failure of the batch as a whole is answered once, to BATCH_BEGIN or _END.
        let mut answered = vec![false; steps.len()];
        let mut remaining = steps.len();
        let mut errors: Vec<(u32, Errno, Option<String>)> = Vec::new();
        while remaining > 0 {
            let (buf, _) = socket.recv_from_full().map_err(|err| {
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    io_err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no answer from the kernel within {} s",
                            ANSWER_TIMEOUT.as_secs()
                        ),
                    ))
                } else {
                    io_err(err)
                }
            })?;
            let mut whole_batch_failed = false;
            for frame in frames(&buf).map_err(|message| NatError::Decode {
                what: what_batch.clone(),
                message,
            })? {
                let parsed = NetlinkMessage::<Reply>::deserialize(frame).map_err(|err| {
                    NatError::Decode {
                        what: what_batch.clone(),
                        message: err.to_string(),
                    }
                })?;
                let sequence = parsed.header.sequence_number;
                let flags = parsed.header.flags;
                match parsed.payload {
                    NetlinkPayload::Error(error) => {
                        let index = sequence.checked_sub(2).map(|i| i as usize);
                        match index.filter(|&i| i < steps.len()) {
                            Some(i) if !answered[i] => {
                                answered[i] = true;
                                remaining -= 1;
                            }
                            Some(_) => {}
                            None => whole_batch_failed |= error.code.is_some(),
                        }
                        if let Some(code) = error.code {
                            errors.push((
                                sequence,
                                Errno::from_raw(code.get().abs()),
                                extack_message(flags, &error.header),
                            ));
                        }
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(io_err(io::Error::other("netlink buffer overrun")))
                    }
                    _ => {}
                }
            }
            if whole_batch_failed {
                break;
            }
        }

        // The first failure is the cause; later ones usually follow from it.
        let Some((sequence, errno, detail)) = errors.into_iter().min_by_key(|e| e.0) else {
            return Ok(());
        };
        let (step, what) = match sequence.checked_sub(2).map(|i| i as usize) {
            Some(i) if i < steps.len() => steps.swap_remove(i),
            _ => (Step::Batch, what_batch),
        };
        Err(classify(step, what, errno, detail))
    }
}

/// Turns the kernel's errno for `step` into an error that says what to do.
fn classify(step: Step, what: String, errno: Errno, detail: Option<String>) -> NatError {
    let unavailable = match errno {
        Errno::EPERM | Errno::EACCES => {
            return NatError::PermissionDenied { what, errno };
        }
        // No nfnetlink subsystem or family: nf_tables or its IPv4 family is missing.
        Errno::EOPNOTSUPP | Errno::EPROTONOSUPPORT | Errno::EAFNOSUPPORT => true,
        // No chain type "nat" or no expression "masq"/"meta"/"payload"... (the kernel
        // tried to load the module). Table and chain come earlier in the same batch, so
        // a missing table or chain would have failed first.
        Errno::ENOENT => matches!(step, Step::Chain | Step::Rule | Step::Forward),
        _ => false,
    };
    if unavailable {
        NatError::Unavailable {
            what,
            needs: needs(step),
            errno,
            detail,
        }
    } else {
        NatError::Kernel {
            what,
            errno,
            detail,
        }
    }
}

/// A `NETLINK_NETFILTER` socket in the calling thread's network namespace.
fn open_socket(what: &str) -> Result<Socket, NatError> {
    let err = |source: io::Error| {
        if source.raw_os_error() == Some(libc::EPROTONOSUPPORT) {
            NatError::Unavailable {
                what: format!("{what}: opening a netfilter netlink socket"),
                needs: "CONFIG_NETFILTER_NETLINK, module nfnetlink",
                errno: Errno::EPROTONOSUPPORT,
                detail: None,
            }
        } else {
            NatError::Io {
                what: format!("{what}: opening a netfilter netlink socket"),
                source,
            }
        }
    };
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(err)?;
    socket.bind_auto().map_err(err)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(err)?;
    // Best effort: the kernel's own words in errors, without the request echoed back.
    let _ = socket.set_ext_ack(true);
    let _ = socket.set_cap_ack(true);
    let timeout = TimeVal::new(ANSWER_TIMEOUT.as_secs() as _, 0);
    setsockopt(&socket, sockopt::ReceiveTimeout, &timeout).map_err(|e| err(e.into()))?;
    Ok(socket)
}

/// Serialises `message` as one netlink message with `flags` and `sequence`.
fn encode(message: NfMessage, flags: u16, sequence: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = sequence;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    packet.finalize();
    let mut bytes = vec![0; packet.buffer_len()];
    packet.serialize(&mut bytes);
    bytes
}

/// The netlink messages in one datagram.
fn frames(buf: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut frames = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        let frame = &buf[offset..];
        let header = NetlinkBuffer::new_checked(frame).map_err(|err| err.to_string())?;
        let length = header.length() as usize;
        frames.push(&frame[..length]);
        offset += align4(length.max(1));
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::process::Command;

    use netlink_packet_core::{NLA_TYPE_MASK, NLM_F_DUMP};
    use nix::sched::{setns, unshare, CloneFlags};

    use super::*;
    use switchyard::portmap::Protocol;

    const NFT_MSG_GETTABLE: u8 = 1;
    const NFT_MSG_GETCHAIN: u8 = 4;
    const NFT_MSG_GETRULE: u8 = 7;

    fn masquerade(subnet: &str, uplink: &str) -> Masquerade {
        Masquerade {
            subnet: subnet.parse().unwrap(),
            uplink: uplink.to_string(),
        }
    }

    /// A table of masquerade rules only.
    fn table(rules: &[Masquerade]) -> NatRules {
        NatRules {
            masquerade: rules.to_vec(),
            forwards: Vec::new(),
            uplink: "sy-uplink".to_string(),
        }
    }

    fn forward(
        host_ip: Option<&str>,
        host_port: u16,
        target: &str,
        target_port: u16,
    ) -> PortForward {
        PortForward {
            protocol: Protocol::Tcp,
            host_ip: host_ip.map(|ip| ip.parse().unwrap()),
            host_port,
            target: target.parse().unwrap(),
            target_port,
        }
    }

    #[test]
    fn constants_match_the_kernel_headers() {
        assert_eq!(NFNL_MSG_BATCH_BEGIN as i32, libc::NFNL_MSG_BATCH_BEGIN);
        assert_eq!(NFNL_MSG_BATCH_END as i32, libc::NFNL_MSG_BATCH_END);
        assert_eq!(NFNL_SUBSYS_NFTABLES as i32, libc::NFNL_SUBSYS_NFTABLES);
        assert_eq!(NFPROTO_IPV4 as i32, libc::NFPROTO_IPV4);
        assert_eq!(NFT_MSG_NEWTABLE as i32, libc::NFT_MSG_NEWTABLE);
        assert_eq!(NFT_MSG_DELTABLE as i32, libc::NFT_MSG_DELTABLE);
        assert_eq!(NFT_MSG_NEWCHAIN as i32, libc::NFT_MSG_NEWCHAIN);
        assert_eq!(NFT_MSG_NEWRULE as i32, libc::NFT_MSG_NEWRULE);
        assert_eq!(NFT_MSG_GETTABLE as i32, libc::NFT_MSG_GETTABLE);
        assert_eq!(NFT_MSG_GETCHAIN as i32, libc::NFT_MSG_GETCHAIN);
        assert_eq!(NFT_MSG_GETRULE as i32, libc::NFT_MSG_GETRULE);
        assert_eq!(NF_INET_POST_ROUTING as i32, libc::NF_INET_POST_ROUTING);
        assert_eq!(NF_INET_PRE_ROUTING as i32, libc::NF_INET_PRE_ROUTING);
        assert_eq!(NF_INET_LOCAL_OUT as i32, libc::NF_INET_LOCAL_OUT);
        assert_eq!(NF_IP_PRI_NAT_DST, libc::NF_IP_PRI_NAT_DST);
        assert_eq!(NFT_META_IIFNAME as i32, libc::NFT_META_IIFNAME);
        assert_eq!(NFT_META_L4PROTO as i32, libc::NFT_META_L4PROTO);
        assert_eq!(NFT_NAT_DNAT as i32, libc::NFT_NAT_DNAT);
        assert_eq!(
            NFT_PAYLOAD_TRANSPORT_HEADER as i32,
            libc::NFT_PAYLOAD_TRANSPORT_HEADER
        );
        assert_eq!(NFT_REG_2 as i32, libc::NFT_REG_2);
        assert_eq!(RTN_LOCAL as u8, libc::RTN_LOCAL);
        assert_eq!(NF_IP_PRI_NAT_SRC, libc::NF_IP_PRI_NAT_SRC);
        assert_eq!(NF_ACCEPT as i32, libc::NF_ACCEPT);
        assert_eq!(NFT_REG_1 as i32, libc::NFT_REG_1);
        assert_eq!(NFT_CMP_EQ as i32, libc::NFT_CMP_EQ);
        assert_eq!(NFT_CMP_NEQ as i32, libc::NFT_CMP_NEQ);
        assert_eq!(NFT_META_OIFNAME as i32, libc::NFT_META_OIFNAME);
        assert_eq!(
            NFT_PAYLOAD_NETWORK_HEADER as i32,
            libc::NFT_PAYLOAD_NETWORK_HEADER
        );
        assert_eq!(IFNAMSIZ, libc::IFNAMSIZ);
    }

    #[test]
    fn rules_display_in_nft_syntax() {
        assert_eq!(
            masquerade("10.10.0.7/24", "sy-uplink").to_string(),
            r#"ip saddr 10.10.0.0/24 oifname != "sy-uplink" masquerade"#
        );
        assert_eq!(
            masquerade("0.0.0.0/0", "up").to_string(),
            r#"oifname != "up" masquerade"#
        );
    }

    #[test]
    fn invalid_uplink_names_are_refused_before_anything_is_sent() {
        for uplink in ["", "sixteen-bytes-xx", "a\0b"] {
            let err = apply(&table(&[masquerade("10.10.0.0/24", uplink)])).unwrap_err();
            assert!(matches!(err, NatError::InvalidRule { .. }), "{err}");
            let published = NatRules {
                forwards: vec![forward(None, 8080, "10.10.0.2", 80)],
                uplink: uplink.to_string(),
                ..NatRules::default()
            };
            let err = apply(&published).unwrap_err();
            assert!(matches!(err, NatError::InvalidRule { .. }), "{err}");
        }
        let err = apply(&table(&[masquerade("10.10.0.0/24", "")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid NAT rules: uplink interface name "" is empty"#
        );
    }

    #[test]
    fn rules_compile_to_what_nft_compiles_them_to() {
        // `nft --debug=netlink` for the same rules (with hex data written as bytes).
        let uplink = "cmp neq reg 1 0x73792d75706c696e6b00000000000000";
        let cases = [
            (
                "10.10.0.0/24",
                vec![
                    "payload load 3b @ network header + 12 => reg 1",
                    "cmp eq reg 1 0x0a0a00",
                ],
            ),
            (
                "10.30.0.0/23",
                vec![
                    "payload load 4b @ network header + 12 => reg 1",
                    "bitwise reg 1 = ( reg 1 & 0xfffffe00 ) ^ 0x00000000",
                    "cmp eq reg 1 0x0a1e0000",
                ],
            ),
            (
                "192.168.1.9/32",
                vec![
                    "payload load 4b @ network header + 12 => reg 1",
                    "cmp eq reg 1 0xc0a80109",
                ],
            ),
            ("0.0.0.0/0", vec![]),
        ];
        for (subnet, mut expected) in cases {
            expected.extend(["meta load oifname => reg 1", uplink, "masq"]);
            let rule = masquerade(subnet, "sy-uplink");
            let described = describe(masquerade_exprs(&rule));
            assert_eq!(described, expected, "{rule}");
        }
    }

    /// A rule's expressions as [`describe_rule`] reads them back from its message.
    fn describe(exprs: Vec<Attr>) -> Vec<String> {
        let bytes = encode(
            NfMessage::nftables(NFT_MSG_NEWRULE, rule_attrs(CHAIN, exprs)),
            0,
            1,
        );
        describe_rule(&bytes[16 + 4..])
    }

    #[test]
    fn published_port_rules_compile_to_what_nft_compiles_them_to() {
        // `nft --debug=netlink` for `fib daddr type local tcp dport 8080 dnat to
        // 10.1.0.2:80` and the rest, with register data written as bytes in memory order
        // (nft prints host-order words: `0x00000002` for the address type is 02000000
        // on a little-endian machine).
        let rtn_local = hex(&RTN_LOCAL.to_ne_bytes());
        let dnat = [
            "meta load l4proto => reg 1",
            "cmp eq reg 1 0x06",
            "payload load 2b @ transport header + 2 => reg 1",
            "cmp eq reg 1 0x1f90",
            "immediate reg 1 0x0a010002",
            "immediate reg 2 0x0050",
            "nat dnat ip addr_min reg 1 addr_max reg 1 proto_min reg 2 proto_max reg 2 flags 0x3",
        ];
        let mut any = vec![
            "fib daddr type => reg 1".to_string(),
            format!("cmp eq reg 1 0x{rtn_local}"),
        ];
        any.extend(dnat.map(String::from));
        assert_eq!(
            describe(forward_exprs(&forward(None, 8080, "10.1.0.2", 80))),
            any
        );
        let mut one = vec![
            "payload load 4b @ network header + 16 => reg 1".to_string(),
            "cmp eq reg 1 0x01020304".to_string(),
        ];
        one.extend(dnat.map(String::from));
        assert_eq!(
            describe(forward_exprs(&forward(
                Some("1.2.3.4"),
                8080,
                "10.1.0.2",
                80
            ))),
            one
        );
        let udp = PortForward {
            protocol: Protocol::Udp,
            ..forward(None, 53, "10.1.0.2", 5353)
        };
        let described = describe(forward_exprs(&udp));
        assert_eq!(described[3], "cmp eq reg 1 0x11");
        assert_eq!(described[7], "immediate reg 2 0x14e9");
        let name = "cmp eq reg 1 0x61000000000000000000000000000000";
        assert_eq!(
            describe(hairpin_exprs("a")),
            [
                "meta load iifname => reg 1",
                name,
                "meta load oifname => reg 1",
                name,
                "masq"
            ]
        );
        assert_eq!(
            describe(localhost_exprs("a")),
            [
                "payload load 1b @ network header + 12 => reg 1",
                "cmp eq reg 1 0x7f",
                "meta load oifname => reg 1",
                name,
                "masq"
            ]
        );
        assert_eq!(
            forward(None, 8080, "10.1.0.2", 80).to_string(),
            "fib daddr type local tcp dport 8080 dnat to 10.1.0.2:80"
        );
    }

    #[test]
    fn batches_are_framed_as_nfnetlink_expects() {
        let bytes = encode(NfMessage::batch(NFNL_MSG_BATCH_BEGIN), NLM_F_REQUEST, 7);
        assert_eq!(
            bytes,
            [
                20, 0, 0, 0, // length
                0x10, 0, // NFNL_MSG_BATCH_BEGIN
                1, 0, // NLM_F_REQUEST
                7, 0, 0, 0, // sequence
                0, 0, 0, 0, // port
                0, 0, 0,
                10, // AF_UNSPEC, NFNETLINK_V0, res_id NFNL_SUBSYS_NFTABLES (big-endian)
            ]
        );
        let table = encode(
            NfMessage::nftables(NFT_MSG_NEWTABLE, table_attrs()),
            NLM_F_REQUEST,
            1,
        );
        assert_eq!(&table[4..6], &[0x00, 0x0a]); // (NFNL_SUBSYS_NFTABLES << 8) | NEWTABLE
        assert_eq!(&table[16..20], &[NFPROTO_IPV4, 0, 0, 0]);
        assert_eq!(&table[20..], b"\x0f\x00\x01\x00switchyard\x00\x00");
    }

    #[test]
    fn errors_say_what_is_missing() {
        let err = classify(Step::Rule, "adding the rule".into(), Errno::ENOENT, None);
        assert!(
            err.to_string().starts_with(
                "nftables is not available in this kernel (CONFIG_NFT_MASQ, module nft_masq): \
                 adding the rule failed: "
            ),
            "{err}"
        );
        let err = classify(Step::Table, "deleting".into(), Errno::EPERM, None);
        assert!(err.to_string().contains("CAP_NET_ADMIN"), "{err}");
        let err = classify(Step::Table, "deleting".into(), Errno::EBUSY, None);
        assert!(matches!(err, NatError::Kernel { .. }), "{err}");
    }

    // --- Root: the real kernel, in namespaces of our own. ---

    fn is_root() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        eprintln!("skipped: needs root (creates network namespaces and nftables tables)");
        false
    }

    /// Runs `f` on a new thread in a new, empty network namespace, which goes away with
    /// the thread.
    fn in_fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Runs `f` on a new thread inside the named namespace (`/run/netns/NAME`).
    fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let file = File::open(format!("/run/netns/{name}")).expect("open the namespace");
        std::thread::spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// What the kernel holds, read back over netlink: tables of every family, and the
    /// chains and rules of switchd's table.
    #[derive(Debug, PartialEq)]
    struct Ruleset {
        tables: Vec<String>,
        chains: Vec<String>,
        rules: Vec<Vec<String>>,
    }

    fn read_back() -> Ruleset {
        let tables = dump(NFT_MSG_GETTABLE, 0)
            .iter()
            .map(|reply| {
                let family = match reply.payload[0] {
                    NFPROTO_IPV4 => "ip".to_string(),
                    other => format!("family{other}"),
                };
                let name = string_attr(&reply.payload[4..], NFTA_TABLE_NAME).unwrap();
                format!("{family} {name}")
            })
            .collect();
        let ours = |attrs: &[u8], kind| string_attr(attrs, kind).as_deref() == Some(TABLE);
        let chains = dump(NFT_MSG_GETCHAIN, NFPROTO_IPV4)
            .iter()
            .filter(|reply| ours(&reply.payload[4..], NFTA_CHAIN_TABLE))
            .map(|reply| describe_chain(&reply.payload[4..]))
            .collect();
        let rules = dump(NFT_MSG_GETRULE, NFPROTO_IPV4)
            .iter()
            .filter(|reply| ours(&reply.payload[4..], NFTA_RULE_TABLE))
            .map(|reply| describe_rule(&reply.payload[4..]))
            .collect();
        Ruleset {
            tables,
            chains,
            rules,
        }
    }

    /// Dumps every object of one kind (`NFT_MSG_GET*` with `NLM_F_DUMP`).
    fn dump(kind: u8, family: u8) -> Vec<Reply> {
        let socket = open_socket("dumping").unwrap();
        let mut message = NfMessage::nftables(kind, Vec::new());
        message.family = family;
        socket
            .send(&encode(message, NLM_F_REQUEST | NLM_F_DUMP, 1), 0)
            .unwrap();
        let mut replies = Vec::new();
        loop {
            let (buf, _) = socket.recv_from_full().unwrap();
            for frame in frames(&buf).unwrap() {
                match NetlinkMessage::<Reply>::deserialize(frame).unwrap().payload {
                    NetlinkPayload::InnerMessage(reply) => {
                        assert_eq!(reply.message_type & 0xff, u16::from(kind) - 1);
                        replies.push(reply);
                    }
                    NetlinkPayload::Done(_) => return replies,
                    NetlinkPayload::Error(error) if error.code.is_some() => {
                        panic!("dump failed: {error}")
                    }
                    _ => {}
                }
            }
        }
    }

    fn attrs(mut bytes: &[u8]) -> Vec<(u16, &[u8])> {
        let mut attrs = Vec::new();
        while !bytes.is_empty() {
            let length = usize::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
            let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & NLA_TYPE_MASK;
            assert!(length >= 4 && length <= bytes.len(), "bad attribute");
            attrs.push((kind, &bytes[4..length]));
            bytes = &bytes[align4(length).min(bytes.len())..];
        }
        attrs
    }

    fn attr(bytes: &[u8], kind: u16) -> Option<&[u8]> {
        attrs(bytes)
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v)
    }

    fn string_attr(bytes: &[u8], kind: u16) -> Option<String> {
        attr(bytes, kind).map(|v| {
            String::from_utf8_lossy(v)
                .trim_end_matches('\0')
                .to_string()
        })
    }

    fn be32_attr(bytes: &[u8], kind: u16) -> Option<u32> {
        attr(bytes, kind).map(|v| u32::from_be_bytes(v.try_into().unwrap()))
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn data_attr(bytes: &[u8], kind: u16) -> String {
        hex(attr(attr(bytes, kind).unwrap(), NFTA_DATA_VALUE).unwrap())
    }

    fn describe_chain(bytes: &[u8]) -> String {
        let hook = attr(bytes, NFTA_CHAIN_HOOK).unwrap();
        format!(
            "{} type {} hook {} priority {} policy {}",
            string_attr(bytes, NFTA_CHAIN_NAME).unwrap(),
            string_attr(bytes, NFTA_CHAIN_TYPE).unwrap(),
            be32_attr(hook, NFTA_HOOK_HOOKNUM).unwrap(),
            be32_attr(hook, NFTA_HOOK_PRIORITY).unwrap() as i32,
            be32_attr(bytes, NFTA_CHAIN_POLICY).unwrap(),
        )
    }

    /// A rule's expressions in the words of `nft --debug=netlink` (data as bytes).
    fn describe_rule(bytes: &[u8]) -> Vec<String> {
        let exprs = attr(bytes, NFTA_RULE_EXPRESSIONS).unwrap();
        attrs(exprs)
            .into_iter()
            .map(|(kind, elem)| {
                assert_eq!(kind, NFTA_LIST_ELEM);
                let name = string_attr(elem, NFTA_EXPR_NAME).unwrap();
                let data = attr(elem, NFTA_EXPR_DATA).unwrap_or_default();
                let u = |kind| be32_attr(data, kind).unwrap();
                match name.as_str() {
                    "payload" => format!(
                        "payload load {}b @ {} header + {} => reg {}",
                        u(NFTA_PAYLOAD_LEN),
                        ["link", "network", "transport"][u(NFTA_PAYLOAD_BASE) as usize],
                        u(NFTA_PAYLOAD_OFFSET),
                        u(NFTA_PAYLOAD_DREG)
                    ),
                    "bitwise" => format!(
                        "bitwise reg {} = ( reg {} & 0x{} ) ^ 0x{}",
                        u(NFTA_BITWISE_DREG),
                        u(NFTA_BITWISE_SREG),
                        data_attr(data, NFTA_BITWISE_MASK),
                        data_attr(data, NFTA_BITWISE_XOR)
                    ),
                    "cmp" => format!(
                        "cmp {} reg {} 0x{}",
                        ["eq", "neq"][u(NFTA_CMP_OP) as usize],
                        u(NFTA_CMP_SREG),
                        data_attr(data, NFTA_CMP_DATA)
                    ),
                    "meta" => {
                        let key = match u(NFTA_META_KEY) {
                            NFT_META_IIFNAME => "iifname",
                            NFT_META_OIFNAME => "oifname",
                            NFT_META_L4PROTO => "l4proto",
                            other => panic!("unexpected meta key {other}"),
                        };
                        format!("meta load {key} => reg {}", u(NFTA_META_DREG))
                    }
                    "fib" => {
                        assert_eq!(u(NFTA_FIB_RESULT), NFT_FIB_RESULT_ADDRTYPE);
                        assert_eq!(u(NFTA_FIB_FLAGS), NFTA_FIB_F_DADDR);
                        format!("fib daddr type => reg {}", u(NFTA_FIB_DREG))
                    }
                    "immediate" => format!(
                        "immediate reg {} 0x{}",
                        u(NFTA_IMMEDIATE_DREG),
                        data_attr(data, NFTA_IMMEDIATE_DATA)
                    ),
                    "nat" => {
                        assert_eq!(u(NFTA_NAT_TYPE), NFT_NAT_DNAT);
                        assert_eq!(u(NFTA_NAT_FAMILY), u32::from(NFPROTO_IPV4));
                        format!(
                            "nat dnat ip addr_min reg {} addr_max reg {} proto_min reg {} proto_max reg {} flags 0x{:x}",
                            u(NFTA_NAT_REG_ADDR_MIN),
                            u(NFTA_NAT_REG_ADDR_MAX),
                            u(NFTA_NAT_REG_PROTO_MIN),
                            u(NFTA_NAT_REG_PROTO_MAX),
                            u(NFTA_NAT_FLAGS)
                        )
                    }
                    "masq" => {
                        assert!(attrs(data).is_empty(), "masq with options");
                        "masq".to_string()
                    }
                    other => panic!("unexpected expression {other}"),
                }
            })
            .collect()
    }

    /// `nft list table ip switchyard`, when nft is installed (only to cross-check that
    /// nft reads our rules as the rules we meant), with whitespace normalised.
    fn nft_listing() -> Option<String> {
        let output = Command::new("nft")
            .args(["list", "table", "ip", TABLE])
            .output()
            .ok()?;
        assert!(
            output.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).unwrap();
        Some(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }

    fn expected_rule(subnet_bytes: &str) -> Vec<String> {
        [
            "payload load 3b @ network header + 12 => reg 1",
            &format!("cmp eq reg 1 0x{subnet_bytes}"),
            "meta load oifname => reg 1",
            "cmp neq reg 1 0x73792d75706c696e6b00000000000000",
            "masq",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn apply_replace_and_remove_in_a_fresh_namespace() {
        if !is_root() {
            return;
        }
        in_fresh_netns(|| {
            let empty = Ruleset {
                tables: vec![],
                chains: vec![],
                rules: vec![],
            };
            assert_eq!(read_back(), empty);
            // Removing what is not there is fine, twice.
            remove().unwrap();
            remove().unwrap();
            apply(&NatRules::default()).unwrap();
            assert_eq!(read_back(), empty);

            let two = [
                masquerade("10.10.0.0/24", "sy-uplink"),
                masquerade("10.30.0.0/24", "sy-uplink"),
            ];
            let chain = format!("{CHAIN} type nat hook 4 priority 100 policy 1");
            for _ in 0..2 {
                // Applying again replaces rather than adds.
                apply(&table(&two)).unwrap();
                assert_eq!(
                    read_back(),
                    Ruleset {
                        tables: vec![format!("ip {TABLE}")],
                        chains: vec![chain.clone()],
                        rules: vec![expected_rule("0a0a00"), expected_rule("0a1e00")],
                    }
                );
            }
            match nft_listing() {
                Some(listing) => assert_eq!(
                    listing,
                    "table ip switchyard {\n\
                     chain postrouting {\n\
                     type nat hook postrouting priority srcnat; policy accept;\n\
                     ip saddr 10.10.0.0/24 oifname != \"sy-uplink\" masquerade\n\
                     ip saddr 10.30.0.0/24 oifname != \"sy-uplink\" masquerade\n\
                     }\n\
                     }"
                ),
                None => eprintln!("nft is not installed: checked over netlink only"),
            }

            apply(&table(&two[1..])).unwrap();
            assert_eq!(
                read_back(),
                Ruleset {
                    tables: vec![format!("ip {TABLE}")],
                    chains: vec![chain],
                    rules: vec![expected_rule("0a1e00")],
                }
            );

            apply(&NatRules::default()).unwrap();
            assert_eq!(read_back(), empty);
            apply(&table(&two)).unwrap();
            remove().unwrap();
            assert_eq!(read_back(), empty);
            remove().unwrap();
            assert_eq!(read_back(), empty);
        });
    }

    /// Three namespaces of our own, deleted on drop (even when the test fails).
    struct Trio {
        names: Vec<String>,
    }

    impl Drop for Trio {
        fn drop(&mut self) {
            for name in &self.names {
                let _ = Command::new("ip").args(["netns", "delete", name]).status();
            }
        }
    }

    fn run(args: &[&str]) {
        let output = Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap_or_else(|err| panic!("cannot run {args:?}: {err}"));
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `ip -n NETNS ARGS...`, which must succeed.
    fn ip(netns: &str, args: &str) {
        let mut argv = vec!["ip", "-n", netns];
        argv.extend(args.split_whitespace());
        run(&argv);
    }

    /// One echo request from namespace `from` to `to`; answered within a second or not.
    fn ping(from: &str, to: &str) -> bool {
        Command::new("ip")
            .args(["netns", "exec", from, "ping", "-c", "1", "-W", "1", to])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Up to three tries, against a lost packet where one is expected through.
    fn reaches(from: &str, to: &str) -> bool {
        (0..3).any(|_| ping(from, to))
    }

    /// A (10.10.0.2) -> H (forwarding, switchd's rules) -> E (192.168.77.2, no route
    /// back to 10.10.0.0/24): A reaches E only when H masquerades A's subnet, and not
    /// when the way out is the rule's excluded uplink.
    #[test]
    fn masquerade_works_end_to_end() {
        if !is_root() {
            return;
        }
        for tool in ["ip", "ping"] {
            if Command::new(tool).arg("-V").output().is_err() {
                eprintln!("skipped: {tool} is not installed");
                return;
            }
        }
        let pid = std::process::id();
        let [a, h, e] = ["a", "h", "e"].map(|n| format!("nattest-{pid}-{n}"));
        let mut trio = Trio { names: Vec::new() };
        for name in [&a, &h, &e] {
            run(&["ip", "netns", "add", name]);
            trio.names.push(name.clone());
            ip(name, "link set lo up");
        }
        ip(
            &h,
            &format!("link add to-a type veth peer name eth0 netns {a}"),
        );
        ip(
            &h,
            &format!("link add to-e type veth peer name eth0 netns {e}"),
        );
        ip(&a, "addr add 10.10.0.2/24 dev eth0");
        ip(&a, "link set eth0 up");
        ip(&a, "route add default via 10.10.0.1");
        ip(&h, "addr add 10.10.0.1/24 dev to-a");
        ip(&h, "addr add 192.168.77.1/24 dev to-e");
        ip(&h, "link set to-a up");
        ip(&h, "link set to-e up");
        let forwarding = "echo 1 > /proc/sys/net/ipv4/ip_forward";
        run(&["ip", "netns", "exec", &h, "sh", "-c", forwarding]);
        ip(&e, "addr add 192.168.77.2/24 dev eth0");
        ip(&e, "link set eth0 up");
        assert!(
            reaches(&h, "10.10.0.2") && reaches(&h, "192.168.77.2"),
            "links are up"
        );

        assert!(!ping(&a, "192.168.77.2"), "E has no route back without NAT");
        in_netns(&h, || {
            apply(&table(&[masquerade("10.10.0.0/24", "sy-uplink")]))
        })
        .unwrap();
        assert!(reaches(&a, "192.168.77.2"), "masqueraded");
        in_netns(&h, || apply(&table(&[masquerade("10.10.0.0/24", "to-e")]))).unwrap();
        assert!(
            !ping(&a, "192.168.77.2"),
            "not masqueraded out of the uplink"
        );
        in_netns(&h, || {
            apply(&table(&[masquerade("10.20.0.0/24", "sy-uplink")]))
        })
        .unwrap();
        assert!(!ping(&a, "192.168.77.2"), "another subnet's rule");
        in_netns(&h, remove).unwrap();
        assert!(!ping(&a, "192.168.77.2"), "rules removed");
        drop(trio);
    }

    /// Accepts connections on `addr` inside namespace `netns` and answers each with the
    /// address it came from, until `count` have been served.
    fn echo_peer(netns: &str, addr: &str, count: usize) -> std::thread::JoinHandle<()> {
        let file = File::open(format!("/run/netns/{netns}")).expect("open the namespace");
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || {
            use std::io::Write;
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            let listener = std::net::TcpListener::bind(addr).expect("bind");
            ready_tx.send(()).unwrap();
            for stream in listener.incoming().take(count) {
                let mut stream = stream.expect("accept");
                let peer = stream.peer_addr().unwrap().ip().to_string();
                let _ = stream.write_all(peer.as_bytes());
            }
        });
        ready_rx.recv().expect("the server listens");
        server
    }

    /// Connects from namespace `netns` to `to` and returns what the server said (the
    /// address it saw us come from), or `None` when nothing answered within 2 s.
    fn peer_seen(netns: &str, to: &str) -> Option<String> {
        let to: std::net::SocketAddr = to.parse().unwrap();
        in_netns(netns, move || {
            use std::io::Read;
            let mut stream =
                std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            let mut seen = String::new();
            stream.read_to_string(&mut seen).ok()?;
            Some(seen)
        })
    }

    /// C (192.168.77.2) -> H (192.168.77.1, switchd's rules, `to-a` playing the uplink)
    /// -> A (10.10.0.2, serving port 80). A published 8080 -> 10.10.0.2:80 is reached from
    /// C with C's address kept, from H on its own address and on 127.0.0.1, and from A
    /// itself through H (hairpin, masqueraded to H's address); without the rules, not.
    #[test]
    fn published_ports_work_end_to_end() {
        if !is_root() {
            return;
        }
        let pid = std::process::id();
        let [c, h, a] = ["c", "h", "a"].map(|n| format!("dnattest-{pid}-{n}"));
        let mut trio = Trio { names: Vec::new() };
        for name in [&c, &h, &a] {
            run(&["ip", "netns", "add", name]);
            trio.names.push(name.clone());
            ip(name, "link set lo up");
        }
        ip(
            &h,
            &format!("link add to-a type veth peer name eth0 netns {a}"),
        );
        ip(
            &h,
            &format!("link add to-c type veth peer name eth0 netns {c}"),
        );
        ip(&a, "addr add 10.10.0.2/24 dev eth0");
        ip(&a, "link set eth0 up");
        ip(&a, "route add default via 10.10.0.1");
        ip(&c, "addr add 192.168.77.2/24 dev eth0");
        ip(&c, "link set eth0 up");
        ip(&h, "addr add 10.10.0.1/24 dev to-a");
        ip(&h, "addr add 192.168.77.1/24 dev to-c");
        ip(&h, "link set to-a up");
        ip(&h, "link set to-c up");
        let sysctls = "echo 1 > /proc/sys/net/ipv4/ip_forward && \
                       echo 1 > /proc/sys/net/ipv4/conf/to-a/route_localnet";
        run(&["ip", "netns", "exec", &h, "sh", "-c", sysctls]);
        assert!(
            reaches(&c, "192.168.77.1") && reaches(&h, "10.10.0.2"),
            "links are up"
        );

        let server = echo_peer(&a, "10.10.0.2:80", 4);
        assert_eq!(
            peer_seen(&c, "192.168.77.1:8080"),
            None,
            "nothing published yet"
        );
        let rules = NatRules {
            masquerade: Vec::new(),
            forwards: vec![forward(None, 8080, "10.10.0.2", 80)],
            uplink: "to-a".to_string(),
        };
        in_netns(&h, move || apply(&rules)).unwrap();
        assert_eq!(
            peer_seen(&c, "192.168.77.1:8080").as_deref(),
            Some("192.168.77.2"),
            "from outside, with the client's address"
        );
        assert_eq!(
            peer_seen(&h, "192.168.77.1:8080").as_deref(),
            Some("192.168.77.1"),
            "from the namespace itself"
        );
        assert!(
            peer_seen(&h, "127.0.0.1:8080").is_some(),
            "from the namespace's 127.0.0.1"
        );
        assert_eq!(
            peer_seen(&a, "192.168.77.1:8080").as_deref(),
            Some("10.10.0.1"),
            "hairpin, masqueraded"
        );
        server.join().unwrap();

        // Bound to one address: not on the others.
        let server = echo_peer(&a, "10.10.0.2:80", 1);
        let rules = NatRules {
            masquerade: Vec::new(),
            forwards: vec![forward(Some("10.10.0.1"), 8080, "10.10.0.2", 80)],
            uplink: "to-a".to_string(),
        };
        in_netns(&h, move || apply(&rules)).unwrap();
        assert_eq!(peer_seen(&c, "192.168.77.1:8080"), None, "another address");
        assert!(peer_seen(&h, "10.10.0.1:8080").is_some(), "its address");
        server.join().unwrap();
        in_netns(&h, remove).unwrap();
        assert_eq!(peer_seen(&c, "192.168.77.1:8080"), None, "rules removed");
        drop(trio);
    }
}
