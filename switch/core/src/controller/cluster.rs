//! The controller's side of the cluster store (see [`crate::cluster`]): global networks
//! created and removed with compare-and-set, addresses of global networks claimed before
//! a change commits and released after, and the store's picture ([`Remote`]) turned into
//! the model: peers, global networks, remote endpoints, addresses held elsewhere.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use switchyard_encap::Vni;

use super::model::{Model, RemoteEntry};
use super::{Clock, ControlError, Controller, Effects, ErrorCode, NetworkInfo, Outcome, Subject};
use crate::cluster::{keys, AddressRecord, EndpointRecord, Key, NetworkRecord, OwnKeys, Remote};
use crate::network::{Network, NetworkConfig, Networks, Scope};
use crate::wire::VlanId;

/// Global networks get VNIs from here up, unless given one.
const FIRST_GLOBAL_VNI: u32 = 4096;

/// Each (network, address) of a global network the model holds: its endpoints' and
/// its reservations'.
fn global_addresses(model: &Model) -> BTreeSet<(String, Ipv4Addr)> {
    let endpoints = model
        .networks
        .endpoints()
        .iter()
        .map(|e| (e.network.clone(), e.ip));
    let reservations = model
        .networks
        .reservations()
        .iter()
        .map(|r| (r.network.clone(), r.ip));
    endpoints
        .chain(reservations)
        .filter(|(network, _)| is_global(model, network))
        .collect()
}

/// Whether `network` is one of the model's global networks.
fn is_global(model: &Model, network: &str) -> bool {
    model
        .networks
        .get(network)
        .is_some_and(|n| n.scope == Scope::Global)
}

fn no_cluster() -> ControlError {
    ControlError::new(
        ErrorCode::NoCluster,
        "a global network needs a cluster store: start switchd with --cluster-store etcd://HOST:PORT (and --vtep)",
    )
}

impl Controller {
    /// Commits `new`, claiming in the cluster store first the addresses of global
    /// networks it adds, and releasing after it those it drops. A claim another node won
    /// fails the change with `address_unavailable` (and `lost_claim` says which); a store
    /// that does not answer fails it with `store_unavailable`; either way nothing changed.
    pub(super) fn commit(&mut self, fx: &mut dyn Effects, new: Model, failed: &str) -> Outcome<()> {
        self.lost_claim = None;
        let before = global_addresses(&self.model);
        let after = global_addresses(&new);
        if before == after {
            return self.commit_local(fx, new, failed);
        }
        let claims: Vec<(String, Ipv4Addr)> = after.difference(&before).cloned().collect();
        let node = fx.cluster_node().ok_or_else(no_cluster)?;
        let holder = AddressRecord { node };
        let mut claimed = Vec::new();
        for (network, ip) in &claims {
            let outcome = fx.cluster_txn(&keys::claim_address(network, *ip, &holder));
            match outcome {
                Ok(true) => claimed.push((network.clone(), *ip)),
                // Ours already (from before a restart, not yet repaired by the resync).
                Ok(false) if self.remote.held.contains(&(network.clone(), *ip)) => {}
                Ok(false) => {
                    self.release(fx, &holder, &claimed);
                    self.lost_claim = Some((network.clone(), *ip));
                    return Err(ControlError::new(
                        ErrorCode::AddressUnavailable,
                        format!(
                            "{ip} of network {network} is held by another node of the cluster; pick another address (or none)"
                        ),
                    )
                    .context(failed));
                }
                Err(err) => {
                    self.release(fx, &holder, &claimed);
                    return Err(err.context(failed));
                }
            }
        }
        let result = self.commit_local(fx, new, failed);
        // Whatever the model holds now stays claimed; the rest goes.
        let now = global_addresses(&self.model);
        let stale: Vec<(String, Ipv4Addr)> = before
            .iter()
            .chain(claimed.iter())
            .filter(|held| !now.contains(*held))
            .cloned()
            .collect();
        self.release(fx, &holder, &stale);
        result
    }

    /// Releases addresses this node held (best effort: the next resync of the store
    /// releases what an error here leaves).
    fn release(
        &mut self,
        fx: &mut dyn Effects,
        holder: &AddressRecord,
        held: &[(String, Ipv4Addr)],
    ) {
        for (network, ip) in held {
            if let Err(err) = fx.cluster_txn(&keys::release_address(network, *ip, holder)) {
                self.warn_about(
                    Subject::Network(network.clone()),
                    format!(
                        "cannot release {ip} of network {network} in the cluster store ({err}); it is released when the store is back"
                    ),
                );
            }
        }
    }

    /// Creates a global network: the VNI and VLAN chosen clear of every network known
    /// here and in the store, then claimed with the network in one transaction.
    pub(super) fn network_create_global(
        &mut self,
        fx: &mut dyn Effects,
        clock: Clock,
        config: &NetworkConfig,
    ) -> Outcome<NetworkInfo> {
        fx.cluster_node().ok_or_else(no_cluster)?;
        self.vtep(fx)?;
        keys::validate_name(&config.name).map_err(ControlError::invalid)?;
        if let Some(local_id) = &config.id {
            if let Some(existing) = self.model.networks.get(&config.name).cloned() {
                return self.adopt_global(fx, existing, config, local_id);
            }
        }
        if self.remote.networks.contains_key(&config.name) {
            return Err(ControlError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "the cluster already has a network {}; pick another name",
                    config.name
                ),
            ));
        }
        let vni = match config.vni {
            Some(vni) => vni,
            None => (FIRST_GLOBAL_VNI..=Vni::MAX)
                .filter_map(Vni::new)
                .find(|vni| !self.vni_known(*vni))
                .ok_or_else(|| ControlError::conflict("no VNI is free"))?,
        };
        if self.vni_known(vni) {
            return Err(ControlError::conflict(format!(
                "VNI {vni} is already used here or in the cluster; pick another (or none)"
            )));
        }
        let mut busy = self.busy_vlans();
        busy.extend(self.model.networks.iter().map(|n| n.vlan));
        busy.extend(self.remote.networks.values().map(|n| n.vlan));
        // From the top down: local networks take VLANs from the bottom up.
        let vlan = (1..=VlanId::MAX)
            .rev()
            .filter_map(VlanId::new)
            .find(|vlan| !busy.contains(vlan))
            .ok_or_else(|| ControlError::conflict("no VLAN is free for the network"))?;
        // A caller's own id (Docker's, on this host) is this node's handle on the
        // network; the network's id is the cluster's.
        let local_id = config.id.clone();
        let config = NetworkConfig {
            vni: Some(vni),
            id: None,
            ..config.clone()
        };
        let host_routes = super::routes_to_avoid(fx, config.internal)?;
        let mut network = self.model.networks.plan(
            &config,
            fx.random_id()?,
            clock.unix_secs,
            &host_routes,
            |v| busy.contains(&v),
        )?;
        network.vlan = vlan;
        network.local_ids.extend(local_id);
        let record = NetworkRecord::of(&network, vni);
        if !fx.cluster_txn(&keys::create_network(&record))? {
            return Err(ControlError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "the cluster store already has a network {}, VNI {vni} or VLAN {vlan} (another node created it at the same time); list them with `swctl network ls` and retry",
                    network.name
                ),
            ));
        }
        let mut new = self.model.clone();
        new.vni_map.insert(network.vlan, vni);
        new.networks.insert(network.clone());
        let failed = format!("cannot create network {}", network.name);
        if let Err(err) = self.commit(fx, new, &failed) {
            if let Err(undo) = fx.cluster_txn(&keys::remove_network(&record)) {
                self.warn_about(
                    Subject::Network(network.name.clone()),
                    format!(
                        "cannot take network {} back out of the cluster store: {undo}",
                        network.name
                    ),
                );
            }
            return Err(err);
        }
        self.remote.networks.insert(record.name.clone(), record);
        self.info_about(
            Subject::Network(network.name.clone()),
            format!(
                "global network {} created ({}, VLAN {vlan}, VNI {vni})",
                network.name, network.subnet
            ),
        );
        Ok(self.network_info(fx, &network))
    }

    /// A caller with an id of its own (each host's Docker) creating a global network
    /// that exists: the id becomes this node's handle on it, if the settings it asks for
    /// are the network's.
    fn adopt_global(
        &mut self,
        fx: &mut dyn Effects,
        network: Network,
        config: &NetworkConfig,
        local_id: &str,
    ) -> Outcome<NetworkInfo> {
        let differs = network.scope != Scope::Global
            || config.subnet.is_some_and(|s| s != network.subnet)
            || config.gateway.is_some_and(|g| g != network.gateway)
            || config.vni.is_some_and(|v| Some(v) != network.vni);
        if differs {
            return Err(ControlError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "network {} exists ({}, {}, gateway {}) and is not the one asked for; use its settings or another name",
                    network.name,
                    network.scope.as_str(),
                    network.subnet,
                    network.gateway
                ),
            ));
        }
        if network.local_ids.iter().any(|id| id == local_id) {
            return Ok(self.network_info(fx, &network));
        }
        if self.model.networks.find_by_name_or_id(local_id).is_ok() {
            return Err(ControlError::new(
                ErrorCode::AlreadyExists,
                format!("another network already has id {local_id}"),
            ));
        }
        let mut new = self.model.clone();
        new.networks.add_local_id(&network.name, local_id);
        self.commit(fx, new, &format!("cannot join network {}", network.name))?;
        self.info_about(
            Subject::Network(network.name.clone()),
            format!("global network {} joined as {local_id}", network.name),
        );
        let network = self.model.networks.find(&network.name)?.clone();
        Ok(self.network_info(fx, &network))
    }

    /// `network rm` by one of this node's own ids for a global network: the handle goes,
    /// the network stays (it is the cluster's: `swctl network rm NAME` removes it).
    pub(super) fn forget_local_id(
        &mut self,
        fx: &mut dyn Effects,
        network: &Network,
        local_id: &str,
    ) -> Outcome<NetworkInfo> {
        let mut new = self.model.clone();
        new.networks.remove_local_id(&network.name, local_id);
        self.commit(
            fx,
            new,
            &format!("cannot forget id {local_id} of network {}", network.name),
        )?;
        self.info_about(
            Subject::Network(network.name.clone()),
            format!(
                "id {local_id} of global network {} forgotten; the network stays",
                network.name
            ),
        );
        Ok(self.network_info(fx, network))
    }

    fn vni_known(&self, vni: Vni) -> bool {
        self.model.vni_map.values().any(|v| *v == vni)
            || self.remote.networks.values().any(|n| n.vni == vni)
    }

    /// Removes a global network from the store, which refuses while any node holds an
    /// address of it; every node then removes its copy (this one at once).
    pub(super) fn network_remove_global(
        &mut self,
        fx: &mut dyn Effects,
        network: &Network,
    ) -> Outcome<()> {
        let remote = self
            .model
            .cluster
            .endpoints
            .iter()
            .filter(|e| e.endpoint.network == network.name)
            .count();
        if remote > 0 {
            return Err(ControlError::new(
                ErrorCode::NetworkInUse,
                format!(
                    "network {} has {remote} endpoint(s) on other nodes (`swctl network inspect {}`); detach them there first",
                    network.name, network.name
                ),
            ));
        }
        let Some(vni) = network.vni else {
            return Ok(());
        };
        fx.cluster_node().ok_or_else(no_cluster)?;
        let record = self
            .remote
            .networks
            .get(&network.name)
            .cloned()
            .unwrap_or_else(|| NetworkRecord::of(network, vni));
        if !fx.cluster_txn(&keys::remove_network(&record))? {
            return Err(ControlError::new(
                ErrorCode::NetworkInUse,
                format!(
                    "the cluster store still has addresses or endpoints of network {} on other nodes (or another version of it); detach them first",
                    network.name
                ),
            ));
        }
        self.remote.networks.remove(&network.name);
        Ok(())
    }

    /// The keys this node owns in the store, as the model has them (the registration
    /// is the caller's: it knows the VTEP to advertise).
    pub fn own_keys(&self, node: &str) -> OwnKeys {
        let mut own = OwnKeys {
            node: node.to_string(),
            ..OwnKeys::default()
        };
        for endpoint in self.model.networks.endpoints() {
            if !is_global(&self.model, &endpoint.network) {
                continue;
            }
            let key = Key::Endpoint {
                network: endpoint.network.clone(),
                node: node.to_string(),
                ip: endpoint.ip,
            };
            let record = EndpointRecord {
                mac: endpoint.mac,
                name: endpoint.name.clone(),
                aliases: endpoint.aliases.clone(),
            };
            own.endpoints.insert(key.path(), keys::value_of(&record));
        }
        let holder = keys::value_of(&AddressRecord {
            node: node.to_string(),
        });
        for (network, ip) in global_addresses(&self.model) {
            let key = Key::Address { network, ip };
            own.addresses.insert(key.path(), holder.clone());
        }
        own
    }

    /// What the cluster store says now: other nodes become peers, global networks
    /// appear and go, other nodes' endpoints become static entries and ARP answers,
    /// their addresses are never handed out here. What cannot be applied is logged.
    pub fn cluster_update(&mut self, fx: &mut dyn Effects, remote: Remote) {
        let mut new = self.model.clone();
        // What cannot be applied, and the network it concerns, if one.
        let mut skipped: Vec<(Option<String>, String)> = Vec::new();
        // First what goes (gone from the store, or made again with other settings), so
        // that what comes may reuse its VLAN, VNI or subnet in the same update.
        let stale: Vec<Network> = new
            .networks
            .iter()
            .filter(|n| {
                n.scope == Scope::Global
                    && remote
                        .networks
                        .get(&n.name)
                        .is_none_or(|record| !record.describes(n))
            })
            .cloned()
            .collect();
        for network in stale {
            if !in_use(&new, &network.name) {
                remove_network(&mut new, &network);
            } else if !remote.networks.contains_key(&network.name) {
                skipped.push((
                    Some(network.name.clone()),
                    format!(
                        "global network {} is gone from the cluster store, but this node still has endpoints on it; kept until they detach",
                        network.name
                    ),
                ));
            }
        }
        for record in remote.networks.values() {
            match new.networks.get(&record.name) {
                Some(local) if local.scope == Scope::Global && record.describes(local) => {}
                Some(local) if local.scope == Scope::Global => skipped.push((
                    Some(record.name.clone()),
                    format!(
                        "the cluster's global network {} changed, but this node still has endpoints on the old one; kept until they detach",
                        record.name
                    ),
                )),
                Some(_) => skipped.push((
                    Some(record.name.clone()),
                    format!(
                        "the cluster's global network {} is not used here: this node has another network by that name",
                        record.name
                    ),
                )),
                None => {
                    if let Err(why) = add_global(&mut new, record) {
                        skipped.push((Some(record.name.clone()), why));
                    }
                }
            }
        }
        // Peers: every other node's VTEP, unless an operator's peer already is.
        let vtep = fx.vtep();
        let wanted: std::collections::BTreeMap<&str, std::net::SocketAddr> = remote
            .peers
            .iter()
            .filter(|(_, addr)| {
                vtep.is_some_and(|local| {
                    local.ip() != addr.ip() && local.is_ipv4() == addr.is_ipv4()
                })
            })
            .map(|(node, addr)| (node.as_str(), *addr))
            .collect();
        let stale: Vec<_> = new
            .cluster
            .peers
            .iter()
            .filter(|(id, node)| wanted.get(node.as_str()) != new.peers.get(id))
            .map(|(id, _)| *id)
            .collect();
        if !stale.is_empty() {
            let stale: BTreeSet<_> = stale.into_iter().collect();
            new.peers.retain(|id, _| !stale.contains(id));
            new.cluster.peers.retain(|id, _| !stale.contains(id));
            new.statics.retain(|_, port| !stale.contains(port));
            // (Remote endpoints are made again below, behind the peers that stay.)
        }
        let mut peer_ips: BTreeSet<std::net::IpAddr> = new.peers.values().map(|a| a.ip()).collect();
        for (node, addr) in &wanted {
            if !peer_ips.insert(addr.ip()) {
                continue;
            }
            let Some(id) = new.allocate_port_id() else {
                skipped.push((None, format!("no port id left for node {node}'s VTEP")));
                continue;
            };
            let mtu = fx.path_mtu(*addr);
            self.path_mtus.insert(addr.ip(), mtu);
            new.peers.insert(id, *addr);
            new.cluster.peers.insert(id, node.to_string());
        }
        // Remote endpoints, behind their node's tunnel port.
        let port_of: std::collections::BTreeMap<&str, crate::port::PortId> = new
            .cluster
            .peers
            .iter()
            .map(|(id, node)| (node.as_str(), *id))
            .collect();
        // An address this node's own endpoint has (the store lagging behind a release
        // and a new claim) stays this node's: no entry sends its MAC into the tunnel.
        let local: BTreeSet<(&str, Ipv4Addr)> = new
            .networks
            .endpoints()
            .iter()
            .map(|e| (e.network.as_str(), e.ip))
            .collect();
        let endpoints = remote
            .endpoints
            .iter()
            .filter_map(|endpoint| {
                let network = new.networks.get(&endpoint.network)?;
                let clashes = local.contains(&(endpoint.network.as_str(), endpoint.ip))
                    || endpoint.mac == network.router_mac();
                if network.scope != Scope::Global || clashes {
                    return None;
                }
                let port = *port_of.get(endpoint.node.as_str())?;
                Some(RemoteEntry {
                    endpoint: endpoint.clone(),
                    vlan: network.vlan,
                    port,
                })
            })
            .collect();
        new.cluster.endpoints = endpoints;
        new.networks.set_foreign(remote.taken.clone());
        self.remote = remote;
        for (network, why) in skipped {
            if self.cluster_warned.insert(why.clone()) {
                match network {
                    Some(network) => self.warn_about(Subject::Network(network), why),
                    None => self.warn(why),
                }
            }
        }
        if new != self.model {
            if let Err(err) = self.commit(fx, new, "cannot apply the cluster store's changes") {
                self.warn(err.to_string());
            }
        }
    }

    /// Endpoints of global networks on other nodes, for `network inspect`.
    pub(super) fn remote_endpoints(
        &self,
        network: &str,
    ) -> Vec<crate::control::RemoteEndpointInfo> {
        self.model
            .cluster
            .endpoints
            .iter()
            .filter(|e| e.endpoint.network == network)
            .map(|e| crate::control::RemoteEndpointInfo {
                node: e.endpoint.node.clone(),
                ip: e.endpoint.ip,
                mac: e.endpoint.mac,
                name: e.endpoint.name.clone(),
                aliases: e.endpoint.aliases.clone(),
            })
            .collect()
    }
}

/// Adds the global network `record` describes, unless it clashes with this node's own
/// networks, VLANs or VNIs (the reason, then).
fn add_global(model: &mut Model, record: &NetworkRecord) -> Result<(), String> {
    let clash = |what: String| {
        format!(
            "the cluster's global network {} is not used here: {what}",
            record.name
        )
    };
    if let Err(err) = Networks::check_shape(record.subnet, record.gateway, record.mtu) {
        return Err(clash(err.to_string()));
    }
    if record.ip_range.is_some_and(|r| !record.subnet.contains(&r)) {
        return Err(clash("its IP range is outside its subnet".into()));
    }
    if let Some(other) = model
        .networks
        .iter()
        .find(|n| crate::network::overlaps(n.subnet, record.subnet))
    {
        return Err(clash(format!(
            "its subnet {} overlaps network {} ({})",
            record.subnet, other.name, other.subnet
        )));
    }
    let vlan_busy = model.vni_map.contains_key(&record.vlan)
        || model.networks.by_vlan(record.vlan).is_some()
        || model
            .ports
            .values()
            .any(|p| p.mode.vlans().contains(&record.vlan));
    if vlan_busy {
        return Err(clash(format!("VLAN {} is used here", record.vlan)));
    }
    if model.vni_map.values().any(|v| *v == record.vni) {
        return Err(clash(format!("VNI {} is mapped here", record.vni)));
    }
    model.vni_map.insert(record.vlan, record.vni);
    model.networks.insert(Network {
        name: record.name.clone(),
        id: record.id.clone(),
        subnet: record.subnet,
        gateway: record.gateway,
        vlan: record.vlan,
        vni: Some(record.vni),
        ip_range: record.ip_range,
        mtu: record.mtu,
        internal: record.internal,
        masquerade: record.masquerade,
        created: record.created,
        last_allocated: None,
        scope: Scope::Global,
        local_ids: Vec::new(),
        parent: None,
        aux_addresses: Vec::new(),
    });
    Ok(())
}

fn remove_network(model: &mut Model, network: &Network) {
    let _ = model.networks.remove(&network.name);
    if network.vni.is_some() && model.vni_map.get(&network.vlan) == network.vni.as_ref() {
        model.vni_map.remove(&network.vlan);
    }
    model
        .cluster
        .endpoints
        .retain(|e| e.endpoint.network != network.name);
}

/// Whether this node has endpoints or reservations on network `name`.
fn in_use(model: &Model, name: &str) -> bool {
    model.networks.endpoints_of(name).next().is_some()
        || model
            .networks
            .reservations()
            .iter()
            .any(|r| r.network == name)
}
