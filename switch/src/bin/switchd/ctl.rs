//! Control requests: decode a line, act on the daemon, encode the answer.
//!
//! Every change is saved to the state directory before it is acknowledged; a change that
//! cannot be saved is undone and reported, so what switchd says and what it will restore
//! after a restart never disagree.

use std::fs::File;
use std::path::Path;

use serde::Serialize;
use switchyard::control::{
    AttachRequest, Attached, Detached, FdbRecord, FdbStats, Flushed, PortInfo, PortStats, Reply,
    Request, Stats, Status,
};
use switchyard::fdb::FlushFilter;
use switchyard::wire::{MacAddr, VlanId};
use switchyard::{PortId, PortMode};

use crate::daemon::{netns_identity, port_name, Daemon, PortEntry};
use crate::state::SavedPort;
use crate::tap::Tap;

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
        Request::FdbAdd { mac, vlan, port } => reply(fdb_add(daemon, mac, vlan, &port)),
        Request::FdbDel { mac, vlan } => reply(fdb_del(daemon, mac, vlan)),
        Request::FdbFlush {
            vlan,
            port,
            include_static,
        } => reply(fdb_flush(daemon, vlan, port.as_deref(), include_static)),
        Request::Stats => reply(Ok(stats(daemon))),
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
        uptime_secs: daemon.started.elapsed().as_secs(),
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
        state: match (&entry.problem, namespace_is_gone(&entry.saved)) {
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
/// (The namespace itself lives on while switchd holds the TAP, which pins it.)
fn namespace_is_gone(port: &SavedPort) -> bool {
    match File::open(&port.netns).and_then(|f| netns_identity(&f)) {
        Ok(identity) => identity != (port.netns_dev, port.netns_ino),
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
    if let Some(name) = text.strip_prefix("/run/netns/") {
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

fn open_netns(netns: &Path) -> Outcome<(File, (u64, u64))> {
    if !netns.is_absolute() {
        return Err(format!(
            "namespace path {} must be absolute",
            netns.display()
        ));
    }
    let file = File::open(netns).map_err(|err| {
        format!(
            "cannot open network namespace {}: {err}; does it exist?",
            netns.display()
        )
    })?;
    let identity =
        netns_identity(&file).map_err(|err| format!("cannot stat {}: {err}", netns.display()))?;
    Ok((file, identity))
}

fn find_endpoint(daemon: &Daemon, identity: (u64, u64), ifname: &str) -> Option<PortId> {
    daemon
        .ports
        .iter()
        .find(|(_, p)| {
            (p.saved.netns_dev, p.saved.netns_ino) == identity && p.saved.ifname == ifname
        })
        .map(|(id, _)| *id)
}

fn attach(daemon: &mut Daemon, req: AttachRequest) -> Outcome<Attached> {
    validate_ifname(&req.ifname)?;
    validate_mode(&req.mode)?;
    let (netns_file, identity) = open_netns(&req.netns)?;
    if let Some(id) = find_endpoint(daemon, identity, &req.ifname) {
        return Ok(Attached {
            port: port_info(daemon, id),
            created: false,
        });
    }
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
        netns_dev: identity.0,
        netns_ino: identity.1,
        ifname: req.ifname.clone(),
        ifindex: tap.ifindex(),
        mode: req.mode.clone(),
    };
    daemon.next_port_id += 1;
    daemon.ports.insert(
        id,
        PortEntry {
            saved,
            tap: None,
            problem: None,
        },
    );
    daemon.switch.set_port(id, req.mode);
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
    })
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
    let _ = daemon.switch.remove_port(id);
    daemon.ports.remove(&id);
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
    let up = daemon.switch.is_port_up(id);
    daemon.switch.set_port(id, mode.clone());
    let _ = daemon.switch.set_port_up(id, up);
    if let Some(entry) = daemon.ports.get_mut(&id) {
        entry.saved.mode = mode;
    }
}

fn fdb_show(daemon: &Daemon, vlan: Option<VlanId>, port: Option<&str>) -> Outcome<Vec<FdbRecord>> {
    let port = port.map(|p| resolve_port(daemon, p)).transpose()?;
    let mut records: Vec<FdbRecord> = daemon
        .switch
        .fdb()
        .entries(daemon.now())
        .filter(|e| vlan.is_none_or(|v| e.vlan == v))
        .filter(|e| port.is_none_or(|p| e.port == p))
        .map(|entry| FdbRecord {
            port_name: daemon
                .ports
                .get(&entry.port)
                .map(|p| port_name(&p.saved))
                .unwrap_or_default(),
            entry,
        })
        .collect();
    records.sort_by_key(|r| (r.entry.vlan, r.entry.mac));
    Ok(records)
}

fn fdb_add(daemon: &mut Daemon, mac: MacAddr, vlan: VlanId, port: &str) -> Outcome<FdbRecord> {
    let id = resolve_port(daemon, port)?;
    let mode = &daemon.ports[&id].saved.mode;
    if !mode.is_member(vlan) {
        return Err(format!(
            "port {port} ({mode}) does not carry VLAN {vlan}; frames for {mac} could never leave through it"
        ));
    }
    let now = daemon.now();
    let previous = daemon
        .switch
        .fdb()
        .entries(now)
        .find(|e| e.vlan == vlan && e.mac == mac);
    daemon
        .switch
        .fdb_mut()
        .add_static(vlan, mac, id)
        .map_err(|err| err.to_string())?;
    if let Err(err) = daemon.save() {
        daemon.switch.fdb_mut().remove(vlan, mac);
        if let Some(prev) = previous.filter(|p| p.is_static) {
            let _ = daemon
                .switch
                .fdb_mut()
                .add_static(prev.vlan, prev.mac, prev.port);
        }
        return Err(format!("cannot save the entry, not added: {err:#}"));
    }
    let entry = daemon
        .switch
        .fdb()
        .get(now, vlan, mac)
        .ok_or("the entry vanished")?;
    Ok(FdbRecord {
        port_name: port_name(&daemon.ports[&id].saved),
        entry,
    })
}

fn fdb_del(daemon: &mut Daemon, mac: MacAddr, vlan: VlanId) -> Outcome<FdbRecord> {
    let now = daemon.now();
    let entry = daemon
        .switch
        .fdb()
        .get(now, vlan, mac)
        .ok_or_else(|| format!("no FDB entry for {mac} in VLAN {vlan}"))?;
    daemon.switch.fdb_mut().remove(vlan, mac);
    if entry.is_static {
        if let Err(err) = daemon.save() {
            let _ = daemon.switch.fdb_mut().add_static(vlan, mac, entry.port);
            return Err(format!("cannot save, entry kept: {err:#}"));
        }
    }
    Ok(FdbRecord {
        port_name: daemon
            .ports
            .get(&entry.port)
            .map(|p| port_name(&p.saved))
            .unwrap_or_default(),
        entry,
    })
}

fn fdb_flush(
    daemon: &mut Daemon,
    vlan: Option<VlanId>,
    port: Option<&str>,
    include_static: bool,
) -> Outcome<Flushed> {
    let port = port.map(|p| resolve_port(daemon, p)).transpose()?;
    let removed = daemon.switch.fdb_mut().flush(FlushFilter {
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
    let fdb = daemon.switch.fdb();
    let config = fdb.config();
    Stats {
        ports: daemon
            .ports
            .iter()
            .map(|(id, entry)| PortStats {
                id: *id,
                name: port_name(&entry.saved),
                counters: daemon.switch.counters(*id).unwrap_or_default(),
            })
            .collect(),
        fdb: FdbStats {
            entries: fdb.entries(daemon.now()).count(),
            max_entries: config.max_entries,
            max_per_port: config.max_per_port,
            aging_secs: config.aging.as_secs(),
            counters: fdb.counters(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
