//! Ports as the forwarding core sees them: an id and a VLAN mode. What is behind a port
//! (a TAP, a VXLAN peer, a simulator mailbox) is the business of the layer around the core.

use std::fmt;

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::wire::{MacAddr, VlanId, VlanSet};

/// A port's number, unique within one switch and stable across restarts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PortId(pub u32);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port{}", self.0)
    }
}

/// The source addresses a port may use (as OVN's `port_security`): what switchd knows
/// about the container behind it. Checked on every frame from the port: the Ethernet
/// source must be `mac`; ARP's sender must be `mac` and, when `ipv4` is not empty, one
/// of `ipv4` (or 0.0.0.0, an address probe); an IPv4 source must be one of `ipv4` (or
/// 0.0.0.0, for DHCP) when `ipv4` is not empty. Anything else is dropped and counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSecurity {
    pub mac: MacAddr,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv4: Vec<Ipv4Addr>,
}

/// A rate limit for the frames a port floods (broadcast, multicast, unknown unicast):
/// a token bucket of `burst` frames refilled at `pps` per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StormLimit {
    pub pps: u32,
    pub burst: u32,
}

impl StormLimit {
    /// The default: 2,000 frames/s with a burst of 4,000, which leaves ARP, DHCP and mDNS
    /// alone and caps a flood.
    pub const DEFAULT: StormLimit = StormLimit {
        pps: 2000,
        burst: 4000,
    };

    /// `pps` frames/s with a burst of twice that; `None` for 0 (off).
    pub fn per_second(pps: u32) -> Option<StormLimit> {
        (pps > 0).then(|| StormLimit {
            pps,
            burst: pps.saturating_mul(2),
        })
    }
}

/// How a port carries VLANs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum PortMode {
    /// Untagged frames of one VLAN. A frame arriving with a VLAN tag is dropped; a
    /// priority tag (VLAN id 0) counts as untagged.
    Access { vlan: VlanId },
    /// 802.1Q-tagged frames of the allowed VLANs, plus untagged frames of the native
    /// VLAN when there is one.
    Trunk {
        allowed: VlanSet,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        native: Option<VlanId>,
    },
}

impl Default for PortMode {
    fn default() -> Self {
        PortMode::Access {
            vlan: VlanId::DEFAULT,
        }
    }
}

impl PortMode {
    /// The VLAN an untagged (or priority-tagged) frame arriving here belongs to.
    pub fn untagged_vlan(&self) -> Option<VlanId> {
        match self {
            PortMode::Access { vlan } => Some(*vlan),
            PortMode::Trunk { native, .. } => *native,
        }
    }

    pub fn is_member(&self, vlan: VlanId) -> bool {
        match self {
            PortMode::Access { vlan: own } => *own == vlan,
            PortMode::Trunk { allowed, native } => allowed.contains(vlan) || *native == Some(vlan),
        }
    }

    /// How a frame of `vlan` leaves through this port: `Some(None)` untagged,
    /// `Some(Some(vlan))` tagged, `None` not at all (not a member).
    pub fn egress_tag(&self, vlan: VlanId) -> Option<Option<VlanId>> {
        match self {
            PortMode::Access { vlan: own } => (*own == vlan).then_some(None),
            PortMode::Trunk { native, .. } if *native == Some(vlan) => Some(None),
            PortMode::Trunk { allowed, .. } => allowed.contains(vlan).then_some(Some(vlan)),
        }
    }

    /// Every VLAN the port is a member of, ascending.
    pub fn vlans(&self) -> Vec<VlanId> {
        match self {
            PortMode::Access { vlan } => vec![*vlan],
            PortMode::Trunk { allowed, native } => {
                let mut all: Vec<VlanId> = allowed.iter().collect();
                if let Some(native) = native {
                    if !allowed.contains(*native) {
                        all.push(*native);
                        all.sort();
                    }
                }
                all
            }
        }
    }
}

impl fmt::Display for PortMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortMode::Access { vlan } => write!(f, "access vlan {vlan}"),
            PortMode::Trunk {
                allowed,
                native: None,
            } => write!(f, "trunk {allowed}"),
            PortMode::Trunk {
                allowed,
                native: Some(native),
            } => write!(f, "trunk {allowed} native {native}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vlan(id: u16) -> VlanId {
        VlanId::new(id).unwrap()
    }

    #[test]
    fn access_port_carries_one_vlan_untagged() {
        let mode = PortMode::Access { vlan: vlan(10) };
        assert_eq!(mode.untagged_vlan(), Some(vlan(10)));
        assert_eq!(mode.egress_tag(vlan(10)), Some(None));
        assert_eq!(mode.egress_tag(vlan(20)), None);
        assert_eq!(mode.vlans(), vec![vlan(10)]);
    }

    #[test]
    fn trunk_tags_all_but_native() {
        let mode = PortMode::Trunk {
            allowed: "10,20".parse().unwrap(),
            native: Some(vlan(30)),
        };
        assert_eq!(mode.untagged_vlan(), Some(vlan(30)));
        assert_eq!(mode.egress_tag(vlan(10)), Some(Some(vlan(10))));
        assert_eq!(mode.egress_tag(vlan(30)), Some(None));
        assert_eq!(mode.egress_tag(vlan(40)), None);
        assert!(mode.is_member(vlan(30)));
        assert_eq!(mode.vlans(), vec![vlan(10), vlan(20), vlan(30)]);
        assert_eq!(mode.to_string(), "trunk 10,20 native 30");
    }

    #[test]
    fn trunk_without_native_has_no_untagged_vlan() {
        let mode = PortMode::Trunk {
            allowed: "5".parse().unwrap(),
            native: None,
        };
        assert_eq!(mode.untagged_vlan(), None);
    }

    #[test]
    fn serde_shape() {
        let mode = PortMode::Trunk {
            allowed: "10,20".parse().unwrap(),
            native: None,
        };
        let json = serde_json::to_string(&mode).unwrap();
        assert_eq!(json, r#"{"mode":"trunk","allowed":[10,20]}"#);
        assert_eq!(serde_json::from_str::<PortMode>(&json).unwrap(), mode);
        let access: PortMode = serde_json::from_str(r#"{"mode":"access","vlan":10}"#).unwrap();
        assert_eq!(access, PortMode::Access { vlan: vlan(10) });
        assert!(serde_json::from_str::<PortMode>(r#"{"mode":"access","vlan":4095}"#).is_err());
    }
}
