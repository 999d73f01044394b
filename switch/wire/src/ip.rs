//! What IPv4 and IPv6 share: the protocol number of the payload (IPv4's "protocol",
//! IPv6's "next header"), from the IANA registry.

use std::fmt;

/// An IP protocol number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    pub const ICMP: IpProtocol = IpProtocol(1);
    pub const TCP: IpProtocol = IpProtocol(6);
    pub const UDP: IpProtocol = IpProtocol(17);
    pub const ICMPV6: IpProtocol = IpProtocol(58);
}

impl From<u8> for IpProtocol {
    fn from(number: u8) -> IpProtocol {
        IpProtocol(number)
    }
}

impl From<IpProtocol> for u8 {
    fn from(protocol: IpProtocol) -> u8 {
        protocol.0
    }
}

impl fmt::Debug for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IpProtocol::ICMP => f.write_str("ICMP"),
            IpProtocol::TCP => f.write_str("TCP"),
            IpProtocol::UDP => f.write_str("UDP"),
            IpProtocol::ICMPV6 => f.write_str("ICMPv6"),
            IpProtocol(other) => write!(f, "{other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_the_registry_s() {
        assert_eq!(
            [
                IpProtocol::ICMP,
                IpProtocol::TCP,
                IpProtocol::UDP,
                IpProtocol::ICMPV6
            ]
            .map(u8::from),
            [1, 6, 17, 58]
        );
        assert_eq!(IpProtocol::from(6), IpProtocol::TCP);
        assert_eq!(format!("{:?}", IpProtocol::TCP), "TCP");
        assert_eq!(format!("{:?}", IpProtocol(132)), "132");
    }
}
