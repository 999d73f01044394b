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

/// `mappings` as Docker shows them (`0.0.0.0:8080->80/tcp`), joined by `separator`;
/// `empty` when there are none.
pub fn join(mappings: &[PortMapping], separator: &str, empty: &str) -> String {
    if mappings.is_empty() {
        return empty.to_string();
    }
    let shown: Vec<String> = mappings.iter().map(ToString::to_string).collect();
    shown.join(separator)
}

/// A mapping that cannot be published. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortMapError {
    #[error("invalid published port {text:?}: {reason}; write [IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp], such as 8080:80 or 127.0.0.1:5353:53/udp")]
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

/// The most mappings one range may stand for (`8000-9023:8000-9023`).
pub const MAX_RANGE: usize = 1024;

/// One spec as users write it, `[IP:]HOST[-END]:CONTAINER[-END][/tcp|/udp]`: a single
/// mapping, or a range of host ports onto a range of container ports of the same length
/// (`8080-8082:80-82` is 8080->80, 8081->81, 8082->82), at most [`MAX_RANGE`] long.
pub fn parse_spec(text: &str) -> Result<Vec<PortMapping>, PortMapError> {
    let syntax = |reason| PortMapError::Syntax {
        text: text.to_string(),
        reason,
    };
    if !text.contains('-') {
        return Ok(vec![text.parse()?]);
    }
    let (ports, protocol) = match text.rsplit_once('/') {
        Some((ports, protocol)) => (ports, Some(protocol)),
        None => (text, None),
    };
    let (prefix, container) = ports
        .rsplit_once(':')
        .ok_or_else(|| syntax("give a host port and a container port"))?;
    let (ip, host) = match prefix.rsplit_once(':') {
        Some((ip, host)) => (Some(ip), host),
        None => (None, prefix),
    };
    let range = |text: &str| -> Result<(u16, u16), PortMapError> {
        let number = |t: &str| {
            t.parse::<u16>()
                .map_err(|_| syntax("a port is a number from 1 to 65535"))
        };
        match text.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (number(first)?, number(last)?);
                if first > last {
                    return Err(syntax("a range goes from the lower port to the higher"));
                }
                Ok((first, last))
            }
            None => number(text).map(|port| (port, port)),
        }
    };
    let (host, container) = (range(host)?, range(container)?);
    let length = usize::from(host.1 - host.0) + 1;
    if length != usize::from(container.1 - container.0) + 1 {
        return Err(syntax(
            "a range of host ports needs a range of container ports of the same length",
        ));
    }
    if length > MAX_RANGE {
        return Err(syntax("a range is at most 1024 ports"));
    }
    (0..length as u16)
        .map(|offset| {
            let one = format!(
                "{}{}:{}{}",
                ip.map(|ip| format!("{ip}:")).unwrap_or_default(),
                host.0 + offset,
                container.0 + offset,
                protocol.map(|p| format!("/{p}")).unwrap_or_default()
            );
            one.parse::<PortMapping>().map_err(|err| match err {
                PortMapError::Syntax { reason, .. } => syntax(reason),
                other => other,
            })
        })
        .collect()
}

/// Several specs (`--publish` given more than once), checked together.
pub fn parse_specs<S: AsRef<str>>(specs: &[S]) -> Result<Vec<PortMapping>, PortMapError> {
    let mut all = Vec::new();
    for spec in specs {
        all.extend(parse_spec(spec.as_ref())?);
    }
    check(&all)?;
    Ok(all)
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
    fn ranges_expand_pair_by_pair() {
        let list = parse_spec("127.0.0.1:8080-8082:80-82/udp").unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[2].to_string(), "127.0.0.1:8082->82/udp");
        assert_eq!(parse_spec("8080:80").unwrap(), vec![map("8080:80")]);
        assert_eq!(parse_spec("9-9:7-7").unwrap(), vec![map("9:7")]);
        for bad in [
            "8080-8081:80",
            "80:8080-8081",
            "8082-8080:80-82",
            "1-2000:1-2000",
            "0-1:5-6",
            "8080-x:80-81",
            "8080-8081:80-81/sctp",
            "::8080-8081:80-81",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
        let err = parse_specs(&["8080:80", "8079-8080:79-80"]).unwrap_err();
        assert!(matches!(err, PortMapError::Duplicate(..)), "{err}");
        assert_eq!(parse_specs(&["1:1", "2:2/udp"]).unwrap().len(), 2);
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
