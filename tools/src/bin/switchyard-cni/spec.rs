//! The CNI specification's side: the environment, the network configuration on stdin,
//! the result and the error on stdout (CNI 0.4.0, 1.0.0 and 1.1.0).

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The versions this plugin speaks, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];
/// The plugin's `type`, and the name of its executable.
pub const PLUGIN_TYPE: &str = "switchyard-cni";

/// The spec's error codes (and switchyard's own, from 100).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnvironment = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    NotAvailable = 50,
    /// switchd refused: an address taken, an interface name in use...
    Refused = 100,
    /// The interface in the namespace does not match `prevResult`.
    CheckFailed = 101,
    /// The delegated IPAM plugin failed.
    Ipam = 102,
}

/// A failure to report as the spec's error JSON.
#[derive(Debug)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> CniError {
        CniError {
            code: code as u32,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn details(mut self, details: impl fmt::Display) -> CniError {
        self.details = details.to_string();
        self
    }

    pub fn to_json(&self, version: &str) -> Value {
        serde_json::json!({
            "cniVersion": version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

/// One entry of `cni.dev/valid-attachments` (GC).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The network configuration: the spec's fields and switchyard's.
#[derive(Clone, Debug, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    /// switchd's control socket.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub vni: Option<u32>,
    #[serde(default)]
    pub masquerade: bool,
    #[serde(default)]
    pub internal: bool,
    /// Passed through to the result. (`ipam` is read from the raw configuration, which a
    /// delegated IPAM plugin gets whole.)
    #[serde(default)]
    pub dns: Option<Value>,
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

/// What is read from stdin: the configuration as parsed, and as raw JSON (which a
/// delegated IPAM plugin gets).
pub struct Input {
    pub conf: NetConf,
    pub raw: Value,
}

/// Parses stdin: a network configuration, or a configuration list (`plugins`), of which
/// the switchyard-cni entry is used with the list's name and version.
pub fn parse_input(bytes: &[u8]) -> Result<Input, CniError> {
    let mut raw: Value = serde_json::from_slice(bytes).map_err(|err| {
        CniError::new(Code::Decode, "cannot decode the network configuration").details(err)
    })?;
    if let Some(plugins) = raw.get("plugins").and_then(Value::as_array) {
        let entry = plugins
            .iter()
            .find(|p| p.get("type").and_then(Value::as_str) == Some(PLUGIN_TYPE))
            .cloned()
            .ok_or_else(|| {
                CniError::new(
                    Code::InvalidConfig,
                    format!("the configuration list has no plugin of type {PLUGIN_TYPE}"),
                )
            })?;
        let mut entry = entry;
        for key in ["cniVersion", "name"] {
            if let (Some(value), Some(object)) = (raw.get(key).cloned(), entry.as_object_mut()) {
                object.insert(key.to_string(), value);
            }
        }
        raw = entry;
    }
    let conf: NetConf = serde_json::from_value(raw.clone()).map_err(|err| {
        CniError::new(Code::InvalidConfig, "invalid network configuration").details(err)
    })?;
    if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "CNI version {} is not supported; this plugin speaks {}",
                conf.cni_version,
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    Ok(Input { conf, raw })
}

impl NetConf {
    pub fn subnet(&self) -> Result<Option<Ipv4Net>, CniError> {
        self.subnet
            .as_deref()
            .map(|text| {
                text.parse::<Ipv4Net>().map_err(|_| {
                    let code = if text.contains(':') {
                        Code::UnsupportedField
                    } else {
                        Code::InvalidConfig
                    };
                    CniError::new(
                        code,
                        format!("subnet {text:?} is not an IPv4 subnet such as 10.10.0.0/24"),
                    )
                })
            })
            .transpose()
    }

    pub fn gateway(&self) -> Result<Option<Ipv4Addr>, CniError> {
        self.gateway
            .as_deref()
            .map(|text| {
                text.parse::<Ipv4Addr>().map_err(|_| {
                    CniError::new(
                        Code::InvalidConfig,
                        format!("gateway {text:?} is not an IPv4 address"),
                    )
                })
            })
            .transpose()
    }
}

/// An interface of the result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IpConfig {
    /// Only in 0.4.0 results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// The result of ADD (and the `prevResult` of CHECK and DEL).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CniResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_list_gives_its_name_and_version_to_the_entry() {
        let list = br#"{"cniVersion":"1.0.0","name":"blue","plugins":[
            {"type":"portmap"},{"type":"switchyard-cni","subnet":"10.10.0.0/24"}]}"#;
        let input = parse_input(list).unwrap();
        assert_eq!(input.conf.name, "blue");
        assert_eq!(input.conf.cni_version, "1.0.0");
        assert_eq!(
            input.conf.subnet().unwrap().unwrap().to_string(),
            "10.10.0.0/24"
        );
    }

    #[test]
    fn bad_input_has_the_spec_codes() {
        let code = |bytes: &[u8]| parse_input(bytes).err().unwrap().code;
        assert_eq!(code(b"{not json"), Code::Decode as u32);
        assert_eq!(
            code(br#"{"cniVersion":"9.9.9","name":"x","type":"switchyard-cni"}"#),
            Code::IncompatibleVersion as u32
        );
        assert_eq!(
            code(br#"{"cniVersion":"1.1.0"}"#),
            Code::InvalidConfig as u32
        );
        assert_eq!(
            code(br#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"bridge"}]}"#),
            Code::InvalidConfig as u32
        );
        let v6 = parse_input(br#"{"cniVersion":"1.1.0","name":"x","subnet":"fd00::/64"}"#).unwrap();
        assert_eq!(
            v6.conf.subnet().err().unwrap().code,
            Code::UnsupportedField as u32
        );
    }

    #[test]
    fn errors_serialize_as_the_spec_says() {
        let err = CniError::new(Code::UnknownContainer, "no such namespace").details("x");
        let json = err.to_json("1.1.0");
        assert_eq!(json["code"], 3);
        assert_eq!(json["cniVersion"], "1.1.0");
        assert_eq!(json["msg"], "no such namespace");
        assert_eq!(json["details"], "x");
    }
}
