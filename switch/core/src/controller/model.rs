//! The controller's model: what switchd is configured to be. It is the one owner of ports,
//! peers, static FDB entries, the VLAN ↔ VNI map, networks and their endpoints; the
//! datapath's configuration (the switch's ports and peers, static entries, the router's
//! interfaces and neighbours) is derived from it by [`sync`], and the side effects by
//! [`super::plan::Plan`].
//!
//! A model is a value: cloning it before a change and putting the clone back is how a
//! failed change is undone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use switchyard_encap::Vni;

use super::state::{SavedFdbEntry, SavedOverlay, SavedPeer, SavedPort, SavedState, VERSION};
use crate::cluster::RemoteEndpoint;
use crate::control::VniMapping;
use crate::datapath::{Datapath, ROUTER_PORT};
use crate::dns::{Record, Scopes};
use crate::network::Networks;
use crate::port::{PortId, PortMode, PortSecurity, StormLimit};
use crate::router::Interface;
use crate::wire::{MacAddr, VlanId, VlanSet};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub ports: BTreeMap<PortId, SavedPort>,
    /// VXLAN peers by their tunnel port.
    pub peers: BTreeMap<PortId, SocketAddr>,
    /// Static FDB entries the operator added (the gateways' are derived from networks).
    pub statics: BTreeMap<(VlanId, MacAddr), PortId>,
    /// Every VLAN carried over the overlay (networks' VNIs included).
    pub vni_map: BTreeMap<VlanId, Vni>,
    pub networks: Networks,
    pub next_port_id: u32,
    /// The VTEP enabled at run time (`swctl vxlan enable`), remembered so that a start
    /// without `--vtep` binds it again; `None` when there is none, or only `--vtep`'s.
    pub vtep: Option<SocketAddr>,
    /// What the cluster store adds (runtime only, never saved: the store has it).
    pub cluster: ClusterModel,
}

/// What the cluster contributes to the model: which of `Model::peers` are other nodes'
/// VTEPs, and the endpoints on other nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterModel {
    /// The peers the cluster made, by port, with their node's name.
    pub peers: BTreeMap<PortId, String>,
    /// Endpoints on other nodes: where their MAC is (the VLAN of their network here,
    /// and their node's tunnel port). A set, so that a change of thousands is diffed in
    /// O(n log n).
    pub endpoints: BTreeSet<RemoteEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemoteEntry {
    pub endpoint: RemoteEndpoint,
    pub vlan: VlanId,
    pub port: PortId,
}

impl Model {
    pub fn new() -> Model {
        Model {
            next_port_id: 1,
            ..Model::default()
        }
    }

    /// A fresh port id (local ports and peers share one id space), or `None` when every
    /// id has been given out (which only a state file can claim).
    pub fn allocate_port_id(&mut self) -> Option<PortId> {
        let id = PortId(self.next_port_id);
        self.next_port_id = self.next_port_id.checked_add(1)?;
        Some(id)
    }

    /// The model a saved state describes (checked by [`SavedState::check`] first).
    pub fn from_saved(saved: &SavedState) -> Result<Model, String> {
        saved.check()?;
        Ok(Model {
            ports: saved.ports.iter().map(|p| (p.id, p.clone())).collect(),
            peers: saved.overlay.peers.iter().map(|p| (p.id, p.addr)).collect(),
            statics: saved
                .static_fdb
                .iter()
                .map(|e| ((e.vlan, e.mac), e.port))
                .collect(),
            vni_map: saved.overlay.map.iter().map(|m| (m.vlan, m.vni)).collect(),
            networks: {
                let mut networks =
                    Networks::restore(saved.networks.clone(), saved.endpoints.clone())
                        .map_err(|err| err.to_string())?;
                networks
                    .restore_reservations(saved.reservations.clone())
                    .map_err(|err| err.to_string())?;
                networks
            },
            next_port_id: saved.next_port_id,
            vtep: saved.vtep,
            cluster: ClusterModel::default(),
        })
    }

    /// The state to save, with the ports of `intents` marked pending.
    pub fn to_saved(
        &self,
        boot_id: &str,
        intents: &BTreeMap<PortId, (SavedPort, super::state::Pending)>,
    ) -> SavedState {
        let (networks, endpoints) = self.networks.to_saved();
        let mut ports: BTreeMap<PortId, SavedPort> = self.ports.clone();
        for (id, (port, pending)) in intents {
            let mut port = port.clone();
            port.pending = Some(*pending);
            ports.insert(*id, port);
        }
        SavedState {
            version: VERSION,
            boot_id: boot_id.to_string(),
            next_port_id: self.next_port_id,
            ports: ports.into_values().collect(),
            static_fdb: self
                .statics
                .iter()
                .map(|((vlan, mac), port)| SavedFdbEntry {
                    vlan: *vlan,
                    mac: *mac,
                    port: *port,
                })
                .collect(),
            overlay: SavedOverlay {
                map: self.vni_mappings(),
                peers: self
                    .peers
                    .iter()
                    .filter(|(id, _)| !self.cluster.peers.contains_key(id))
                    .map(|(id, addr)| SavedPeer {
                        id: *id,
                        addr: *addr,
                    })
                    .collect(),
            },
            vtep: self.vtep,
            networks,
            endpoints,
            reservations: self.networks.reservations().to_vec(),
            nat_pending: false,
        }
    }

    /// The VLAN ↔ VNI map, by VLAN, as the protocol and the state file list it.
    pub fn vni_mappings(&self) -> Vec<VniMapping> {
        self.vni_map
            .iter()
            .map(|(vlan, vni)| VniMapping {
                vlan: *vlan,
                vni: *vni,
            })
            .collect()
    }

    /// Whether `id` is a port or a peer's tunnel port.
    pub fn has_port(&self, id: PortId) -> bool {
        self.ports.contains_key(&id) || self.peers.contains_key(&id)
    }

    /// Forgets a local port: its endpoint (and address) and the static entries that
    /// point at it.
    pub fn remove_port(&mut self, id: PortId) -> Option<SavedPort> {
        let port = self.ports.remove(&id)?;
        self.networks.remove_endpoint(id);
        self.statics.retain(|_, p| *p != id);
        Some(port)
    }

    /// Forgets a peer and the static entries behind it.
    pub fn remove_peer(&mut self, id: PortId) -> Option<SocketAddr> {
        let addr = self.peers.remove(&id)?;
        self.statics.retain(|_, p| *p != id);
        self.cluster.peers.remove(&id);
        self.cluster.endpoints.retain(|e| e.port != id);
        Some(addr)
    }

    /// The VLANs the router's port trunks: every network's but LAN networks' (the LAN's
    /// router is theirs).
    fn router_vlans(&self) -> VlanSet {
        self.networks
            .iter()
            .filter(|n| n.is_routed_here())
            .map(|n| n.vlan)
            .collect()
    }
}

/// What a port lets in and how much it may flood: port security is on for an access
/// port whose MAC switchd knows (an endpoint's, or the one the attach named) unless it
/// was turned off, and off for a trunk unless turned on; the storm limit is the port's
/// own, or `storm_default`.
pub fn port_policy(
    port: &SavedPort,
    networks: &Networks,
    storm_default: Option<StormLimit>,
) -> (Option<PortSecurity>, Option<StormLimit>) {
    let endpoint = networks.endpoint_of_port(port.id);
    let mac = endpoint.map(|e| e.mac).or(port.mac);
    let ipv4 = endpoint.map_or_else(|| port.addresses.clone(), |e| vec![e.ip]);
    let access = matches!(port.mode, PortMode::Access { .. });
    let on = port.port_security.unwrap_or(access);
    let security = mac.filter(|_| on).map(|mac| PortSecurity { mac, ipv4 });
    let storm = match port.storm_limit_pps {
        Some(pps) => StormLimit::per_second(pps),
        None => storm_default,
    };
    (security, storm)
}

/// Brings the datapath's configuration from what `old` asked for to what `new` asks for:
/// the VLAN ↔ VNI map, switch ports and peers, static entries, the router's port,
/// interfaces and neighbours. Only what differs is touched (reconfiguring a port flushes
/// what it learned). `path_mtu` gives each new peer's path MTU. Fails only where the
/// datapath can refuse (a full table of static entries, a VNI clash) — the caller checks
/// those first, and undoes a failure by syncing back.
pub fn sync(
    dp: &Datapath,
    old: &Model,
    new: &Model,
    path_mtu: impl Fn(SocketAddr) -> u32,
    storm_default: Option<StormLimit>,
) -> Result<(), super::error::ControlError> {
    let switch = dp.switch();
    // The overlay first: unmaps, then maps, so that a VNI moving between VLANs is free.
    for (vlan, vni) in &old.vni_map {
        if new.vni_map.get(vlan) != Some(vni) {
            switch.unmap_vlan(*vlan);
        }
    }
    for (vlan, vni) in &new.vni_map {
        if old.vni_map.get(vlan) != Some(vni) {
            switch.map_vni(*vlan, *vni)?;
        }
    }
    // Ports and peers.
    for (id, port) in &old.ports {
        if !new.ports.contains_key(id) {
            let _ = switch.remove_port(*id);
        } else if new.ports[id].mode != port.mode {
            switch.set_port(*id, new.ports[id].mode.clone());
        }
    }
    for (id, port) in &new.ports {
        if !old.ports.contains_key(id) {
            switch.set_port(*id, port.mode.clone());
        }
        let policy = port_policy(port, &new.networks, storm_default);
        let was = old
            .ports
            .get(id)
            .map(|p| port_policy(p, &old.networks, storm_default));
        if was.as_ref() != Some(&policy) {
            switch.set_port_policy(*id, policy.0, policy.1)?;
        }
    }
    let gone: Vec<_> = old
        .peers
        .iter()
        .filter(|(id, addr)| new.peers.get(id) != Some(addr))
        .map(|(_, addr)| addr.ip())
        .collect();
    switch.remove_peers(&gone);
    let added: Vec<_> = new
        .peers
        .iter()
        .filter(|(id, addr)| old.peers.get(id) != Some(addr))
        .map(|(id, addr)| (*id, *addr, path_mtu(*addr)))
        .collect();
    switch.add_peers(&added)?;
    // The router: its port trunks every network's VLAN, and it has one interface per
    // network, whose gateway MAC is a static entry towards it.
    let (old_vlans, new_vlans) = (old.router_vlans(), new.router_vlans());
    if old_vlans != new_vlans {
        if new_vlans.is_empty() {
            let _ = switch.remove_port(ROUTER_PORT);
        } else {
            switch.set_port(
                ROUTER_PORT,
                PortMode::Trunk {
                    allowed: new_vlans,
                    native: None,
                },
            );
            let _ = switch.set_port_up(ROUTER_PORT, true);
        }
    }
    let mut router = dp.router();
    // A network that stays on its VLAN (its next address moved on) keeps its interface
    // and neighbours; `set_interface` below updates it in place.
    // VLANs whose interface goes (and perhaps comes back): their neighbours went with it.
    let mut reset = std::collections::BTreeSet::new();
    for network in old.networks.iter().filter(|n| n.is_routed_here()) {
        let stays = new.networks.get(&network.name).is_some_and(|n| {
            n.is_routed_here() && n.vlan == network.vlan && n.router_mac() == network.router_mac()
        });
        if !stays {
            switch.fdb().remove(network.vlan, network.router_mac());
            router.remove_interface(network.vlan);
            reset.insert(network.vlan);
        }
    }
    for network in new.networks.iter().filter(|n| n.is_routed_here()) {
        if old.networks.get(&network.name) != Some(network) {
            router.set_interface(Interface {
                vlan: network.vlan,
                subnet: network.subnet,
                gateway: network.gateway,
                mac: network.router_mac(),
                uplink: !network.internal,
            });
            switch
                .fdb()
                .add_static(network.vlan, network.router_mac(), ROUTER_PORT)?;
        }
    }
    // Endpoints: the router knows their MACs, never asks for them.
    // (Not on LAN networks: the router has no interface there.)
    let routed = |networks: &crate::network::Networks, name: &str| {
        networks
            .get(name)
            .filter(|n| n.is_routed_here())
            .map(|n| n.vlan)
    };
    for endpoint in old.networks.endpoints() {
        let vlan = routed(&old.networks, &endpoint.network);
        let stays = new.networks.endpoints().contains(endpoint)
            && routed(&new.networks, &endpoint.network) == vlan;
        if let (false, Some(vlan)) = (stays, vlan) {
            router.remove_neighbor(vlan, endpoint.ip);
        }
    }
    for endpoint in new.networks.endpoints() {
        let Some(network) = new
            .networks
            .get(&endpoint.network)
            .filter(|n| n.is_routed_here())
        else {
            continue;
        };
        let known = old.networks.endpoints().contains(endpoint)
            && routed(&old.networks, &endpoint.network) == Some(network.vlan)
            && !reset.contains(&network.vlan);
        if !known {
            router.set_static_neighbor(network.vlan, endpoint.ip, endpoint.mac);
        }
    }
    drop(router);
    // The embedded DNS's names, when an endpoint's name, address or namespace changed
    // (they come from the networks and the ports only).
    if old.networks != new.networks
        || old.ports != new.ports
        || old.cluster.endpoints != new.cluster.endpoints
    {
        let names = dns_names(new);
        if dns_names(old) != names {
            let (records, scopes) = names;
            dp.dns().set_names(records, scopes);
        }
    }
    // The operator's static entries, on ports that exist by now.
    for (key, port) in &old.statics {
        if new.statics.get(key) != Some(port) {
            switch.fdb().remove(key.0, key.1);
        }
    }
    for ((vlan, mac), port) in &new.statics {
        if old.statics.get(&(*vlan, *mac)) != Some(port) {
            switch.fdb().add_static(*vlan, *mac, *port)?;
        }
    }
    // Endpoints on other nodes: a static entry behind their node's tunnel port, and a
    // neighbour whose ARP the router answers (ARP suppression).
    for entry in old.cluster.endpoints.difference(&new.cluster.endpoints) {
        switch.fdb().remove(entry.vlan, entry.endpoint.mac);
        dp.router().remove_neighbor(entry.vlan, entry.endpoint.ip);
    }
    for entry in new.cluster.endpoints.difference(&old.cluster.endpoints) {
        switch
            .fdb()
            .add_static(entry.vlan, entry.endpoint.mac, entry.port)?;
        dp.router()
            .set_remote_neighbor(entry.vlan, entry.endpoint.ip, entry.endpoint.mac);
    }
    // Those that stayed, on a VLAN whose interface was made again.
    for entry in new.cluster.endpoints.intersection(&old.cluster.endpoints) {
        if reset.contains(&entry.vlan) {
            dp.router()
                .set_remote_neighbor(entry.vlan, entry.endpoint.ip, entry.endpoint.mac);
        }
    }
    Ok(())
}

/// What the embedded DNS answers from: a record per endpoint with a name or aliases, and
/// for each endpoint every network its namespace is on (an endpoint's port in the same
/// namespace on another network), as Docker scopes a container's names.
pub fn dns_names(model: &Model) -> (Vec<Record>, Scopes) {
    let mut scopes = Scopes::default();
    // LAN networks have no gateway of switchd's to answer on, so no names either.
    let lan = |name: &str| model.networks.get(name).is_some_and(|n| n.is_lan());
    for network in model.networks.iter().filter(|n| n.is_routed_here()) {
        scopes.vlans.insert(network.vlan, network.name.clone());
    }
    let namespace = |port: PortId| model.ports.get(&port).map(|p| (p.netns_dev, p.netns_ino));
    let endpoints: Vec<&crate::network::Endpoint> = model
        .networks
        .endpoints()
        .iter()
        .filter(|e| !lan(&e.network))
        .collect();
    // Each namespace's networks (a port without a namespace stands alone).
    let mut by_namespace: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    for endpoint in &endpoints {
        if let Some(home) = namespace(endpoint.port) {
            by_namespace
                .entry(home)
                .or_default()
                .push(endpoint.network.clone());
        }
    }
    for networks in by_namespace.values_mut() {
        networks.sort();
        networks.dedup();
    }
    let mut records = Vec::new();
    for endpoint in &endpoints {
        let Some(network) = model.networks.get(&endpoint.network) else {
            continue;
        };
        if endpoint.name.is_some() || !endpoint.aliases.is_empty() {
            records.push(Record {
                network: endpoint.network.clone(),
                name: endpoint.name.clone().unwrap_or_default(),
                aliases: endpoint.aliases.clone(),
                addr: endpoint.ip,
            });
        }
        let on = namespace(endpoint.port)
            .and_then(|home| by_namespace.get(&home).cloned())
            .unwrap_or_else(|| vec![endpoint.network.clone()]);
        scopes.askers.insert((network.vlan, endpoint.ip), on);
    }
    // Endpoints on other nodes answer to their names too (they ask their own node).
    for entry in &model.cluster.endpoints {
        let remote = &entry.endpoint;
        if remote.name.is_some() || !remote.aliases.is_empty() {
            records.push(Record {
                network: remote.network.clone(),
                name: remote.name.clone().unwrap_or_default(),
                aliases: remote.aliases.clone(),
                addr: remote.ip,
            });
        }
    }
    (records, scopes)
}
