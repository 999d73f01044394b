//! An in-memory world for the controller: namespaces, TAPs, the uplink, routes, the NAT
//! table and the state file, with every side effect recorded, and failures and crashes
//! to order. Tests (and the fuzzers) drive the real controller against it, without root.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

use std::sync::{Arc, Mutex};

use super::effects::{
    Cluster, HostPorts, LinkFacts, Links, NamespaceId, NatRules, Routing, Store, Underlay,
    OWN_NETNS,
};
use super::error::{ControlError, ErrorCode};
use super::state::{SavedPort, SavedState};
use crate::cluster::{FakeStore, Txn};
use crate::port::PortId;

/// One side effect, as the fake saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    CreateTap(PortId),
    DestroyTap(PortId),
    ReattachTap(PortId),
    DiscardTap(PortId),
    CreateUplink,
    Route(Ipv4Net),
    Unroute(Ipv4Net),
    ReplaceNat(usize),
    EnableVtep(SocketAddr),
    OpenHostPort(PortId),
    CloseHostPort(PortId),
    Save,
}

/// An interface that is not one of switchd's TAPs: a NIC, bond, veth, loopback... in
/// some namespace (switchd's own is [`OWN_NETNS`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeLink {
    pub netns: PathBuf,
    pub ifname: String,
    pub facts: LinkFacts,
}

/// A TAP in some namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FakeTap {
    pub netns: PathBuf,
    pub ifname: String,
    pub ifindex: u32,
}

/// The world. Public fields are what tests look at and set up.
#[derive(Debug, Default)]
pub struct FakeSystem {
    /// Namespaces that exist, by path.
    pub namespaces: BTreeMap<PathBuf, NamespaceId>,
    /// TAPs that exist, persistent: they outlive the process that made them.
    pub taps: BTreeSet<FakeTap>,
    /// Which TAP each port of the running process forwards through.
    pub attached: BTreeMap<PortId, FakeTap>,
    pub uplink: bool,
    pub routes: BTreeMap<Ipv4Net, u32>,
    pub nat: NatRules,
    pub host_routes: Vec<Ipv4Net>,
    pub saved: Option<SavedState>,
    pub vtep: Option<SocketAddr>,
    /// Every effect that took place, in order.
    pub calls: Vec<Call>,
    /// The next call of this kind fails (once).
    pub fail: Option<Call>,
    /// How many calls of `fail`'s kind succeed before the one that fails.
    pub fail_skip: usize,
    /// After this many more effects the process "dies": every later effect fails and
    /// changes nothing, as if it never ran.
    pub crash_after: Option<usize>,
    /// The cluster store this node is a member of, and its name there (several fakes
    /// may share one store, as several hosts share etcd).
    pub cluster: Option<(String, Arc<Mutex<FakeStore>>)>,
    /// Interfaces that are not switchd's TAPs, by (namespace, name).
    pub links: BTreeMap<(PathBuf, String), FakeLink>,
    /// Which interface (namespace, name, index) each host port of the running process
    /// has a packet socket on.
    pub host_open: BTreeMap<PortId, (PathBuf, String, u32)>,
    next_ifindex: u32,
    next_id: u32,
}

impl FakeSystem {
    /// A world with switchd's own namespace ([`OWN_NETNS`]) and its loopback.
    pub fn new() -> FakeSystem {
        let mut fx = FakeSystem {
            next_ifindex: 2,
            ..FakeSystem::default()
        };
        fx.namespaces.insert(
            PathBuf::from(OWN_NETNS),
            NamespaceId {
                dev: 4,
                ino: 4026531840,
                cookie: 1,
            },
        );
        let own = PathBuf::from(OWN_NETNS);
        fx.links.insert(
            (own.clone(), "lo".into()),
            FakeLink {
                netns: own,
                ifname: "lo".into(),
                facts: LinkFacts {
                    ifindex: 1,
                    mtu: 65536,
                    mac: None,
                    loopback: true,
                    master: None,
                    master_name: None,
                    kind: None,
                    up: true,
                },
            },
        );
        fx
    }

    /// Adds an interface `ifname` (up, MTU `mtu`, of `kind`) to the namespace at
    /// `netns` (`None`: switchd's own); returns its interface index.
    pub fn add_link(
        &mut self,
        netns: Option<&Path>,
        ifname: &str,
        mtu: u32,
        kind: Option<&str>,
    ) -> u32 {
        let netns = netns.map_or_else(|| PathBuf::from(OWN_NETNS), Path::to_path_buf);
        let ifindex = self.next_ifindex;
        self.next_ifindex += 1;
        self.links.insert(
            (netns.clone(), ifname.to_string()),
            FakeLink {
                netns,
                ifname: ifname.to_string(),
                facts: LinkFacts {
                    ifindex,
                    mtu,
                    mac: Some(crate::wire::MacAddr([0x52, 0x54, 0, 0, 0, ifindex as u8])),
                    loopback: false,
                    master: None,
                    master_name: None,
                    kind: kind.map(String::from),
                    up: true,
                },
            },
        );
        ifindex
    }

    /// The interface `ifname` of switchd's namespace (`None`) or another.
    pub fn link_mut(&mut self, netns: Option<&Path>, ifname: &str) -> Option<&mut FakeLink> {
        let netns = netns.map_or_else(|| PathBuf::from(OWN_NETNS), Path::to_path_buf);
        self.links.get_mut(&(netns, ifname.to_string()))
    }

    /// The interface goes away (a USB NIC unplugged, a veth deleted): a packet socket on
    /// it stops working.
    pub fn remove_link(&mut self, netns: Option<&Path>, ifname: &str) -> Option<FakeLink> {
        let netns = netns.map_or_else(|| PathBuf::from(OWN_NETNS), Path::to_path_buf);
        let link = self.links.remove(&(netns, ifname.to_string()))?;
        self.host_open
            .retain(|_, (_, _, ifindex)| *ifindex != link.facts.ifindex);
        Some(link)
    }

    /// Adds a namespace at `/run/netns/NAME`; returns its path.
    pub fn add_namespace(&mut self, name: &str) -> PathBuf {
        let path = PathBuf::from(format!("/run/netns/{name}"));
        let own = Path::new(OWN_NETNS);
        let n = self.namespaces.keys().filter(|p| *p != own).count() as u64 + 1;
        self.namespaces.insert(
            path.clone(),
            NamespaceId {
                dev: 4,
                ino: 4026532000 + n,
                cookie: 4096 + n,
            },
        );
        path
    }

    /// A runtime moves `port`'s TAP into the namespace at `netns` and renames it.
    pub fn move_tap(&mut self, port: PortId, netns: &Path, ifname: &str) {
        if let Some(tap) = self.attached.get_mut(&port) {
            let old = tap.clone();
            tap.netns = netns.to_path_buf();
            tap.ifname = ifname.to_string();
            tap.ifindex += 100;
            let new = tap.clone();
            self.taps.remove(&old);
            self.taps.insert(new);
        }
    }

    /// The process is restarted: forwarding threads are gone, TAPs and the saved state
    /// stay; the uplink, its routes go with the process; the NAT table stays. The VTEP
    /// stays (as `--vtep` given again), or, if there was none, the one the state
    /// remembers is bound, as switchd's start does.
    pub fn restart(&mut self) {
        if self.vtep.is_none() {
            self.vtep = self.saved.as_ref().and_then(|s| s.vtep);
        }
        self.attached.clear();
        self.host_open.clear();
        self.uplink = false;
        self.routes.clear();
        self.crash_after = None;
        self.fail = None;
        self.fail_skip = 0;
        self.calls.clear();
    }

    /// Whether the next effect may happen, counting it; fails the planned failure.
    fn effect(&mut self, call: Call) -> Result<(), ControlError> {
        if let Some(left) = self.crash_after.as_mut() {
            if *left == 0 {
                return Err(ControlError::system("the process is dead"));
            }
            *left -= 1;
        }
        if self.fail.as_ref() == Some(&call) && self.fail_skip > 0 {
            self.fail_skip -= 1;
        } else if self.fail.as_ref() == Some(&call) {
            self.fail = None;
            return Err(ControlError::system(format!("{call:?} failed, as ordered")));
        }
        self.calls.push(call);
        Ok(())
    }
}

impl Links for FakeSystem {
    fn identify_netns(&mut self, path: &Path) -> Result<NamespaceId, ControlError> {
        self.namespaces.get(path).copied().ok_or_else(|| {
            ControlError::new(
                ErrorCode::NamespaceUnavailable,
                format!("no such network namespace {}", path.display()),
            )
        })
    }

    fn netns_is(&self, path: &Path, dev: u64, ino: u64) -> bool {
        self.namespaces
            .get(path)
            .is_some_and(|id| id.dev == dev && id.ino == ino)
    }

    fn create_tap(
        &mut self,
        port: PortId,
        netns: &Path,
        ifname: &str,
    ) -> Result<u32, ControlError> {
        if self
            .taps
            .iter()
            .any(|t| t.netns == netns && t.ifname == ifname)
            || self
                .links
                .contains_key(&(netns.to_path_buf(), ifname.to_string()))
        {
            return Err(ControlError::new(
                ErrorCode::AlreadyExists,
                format!("interface {ifname} already exists in that namespace"),
            ));
        }
        self.effect(Call::CreateTap(port))?;
        let tap = FakeTap {
            netns: netns.to_path_buf(),
            ifname: ifname.to_string(),
            ifindex: self.next_ifindex,
        };
        self.next_ifindex += 1;
        self.taps.insert(tap.clone());
        self.attached.insert(port, tap);
        Ok(self.next_ifindex - 1)
    }

    fn reattach_tap(&mut self, port: &SavedPort, _same_boot: bool) -> Result<(), String> {
        self.effect(Call::ReattachTap(port.id))
            .map_err(|e| e.message)?;
        let tap = self
            .taps
            .iter()
            .find(|t| t.netns == port.netns && t.ifindex == port.ifindex)
            .cloned()
            .ok_or_else(|| format!("no interface with index {} in that namespace", port.ifindex))?;
        self.attached.insert(port.id, tap);
        Ok(())
    }

    fn locate_tap(&mut self, port: PortId) -> Result<(NamespaceId, String, u32), ControlError> {
        let tap = self
            .attached
            .get(&port)
            .ok_or_else(|| ControlError::system(format!("port {port} has no TAP")))?;
        let id = self
            .namespaces
            .get(&tap.netns)
            .copied()
            .ok_or_else(|| ControlError::system("the TAP's namespace is gone"))?;
        Ok((id, tap.ifname.clone(), tap.ifindex))
    }

    fn destroy_tap(&mut self, port: PortId) -> Result<(), ControlError> {
        self.effect(Call::DestroyTap(port))?;
        if let Some(tap) = self.attached.remove(&port) {
            self.taps.remove(&tap);
        }
        Ok(())
    }

    fn discard_tap(&mut self, port: &SavedPort) -> Result<bool, ControlError> {
        self.effect(Call::DiscardTap(port.id))?;
        let found = self
            .taps
            .iter()
            .find(|t| t.netns == port.netns && t.ifname == port.ifname)
            .cloned();
        Ok(found.is_some_and(|tap| self.taps.remove(&tap)))
    }
}

impl HostPorts for FakeSystem {
    /// The interfaces of [`FakeSystem::links`], and switchd's TAPs (kind `tun`).
    fn link_facts(
        &mut self,
        netns: Option<&Path>,
        ifname: &str,
    ) -> Result<Option<LinkFacts>, ControlError> {
        let netns = netns.map_or_else(|| PathBuf::from(OWN_NETNS), Path::to_path_buf);
        self.identify_netns(&netns)?;
        if let Some(link) = self.links.get(&(netns.clone(), ifname.to_string())) {
            return Ok(Some(link.facts.clone()));
        }
        Ok(self
            .taps
            .iter()
            .find(|t| t.netns == netns && t.ifname == ifname)
            .map(|tap| LinkFacts {
                ifindex: tap.ifindex,
                mtu: 1500,
                mac: None,
                loopback: false,
                master: None,
                master_name: None,
                kind: Some("tun".into()),
                up: true,
            }))
    }

    fn open_host_port(
        &mut self,
        port: PortId,
        netns: Option<&Path>,
        ifname: &str,
    ) -> Result<u32, ControlError> {
        let path = netns.map_or_else(|| PathBuf::from(OWN_NETNS), Path::to_path_buf);
        let ifindex = self
            .links
            .get(&(path.clone(), ifname.to_string()))
            .map(|l| l.facts.ifindex)
            .ok_or_else(|| {
                ControlError::new(
                    ErrorCode::NoSuchInterface,
                    format!("no interface {ifname} in {}", path.display()),
                )
            })?;
        self.effect(Call::OpenHostPort(port))?;
        self.host_open
            .insert(port, (path, ifname.to_string(), ifindex));
        Ok(ifindex)
    }

    fn close_host_port(&mut self, port: PortId) {
        if self.effect(Call::CloseHostPort(port)).is_ok() {
            self.host_open.remove(&port);
        }
    }
}

impl Routing for FakeSystem {
    fn host_routes(&mut self) -> Result<Vec<Ipv4Net>, ControlError> {
        Ok(self.host_routes.clone())
    }

    fn create_uplink(&mut self) -> Result<(), ControlError> {
        self.effect(Call::CreateUplink)?;
        self.uplink = true;
        Ok(())
    }

    fn uplink_name(&self) -> Option<String> {
        self.uplink.then(|| "switchyard0".to_string())
    }

    fn route(&mut self, subnet: Ipv4Net, mtu: u32) -> Result<(), ControlError> {
        self.effect(Call::Route(subnet))?;
        self.routes.insert(subnet, mtu);
        Ok(())
    }

    fn unroute(&mut self, subnet: Ipv4Net) -> Result<(), ControlError> {
        self.effect(Call::Unroute(subnet))?;
        self.routes.remove(&subnet);
        Ok(())
    }

    fn replace_nat(&mut self, rules: &NatRules) -> Result<(), ControlError> {
        self.effect(Call::ReplaceNat(
            rules.masquerade.len() + rules.forwards.len(),
        ))?;
        self.nat = rules.clone();
        Ok(())
    }
}

impl Underlay for FakeSystem {
    fn vtep(&self) -> Option<SocketAddr> {
        self.vtep
    }

    fn path_mtu(&mut self, _peer: SocketAddr) -> u32 {
        1500
    }

    /// Binds anything (`fail` refuses one), once.
    fn enable_vtep(&mut self, local: SocketAddr) -> Result<SocketAddr, ControlError> {
        if let Some(vtep) = self.vtep {
            return Err(ControlError::system(format!("already the VTEP {vtep}")));
        }
        self.effect(Call::EnableVtep(local))?;
        self.vtep = Some(local);
        Ok(local)
    }
}

impl Store for FakeSystem {
    fn save(&mut self, state: &SavedState) -> Result<(), ControlError> {
        self.effect(Call::Save)
            .map_err(|e| ControlError::new(ErrorCode::StateNotSaved, e.message))?;
        self.saved = Some(state.clone());
        Ok(())
    }

    fn random_id(&mut self) -> Result<String, ControlError> {
        self.next_id += 1;
        Ok(format!("{:064x}", self.next_id))
    }
}

impl Cluster for FakeSystem {
    fn cluster_node(&self) -> Option<String> {
        self.cluster.as_ref().map(|(node, _)| node.clone())
    }

    fn cluster_txn(&mut self, txn: &Txn) -> Result<bool, ControlError> {
        let Some((_, store)) = &self.cluster else {
            return Err(ControlError::new(ErrorCode::NoCluster, "not clustered"));
        };
        let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
        store
            .txn(txn, None)
            .map_err(|err| ControlError::new(ErrorCode::StoreUnavailable, err.to_string()))
    }
}
