//! Published ports: a port of switchd's namespace that forwards to a port of an endpoint
//! (`docker run -p 8080:80`).
//!
//! # Contract
//!
//! - A mapping belongs to an endpoint and goes with it: removing the port, or its
//!   network, removes its mappings. They are saved with the endpoint and set up again
//!   when switchd starts.
//! - Only endpoints of networks that are not `--internal` publish: an internal network
//!   has no route from switchd's namespace.
//! - Two mappings conflict when they have the same protocol and host port and their host
//!   addresses overlap (no address means every address of switchd's namespace). Among
//!   all endpoints no two mappings conflict; a request that would make a conflict is
//!   refused whole.
//! - The mappings become destination NAT in switchd's nftables table (see
//!   `switchyard_os::nft`): from outside switchd's namespace (the client's address is
//!   kept), from switchd's namespace itself (its addresses and 127.0.0.1), and from
//!   containers (hairpin, masqueraded so that the answer comes back the same way).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The transport protocol of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    /// The address of switchd's namespace it listens on; none: every address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
}

impl PortMapping {
    /// Whether the two would catch the same packets.
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for PortMapping {
    /// Docker's way: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            self.host_port,
            self.container_port,
            self.protocol
        )
    }
}

/// A mapping that cannot be published. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortMapError {
    #[error("invalid published port {text:?}: {reason}; write [IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp], such as 8080:80 or 127.0.0.1:5353:53/udp")]
    Syntax { text: String, reason: &'static str },
    #[error("published port {0}: port 0 is not a port; give ports from 1 to 65535")]
    PortZero(PortMapping),
    #[error("published port {0} is a multicast or broadcast address; give an address of switchd's namespace, or none for all of them")]
    HostAddress(PortMapping),
    #[error("published ports {0} and {1} catch the same packets; give each host port once")]
    Duplicate(PortMapping, PortMapping),
}

/// Checks one endpoint's list on its own.
pub fn check(mappings: &[PortMapping]) -> Result<(), PortMapError> {
    for (index, mapping) in mappings.iter().enumerate() {
        if mapping.host_port == 0 || mapping.container_port == 0 {
            return Err(PortMapError::PortZero(*mapping));
        }
        if mapping
            .host_ip
            .is_some_and(|ip| ip.is_multicast() || ip.is_broadcast())
        {
            return Err(PortMapError::HostAddress(*mapping));
        }
        if let Some(other) = mappings[..index].iter().find(|m| m.conflicts_with(mapping)) {
            return Err(PortMapError::Duplicate(*other, *mapping));
        }
    }
    Ok(())
}

impl FromStr for PortMapping {
    type Err = PortMapError;

    /// `[IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]`; `0.0.0.0` as the address means every
    /// address.
    fn from_str(text: &str) -> Result<PortMapping, PortMapError> {
        let syntax = |reason| PortMapError::Syntax {
            text: text.to_string(),
            reason,
        };
        let (ports, protocol) = match text.rsplit_once('/') {
            Some((ports, "tcp")) => (ports, Protocol::Tcp),
            Some((ports, "udp")) => (ports, Protocol::Udp),
            Some(_) => return Err(syntax("the protocol is tcp or udp")),
            None => (text, Protocol::Tcp),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (host_ip, host_port, container_port) = match parts.as_slice() {
            [host, container] => (None, *host, *container),
            [ip, host, container] => {
                let ip: Ipv4Addr = ip
                    .parse()
                    .map_err(|_| syntax("the host address is not an IPv4 address"))?;
                (
                    Some(ip).filter(|ip| !ip.is_unspecified()),
                    *host,
                    *container,
                )
            }
            _ => return Err(syntax("give a host port and a container port")),
        };
        let port = |text: &str| {
            text.parse::<u16>()
                .map_err(|_| syntax("a port is a number from 1 to 65535"))
        };
        let mapping = PortMapping {
            protocol,
            host_ip,
            host_port: port(host_port)?,
            container_port: port(container_port)?,
        };
        check(std::slice::from_ref(&mapping))?;
        Ok(mapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(text: &str) -> PortMapping {
        text.parse().unwrap()
    }

    #[test]
    fn parses_dockers_forms() {
        assert_eq!(
            map("8080:80"),
            PortMapping {
                protocol: Protocol::Tcp,
                host_ip: None,
                host_port: 8080,
                container_port: 80
            }
        );
        let udp = map("127.0.0.1:5353:53/udp");
        assert_eq!(udp.protocol, Protocol::Udp);
        assert_eq!(udp.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(map("0.0.0.0:1:2").host_ip, None);
        assert_eq!(map("8080:80").to_string(), "0.0.0.0:8080->80/tcp");
        assert_eq!(udp.to_string(), "127.0.0.1:5353->53/udp");
    }

    #[test]
    fn refuses_what_is_not_a_mapping() {
        for bad in [
            "",
            "80",
            "a:80",
            "80:b",
            "70000:80",
            "0:80",
            "80:0",
            "1:2:3:4",
            "x:1:2",
            "8080:80/sctp",
            "224.0.0.1:1:2",
            "255.255.255.255:1:2",
            "::1:1:2",
        ] {
            assert!(bad.parse::<PortMapping>().is_err(), "{bad:?}");
        }
        let err = "8080".parse::<PortMapping>().unwrap_err().to_string();
        assert!(err.contains("such as 8080:80"), "{err}");
    }

    #[test]
    fn conflicts_are_same_protocol_port_and_overlapping_address() {
        let any = map("8080:80");
        assert!(any.conflicts_with(&map("10.0.0.1:8080:81")));
        assert!(map("10.0.0.1:8080:80").conflicts_with(&any));
        assert!(!map("10.0.0.1:8080:80").conflicts_with(&map("10.0.0.2:8080:80")));
        assert!(!any.conflicts_with(&map("8080:80/udp")));
        assert!(!any.conflicts_with(&map("8081:80")));
        assert!(check(&[any, map("8080:80/udp"), map("8081:80")]).is_ok());
        assert_eq!(
            check(&[any, map("10.0.0.1:8080:90")]),
            Err(PortMapError::Duplicate(any, map("10.0.0.1:8080:90")))
        );
    }
}
