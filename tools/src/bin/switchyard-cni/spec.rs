//! The CNI specification's side: the environment, the network configuration on stdin,
//! the result and the error on stdout (CNI 0.4.0, 1.0.0 and 1.1.0).

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard::control::DEFAULT_SOCKET;
use switchyard::network::{validate_name, NetworkError, MAX_MTU, MIN_MTU};
use switchyard::portmap::{PortMapping, Protocol};
use switchyard_encap::Vni;

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

/// The largest network configuration read from stdin. Real ones are a few hundred bytes;
/// the cap keeps a runaway one from reaching switchd (whose request lines are limited
/// too) or filling memory.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// How much of a refused value a message shows.
const SHOWN_CHARS: usize = 64;

/// The network configuration: the spec's fields and switchyard's, each checked on its
/// own (syntax and range) when read; what depends on switchd's state is checked there.
#[derive(Clone, Debug)]
pub struct NetConf {
    pub cni_version: String,
    /// A valid switchyard network name.
    pub name: String,
    /// switchd's control socket: an absolute path.
    pub socket: Option<PathBuf>,
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    /// From [`MIN_MTU`] to [`MAX_MTU`].
    pub mtu: Option<u32>,
    pub vni: Option<Vni>,
    pub masquerade: bool,
    pub internal: bool,
    /// Passed through to the result. (A delegated IPAM plugin gets the raw configuration.)
    pub dns: Option<Value>,
    /// `ipam.type`: the delegated IPAM plugin, a plain file name.
    pub ipam_type: Option<String>,
    pub prev_result: Option<Value>,
    pub valid_attachments: Option<Vec<ValidAttachment>>,
    /// The `portMappings` capability (`runtimeConfig.portMappings`): ports to publish on
    /// switchd's namespace, checked together.
    pub port_mappings: Vec<PortMapping>,
    /// The `aliases` capability (`runtimeConfig.aliases`): more DNS names for the
    /// container on this network. Podman sends a map from network name to names; a
    /// plain list is taken as is.
    pub aliases: Vec<String>,
}

/// What is read from stdin: the configuration as parsed, and as raw JSON (which a
/// delegated IPAM plugin gets).
pub struct Input {
    pub conf: NetConf,
    pub raw: Value,
}

/// `text` as a message shows it: whole when short, otherwise its start and its length.
pub fn shown(text: &str) -> String {
    if text.chars().count() <= SHOWN_CHARS {
        return text.to_string();
    }
    let start: String = text.chars().take(SHOWN_CHARS).collect();
    format!("{start}... ({} bytes)", text.len())
}

/// A JSON value as a message shows it.
fn shown_value(value: &Value) -> String {
    shown(&value.to_string())
}

/// Code 7 for `field`: what is wrong with it, and what to give instead.
fn invalid(field: &str, problem: impl fmt::Display) -> CniError {
    CniError::new(
        Code::InvalidConfig,
        format!("invalid {field} in the network configuration: {problem}"),
    )
}

/// Why `name` cannot be a delegated plugin's name, if it cannot: the spec's `type` is a
/// file name to look up in `CNI_PATH`, never a path.
pub fn plugin_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are directories")
    } else if name.contains('/') || name.contains('\0') {
        Some("it must be a plain file name, without '/'")
    } else {
        None
    }
}

/// Parses stdin: a network configuration, or a configuration list (`plugins`), of which
/// the switchyard-cni entry is used with the list's name and version. Every field is
/// checked here, before anything asks switchd.
pub fn parse_input(bytes: &[u8]) -> Result<Input, CniError> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(CniError::new(
            Code::InvalidConfig,
            format!(
                "the network configuration on stdin is larger than 1 MiB ({MAX_CONFIG_BYTES} bytes); \
                 a real one is a few hundred bytes: check what the runtime passes"
            ),
        ));
    }
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
    let conf = NetConf::from_json(&raw)?;
    Ok(Input { conf, raw })
}

impl NetConf {
    /// Reads and checks every field of a configuration object.
    fn from_json(raw: &Value) -> Result<NetConf, CniError> {
        let Some(object) = raw.as_object() else {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "the network configuration must be a JSON object, not {}",
                    shown_value(raw)
                ),
            ));
        };
        let field = |key: &str| object.get(key).filter(|v| !v.is_null());
        let string = |key: &str, example: &str| -> Result<Option<&str>, CniError> {
            field(key)
                .map(|value| {
                    value.as_str().ok_or_else(|| {
                        invalid(
                            key,
                            format!("{} is not a string such as {example}", shown_value(value)),
                        )
                    })
                })
                .transpose()
        };
        let boolean = |key: &str| -> Result<bool, CniError> {
            field(key).map_or(Ok(false), |value| {
                value.as_bool().ok_or_else(|| {
                    invalid(key, format!("{} is not true or false", shown_value(value)))
                })
            })
        };

        let cni_version = string("cniVersion", "\"1.1.0\"")?
            .ok_or_else(|| {
                invalid(
                    "cniVersion",
                    format!(
                        "it is missing; give the CNI version the configuration is written in ({})",
                        SUPPORTED_VERSIONS.join(", ")
                    ),
                )
            })?
            .to_string();
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "CNI version {} is not supported; this plugin speaks {}",
                    shown(&cni_version),
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }

        let name = string("name", "\"blue\"")?
            .ok_or_else(|| invalid("name", "it is missing; give the switchyard network's name"))?;
        // switchd's own rule; the message shows a long name shortened.
        validate_name(name).map_err(|_| invalid("name", NetworkError::InvalidName(shown(name))))?;

        let socket = string("socket", "\"/run/switchyard/switchd.sock\"")?
            .map(|text| {
                if text.starts_with('/') {
                    Ok(PathBuf::from(text))
                } else {
                    Err(invalid(
                        "socket",
                        format!(
                            "{:?} is not an absolute path; give switchd's socket as one, such as {DEFAULT_SOCKET}",
                            shown(text)
                        ),
                    ))
                }
            })
            .transpose()?;

        let subnet = string("subnet", "\"10.10.0.0/24\"")?
            .map(|text| {
                text.parse::<Ipv4Net>().map_err(|_| {
                    let problem = format!(
                        "{:?} is not an IPv4 subnet such as 10.10.0.0/24",
                        shown(text)
                    );
                    if text.contains(':') {
                        CniError::new(
                            Code::UnsupportedField,
                            format!("unsupported subnet in the network configuration: {problem} (IPv6 is not supported)"),
                        )
                    } else {
                        invalid("subnet", problem)
                    }
                })
            })
            .transpose()?;

        let gateway = string("gateway", "\"10.10.0.1\"")?
            .map(|text| {
                text.parse::<Ipv4Addr>().map_err(|_| {
                    invalid(
                        "gateway",
                        format!("{:?} is not an IPv4 address such as 10.10.0.1", shown(text)),
                    )
                })
            })
            .transpose()?;

        let mtu = field("mtu")
            .map(|value| {
                value
                    .as_u64()
                    .and_then(|mtu| u32::try_from(mtu).ok())
                    .filter(|mtu| (MIN_MTU..=MAX_MTU).contains(mtu))
                    .ok_or_else(|| {
                        invalid(
                            "mtu",
                            format!(
                                "{} is not an MTU; give a number from {MIN_MTU} to {MAX_MTU}",
                                shown_value(value)
                            ),
                        )
                    })
            })
            .transpose()?;

        let vni = field("vni")
            .map(|value| {
                value
                    .as_u64()
                    .and_then(|vni| u32::try_from(vni).ok())
                    .and_then(Vni::new)
                    .ok_or_else(|| {
                        invalid(
                            "vni",
                            format!(
                                "{} is not a VXLAN network identifier; give a number from 0 to {}",
                                shown_value(value),
                                Vni::MAX
                            ),
                        )
                    })
            })
            .transpose()?;

        let masquerade = boolean("masquerade")?;
        let internal = boolean("internal")?;

        let dns = field("dns")
            .map(|value| {
                if value.is_object() {
                    Ok(value.clone())
                } else {
                    Err(invalid(
                        "dns",
                        format!(
                            "{} is not an object such as {{\"nameservers\": [\"10.10.0.1\"]}}",
                            shown_value(value)
                        ),
                    ))
                }
            })
            .transpose()?;

        let ipam_type = field("ipam")
            .map(|section| {
                let kind = section.get("type").and_then(Value::as_str).ok_or_else(|| {
                    invalid(
                        "ipam",
                        format!(
                            "{} has no type; give the IPAM plugin's name, such as {{\"type\": \"host-local\"}}",
                            shown_value(section)
                        ),
                    )
                })?;
                match plugin_name_problem(kind) {
                    Some(problem) => Err(invalid(
                        "ipam.type",
                        format!(
                            "{:?} is not an IPAM plugin's name ({problem}); give the name of a plugin in CNI_PATH, such as \"host-local\"",
                            shown(kind)
                        ),
                    )),
                    None => Ok(kind.to_string()),
                }
            })
            .transpose()?;

        let prev_result = field("prevResult").cloned();

        let valid_attachments = field("cni.dev/valid-attachments")
            .map(|value| {
                serde_json::from_value::<Vec<ValidAttachment>>(value.clone()).map_err(|err| {
                    invalid(
                        "cni.dev/valid-attachments",
                        format!(
                            "{} is not a list of {{\"containerID\": ..., \"ifname\": ...}} ({err})",
                            shown_value(value)
                        ),
                    )
                })
            })
            .transpose()?;

        let port_mappings = match field("runtimeConfig").and_then(|r| r.get("portMappings")) {
            None | Some(Value::Null) => Vec::new(),
            Some(value) => port_mappings(value)?,
        };

        let aliases = match field("runtimeConfig").and_then(|r| r.get("aliases")) {
            None | Some(Value::Null) => Vec::new(),
            Some(value) => aliases(value, name)?,
        };

        Ok(NetConf {
            cni_version,
            name: name.to_string(),
            socket,
            subnet,
            gateway,
            mtu,
            vni,
            masquerade,
            internal,
            dns,
            ipam_type,
            prev_result,
            valid_attachments,
            port_mappings,
            aliases,
        })
    }
}

/// `runtimeConfig.aliases`: `{"NETWORK": ["db", "pg"]}` (this network's entry) or
/// `["db", "pg"]`; each a DNS label.
fn aliases(value: &Value, network: &str) -> Result<Vec<String>, CniError> {
    const FIELD: &str = "runtimeConfig.aliases";
    let list = match value {
        Value::Object(map) => match map.get(network) {
            Some(list) => list,
            None => return Ok(Vec::new()),
        },
        list => list,
    };
    let names = list.as_array().ok_or_else(|| {
        invalid(
            FIELD,
            format!(
                "{} is not a list of names such as [\"db\"]",
                shown_value(list)
            ),
        )
    })?;
    names
        .iter()
        .map(|name| {
            let text = name
                .as_str()
                .ok_or_else(|| invalid(FIELD, format!("{} is not a name", shown_value(name))))?;
            switchyard::network::validate_endpoint_name(text)
                .map_err(|_| invalid(FIELD, NetworkError::InvalidEndpointName(shown(text))))?;
            Ok(text.to_string())
        })
        .collect()
}

/// `runtimeConfig.portMappings`, as the portmap plugin's convention has it:
/// `[{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}]`.
fn port_mappings(value: &Value) -> Result<Vec<PortMapping>, CniError> {
    const FIELD: &str = "runtimeConfig.portMappings";
    let example = "[{\"hostPort\": 8080, \"containerPort\": 80, \"protocol\": \"tcp\"}]";
    let list = value.as_array().ok_or_else(|| {
        invalid(
            FIELD,
            format!("{} is not a list such as {example}", shown_value(value)),
        )
    })?;
    let mut mappings = Vec::with_capacity(list.len());
    for entry in list {
        let bad = |why: &str| invalid(FIELD, format!("{}: {why}", shown_value(entry)));
        let port = |key: &str| {
            entry
                .get(key)
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("{key} must be a port from 1 to 65535")))
        };
        let protocol = match entry.get("protocol").and_then(Value::as_str) {
            None | Some("") => Protocol::Tcp,
            Some(text) if text.eq_ignore_ascii_case("tcp") => Protocol::Tcp,
            Some(text) if text.eq_ignore_ascii_case("udp") => Protocol::Udp,
            Some(_) => return Err(bad("protocol must be tcp or udp")),
        };
        let host_ip = match entry.get("hostIP").and_then(Value::as_str) {
            None | Some("") => None,
            Some(text) => match text.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(ip)) => Some(ip).filter(|ip| !ip.is_unspecified()),
                Ok(std::net::IpAddr::V6(_)) => {
                    return Err(CniError::new(
                        Code::UnsupportedField,
                        format!(
                        "unsupported {FIELD} entry {}: switchyard publishes on IPv4 addresses only",
                        shown_value(entry)
                    ),
                    ))
                }
                Err(_) => return Err(bad("hostIP must be an IPv4 address")),
            },
        };
        mappings.push(PortMapping {
            protocol,
            host_ip,
            host_port: port("hostPort")?,
            container_port: port("containerPort")?,
        });
    }
    switchyard::portmap::check(&mappings).map_err(|err| invalid(FIELD, err))?;
    Ok(mappings)
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
        assert_eq!(input.conf.subnet.unwrap().to_string(), "10.10.0.0/24");
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
        assert_eq!(
            code(br#"{"cniVersion":"1.1.0","name":"x","subnet":"fd00::/64"}"#),
            Code::UnsupportedField as u32
        );
    }

    /// The code and message `parse_input` refuses `config` with.
    fn refusal(config: Value) -> (u32, String) {
        let bytes = serde_json::to_vec(&config).unwrap();
        let err = parse_input(&bytes).err().expect("must be refused");
        (err.code, err.msg)
    }

    fn with(key: &str, value: Value) -> Value {
        let mut config = serde_json::json!({
            "cniVersion": "1.1.0", "name": "blue", "type": "switchyard-cni",
        });
        config[key] = value;
        config
    }

    #[test]
    fn every_field_is_checked_and_named() {
        let cases = [
            (with("name", Value::from("n".repeat(65))), "name"),
            (with("name", Value::from("")), "name"),
            (with("name", Value::from("a/b")), "name"),
            (with("name", Value::from("-blue")), "name"),
            (with("name", Value::from(7)), "name"),
            (with("cniVersion", Value::from(1)), "cniVersion"),
            (with("subnet", Value::from("banana")), "subnet"),
            (with("subnet", Value::from("10.0.0.0/33")), "subnet"),
            (with("gateway", Value::from("10.0.0.256")), "gateway"),
            (with("mtu", Value::from(0)), "mtu"),
            (with("mtu", Value::from(67)), "mtu"),
            (with("mtu", Value::from(65536)), "mtu"),
            (with("mtu", Value::from(-1)), "mtu"),
            (with("mtu", Value::from("1500")), "mtu"),
            (with("vni", Value::from(1 << 24)), "vni"),
            (with("vni", Value::from("7")), "vni"),
            (with("masquerade", Value::from("yes")), "masquerade"),
            (with("internal", Value::from(1)), "internal"),
            (with("socket", Value::from("switchd.sock")), "socket"),
            (with("socket", Value::from("")), "socket"),
            (with("dns", Value::from("10.0.0.1")), "dns"),
            (with("ipam", Value::from("host-local")), "ipam"),
            (with("ipam", serde_json::json!({})), "ipam"),
            (
                with("cni.dev/valid-attachments", Value::from("all")),
                "cni.dev/valid-attachments",
            ),
        ];
        for (config, field) in cases {
            let (code, msg) = refusal(config.clone());
            assert_eq!(code, Code::InvalidConfig as u32, "{config}: {msg}");
            assert!(
                msg.contains(field),
                "{config}: {field} not named in {msg:?}"
            );
        }
        let mut missing = with("name", Value::Null);
        missing.as_object_mut().unwrap().remove("cniVersion");
        let (code, msg) = refusal(missing);
        assert_eq!(code, Code::InvalidConfig as u32, "{msg}");
        assert!(msg.contains("cniVersion"), "{msg}");
    }

    #[test]
    fn port_mappings_come_from_the_runtime_config() {
        let mappings = |list: Value| {
            let mut config = with("subnet", Value::from("10.10.0.0/24"));
            config["runtimeConfig"] = serde_json::json!({ "portMappings": list });
            parse_input(&serde_json::to_vec(&config).unwrap()).map(|i| i.conf.port_mappings)
        };
        let got = mappings(serde_json::json!([
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"},
            {"hostPort": 9090, "containerPort": 90, "hostIP": "0.0.0.0"},
        ]))
        .unwrap();
        let shown: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "0.0.0.0:8080->80/tcp",
                "127.0.0.1:5353->53/udp",
                "0.0.0.0:9090->90/tcp"
            ]
        );
        for (bad, code) in [
            (serde_json::json!({"hostPort": 1}), Code::InvalidConfig),
            (
                serde_json::json!([{"hostPort": 0, "containerPort": 80}]),
                Code::InvalidConfig,
            ),
            (
                serde_json::json!([{"hostPort": 70000, "containerPort": 80}]),
                Code::InvalidConfig,
            ),
            (
                serde_json::json!([{"containerPort": 80}]),
                Code::InvalidConfig,
            ),
            (
                serde_json::json!([{"hostPort": 1, "containerPort": 2, "protocol": "sctp"}]),
                Code::InvalidConfig,
            ),
            (
                serde_json::json!([{"hostPort": 1, "containerPort": 2, "hostIP": "::1"}]),
                Code::UnsupportedField,
            ),
            (
                serde_json::json!([{"hostPort": 1, "containerPort": 2}, {"hostPort": 1, "containerPort": 3}]),
                Code::InvalidConfig,
            ),
        ] {
            let err = mappings(bad.clone()).unwrap_err();
            assert_eq!(err.code, code as u32, "{bad}: {}", err.msg);
            assert!(err.msg.contains("portMappings"), "{bad}: {}", err.msg);
        }
        assert!(mappings(Value::Null).unwrap().is_empty());
    }

    #[test]
    fn a_long_name_is_not_echoed_whole() {
        let (code, msg) = refusal(with("name", Value::from("n".repeat(100_000))));
        assert_eq!(code, Code::InvalidConfig as u32);
        assert!(msg.len() < 400, "a message of {} bytes", msg.len());
    }

    #[test]
    fn the_configuration_is_at_most_1_mib() {
        let mut config = with("subnet", Value::from("10.10.0.0/24"));
        config["padding"] = Value::from(" ".repeat(1 << 20));
        let (code, msg) = refusal(config);
        assert_eq!(code, Code::InvalidConfig as u32, "{msg}");
        assert!(msg.contains("1 MiB"), "{msg}");
        // Just under the limit is fine.
        let mut config = with("subnet", Value::from("10.10.0.0/24"));
        config["padding"] = Value::from(" ".repeat((1 << 20) - 200));
        assert!(parse_input(&serde_json::to_vec(&config).unwrap()).is_ok());
    }

    #[test]
    fn valid_fields_are_accepted() {
        let config = br#"{"cniVersion":"0.4.0","name":"Blue_1.a-b","type":"switchyard-cni",
            "socket":"/run/sw.sock","subnet":"10.10.0.0/24","gateway":"10.10.0.1",
            "mtu":68,"vni":16777215,"masquerade":true,"internal":false,
            "dns":{"nameservers":["10.10.0.1"]},"ipam":{"type":"host-local"},
            "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#;
        let input = parse_input(config).unwrap();
        assert_eq!(input.conf.name, "Blue_1.a-b");
        let long = format!(
            r#"{{"cniVersion":"1.1.0","name":"{}","mtu":65535}}"#,
            "n".repeat(64)
        );
        assert!(parse_input(long.as_bytes()).is_ok());
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
