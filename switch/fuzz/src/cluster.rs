//! `cluster`: the cluster store's contents as outside input. Steps write arbitrary and
//! real-layout keys with fuzzed values into a [`FakeStore`], delete them, end and grant
//! leases and compact the history; node `h1` follows the store as switchd's cluster
//! thread does (a [`ClusterView`] fed by `events_since`, restarted from a snapshot when
//! the history it needs was compacted), and after every step its picture
//! (`view.remote("h1")`) goes to a [`Controller`] over a [`FakeSystem`] with a VTEP and
//! the store, as [`Controller::cluster_update`]. The controller can also attach and
//! detach endpoints of the global networks it learnt, claiming their addresses in the
//! store, and `h1` can register again ([`OwnKeys::resync`]).
//!
//! Input: at most [`MAX_STEPS`] steps of a selector, four argument bytes `a0..a3` and a
//! chunk ([`crate::Input`]). A layout key is chosen by the arguments ([`layout_key`]):
//! kind `a0` % 6 (node, network, VNI, VLAN, address, endpoint), network
//! [`NETWORKS`]`[a1 & 1]`, node [`NODES`]`[(a1 >> 1) % 3]`, address 10.(40 + net).0.(`a2`
//! % 16), VNI 4096 + `a2` % 4, VLAN 4094 − `a2` % 4; a put is bound to lease (`a3` &
//! 0x7f) % 3 (one per node) when `a3` has bit 7. Selector % 10:
//! 0 puts the chunk as key (its first `a0` bytes, under the prefix unless `a1` is odd)
//! and value (the rest); 1 puts a layout key with the chunk as its value; 2 a layout key
//! with a well-formed record read from the chunk ([`record_of`]); 3 deletes a layout key,
//! or the prefix and the chunk if there is one; 4 ends lease `a0` % 3, or grants a new
//! one if it had ended; 5 compacts; 6 takes a snapshot, adds the chunk's (key, value)
//! chunks to it and resyncs `h1`'s own keys against it (`a0` bit 0: registers `h1` again,
//! running the resync on the store; bit 1: the view restarts from a snapshot); 7 makes
//! the watch lag `a0` % 8 steps, start again `a1` % 4 revisions early (delivering
//! changes seen before) and deliver one batch per revision (`a2` odd); 8 attaches an
//! endpoint in namespace `a0` % 4 to network `a1 & 1` (an address asked for when `a1`
//! has bit 1, a name with bit 2); 9 detaches namespace `a0` % 4's.
//!
//! Checked, besides never panicking:
//! * The view built from the watch is what a fresh snapshot of the store gives (its
//!   count of unreadable records aside): nothing lost, nothing applied twice, whatever
//!   was compacted, replayed or batched; and a watch from its revision has nothing more.
//! * A resync on any snapshot, junk included, puts only `h1`'s own keys (its
//!   registration and endpoints, leased; its addresses only if absent) and deletes only
//!   its stale endpoints and the addresses the snapshot says it holds, compared on the
//!   value, in transactions etcd accepts; run on the store, a second one has nothing
//!   left to repair and the same conflicts.
//! * The switch has exactly the model's ports and peers; every cluster peer is a peer,
//!   and every remote endpoint of the model is on a global network of the model, on its
//!   VLAN, behind its node's tunnel port. After an update whose commit went through, the
//!   peers are one per address of the other nodes' VTEPs (of the local VTEP's family,
//!   not its address), each its node's VTEP, and every remote endpoint that can be
//!   placed is.
//! * The datapath's static FDB entries are exactly the gateways' and the remote
//!   endpoints', its static neighbours exactly the local and remote endpoints, and the
//!   router answers ARP for the remote ones only, until two of the gateways and
//!   endpoints claim one MAC or address on a VLAN (the model then holds both, and the
//!   datapath only one); from then on, no FDB entry or neighbour is one the model lacks.
//! * The same picture given to the controller twice changes nothing (an update
//!   converges at once); a refused attach or detach changes nothing.
//!
//! Its seeds in `corpus/cluster/` are written by `examples/seeds.rs` with
//! [`crate::record`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::Ipv4Net;
use switchyard::cluster::keys::value_of;
use switchyard::cluster::own::Resync;
use switchyard::cluster::{
    AddressRecord, ClusterView, Compare, EndpointRecord, Event, FakeStore, Key, KeyValue,
    NetworkRecord, NodeRecord, Op, OwnKeys, Remote, Snapshot, Txn, PREFIX,
};
use switchyard::control::{AttachRequest, Request};
use switchyard::controller::fake::FakeSystem;
use switchyard::controller::model::Model;
use switchyard::controller::{Controller, Note};
use switchyard::datapath::{Datapath, ROUTER_PORT};
use switchyard::fdb::FdbConfig;
use switchyard::network::Scope;
use switchyard::port::{PortId, PortMode};
use switchyard_encap::Vni;
use switchyard_wire::{MacAddr, VlanId};

use crate::control_json::{clock, config};
use crate::Input;

pub const MAX_STEPS: usize = 64;
/// The nodes the keys name; `h1` is the one followed.
pub const NODES: [&str; 3] = ["h1", "h2", "h3"];
pub const NETWORKS: [&str; 2] = ["blue", "red"];
const ME: &str = "h1";
/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;
/// What `cluster_update` says when its commit failed.
const NOT_APPLIED: &str = "cannot apply the cluster store's changes";

/// Node `n`'s VTEP (`h1` is 192.0.2.1).
pub fn vtep(n: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, n], 4789))
}

/// The address `last` of network `net` (10.40.0.0/24 for `blue`, 10.41.0.0/24 `red`).
pub fn address(net: usize, last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 40 + net as u8, 0, last)
}

/// The subnet of network `net` in well-formed records.
pub fn subnet(net: usize) -> Ipv4Net {
    Ipv4Net::new(address(net, 0), 24).expect("a /24")
}

/// A layout key from step arguments (see the module documentation).
pub fn layout_key(args: [u8; 4]) -> Key {
    let net = usize::from(args[1] & 1);
    let network = NETWORKS[net].to_string();
    let node = NODES[usize::from(args[1] >> 1) % NODES.len()].to_string();
    let ip = address(net, args[2] % 16);
    match args[0] % 6 {
        0 => Key::Node(node),
        1 => Key::Network(network),
        2 => Key::Vni(Vni::new(4096 + u32::from(args[2] % 4)).expect("a VNI")),
        3 => Key::Vlan(VlanId::new(4094 - u16::from(args[2] % 4)).expect("a VLAN")),
        4 => Key::Address { network, ip },
        _ => Key::Endpoint { network, node, ip },
    }
}

/// A well-formed record for `key`, its details read from `chunk`:
/// * node: byte `b`, VTEP 192.0.2.(1 + `b` % 4) (IPv6 2001:db8::… with bit 5), port
///   4789 or a `u16` that follows (bit 4); `started` a byte.
/// * network: byte `b` (bit 7: the record names the other network; bit 6: the gateway
///   is the next 4 bytes; bit 0 internal, 1 masquerade, 2 `ip_range` the subnet), the
///   subnet (a byte % 4: the network's /24, 10.40.0.0/16, the network's /29, or 4 bytes
///   and a prefix length), a VLAN byte (bit 7: 1 + the rest, else 4094 − it % 4), a VNI
///   byte (bit 7: 1 + the rest, else 4096 + it % 4), `created` a byte.
/// * VNI, VLAN: the name of network `byte & 1`.
/// * address: the holder, [`NODES`]`[byte % 3]`.
/// * endpoint: byte `b` (bit 0: the MAC is the next 6 bytes, else `02:42` and the
///   address; bit 1: a name, `web` or `db` by bit 2; bit 3: alias `api`).
pub fn record_of(key: &Key, chunk: &[u8]) -> Vec<u8> {
    let mut c = Input::new(chunk);
    match key {
        Key::Node(_) => {
            let b = c.byte();
            let port = if b & 0x10 != 0 { c.u16() } else { 4789 };
            let host = 1 + b % 4;
            let vtep = if b & 0x20 != 0 {
                SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(host)], port))
            } else {
                SocketAddr::from(([192, 0, 2, host], port))
            };
            value_of(&NodeRecord {
                vtep,
                started: u64::from(c.byte()),
            })
        }
        Key::Network(name) => {
            let b = c.byte();
            let net = NETWORKS.iter().position(|n| n == name).unwrap_or(0);
            let name = if b & 0x80 != 0 {
                NETWORKS[1 - net].to_string()
            } else {
                name.clone()
            };
            let subnet = match c.byte() % 4 {
                0 => subnet(net),
                1 => "10.40.0.0/16".parse().expect("a subnet"),
                2 => Ipv4Net::new(address(net, 0), 29).expect("a /29"),
                _ => {
                    let addr = Ipv4Addr::new(c.byte(), c.byte(), c.byte(), c.byte());
                    Ipv4Net::new(addr, c.byte() % 33)
                        .expect("a prefix of at most 32")
                        .trunc()
                }
            };
            let gateway = if b & 0x40 != 0 {
                Ipv4Addr::new(c.byte(), c.byte(), c.byte(), c.byte())
            } else {
                Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1))
            };
            let v = c.byte();
            let vlan = if v & 0x80 != 0 {
                1 + u16::from(v & 0x7f)
            } else {
                4094 - u16::from(v % 4)
            };
            let v = c.byte();
            let vni = if v & 0x80 != 0 {
                1 + u32::from(v & 0x7f)
            } else {
                4096 + u32::from(v % 4)
            };
            value_of(&NetworkRecord {
                id: format!("{:064x}", net + 1),
                name,
                subnet,
                gateway,
                vlan: VlanId::new(vlan).expect("a VLAN"),
                vni: Vni::new(vni).expect("a VNI"),
                mtu: 1450,
                internal: b & 1 != 0,
                masquerade: b & 2 != 0,
                ip_range: (b & 4 != 0).then_some(subnet),
                created: u64::from(c.byte()),
            })
        }
        Key::Vni(_) | Key::Vlan(_) => value_of(&NETWORKS[usize::from(c.byte() & 1)]),
        Key::Address { .. } => value_of(&AddressRecord {
            node: NODES[usize::from(c.byte()) % NODES.len()].to_string(),
        }),
        Key::Endpoint { ip, .. } => {
            let b = c.byte();
            let mac = if b & 1 != 0 {
                let mut octets = [0; 6];
                let bytes = c.bytes(6);
                octets[..bytes.len()].copy_from_slice(bytes);
                MacAddr(octets)
            } else {
                MacAddr::from_ipv4(*ip)
            };
            value_of(&EndpointRecord {
                mac,
                name: (b & 2 != 0).then(|| if b & 4 != 0 { "db" } else { "web" }.to_string()),
                aliases: if b & 8 != 0 {
                    vec!["api".to_string()]
                } else {
                    Vec::new()
                },
            })
        }
    }
}

/// The store, `h1`'s picture of it and `h1`'s switch.
struct World {
    store: Arc<Mutex<FakeStore>>,
    /// Each node's lease (ended ones stay until granted again).
    leases: [i64; 3],
    view: ClusterView,
    /// Steps the watch still lags; how many revisions early it starts again; whether it
    /// delivers one batch per revision.
    lag: u8,
    replay: i64,
    per_revision: bool,
    fx: FakeSystem,
    controller: Controller,
    /// `h1`'s keys as last written to the store.
    own: OwnKeys,
    /// Whether two endpoints (or an endpoint and a gateway) have shared a MAC or an
    /// address on a VLAN in this run: the datapath is checked exactly only until then.
    shared: bool,
    namespaces: [PathBuf; 4],
}

fn lock(store: &Mutex<FakeStore>) -> MutexGuard<'_, FakeStore> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

fn put(key: String, value: Vec<u8>, leased: bool) -> Txn {
    Txn {
        compares: Vec::new(),
        success: vec![Op::Put { key, value, leased }],
    }
}

impl World {
    fn new() -> World {
        let store = Arc::new(Mutex::new(FakeStore::new()));
        let leases = {
            let mut store = lock(&store);
            [(); 3].map(|()| store.grant().expect("the fake store is up"))
        };
        let mut fx = FakeSystem::new();
        fx.vtep = Some(vtep(1));
        fx.cluster = Some((ME.to_string(), Arc::clone(&store)));
        let namespaces = [0, 1, 2, 3].map(|i| fx.add_namespace(&format!("ns{i}")));
        let fdb = FdbConfig {
            max_entries: 4096,
            max_per_port: 1024,
            ..FdbConfig::default()
        };
        let dp = Arc::new(Datapath::new(fdb));
        let controller =
            Controller::restore(dp, config(), Default::default(), &mut fx).expect("an empty start");
        World {
            store,
            leases,
            view: ClusterView::default(),
            lag: 0,
            replay: 0,
            per_revision: false,
            fx,
            controller,
            own: OwnKeys::default(),
            shared: false,
            namespaces,
        }
    }

    /// Runs `txn` with lease `slot`'s lease; an ended lease is refused, as etcd does.
    fn txn(&self, txn: &Txn, slot: usize) {
        let _ = lock(&self.store).txn(txn, Some(self.leases[slot]));
    }

    /// What `h1` wants in the store: its registration and the model's own keys.
    fn wanted(&self) -> OwnKeys {
        let mut own = self.controller.own_keys(ME);
        own.record = Some(NodeRecord {
            vtep: vtep(1),
            started: 1,
        });
        own
    }

    fn step(&mut self, selector: u8, args: [u8; 4], chunk: &[u8]) {
        let leased = args[3] & 0x80 != 0;
        let slot = usize::from(args[3] & 0x7f) % 3;
        match selector % 10 {
            0 => {
                let (key, value) = chunk.split_at(usize::from(args[0]).min(chunk.len()));
                let key = String::from_utf8_lossy(key);
                let key = if args[1] & 1 == 0 {
                    format!("{PREFIX}{key}")
                } else {
                    key.into_owned()
                };
                self.txn(&put(key, value.to_vec(), leased), slot);
            }
            1 => self.txn(&put(layout_key(args).path(), chunk.to_vec(), leased), slot),
            2 => {
                let key = layout_key(args);
                let value = record_of(&key, chunk);
                self.txn(&put(key.path(), value, leased), slot);
            }
            3 => {
                let key = if chunk.is_empty() {
                    layout_key(args).path()
                } else {
                    format!("{PREFIX}{}", String::from_utf8_lossy(chunk))
                };
                let delete = Txn {
                    compares: Vec::new(),
                    success: vec![Op::Delete(key)],
                };
                self.txn(&delete, slot);
            }
            4 => {
                let slot = usize::from(args[0] % 3);
                let mut store = lock(&self.store);
                if store.lease_alive(self.leases[slot]) {
                    store.expire(self.leases[slot]);
                } else {
                    self.leases[slot] = store.grant().expect("the fake store is up");
                }
            }
            5 => lock(&self.store).compact(),
            6 => self.snapshot(args[0], chunk),
            7 => {
                self.lag = args[0] % 8;
                self.replay = i64::from(args[1] % 4);
                self.per_revision = args[2] & 1 != 0;
            }
            8 => self.attach(args),
            _ => {
                let request = Request::Detach {
                    netns: self.namespaces[usize::from(args[0] % 4)].clone(),
                    ifname: "eth0".into(),
                };
                self.request(request);
            }
        }
    }

    /// A resync against the store's snapshot with the chunk's keys added; with `how`
    /// bit 0, `h1` registers again; with bit 1, the view restarts from a snapshot.
    fn snapshot(&mut self, how: u8, chunk: &[u8]) {
        let own = self.wanted();
        let mut fuzzed = lock(&self.store)
            .snapshot(PREFIX)
            .expect("the fake store is up");
        let mut extra = Input::new(chunk);
        while !extra.is_empty() {
            let key = String::from_utf8_lossy(extra.chunk()).into_owned();
            let value = extra.chunk().to_vec();
            fuzzed.kvs.push(KeyValue {
                key: format!("{PREFIX}{key}"),
                value,
                mod_revision: fuzzed.revision,
                lease: 0,
            });
        }
        fenced(&own, &fuzzed, &own.resync(&fuzzed));
        if how & 1 != 0 {
            let mut store = lock(&self.store);
            if !store.lease_alive(self.leases[0]) {
                self.leases[0] = store.grant().expect("the fake store is up");
            }
            let snapshot = store.snapshot(PREFIX).expect("the fake store is up");
            let resync = own.resync(&snapshot);
            fenced(&own, &snapshot, &resync);
            for txn in &resync.txns {
                store
                    .txn(txn, Some(self.leases[0]))
                    .expect("a resync under a live lease is accepted");
            }
            let again = store.snapshot(PREFIX).expect("the fake store is up");
            let repair = own.resync(&again);
            for txn in &repair.txns {
                assert!(
                    txn.compares.is_empty()
                        && txn.success.iter().all(|op| matches!(op, Op::Put { .. })),
                    "a second resync has nothing to repair: {txn:?}"
                );
            }
            assert_eq!(repair.conflicts, resync.conflicts, "nor new conflicts");
            drop(store);
            self.own = own;
        }
        if how & 2 != 0 {
            let snapshot = lock(&self.store)
                .snapshot(PREFIX)
                .expect("the fake store is up");
            self.view = ClusterView::from_snapshot(&snapshot);
        }
    }

    fn attach(&mut self, args: [u8; 4]) {
        let net = usize::from(args[1] & 1);
        let request = Request::Attach(AttachRequest {
            netns: self.namespaces[usize::from(args[0] % 4)].clone(),
            ifname: "eth0".into(),
            mode: PortMode::default(),
            network: Some(NETWORKS[net].to_string()),
            ip: (args[1] & 2 != 0).then(|| address(net, args[2] % 16)),
            name: (args[1] & 4 != 0).then(|| "web".to_string()),
            ..AttachRequest::default()
        });
        self.request(request);
    }

    /// A request to `h1`: refused, it changes nothing; done, `h1`'s keys follow.
    fn request(&mut self, request: Request) {
        let before = self.controller.model().clone();
        match self.controller.handle(&mut self.fx, clock(), request) {
            Ok(_) => {
                let own = self.wanted();
                for txn in own.update(&self.own) {
                    self.txn(&txn, 0);
                }
                self.own = own;
            }
            Err(err) => assert_eq!(
                *self.controller.model(),
                before,
                "a refused request changes nothing: {err}"
            ),
        }
        self.controller.take_notes();
        self.check(None, false);
    }

    /// The watch: what changed after the view's revision (a lagging watch only later),
    /// or a snapshot when that was compacted. Checks the view then.
    fn follow(&mut self) {
        if self.lag > 0 {
            self.lag -= 1;
            return;
        }
        let store = lock(&self.store);
        let from = (self.view.revision + 1 - std::mem::take(&mut self.replay)).max(1);
        match store.events_since(PREFIX, from) {
            Ok(events) => {
                let new = events
                    .iter()
                    .filter(|e| e.revision > self.view.revision)
                    .count();
                let applied = if self.per_revision {
                    batches(&events).map(|batch| self.view.apply(batch)).sum()
                } else {
                    self.view.apply(&events)
                };
                assert_eq!(applied, new, "every change after the view's revision, once");
            }
            Err(_compacted) => {
                let snapshot = store.snapshot(PREFIX).expect("the fake store is up");
                self.view = ClusterView::from_snapshot(&snapshot);
            }
        }
        same_as_store(&store, &self.view);
    }

    /// `h1`'s picture to its controller, twice; checks the model and the datapath.
    fn update(&mut self) {
        let remote = self.view.remote(ME);
        self.controller.cluster_update(&mut self.fx, remote.clone());
        let applied = !self
            .controller
            .take_notes()
            .iter()
            .any(|note| matches!(note, Note::Warn(w) if w.starts_with(NOT_APPLIED)));
        self.check(Some(&remote), applied);
        let model = self.controller.model().clone();
        self.controller.cluster_update(&mut self.fx, remote);
        self.controller.take_notes();
        assert_eq!(
            *self.controller.model(),
            model,
            "the same picture twice changes nothing"
        );
    }

    /// The model and the datapath, after an update with `remote` (`applied`: its
    /// commit went through, so the model must be what it says) or a request.
    fn check(&mut self, remote: Option<&Remote>, applied: bool) {
        let model = self.controller.model();
        let dp = self.controller.datapath();
        let mut switch_ports = dp.switch().port_ids();
        switch_ports.retain(|id| *id != ROUTER_PORT);
        let mut expected: Vec<PortId> = model
            .ports
            .keys()
            .chain(model.peers.keys())
            .copied()
            .collect();
        expected.sort();
        assert_eq!(switch_ports, expected, "the switch's ports are the model's");
        for (id, node) in &model.cluster.peers {
            assert!(model.peers.contains_key(id), "cluster peer {id} is a peer");
            assert_ne!(node, ME, "never a peer of itself");
        }
        for entry in &model.cluster.endpoints {
            assert!(
                model.peers.contains_key(&entry.port),
                "a remote endpoint is behind a peer: {entry:?}"
            );
            assert_eq!(
                model.cluster.peers.get(&entry.port),
                Some(&entry.endpoint.node),
                "its node's"
            );
            let network = model
                .networks
                .get(&entry.endpoint.network)
                .expect("a remote endpoint is on a network of the model");
            assert_eq!(network.scope, Scope::Global);
            assert_eq!(entry.vlan, network.vlan, "on its network's VLAN");
        }
        if let Some(remote) = remote.filter(|_| applied) {
            let local = self.fx.vtep.expect("a VTEP");
            let wanted: BTreeSet<IpAddr> = remote
                .peers
                .values()
                .filter(|a| a.ip() != local.ip() && a.is_ipv4() == local.is_ipv4())
                .map(|a| a.ip())
                .collect();
            let peers: BTreeSet<IpAddr> = model.peers.values().map(|a| a.ip()).collect();
            assert_eq!(peers, wanted, "one peer per other node's VTEP address");
            for (id, node) in &model.cluster.peers {
                assert_eq!(remote.peers.get(node), model.peers.get(id), "{node}'s VTEP");
            }
            let placeable = remote
                .endpoints
                .iter()
                .filter(|e| {
                    // A global network's, behind a peer, and not one of this node's own
                    // addresses or its gateway's MAC (those stay local).
                    model.networks.get(&e.network).is_some_and(|n| {
                        n.scope == Scope::Global && e.mac != n.router_mac()
                    }) && model.cluster.peers.values().any(|node| *node == e.node)
                        && !model
                            .networks
                            .endpoints()
                            .iter()
                            .any(|l| l.network == e.network && l.ip == e.ip)
                })
                .count();
            assert_eq!(
                model.cluster.endpoints.len(),
                placeable,
                "every remote endpoint that can be placed is"
            );
        }

        // Static FDB entries: the gateways' and the remote endpoints'; static neighbours:
        // the local endpoints and the remote ones (answered by ARP).
        let mut statics: BTreeMap<(VlanId, MacAddr), Vec<PortId>> = BTreeMap::new();
        for network in model.networks.iter() {
            statics
                .entry((network.vlan, network.router_mac()))
                .or_default()
                .push(ROUTER_PORT);
        }
        let mut neighbors: BTreeMap<(VlanId, Ipv4Addr), Vec<(MacAddr, bool)>> = BTreeMap::new();
        for endpoint in model.networks.endpoints() {
            if let Some(network) = model.networks.get(&endpoint.network) {
                neighbors
                    .entry((network.vlan, endpoint.ip))
                    .or_default()
                    .push((endpoint.mac, false));
            }
        }
        for entry in &model.cluster.endpoints {
            statics
                .entry((entry.vlan, entry.endpoint.mac))
                .or_default()
                .push(entry.port);
            neighbors
                .entry((entry.vlan, entry.endpoint.ip))
                .or_default()
                .push((entry.endpoint.mac, true));
        }
        self.shared |= shares(model, remote);

        let fdb: BTreeSet<(VlanId, MacAddr, PortId)> =
            dp.switch().fdb().statics().into_iter().collect();
        let expected: BTreeSet<(VlanId, MacAddr, PortId)> = statics
            .iter()
            .flat_map(|((vlan, mac), ports)| ports.iter().map(move |port| (*vlan, *mac, *port)))
            .collect();
        if self.shared {
            assert!(fdb.is_subset(&expected), "no static entry the model lacks");
        } else {
            assert_eq!(fdb, expected, "the static FDB is the model's");
        }

        let router = dp.router();
        let have: BTreeSet<(VlanId, Ipv4Addr, MacAddr)> = router
            .neighbors()
            .into_iter()
            .filter(|n| n.is_static)
            .map(|n| (n.vlan, n.ip, n.mac))
            .collect();
        let expected: BTreeSet<(VlanId, Ipv4Addr, MacAddr)> = neighbors
            .iter()
            .flat_map(|((vlan, ip), macs)| macs.iter().map(move |(mac, _)| (*vlan, *ip, *mac)))
            .collect();
        if self.shared {
            assert!(have.is_subset(&expected), "no neighbour the model lacks");
        } else {
            assert_eq!(have, expected, "the static neighbours are the endpoints");
            for ((vlan, ip), macs) in &neighbors {
                assert_eq!(
                    router.answers_arp_for(*vlan, *ip),
                    macs[0].1,
                    "ARP for {ip} on VLAN {vlan} is answered for remote endpoints only"
                );
            }
        }
    }
}

/// Whether two of the gateways, the local endpoints, the model's remote endpoints and
/// those of `tried` (an update that failed still tried them) claim a MAC or an address
/// on one VLAN.
fn shares(model: &Model, tried: Option<&Remote>) -> bool {
    let mut macs: BTreeMap<(VlanId, MacAddr), BTreeSet<String>> = BTreeMap::new();
    let mut ips: BTreeMap<(VlanId, Ipv4Addr), BTreeSet<String>> = BTreeMap::new();
    for network in model.networks.iter() {
        let owner = format!("gateway {}", network.name);
        macs.entry((network.vlan, network.router_mac()))
            .or_default()
            .insert(owner.clone());
        ips.entry((network.vlan, network.gateway))
            .or_default()
            .insert(owner);
    }
    for endpoint in model.networks.endpoints() {
        if let Some(network) = model.networks.get(&endpoint.network) {
            ips.entry((network.vlan, endpoint.ip))
                .or_default()
                .insert(format!("port {}", endpoint.port));
        }
    }
    let remote = model.cluster.endpoints.iter().map(|e| &e.endpoint);
    let tried = tried.into_iter().flat_map(|r| r.endpoints.iter());
    for endpoint in remote.chain(tried) {
        if let Some(network) = model.networks.get(&endpoint.network) {
            let owner = format!("{} {} {}", endpoint.node, endpoint.network, endpoint.ip);
            macs.entry((network.vlan, endpoint.mac))
                .or_default()
                .insert(owner.clone());
            ips.entry((network.vlan, endpoint.ip))
                .or_default()
                .insert(owner);
        }
    }
    macs.values()
        .chain(ips.values())
        .any(|owners| owners.len() > 1)
}

/// A watch response's events, one batch per revision.
fn batches(events: &[Event]) -> impl Iterator<Item = &[Event]> {
    events.chunk_by(|a, b| a.revision == b.revision)
}

/// The view built from the watch is what a snapshot of the store now gives.
fn same_as_store(store: &FakeStore, view: &ClusterView) {
    let snapshot = store.snapshot(PREFIX).expect("the fake store is up");
    assert!(
        view.revision <= snapshot.revision,
        "never ahead of the store"
    );
    assert_eq!(
        store.events_since(PREFIX, view.revision + 1),
        Ok(Vec::new()),
        "nothing left to apply"
    );
    let contents = |view: &ClusterView| ClusterView {
        revision: 0,
        unreadable: 0,
        ..view.clone()
    };
    let fresh = ClusterView::from_snapshot(&snapshot);
    assert_eq!(
        contents(view),
        contents(&fresh),
        "the watched view is the snapshot's"
    );
}

/// A resync writes only `own`'s keys and deletes only its stale ones, compared on the
/// value where another node could have them, in transactions etcd accepts.
fn fenced(own: &OwnKeys, snapshot: &Snapshot, resync: &Resync) {
    let stored: BTreeMap<&str, &[u8]> = snapshot
        .kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    let registration = Key::Node(own.node.clone()).path();
    let addresses = format!("{PREFIX}addresses/");
    let holds = |value: &[u8]| {
        serde_json::from_slice::<AddressRecord>(value).is_ok_and(|h| h.node == own.node)
    };
    for txn in &resync.txns {
        assert!(!txn.success.is_empty(), "no empty transaction");
        assert!(
            txn.compares.len() + txn.success.len() <= MAX_TXN_OPS,
            "etcd takes at most {MAX_TXN_OPS} operations"
        );
        for op in &txn.success {
            match op {
                Op::Put { key, value, leased } => {
                    let node = *key == registration && *leased;
                    let endpoint = *leased && own.endpoints.get(key) == Some(value);
                    let address = !*leased
                        && own.addresses.get(key) == Some(value)
                        && txn.compares == [Compare::Absent(key.clone())];
                    assert!(node || endpoint || address, "a resync puts own keys: {key}");
                }
                Op::Delete(key) => {
                    let endpoint = matches!(
                        Key::parse(key),
                        Some(Key::Endpoint { node, .. }) if node == own.node
                    ) && !own.endpoints.contains_key(key);
                    let address = key.starts_with(&addresses)
                        && !own.addresses.contains_key(key)
                        && txn
                            .compares
                            .iter()
                            .any(|c| matches!(c, Compare::Value(k, v) if k == key && holds(v)));
                    assert!(
                        endpoint || address,
                        "a resync deletes own stale keys: {key}"
                    );
                }
            }
        }
    }
    for key in &resync.conflicts {
        let value = own
            .addresses
            .get(key)
            .expect("a conflict is an own address");
        assert!(
            stored
                .get(key.as_str())
                .is_some_and(|v| *v != value.as_slice()),
            "held by another in the snapshot: {key}"
        );
    }
}

pub fn run(data: &[u8]) {
    let mut world = World::new();
    let mut input = Input::new(data);
    let mut steps = 0;
    while !input.is_empty() && steps < MAX_STEPS {
        steps += 1;
        let selector = input.byte();
        let args = [input.byte(), input.byte(), input.byte(), input.byte()];
        let chunk = input.chunk();
        world.step(selector, args, chunk);
        world.follow();
        world.update();
    }
}
