//! Errors of the control plane, with a stable code each.
//!
//! Every refusal that crosses the control socket carries an [`ErrorCode`] next to its
//! message: `{"error": {"code": "network_in_use", "message": "..."}}`. Clients (swctl,
//! nsutil, switchyard-cni) decide on the code, never on the message, which is for people
//! and may change. A code, once published, keeps its name and meaning; new ones may be
//! added, and a client that meets one it does not know sees [`ErrorCode::Unknown`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::fdb::FdbError;
use crate::forward::{NoSuchPort, OverlayError};
use crate::network::NetworkError;

/// What kind of failure a control request met. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request was not valid JSON of the protocol.
    MalformedRequest,
    /// A request line longer than the limit.
    RequestTooLong,
    /// A field has a value that is never acceptable (a bad name, mode, address, MTU...).
    InvalidArgument,
    /// No port by that id or name.
    NoSuchPort,
    /// No network by that name.
    NoSuchNetwork,
    /// No VXLAN peer at that address.
    NoSuchPeer,
    /// No FDB entry for that (VLAN, MAC), or no VNI for that VLAN.
    NoSuchEntry,
    /// What the request would create already exists (a network, a peer, an interface
    /// name in the namespace).
    AlreadyExists,
    /// The request contradicts the current state (attached elsewhere, VNI taken, a VLAN
    /// that has no VNI, a port that does not carry the VLAN...).
    Conflict,
    /// The network still has endpoints.
    NetworkInUse,
    /// IPAM cannot give that address (taken, reserved, outside the subnet) or any.
    AddressUnavailable,
    /// Another endpoint of the network has that name.
    NameTaken,
    /// The request needs the VXLAN overlay, and switchd was started without `--vtep`.
    NoOverlay,
    /// The network namespace cannot be opened or is not a network namespace.
    NamespaceUnavailable,
    /// A system call or the kernel refused (creating a TAP, a route, NAT rules...).
    SystemError,
    /// The change could not be written to the state directory; it was undone.
    StateNotSaved,
    /// The request needs the cluster store, which did not answer in time; nothing changed.
    StoreUnavailable,
    /// The request needs a cluster (a global network), and switchd was started without
    /// `--cluster-store`.
    NoCluster,
    /// No interface by that name in that namespace (`swctl port add`).
    NoSuchInterface,
    /// A code this client does not know (from a newer switchd).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::RequestTooLong => "request_too_long",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NoSuchPort => "no_such_port",
            ErrorCode::NoSuchNetwork => "no_such_network",
            ErrorCode::NoSuchPeer => "no_such_peer",
            ErrorCode::NoSuchEntry => "no_such_entry",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::Conflict => "conflict",
            ErrorCode::NetworkInUse => "network_in_use",
            ErrorCode::AddressUnavailable => "address_unavailable",
            ErrorCode::NoOverlay => "no_overlay",
            ErrorCode::NamespaceUnavailable => "namespace_unavailable",
            ErrorCode::SystemError => "system_error",
            ErrorCode::StateNotSaved => "state_not_saved",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::NoCluster => "no_cluster",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::NoSuchInterface => "no_such_interface",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused control request: a stable code and a message that says what failed and
/// what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    pub code: ErrorCode,
    pub message: String,
}

impl ControlError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ControlError {
        ControlError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorCode::InvalidArgument, message)
    }

    pub fn conflict(message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorCode::Conflict, message)
    }

    pub fn system(message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorCode::SystemError, message)
    }

    /// The same error, its message prefixed with what was being done.
    pub fn context(self, what: impl fmt::Display) -> ControlError {
        ControlError {
            code: self.code,
            message: format!("{what}: {}", self.message),
        }
    }
}

impl From<NetworkError> for ControlError {
    fn from(err: NetworkError) -> ControlError {
        let code = match &err {
            NetworkError::NotFound(_) => ErrorCode::NoSuchNetwork,
            NetworkError::Exists(_) | NetworkError::IdTaken { .. } => ErrorCode::AlreadyExists,
            NetworkError::NotReserved { .. } => ErrorCode::NoSuchEntry,
            NetworkError::NameTaken { .. } => ErrorCode::NameTaken,
            NetworkError::InUse { .. } => ErrorCode::NetworkInUse,
            NetworkError::Overlap { .. }
            | NetworkError::InternalPublish(_)
            | NetworkError::LanPublish(_)
            | NetworkError::VlanTaken { .. }
            | NetworkError::HostPortTaken { .. }
            | NetworkError::NoEndpoint(_)
            | NetworkError::OverlapsHostRoute { .. }
            | NetworkError::VniTaken { .. }
            | NetworkError::NoVlan
            | NetworkError::PoolExhausted => ErrorCode::Conflict,
            NetworkError::AddressOutside { .. }
            | NetworkError::AddressReserved { .. }
            | NetworkError::AddressTaken { .. }
            | NetworkError::Exhausted { .. } => ErrorCode::AddressUnavailable,
            NetworkError::InvalidName(_)
            | NetworkError::HostBits { .. }
            | NetworkError::TooSmall(_)
            | NetworkError::TooLarge(_)
            | NetworkError::GatewayOutside { .. }
            | NetworkError::GatewayNotHost { .. }
            | NetworkError::Mtu(_)
            | NetworkError::RangeOutside { .. }
            | NetworkError::InternalMasquerade
            | NetworkError::PortMap(_)
            | NetworkError::InvalidEndpointName(_)
            | NetworkError::LanNeeds(_)
            | NetworkError::LanCannot(_)
            | NetworkError::VlanWithoutParent
            | NetworkError::AuxOutside { .. }
            | NetworkError::InvalidId(_) => ErrorCode::InvalidArgument,
        };
        ControlError::new(code, err.to_string())
    }
}

impl From<OverlayError> for ControlError {
    fn from(err: OverlayError) -> ControlError {
        let code = match &err {
            OverlayError::VniTaken { .. } | OverlayError::PortInUse(_) => ErrorCode::Conflict,
            OverlayError::PeerExists(_) => ErrorCode::AlreadyExists,
            OverlayError::NoSuchPeer(_) => ErrorCode::NoSuchPeer,
        };
        ControlError::new(code, err.to_string())
    }
}

impl From<FdbError> for ControlError {
    fn from(err: FdbError) -> ControlError {
        let code = match &err {
            FdbError::NotUnicast(_) => ErrorCode::InvalidArgument,
            FdbError::Full(_) => ErrorCode::Conflict,
        };
        ControlError::new(code, err.to_string())
    }
}

impl From<NoSuchPort> for ControlError {
    fn from(err: NoSuchPort) -> ControlError {
        ControlError::new(ErrorCode::NoSuchPort, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_stable_names_and_unknown_ones_decode() {
        let err = ControlError::new(ErrorCode::NetworkInUse, "network blue has 2 endpoints");
        let json = serde_json::to_string(&err).unwrap();
        assert_eq!(
            json,
            r#"{"code":"network_in_use","message":"network blue has 2 endpoints"}"#
        );
        assert_eq!(serde_json::from_str::<ControlError>(&json).unwrap(), err);
        let future: ControlError =
            serde_json::from_str(r#"{"code":"quota_exceeded","message":"m"}"#).unwrap();
        assert_eq!(future.code, ErrorCode::Unknown);
        for code in [
            ErrorCode::NoSuchPort,
            ErrorCode::StateNotSaved,
            ErrorCode::Conflict,
            ErrorCode::NameTaken,
        ] {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
    }

    #[test]
    fn network_errors_map_to_codes() {
        let err: ControlError = NetworkError::NotFound("blue".into()).into();
        assert_eq!(err.code, ErrorCode::NoSuchNetwork);
        let err: ControlError = NetworkError::Exists("blue".into()).into();
        assert_eq!(err.code, ErrorCode::AlreadyExists);
        let err: ControlError = NetworkError::InUse {
            name: "blue".into(),
            count: 1,
        }
        .into();
        assert_eq!(err.code, ErrorCode::NetworkInUse);
    }
}
