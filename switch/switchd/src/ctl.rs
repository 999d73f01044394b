//! Control requests: decode a line, hand it to the controller, encode the answer.
//!
//! Everything a request changes is the controller's (`switchyard::controller`): it saves
//! every change before it is acknowledged, and undoes one that cannot be made or saved,
//! so what switchd says and what it will restore after a restart never disagree. Only
//! `status`, the log filter (`log_level`) and the cluster's (`cluster_status`,
//! `node_list`), which are about this process and its store connection, are answered
//! here. With `--metrics`, every answer is counted, by request and result.
//!
//! Every request that changes something is logged at info level with the client's uid
//! and pid (`SO_PEERCRED`) and the outcome; requests that only read are logged at debug.

use std::path::Path;

use serde::Serialize;
use switchyard::control::{
    ClusterStatus, ControlError, ErrorCode, NodeInfo, Reply, Request, Status,
};
use switchyard::controller::{default_label, rfc3339, Clock};
use switchyard::network::Scope;

use crate::conn::Peer;
use crate::daemon::{log_notes, Daemon};

/// Whether `request` changes anything (and is logged, with who asked, at info level).
fn mutates(request: &Request) -> bool {
    match request {
        Request::Attach(_)
        | Request::Detach { .. }
        | Request::PortDel { .. }
        | Request::PortAdd(_)
        | Request::PortSet { .. }
        | Request::FdbAdd { .. }
        | Request::FdbDel { .. }
        | Request::FdbFlush { .. }
        | Request::VxlanMap { .. }
        | Request::VxlanUnmap { .. }
        | Request::PeerAdd { .. }
        | Request::PeerDel { .. }
        | Request::NetworkCreate(_)
        | Request::NetworkRemove { .. }
        | Request::NetworkRename { .. }
        | Request::AddressReserve { .. }
        | Request::AddressRelease { .. }
        | Request::PortMoved { .. }
        | Request::PortPublish { .. }
        | Request::PortUnpublish { .. }
        | Request::VxlanEnable { .. }
        | Request::LogLevel { .. } => true,
        Request::Status
        | Request::ClusterStatus
        | Request::NodeList
        | Request::PortList
        | Request::FdbShow { .. }
        | Request::Stats
        | Request::VxlanShow
        | Request::PeerList
        | Request::NetworkList
        | Request::NetworkInspect { .. }
        | Request::RouterShow
        | Request::SubnetSuggest { .. }
        // Neither changes anything; a capture logs its start and end itself.
        | Request::Trace { .. }
        | Request::Capture { .. } => false,
    }
}

/// The request `line` is, or the answer that refuses it (counted as malformed).
pub fn decode(daemon: &Daemon, line: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(line).map_err(|err| {
        let code = ErrorCode::MalformedRequest;
        daemon.count_request("malformed", code.as_str());
        error_line(code, &format!("malformed request: {err}"))
    })
}

/// Answers one decoded request from `peer` with one JSON line (without the newline).
pub fn handle(daemon: &mut Daemon, peer: Option<Peer>, request: Request) -> String {
    // Only with --metrics, which count requests by kind.
    let kind = daemon
        .metrics
        .is_some()
        .then(|| crate::metrics::request_kind(&request));
    // A change is logged at info once answered (below); a read only at debug.
    // As the protocol spells it (the line as parsed, without anything it ignored).
    let audit = mutates(&request).then(|| serde_json::to_value(&request).unwrap_or_default());
    if audit.is_none() {
        tracing::debug!(
            uid = peer.map_or(-1, |p| i64::from(p.uid)),
            pid = peer.map_or(-1, |p| p.pid),
            ?request,
            "control request"
        );
    }
    let answer = match request {
        Request::Status => encode(status(daemon)),
        Request::ClusterStatus => cluster_status(daemon).and_then(encode),
        Request::NodeList => node_list(daemon).and_then(encode),
        Request::LogLevel { filter } => crate::logs::set_filter(&filter).and_then(encode),
        request => {
            let clock = Clock {
                now: daemon.now(),
                unix_secs: unix_now(),
            };
            // Decided against the store's latest picture, not one a batch behind.
            daemon.apply_cluster();
            let answer = daemon.controller.handle(&mut daemon.system, clock, request);
            log_notes(&mut daemon.controller);
            if audit.is_some() {
                daemon.publish_own_keys();
                daemon.watch_host_namespaces();
                daemon.publish_metrics();
            }
            answer
        }
    };
    let outcome = match &answer {
        Ok(_) => "ok",
        Err(err) => err.code.as_str(),
    };
    if let Some(kind) = &kind {
        daemon.count_request(kind, outcome);
    }
    if let Some(request) = audit {
        let (port, network) = subjects(&request, answer.as_ref().ok());
        let port = port.as_deref();
        // -1: the kernel did not say (it always does for a local stream socket).
        tracing::info!(
            uid = peer.map_or(-1, |p| i64::from(p.uid)),
            pid = peer.map_or(-1, |p| p.pid),
            port,
            network,
            %request,
            outcome,
            "control request"
        );
    }
    reply(answer)
}

/// The port and the network a request (in its wire form) names, for the log's fields.
/// An attach or a detach names its port by namespace and interface: its port is the
/// one the answer names, else the name the controller gives such a port (`red/eth0`).
fn subjects<'a>(
    request: &'a serde_json::Value,
    answer: Option<&serde_json::Value>,
) -> (Option<String>, Option<&'a str>) {
    let text = |key: &str| request.get(key).and_then(serde_json::Value::as_str);
    let cmd = text("cmd").unwrap_or_default();
    let network = match cmd.starts_with("network_") {
        true => text("name"),
        false => text("network"),
    };
    let port = match cmd {
        "attach" | "detach" => answer
            .and_then(|a| a.get("port")?.get("name")?.as_str())
            .map(str::to_string)
            .or_else(|| {
                let ifname = text("ifname")?;
                let label = text("label")
                    .map(str::to_string)
                    .or_else(|| Some(default_label(Path::new(text("netns")?))))?;
                Some(format!("{label}/{ifname}"))
            }),
        _ => text("port").map(str::to_string),
    };
    (port, network)
}

fn reply<T: Serialize>(outcome: Result<T, ControlError>) -> String {
    let envelope = match outcome {
        Ok(value) => Reply::Result(value),
        Err(err) => Reply::refused(err),
    };
    serde_json::to_string(&envelope).unwrap_or_else(|err| {
        error_line(
            ErrorCode::SystemError,
            &format!("cannot encode the answer: {err}"),
        )
    })
}

/// An error answer, for refusals that never reach the controller.
pub fn error_line(code: ErrorCode, message: &str) -> String {
    serde_json::to_string(&Reply::<()>::refused(ControlError::new(code, message)))
        .unwrap_or_default()
}

fn encode<T: Serialize>(value: T) -> Result<serde_json::Value, ControlError> {
    serde_json::to_value(value)
        .map_err(|err| ControlError::system(format!("cannot encode the answer: {err}")))
}

fn not_clustered() -> ControlError {
    ControlError::new(
        ErrorCode::NoCluster,
        "switchd was started without --cluster-store, so it is not a member of a cluster; start it with --cluster-store etcd://HOST:PORT --vtep ADDR",
    )
}

fn cluster_status(daemon: &Daemon) -> Result<ClusterStatus, ControlError> {
    let link = daemon.system.cluster.as_ref().ok_or_else(not_clustered)?;
    let mut status = link.status();
    let model = daemon.controller.model();
    status.peers = model.cluster.peers.len();
    status.remote_endpoints = model.cluster.endpoints.len();
    status.global_networks = model
        .networks
        .iter()
        .filter(|n| n.scope == Scope::Global)
        .count();
    if let Some(view) = &daemon.cluster_view {
        status.nodes = view.nodes.len();
        status.unreadable_records = view.unreadable;
    }
    status.last_sync_secs_ago = daemon.cluster_synced.map(|at| at.elapsed().as_secs());
    Ok(status)
}

fn node_list(daemon: &Daemon) -> Result<Vec<NodeInfo>, ControlError> {
    let link = daemon.system.cluster.as_ref().ok_or_else(not_clustered)?;
    let Some(view) = &daemon.cluster_view else {
        return Err(ControlError::new(
            ErrorCode::StoreUnavailable,
            format!(
                "no picture of the cluster yet: {}",
                link.status().error.unwrap_or_else(|| "connecting".into())
            ),
        ));
    };
    let counts = view.endpoints_per_node();
    let peers = &daemon.controller.model().cluster.peers;
    Ok(view
        .nodes
        .iter()
        .map(|(name, record)| NodeInfo {
            name: name.clone(),
            vtep: record.vtep,
            local: name == link.node(),
            endpoints: counts.get(name.as_str()).copied().unwrap_or(0),
            port: peers
                .iter()
                .find(|(_, node)| *node == name)
                .map(|(id, _)| *id),
            started: rfc3339(record.started),
        })
        .collect())
}

fn status(daemon: &Daemon) -> Status {
    Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        uptime_secs: daemon.started().elapsed().as_secs(),
        ports: daemon.controller.model().ports.len(),
        state_dir: daemon.system.store().dir().to_path_buf(),
        dns: daemon.shared.dns_on(),
        cluster_node: daemon.system.cluster.as_ref().map(|l| l.node().to_string()),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_audit_line_names_an_attachs_and_a_detachs_port() {
        let attach = json!({"cmd": "attach", "netns": "/run/netns/red", "ifname": "eth0", "network": "blue"});
        assert_eq!(
            subjects(&attach, None),
            (Some("red/eth0".into()), Some("blue")),
            "refused: the name the controller would give"
        );
        let labelled =
            json!({"cmd": "attach", "netns": "/proc/42/ns/net", "ifname": "eth1", "label": "web"});
        assert_eq!(subjects(&labelled, None).0.as_deref(), Some("web/eth1"));
        let detach = json!({"cmd": "detach", "netns": "/proc/42/ns/net", "ifname": "eth1"});
        let answer = json!({"port": {"name": "web/eth1"}});
        assert_eq!(
            subjects(&detach, Some(&answer)).0.as_deref(),
            Some("web/eth1"),
            "the port the answer names"
        );
        assert_eq!(
            subjects(&detach, Some(&json!({"port": null}))).0.as_deref(),
            Some("pid:42/eth1")
        );
        let set = json!({"cmd": "port_set", "port": "red/eth0"});
        assert_eq!(subjects(&set, None), (Some("red/eth0".into()), None));
        let rename = json!({"cmd": "network_rename", "name": "blue", "new_name": "green"});
        assert_eq!(subjects(&rename, None), (None, Some("blue")));
    }
}
