//! Control requests: decode a line, act on the daemon, encode the answer.
//!
//! Every change is saved to the state directory before it is acknowledged; a change that
//! cannot be saved is undone and reported, so what switchd says and what it will restore
//! after a restart never disagree.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use ipnet::Ipv4Net;
use serde::Serialize;
use switchyard::control::{
    AttachRequest, Attached, Detached, EndpointInfo, FdbRecord, FdbStats, Flushed, NetworkInfo,
    PeerInfo, PortInfo, PortStats, Reply, Request, RouterInfo, Stats, Status, VniMapping,
    VxlanInfo,
};
use switchyard::fdb::{FdbEntry, FlushFilter};
use switchyard::network::{Endpoint, Network, NetworkConfig};
use switchyard::wire::{MacAddr, VlanId};
use switchyard::{PortId, PortMode};
use switchyard_encap::Vni;

use crate::daemon::{port_name, Daemon, Peer, PortEntry};
use crate::state::SavedPort;
use crate::uplink;
use switchyard_os::netns;
use switchyard_os::tap::Tap;

type Outcome<T> = Result<T, String>;

/// Answers one request line with one JSON line (without the newline).
pub fn handle_line(daemon: &mut Daemon, line: &[u8]) -> String {
    let request: Request = match serde_json::from_slice(line) {
        Ok(request) => request,
        Err(err) => return error_line(&format!("malformed request: {err}")),
    };
    tracing::debug!(?request, "control request");
    match request {
        Request::Status => reply(Ok(status(daemon))),
        Request::Attach(req) => reply(attach(daemon, req)),
        Request::Detach { netns, ifname } => reply(detach(daemon, &netns, &ifname)),
        Request::PortDel { port } => reply(port_del(daemon, &port)),
        Request::PortList => reply(Ok(daemon
            .ports
            .keys()
            .map(|id| port_info(daemon, *id))
            .collect::<Vec<_>>())),
        Request::PortSet { port, mode } => reply(port_set(daemon, &port, mode)),
        Request::FdbShow { vlan, port } => reply(fdb_show(daemon, vlan, port.as_deref())),
        Request::FdbAdd {
            mac,
            vlan,
            port,
            vtep,
        } => reply(fdb_add(daemon, mac, vlan, port.as_deref(), vtep)),
        Request::FdbDel { mac, vlan } => reply(fdb_del(daemon, mac, vlan)),
        Request::FdbFlush {
            vlan,
            port,
            include_static,
        } => reply(fdb_flush(daemon, vlan, port.as_deref(), include_static)),
        Request::Stats => reply(Ok(stats(daemon))),
        Request::VxlanShow => reply(vxlan_info(daemon)),
        Request::VxlanMap { vlan, vni } => reply(vxlan_map(daemon, vlan, vni)),
        Request::VxlanUnmap { vlan } => reply(vxlan_unmap(daemon, vlan)),
        Request::PeerAdd { addr } => reply(peer_add(daemon, &addr)),
        Request::PeerDel { addr } => reply(peer_del(daemon, &addr)),
        Request::PeerList => reply(vxlan_info(daemon).map(|info| info.peers)),
        Request::NetworkCreate(config) => reply(network_create(daemon, &config)),
        Request::NetworkList => reply(Ok(daemon
            .networks
            .iter()
            .map(|n| network_info(daemon, n))
            .collect::<Vec<_>>())),
        Request::NetworkInspect { name } => reply(
            daemon
                .networks
                .find(&name)
                .map(|n| network_info(daemon, n))
                .map_err(|err| err.to_string()),
        ),
        Request::NetworkRemove { name } => reply(network_remove(daemon, &name)),
        Request::RouterShow => reply(Ok(router_info(daemon))),
    }
}

fn reply<T: Serialize>(outcome: Outcome<T>) -> String {
    let envelope = match outcome {
        Ok(value) => Reply::Result(value),
        Err(message) => Reply::Error(message),
    };
    serde_json::to_string(&envelope)
        .unwrap_or_else(|err| error_line(&format!("cannot encode the answer: {err}")))
}

pub fn error_line(message: &str) -> String {
    serde_json::to_string(&Reply::<()>::Error(message.to_string())).unwrap_or_default()
}

fn status(daemon: &Daemon) -> Status {
    Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        uptime_secs: daemon.started().elapsed().as_secs(),
        ports: daemon.ports.len(),
        state_dir: daemon.store.dir().to_path_buf(),
    }
}

fn port_info(daemon: &Daemon, id: PortId) -> PortInfo {
    let entry = &daemon.ports[&id];
    PortInfo {
        id,
        name: port_name(&entry.saved),
        netns: entry.saved.netns.clone(),
        ifname: entry.saved.ifname.clone(),
        ifindex: entry.saved.ifindex,
        mode: entry.saved.mode.clone(),
        state: match (&entry.problem, entry.problem.is_none() && namespace_is_gone(&entry.saved)) {
            (Some(problem), _) => format!("down: {problem}"),
            (None, true) => format!(
                "orphaned: namespace {} was deleted, but this port keeps it alive; remove the port with `nsutil detach` or `swctl port del`",
                entry.saved.netns.display()
            ),
            (None, false) => "up".to_string(),
        },
    }
}

/// Whether the namespace file of a port no longer names the namespace the port is in.
/// Only asked of ports that are up: their TAP keeps the namespace alive, so its inode
/// cannot have been reused and comparing inodes is enough.
fn namespace_is_gone(port: &SavedPort) -> bool {
    match netns::NetnsId::of(&port.netns) {
        Ok(id) => (id.dev, id.ino) != (port.netns_dev, port.netns_ino),
        Err(_) => true,
    }
}

/// A port by id (`3`), name (`red/eth0`), or interface name when only one port has it.
fn resolve_port(daemon: &Daemon, text: &str) -> Outcome<PortId> {
    let not_found =
        || format!("no such port {text:?}: give a port id or name as `swctl port ls` lists them");
    if let Ok(id) = text.parse::<u32>() {
        return daemon
            .ports
            .contains_key(&PortId(id))
            .then_some(PortId(id))
            .ok_or_else(not_found);
    }
    if let Some((id, _)) = daemon
        .ports
        .iter()
        .find(|(_, p)| port_name(&p.saved) == text)
    {
        return Ok(*id);
    }
    let by_ifname: Vec<PortId> = daemon
        .ports
        .iter()
        .filter(|(_, p)| p.saved.ifname == text)
        .map(|(id, _)| *id)
        .collect();
    match by_ifname.as_slice() {
        [id] => Ok(*id),
        [] => Err(not_found()),
        _ => Err(format!(
            "{text:?} names several ports; use the port id or the full name"
        )),
    }
}

fn validate_ifname(ifname: &str) -> Outcome<()> {
    let ok = !ifname.is_empty()
        && ifname.len() < libc::IFNAMSIZ
        && ifname != "."
        && ifname != ".."
        && !ifname
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid interface name {ifname:?}: use 1 to 15 characters without '/', ':' or spaces"
        ))
    }
}

fn validate_mode(mode: &PortMode) -> Outcome<()> {
    match mode {
        PortMode::Trunk {
            allowed,
            native: None,
        } if allowed.is_empty() => {
            Err("a trunk port must allow at least one VLAN or have a native VLAN".to_string())
        }
        _ => Ok(()),
    }
}

/// The label for a namespace path: `red` for /run/netns/red, `pid:42` for /proc/42/ns/net.
fn default_label(netns: &Path) -> String {
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

/// Opens the namespace at `path` and identifies it.
fn open_netns(path: &Path) -> Outcome<(netns::Netns, netns::Identity)> {
    if !path.is_absolute() {
        return Err(format!(
            "namespace path {} must be absolute",
            path.display()
        ));
    }
    let netns = netns::Netns::open_path(path)
        .map_err(|err| format!("cannot open network namespace {}: {err}", path.display()))?;
    let identity = netns.identity();
    Ok((netns, identity))
}

fn find_endpoint(daemon: &Daemon, identity: netns::Identity, ifname: &str) -> Option<PortId> {
    daemon
        .ports
        .iter()
        .find(|(_, p)| p.saved.netns_cookie == identity.cookie && p.saved.ifname == ifname)
        .map(|(id, _)| *id)
}

fn attach(daemon: &mut Daemon, mut req: AttachRequest) -> Outcome<Attached> {
    validate_ifname(&req.ifname)?;
    // A network decides the port's mode and address.
    let network = match &req.network {
        Some(name) => Some(
            daemon
                .networks
                .find(name)
                .map_err(|e| e.to_string())?
                .clone(),
        ),
        None if req.ip.is_some() => {
            return Err("an address can only be assigned on a network: name one".to_string())
        }
        None => None,
    };
    if let Some(network) = &network {
        req.mode = PortMode::Access { vlan: network.vlan };
    }
    validate_mode(&req.mode)?;
    let (netns_file, identity) = open_netns(&req.netns)?;
    if let Some(id) = find_endpoint(daemon, identity, &req.ifname) {
        return existing_attachment(daemon, id, &req);
    }
    let ip = match &network {
        Some(network) => Some(
            daemon
                .networks
                .pick_address(&network.name, req.ip)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let tap = Tap::create_in(&netns_file, &req.ifname).map_err(|err| {
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            if !message.contains(&cause.to_string()) {
                message.push_str(&format!(": {cause}"));
            }
            source = cause.source();
        }
        message
    })?;
    let id = PortId(daemon.next_port_id);
    let saved = SavedPort {
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
        ifindex: tap.ifindex(),
        mode: req.mode.clone(),
    };
    daemon.next_port_id += 1;
    daemon.ports.insert(id, PortEntry::new(saved));
    daemon.switch().set_port(id, req.mode);
    if let (Some(network), Some(ip)) = (&network, ip) {
        let endpoint = Endpoint {
            network: network.name.clone(),
            port: id,
            ip,
            mac: MacAddr::from_ipv4(ip),
            container_id: req.container_id.clone(),
        };
        if let Err(err) = daemon.networks.add_endpoint(endpoint) {
            remove_port(daemon, id);
            return Err(err.to_string());
        }
        daemon
            .shared
            .dp
            .router()
            .set_static_neighbor(network.vlan, ip, MacAddr::from_ipv4(ip));
    }
    let installed = daemon
        .install_tap(id, tap)
        .map_err(|err| format!("{err:#}"));
    if let Err(err) = installed.and_then(|()| daemon.save().map_err(|err| format!("{err:#}"))) {
        remove_port(daemon, id);
        return Err(format!("attach failed and was rolled back: {err}"));
    }
    tracing::info!(port = %id, name = %port_name(&daemon.ports[&id].saved), "attached");
    Ok(Attached {
        port: port_info(daemon, id),
        created: true,
        endpoint: endpoint_info(daemon, id),
    })
}

/// The answer to attaching (namespace, ifname) again: the attachment as it is, if it
/// is what was asked for.
fn existing_attachment(daemon: &Daemon, id: PortId, req: &AttachRequest) -> Outcome<Attached> {
    let endpoint = endpoint_info(daemon, id);
    let name = port_name(&daemon.ports[&id].saved);
    match (&req.network, &endpoint) {
        (Some(wanted), Some(endpoint)) if *wanted != endpoint.network => {
            return Err(format!(
                "{name} is already attached to network {}; detach it first, or attach with another --ifname",
                endpoint.network
            ))
        }
        (Some(wanted), None) => {
            return Err(format!(
                "{name} is already attached, but to no network; detach it first to attach it to network {wanted}"
            ))
        }
        (Some(_), Some(endpoint)) => {
            if let Some(ip) = req.ip.filter(|ip| *ip != endpoint.address.addr()) {
                return Err(format!(
                    "{name} is already attached with address {}; detach it first to change it to {ip}",
                    endpoint.address
                ));
            }
        }
        (None, Some(endpoint)) => {
            return Err(format!(
                "{name} is attached to network {}; name the network to attach it again, or detach it first",
                endpoint.network
            ))
        }
        (None, None) => {}
    }
    Ok(Attached {
        port: port_info(daemon, id),
        created: false,
        endpoint,
    })
}

fn endpoint_info(daemon: &Daemon, id: PortId) -> Option<EndpointInfo> {
    let endpoint = daemon.networks.endpoint_of_port(id)?;
    let network = daemon.networks.get(&endpoint.network)?;
    let port = &daemon.ports.get(&id)?.saved;
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
    })
}

fn network_info(daemon: &Daemon, network: &Network) -> NetworkInfo {
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
        endpoints: daemon
            .networks
            .endpoints_of(&network.name)
            .filter_map(|e| endpoint_info(daemon, e.port))
            .collect(),
    }
}

fn network_options(network: &Network) -> std::collections::BTreeMap<String, String> {
    let mut options = std::collections::BTreeMap::new();
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

fn network_create(daemon: &mut Daemon, config: &NetworkConfig) -> Outcome<NetworkInfo> {
    let host_routes = if config.internal {
        Vec::new()
    } else {
        let uplink = daemon.uplink.as_ref().map(|u| u.ifindex());
        uplink::host_routes(uplink).map_err(|err| format!("{err:#}"))?
    };
    let busy: Vec<VlanId> = {
        let switch = daemon.switch();
        let mut busy: Vec<VlanId> = switch.vni_map().into_iter().map(|(vlan, _)| vlan).collect();
        for entry in daemon.ports.values() {
            busy.extend(entry.saved.mode.vlans());
        }
        busy
    };
    if config.vni.is_some() && daemon.vtep().is_none() {
        return Err(
            "an overlay network (--vni) needs switchd started with --vtep ADDR".to_string(),
        );
    }
    let network = daemon
        .networks
        .plan(
            config,
            random_id().map_err(|err| format!("cannot make a network id: {err}"))?,
            unix_now(),
            &host_routes,
            |vlan| busy.contains(&vlan),
        )
        .map_err(|err| err.to_string())?;
    if let Some(vni) = network.vni {
        if let Some(vlan) = daemon
            .switch()
            .vni_map()
            .into_iter()
            .find(|(_, v)| *v == vni)
            .map(|(vlan, _)| vlan)
        {
            return Err(format!(
                "VNI {vni} already carries VLAN {vlan} (`swctl vxlan show`); pick another VNI"
            ));
        }
    }
    daemon
        .setup_network(&network)
        .map_err(|err| format!("cannot create network {}: {err:#}", network.name))?;
    daemon.networks.insert(network.clone());
    if let Err(err) = daemon.save() {
        let _ = daemon.networks.remove(&network.name);
        daemon.teardown_network(&network);
        return Err(format!(
            "cannot save network {}, not created: {err:#}",
            network.name
        ));
    }
    tracing::info!(network = %network.name, subnet = %network.subnet, vlan = %network.vlan, "network created");
    Ok(network_info(daemon, &network))
}

fn network_remove(daemon: &mut Daemon, name: &str) -> Outcome<NetworkInfo> {
    let network = daemon
        .networks
        .check_removable(name)
        .map_err(|err| err.to_string())?
        .clone();
    let info = network_info(daemon, &network);
    let _ = daemon.networks.remove(name);
    daemon.teardown_network(&network);
    if let Err(err) = daemon.save() {
        let restored = daemon.setup_network(&network);
        daemon.networks.insert(network.clone());
        if let Err(setup) = restored {
            tracing::warn!(network = %name, "cannot set the network up again: {setup:#}");
        }
        return Err(format!(
            "cannot save the removal of network {name}, kept it: {err:#}"
        ));
    }
    tracing::info!(network = %name, "network removed");
    Ok(info)
}

fn router_info(daemon: &Daemon) -> RouterInfo {
    let router = daemon.shared.dp.router();
    RouterInfo {
        uplink: daemon.uplink.as_ref().map(|u| u.name().to_string()),
        neighbors: router.neighbors(),
        counters: router.counters(),
    }
}

/// 64 random hex digits, like a Docker network id.
fn random_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp.
fn rfc3339(secs: u64) -> String {
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

/// Forgets port `id` and destroys its TAP. Returns what it was.
fn remove_port(daemon: &mut Daemon, id: PortId) -> Option<PortInfo> {
    let info = daemon
        .ports
        .contains_key(&id)
        .then(|| port_info(daemon, id))?;
    if let Some(tap) = daemon.uninstall_tap(id) {
        let name = tap.name().to_string();
        if let Err(err) = tap.destroy() {
            tracing::warn!(port = %id, "cannot remove TAP {name}: {err}");
        }
    }
    let _ = daemon.switch().remove_port(id);
    daemon.ports.remove(&id);
    if let Some(endpoint) = daemon.networks.remove_endpoint(id) {
        if let Some(network) = daemon.networks.get(&endpoint.network) {
            let vlan = network.vlan;
            daemon.shared.dp.router().remove_neighbor(vlan, endpoint.ip);
        }
    }
    Some(info)
}

fn remove_and_save(daemon: &mut Daemon, id: PortId) -> Outcome<PortInfo> {
    let info = remove_port(daemon, id).ok_or_else(|| format!("no such port {id}"))?;
    daemon.save().map_err(|err| {
        format!(
            "port {} removed, but the state could not be saved: {err:#}",
            info.name
        )
    })?;
    tracing::info!(port = %id, name = %info.name, "detached");
    Ok(info)
}

fn detach(daemon: &mut Daemon, netns: &Path, ifname: &str) -> Outcome<Detached> {
    // The namespace may already be gone; then match the path as given.
    let id = match open_netns(netns) {
        Ok((_, identity)) => find_endpoint(daemon, identity, ifname),
        Err(_) => daemon
            .ports
            .iter()
            .find(|(_, p)| p.saved.netns == netns && p.saved.ifname == ifname)
            .map(|(id, _)| *id),
    };
    match id {
        None => Ok(Detached { port: None }),
        Some(id) => Ok(Detached {
            port: Some(remove_and_save(daemon, id)?),
        }),
    }
}

fn port_del(daemon: &mut Daemon, port: &str) -> Outcome<PortInfo> {
    let id = resolve_port(daemon, port)?;
    remove_and_save(daemon, id)
}

fn port_set(daemon: &mut Daemon, port: &str, mode: PortMode) -> Outcome<PortInfo> {
    validate_mode(&mode)?;
    let id = resolve_port(daemon, port)?;
    if let Some(endpoint) = daemon.networks.endpoint_of_port(id) {
        return Err(format!(
            "port {port} is an endpoint of network {}, which decides its VLAN; detach it instead",
            endpoint.network
        ));
    }
    let old = daemon.ports[&id].saved.mode.clone();
    set_mode(daemon, id, mode);
    if let Err(err) = daemon.save() {
        set_mode(daemon, id, old);
        return Err(format!("cannot save the new mode, left unchanged: {err:#}"));
    }
    tracing::info!(port = %id, mode = %daemon.ports[&id].saved.mode, "port reconfigured");
    Ok(port_info(daemon, id))
}

fn set_mode(daemon: &mut Daemon, id: PortId, mode: PortMode) {
    let up = daemon.switch().is_port_up(id);
    daemon.switch().set_port(id, mode.clone());
    let _ = daemon.switch().set_port_up(id, up);
    if let Some(entry) = daemon.ports.get_mut(&id) {
        entry.saved.mode = mode;
    }
}

fn fdb_show(daemon: &Daemon, vlan: Option<VlanId>, port: Option<&str>) -> Outcome<Vec<FdbRecord>> {
    let port = port.map(|p| resolve_any_port(daemon, p)).transpose()?;
    let mut records: Vec<FdbRecord> = daemon
        .switch()
        .fdb()
        .entries(daemon.now())
        .into_iter()
        .filter(|e| vlan.is_none_or(|v| e.vlan == v))
        .filter(|e| port.is_none_or(|p| e.port == p))
        .map(|entry| fdb_record(daemon, entry))
        .collect();
    records.sort_by_key(|r| (r.entry.vlan, r.entry.mac));
    Ok(records)
}

fn fdb_add(
    daemon: &mut Daemon,
    mac: MacAddr,
    vlan: VlanId,
    port: Option<&str>,
    vtep: Option<IpAddr>,
) -> Outcome<FdbRecord> {
    let id = match (port, vtep) {
        (Some(port), None) => {
            let id = resolve_port(daemon, port)?;
            let mode = &daemon.ports[&id].saved.mode;
            if !mode.is_member(vlan) {
                return Err(format!(
                    "port {port} ({mode}) does not carry VLAN {vlan}; frames for {mac} could never leave through it"
                ));
            }
            id
        }
        (None, Some(addr)) => {
            let id = daemon.switch().peer_port(addr).ok_or_else(|| {
                format!(
                    "{addr} is not a VXLAN peer; add it first with `swctl vxlan peer add {addr}`"
                )
            })?;
            if daemon.switch().vni_of(vlan).is_none() {
                return Err(format!(
                    "VLAN {vlan} has no VNI, so nothing of it reaches {addr}; map it first with `swctl vxlan map --vlan {vlan} --vni N`"
                ));
            }
            id
        }
        _ => return Err("give exactly one of a port or a VTEP for the entry".to_string()),
    };
    let now = daemon.now();
    let previous = daemon.switch().fdb().get(now, vlan, mac);
    daemon
        .switch()
        .fdb()
        .add_static(vlan, mac, id)
        .map_err(|err| err.to_string())?;
    if let Err(err) = daemon.save() {
        daemon.switch().fdb().remove(vlan, mac);
        if let Some(prev) = previous.filter(|p| p.is_static) {
            let _ = daemon
                .switch()
                .fdb()
                .add_static(prev.vlan, prev.mac, prev.port);
        }
        return Err(format!("cannot save the entry, not added: {err:#}"));
    }
    let entry = daemon
        .switch()
        .fdb()
        .get(now, vlan, mac)
        .ok_or("the entry vanished")?;
    Ok(fdb_record(daemon, entry))
}

/// An FDB entry with the name of its port and, for remote MACs, the VTEP.
fn fdb_record(daemon: &Daemon, entry: FdbEntry) -> FdbRecord {
    let vtep = daemon.peers.get(&entry.port).map(|p| p.addr.ip());
    FdbRecord {
        port_name: any_port_name(daemon, entry.port),
        vtep,
        entry,
    }
}

/// The name of a local port (`red/eth0`) or of a peer's tunnel port (`vtep:192.0.2.2`).
fn any_port_name(daemon: &Daemon, id: PortId) -> String {
    match (daemon.ports.get(&id), daemon.peers.get(&id)) {
        (Some(port), _) => port_name(&port.saved),
        (None, Some(peer)) => peer_name(peer),
        (None, None) => id.to_string(),
    }
}

fn peer_name(peer: &Peer) -> String {
    format!("vtep:{}", peer.addr.ip())
}

/// A local port as `resolve_port` finds it, or a peer as `vtep:ADDR` or `ADDR`.
fn resolve_any_port(daemon: &Daemon, text: &str) -> Outcome<PortId> {
    let addr = text.strip_prefix("vtep:").unwrap_or(text);
    if let Some(id) = addr
        .parse::<IpAddr>()
        .ok()
        .and_then(|ip| daemon.switch().peer_port(ip))
    {
        return Ok(id);
    }
    resolve_port(daemon, text)
}

fn fdb_del(daemon: &mut Daemon, mac: MacAddr, vlan: VlanId) -> Outcome<FdbRecord> {
    let now = daemon.now();
    let entry = daemon
        .switch()
        .fdb()
        .get(now, vlan, mac)
        .ok_or_else(|| format!("no FDB entry for {mac} in VLAN {vlan}"))?;
    daemon.switch().fdb().remove(vlan, mac);
    if entry.is_static {
        if let Err(err) = daemon.save() {
            let _ = daemon.switch().fdb().add_static(vlan, mac, entry.port);
            return Err(format!("cannot save, entry kept: {err:#}"));
        }
    }
    Ok(fdb_record(daemon, entry))
}

fn fdb_flush(
    daemon: &mut Daemon,
    vlan: Option<VlanId>,
    port: Option<&str>,
    include_static: bool,
) -> Outcome<Flushed> {
    let port = port.map(|p| resolve_any_port(daemon, p)).transpose()?;
    let removed = daemon.switch().fdb().flush(FlushFilter {
        port,
        vlan,
        include_static,
    });
    if include_static {
        daemon.save().map_err(|err| {
            format!("flushed {removed} entries, but the state could not be saved: {err:#}")
        })?;
    }
    Ok(Flushed { removed })
}

fn stats(daemon: &Daemon) -> Stats {
    let now = daemon.now();
    let switch = daemon.switch();
    let fdb = switch.fdb();
    let config = fdb.config();
    let port_stats = |id: PortId| PortStats {
        id,
        name: any_port_name(daemon, id),
        counters: switch.counters(id).unwrap_or_default(),
    };
    Stats {
        ports: daemon
            .ports
            .keys()
            .chain(daemon.peers.keys())
            .map(|id| port_stats(*id))
            .collect(),
        fdb: FdbStats {
            entries: fdb.entries(now).len(),
            max_entries: config.max_entries,
            max_per_port: config.max_per_port,
            aging_secs: config.aging.as_secs(),
            counters: fdb.counters(),
        },
        unattributed_drops: switch.unattributed_drops(),
    }
}

fn vtep_of(daemon: &Daemon) -> Outcome<&crate::vtep::Vtep> {
    daemon.vtep().ok_or_else(|| {
        "switchd was started without --vtep, so it has no VXLAN overlay; restart it with --vtep ADDR[:PORT]".to_string()
    })
}

fn vxlan_info(daemon: &Daemon) -> Outcome<VxlanInfo> {
    let vtep = vtep_of(daemon)?;
    let peers = daemon
        .peers
        .values()
        .map(|peer| peer_info(daemon, vtep, peer))
        .collect();
    let switch = daemon.switch();
    Ok(VxlanInfo {
        local: vtep.local(),
        map: switch
            .vni_map()
            .into_iter()
            .map(|(vlan, vni)| VniMapping { vlan, vni })
            .collect(),
        peers,
        unattributed_drops: switch.unattributed_drops(),
        icmp_frag_needed_sent: daemon.shared.dp.frag_needed_sent(),
        accept_inner_tagged: switch.accepts_inner_tagged(),
    })
}

fn peer_info(daemon: &Daemon, vtep: &crate::vtep::Vtep, peer: &Peer) -> PeerInfo {
    let _ = vtep;
    let path_mtu = daemon
        .switch()
        .path_mtu(peer.addr.ip())
        .unwrap_or(switchyard::forward::DEFAULT_PATH_MTU);
    let inner_frame = switchyard::datapath::max_inner_frame(peer.addr, path_mtu);
    PeerInfo {
        addr: peer.addr,
        port: peer.id,
        path_mtu,
        inner_mtu: inner_frame.saturating_sub(14) as u32,
        counters: daemon.switch().counters(peer.id).unwrap_or_default(),
    }
}

fn vxlan_map(daemon: &mut Daemon, vlan: VlanId, vni: Vni) -> Outcome<VxlanInfo> {
    vtep_of(daemon)?;
    let old = daemon.switch().vni_of(vlan);
    daemon
        .switch()
        .map_vni(vlan, vni)
        .map_err(|err| err.to_string())?;
    if let Err(err) = daemon.save() {
        match old {
            Some(old) => {
                let _ = daemon.switch().map_vni(vlan, old);
            }
            None => {
                daemon.switch().unmap_vlan(vlan);
            }
        }
        return Err(format!("cannot save the mapping, left unchanged: {err:#}"));
    }
    tracing::info!(%vlan, %vni, "VLAN mapped to VNI");
    vxlan_info(daemon)
}

fn vxlan_unmap(daemon: &mut Daemon, vlan: VlanId) -> Outcome<VxlanInfo> {
    vtep_of(daemon)?;
    let vni = daemon
        .switch()
        .unmap_vlan(vlan)
        .ok_or_else(|| format!("VLAN {vlan} has no VNI"))?;
    if let Err(err) = daemon.save() {
        let _ = daemon.switch().map_vni(vlan, vni);
        return Err(format!("cannot save, mapping kept: {err:#}"));
    }
    tracing::info!(%vlan, %vni, "VLAN unmapped");
    vxlan_info(daemon)
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
        .map_err(|_| format!("invalid VTEP address {text:?}: expected IP or IP:PORT, such as 192.0.2.2 or [2001:db8::2]:4789"))
}

fn peer_add(daemon: &mut Daemon, text: &str) -> Outcome<PeerInfo> {
    let local = vtep_of(daemon)?.local();
    let addr = parse_peer(text, local.port())?;
    if addr.is_ipv4() != local.is_ipv4() {
        return Err(format!(
            "{addr} and this VTEP ({local}) are not the same IP version"
        ));
    }
    if addr.ip() == local.ip() || addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(format!(
            "{} cannot be a peer: it must be another host's unicast address",
            addr.ip()
        ));
    }
    let id = PortId(daemon.next_port_id);
    let peer = daemon
        .add_peer(id, addr)
        .map_err(|err| format!("{err:#}"))?;
    daemon.next_port_id += 1;
    if let Err(err) = daemon.save() {
        let _ = daemon.remove_peer(addr.ip());
        return Err(format!("cannot save the peer, not added: {err:#}"));
    }
    let vtep = vtep_of(daemon)?;
    Ok(peer_info(daemon, vtep, &peer))
}

fn peer_del(daemon: &mut Daemon, text: &str) -> Outcome<PeerInfo> {
    let local = vtep_of(daemon)?.local();
    let addr = parse_peer(text, local.port())?;
    let vtep = vtep_of(daemon)?;
    let id = daemon
        .switch()
        .peer_port(addr.ip())
        .ok_or_else(|| format!("{} is not a peer", addr.ip()))?;
    let info = peer_info(daemon, vtep, &daemon.peers[&id]);
    daemon
        .remove_peer(addr.ip())
        .map_err(|err| format!("{err:#}"))?;
    daemon
        .save()
        .map_err(|err| format!("peer removed, but the state could not be saved: {err:#}"))?;
    tracing::info!(addr = %info.addr, "VXLAN peer removed");
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_with_a_default_port() {
        assert_eq!(
            parse_peer("192.0.2.2", 4789),
            Ok("192.0.2.2:4789".parse().unwrap())
        );
        assert_eq!(
            parse_peer("192.0.2.2:8472", 4789),
            Ok("192.0.2.2:8472".parse().unwrap())
        );
        assert_eq!(
            parse_peer("2001:db8::2", 4789),
            Ok("[2001:db8::2]:4789".parse().unwrap())
        );
        assert_eq!(
            parse_peer("[2001:db8::2]:99", 4789),
            Ok("[2001:db8::2]:99".parse().unwrap())
        );
        assert!(parse_peer("host.example", 4789).is_err());
        assert!(parse_peer("192.0.2.300", 4789).is_err());
    }

    #[test]
    fn labels_come_from_the_path() {
        assert_eq!(default_label(Path::new("/run/netns/red")), "red");
        assert_eq!(default_label(Path::new("/proc/42/ns/net")), "pid:42");
        assert_eq!(default_label(Path::new("/var/run/x")), "/var/run/x");
    }

    #[test]
    fn interface_names_are_checked() {
        for good in ["eth0", "a", "veth-container1"] {
            assert!(validate_ifname(good).is_ok(), "{good}");
        }
        for bad in ["", "way-too-long-name", "a/b", "a b", ".", "..", "eth0:1"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_empty_trunk_is_refused() {
        let empty = PortMode::Trunk {
            allowed: Default::default(),
            native: None,
        };
        assert!(validate_mode(&empty).is_err());
        let native_only = PortMode::Trunk {
            allowed: Default::default(),
            native: VlanId::new(5),
        };
        assert!(validate_mode(&native_only).is_ok());
    }
}
