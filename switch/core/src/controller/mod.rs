//! The controller: the one owner of switchd's configuration (ports, VXLAN peers, static
//! FDB entries, the VLAN ↔ VNI map, networks, endpoints), turning each control request
//! into a change of its [`Model`] and a [`Plan`] of side effects.
//!
//! The controller performs no I/O of its own. Every side effect goes through the small
//! traits of [`effects`], which switchd implements over the OS layer and tests implement
//! in memory ([`fake`]). Every change follows the same path (`Controller::commit`):
//!
//! 1. validate the request against the model, changing nothing;
//! 2. change a copy of the model;
//! 3. bring the datapath's configuration in line ([`model::sync`]);
//! 4. run the [`Plan`] between the old and the new model (intent saved first, TAPs,
//!    uplink, routes, NAT, then the state saved: the commit point);
//! 5. if a step fails before the commit point, undo the steps done, sync the datapath
//!    back, and keep the old model: nothing half made is left, and the answer says what
//!    failed with a stable [`ErrorCode`].
//!
//! Steps that cannot be undone (deleting a TAP) come after the intent is saved: a failure
//! after them is reported, and the next start finishes the change (see [`plan`]).

mod cluster;
pub mod effects;
pub mod error;
pub mod fake;
mod host;
pub mod inspect;
pub mod model;
pub mod plan;
pub mod state;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::Serialize;
use switchyard_encap::Vni;

use crate::control::{
    AttachRequest, Attached, Detached, EndpointInfo, FdbRecord, FdbStats, Flushed, NetworkInfo,
    PeerInfo, PortInfo, PortStats, Request, RouterInfo, Stats, VxlanInfo,
};
use crate::datapath::{max_inner_frame, Datapath};
use crate::fdb::{FdbEntry, FlushFilter};
use crate::forward::DEFAULT_PATH_MTU;
use crate::network::{Endpoint, Network, NetworkConfig};
use crate::port::{PortId, PortMode, StormLimit};
use crate::portmap::PortMapping;
use crate::time::Time;
use crate::wire::{MacAddr, VlanId};
pub use effects::{
    Cluster, Effects, HostPorts, LinkFacts, Links, Masquerade, NamespaceId, NatRules, PortForward,
    Routing, Store, Underlay, OWN_NETNS,
};
pub use error::{ControlError, ErrorCode};
pub use model::Model;
pub use plan::{Plan, Step};
use state::{Pending, SavedPort, SavedPortKind, SavedState};

type Outcome<T> = Result<T, ControlError>;

/// What the controller is told about its surroundings at start.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// This boot's id: namespace cookies saved under another boot mean nothing.
    pub boot_id: String,
    /// The uplink TUN's name (what NAT rules name before it exists).
    pub uplink_name: String,
    /// The storm limit of every port that has none of its own (`None`: no limit).
    pub storm_limit: Option<StormLimit>,
}

/// When a request is handled: the datapath's clock (FDB ages) and the wall clock
/// (networks' creation time), both passed in.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub now: Time,
    pub unix_secs: u64,
}

/// A note for the log: what changed, or a best-effort step that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    Info(String),
    Warn(String),
    /// About one port or network, named (`red/eth0`, `blue`) for the log to carry as a
    /// field of its own.
    About {
        warn: bool,
        subject: Subject,
        message: String,
    },
}

/// What a [`Note::About`] is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A port, by name.
    Port(String),
    /// A network, by name.
    Network(String),
    /// A VLAN that belongs to no network (its VNI mapping).
    Vlan(VlanId),
}

/// The controller. See the module documentation.
pub struct Controller {
    dp: Arc<Datapath>,
    config: ControllerConfig,
    model: Model,
    /// Why a port is not forwarding, when it is not (runtime, not saved).
    problems: BTreeMap<PortId, String>,
    /// Path MTUs the underlay reported when each peer was added.
    path_mtus: BTreeMap<IpAddr, u32>,
    /// Whether the uplink exists.
    uplink: bool,
    /// What happened, for the log; the daemon takes them after each call.
    notes: Vec<Note>,
    /// The cluster store's picture as last applied (empty when not clustered).
    remote: crate::cluster::Remote,
    /// The address a claim just lost to another node: attach picks another.
    lost_claim: Option<(String, std::net::Ipv4Addr)>,
    /// What the cluster asked that could not be applied, warned about once.
    cluster_warned: std::collections::BTreeSet<String>,
    /// Host ports whose interface is gone (or could not be opened): no socket open;
    /// reopened when an interface of their name appears (runtime, not saved).
    host_closed: std::collections::BTreeSet<PortId>,
}

impl Controller {
    /// Restores a saved state: finishes changes a crash interrupted, configures the
    /// datapath, reattaches every port's TAP and sets networks up again. Ports whose TAP
    /// cannot be found stay, marked down with the reason.
    pub fn restore(
        dp: Arc<Datapath>,
        config: ControllerConfig,
        saved: SavedState,
        fx: &mut dyn Effects,
    ) -> Outcome<Controller> {
        let overlay = !saved.overlay.map.is_empty() || !saved.overlay.peers.is_empty();
        if overlay && fx.vtep().is_none() {
            return Err(ControlError::new(
                ErrorCode::NoOverlay,
                format!(
                    "the state directory has a VXLAN configuration ({} VNI mappings, {} peers) but switchd was started without --vtep; pass --vtep ADDR",
                    saved.overlay.map.len(),
                    saved.overlay.peers.len()
                ),
            ));
        }
        // The daemon binds the VTEP the state remembers before it restores (unless
        // --vtep names one, which wins).
        if let (Some(remembered), None) = (saved.vtep, fx.vtep()) {
            return Err(ControlError::new(
                ErrorCode::NoOverlay,
                format!(
                    "the state directory remembers VTEP {remembered} (from `swctl vxlan enable`), but switchd has no VTEP; pass --vtep ADDR"
                ),
            ));
        }
        let same_boot = !saved.boot_id.is_empty() && saved.boot_id == config.boot_id;
        let mut model = Model::from_saved(&saved).map_err(ControlError::invalid)?;
        let mut controller = Controller {
            dp,
            config,
            model: Model::new(),
            problems: BTreeMap::new(),
            path_mtus: BTreeMap::new(),
            uplink: false,
            notes: Vec::new(),
            remote: crate::cluster::Remote::default(),
            lost_claim: None,
            cluster_warned: std::collections::BTreeSet::new(),
            host_closed: std::collections::BTreeSet::new(),
        };
        // Whether the state had to be repaired (and so is saved again at the end).
        let mut repaired = false;
        // --vtep wins over the VTEP the state remembers, and is remembered instead.
        if let (Some(remembered), Some(given)) = (model.vtep, fx.vtep()) {
            if remembered != given {
                controller.warn(format!(
                    "the state directory remembers VTEP {remembered} (from `swctl vxlan enable`), but --vtep {given} was given: the VTEP is {given}, remembered from now on"
                ));
                model.vtep = Some(given);
                repaired = true;
            }
        }
        // Changes a crash interrupted: whatever is left of the TAP goes, and the port.
        let pending: Vec<SavedPort> = model
            .ports
            .values()
            .filter(|p| p.pending.is_some())
            .cloned()
            .collect();
        for port in pending {
            let name = port_name(&port);
            if port.kind == SavedPortKind::Host {
                // Not ours to delete: the socket went with the process.
                controller.info_about(
                    Subject::Port(name.clone()),
                    format!(
                        "host port {} ({name}) was being added or removed when switchd stopped; removed the port (the interface stays)",
                        port.id
                    ),
                );
                model.remove_port(port.id);
                repaired = true;
                continue;
            }
            match fx.discard_tap(&port) {
                Ok(removed) => controller.info_about(
                    Subject::Port(name.clone()),
                    format!(
                        "port {} ({name}) was being {} when switchd stopped; {}",
                        port.id,
                        if port.pending == Some(Pending::Creating) {
                            "created"
                        } else {
                            "removed"
                        },
                        if removed {
                            "removed its TAP and the port"
                        } else {
                            "removed the port"
                        }
                    ),
                ),
                Err(err) => controller.warn_about(
                    Subject::Port(name.clone()),
                    format!(
                        "port {} ({name}) was left half made; cannot remove its TAP: {err}",
                        port.id
                    ),
                ),
            }
            model.remove_port(port.id);
            repaired = true;
        }
        for ((vlan, mac), port) in model.statics.clone() {
            if !model.has_port(port) {
                controller.warn(format!(
                    "static FDB entry {mac} vlan {vlan} points at port {port}, which no longer exists; dropped"
                ));
                model.statics.remove(&(vlan, mac));
                repaired = true;
            }
        }
        for addr in model.peers.values() {
            controller.path_mtus.insert(addr.ip(), fx.path_mtu(*addr));
        }
        let path_mtus = controller.path_mtus.clone();
        let storm = controller.config.storm_limit;
        model::sync(
            &controller.dp,
            &Model::new(),
            &model,
            |addr| {
                path_mtus
                    .get(&addr.ip())
                    .copied()
                    .unwrap_or(DEFAULT_PATH_MTU)
            },
            storm,
        )?;
        let host_ports: Vec<SavedPort> = model
            .ports
            .values()
            .filter(|p| p.kind == SavedPortKind::Host)
            .cloned()
            .collect();
        for port in host_ports {
            repaired |= controller.reopen_host_port(fx, &mut model, &port);
        }
        // Internal ports whose TAP went (with a reboot): made again, as they were.
        let mut recreated = Vec::new();
        for port in model.ports.values() {
            if port.kind == SavedPortKind::Host {
                continue;
            }
            let name = port_name(port);
            match fx.reattach_tap(port, same_boot) {
                Ok(()) => controller.info_about(
                    Subject::Port(name.clone()),
                    format!("reattached TAP of port {} ({name})", port.id),
                ),
                Err(problem)
                    if port.kind == SavedPortKind::Internal
                        && fx.link_facts(None, &port.ifname).is_ok_and(|f| f.is_none()) =>
                {
                    match fx.create_tap(port.id, &port.netns, &port.ifname) {
                        Ok(ifindex) => {
                            controller.info_about(
                                Subject::Port(name.clone()),
                                format!(
                                    "made the TAP of internal port {} ({name}) again: {problem}",
                                    port.id
                                ),
                            );
                            recreated.push((port.id, ifindex));
                        }
                        Err(err) => {
                            let problem = format!("{problem}; cannot make it again: {err}");
                            controller.warn_about(
                                Subject::Port(name.clone()),
                                format!("internal port {} ({name}) is down: {problem}", port.id),
                            );
                            let _ = controller.dp.switch().set_port_up(port.id, false);
                            controller.problems.insert(port.id, problem);
                        }
                    }
                }
                Err(problem) => {
                    controller.warn_about(
                        Subject::Port(name.clone()),
                        format!(
                            "cannot reattach TAP of port {} ({name}): {problem}",
                            port.id
                        ),
                    );
                    let _ = controller.dp.switch().set_port_up(port.id, false);
                    controller.problems.insert(port.id, problem);
                }
            }
        }
        for (id, ifindex) in recreated {
            if let Some(port) = model.ports.get_mut(&id) {
                port.ifindex = ifindex;
                repaired = true;
            }
        }
        // The uplink and its routes went with the last process; the NAT table did not:
        // it is rewritten whole when the model masquerades or a change of it was under
        // way, and otherwise left alone (it is not ours to touch then).
        let uplink = controller.uplink_name(fx);
        let mut steps = Plan::networking(&Model::new(), &model, false, &uplink);
        steps.retain(|step| !matches!(step, Step::ReplaceNat(_)));
        for step in steps {
            if let Err(err) = controller.run_step(fx, &step, &model) {
                controller.warn(format!("cannot set the networks up again: {err}"));
            }
        }
        let rules = plan::nat_rules(&model, &controller.uplink_name(fx));
        if !rules.is_empty() || saved.nat_pending {
            match fx.replace_nat(&rules) {
                Ok(()) => repaired |= saved.nat_pending,
                Err(err) => controller.warn(format!("cannot set the NAT rules up again: {err}")),
            }
        }
        for network in model.networks.iter() {
            controller.info_about(
                Subject::Network(network.name.clone()),
                format!("network {} ({}) restored", network.name, network.subnet),
            );
        }
        controller.model = model;
        if repaired {
            if let Err(err) = fx.save(&controller.saved_state()) {
                controller.warn(format!(
                    "cannot save the state after finishing interrupted changes and dropping dangling entries: {err}"
                ));
            }
        }
        Ok(controller)
    }

    pub fn datapath(&self) -> &Arc<Datapath> {
        &self.dp
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The notes gathered since the last call, for the log.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    fn info(&mut self, message: String) {
        self.notes.push(Note::Info(message));
    }

    fn warn(&mut self, message: String) {
        self.notes.push(Note::Warn(message));
    }

    fn info_about(&mut self, subject: Subject, message: String) {
        self.notes.push(Note::About {
            warn: false,
            subject,
            message,
        });
    }

    fn warn_about(&mut self, subject: Subject, message: String) {
        self.notes.push(Note::About {
            warn: true,
            subject,
            message,
        });
    }

    /// The state as it is, for saving.
    pub fn saved_state(&self) -> SavedState {
        self.model.to_saved(&self.config.boot_id, &BTreeMap::new())
    }

    /// A forwarding thread found port `id`'s TAP broken: the port stops forwarding
    /// until it is reattached, and says why.
    pub fn mark_down(&mut self, id: PortId, problem: String) {
        let _ = self.dp.switch().set_port_up(id, false);
        if self.model.ports.contains_key(&id) {
            self.problems.insert(id, problem);
        }
    }

    /// Notes, for the log, about the MACs the FDB found flapping since the last call.
    pub fn take_flaps(&mut self) {
        let hold = self.dp.switch().fdb().config().flap_hold.as_secs();
        for flap in self.dp.switch().fdb().take_flaps() {
            let (stays, newcomer) = (
                self.any_port_name(flap.port),
                self.any_port_name(flap.newcomer),
            );
            let message = format!(
                "MAC {} in VLAN {} is flapping between port {} ({stays}) and port {} ({newcomer}): it stays on {stays}, and learning it on {newcomer} is held back for {hold} s; look for a loop, or two hosts with one MAC",
                flap.mac, flap.vlan, flap.port, flap.newcomer
            );
            self.warn_about(Subject::Port(newcomer), message);
        }
    }

    /// Everything a stopping switchd undoes: the NAT table (the uplink and its routes go
    /// with the process; TAPs stay, persistent, for the next start).
    pub fn shutdown(&mut self, fx: &mut dyn Effects) {
        if !plan::nat_rules(&self.model, "").is_empty() {
            if let Err(err) = fx.replace_nat(&NatRules::default()) {
                self.warn(format!("cannot remove the NAT rules: {err}"));
            }
        }
    }

    /// Answers one request, as a JSON value (the protocol's `result`), or refuses it.
    pub fn handle(
        &mut self,
        fx: &mut dyn Effects,
        clock: Clock,
        request: Request,
    ) -> Outcome<serde_json::Value> {
        match request {
            Request::Status
            | Request::ClusterStatus
            | Request::NodeList
            | Request::LogLevel { .. }
            | Request::Capture { .. } => Err(ControlError::new(
                ErrorCode::Unknown,
                "status, the log filter and the cluster's are answered by the daemon",
            )),
            Request::Attach(req) => to_value(self.attach(fx, req)),
            Request::Detach { netns, ifname } => to_value(self.detach(fx, &netns, &ifname)),
            Request::PortDel { port } => to_value(self.port_del(fx, &port)),
            Request::PortAdd(req) => to_value(self.port_add(fx, req)),
            Request::PortList => to_value(Ok(self.port_list(fx))),
            Request::PortSet {
                port,
                mode,
                port_security,
                storm_limit_pps,
            } => to_value(self.port_set(fx, &port, mode, port_security, storm_limit_pps)),
            Request::FdbShow { vlan, port } => {
                to_value(self.fdb_show(clock, vlan, port.as_deref()))
            }
            Request::FdbAdd {
                mac,
                vlan,
                port,
                vtep,
            } => to_value(self.fdb_add(fx, clock, mac, vlan, port.as_deref(), vtep)),
            Request::FdbDel { mac, vlan } => to_value(self.fdb_del(fx, clock, mac, vlan)),
            Request::FdbFlush {
                vlan,
                port,
                include_static,
            } => to_value(self.fdb_flush(fx, vlan, port.as_deref(), include_static)),
            Request::Stats => to_value(Ok(self.stats(clock))),
            Request::VxlanShow => to_value(self.vxlan_info(fx)),
            Request::VxlanMap { vlan, vni } => to_value(self.vxlan_map(fx, vlan, vni)),
            Request::VxlanUnmap { vlan } => to_value(self.vxlan_unmap(fx, vlan)),
            Request::PeerAdd { addr } => to_value(self.peer_add(fx, &addr)),
            Request::PeerDel { addr } => to_value(self.peer_del(fx, &addr)),
            Request::PeerList => to_value(self.vxlan_info(fx).map(|info| info.peers)),
            Request::NetworkCreate(config) => to_value(self.network_create(fx, clock, &config)),
            Request::NetworkList => to_value(Ok(self
                .model
                .networks
                .iter()
                .map(|n| self.network_info(fx, n))
                .collect::<Vec<_>>())),
            Request::NetworkInspect { name } => to_value(
                self.model
                    .networks
                    .find_by_name_or_id(&name)
                    .map(|n| self.network_info(fx, n))
                    .map_err(ControlError::from),
            ),
            Request::NetworkRemove { name } => to_value(self.network_remove(fx, &name)),
            Request::RouterShow => to_value(Ok(self.router_info(fx))),
            Request::Trace { port, frame } => to_value(self.trace(clock.now, &port, &frame)),
            Request::NetworkRename { name, new_name } => {
                to_value(self.network_rename(fx, &name, &new_name))
            }
            Request::AddressReserve { network, ip, owner } => {
                to_value(self.address_reserve(fx, &network, ip, &owner))
            }
            Request::AddressRelease { network, ip } => {
                to_value(self.address_release(fx, &network, ip))
            }
            Request::SubnetSuggest { internal } => to_value(self.subnet_suggest(fx, internal)),
            Request::PortMoved { port, netns } => to_value(self.port_moved(fx, &port, &netns)),
            Request::PortPublish {
                port,
                published,
                add,
            } => to_value(self.port_publish(fx, &port, Publish::Set { published, add })),
            Request::PortUnpublish { port, published } => {
                to_value(self.port_publish(fx, &port, Publish::Unset(published)))
            }
            Request::VxlanEnable { vtep } => to_value(self.vxlan_enable(fx, &vtep)),
        }
    }

    // ---- the one way to change anything ----

    /// Makes `new` the model: syncs the datapath, runs the plan from the current model,
    /// and on a failure before the commit point undoes everything and keeps the current
    /// model. `failed` prefixes the error of a failed change.
    /// Commits `new` on this node (the cluster store's part is [`Controller::commit`]'s).
    fn commit_local(&mut self, fx: &mut dyn Effects, mut new: Model, failed: &str) -> Outcome<()> {
        let old = std::mem::replace(&mut self.model, Model::new());
        let plan = Plan::between(&old, &new, self.uplink, &self.uplink_name(fx));
        let path_mtus = self.path_mtus.clone();
        let mtu_of = |addr: SocketAddr| {
            path_mtus
                .get(&addr.ip())
                .copied()
                .unwrap_or(DEFAULT_PATH_MTU)
        };
        let storm = self.config.storm_limit;
        if let Err(err) = model::sync(&self.dp, &old, &new, mtu_of, storm) {
            let _ = model::sync(&self.dp, &new, &old, mtu_of, storm);
            self.model = old;
            return Err(err.context(failed));
        }
        let mut undo: Vec<Step> = Vec::new();
        let mut point_of_no_return = false;
        let mut intent_saved = false;
        for step in &plan.steps {
            let result = match step {
                Step::SaveIntent => {
                    let intents = intents(&old, &new);
                    let mut saved = new.to_saved(&self.config.boot_id, &intents);
                    saved.nat_pending = plan.steps.iter().any(|s| matches!(s, Step::ReplaceNat(_)));
                    // A port being created has no interface index yet.
                    fx.save(&saved).map(|()| intent_saved = true)
                }
                Step::CreateTap(id) => {
                    let port = &new.ports[id];
                    fx.create_tap(*id, &port.netns, &port.ifname)
                        .map(|ifindex| {
                            if let Some(port) = new.ports.get_mut(id) {
                                port.ifindex = ifindex;
                            }
                            undo.push(Step::DestroyTap(*id));
                        })
                }
                Step::OpenHostPort(id) => {
                    let port = &new.ports[id];
                    fx.open_host_port(*id, host::netns_arg(port), &port.ifname)
                        .map(|ifindex| {
                            if let Some(port) = new.ports.get_mut(id) {
                                port.ifindex = ifindex;
                            }
                            undo.push(Step::CloseHostPort(*id));
                        })
                }
                Step::CloseHostPort(id) => {
                    fx.close_host_port(*id);
                    undo.push(Step::OpenHostPort(*id));
                    Ok(())
                }
                Step::DestroyTap(id) => {
                    point_of_no_return = true;
                    if let Err(err) = fx.destroy_tap(*id) {
                        let name = old.ports.get(id).map(port_name).unwrap_or_default();
                        let message = format!("cannot remove the TAP of port {id} ({name}): {err}");
                        self.warn_about(Subject::Port(name), message);
                    }
                    Ok(())
                }
                Step::EnableVtep(local) => fx.enable_vtep(*local).map(|bound| {
                    new.vtep = Some(bound);
                    point_of_no_return = true;
                }),
                Step::Save => fx.save(&new.to_saved(&self.config.boot_id, &BTreeMap::new())),
                other => self
                    .run_step(fx, other, &old)
                    .map(|undone| undo.extend(undone)),
            };
            if let Err(err) = result {
                if point_of_no_return {
                    // What cannot be undone stays done; the saved intent lets the next
                    // start finish it.
                    self.model = new;
                    return Err(err.context(format!(
                        "{failed}: the change was made, but not all of it was saved (the next start of switchd finishes it)"
                    )));
                }
                for step in undo.iter().rev() {
                    let undone = match step {
                        Step::DestroyTap(id) => fx.destroy_tap(*id),
                        Step::CloseHostPort(id) => {
                            fx.close_host_port(*id);
                            Ok(())
                        }
                        Step::OpenHostPort(id) => match old.ports.get(id) {
                            Some(port) => fx
                                .open_host_port(*id, host::netns_arg(port), &port.ifname)
                                .map(drop),
                            None => Ok(()),
                        },
                        other => self.run_step(fx, other, &new).map(drop),
                    };
                    if let Err(undo_err) = undone {
                        self.warn(format!("while undoing a failed change: {undo_err}"));
                    }
                }
                let _ = model::sync(&self.dp, &new, &old, mtu_of, storm);
                if intent_saved {
                    if let Err(save_err) =
                        fx.save(&old.to_saved(&self.config.boot_id, &BTreeMap::new()))
                    {
                        self.warn(format!(
                            "cannot save the state after undoing a failed change ({save_err}); the next start finishes the undo"
                        ));
                    }
                }
                self.model = old;
                return Err(err.context(failed));
            }
        }
        self.model = new;
        Ok(())
    }

    /// Runs one uplink, route or NAT step; returns the steps that undo it (back to
    /// `before`, the model the world is moving away from).
    fn run_step(
        &mut self,
        fx: &mut dyn Effects,
        step: &Step,
        before: &Model,
    ) -> Outcome<Vec<Step>> {
        match step {
            Step::CreateUplink => {
                fx.create_uplink()?;
                self.uplink = true;
                Ok(Vec::new())
            }
            Step::Route { subnet, mtu } => {
                fx.route(*subnet, *mtu)
                    .map_err(|e| e.context(format!("cannot route {subnet} into the uplink")))?;
                Ok(vec![Step::Unroute { subnet: *subnet }])
            }
            Step::Unroute { subnet } => {
                // Taking a route away never fails a change: the route only points into
                // the uplink, which nothing answers for now.
                if let Err(err) = fx.unroute(*subnet) {
                    self.warn(format!("cannot remove the uplink route of {subnet}: {err}"));
                }
                let mtu = before
                    .networks
                    .iter()
                    .find(|n| n.subnet == *subnet)
                    .map_or(crate::network::DEFAULT_MTU, |n| n.mtu);
                Ok(vec![Step::Route {
                    subnet: *subnet,
                    mtu,
                }])
            }
            Step::ReplaceNat(rules) => {
                fx.replace_nat(rules)
                    .map_err(|e| e.context("cannot update the NAT (masquerade) rules"))?;
                let uplink = self.uplink_name(fx);
                Ok(vec![Step::ReplaceNat(plan::nat_rules(before, &uplink))])
            }
            Step::SaveIntent
            | Step::Save
            | Step::CreateTap(_)
            | Step::DestroyTap(_)
            | Step::OpenHostPort(_)
            | Step::CloseHostPort(_)
            | Step::EnableVtep(_) => Ok(Vec::new()),
        }
    }

    fn uplink_name(&self, fx: &dyn Effects) -> String {
        fx.uplink_name()
            .unwrap_or_else(|| self.config.uplink_name.clone())
    }

    // ---- ports ----

    fn port_info(&self, fx: &dyn Effects, id: PortId) -> PortInfo {
        let port = &self.model.ports[&id];
        let gone = !fx.netns_is(&port.netns, port.netns_dev, port.netns_ino);
        let (security, storm) =
            model::port_policy(port, &self.model.networks, self.config.storm_limit);
        PortInfo {
            mac: self
                .model
                .networks
                .endpoint_of_port(id)
                .map(|e| e.mac)
                .or(port.mac),
            port_security: security.is_some(),
            storm_limit_pps: storm.map(|s| s.pps),
            kind: port.kind,
            id,
            name: port_name(port),
            netns: port.netns.clone(),
            ifname: port.ifname.clone(),
            ifindex: port.ifindex,
            mode: port.mode.clone(),
            state: match (self.problems.get(&id), gone) {
                (Some(problem), _) => format!("down: {problem}"),
                (None, true) => format!(
                    "orphaned: namespace {} was deleted, but this port keeps it alive; remove the port with `nsutil detach` or `swctl port del`",
                    port.netns.display()
                ),
                (None, false) => "up".to_string(),
            },
        }
    }

    fn port_list(&self, fx: &dyn Effects) -> Vec<PortInfo> {
        self.model
            .ports
            .keys()
            .map(|id| self.port_info(fx, *id))
            .collect()
    }

    /// A port by id (`3`), name (`red/eth0`), or interface name when only one port has it.
    fn resolve_port(&self, text: &str) -> Outcome<PortId> {
        let not_found = || {
            ControlError::new(
                ErrorCode::NoSuchPort,
                format!(
                    "no such port {text:?}: give a port id or name as `swctl port ls` lists them"
                ),
            )
        };
        if let Ok(id) = text.parse::<u32>() {
            return self
                .model
                .ports
                .contains_key(&PortId(id))
                .then_some(PortId(id))
                .ok_or_else(not_found);
        }
        if let Some((id, _)) = self.model.ports.iter().find(|(_, p)| port_name(p) == text) {
            return Ok(*id);
        }
        let by_ifname: Vec<PortId> = self
            .model
            .ports
            .iter()
            .filter(|(_, p)| p.ifname == text)
            .map(|(id, _)| *id)
            .collect();
        match by_ifname.as_slice() {
            [id] => Ok(*id),
            [] => Err(not_found()),
            _ => Err(ControlError::invalid(format!(
                "{text:?} names several ports; use the port id or the full name"
            ))),
        }
    }

    fn find_endpoint(&self, identity: NamespaceId, ifname: &str) -> Option<PortId> {
        self.model
            .ports
            .iter()
            .find(|(_, p)| p.netns_cookie == identity.cookie && p.ifname == ifname)
            .map(|(id, _)| *id)
    }

    fn attach(&mut self, fx: &mut dyn Effects, mut req: AttachRequest) -> Outcome<Attached> {
        validate_ifname(&req.ifname)?;
        // A network decides the port's mode and address.
        let network = match &req.network {
            Some(name) => Some(self.model.networks.find_by_name_or_id(name)?.clone()),
            None if req.ip.is_some() => {
                return Err(ControlError::invalid(
                    "an address can only be assigned on a network: name one",
                ))
            }
            None => None,
        };
        if let Some(network) = &network {
            req.mode = PortMode::Access { vlan: network.vlan };
            if let Some(prefix) = req.prefix_len.filter(|p| *p != network.subnet.prefix_len()) {
                return Err(ControlError::invalid(format!(
                    "network {} is {}, so its addresses are /{}, not /{prefix}; give the address without a prefix or with /{}",
                    network.name,
                    network.subnet,
                    network.subnet.prefix_len(),
                    network.subnet.prefix_len()
                )));
            }
        } else if req.prefix_len.is_some() {
            return Err(ControlError::invalid(
                "a prefix length goes with an address on a network: name one",
            ));
        }
        if network.is_none() && !req.published.is_empty() {
            return Err(ControlError::invalid(
                "published ports need an endpoint on a network: name one",
            ));
        }
        if network.is_none() && (req.name.is_some() || !req.aliases.is_empty()) {
            return Err(ControlError::invalid(
                "names and aliases live on a network: name one",
            ));
        }
        validate_mode(&req.mode)?;
        if !req.netns.is_absolute() {
            return Err(ControlError::invalid(format!(
                "namespace path {} must be absolute",
                req.netns.display()
            )));
        }
        let identity = fx.identify_netns(&req.netns)?;
        if let Some(id) = self.find_endpoint(identity, &req.ifname) {
            let port = &self.model.ports[&id];
            if port.kind != SavedPortKind::Tap {
                return Err(ControlError::conflict(format!(
                    "{} is port {id}, a {} port, not a container's TAP; remove it with `swctl port del {id}` first",
                    req.ifname, port.kind
                )));
            }
            return self.existing_attachment(fx, id, &req);
        }
        let mac = match &network {
            Some(_) => None,
            None => {
                self.check_not_reserved(&req.mode)?;
                if let Some(mac) = req.mac {
                    if !mac.is_valid_source() {
                        return Err(ControlError::invalid(format!(
                            "{mac} is a multicast or zero address; give a unicast MAC"
                        )));
                    }
                    self.check_mac_free(mac, &req.mode)?;
                }
                for address in &req.addresses {
                    if let Some(other) = self.model.ports.values().find(|p| {
                        p.addresses.contains(address)
                            && p.mode.vlans().iter().any(|v| req.mode.is_member(*v))
                    }) {
                        let name = format!(
                            "{}/{}",
                            req.label
                                .clone()
                                .unwrap_or_else(|| default_label(&req.netns)),
                            req.ifname
                        );
                        let message = format!(
                            "{address} is already used by port {} on a VLAN {name} shares; on a plain VLAN switchd has no IPAM to prevent it",
                            port_name(other),
                        );
                        self.warn_about(Subject::Port(name), message);
                    }
                }
                req.mac
            }
        };
        // A global network's address may be lost to another node between picking and
        // claiming it: then the next one is tried (an address asked for is not).
        let mut lost = 0;
        let id = loop {
            let mut new = self.model.clone();
            let id = new.allocate_port_id().ok_or_else(no_port_ids_left)?;
            new.ports.insert(
                id,
                SavedPort {
                    id,
                    label: req
                        .label
                        .clone()
                        .unwrap_or_else(|| default_label(&req.netns)),
                    netns: req.netns.clone(),
                    netns_dev: identity.dev,
                    netns_ino: identity.ino,
                    netns_cookie: identity.cookie,
                    ifname: req.ifname.clone(),
                    ifindex: 0,
                    mode: req.mode.clone(),
                    mac,
                    addresses: if network.is_some() {
                        Vec::new()
                    } else {
                        req.addresses.clone()
                    },
                    port_security: req.port_security,
                    storm_limit_pps: None,
                    pending: None,
                    kind: SavedPortKind::Tap,
                },
            );
            if let Some(network) = &network {
                let ip = new.networks.pick_address_for(
                    &network.name,
                    req.ip,
                    req.container_id.as_deref(),
                )?;
                new.networks.add_endpoint(Endpoint {
                    network: network.name.clone(),
                    port: id,
                    ip,
                    mac: MacAddr::from_ipv4(ip),
                    container_id: req.container_id.clone(),
                    published: Vec::new(),
                    name: req.name.clone(),
                    aliases: req.aliases.clone(),
                })?;
                if !req.published.is_empty() {
                    new.networks.publish(id, &req.published)?;
                }
            }
            match self.commit(fx, new, "attach failed and was rolled back") {
                Ok(()) => break id,
                Err(err) => {
                    if let Some((network, ip)) = self.lost_claim.take() {
                        if req.ip.is_none() && lost < MAX_LOST_CLAIMS {
                            lost += 1;
                            self.model.networks.add_foreign(&network, ip);
                            continue;
                        }
                    }
                    return Err(attach_error(err));
                }
            }
        };
        self.problems.remove(&id);
        let name = port_name(&self.model.ports[&id]);
        self.info_about(
            Subject::Port(name.clone()),
            format!("attached port {id} ({name})"),
        );
        Ok(Attached {
            port: self.port_info(fx, id),
            created: true,
            endpoint: self.endpoint_info(id),
        })
    }

    /// The answer to attaching (namespace, ifname) again: the attachment as it is, if it
    /// is what was asked for.
    fn existing_attachment(
        &self,
        fx: &dyn Effects,
        id: PortId,
        req: &AttachRequest,
    ) -> Outcome<Attached> {
        let endpoint = self.endpoint_info(id);
        let name = port_name(&self.model.ports[&id]);
        match (&req.network, &endpoint) {
            (Some(wanted), Some(endpoint)) if *wanted != endpoint.network => {
                return Err(ControlError::conflict(format!(
                    "{name} is already attached to network {}; detach it first, or attach with another --ifname",
                    endpoint.network
                )))
            }
            (Some(wanted), None) => {
                return Err(ControlError::conflict(format!(
                    "{name} is already attached, but to no network; detach it first to attach it to network {wanted}"
                )))
            }
            (Some(_), Some(endpoint)) => {
                if let Some(ip) = req.ip.filter(|ip| *ip != endpoint.address.addr()) {
                    return Err(ControlError::conflict(format!(
                        "{name} is already attached with address {}; detach it first to change it to {ip}",
                        endpoint.address
                    )));
                }
                let mut wanted = req.published.clone();
                let mut has = endpoint.published.clone();
                wanted.sort();
                has.sort();
                if let Some(wanted) = req.name.as_ref().filter(|n| {
                    !endpoint
                        .name
                        .as_ref()
                        .is_some_and(|has| has.eq_ignore_ascii_case(n))
                }) {
                    return Err(ControlError::conflict(format!(
                        "{name} is already attached with name {}; detach it first to call it {wanted}",
                        endpoint.name.as_deref().unwrap_or("(none)")
                    )));
                }
                if !wanted.is_empty() && wanted != has {
                    return Err(ControlError::conflict(format!(
                        "{name} is already attached and publishes {}; change that with `swctl port publish {name} ...`",
                        crate::portmap::join(&has, ", ", "nothing")
                    )));
                }
            }
            (None, Some(endpoint)) => {
                return Err(ControlError::conflict(format!(
                    "{name} is attached to network {}; name the network to attach it again, or detach it first",
                    endpoint.network
                )))
            }
            (None, None) => {}
        }
        Ok(Attached {
            port: self.port_info(fx, id),
            created: false,
            endpoint,
        })
    }

    fn endpoint_info(&self, id: PortId) -> Option<EndpointInfo> {
        let endpoint = self.model.networks.endpoint_of_port(id)?;
        let network = self.model.networks.get(&endpoint.network)?;
        let port = self.model.ports.get(&id)?;
        Some(EndpointInfo {
            network: network.name.clone(),
            address: Ipv4Net::new(endpoint.ip, network.subnet.prefix_len()).ok()?,
            gateway: network.gateway,
            mac: endpoint.mac,
            mtu: network.mtu,
            port: id,
            port_name: port_name(port),
            ifname: port.ifname.clone(),
            netns: port.netns.clone(),
            container_id: endpoint.container_id.clone(),
            published: endpoint.published.clone(),
            name: endpoint.name.clone(),
            aliases: endpoint.aliases.clone(),
            dns: network.is_routed_here(),
        })
    }

    fn port_publish(
        &mut self,
        fx: &mut dyn Effects,
        port: &str,
        change: Publish,
    ) -> Outcome<EndpointInfo> {
        let id = self.resolve_port(port)?;
        let has = self
            .model
            .networks
            .endpoint_of_port(id)
            .map(|e| e.published.clone())
            .unwrap_or_default();
        let published = match change {
            Publish::Set {
                published,
                add: false,
            } => published,
            Publish::Set {
                mut published,
                add: true,
            } => {
                published.retain(|m| !has.contains(m));
                has.iter().copied().chain(published).collect()
            }
            Publish::Unset(gone) if gone.is_empty() => Vec::new(),
            Publish::Unset(gone) => {
                if let Some(missing) = gone.iter().find(|m| !has.contains(m)) {
                    return Err(ControlError::new(
                        ErrorCode::NoSuchEntry,
                        format!(
                            "port {port} does not publish {missing}; it publishes {}",
                            crate::portmap::join(&has, ", ", "nothing")
                        ),
                    ));
                }
                has.iter().copied().filter(|m| !gone.contains(m)).collect()
            }
        };
        let mut new = self.model.clone();
        new.networks.publish(id, &published)?;
        if new == self.model {
            return self
                .endpoint_info(id)
                .ok_or_else(|| ControlError::system("endpoint vanished"));
        }
        self.commit(fx, new, "cannot publish the ports, left as they were")?;
        let info = self
            .endpoint_info(id)
            .ok_or_else(|| ControlError::system("endpoint vanished"))?;
        let message = format!(
            "port {id} ({}) publishes {}",
            info.address.addr(),
            crate::portmap::join(&info.published, ", ", "nothing")
        );
        self.info_about(Subject::Port(info.port_name.clone()), message);
        Ok(info)
    }

    /// Removes port `id` (and its TAP, address and static entries).
    fn remove_port(&mut self, fx: &mut dyn Effects, id: PortId) -> Outcome<PortInfo> {
        let info = self.port_info(fx, id);
        if let Some(network) = self.model.networks.iter().find(|n| n.parent == Some(id)) {
            return Err(ControlError::conflict(format!(
                "port {} is the parent of LAN network {}; remove the network first (`swctl network rm {}`)",
                info.name, network.name, network.name
            )));
        }
        let mut new = self.model.clone();
        new.remove_port(id);
        self.commit(fx, new, &format!("cannot remove port {}", info.name))?;
        self.problems.remove(&id);
        let message = format!("detached port {id} ({})", info.name);
        self.info_about(Subject::Port(info.name.clone()), message);
        Ok(info)
    }

    fn detach(&mut self, fx: &mut dyn Effects, netns: &Path, ifname: &str) -> Outcome<Detached> {
        // The namespace may already be gone; then match the path as given.
        let id = match fx.identify_netns(netns) {
            Ok(identity) => self.find_endpoint(identity, ifname),
            Err(_) => self
                .model
                .ports
                .iter()
                .find(|(_, p)| p.netns == netns && p.ifname == ifname)
                .map(|(id, _)| *id),
        };
        match id {
            None => Ok(Detached { port: None }),
            Some(id) => Ok(Detached {
                port: Some(self.remove_port(fx, id)?),
            }),
        }
    }

    fn port_del(&mut self, fx: &mut dyn Effects, port: &str) -> Outcome<PortInfo> {
        let id = self.resolve_port(port)?;
        self.remove_port(fx, id)
    }

    fn port_set(
        &mut self,
        fx: &mut dyn Effects,
        port: &str,
        mode: Option<PortMode>,
        port_security: Option<bool>,
        storm_limit_pps: Option<u32>,
    ) -> Outcome<PortInfo> {
        if mode.is_none() && port_security.is_none() && storm_limit_pps.is_none() {
            return Err(ControlError::invalid(
                "nothing to change: give a mode, port security or a storm limit",
            ));
        }
        let id = self.resolve_port(port)?;
        let mut new = self.model.clone();
        let Some(record) = new.ports.get_mut(&id) else {
            return Err(ControlError::new(
                ErrorCode::NoSuchPort,
                format!("no such port {port:?}"),
            ));
        };
        if let Some(mode) = mode {
            validate_mode(&mode)?;
            if let Some(endpoint) = self.model.networks.endpoint_of_port(id) {
                return Err(ControlError::conflict(format!(
                    "port {port} is an endpoint of network {}, which decides its VLAN; detach it instead",
                    endpoint.network
                )));
            }
            if record.kind == SavedPortKind::Tap {
                self.check_not_reserved(&mode)?;
            } else {
                self.check_vlans_free(Some(id), record.kind, &mode)?;
            }
            record.mode = mode;
        }
        if port_security.is_some() {
            record.port_security = port_security;
        }
        if storm_limit_pps.is_some() {
            record.storm_limit_pps = storm_limit_pps;
        }
        self.commit(fx, new, "cannot save the change, left unchanged")?;
        let port = &self.model.ports[&id];
        let message = format!(
            "port {id} ({}) reconfigured: {}",
            port_name(port),
            port.mode
        );
        self.info_about(Subject::Port(port_name(port)), message);
        Ok(self.port_info(fx, id))
    }

    /// Refuses a mode that carries a network's VLAN: a network's VLAN belongs to it, and
    /// only its endpoints (attached with the network named) may be on it.
    fn check_not_reserved(&self, mode: &PortMode) -> Outcome<()> {
        for vlan in mode.vlans() {
            if let Some(network) = self.model.networks.by_vlan(vlan) {
                return Err(ControlError::conflict(format!(
                    "VLAN {vlan} belongs to network {}; attach with `--network {}` instead of naming its VLAN",
                    network.name, network.name
                )));
            }
        }
        Ok(())
    }

    /// Refuses a MAC that another port already uses on one of `mode`'s VLANs.
    fn check_mac_free(&self, mac: MacAddr, mode: &PortMode) -> Outcome<()> {
        let vlans = mode.vlans();
        for (id, port) in &self.model.ports {
            let theirs = self
                .model
                .networks
                .endpoint_of_port(*id)
                .map(|e| e.mac)
                .or(port.mac);
            if theirs == Some(mac) && port.mode.vlans().iter().any(|v| vlans.contains(v)) {
                return Err(ControlError::conflict(format!(
                    "MAC {mac} is already used by port {} on a VLAN this port would share; give another --mac",
                    port_name(port)
                )));
            }
        }
        Ok(())
    }

    // ---- the FDB ----

    fn fdb_show(
        &self,
        clock: Clock,
        vlan: Option<VlanId>,
        port: Option<&str>,
    ) -> Outcome<Vec<FdbRecord>> {
        let port = port.map(|p| self.resolve_any_port(p)).transpose()?;
        let mut records: Vec<FdbRecord> = self
            .dp
            .switch()
            .fdb()
            .entries(clock.now)
            .into_iter()
            .filter(|e| vlan.is_none_or(|v| e.vlan == v))
            .filter(|e| port.is_none_or(|p| e.port == p))
            .map(|entry| self.fdb_record(entry))
            .collect();
        records.sort_by_key(|r| (r.entry.vlan, r.entry.mac));
        Ok(records)
    }

    fn fdb_add(
        &mut self,
        fx: &mut dyn Effects,
        clock: Clock,
        mac: MacAddr,
        vlan: VlanId,
        port: Option<&str>,
        vtep: Option<IpAddr>,
    ) -> Outcome<FdbRecord> {
        let id = match (port, vtep) {
            (Some(port), None) => {
                let id = self.resolve_port(port)?;
                let mode = &self.model.ports[&id].mode;
                if !mode.is_member(vlan) {
                    return Err(ControlError::conflict(format!(
                        "port {port} ({mode}) does not carry VLAN {vlan}; frames for {mac} could never leave through it"
                    )));
                }
                id
            }
            (None, Some(addr)) => {
                let id = self.peer_port(addr).ok_or_else(|| {
                    ControlError::new(
                        ErrorCode::NoSuchPeer,
                        format!("{addr} is not a VXLAN peer; add it first with `swctl vxlan peer add {addr}`"),
                    )
                })?;
                if !self.model.vni_map.contains_key(&vlan) {
                    return Err(ControlError::conflict(format!(
                        "VLAN {vlan} has no VNI, so nothing of it reaches {addr}; map it first with `swctl vxlan map --vlan {vlan} --vni N`"
                    )));
                }
                id
            }
            _ => {
                return Err(ControlError::invalid(
                    "give exactly one of a port or a VTEP for the entry",
                ))
            }
        };
        if !mac.is_valid_source() {
            return Err(crate::fdb::FdbError::NotUnicast(mac).into());
        }
        let mut new = self.model.clone();
        new.statics.insert((vlan, mac), id);
        self.commit(fx, new, "cannot save the entry, not added")?;
        let entry = self
            .dp
            .switch()
            .fdb()
            .get(clock.now, vlan, mac)
            .ok_or_else(|| ControlError::system("the entry vanished"))?;
        Ok(self.fdb_record(entry))
    }

    /// An FDB entry with the name of its port and, for remote MACs, the VTEP.
    fn fdb_record(&self, entry: FdbEntry) -> FdbRecord {
        FdbRecord {
            port_name: self.any_port_name(entry.port),
            vtep: self.model.peers.get(&entry.port).map(|addr| addr.ip()),
            entry,
        }
    }

    /// The name of a local port (`red/eth0`) or of a peer's tunnel port (`vtep:192.0.2.2`).
    fn any_port_name(&self, id: PortId) -> String {
        match (self.model.ports.get(&id), self.model.peers.get(&id)) {
            (Some(port), _) => port_name(port),
            (None, Some(addr)) => format!("vtep:{}", addr.ip()),
            (None, None) => id.to_string(),
        }
    }

    fn peer_port(&self, addr: IpAddr) -> Option<PortId> {
        self.model
            .peers
            .iter()
            .find(|(_, a)| a.ip() == addr)
            .map(|(id, _)| *id)
    }

    /// A local port as `resolve_port` finds it, or a peer as `vtep:ADDR` or `ADDR`.
    fn resolve_any_port(&self, text: &str) -> Outcome<PortId> {
        let addr = text.strip_prefix("vtep:").unwrap_or(text);
        if let Some(id) = addr
            .parse::<IpAddr>()
            .ok()
            .and_then(|ip| self.peer_port(ip))
        {
            return Ok(id);
        }
        self.resolve_port(text)
    }

    fn fdb_del(
        &mut self,
        fx: &mut dyn Effects,
        clock: Clock,
        mac: MacAddr,
        vlan: VlanId,
    ) -> Outcome<FdbRecord> {
        let fdb = self.dp.switch().fdb();
        let entry = fdb.get(clock.now, vlan, mac).ok_or_else(|| {
            ControlError::new(
                ErrorCode::NoSuchEntry,
                format!("no FDB entry for {mac} in VLAN {vlan}"),
            )
        })?;
        if entry.is_static && self.model.statics.contains_key(&(vlan, mac)) {
            let mut new = self.model.clone();
            new.statics.remove(&(vlan, mac));
            self.commit(fx, new, "cannot save, entry kept")?;
        } else {
            fdb.remove(vlan, mac);
        }
        Ok(self.fdb_record(entry))
    }

    fn fdb_flush(
        &mut self,
        fx: &mut dyn Effects,
        vlan: Option<VlanId>,
        port: Option<&str>,
        include_static: bool,
    ) -> Outcome<Flushed> {
        let port = port.map(|p| self.resolve_any_port(p)).transpose()?;
        let learned = self.dp.switch().fdb().flush(FlushFilter {
            port,
            vlan,
            include_static: false,
        });
        let mut removed = learned;
        if include_static {
            let mut new = self.model.clone();
            new.statics.retain(|(v, _), p| {
                !(vlan.is_none_or(|want| *v == want) && port.is_none_or(|want| *p == want))
            });
            removed += self.model.statics.len() - new.statics.len();
            self.commit(
                fx,
                new,
                &format!("flushed {learned} learned entries, but the static ones were kept"),
            )?;
        }
        Ok(Flushed { removed })
    }

    fn stats(&self, clock: Clock) -> Stats {
        let switch = self.dp.switch();
        let fdb = switch.fdb();
        let config = fdb.config();
        let port_stats = |id: PortId| PortStats {
            id,
            name: self.any_port_name(id),
            counters: switch.counters(id).unwrap_or_default(),
        };
        Stats {
            ports: self
                .model
                .ports
                .keys()
                .chain(self.model.peers.keys())
                .map(|id| port_stats(*id))
                .collect(),
            fdb: FdbStats {
                entries: fdb.entries(clock.now).len(),
                max_entries: config.max_entries,
                max_per_port: config.max_per_port,
                aging_secs: config.aging.as_secs(),
                counters: fdb.counters(),
            },
            unattributed_drops: switch.unattributed_drops(),
        }
    }

    // ---- the overlay ----

    fn vtep(&self, fx: &dyn Effects) -> Outcome<SocketAddr> {
        fx.vtep().ok_or_else(|| {
            ControlError::new(
                ErrorCode::NoOverlay,
                "switchd has no VTEP, so no VXLAN overlay; enable it with `swctl vxlan enable --vtep ADDR[:PORT]` (this host's underlay address)",
            )
        })
    }

    /// Makes switchd a VTEP at `text` while it runs, and remembers it for the next
    /// start. Refused when it is one already: there is one VTEP per switchd, and no
    /// taking it back while it runs.
    fn vxlan_enable(&mut self, fx: &mut dyn Effects, text: &str) -> Outcome<VxlanInfo> {
        let local = crate::control::parse_vtep(text).map_err(ControlError::invalid)?;
        if let Some(current) = fx.vtep() {
            return Err(ControlError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "VXLAN is enabled already: there is already a VTEP at {current} (one per switchd, for as long as it runs; to move it, restart switchd with --vtep ADDR)"
                ),
            ));
        }
        let mut new = self.model.clone();
        new.vtep = Some(local);
        self.commit(fx, new, "cannot enable VXLAN")?;
        let info = self.vxlan_info(fx)?;
        self.info(format!("VXLAN enabled: VTEP {}", info.local));
        Ok(info)
    }

    fn vxlan_info(&self, fx: &dyn Effects) -> Outcome<VxlanInfo> {
        let local = self.vtep(fx)?;
        let switch = self.dp.switch();
        Ok(VxlanInfo {
            local,
            map: self.model.vni_mappings(),
            peers: self
                .model
                .peers
                .iter()
                .map(|(id, addr)| self.peer_info(*id, *addr))
                .collect(),
            unattributed_drops: switch.unattributed_drops(),
            icmp_frag_needed_sent: self.dp.frag_needed_sent(),
            accept_inner_tagged: switch.accepts_inner_tagged(),
        })
    }

    fn peer_info(&self, id: PortId, addr: SocketAddr) -> PeerInfo {
        let path_mtu = self
            .path_mtus
            .get(&addr.ip())
            .copied()
            .unwrap_or(DEFAULT_PATH_MTU);
        PeerInfo {
            addr,
            port: id,
            node: self.model.cluster.peers.get(&id).cloned(),
            path_mtu,
            inner_mtu: max_inner_frame(addr, path_mtu).saturating_sub(14) as u32,
            counters: self.dp.switch().counters(id).unwrap_or_default(),
        }
    }

    fn vxlan_map(&mut self, fx: &mut dyn Effects, vlan: VlanId, vni: Vni) -> Outcome<VxlanInfo> {
        self.vtep(fx)?;
        self.check_overlay_not_reserved(vlan, Some(vni))?;
        if let Some((other, _)) = self
            .model
            .vni_map
            .iter()
            .find(|(v, n)| **n == vni && **v != vlan)
        {
            return Err(ControlError::conflict(format!(
                "VNI {vni} is already mapped to VLAN {other}; unmap it first"
            )));
        }
        let mut new = self.model.clone();
        new.vni_map.insert(vlan, vni);
        self.commit(fx, new, "cannot save the mapping, left unchanged")?;
        self.info_about(
            Subject::Vlan(vlan),
            format!("VLAN {vlan} mapped to VNI {vni}"),
        );
        self.vxlan_info(fx)
    }

    fn vxlan_unmap(&mut self, fx: &mut dyn Effects, vlan: VlanId) -> Outcome<VxlanInfo> {
        self.vtep(fx)?;
        self.check_overlay_not_reserved(vlan, None)?;
        let mut new = self.model.clone();
        let vni = new.vni_map.remove(&vlan).ok_or_else(|| {
            ControlError::new(ErrorCode::NoSuchEntry, format!("VLAN {vlan} has no VNI"))
        })?;
        self.commit(fx, new, "cannot save, mapping kept")?;
        self.info_about(
            Subject::Vlan(vlan),
            format!("VLAN {vlan} unmapped from VNI {vni}"),
        );
        self.vxlan_info(fx)
    }

    /// Refuses to remap a network's VLAN, or to map another VLAN to a network's VNI:
    /// both belong to the network (`swctl network create --vni` set them).
    fn check_overlay_not_reserved(&self, vlan: VlanId, vni: Option<Vni>) -> Outcome<()> {
        if let Some(network) = self.model.networks.by_vlan(vlan) {
            return Err(ControlError::conflict(format!(
                "VLAN {vlan} belongs to network {}, which decides its VNI; recreate the network to change it",
                network.name
            )));
        }
        if let Some(network) =
            vni.and_then(|vni| self.model.networks.iter().find(|n| n.vni == Some(vni)))
        {
            return Err(ControlError::conflict(format!(
                "VNI {} belongs to network {}; pick another VNI",
                network.vni.map_or_else(String::new, |v| v.to_string()),
                network.name
            )));
        }
        Ok(())
    }

    fn peer_add(&mut self, fx: &mut dyn Effects, text: &str) -> Outcome<PeerInfo> {
        let local = self.vtep(fx)?;
        let addr = parse_peer(text, local.port())?;
        if addr.is_ipv4() != local.is_ipv4() {
            return Err(ControlError::invalid(format!(
                "{addr} and this VTEP ({local}) are not the same IP version"
            )));
        }
        if addr.ip() == local.ip() || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return Err(ControlError::invalid(format!(
                "{} cannot be a peer: it must be another host's unicast address",
                addr.ip()
            )));
        }
        if self.peer_port(addr.ip()).is_some() {
            return Err(ControlError::new(
                ErrorCode::AlreadyExists,
                format!("{} is already a peer", addr.ip()),
            ));
        }
        let mtu = fx.path_mtu(addr);
        self.path_mtus.insert(addr.ip(), mtu);
        let mut new = self.model.clone();
        let id = new.allocate_port_id().ok_or_else(no_port_ids_left)?;
        new.peers.insert(id, addr);
        if let Err(err) = self.commit(fx, new, "cannot save the peer, not added") {
            self.path_mtus.remove(&addr.ip());
            return Err(err);
        }
        self.info_about(
            Subject::Port(format!("vtep:{}", addr.ip())),
            format!("VXLAN peer {addr} added as port {id}, path MTU {mtu}"),
        );
        Ok(self.peer_info(id, addr))
    }

    fn peer_del(&mut self, fx: &mut dyn Effects, text: &str) -> Outcome<PeerInfo> {
        let local = self.vtep(fx)?;
        let addr = parse_peer(text, local.port())?;
        let id = self.peer_port(addr.ip()).ok_or_else(|| {
            ControlError::new(
                ErrorCode::NoSuchPeer,
                format!("{} is not a peer", addr.ip()),
            )
        })?;
        if let Some(node) = self.model.cluster.peers.get(&id) {
            return Err(ControlError::conflict(format!(
                "{} is cluster node {node}'s VTEP: the cluster store manages it (it goes when the node leaves)",
                addr.ip()
            )));
        }
        let info = self.peer_info(id, self.model.peers[&id]);
        let mut new = self.model.clone();
        new.remove_peer(id);
        self.commit(fx, new, "cannot save, peer kept")?;
        self.path_mtus.remove(&addr.ip());
        self.info_about(
            Subject::Port(format!("vtep:{}", info.addr.ip())),
            format!("VXLAN peer {} removed", info.addr),
        );
        Ok(info)
    }

    // ---- networks ----

    fn network_info(&self, fx: &dyn Effects, network: &Network) -> NetworkInfo {
        let _ = fx;
        NetworkInfo {
            name: network.name.clone(),
            id: network.id.clone(),
            driver: network.driver().to_string(),
            created: rfc3339(network.created),
            subnet: network.subnet,
            gateway: network.gateway,
            vlan: network.vlan,
            vni: network.vni,
            ip_range: network.ip_range,
            mtu: network.mtu,
            internal: network.internal,
            masquerade: network.masquerade,
            gateway_mac: network.router_mac(),
            options: network_options(network),
            endpoints: self
                .model
                .networks
                .endpoints_of(&network.name)
                .filter_map(|e| self.endpoint_info(e.port))
                .collect(),
            reservations: self
                .model
                .networks
                .reservations()
                .iter()
                .filter(|r| r.network == network.name)
                .cloned()
                .collect(),
            scope: network.scope,
            remote_endpoints: self.remote_endpoints(&network.name),
            local_ids: network.local_ids.clone(),
            parent: network.parent.map(|id| {
                self.model
                    .ports
                    .get(&id)
                    .map_or_else(|| id.to_string(), port_name)
            }),
            aux_addresses: network.aux_addresses.clone(),
        }
    }

    fn network_rename(
        &mut self,
        fx: &mut dyn Effects,
        name: &str,
        new_name: &str,
    ) -> Outcome<NetworkInfo> {
        let network = self.model.networks.find_by_name_or_id(name)?;
        if network.scope == crate::network::Scope::Global {
            return Err(ControlError::conflict(format!(
                "network {} is global: its name is the cluster's, the same on every node, and stays",
                network.name
            )));
        }
        let old = network.name.clone();
        let mut new = self.model.clone();
        new.networks.rename(&old, new_name)?;
        self.commit(fx, new, &format!("cannot rename network {old}"))?;
        self.info_about(
            Subject::Network(new_name.to_string()),
            format!("network {old} renamed to {new_name}"),
        );
        let network = self.model.networks.find(new_name)?.clone();
        Ok(self.network_info(fx, &network))
    }

    fn address_reserve(
        &mut self,
        fx: &mut dyn Effects,
        network: &str,
        ip: Option<std::net::Ipv4Addr>,
        owner: &str,
    ) -> Outcome<crate::control::Reserved> {
        if owner.is_empty() || owner.len() > 256 || owner.chars().any(char::is_control) {
            return Err(ControlError::invalid(
                "a reservation's owner is 1 to 256 printable characters",
            ));
        }
        let net = self.model.networks.find_by_name_or_id(network)?.clone();
        let mut new = self.model.clone();
        let address = new.networks.reserve(&net.name, ip, owner)?;
        self.commit(
            fx,
            new,
            &format!("cannot reserve an address in network {}", net.name),
        )?;
        Ok(crate::control::Reserved {
            network: net.name.clone(),
            address: Ipv4Net::new(address, net.subnet.prefix_len())
                .map_err(|e| ControlError::system(e.to_string()))?,
            owner: owner.to_string(),
        })
    }

    fn address_release(
        &mut self,
        fx: &mut dyn Effects,
        network: &str,
        ip: std::net::Ipv4Addr,
    ) -> Outcome<crate::control::Reserved> {
        let net = self.model.networks.find_by_name_or_id(network)?.clone();
        let mut new = self.model.clone();
        let released = new.networks.release(&net.name, ip)?;
        self.commit(
            fx,
            new,
            &format!("cannot release {ip} in network {}", net.name),
        )?;
        Ok(crate::control::Reserved {
            network: net.name.clone(),
            address: Ipv4Net::new(ip, net.subnet.prefix_len())
                .map_err(|e| ControlError::system(e.to_string()))?,
            owner: released.owner,
        })
    }

    fn subnet_suggest(
        &mut self,
        fx: &mut dyn Effects,
        internal: bool,
    ) -> Outcome<crate::control::Suggested> {
        let host_routes = routes_to_avoid(fx, internal)?;
        Ok(crate::control::Suggested {
            subnet: self.model.networks.free_subnet(&host_routes)?,
        })
    }

    /// Records that a runtime moved port `port`'s TAP into the namespace at `netns`
    /// (Docker moves it into the container after Join), as the TAP's descriptor says.
    fn port_moved(&mut self, fx: &mut dyn Effects, port: &str, netns: &Path) -> Outcome<PortInfo> {
        let id = self.resolve_port(port)?;
        if self.model.ports[&id].kind != SavedPortKind::Tap {
            return Err(ControlError::conflict(format!(
                "port {port} is a {} port: only containers' TAPs move",
                self.model.ports[&id].kind
            )));
        }
        let target = fx.identify_netns(netns)?;
        let (actual, ifname, ifindex) = fx.locate_tap(id)?;
        if actual.cookie != target.cookie {
            return Err(ControlError::conflict(format!(
                "port {port}'s TAP is not in namespace {}; nothing changed",
                netns.display()
            )));
        }
        let mut new = self.model.clone();
        if let Some(record) = new.ports.get_mut(&id) {
            record.netns = netns.to_path_buf();
            record.netns_dev = target.dev;
            record.netns_ino = target.ino;
            record.netns_cookie = target.cookie;
            record.ifname = ifname;
            record.ifindex = ifindex;
        }
        self.commit(fx, new, "cannot save where the port went, left as it was")?;
        let message = format!(
            "port {id} now lives in {} as {}",
            netns.display(),
            self.model.ports[&id].ifname
        );
        self.info_about(Subject::Port(port_name(&self.model.ports[&id])), message);
        Ok(self.port_info(fx, id))
    }

    /// The VLANs ports and the overlay's map use: what a new network must not take.
    fn busy_vlans(&self) -> std::collections::BTreeSet<VlanId> {
        self.model
            .vni_map
            .keys()
            .copied()
            .chain(self.model.ports.values().flat_map(|p| p.mode.vlans()))
            .collect()
    }

    fn network_create(
        &mut self,
        fx: &mut dyn Effects,
        clock: Clock,
        config: &NetworkConfig,
    ) -> Outcome<NetworkInfo> {
        if config.scope == crate::network::Scope::Global {
            if config.parent.is_some() {
                return Err(crate::network::NetworkError::LanCannot("global").into());
            }
            return self.network_create_global(fx, clock, config);
        }
        // A LAN network: its parent decides its VLAN and MTU.
        let (parent, lan_config) = match &config.parent {
            Some(_) => {
                let (id, resolved) = self.lan_config(fx, config)?;
                (Some(id), resolved)
            }
            None => (None, config.clone()),
        };
        let config = &lan_config;
        let host_routes = routes_to_avoid(fx, config.internal || parent.is_some())?;
        let busy = self.busy_vlans();
        if config.vni.is_some() && fx.vtep().is_none() {
            return Err(ControlError::new(
                ErrorCode::NoOverlay,
                "an overlay network (--vni) needs a VTEP; enable it with `swctl vxlan enable --vtep ADDR[:PORT]`",
            ));
        }
        let mut network = self.model.networks.plan(
            config,
            fx.random_id()?,
            clock.unix_secs,
            &host_routes,
            |vlan| busy.contains(&vlan),
        )?;
        network.parent = parent;
        let mut new = self.model.clone();
        if let Some(vni) = network.vni {
            if let Some((vlan, _)) = new.vni_map.iter().find(|(_, v)| **v == vni) {
                return Err(ControlError::conflict(format!(
                    "VNI {vni} already carries VLAN {vlan} (`swctl vxlan show`); pick another VNI"
                )));
            }
            new.vni_map.insert(network.vlan, vni);
        }
        new.networks.insert(network.clone());
        self.commit(fx, new, &format!("cannot create network {}", network.name))?;
        let message = format!(
            "network {} created ({}, VLAN {})",
            network.name, network.subnet, network.vlan
        );
        self.info_about(Subject::Network(network.name.clone()), message);
        Ok(self.network_info(fx, &network))
    }

    fn network_remove(&mut self, fx: &mut dyn Effects, name: &str) -> Outcome<NetworkInfo> {
        let found = self.model.networks.find_by_name_or_id(name)?.clone();
        if let Some(local_id) = found
            .local_ids
            .iter()
            .find(|id| *id == name || (name.len() >= 12 && id.starts_with(name)))
        {
            let local_id = local_id.clone();
            return self.forget_local_id(fx, &found, &local_id);
        }
        let name = found.name.clone();
        let name = name.as_str();
        let network = self.model.networks.check_removable(name)?.clone();
        let info = self.network_info(fx, &network);
        if network.scope == crate::network::Scope::Global {
            self.network_remove_global(fx, &network)?;
        }
        let mut new = self.model.clone();
        new.networks.remove(name)?;
        if let Some(vni) = network.vni {
            if new.vni_map.get(&network.vlan) == Some(&vni) {
                new.vni_map.remove(&network.vlan);
            }
        }
        self.commit(
            fx,
            new,
            &format!("cannot save the removal of network {name}, kept it"),
        )?;
        self.info_about(
            Subject::Network(name.to_string()),
            format!("network {name} removed"),
        );
        Ok(info)
    }

    fn router_info(&self, fx: &dyn Effects) -> RouterInfo {
        let (neighbors, counters) = {
            let router = self.dp.router();
            (router.neighbors(), router.counters())
        };
        RouterInfo {
            uplink: if self.uplink { fx.uplink_name() } else { None },
            neighbors,
            counters,
            dns: self.dp.dns().counters(),
        }
    }
}

/// Which ports `new` adds to `old` (being created) and removes (being removed).
fn intents(old: &Model, new: &Model) -> BTreeMap<PortId, (SavedPort, Pending)> {
    let mut intents = BTreeMap::new();
    for (id, port) in &new.ports {
        if !old.ports.contains_key(id) {
            intents.insert(*id, (port.clone(), Pending::Creating));
        }
    }
    for (id, port) in &old.ports {
        if !new.ports.contains_key(id) {
            intents.insert(*id, (port.clone(), Pending::Removing));
        }
    }
    intents
}

/// The host's routes a network must not overlap: none for an internal one, which is not
/// routed.
fn routes_to_avoid(fx: &mut dyn Effects, internal: bool) -> Outcome<Vec<Ipv4Net>> {
    if internal {
        Ok(Vec::new())
    } else {
        fx.host_routes()
    }
}

/// How many addresses an attach may lose to other nodes' claims before it gives up.
const MAX_LOST_CLAIMS: usize = 16;

/// An attach's error as the caller sees it: the TAP's own error says it all (the
/// interface name is taken...), without the rollback's preamble.
fn attach_error(err: ControlError) -> ControlError {
    match err.code {
        ErrorCode::AlreadyExists | ErrorCode::SystemError | ErrorCode::NamespaceUnavailable => {
            ControlError::new(
                err.code,
                err.message
                    .trim_start_matches("attach failed and was rolled back: ")
                    .to_string(),
            )
        }
        _ => err,
    }
}

fn to_value<T: Serialize>(outcome: Outcome<T>) -> Outcome<serde_json::Value> {
    outcome.and_then(|value| {
        serde_json::to_value(value)
            .map_err(|err| ControlError::system(format!("cannot encode the answer: {err}")))
    })
}

/// `label/ifname`, the name users see.
fn no_port_ids_left() -> ControlError {
    ControlError::new(
        ErrorCode::Conflict,
        format!(
            "every port id below {} has been given out; no port or peer can be added",
            u32::MAX
        ),
    )
}

pub fn port_name(port: &SavedPort) -> String {
    if port.label.is_empty() {
        // A host or internal port of switchd's own namespace.
        return port.ifname.clone();
    }
    format!("{}/{}", port.label, port.ifname)
}

/// The label for a namespace path: `red` for /run/netns/red, `pid:42` for /proc/42/ns/net.
pub fn default_label(netns: &Path) -> String {
    let text = netns.to_string_lossy();
    if let Some(name) = text
        .strip_prefix("/run/netns/")
        .or_else(|| text.strip_prefix("/var/run/netns/"))
    {
        return name.to_string();
    }
    if let Some(pid) = text
        .strip_prefix("/proc/")
        .and_then(|rest| rest.strip_suffix("/ns/net"))
    {
        return format!("pid:{pid}");
    }
    text.into_owned()
}

fn validate_ifname(ifname: &str) -> Outcome<()> {
    // IFNAMSIZ is 16, with the terminating NUL.
    let ok = !ifname.is_empty()
        && ifname.len() < 16
        && ifname != "."
        && ifname != ".."
        && !ifname
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(ControlError::invalid(format!(
            "invalid interface name {ifname:?}: use 1 to 15 characters without '/', ':' or spaces"
        )))
    }
}

fn validate_mode(mode: &PortMode) -> Outcome<()> {
    match mode {
        PortMode::Trunk {
            allowed,
            native: None,
        } if allowed.is_empty() => Err(ControlError::invalid(
            "a trunk port must allow at least one VLAN or have a native VLAN",
        )),
        _ => Ok(()),
    }
}

/// `IP`, `IP:PORT`, `[IPv6]:PORT`; the port defaults to our own VXLAN port.
fn parse_peer(text: &str, default_port: u16) -> Outcome<SocketAddr> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| ControlError::invalid(format!("invalid VTEP address {text:?}: expected IP or IP:PORT, such as 192.0.2.2 or [2001:db8::2]:4789")))
}

fn network_options(network: &Network) -> BTreeMap<String, String> {
    let mut options = BTreeMap::new();
    options.insert("mtu".to_string(), network.mtu.to_string());
    options.insert("masquerade".to_string(), network.masquerade.to_string());
    options.insert("internal".to_string(), network.internal.to_string());
    options.insert("vlan".to_string(), network.vlan.to_string());
    if let Some(vni) = network.vni {
        options.insert("vni".to_string(), vni.to_string());
    }
    if let Some(range) = network.ip_range {
        options.insert("ip_range".to_string(), range.to_string());
    }
    options
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp.
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;

/// How a request changes an endpoint's published ports.
enum Publish {
    /// Replace them (or, with `add`, add these).
    Set {
        published: Vec<PortMapping>,
        add: bool,
    },
    /// Remove these (none: all).
    Unset(Vec<PortMapping>),
}
