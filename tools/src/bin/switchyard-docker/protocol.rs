//! The bodies of Docker's remote NetworkDriver and IpamDriver calls (libnetwork's
//! `drivers/remote/api` and `ipams/remote/api`), as far as switchyard uses them.
//!
//! Docker's field names are Go's, without JSON tags (`NetworkID`, `IPv4Data`, `V6`), so
//! every field is renamed explicitly. Docker sends `null` for empty maps and lists and
//! leaves fields out freely: every field has a default, and `null` reads as it.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// `null` or missing reads as the type's default.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One address pool of a network, as IPAM gave it (`IPv4Data`/`IPv6Data` entries).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct IpamData {
    #[serde(rename = "AddressSpace", default, deserialize_with = "nullable")]
    pub address_space: String,
    /// The subnet, CIDR.
    #[serde(rename = "Pool", default, deserialize_with = "nullable")]
    pub pool: String,
    /// The gateway, CIDR (address and the pool's prefix).
    #[serde(rename = "Gateway", default, deserialize_with = "nullable")]
    pub gateway: String,
    #[serde(rename = "AuxAddresses", default, deserialize_with = "nullable")]
    pub aux_addresses: Map<String, Value>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CreateNetwork {
    #[serde(rename = "NetworkID", default, deserialize_with = "nullable")]
    pub network_id: String,
    #[serde(rename = "Options", default, deserialize_with = "nullable")]
    pub options: Map<String, Value>,
    #[serde(rename = "IPv4Data", default, deserialize_with = "nullable")]
    pub ipv4_data: Vec<IpamData>,
    #[serde(rename = "IPv6Data", default, deserialize_with = "nullable")]
    pub ipv6_data: Vec<IpamData>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct NetworkOnly {
    #[serde(rename = "NetworkID", default, deserialize_with = "nullable")]
    pub network_id: String,
}

/// The interface Docker's IPAM gave an endpoint.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct EndpointInterface {
    /// CIDR.
    #[serde(rename = "Address", default, deserialize_with = "nullable")]
    pub address: String,
    #[serde(rename = "AddressIPv6", default, deserialize_with = "nullable")]
    pub address_ipv6: String,
    #[serde(rename = "MacAddress", default, deserialize_with = "nullable")]
    pub mac_address: String,
}

/// CreateEndpoint, DeleteEndpoint, EndpointOperInfo, Leave, and Join's identity part.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Endpoint {
    #[serde(rename = "NetworkID", default, deserialize_with = "nullable")]
    pub network_id: String,
    #[serde(rename = "EndpointID", default, deserialize_with = "nullable")]
    pub endpoint_id: String,
    #[serde(rename = "Interface", default)]
    pub interface: Option<EndpointInterface>,
    /// Join: the sandbox's network namespace, where Docker moves the interface.
    #[serde(rename = "SandboxKey", default, deserialize_with = "nullable")]
    pub sandbox_key: String,
    #[serde(rename = "Options", default, deserialize_with = "nullable")]
    pub options: Map<String, Value>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct RequestPool {
    #[serde(rename = "AddressSpace", default, deserialize_with = "nullable")]
    pub address_space: String,
    #[serde(rename = "Pool", default, deserialize_with = "nullable")]
    pub pool: String,
    #[serde(rename = "SubPool", default, deserialize_with = "nullable")]
    pub sub_pool: String,
    #[serde(rename = "Options", default, deserialize_with = "nullable")]
    pub options: Map<String, Value>,
    #[serde(rename = "V6", default, deserialize_with = "nullable")]
    pub v6: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct PoolAddress {
    #[serde(rename = "PoolID", default, deserialize_with = "nullable")]
    pub pool_id: String,
    /// RequestAddress: the address wanted, if any (no prefix); ReleaseAddress: the one to
    /// give back.
    #[serde(rename = "Address", default, deserialize_with = "nullable")]
    pub address: String,
    #[serde(rename = "Options", default, deserialize_with = "nullable")]
    pub options: Map<String, Value>,
}

/// One published port (libnetwork's `types.PortBinding`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct PortBinding {
    /// The IP protocol number (6 tcp, 17 udp, 132 sctp).
    #[serde(rename = "Proto", default, deserialize_with = "nullable")]
    pub proto: u8,
    /// The container's port.
    #[serde(rename = "Port", default, deserialize_with = "nullable")]
    pub port: u16,
    #[serde(rename = "HostIP", default, deserialize_with = "nullable")]
    pub host_ip: String,
    #[serde(rename = "HostPort", default, deserialize_with = "nullable")]
    pub host_port: u16,
    #[serde(rename = "HostPortEnd", default, deserialize_with = "nullable")]
    pub host_port_end: u16,
}

/// Where Docker's generic network options (`docker network create -o key=value`) arrive.
pub const GENERIC_OPTIONS: &str = "com.docker.network.generic";
/// `docker network create --internal`.
pub const INTERNAL_OPTION: &str = "com.docker.network.internal";
/// RequestAddress's option naming the gateway's request.
pub const ADDRESS_TYPE: &str = "RequestAddressType";
pub const GATEWAY_TYPE: &str = "com.docker.network.gateway";
/// Published ports, in Join's and ProgramExternalConnectivity's options.
pub const PORT_MAP: &str = "com.docker.network.portmap";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_and_missing_fields_read_as_empty() {
        let body = br#"{"NetworkID":"n1","Options":null,"IPv4Data":[{"AddressSpace":"a","Pool":"10.30.0.0/24","Gateway":"10.30.0.1/24","AuxAddresses":null}],"IPv6Data":null}"#;
        let create: CreateNetwork = serde_json::from_slice(body).unwrap();
        assert_eq!(create.network_id, "n1");
        assert!(create.options.is_empty() && create.ipv6_data.is_empty());
        assert_eq!(create.ipv4_data[0].gateway, "10.30.0.1/24");
        let join: Endpoint = serde_json::from_slice(br#"{"NetworkID":"n","EndpointID":"e","SandboxKey":"/var/run/docker/netns/x","Options":null}"#).unwrap();
        assert_eq!(join.sandbox_key, "/var/run/docker/netns/x");
        assert!(join.interface.is_none());
        let pool: RequestPool = serde_json::from_slice(
            br#"{"AddressSpace":"x","Pool":"","SubPool":"","Options":{},"V6":false}"#,
        )
        .unwrap();
        assert!(!pool.v6 && pool.pool.is_empty());
    }
}
