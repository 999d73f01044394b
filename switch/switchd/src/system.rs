//! The controller's effects, carried out on this machine: TAPs and their forwarding
//! threads, namespaces, the uplink with its routes, the NAT table, the VTEP's path MTU
//! probes, and the state directory. Everything here is a thin call into the OS layer
//! (`switchyard-os`) or the data plane's threads; the decisions are the controller's.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use ipnet::Ipv4Net;
use mio::unix::SourceFd;
use mio::Interest;
use switchyard::cluster::{StoreError, Txn};
use switchyard::controller::state::{SavedPort, SavedState};
use switchyard::controller::{
    Cluster, ControlError, ErrorCode, HostPorts, LinkFacts, Links, NamespaceId, NatRules, Routing,
    Store, Underlay,
};
use switchyard::PortId;
use switchyard_os::netns::{Netns, NetnsError, NetnsId};
use switchyard_os::nft::{self, NatError};
use switchyard_os::packet::{PacketError, PacketPort};
use switchyard_os::rtnl::{Rtnl, RtnlError};
use switchyard_os::tap::{Tap, TapError};

use crate::cluster::ClusterLink;
use crate::dataplane::{self, Device, Shared, Thread};
use crate::state::StateStore;
use crate::uplink::{self, Uplink};
use crate::vtep::Vtep;

/// A port's device (TAP or host interface) and the thread that reads it.
struct PortIo {
    device: Device,
    _thread: Thread,
}

/// The machine, as the controller sees it.
pub struct System {
    shared: Arc<Shared>,
    store: StateStore,
    ports: BTreeMap<PortId, PortIo>,
    uplink: Option<Uplink>,
    uplink_name: String,
    /// The namespace the last `identify_netns` opened, so that the TAP is created in the
    /// very namespace that was identified, even if the path is rebound in between.
    last_netns: Option<(PathBuf, Netns)>,
    /// The cluster store, when switchd is a member of a cluster.
    pub cluster: Option<ClusterLink>,
    /// The control thread's event loop, which watches the VTEP's claim.
    registry: mio::Registry,
    /// The threads receiving on the VTEP's sockets.
    vxlan_threads: Vec<Thread>,
    /// Outer UDP checksums on IPv4 for a VTEP bound while running.
    udp_checksums: bool,
}

/// How many receiving sockets (and threads) a VTEP has: one per CPU.
pub fn vtep_receivers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl System {
    pub fn new(
        shared: Arc<Shared>,
        store: StateStore,
        uplink_name: String,
        registry: mio::Registry,
        udp_checksums: bool,
    ) -> System {
        System {
            shared,
            store,
            ports: BTreeMap::new(),
            uplink: None,
            uplink_name,
            last_netns: None,
            cluster: None,
            registry,
            vxlan_threads: Vec::new(),
            udp_checksums,
        }
    }

    /// Makes `vtep` switchd's VTEP, for good: the control thread answers other
    /// switchds' claim queries, and every forwarding thread sends through it. Receiving
    /// starts with [`System::start_vxlan`].
    pub fn set_vtep(&mut self, vtep: Arc<Vtep>) -> anyhow::Result<()> {
        let claim = vtep.claim_fd().as_raw_fd();
        self.registry
            .register(
                &mut SourceFd(&claim),
                crate::daemon::VTEP_CLAIM,
                Interest::READABLE,
            )
            .context("cannot watch the VTEP claim")?;
        if let Err(vtep) = self.shared.vtep.set(vtep) {
            let _ = self.registry.deregister(&mut SourceFd(&claim));
            anyhow::bail!("switchd is already a VTEP, not at {}", vtep.local());
        }
        Ok(())
    }

    /// Starts the threads that receive on the VTEP, if there is one (at start, after
    /// the restore: what arrived meanwhile then meets the configured peers).
    pub fn start_vxlan(&mut self) -> std::io::Result<()> {
        if let Some(vtep) = self.shared.vtep.get() {
            if self.vxlan_threads.is_empty() {
                self.vxlan_threads = dataplane::spawn_vxlan(&self.shared, vtep)?;
            }
        }
        Ok(())
    }

    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// Starts forwarding for port `id` through `tap` (a thread of its own) and marks
    /// the port up.
    fn install(&mut self, id: PortId, tap: Tap) -> Result<u32, String> {
        let tap = Arc::new(tap);
        let ifindex = tap.ifindex();
        self.start_device(id, Device::Tap(Arc::clone(&tap)))
            .map_err(|err| {
                let _ = tap.destroy();
                format!(
                    "cannot start the forwarding thread of TAP {}: {err}",
                    tap.name()
                )
            })?;
        Ok(ifindex)
    }

    /// Starts forwarding for port `id` through `device` (a thread of its own) and marks
    /// the port up.
    fn start_device(&mut self, id: PortId, device: Device) -> std::io::Result<()> {
        self.shared.set_device(id, Some(device.clone()));
        let thread = match dataplane::spawn_port(Arc::clone(&self.shared), id, device.clone()) {
            Ok(thread) => thread,
            Err(err) => {
                self.shared.set_device(id, None);
                return Err(err);
            }
        };
        self.ports.insert(
            id,
            PortIo {
                device,
                _thread: thread,
            },
        );
        let _ = self.shared.dp.switch().set_port_up(id, true);
        Ok(())
    }

    /// Stops port `id`'s forwarding thread and hands its TAP back (it stays in the
    /// namespace until it is destroyed or the last reference goes).
    pub fn release(&mut self, id: PortId) -> Option<Device> {
        let io = self.ports.remove(&id)?;
        self.shared.set_device(id, None);
        Some(io.device)
    }

    /// The TAP of port `id`, if it has one open.
    fn tap(&self, id: PortId) -> Option<&Arc<Tap>> {
        match &self.ports.get(&id)?.device {
            Device::Tap(tap) => Some(tap),
            Device::Host(_) => None,
        }
    }

    /// Stops receiving VXLAN, and lets every TAP go (they stay, persistent, in their
    /// namespaces) and the uplink.
    pub fn shutdown(&mut self) {
        self.vxlan_threads.clear();
        let ids: Vec<PortId> = self.ports.keys().copied().collect();
        for id in ids {
            drop(self.release(id));
        }
        self.shared.set_uplink(None);
        self.uplink = None;
    }

    fn open_netns(&mut self, path: &Path) -> Result<Netns, ControlError> {
        if let Some((cached, _)) = &self.last_netns {
            if cached == path {
                if let Some((_, netns)) = self.last_netns.take() {
                    return Ok(netns);
                }
            }
        }
        Netns::open_path(path).map_err(|err| netns_error(path, err))
    }
}

fn netns_error(path: &Path, err: NetnsError) -> ControlError {
    ControlError::new(
        ErrorCode::NamespaceUnavailable,
        format!("cannot open network namespace {}: {err}", path.display()),
    )
}

/// A TAP error with its causes, one line, and its code.
fn tap_error(err: TapError) -> ControlError {
    let code = match &err {
        TapError::NameTaken(_) => ErrorCode::AlreadyExists,
        TapError::Netns(_) => ErrorCode::NamespaceUnavailable,
        _ => ErrorCode::SystemError,
    };
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        if !message.contains(&cause.to_string()) {
            message.push_str(&format!(": {cause}"));
        }
        source = cause.source();
    }
    ControlError::new(code, message)
}

impl Links for System {
    fn identify_netns(&mut self, path: &Path) -> Result<NamespaceId, ControlError> {
        let netns = Netns::open_path(path).map_err(|err| netns_error(path, err))?;
        let identity = netns.identity();
        self.last_netns = Some((path.to_path_buf(), netns));
        Ok(NamespaceId {
            dev: identity.dev,
            ino: identity.ino,
            cookie: identity.cookie,
        })
    }

    fn netns_is(&self, path: &Path, dev: u64, ino: u64) -> bool {
        // Only asked of ports that are up: their TAP keeps the namespace alive, so its
        // inode cannot have been reused and comparing inodes is enough.
        NetnsId::of(path).is_ok_and(|id| (id.dev, id.ino) == (dev, ino))
    }

    fn create_tap(
        &mut self,
        port: PortId,
        netns: &Path,
        ifname: &str,
    ) -> Result<u32, ControlError> {
        let namespace = self.open_netns(netns)?;
        let tap = Tap::create_in(&namespace, ifname).map_err(tap_error)?;
        self.install(port, tap).map_err(ControlError::system)
    }

    fn reattach_tap(&mut self, port: &SavedPort, same_boot: bool) -> Result<(), String> {
        let tap = reopen(port, same_boot)?;
        self.install(port.id, tap).map(drop)
    }

    fn locate_tap(&mut self, port: PortId) -> Result<(NamespaceId, String, u32), ControlError> {
        let tap = self
            .tap(port)
            .ok_or_else(|| ControlError::system(format!("port {port} has no TAP open")))?;
        let (identity, name, ifindex) = tap.locate().map_err(tap_error)?;
        Ok((
            NamespaceId {
                dev: identity.dev,
                ino: identity.ino,
                cookie: identity.cookie,
            },
            name,
            ifindex,
        ))
    }

    fn destroy_tap(&mut self, port: PortId) -> Result<(), ControlError> {
        match self.release(port) {
            Some(Device::Tap(tap)) => tap.destroy().map_err(tap_error),
            // A host interface is never destroyed: it stays as the user made it.
            Some(Device::Host(_)) | None => Ok(()),
        }
    }

    fn discard_tap(&mut self, port: &SavedPort) -> Result<bool, ControlError> {
        let Ok(netns) = Netns::open_path(&port.netns) else {
            // The namespace is gone, and a TAP in it with it.
            return Ok(false);
        };
        if netns.identity().cookie != port.netns_cookie {
            // The path names another namespace now: nothing of ours can be in it.
            return Ok(false);
        }
        match Tap::attach_in(&netns, &port.ifname) {
            Ok(Some(tap)) => tap.destroy().map(|()| true).map_err(tap_error),
            Ok(None) => Ok(false),
            Err(err) => Err(tap_error(err)),
        }
    }
}

/// Finds a saved port's TAP again, after checking that the namespace path still names
/// the very namespace the port was attached in (same cookie, same boot).
fn reopen(port: &SavedPort, same_boot: bool) -> Result<Tap, String> {
    let advice = "remove the port with `swctl port del` (or `nsutil detach`) and attach again";
    if !same_boot {
        return Err(format!(
            "the machine rebooted since the port was attached, so its TAP is gone; {advice}"
        ));
    }
    let netns = Netns::open_path(&port.netns).map_err(|err| {
        format!(
            "namespace {} is gone; {advice}: {err}",
            port.netns.display()
        )
    })?;
    if netns.identity().cookie != port.netns_cookie {
        return Err(format!(
            "{} now names a different namespace than the one attached; {advice}",
            port.netns.display()
        ));
    }
    Tap::reopen_in(&netns, port.ifindex).map_err(|err| tap_error(err).message)
}

/// Runs `f` in the namespace at `netns`, or in switchd's own.
fn in_netns<T: Send>(
    netns: Option<&Path>,
    f: impl FnOnce() -> Result<T, ControlError> + Send,
) -> Result<T, ControlError> {
    match netns {
        None => f(),
        Some(path) => {
            let namespace = Netns::open_path(path).map_err(|err| netns_error(path, err))?;
            namespace
                .run(|| Ok::<_, NetnsError>(f()))
                .map_err(|err| netns_error(path, err))?
        }
    }
}

/// Host interfaces: rtnetlink for what they are, a packet socket to forward through.
impl HostPorts for System {
    fn link_facts(
        &mut self,
        netns: Option<&Path>,
        ifname: &str,
    ) -> Result<Option<LinkFacts>, ControlError> {
        let rtnl_error =
            |err: RtnlError| ControlError::system(format!("cannot read interface {ifname}: {err}"));
        in_netns(netns, || {
            let mut rtnl = Rtnl::open().map_err(rtnl_error)?;
            let link = match rtnl.link(ifname) {
                Ok(link) => link,
                Err(err) if err.errno() == Some(nix::errno::Errno::ENODEV) => return Ok(None),
                Err(err) => return Err(rtnl_error(err)),
            };
            let master_name = match link.master {
                Some(index) => rtnl.link_by_index(index).ok().map(|m| m.name),
                None => None,
            };
            Ok(Some(LinkFacts {
                ifindex: link.index,
                mtu: link.mtu,
                mac: link.mac,
                loopback: link.loopback,
                master: link.master,
                master_name,
                kind: link.kind,
                up: link.up && link.oper_up,
            }))
        })
    }

    fn open_host_port(
        &mut self,
        port: PortId,
        netns: Option<&Path>,
        ifname: &str,
    ) -> Result<u32, ControlError> {
        self.close_host_port(port);
        // The socket keeps working from switchd's namespace once opened.
        let socket = in_netns(netns, || {
            PacketPort::open(ifname).map_err(|err| {
                let code = match err {
                    PacketError::NoSuchInterface(_) => ErrorCode::NoSuchEntry,
                    _ => ErrorCode::SystemError,
                };
                ControlError::new(code, format!("cannot open {ifname} as a port: {err}"))
            })
        })?;
        let ifindex = socket.ifindex();
        self.start_device(port, Device::Host(Arc::new(socket)))
            .map_err(|err| {
                ControlError::system(format!(
                    "cannot start the forwarding thread of {ifname}: {err}"
                ))
            })?;
        Ok(ifindex)
    }

    fn close_host_port(&mut self, port: PortId) {
        if matches!(
            self.ports.get(&port).map(|io| &io.device),
            Some(Device::Host(_))
        ) {
            // The thread stops and the socket closes with the last reference: the
            // interface drops out of promiscuous mode.
            drop(self.release(port));
        }
    }
}

impl Routing for System {
    fn host_routes(&mut self) -> Result<Vec<Ipv4Net>, ControlError> {
        uplink::host_routes(self.uplink.as_ref().map(Uplink::ifindex))
            .map_err(|err| ControlError::system(format!("{err:#}")))
    }

    fn create_uplink(&mut self) -> Result<(), ControlError> {
        if self.uplink.is_none() {
            let created = Uplink::create(&self.uplink_name, &self.shared)
                .map_err(|err| ControlError::system(format!("{err:#}")))?;
            self.uplink = Some(created);
        }
        Ok(())
    }

    fn uplink_name(&self) -> Option<String> {
        self.uplink.as_ref().map(|u| u.name().to_string())
    }

    fn route(&mut self, subnet: Ipv4Net, mtu: u32) -> Result<(), ControlError> {
        let uplink = self
            .uplink
            .as_ref()
            .ok_or_else(|| ControlError::system("there is no uplink to route into"))?;
        uplink
            .route(subnet, mtu)
            .map_err(|err| ControlError::system(format!("{err:#}")))
    }

    fn unroute(&mut self, subnet: Ipv4Net) -> Result<(), ControlError> {
        match &self.uplink {
            Some(uplink) => uplink
                .unroute(subnet)
                .map_err(|err| ControlError::system(format!("{err:#}"))),
            None => Ok(()),
        }
    }

    fn replace_nat(&mut self, rules: &NatRules) -> Result<(), ControlError> {
        match nft::apply(rules) {
            // No nf_tables here, and nothing to write: nothing to do either.
            Err(NatError::Unavailable { .. }) if rules.is_empty() => Ok(()),
            other => other.map_err(|err| ControlError::system(err.to_string())),
        }
    }
}

impl Underlay for System {
    fn vtep(&self) -> Option<SocketAddr> {
        self.shared.vtep.get().map(|v| v.local())
    }

    fn path_mtu(&mut self, peer: SocketAddr) -> u32 {
        match self.shared.vtep.get() {
            Some(vtep) => vtep.learn_path_mtu(peer),
            None => switchyard::forward::DEFAULT_PATH_MTU,
        }
    }

    /// Binds, starts receiving, then makes it the VTEP: a failure at any point leaves
    /// no socket, thread or claim behind.
    fn enable_vtep(&mut self, local: SocketAddr) -> Result<SocketAddr, ControlError> {
        if let Some(vtep) = self.shared.vtep.get() {
            return Err(ControlError::new(
                ErrorCode::AlreadyExists,
                format!("there is already a VTEP at {}", vtep.local()),
            ));
        }
        let vtep = Vtep::bind(local, self.udp_checksums, vtep_receivers())
            .map(Arc::new)
            .map_err(|err| ControlError::system(format!("{err:#}")))?;
        let threads = dataplane::spawn_vxlan(&self.shared, &vtep).map_err(|err| {
            ControlError::system(format!("cannot start the VXLAN receiving threads: {err}"))
        })?;
        self.set_vtep(Arc::clone(&vtep))
            .map_err(|err| ControlError::system(format!("{err:#}")))?;
        self.vxlan_threads = threads;
        Ok(vtep.local())
    }
}

impl Store for System {
    fn save(&mut self, state: &SavedState) -> Result<(), ControlError> {
        self.store
            .save(state)
            .map_err(|err| ControlError::new(ErrorCode::StateNotSaved, format!("{err:#}")))
    }

    fn random_id(&mut self) -> Result<String, ControlError> {
        let mut bytes = [0u8; 32];
        std::io::Read::read_exact(
            &mut File::open("/dev/urandom")
                .map_err(|err| ControlError::system(format!("cannot make a network id: {err}")))?,
            &mut bytes,
        )
        .map_err(|err| ControlError::system(format!("cannot make a network id: {err}")))?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl Cluster for System {
    fn cluster_node(&self) -> Option<String> {
        self.cluster.as_ref().map(|link| link.node().to_string())
    }

    fn cluster_txn(&mut self, txn: &Txn) -> Result<bool, ControlError> {
        let Some(link) = &self.cluster else {
            return Err(ControlError::new(
                ErrorCode::NoCluster,
                "switchd was started without --cluster-store",
            ));
        };
        link.txn(txn).map_err(|err| {
            let code = match err {
                StoreError::Unreachable { .. } => ErrorCode::StoreUnavailable,
                StoreError::Refused { .. } => ErrorCode::SystemError,
            };
            ControlError::new(code, err.to_string())
        })
    }
}
