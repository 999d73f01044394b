//! Plans: the side effects that bring the world from one model to the next.
//!
//! A control request changes the controller's [`Model`] (pure, validated). The plan is
//! derived from the model before and after ([`Plan::between`]) and run step by step
//! through the [`super::effects`] traits. Each step that can be undone is, in reverse
//! order, if a later one fails; the model then goes back to what it was.
//!
//! # Crash safety
//!
//! The order of steps is what makes a crash at any point recoverable on the next start:
//!
//! 1. `SaveIntent`: when ports are added or removed, or the NAT table changes, the state
//!    is saved first with each such port marked [`Pending`] (`creating` for a new port,
//!    `removing` for one going away) and the NAT change marked too. From here on,
//!    whatever the next start finds, it knows what was under way.
//! 2. TAPs are removed, then created. A VTEP enabled at run time is bound here too,
//!    after its intent was saved (the intent is the VTEP itself: a start finds it saved
//!    and binds it); it cannot be undone once bound.
//! 3. The uplink, routes and NAT follow. The uplink TUN and every route through it die
//!    with the process; the NAT table is rewritten whole at the next start when the
//!    model masquerades or a NAT change was under way (and otherwise never touched), so
//!    a crash leaves nothing of them to undo.
//! 4. `Save`: the model as it now is, with no intents: the commit point.
//!
//! On start, a port saved as `creating` or `removing` is finished off: whatever is left
//! of its TAP is removed, and so is the port with its address. Everything else is
//! reattached as saved.
//!
//! Host ports (existing interfaces) have `OpenHostPort` / `CloseHostPort` instead of
//! `CreateTap` / `DestroyTap`: opening and closing a packet socket can both be undone,
//! and switchd never creates or deletes the interface itself, so a pending host port is
//! simply dropped at the next start (its socket went with the process).

use ipnet::Ipv4Net;

use super::effects::{Masquerade, NatRules, PortForward};
use super::model::Model;
use crate::port::PortId;

pub use super::state::Pending;

/// One side effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Save the state with the plan's port changes marked pending.
    SaveIntent,
    /// Stop forwarding for the port and delete its TAP. Cannot be undone.
    DestroyTap(PortId),
    /// Create the port's TAP (in the namespace and with the name its record gives) and
    /// start forwarding; the interface index goes into the model.
    CreateTap(PortId),
    /// Open a host port's packet socket on its interface and start forwarding; the
    /// interface index goes into the model. Undone by closing it.
    OpenHostPort(PortId),
    /// Stop forwarding on a host port and close its socket; the interface stays.
    CloseHostPort(PortId),
    /// Bind the VTEP at this address and start the overlay (`swctl vxlan enable`); the
    /// address bound goes into the model. Cannot be undone.
    EnableVtep(std::net::SocketAddr),
    /// Create the uplink TUN (it stays until switchd stops).
    CreateUplink,
    /// Route a network's subnet into the uplink, with its MTU.
    Route { subnet: Ipv4Net, mtu: u32 },
    /// Remove a network's route.
    Unroute { subnet: Ipv4Net },
    /// Replace the NAT table with these rules.
    ReplaceNat(NatRules),
    /// Save the state: the commit point.
    Save,
}

/// The steps of one change, in order. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    /// What brings the world from `old` to `new`. `uplink` is whether the uplink exists
    /// already; `uplink_name` names it in NAT rules.
    pub fn between(old: &Model, new: &Model, uplink: bool, uplink_name: &str) -> Plan {
        let mut steps = Vec::new();
        let removed: Vec<PortId> = old
            .ports
            .keys()
            .filter(|id| !new.ports.contains_key(id))
            .copied()
            .collect();
        let added: Vec<PortId> = new
            .ports
            .keys()
            .filter(|id| !old.ports.contains_key(id))
            .copied()
            .collect();
        let networking = Plan::networking(old, new, uplink, uplink_name);
        let nat = networking.iter().any(|s| matches!(s, Step::ReplaceNat(_)));
        let vtep = new.vtep.filter(|_| old.vtep != new.vtep);
        if !removed.is_empty() || !added.is_empty() || nat || vtep.is_some() {
            steps.push(Step::SaveIntent);
        }
        steps.extend(vtep.map(Step::EnableVtep));
        let host =
            |model: &Model, id: &PortId| model.ports[id].kind == super::state::SavedPortKind::Host;
        steps.extend(removed.into_iter().map(|id| {
            if host(old, &id) {
                Step::CloseHostPort(id)
            } else {
                Step::DestroyTap(id)
            }
        }));
        steps.extend(added.into_iter().map(|id| {
            if host(new, &id) {
                Step::OpenHostPort(id)
            } else {
                Step::CreateTap(id)
            }
        }));
        steps.extend(networking);
        if old != new {
            steps.push(Step::Save);
        }
        Plan { steps }
    }

    /// The uplink, route and NAT steps alone: what a restart sets up again.
    pub fn networking(old: &Model, new: &Model, uplink: bool, uplink_name: &str) -> Vec<Step> {
        let mut steps = Vec::new();
        let routes = |model: &Model| -> Vec<(Ipv4Net, u32)> {
            model
                .networks
                .iter()
                .filter(|n| !n.internal && n.is_routed_here())
                .map(|n| (n.subnet, n.mtu))
                .collect()
        };
        let (old_routes, new_routes) = (routes(old), routes(new));
        if !uplink && !new_routes.is_empty() {
            steps.push(Step::CreateUplink);
        }
        for (subnet, mtu) in &new_routes {
            if !old_routes.contains(&(*subnet, *mtu)) {
                steps.push(Step::Route {
                    subnet: *subnet,
                    mtu: *mtu,
                });
            }
        }
        for (subnet, _) in &old_routes {
            if !new_routes.iter().any(|(s, _)| s == subnet) {
                steps.push(Step::Unroute { subnet: *subnet });
            }
        }
        let (old_nat, new_nat) = (nat_rules(old, uplink_name), nat_rules(new, uplink_name));
        if old_nat != new_nat {
            steps.push(Step::ReplaceNat(new_nat));
        }
        steps
    }
}

/// The NAT rules a model asks for: one masquerade per masquerading network, one
/// forward per published port.
pub fn nat_rules(model: &Model, uplink_name: &str) -> NatRules {
    let masquerade = model
        .networks
        .iter()
        .filter(|n| n.masquerade && n.is_routed_here())
        .map(|n| Masquerade {
            subnet: n.subnet,
            uplink: uplink_name.to_string(),
        })
        .collect();
    let mut forwards: Vec<PortForward> = model
        .networks
        .endpoints()
        .iter()
        .flat_map(|e| {
            e.published.iter().map(|m| PortForward {
                protocol: m.protocol,
                host_ip: m.host_ip,
                host_port: m.host_port,
                target: e.ip,
                target_port: m.container_port,
            })
        })
        .collect();
    forwards.sort();
    NatRules {
        masquerade,
        forwards,
        uplink: uplink_name.to_string(),
    }
}
