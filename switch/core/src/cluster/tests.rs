//! The store logic against the in-memory store, without root or etcd: several nodes (a
//! real controller and datapath each, on a fake machine) sharing one [`FakeStore`], with
//! the store's changes carried to them as switchd's cluster thread carries them: a
//! snapshot, then watch events, then own keys written back.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use super::*;
use crate::control::{AttachRequest, Attached, NetworkInfo, Request};
use crate::controller::fake::FakeSystem;
use crate::controller::{Clock, ControlError, Controller, ControllerConfig, ErrorCode};
use crate::datapath::Datapath;
use crate::fdb::FdbConfig;
use crate::network::{NetworkConfig, Scope};
use crate::port::PortMode;
use crate::time::Time;
use crate::wire::{MacAddr, VlanId};

fn clock() -> Clock {
    Clock {
        now: Time::from_secs(10),
        unix_secs: 1_796_000_000,
    }
}

/// One host: its machine, its controller, its picture of the store and its lease.
struct Node {
    name: String,
    fx: FakeSystem,
    controller: Controller,
    view: ClusterView,
    lease: i64,
    own: OwnKeys,
    vtep: SocketAddr,
}

impl Node {
    fn join(store: &Arc<Mutex<FakeStore>>, name: &str, index: u8) -> Node {
        let vtep: SocketAddr = format!("192.0.2.{index}:4789").parse().unwrap();
        let mut fx = FakeSystem::new();
        fx.vtep = Some(vtep);
        fx.cluster = Some((name.to_string(), Arc::clone(store)));
        let dp = Arc::new(Datapath::new(FdbConfig::default()));
        let config = ControllerConfig {
            boot_id: "boot".into(),
            uplink_name: "switchyard0".into(),
            storm_limit: None,
        };
        let controller = Controller::restore(dp, config, Default::default(), &mut fx).unwrap();
        let lease = store.lock().unwrap().grant().unwrap();
        let mut node = Node {
            name: name.to_string(),
            fx,
            controller,
            view: ClusterView::default(),
            lease,
            own: OwnKeys::default(),
            vtep,
        };
        node.register(store);
        node
    }

    /// What a (re)registration does: resync own keys from a snapshot, then take the
    /// snapshot as the picture.
    fn register(&mut self, store: &Arc<Mutex<FakeStore>>) {
        let mut store = store.lock().unwrap();
        let snapshot = store.snapshot(PREFIX).unwrap();
        let own = self.wanted();
        for txn in own.resync(&snapshot).txns {
            store.txn(&txn, Some(self.lease)).unwrap();
        }
        self.own = own;
        let snapshot = store.snapshot(PREFIX).unwrap();
        self.view = ClusterView::from_snapshot(&snapshot);
        drop(store);
        self.apply();
    }

    fn wanted(&self) -> OwnKeys {
        let mut own = self.controller.own_keys(&self.name);
        own.record = Some(NodeRecord {
            vtep: self.vtep,
            started: 1,
        });
        own
    }

    /// The watch: every event after the picture's revision, then own keys written back.
    fn sync(&mut self, store: &Arc<Mutex<FakeStore>>) {
        let events = store
            .lock()
            .unwrap()
            .events_since(PREFIX, self.view.revision + 1);
        match events {
            Ok(events) => {
                self.view.apply(&events);
            }
            Err(_compacted) => {
                let snapshot = store.lock().unwrap().snapshot(PREFIX).unwrap();
                self.view = ClusterView::from_snapshot(&snapshot);
            }
        }
        self.apply();
        let own = self.wanted();
        for txn in own.update(&self.own) {
            store.lock().unwrap().txn(&txn, Some(self.lease)).unwrap();
        }
        self.own = own;
    }

    fn apply(&mut self) {
        let remote = self.view.remote(&self.name);
        self.controller.cluster_update(&mut self.fx, remote);
    }

    fn call<T: serde::de::DeserializeOwned>(
        &mut self,
        request: Request,
    ) -> Result<T, ControlError> {
        self.controller
            .handle(&mut self.fx, clock(), request)
            .map(|value| serde_json::from_value(value).unwrap())
    }

    fn attach(
        &mut self,
        netns: &str,
        network: &str,
        name: Option<&str>,
    ) -> Result<Ipv4Addr, ControlError> {
        self.attach_at(netns, network, name, None)
    }

    /// Attaches namespace `netns` (made for it) to `network`, at `ip` if given.
    fn attach_at(
        &mut self,
        netns: &str,
        network: &str,
        name: Option<&str>,
        ip: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, ControlError> {
        let path = self.fx.add_namespace(netns);
        let attached: Attached = self.call(Request::Attach(AttachRequest {
            netns: path,
            ifname: "eth0".into(),
            mode: PortMode::Access {
                vlan: VlanId::new(10).unwrap(),
            },
            label: None,
            network: Some(network.into()),
            ip,
            container_id: None,
            prefix_len: None,
            mac: None,
            addresses: Vec::new(),
            port_security: None,
            published: Vec::new(),
            name: name.map(String::from),
            aliases: Vec::new(),
        }))?;
        Ok(attached.endpoint.unwrap().address.addr())
    }

    fn peers(&self) -> Vec<String> {
        self.controller
            .model()
            .cluster
            .peers
            .values()
            .cloned()
            .collect()
    }
}

fn global(name: &str, subnet: &str) -> Request {
    Request::NetworkCreate(NetworkConfig {
        name: name.into(),
        subnet: Some(subnet.parse().unwrap()),
        scope: Scope::Global,
        ..NetworkConfig::default()
    })
}

fn store() -> Arc<Mutex<FakeStore>> {
    Arc::new(Mutex::new(FakeStore::new()))
}

#[test]
fn a_global_network_reaches_every_node_with_peers_and_remote_endpoints() {
    let store = store();
    let mut h1 = Node::join(&store, "h1", 1);
    let mut h2 = Node::join(&store, "h2", 2);
    h1.sync(&store);
    assert_eq!(h1.peers(), vec!["h2"], "h1 sees h2 as a peer");
    assert_eq!(h2.peers(), vec!["h1"], "h2 saw h1 in its snapshot");

    let info: NetworkInfo = h1.call(global("blue", "10.40.0.0/16")).unwrap();
    assert_eq!(info.scope, Scope::Global);
    assert_eq!(
        info.vlan.get(),
        VlanId::MAX,
        "global VLANs come from the top"
    );
    h2.sync(&store);
    let blue = h2
        .controller
        .model()
        .networks
        .get("blue")
        .expect("h2 has blue")
        .clone();
    assert_eq!(
        (blue.vlan, blue.vni, blue.scope),
        (info.vlan, info.vni, Scope::Global)
    );

    let web = h1.attach("web", "blue", Some("web")).unwrap();
    h1.sync(&store);
    h2.sync(&store);
    // h2 has web behind h1's tunnel port, answers ARP for it, and resolves its name.
    let entry = h2
        .controller
        .model()
        .cluster
        .endpoints
        .first()
        .unwrap()
        .clone();
    assert_eq!(
        (entry.endpoint.ip, entry.endpoint.node.as_str()),
        (web, "h1")
    );
    let dp = Arc::clone(h2.controller.datapath());
    let fdb = dp
        .switch()
        .fdb()
        .lookup(clock().now, blue.vlan, MacAddr::from_ipv4(web));
    assert_eq!(fdb, Some(entry.port), "a static entry behind h1's VTEP");
    assert!(dp.router().answers_arp_for(blue.vlan, web));
    let info: NetworkInfo = h2
        .call(Request::NetworkInspect {
            name: "blue".into(),
        })
        .unwrap();
    assert_eq!(info.remote_endpoints.len(), 1);
    assert_eq!(info.remote_endpoints[0].name.as_deref(), Some("web"));

    // h1's lease ends (a crash): within one sync h2 forgets its peer and endpoint.
    let lease = h1.lease;
    store.lock().unwrap().expire(lease);
    h2.sync(&store);
    assert!(h2.peers().is_empty());
    assert!(h2.controller.model().cluster.endpoints.is_empty());
    assert_eq!(
        dp.switch()
            .fdb()
            .lookup(clock().now, blue.vlan, MacAddr::from_ipv4(web)),
        None
    );
    assert!(!dp.router().answers_arp_for(blue.vlan, web));
    // ...and its address stays held: h2 never hands it out while h1 may come back.
    let other = h2.attach("db", "blue", None).unwrap();
    assert_ne!(other, web);

    // h1 restarts: a new lease, its endpoint registered again, once.
    h1.lease = store.lock().unwrap().grant().unwrap();
    h1.register(&store);
    h2.sync(&store);
    assert_eq!(h2.peers(), vec!["h1"]);
    assert_eq!(h2.controller.model().cluster.endpoints.len(), 1);
    let endpoints = store
        .lock()
        .unwrap()
        .snapshot(&format!("{PREFIX}endpoints/"))
        .unwrap();
    assert_eq!(endpoints.kvs.len(), 2, "one key per endpoint, none twice");
}

#[test]
fn two_nodes_attaching_at_once_never_share_an_address() {
    let store = store();
    let mut h1 = Node::join(&store, "h1", 1);
    // .1 is the gateway: .2 to .6 are the pool.
    let _: NetworkInfo = h1.call(global("blue", "10.40.0.0/29")).unwrap();
    let mut h2 = Node::join(&store, "h2", 2);
    // Neither syncs: each picks from a picture without the other's claims, and every
    // claim one loses is retried with the next address.
    let mut got = Vec::new();
    for i in 0..2 {
        got.push(h1.attach(&format!("a{i}"), "blue", None).unwrap());
        got.push(h2.attach(&format!("b{i}"), "blue", None).unwrap());
    }
    got.push(h2.attach("b2", "blue", None).unwrap());
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "{got:?}");
    // The pool is used up cluster-wide: one more attach fails and leaves nothing.
    let ports = h1.controller.model().ports.len();
    let err = h1.attach("a9", "blue", None).unwrap_err();
    assert_eq!(err.code, ErrorCode::AddressUnavailable, "{err}");
    assert_eq!(h1.controller.model().ports.len(), ports);
    assert!(h1.fx.taps.iter().all(|tap| !tap.netns.ends_with("a9")));
    let held = store
        .lock()
        .unwrap()
        .snapshot(&format!("{PREFIX}addresses/blue/"))
        .unwrap();
    assert_eq!(held.kvs.len(), 5);
}

#[test]
fn an_address_asked_for_that_another_node_holds_is_refused() {
    let store = store();
    let mut h1 = Node::join(&store, "h1", 1);
    let _: NetworkInfo = h1.call(global("blue", "10.40.0.0/24")).unwrap();
    let mut h2 = Node::join(&store, "h2", 2);
    let taken = h1.attach("a", "blue", None).unwrap();
    let err = h2.attach_at("b", "blue", None, Some(taken)).unwrap_err();
    assert_eq!(err.code, ErrorCode::AddressUnavailable);
    assert!(err.message.contains("another node"), "{err}");
    assert!(h2.controller.model().ports.is_empty());
}

#[test]
fn a_detach_releases_the_address_in_the_store() {
    let store = store();
    let mut h1 = Node::join(&store, "h1", 1);
    let _: NetworkInfo = h1.call(global("blue", "10.40.0.0/24")).unwrap();
    let ip = h1.attach("a", "blue", None).unwrap();
    let key = Key::Address {
        network: "blue".into(),
        ip,
    }
    .path();
    assert!(store.lock().unwrap().get(&key).is_some());
    let path = std::path::PathBuf::from("/run/netns/a");
    let _: serde_json::Value = h1
        .call(Request::Detach {
            netns: path,
            ifname: "eth0".into(),
        })
        .unwrap();
    assert_eq!(store.lock().unwrap().get(&key), None);
}

#[test]
fn creating_a_network_another_node_created_fails_and_changes_nothing() {
    let store = store();
    let mut h1 = Node::join(&store, "h1", 1);
    let mut h2 = Node::join(&store, "h2", 2);
    let _: NetworkInfo = h1.call(global("blue", "10.40.0.0/16")).unwrap();
    // h2 has not seen it yet: the store's compare-and-set refuses the second.
    let err = h2
        .call::<NetworkInfo>(global("blue", "10.41.0.0/16"))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::AlreadyExists, "{err}");
    assert!(h2.controller.model().networks.get("blue").is_none());
    assert!(
        h2.fx.routes.is_empty(),
        "nothing half made: {:?}",
        h2.fx.routes
    );
    // A network on a node without a cluster store is refused with its own code.
    let mut lonely = FakeSystem::new();
    lonely.vtep = h1.fx.vtep;
    let dp = Arc::new(Datapath::new(FdbConfig::default()));
    let config = ControllerConfig {
        boot_id: "boot".into(),
        uplink_name: "switchyard0".into(),
        storm_limit: None,
    };
    let mut c = Controller::restore(dp, config, Default::default(), &mut lonely).unwrap();
    let err = c
        .handle(&mut lonely, clock(), global("red", "10.42.0.0/16"))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NoCluster);
}

#[test]
fn with_the_store_down_requests_that_need_it_fail_and_change_nothing() {
    let store = store();
    let mut h1 = Node::join(&store, "h1", 1);
    let _: NetworkInfo = h1.call(global("blue", "10.40.0.0/16")).unwrap();
    let before = h1.controller.model().clone();
    store.lock().unwrap().down = true;
    let err = h1.attach("a", "blue", None).unwrap_err();
    assert_eq!(err.code, ErrorCode::StoreUnavailable, "{err}");
    assert!(err.message.contains("cluster store unreachable"), "{err}");
    let err = h1
        .call::<NetworkInfo>(global("green", "10.50.0.0/16"))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::StoreUnavailable);
    assert_eq!(*h1.controller.model(), before);
    assert!(h1.fx.taps.is_empty());
    // Local networks need no store.
    let _: NetworkInfo = h1
        .call(Request::NetworkCreate(NetworkConfig {
            name: "local".into(),
            subnet: Some("10.60.0.0/24".parse().unwrap()),
            ..NetworkConfig::default()
        }))
        .unwrap();
    store.lock().unwrap().down = false;
    assert!(h1.attach("a", "blue", None).is_ok());
}

#[test]
fn a_network_another_node_uses_cannot_be_removed() {
    let store = store();
    let mut h1 = Node::join(&store, "h1", 1);
    let mut h2 = Node::join(&store, "h2", 2);
    let _: NetworkInfo = h1.call(global("blue", "10.40.0.0/16")).unwrap();
    h2.sync(&store);
    h2.attach("b", "blue", None).unwrap();
    // h1 has not seen h2's endpoint: the store refuses anyway.
    let err = h1
        .call::<NetworkInfo>(Request::NetworkRemove {
            name: "blue".into(),
        })
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NetworkInUse, "{err}");
    assert!(h1.controller.model().networks.get("blue").is_some());
    let path = std::path::PathBuf::from("/run/netns/b");
    let _: serde_json::Value = h2
        .call(Request::Detach {
            netns: path,
            ifname: "eth0".into(),
        })
        .unwrap();
    h2.sync(&store);
    h1.sync(&store);
    let _: NetworkInfo = h1
        .call(Request::NetworkRemove {
            name: "blue".into(),
        })
        .unwrap();
    h2.sync(&store);
    assert!(
        h2.controller.model().networks.get("blue").is_none(),
        "gone everywhere"
    );
    assert!(h2.controller.model().vni_map.is_empty());
}

#[test]
fn a_compacted_watch_resyncs_from_a_snapshot_and_applies_nothing_twice() {
    let store = store();
    let mut h1 = Node::join(&store, "h1", 1);
    let mut h2 = Node::join(&store, "h2", 2);
    let _: NetworkInfo = h1.call(global("blue", "10.40.0.0/16")).unwrap();
    h1.attach("a", "blue", Some("web")).unwrap();
    h1.sync(&store);
    // h2 was away while the history it needs was compacted.
    store.lock().unwrap().compact();
    assert!(store
        .lock()
        .unwrap()
        .events_since(PREFIX, h2.view.revision + 1)
        .is_err());
    h2.sync(&store);
    let fresh = ClusterView::from_snapshot(&store.lock().unwrap().snapshot(PREFIX).unwrap());
    assert_eq!(h2.view, fresh);
    assert_eq!(h2.controller.model().cluster.endpoints.len(), 1);
    // The same events again change nothing: they are at or before the view's revision.
    let replay = vec![Event {
        kind: EventKind::Delete,
        key: Key::Node("h1".into()).path(),
        value: Vec::new(),
        revision: h2.view.revision,
    }];
    assert_eq!(h2.view.apply(&replay), 0);
    assert!(h2.view.nodes.contains_key("h1"));
}

#[test]
fn a_restarted_node_repairs_its_keys_from_the_snapshot() {
    let store = store();
    let mut h1 = Node::join(&store, "h1", 1);
    let _: NetworkInfo = h1.call(global("blue", "10.40.0.0/16")).unwrap();
    let ip = h1.attach("a", "blue", None).unwrap();
    h1.sync(&store);
    // Left from a life before: an endpoint and an address h1 no longer has.
    let stale_ip = Ipv4Addr::new(10, 40, 9, 9);
    let stale = Txn {
        compares: vec![],
        success: vec![
            Op::Put {
                key: Key::Endpoint {
                    network: "blue".into(),
                    node: "h1".into(),
                    ip: stale_ip,
                }
                .path(),
                value: keys::value_of(&EndpointRecord {
                    mac: MacAddr::from_ipv4(stale_ip),
                    name: None,
                    aliases: vec![],
                }),
                leased: false,
            },
            Op::Put {
                key: Key::Address {
                    network: "blue".into(),
                    ip: stale_ip,
                }
                .path(),
                value: keys::value_of(&AddressRecord { node: "h1".into() }),
                leased: false,
            },
        ],
    };
    store.lock().unwrap().txn(&stale, None).unwrap();
    // ...and its own address lost (an operator's mistake): the resync claims it again.
    let own = Key::Address {
        network: "blue".into(),
        ip,
    }
    .path();
    store
        .lock()
        .unwrap()
        .txn(
            &Txn {
                compares: vec![],
                success: vec![Op::Delete(own.clone())],
            },
            None,
        )
        .unwrap();
    h1.lease = store.lock().unwrap().grant().unwrap();
    h1.register(&store);
    let store = store.lock().unwrap();
    assert!(store.get(&own).is_some());
    let endpoints = store.snapshot(&format!("{PREFIX}endpoints/")).unwrap();
    assert_eq!(endpoints.kvs.len(), 1, "{:?}", endpoints.kvs);
    assert!(store
        .get(
            &Key::Address {
                network: "blue".into(),
                ip: stale_ip
            }
            .path()
        )
        .is_none());
}

#[test]
fn a_record_that_does_not_parse_is_skipped_and_counted() {
    let mut view = ClusterView::default();
    view.apply(&[
        Event {
            kind: EventKind::Put,
            key: Key::Node("h9".into()).path(),
            value: b"{not json".to_vec(),
            revision: 1,
        },
        Event {
            kind: EventKind::Put,
            key: format!("{PREFIX}future/thing"),
            value: b"x".to_vec(),
            revision: 2,
        },
        Event {
            kind: EventKind::Put,
            key: Key::Node("h2".into()).path(),
            value: keys::value_of(&NodeRecord {
                vtep: "192.0.2.2:4789".parse().unwrap(),
                started: 0,
            }),
            revision: 3,
        },
    ]);
    assert_eq!(view.unreadable, 1);
    assert_eq!(view.nodes.len(), 1);
    assert_eq!(view.revision, 3);
}

#[test]
fn each_hosts_own_id_joins_one_global_network_and_forgetting_it_keeps_the_network() {
    let store = store();
    let mut h1 = Node::join(&store, "h1", 1);
    let mut h2 = Node::join(&store, "h2", 2);
    let create = |docker_id: &str| {
        Request::NetworkCreate(NetworkConfig {
            name: "blue".into(),
            id: Some(docker_id.into()),
            subnet: Some("10.40.0.0/16".parse().unwrap()),
            scope: Scope::Global,
            ..NetworkConfig::default()
        })
    };
    let made: NetworkInfo = h1.call(create(&"a".repeat(64))).unwrap();
    assert_ne!(made.id, "a".repeat(64), "the network's id is the cluster's");
    assert_eq!(made.local_ids, vec!["a".repeat(64)]);
    h2.sync(&store);
    let joined: NetworkInfo = h2.call(create(&"b".repeat(64))).unwrap();
    assert_eq!(joined.id, made.id, "one network");
    assert_eq!(joined.local_ids, vec!["b".repeat(64)]);
    // Joining again is the same answer; other settings are refused.
    let again: NetworkInfo = h2.call(create(&"b".repeat(64))).unwrap();
    assert_eq!(again.local_ids.len(), 1);
    let other = Request::NetworkCreate(NetworkConfig {
        name: "blue".into(),
        id: Some("c".repeat(64)),
        subnet: Some("10.41.0.0/16".parse().unwrap()),
        scope: Scope::Global,
        ..NetworkConfig::default()
    });
    assert_eq!(
        h2.call::<NetworkInfo>(other).unwrap_err().code,
        ErrorCode::AlreadyExists
    );
    // Each host's id finds it there: an attach by Docker's id on h2 is on blue.
    let ip = h2.attach("x", &"b".repeat(64), None).unwrap();
    assert!(made.subnet.contains(&ip));
    // Removing by a host's own id forgets the id only.
    let path = std::path::PathBuf::from("/run/netns/x");
    let _: serde_json::Value = h2
        .call(Request::Detach {
            netns: path,
            ifname: "eth0".into(),
        })
        .unwrap();
    let _: NetworkInfo = h2
        .call(Request::NetworkRemove {
            name: "b".repeat(64),
        })
        .unwrap();
    let kept = h2.controller.model().networks.get("blue").unwrap().clone();
    assert!(kept.local_ids.is_empty());
    assert!(store
        .lock()
        .unwrap()
        .get(&Key::Network("blue".into()).path())
        .is_some());
    // Global names are the cluster's: no rename.
    let err = h1
        .call::<NetworkInfo>(Request::NetworkRename {
            name: "blue".into(),
            new_name: "navy".into(),
        })
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
}

#[test]
fn a_record_overwritten_by_junk_is_gone_as_a_snapshot_shows_it() {
    let node = keys::value_of(&NodeRecord {
        vtep: "192.0.2.2:4789".parse().unwrap(),
        started: 0,
    });
    let key = Key::Node("h2".into()).path();
    let mut view = ClusterView::default();
    view.apply(&[Event {
        kind: EventKind::Put,
        key: key.clone(),
        value: node,
        revision: 1,
    }]);
    view.apply(&[Event {
        kind: EventKind::Put,
        key,
        value: b"{junk".to_vec(),
        revision: 2,
    }]);
    assert!(view.nodes.is_empty());
    assert_eq!(view.unreadable, 1);
}

#[test]
fn a_network_replaced_in_one_transaction_is_replaced_in_one_update() {
    let store = store();
    let mut h1 = Node::join(&store, "h1", 1);
    let mut h2 = Node::join(&store, "h2", 2);
    let blue: NetworkInfo = h1.call(global("blue", "10.40.0.0/16")).unwrap();
    h2.sync(&store);
    // Elsewhere, blue goes and red takes its VLAN, VNI and subnet, in one revision.
    let old = store
        .lock()
        .unwrap()
        .get(&Key::Network("blue".into()).path())
        .unwrap()
        .to_vec();
    let old: NetworkRecord = serde_json::from_slice(&old).unwrap();
    let red = NetworkRecord {
        name: "red".into(),
        id: "f".repeat(64),
        ..old.clone()
    };
    let mut swap = keys::remove_network(&old);
    swap.compares.clear();
    swap.success.extend(keys::create_network(&red).success);
    store.lock().unwrap().txn(&swap, None).unwrap();
    h2.sync(&store);
    let networks = &h2.controller.model().networks;
    assert!(networks.get("blue").is_none());
    let got = networks.get("red").expect("red in the same update");
    assert_eq!((got.vlan, got.vni), (blue.vlan, blue.vni));
}
