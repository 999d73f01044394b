//! Host ports and internal ports (`swctl port add`), the interfaces' link state, and the
//! parent of LAN networks.
//!
//! A **host port** is an existing interface (a NIC, a bond, a veth) of switchd's
//! namespace or another; switchd reads and writes it through a packet socket
//! ([`super::effects::HostPorts`]). It is bound by its name: after a restart, or when the
//! interface goes and comes back (perhaps with a new index), the interface of that name
//! is opened again. switchd never creates or deletes it. An **internal port** is a TAP
//! switchd creates in its own namespace ([`OWN_NETNS`]): the host's own interface on
//! the switch, made and found again like a container's TAP.

use std::path::{Path, PathBuf};

use super::state::{SavedPort, SavedPortKind};
use super::{
    default_label, port_name, validate_ifname, validate_mode, ControlError, Controller, Effects,
    ErrorCode, Model, Outcome, Subject, OWN_NETNS,
};
use crate::control::{PortAddRequest, PortInfo};
use crate::network::NetworkConfig;
use crate::port::{PortId, PortMode};
use crate::wire::VlanId;

/// The namespace argument of the host-port effects for `port`: `None` for switchd's own.
pub(super) fn netns_arg(port: &SavedPort) -> Option<&Path> {
    (port.netns != Path::new(OWN_NETNS)).then_some(port.netns.as_path())
}

/// How a message names the namespace at `netns`.
fn namespace_words(netns: &Path) -> String {
    if netns == Path::new(OWN_NETNS) {
        "switchd's namespace".to_string()
    } else {
        format!("namespace {}", netns.display())
    }
}

impl Controller {
    /// `swctl port add`: a host port on an existing interface, or an internal port (a
    /// new TAP in switchd's namespace). Every refusal changes nothing.
    pub(super) fn port_add(
        &mut self,
        fx: &mut dyn Effects,
        req: PortAddRequest,
    ) -> Outcome<PortInfo> {
        validate_ifname(&req.ifname)?;
        if req.internal && req.netns.is_some() {
            return Err(ControlError::invalid(
                "an internal port is a TAP in switchd's own namespace: drop --netns",
            ));
        }
        let mode = req.mode.clone().unwrap_or(PortMode::Access {
            vlan: VlanId::DEFAULT,
        });
        validate_mode(&mode)?;
        let netns = req
            .netns
            .clone()
            .unwrap_or_else(|| PathBuf::from(OWN_NETNS));
        if !netns.is_absolute() {
            return Err(ControlError::invalid(format!(
                "namespace path {} must be absolute",
                netns.display()
            )));
        }
        let own = netns == Path::new(OWN_NETNS);
        let place = namespace_words(&netns);
        let identity = fx.identify_netns(&netns)?;
        let facts = fx.link_facts((!own).then_some(netns.as_path()), &req.ifname)?;
        let ifname = &req.ifname;
        if let Some((id, port)) = self.model.ports.iter().find(|(_, p)| {
            p.netns_cookie == identity.cookie
                && (p.ifname == *ifname
                    || facts
                        .as_ref()
                        .is_some_and(|f| p.ifindex != 0 && f.ifindex == p.ifindex))
        }) {
            return Err(ControlError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "{ifname} in {place} is already port {id} ({}, a {} port)",
                    port_name(port),
                    port.kind
                ),
            ));
        }
        if own && *ifname == self.uplink_name(fx) {
            return Err(ControlError::conflict(format!(
                "{ifname} is switchd's own uplink TUN (to the host's routing), not a port; name another interface"
            )));
        }
        let kind = if req.internal {
            if facts.is_some() {
                return Err(ControlError::new(
                    ErrorCode::AlreadyExists,
                    format!(
                        "an interface {ifname} already exists in switchd's namespace; an internal port is a new TAP: pick another name, or make {ifname} a host port (without --internal)"
                    ),
                ));
            }
            SavedPortKind::Internal
        } else {
            let Some(facts) = &facts else {
                return Err(ControlError::new(
                    ErrorCode::NoSuchInterface,
                    format!("no interface {ifname} in {place} (`ip link` lists them)"),
                ));
            };
            if facts.loopback {
                return Err(ControlError::invalid(format!(
                    "{ifname} is a loopback interface: nothing reaches a switch through it"
                )));
            }
            if let Some(master) = facts.master {
                let master = facts
                    .master_name
                    .clone()
                    .unwrap_or_else(|| format!("the interface with index {master}"));
                return Err(ControlError::conflict(format!(
                    "{ifname} is a member of {master} (a Linux bridge or bond); take it out first (`ip link set {ifname} nomaster`), or add {master} itself"
                )));
            }
            SavedPortKind::Host
        };
        self.check_vlans_free(None, kind, &mode)?;
        let mut new = self.model.clone();
        let id = new.allocate_port_id().ok_or_else(super::no_port_ids_left)?;
        new.ports.insert(
            id,
            SavedPort {
                id,
                label: if own {
                    String::new()
                } else {
                    default_label(&netns)
                },
                netns: netns.clone(),
                netns_dev: identity.dev,
                netns_ino: identity.ino,
                netns_cookie: identity.cookie,
                ifname: ifname.clone(),
                ifindex: 0,
                mode,
                mac: None,
                addresses: Vec::new(),
                // Host ports carry the LAN's many MACs.
                port_security: match kind {
                    SavedPortKind::Host => Some(req.port_security.unwrap_or(false)),
                    _ => req.port_security,
                },
                storm_limit_pps: req.storm_limit_pps,
                pending: None,
                kind,
            },
        );
        self.commit(fx, new, &format!("cannot add {ifname} as a port"))
            .map_err(super::attach_error)?;
        self.problems.remove(&id);
        self.host_closed.remove(&id);
        let port = &self.model.ports[&id];
        let name = port_name(port);
        let message = format!("added {kind} port {id} ({name}): {}", port.mode);
        self.info_about(Subject::Port(name), message);
        Ok(self.port_info(fx, id))
    }

    /// Refuses a mode for port `port` (or a new port) of `kind` that carries a network's
    /// VLAN, but those of the LAN networks `port` is the parent of (and those of any LAN
    /// network for a kind that [joins any LAN](SavedPortKind::joins_any_lan)); and one
    /// that no longer carries those.
    pub(super) fn check_vlans_free(
        &self,
        port: Option<PortId>,
        kind: SavedPortKind,
        mode: &PortMode,
    ) -> Outcome<()> {
        for network in self.model.networks.iter() {
            if kind.joins_any_lan() && network.is_lan() {
                continue;
            }
            let parent = port.is_some() && network.parent == port;
            if parent && !mode.is_member(network.vlan) {
                return Err(ControlError::conflict(format!(
                    "LAN network {} is on VLAN {} of this port; keep VLAN {} or remove the network first",
                    network.name, network.vlan, network.vlan
                )));
            }
            if !parent && mode.is_member(network.vlan) {
                return Err(ControlError::conflict(format!(
                    "VLAN {} belongs to network {}: only its endpoints (`nsutil attach --network {}`){} may be on it; pick other VLANs",
                    network.vlan,
                    network.name,
                    network.name,
                    if network.is_lan() { " and its parent" } else { "" }
                )));
            }
        }
        Ok(())
    }

    /// Opens a saved host port again at start, by its interface's name (the index may
    /// have changed if the interface was made again). An interface that is gone, or
    /// cannot be opened, leaves the port down with the reason; it comes back by itself
    /// through [`Controller::link_changed`]. True if the record changed (a new index or
    /// namespace identity) and the state needs saving.
    pub(super) fn reopen_host_port(
        &mut self,
        fx: &mut dyn Effects,
        model: &mut Model,
        port: &SavedPort,
    ) -> bool {
        let name = port_name(port);
        let ifname = &port.ifname;
        let mut changed = false;
        // Bound by name: the namespace at the path is the port's, whichever it is now.
        if let Ok(identity) = fx.identify_netns(&port.netns) {
            if let Some(record) = model.ports.get_mut(&port.id) {
                let was = (record.netns_dev, record.netns_ino, record.netns_cookie);
                (record.netns_dev, record.netns_ino, record.netns_cookie) =
                    (identity.dev, identity.ino, identity.cookie);
                changed |= was != (identity.dev, identity.ino, identity.cookie);
            }
        }
        let netns = netns_arg(port);
        let down = |c: &mut Controller, problem: String| {
            c.warn_about(
                Subject::Port(name.clone()),
                format!("host port {} ({name}) is down: {problem}", port.id),
            );
            let _ = c.dp.switch().set_port_up(port.id, false);
            c.problems.insert(port.id, problem);
            c.host_closed.insert(port.id);
        };
        let facts = match fx.link_facts(netns, ifname) {
            Ok(Some(facts)) => facts,
            Ok(None) => {
                down(
                    self,
                    format!(
                        "interface {ifname} is gone; the port comes back by itself when it returns"
                    ),
                );
                return changed;
            }
            Err(err) => {
                down(self, format!("cannot look up interface {ifname}: {err}"));
                return changed;
            }
        };
        match fx.open_host_port(port.id, netns, ifname) {
            Ok(ifindex) => {
                self.info_about(
                    Subject::Port(name.clone()),
                    format!("reopened host port {} ({name})", port.id),
                );
                if !facts.up {
                    let _ = self.dp.switch().set_port_up(port.id, false);
                    self.problems
                        .insert(port.id, format!("interface {ifname} is down"));
                }
                if let Some(record) = model.ports.get_mut(&port.id) {
                    changed |= record.ifindex != ifindex;
                    record.ifindex = ifindex;
                }
            }
            Err(err) => down(self, format!("cannot open interface {ifname}: {err}")),
        }
        changed
    }

    /// An interface changed (rtnetlink's link events, from switchd's namespace when
    /// `netns` is `None`): `ifindex` named `ifname`, operationally `up`, or `gone`.
    ///
    /// A host port whose interface went down stops forwarding (state `down: interface
    /// eth1 is down`) and starts again when it is up; one whose interface is gone (or
    /// renamed away) closes its socket and is opened again when an interface of its name
    /// appears, whatever its index (which is then saved). Events of other interfaces are
    /// ignored. Never fails: what goes wrong is in the port's state and the notes.
    pub fn link_changed(
        &mut self,
        fx: &mut dyn Effects,
        netns: Option<&Path>,
        ifindex: u32,
        ifname: &str,
        up: bool,
        gone: bool,
    ) {
        let path = netns.map_or_else(|| PathBuf::from(OWN_NETNS), Path::to_path_buf);
        let ours: Vec<PortId> = self
            .model
            .ports
            .values()
            .filter(|p| p.kind == SavedPortKind::Host && p.netns == path)
            .filter(|p| {
                p.ifname == ifname || (p.ifindex == ifindex && !self.host_closed.contains(&p.id))
            })
            .map(|p| p.id)
            .collect();
        for id in ours {
            let port = self.model.ports[&id].clone();
            let name = port_name(&port);
            let open = !self.host_closed.contains(&id);
            let same = open && port.ifindex == ifindex;
            if gone || port.ifname != ifname {
                if !same {
                    // Another interface of that name went, or ours was never open.
                    continue;
                }
                fx.close_host_port(id);
                self.host_closed.insert(id);
                let _ = self.dp.switch().set_port_up(id, false);
                let problem = if gone {
                    format!(
                        "interface {} is gone; the port comes back by itself when it returns",
                        port.ifname
                    )
                } else {
                    format!(
                        "interface {} was renamed {ifname}; the port comes back when an interface is called {} again",
                        port.ifname, port.ifname
                    )
                };
                self.warn_about(
                    Subject::Port(name.clone()),
                    format!("host port {id} ({name}) is down: {problem}"),
                );
                self.problems.insert(id, problem);
                continue;
            }
            if !open {
                match fx.open_host_port(id, netns, &port.ifname) {
                    Ok(opened) => {
                        self.host_closed.remove(&id);
                        if opened != port.ifindex {
                            if let Some(record) = self.model.ports.get_mut(&id) {
                                record.ifindex = opened;
                            }
                            if let Err(err) = fx.save(&self.saved_state()) {
                                self.warn(format!(
                                    "cannot save the new interface index of port {id} ({name}): {err}"
                                ));
                            }
                        }
                        self.info_about(
                            Subject::Port(name.clone()),
                            format!("host port {id} ({name}): interface {ifname} is back"),
                        );
                    }
                    Err(err) => {
                        let problem = format!("cannot open interface {ifname}: {err}");
                        self.warn_about(
                            Subject::Port(name.clone()),
                            format!("host port {id} ({name}) is down: {problem}"),
                        );
                        self.problems.insert(id, problem);
                        continue;
                    }
                }
            }
            if up {
                if self.problems.remove(&id).is_some() && open {
                    self.info_about(
                        Subject::Port(name.clone()),
                        format!("host port {id} ({name}): interface {ifname} is up"),
                    );
                }
                let _ = self.dp.switch().set_port_up(id, true);
            } else {
                let _ = self.dp.switch().set_port_up(id, false);
                let problem = format!("interface {ifname} is down");
                if self.problems.get(&id) != Some(&problem) {
                    self.warn_about(
                        Subject::Port(name.clone()),
                        format!("host port {id} ({name}) is down: {problem}"),
                    );
                }
                self.problems.insert(id, problem);
            }
        }
    }

    /// A LAN network's parent (`--parent`): the host port, the VLAN on it (`--vlan`, or
    /// its untagged one) and the MTU its endpoints get (`--mtu`, or the interface's).
    /// Returns `config` with these resolved.
    pub(super) fn lan_config(
        &self,
        fx: &mut dyn Effects,
        config: &NetworkConfig,
    ) -> Outcome<(PortId, NetworkConfig)> {
        let Some(parent) = config.parent.as_deref() else {
            return Err(ControlError::system("not a LAN network"));
        };
        let id = self.resolve_port(parent)?;
        let port = &self.model.ports[&id];
        let name = port_name(port);
        if port.kind != SavedPortKind::Host {
            return Err(ControlError::conflict(format!(
                "port {name} is a {} port; a LAN network's parent is a host port (`swctl port add IFNAME`)",
                port.kind
            )));
        }
        let vlan = match config.vlan {
            Some(vlan) if !port.mode.is_member(vlan) => {
                return Err(ControlError::conflict(format!(
                    "port {name} ({}) does not carry VLAN {vlan}; give one it carries, or change it with `swctl port set {name} --trunk ...`",
                    port.mode
                )))
            }
            Some(vlan) => vlan,
            None => port.mode.untagged_vlan().ok_or_else(|| {
                ControlError::conflict(format!(
                    "port {name} ({}) has no untagged VLAN; give --vlan N, one of the VLANs it carries",
                    port.mode
                ))
            })?,
        };
        if let Some(other) = self
            .model
            .ports
            .values()
            // An internal port may be there first.
            .find(|p| p.id != id && !p.kind.joins_any_lan() && p.mode.is_member(vlan))
        {
            return Err(ControlError::conflict(format!(
                "VLAN {vlan} is also carried by port {}; a LAN network's VLAN is its parent's and its endpoints' alone",
                port_name(other)
            )));
        }
        if let Some(vni) = self.model.vni_map.get(&vlan) {
            return Err(ControlError::conflict(format!(
                "VLAN {vlan} travels over the overlay as VNI {vni}; a LAN network's VLAN leaves through its parent only (`swctl vxlan unmap --vlan {vlan}` first)"
            )));
        }
        let mtu = match config.mtu {
            Some(mtu) => mtu,
            None => fx
                .link_facts(netns_arg(port), &port.ifname)?
                .map_or(crate::network::DEFAULT_MTU, |facts| facts.mtu),
        };
        Ok((
            id,
            NetworkConfig {
                vlan: Some(vlan),
                mtu: Some(mtu),
                ..config.clone()
            },
        ))
    }
}
