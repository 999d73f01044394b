//! Control requests: decode a line, hand it to the controller, encode the answer.
//!
//! Everything a request changes is the controller's (`switchyard::controller`): it saves
//! every change before it is acknowledged, and undoes one that cannot be made or saved,
//! so what switchd says and what it will restore after a restart never disagree. Only
//! `status`, which is about this process, is answered here.
//!
//! Every request that changes something is logged at info level with the client's uid
//! and pid (`SO_PEERCRED`) and the outcome; requests that only read are logged at debug.

use serde::Serialize;
use switchyard::control::{ControlError, ErrorCode, Reply, Request, Status};
use switchyard::controller::Clock;

use crate::conn::Peer;
use crate::daemon::{log_notes, Daemon};

/// Whether `request` changes anything (and is logged, with who asked, at info level).
fn mutates(request: &Request) -> bool {
    match request {
        Request::Attach(_)
        | Request::Detach { .. }
        | Request::PortDel { .. }
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
        | Request::PortUnpublish { .. } => true,
        Request::Status
        | Request::PortList
        | Request::FdbShow { .. }
        | Request::Stats
        | Request::VxlanShow
        | Request::PeerList
        | Request::NetworkList
        | Request::NetworkInspect { .. }
        | Request::RouterShow
        | Request::SubnetSuggest { .. } => false,
    }
}

/// Answers one request line from `peer` with one JSON line (without the newline).
pub fn handle_line(daemon: &mut Daemon, peer: Option<Peer>, line: &[u8]) -> String {
    let request: Request = match serde_json::from_slice(line) {
        Ok(request) => request,
        Err(err) => {
            return error_line(
                ErrorCode::MalformedRequest,
                &format!("malformed request: {err}"),
            )
        }
    };
    // A change is logged at info once answered (below); a read only at debug.
    // As the protocol spells it (the line as parsed, without anything it ignored).
    let audit = mutates(&request).then(|| serde_json::to_string(&request).unwrap_or_default());
    if audit.is_none() {
        tracing::debug!(
            uid = peer.map_or(-1, |p| i64::from(p.uid)),
            pid = peer.map_or(-1, |p| p.pid),
            ?request,
            "control request"
        );
    }
    let answer = match request {
        Request::Status => serde_json::to_value(status(daemon))
            .map_err(|err| ControlError::system(format!("cannot encode the answer: {err}"))),
        request => {
            let clock = Clock {
                now: daemon.now(),
                unix_secs: unix_now(),
            };
            let answer = daemon.controller.handle(&mut daemon.system, clock, request);
            log_notes(&mut daemon.controller);
            answer
        }
    };
    if let Some(request) = audit {
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(err) => err.code.as_str(),
        };
        // -1: the kernel did not say (it always does for a local stream socket).
        tracing::info!(
            uid = peer.map_or(-1, |p| i64::from(p.uid)),
            pid = peer.map_or(-1, |p| p.pid),
            %request,
            outcome,
            "control request"
        );
    }
    reply(answer)
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

fn status(daemon: &Daemon) -> Status {
    Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        uptime_secs: daemon.started().elapsed().as_secs(),
        ports: daemon.controller.model().ports.len(),
        state_dir: daemon.system.store().dir().to_path_buf(),
        dns: daemon.shared.dns_on(),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
