//! `switchyard-cni`: the CNI plugin that attaches containers to switchyard networks, so
//! Kubernetes (containerd, CRI-O) and Podman can use switchd.
//!
//! A runtime runs it with `CNI_COMMAND` and friends in the environment and the network
//! configuration on stdin; it answers on stdout (a result, or the spec's error JSON) and
//! logs to stderr. ADD goes through the same code as `nsutil attach --network`
//! (`nsutil::attach`); switchd keeps every attachment, keyed by (network, container id,
//! interface), so the plugin keeps no files of its own. See docs/cni.md.

#![forbid(unsafe_code)]

mod ipam;
mod spec;

use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use ipnet::{IpNet, Ipv4Net};
use nsutil::attach::{self, AttachError, AttachOptions};
use nsutil::netns::{Netns, NetnsError, NetnsRef};
use nsutil::rtnl::{validate_ifname, InvalidIfname, Rtnl, RtnlError};
use serde_json::Value;
use switchyard::control::{
    EndpointInfo, ErrorCode, NetworkInfo, PortInfo, Request, Status, DEFAULT_SOCKET,
};
use switchyard::network::NetworkConfig;
use switchyard_os::client::{Client, ClientError};

use ipam::Ipam;
use spec::{shown, CniError, CniResult, Code, Input, IpConfig, NetConf, Route, SUPPORTED_VERSIONS};

/// The longest `CNI_CONTAINERID` accepted, in bytes (runtimes use 64 hex digits).
const MAX_CONTAINER_ID_LEN: usize = 256;
/// The longest `CNI_NETNS` accepted, in bytes (Linux's `PATH_MAX` less its NUL).
const MAX_NETNS_PATH_LEN: usize = 4095;

/// The CNI_* environment.
pub struct Env {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    /// Where delegated plugins are looked up: a colon-separated list of directories.
    pub cni_path: String,
}

impl Env {
    fn read() -> Env {
        let var = |name| std::env::var(name).unwrap_or_default();
        Env {
            command: var("CNI_COMMAND"),
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: var("CNI_ARGS"),
            cni_path: var("CNI_PATH"),
        }
    }

    /// Fails with code 4 unless every variable named is set and valid.
    fn require(&self, names: &[&str]) -> Result<(), CniError> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| match *name {
                "CNI_CONTAINERID" => self.container_id.is_empty(),
                "CNI_NETNS" => self.netns.is_empty(),
                "CNI_IFNAME" => self.ifname.is_empty(),
                _ => false,
            })
            .collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                Code::InvalidEnvironment,
                format!("{} must be set for {}", missing.join(", "), self.command),
            ));
        }
        for name in names {
            let problem = match *name {
                "CNI_CONTAINERID" => container_id_problem(&self.container_id),
                "CNI_NETNS" => netns_problem(&self.netns),
                "CNI_IFNAME" => validate_ifname(&self.ifname).err().map(|err| {
                    // The kernel's rule, with a long name shortened.
                    let err = InvalidIfname {
                        name: shown(&err.name),
                        ..err
                    };
                    format!("{err}; give the name the container's interface gets, such as eth0")
                }),
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(CniError::new(
                    Code::InvalidEnvironment,
                    format!("invalid {name}: {problem}"),
                ));
            }
        }
        Ok(())
    }
}

/// What is wrong with a container id, if anything. The spec's rule: a letter or digit,
/// then letters, digits, `_`, `.` or `-`; and at most [`MAX_CONTAINER_ID_LEN`] bytes.
fn container_id_problem(id: &str) -> Option<String> {
    let valid = id.len() <= MAX_CONTAINER_ID_LEN
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    (!valid).then(|| {
        format!(
            "{:?} is not a container id: use 1 to {MAX_CONTAINER_ID_LEN} letters, digits, '_', '.' or '-', \
             starting with a letter or digit, as the CNI spec says; the runtime passes its id for the container",
            shown(id)
        )
    })
}

/// What is wrong with a `CNI_NETNS` path on its own, if anything.
fn netns_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        Some(format!(
            "{:?} is not an absolute path; give the path of the container's network namespace, \
             such as /run/netns/NAME or /proc/PID/ns/net",
            shown(path)
        ))
    } else if path.len() > MAX_NETNS_PATH_LEN {
        Some(format!(
            "{:?} is longer than a path can be ({MAX_NETNS_PATH_LEN} bytes)",
            shown(path)
        ))
    } else {
        None
    }
}

/// The plugin as a person meets it: run without `CNI_COMMAND`, it takes `--help` and
/// `--version` (exit 0) and refuses other arguments as bad usage (exit 2). A runtime
/// sets `CNI_COMMAND` and passes no arguments; then arguments are not looked at.
#[derive(clap::Parser, Debug)]
#[command(
    name = "switchyard-cni",
    version,
    override_usage = "CNI_COMMAND=ADD|DEL|CHECK|STATUS|GC|VERSION CNI_...=... switchyard-cni < CONFIG\n       \
        switchyard-cni --help | --version",
    about = "The CNI plugin of switchyard: attaches containers to switchd's networks",
    long_about = "The CNI plugin of switchyard: attaches containers to switchd's networks.\n\n\
        A container runtime (containerd, CRI-O, Podman) runs it with CNI_COMMAND (ADD, DEL, \
        CHECK, STATUS, GC or VERSION) and the other CNI_* variables in the environment and \
        the network configuration on stdin; it answers on stdout as the CNI spec says \
        (CNI 0.4.0, 1.0.0, 1.1.0) and logs to stderr. See docs/cni.md.",
    after_help = "\
Exit status: 0 done; 1 the CNI command failed (the spec's error object is on stdout, its
code says why); 2 bad usage (arguments without CNI_COMMAND). Messages on stderr read
`switchyard-cni: what failed: why; what to do`."
)]
struct HumanCli {}

/// `--help`, `--version`, the hidden `--generate-man DIR` (switchyard-cni.1, for `make
/// install`) or a usage error, when a person runs the plugin: never returns.
fn human_cli() -> ! {
    use clap::{CommandFactory as _, Parser as _};
    switchyard_os::cli::generate_man_if_asked(HumanCli::command, "1");
    match HumanCli::try_parse() {
        Err(err) => switchyard_os::cli::usage_exit("switchyard-cni", err),
        Ok(_) => eprintln!("switchyard-cni: nothing to do; see --help"),
    }
    std::process::exit(2);
}

fn main() -> ExitCode {
    let env = Env::read();
    if env.command.is_empty() && std::env::args_os().len() > 1 {
        human_cli();
    }
    let mut stdin = Vec::new();
    // VERSION may come without a configuration; every other command needs one. Reading
    // stops one byte past the limit, which parse_input then refuses.
    let _ = std::io::stdin()
        .take(spec::MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut stdin);
    let version = serde_json::from_slice::<Value>(&stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1].to_string());
    match run(&env, &stdin, &version) {
        Ok(Some(answer)) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(err) => {
            // What failed (the command, for which container), then why.
            let what = format!("{} {}", env.command, env.container_id);
            match what.trim() {
                "" => eprintln!("switchyard-cni: {}", err.msg),
                what => eprintln!("switchyard-cni: {what}: {}", err.msg),
            }
            println!("{}", err.to_json(&version));
            ExitCode::FAILURE
        }
    }
}

fn run(env: &Env, stdin: &[u8], version: &str) -> Result<Option<Value>, CniError> {
    if env.command == "VERSION" {
        return Ok(Some(serde_json::json!({
            "cniVersion": version,
            "supportedVersions": SUPPORTED_VERSIONS,
        })));
    }
    if env.command.is_empty() {
        return Err(CniError::new(
            Code::InvalidEnvironment,
            "CNI_COMMAND is not set; a container runtime sets it to ADD, DEL, CHECK, STATUS, GC or VERSION",
        ));
    }
    let input = spec::parse_input(stdin)?;
    match env.command.as_str() {
        "ADD" => add(env, &input).map(Some),
        "DEL" => del(env, &input).map(|()| None),
        "CHECK" => check(env, &input).map(|()| None),
        "STATUS" => status(&input.conf).map(|()| None),
        "GC" => gc(env, &input).map(|()| None),
        other => Err(CniError::new(
            Code::InvalidEnvironment,
            format!(
                "unknown CNI_COMMAND {other:?}; expected ADD, DEL, CHECK, STATUS, GC or VERSION"
            ),
        )),
    }
}

fn socket(conf: &NetConf) -> PathBuf {
    conf.socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// A connection to switchd; not running is "try again later".
fn connect(conf: &NetConf) -> Result<Client, CniError> {
    Client::connect(&socket(conf)).map_err(client_error)
}

fn client_error(err: ClientError) -> CniError {
    // The client's own advice (`--socket`, SWITCHYARD_SOCKET) is for the command line
    // tools; the plugin reads neither, only the configuration's `socket`.
    if let ClientError::NotRunning { path, source } = &err {
        return CniError::new(
            Code::TryAgainLater,
            format!(
                "switchd is not running at {}: {source}; start it, or set \"socket\" in the \
                 network configuration to the socket it listens on",
                path.display()
            ),
        );
    }
    let code = match &err {
        ClientError::NotRunning { .. } | ClientError::Timeout { .. } => Code::TryAgainLater,
        ClientError::Io { .. } | ClientError::Forbidden { .. } => Code::Io,
        ClientError::Protocol(_) => Code::Decode,
        ClientError::Refused(_) => Code::Refused,
    };
    CniError::new(code, err.to_string())
}

/// The network as switchd has it, or `None`.
fn inspect(client: &mut Client, name: &str) -> Result<Option<NetworkInfo>, CniError> {
    match client.call::<NetworkInfo>(&Request::NetworkInspect {
        name: name.to_string(),
    }) {
        Ok(info) => Ok(Some(info)),
        Err(ClientError::Refused(err)) if err.code == ErrorCode::NoSuchNetwork => Ok(None),
        Err(err) => Err(client_error(err)),
    }
}

/// The network named by the configuration, created from it if switchd has none yet.
fn ensure_network(client: &mut Client, conf: &NetConf) -> Result<NetworkInfo, CniError> {
    if let Some(info) = inspect(client, &conf.name)? {
        check_same_network(conf, &info)?;
        return Ok(info);
    }
    let request = Request::NetworkCreate(NetworkConfig {
        name: conf.name.clone(),
        id: None,
        subnet: conf.subnet,
        gateway: conf.gateway,
        mtu: conf.mtu,
        vni: conf.vni,
        scope: Default::default(),
        ip_range: None,
        internal: conf.internal,
        masquerade: conf.masquerade,
        ..NetworkConfig::default()
    });
    match client.call::<NetworkInfo>(&request) {
        Ok(info) => Ok(info),
        // Another ADD created it meanwhile.
        Err(ClientError::Refused(err)) if err.code == ErrorCode::AlreadyExists => {
            inspect(client, &conf.name)?.ok_or_else(|| CniError::new(Code::Refused, err.message))
        }
        // What the plugin cannot tell alone: a subnet with host bits or of a size switchd
        // does not take, a gateway outside the subnet, masquerade with internal...
        Err(ClientError::Refused(err)) if err.code == ErrorCode::InvalidArgument => {
            Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "switchd refused network {} as configured: {}",
                    conf.name, err.message
                ),
            ))
        }
        Err(err) => Err(client_error(err)),
    }
}

/// An existing network must be what the configuration describes: what it names
/// (subnet, gateway, MTU, VNI) must match, and so must `masquerade` and `internal` when set.
fn check_same_network(conf: &NetConf, info: &NetworkInfo) -> Result<(), CniError> {
    let mut differences = Vec::new();
    if let Some(subnet) = conf.subnet.filter(|s| *s != info.subnet) {
        differences.push(format!("subnet {} (configuration: {subnet})", info.subnet));
    }
    if let Some(gateway) = conf.gateway.filter(|g| *g != info.gateway) {
        differences.push(format!(
            "gateway {} (configuration: {gateway})",
            info.gateway
        ));
    }
    if let Some(mtu) = conf.mtu.filter(|m| *m != info.mtu) {
        differences.push(format!("mtu {} (configuration: {mtu})", info.mtu));
    }
    if let Some(vni) = conf.vni.filter(|v| Some(*v) != info.vni) {
        let have = info.vni.map_or("none".to_string(), |v| v.to_string());
        differences.push(format!("vni {have} (configuration: {vni})"));
    }
    if conf.masquerade && !info.masquerade {
        differences.push("no masquerade (configuration: masquerade)".to_string());
    }
    if conf.internal && !info.internal {
        differences.push("not internal (configuration: internal)".to_string());
    }
    if differences.is_empty() {
        return Ok(());
    }
    Err(CniError::new(
        Code::InvalidConfig,
        format!(
            "network {} exists with {}; make the configuration match it, or use another network name",
            conf.name,
            differences.join(", ")
        ),
    ))
}

/// Opens `CNI_NETNS`, refusing the namespace the plugin itself runs in (the runtime's,
/// normally the host's): configuring that would put the container's interface, address
/// and default route on the host. Compared by identity, so every path to it
/// (`/proc/self/ns/net`, `/proc/PID/ns/net`, a bind mount) is refused alike.
fn container_namespace(env: &Env) -> Result<Netns, CniError> {
    let reference = NetnsRef::from_path(&env.netns);
    let netns = Netns::open(&reference).map_err(|err| {
        CniError::new(
            Code::UnknownContainer,
            format!("network namespace {} is not there", env.netns),
        )
        .details(err)
    })?;
    let own = Netns::current().map_err(|err| {
        CniError::new(
            Code::Io,
            "cannot open the plugin's own network namespace to compare CNI_NETNS with it",
        )
        .details(err)
    })?;
    if netns.id() == own.id() {
        return Err(CniError::new(
            Code::InvalidEnvironment,
            format!(
                "invalid CNI_NETNS: {} is the network namespace this plugin runs in (the runtime's, \
                 normally the host's), not a container's; give the container's namespace",
                env.netns
            ),
        ));
    }
    Ok(netns)
}

/// Refuses `netns` when it is switchd's own namespace (usually the host's too). switchd
/// says its pid; `/proc/PID/ns/net` is switchd's only when this process numbers pids as
/// switchd does, which holds when the kernel reports that pid for the socket's listener.
/// When it does not (other pid namespaces), or switchd's namespace cannot be opened,
/// there is nothing to compare with and only [`container_namespace`]'s check applies.
/// Returns switchd's status.
fn refuse_switchd_namespace(
    client: &mut Client,
    env: &Env,
    netns: &Netns,
) -> Result<Status, CniError> {
    let status: Status = client.call(&Request::Status).map_err(client_error)?;
    if client.peer_pid() != Some(status.pid) {
        return Ok(status);
    }
    let path = PathBuf::from(format!("/proc/{}/ns/net", status.pid));
    let Ok(switchd) = Netns::open_path(&path) else {
        return Ok(status);
    };
    if switchd.id() == netns.id() {
        return Err(CniError::new(
            Code::InvalidEnvironment,
            format!(
                "invalid CNI_NETNS: {} is switchd's own network namespace (switchd is pid {}), \
                 not a container's; give the container's namespace",
                env.netns, status.pid
            ),
        ));
    }
    Ok(status)
}

fn add(env: &Env, input: &Input) -> Result<Value, CniError> {
    env.require(&["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])?;
    let conf = &input.conf;
    let netns = container_namespace(env)?;
    // Found (in CNI_PATH) before switchd is asked for anything.
    let ipam = Ipam::from_config(conf, &input.raw, env)?;
    let mut client = connect(conf)?;
    let status = refuse_switchd_namespace(&mut client, env, &netns)?;
    let network = ensure_network(&mut client, conf)?;
    let requested = match &ipam {
        Some(ipam) => Some(ipam.add(env)?.0.addr()),
        None => None,
    };
    let options = AttachOptions {
        network: Some(conf.name.clone()),
        network_ip: requested,
        container_id: Some(env.container_id.clone()),
        ifname: env.ifname.clone(),
        published: conf.port_mappings.clone(),
        fallback_name: endpoint_name(env),
        aliases: conf.aliases.clone(),
        ..AttachOptions::new(NetnsRef::from_path(&env.netns))
    };
    let attachment = match attach::attach(&socket(conf), &options) {
        Ok(attachment) => attachment,
        Err(err) => {
            if let Some(ipam) = &ipam {
                if let Err(undo) = ipam.del(env, &env.container_id, &env.ifname) {
                    eprintln!(
                        "switchyard-cni: releasing the IPAM address failed too: {}",
                        undo.msg
                    );
                }
            }
            return Err(attach_error(err));
        }
    };
    let address = attachment
        .addresses
        .iter()
        .find_map(|a| match a {
            IpNet::V4(net) => Some(*net),
            IpNet::V6(_) => None,
        })
        .ok_or_else(|| CniError::new(Code::Refused, "switchd assigned no IPv4 address"))?;
    let mut result = build_result(
        &conf.cni_version,
        &network,
        &env.ifname,
        &attachment.mac.to_string(),
        attachment.mtu,
        &env.netns,
        address,
        // The configuration's, or switchd's own DNS on the gateway.
        conf.dns.clone().or_else(|| {
            status.dns.then(|| {
                serde_json::json!({"nameservers": [network.gateway.to_string()], "search": [network.name]})
            })
        }),
    );
    if attachment.gateway.is_none() {
        // Another interface of the container has the default route already.
        result.routes.clear();
    }
    serde_json::to_value(result)
        .map_err(|err| CniError::new(Code::Io, "cannot encode the result").details(err))
}

#[allow(clippy::too_many_arguments)]
fn build_result(
    version: &str,
    network: &NetworkInfo,
    ifname: &str,
    mac: &str,
    mtu: u32,
    sandbox: &str,
    address: Ipv4Net,
    dns: Option<Value>,
) -> CniResult {
    let gateway = network.gateway.to_string();
    CniResult {
        cni_version: version.to_string(),
        interfaces: vec![
            // switchd's side: the network's gateway on the switch.
            spec::Interface {
                name: network.name.clone(),
                mac: Some(network.gateway_mac.to_string()),
                mtu: None,
                sandbox: None,
            },
            spec::Interface {
                name: ifname.to_string(),
                mac: Some(mac.to_string()),
                mtu: Some(mtu),
                sandbox: Some(sandbox.to_string()),
            },
        ],
        ips: vec![IpConfig {
            version: (version == "0.4.0").then(|| "4".to_string()),
            address: address.to_string(),
            gateway: Some(gateway.clone()),
            interface: Some(1),
        }],
        routes: vec![Route {
            dst: "0.0.0.0/0".to_string(),
            gw: Some(gateway),
        }],
        dns,
    }
}

fn attach_error(err: AttachError) -> CniError {
    let code = match &err {
        AttachError::Netns(_) => Code::UnknownContainer,
        AttachError::Options(_) => Code::InvalidConfig,
        AttachError::Switchd { source, .. } => client_error_code(source),
        AttachError::Configure { .. } | AttachError::Inspect { .. } => Code::Io,
        _ => Code::Refused,
    };
    CniError::new(code, err.to_string())
}

fn client_error_code(err: &ClientError) -> Code {
    match err {
        ClientError::NotRunning { .. } | ClientError::Timeout { .. } => Code::TryAgainLater,
        ClientError::Refused(_) => Code::Refused,
        _ => Code::Io,
    }
}

/// The endpoints of `network` this plugin made for `container_id` (and `ifname`).
fn endpoints_of<'a>(
    network: &'a NetworkInfo,
    container_id: &'a str,
    ifname: Option<&'a str>,
) -> impl Iterator<Item = &'a EndpointInfo> {
    network.endpoints.iter().filter(move |e| {
        e.container_id.as_deref() == Some(container_id) && ifname.is_none_or(|i| e.ifname == i)
    })
}

fn detach(client: &mut Client, endpoint: &EndpointInfo) -> Result<(), CniError> {
    match client.call::<PortInfo>(&Request::PortDel {
        port: endpoint.port.to_string(),
    }) {
        Ok(_) => Ok(()),
        // Gone meanwhile: what DEL wanted.
        Err(ClientError::Refused(err)) if err.code == ErrorCode::NoSuchPort => Ok(()),
        Err(err) => Err(client_error(err)),
    }
}

/// DEL: best effort and idempotent; only an unreachable switchd is an error (the runtime
/// retries), since the address could not be released.
fn del(env: &Env, input: &Input) -> Result<(), CniError> {
    env.require(&["CNI_CONTAINERID", "CNI_IFNAME"])?;
    let conf = &input.conf;
    // Found before anything is detached, so a DEL that cannot release the address in the
    // IPAM plugin changes nothing.
    let ipam = Ipam::from_config(conf, &input.raw, env)?;
    let mut client = connect(conf)?;
    if let Some(network) = inspect(&mut client, &conf.name)? {
        for endpoint in endpoints_of(&network, &env.container_id, Some(&env.ifname)) {
            detach(&mut client, endpoint)?;
        }
    }
    if let Some(ipam) = ipam {
        ipam.del(env, &env.container_id, &env.ifname)?;
    }
    Ok(())
}

/// CHECK: the interface, its address and the default route are as `prevResult` says.
fn check(env: &Env, input: &Input) -> Result<(), CniError> {
    env.require(&["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])?;
    let conf = &input.conf;
    let prev: CniResult = match &conf.prev_result {
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|err| CniError::new(Code::Decode, "cannot decode prevResult").details(err))?,
        None => {
            return Err(CniError::new(
                Code::InvalidConfig,
                "CHECK needs prevResult, the result of ADD",
            ))
        }
    };
    let netns = container_namespace(env)?;
    let mut client = connect(conf)?;
    refuse_switchd_namespace(&mut client, env, &netns)?;
    let network = inspect(&mut client, &conf.name)?.ok_or_else(|| {
        CniError::new(
            Code::CheckFailed,
            format!("network {} does not exist", conf.name),
        )
    })?;
    let endpoint = endpoints_of(&network, &env.container_id, Some(&env.ifname))
        .next()
        .ok_or_else(|| {
            CniError::new(
                Code::CheckFailed,
                format!(
                    "container {} has no attachment {} on network {}",
                    env.container_id, env.ifname, conf.name
                ),
            )
        })?;
    let want_addresses: Vec<IpNet> = prev
        .ips
        .iter()
        .filter_map(|ip| ip.address.parse().ok())
        .collect();
    if !want_addresses.contains(&IpNet::V4(endpoint.address)) {
        return Err(CniError::new(
            Code::CheckFailed,
            format!(
                "switchd has {} for this attachment, prevResult says {:?}",
                endpoint.address,
                prev.ips.iter().map(|ip| &ip.address).collect::<Vec<_>>()
            ),
        ));
    }
    let want_gateway: Option<IpAddr> = prev
        .routes
        .iter()
        .find(|r| r.dst == "0.0.0.0/0")
        .and_then(|r| r.gw.as_deref())
        .and_then(|g| g.parse().ok());
    let want_mac = prev
        .interfaces
        .iter()
        .find(|i| i.name == env.ifname && i.sandbox.is_some())
        .and_then(|i| i.mac.clone());
    let ifname = env.ifname.clone();
    let state = netns.run(move || -> Result<_, NetnsError> {
        let read = || -> Result<_, RtnlError> {
            let mut rtnl = Rtnl::open()?;
            let link = rtnl.link(&ifname)?;
            let addresses = rtnl.addresses(&link)?;
            let gateways: Vec<IpAddr> = rtnl
                .routes(&link)?
                .into_iter()
                .filter(|r| r.is_default())
                .filter_map(|r| r.gateway)
                .collect();
            Ok((link, addresses, gateways))
        };
        Ok(read())
    });
    let (link, addresses, gateways) = state
        .map_err(|err| CniError::new(Code::UnknownContainer, err.to_string()))?
        .map_err(|err| CniError::new(Code::CheckFailed, err.to_string()))?;
    if let Some(missing) = want_addresses.iter().find(|a| !addresses.contains(a)) {
        return Err(CniError::new(
            Code::CheckFailed,
            format!("{} has no address {missing}", env.ifname),
        ));
    }
    if let Some(gateway) = want_gateway {
        if !gateways.contains(&gateway) {
            return Err(CniError::new(
                Code::CheckFailed,
                format!(
                    "the default route via {gateway} on {} is missing",
                    env.ifname
                ),
            ));
        }
    }
    if let (Some(want), Some(have)) = (want_mac, link.mac) {
        if !want.eq_ignore_ascii_case(&have.to_string()) {
            return Err(CniError::new(
                Code::CheckFailed,
                format!("{} has MAC {have}, prevResult says {want}", env.ifname),
            ));
        }
    }
    if !link.up {
        return Err(CniError::new(
            Code::CheckFailed,
            format!("{} is down", env.ifname),
        ));
    }
    Ok(())
}

/// STATUS: whether switchd answers.
fn status(conf: &NetConf) -> Result<(), CniError> {
    let path = socket(conf);
    Client::connect(&path)
        .and_then(|mut client| client.call::<Status>(&Request::Status))
        .map(drop)
        .map_err(|err| {
            CniError::new(
                Code::NotAvailable,
                format!("switchd does not answer at {}", path.display()),
            )
            .details(err)
        })
}

/// GC: detaches every attachment of the network this plugin made that is not in
/// `cni.dev/valid-attachments`.
fn gc(env: &Env, input: &Input) -> Result<(), CniError> {
    let conf = &input.conf;
    // Without the list every attachment would look stale; refuse rather than detach all.
    let valid = conf.valid_attachments.clone().ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            "GC needs cni.dev/valid-attachments, the attachments to keep (an empty list detaches all)",
        )
    })?;
    let ipam = Ipam::from_config(conf, &input.raw, env)?;
    let mut client = connect(conf)?;
    let Some(network) = inspect(&mut client, &conf.name)? else {
        return Ok(());
    };
    for endpoint in &network.endpoints {
        let Some(container_id) = endpoint.container_id.as_deref() else {
            continue; // attached by hand (nsutil), not by a runtime
        };
        let listed = valid
            .iter()
            .any(|v| v.container_id == container_id && v.ifname == endpoint.ifname);
        if listed {
            continue;
        }
        eprintln!(
            "switchyard-cni: GC: detaching {} ({container_id}, {})",
            endpoint.address, endpoint.ifname
        );
        detach(&mut client, endpoint)?;
        if let Some(ipam) = &ipam {
            ipam.del(env, container_id, &endpoint.ifname)?;
        }
    }
    Ok(())
}

/// The container's DNS name: the pod's name from `CNI_ARGS` (`K8S_POD_NAME=web-0`) when it
/// is a DNS label, otherwise the container id's first 12 characters, as Docker's short
/// ids; none when neither is a label.
fn endpoint_name(env: &Env) -> Option<String> {
    let pod = env
        .args
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "K8S_POD_NAME")
        .map(|(_, value)| value)
        .filter(|name| switchyard::network::validate_endpoint_name(name).is_ok());
    let name = match pod {
        Some(name) => name.to_string(),
        None => env.container_id.chars().take(12).collect(),
    };
    switchyard::network::validate_endpoint_name(&name)
        .is_ok()
        .then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn network() -> NetworkInfo {
        NetworkInfo {
            name: "blue".into(),
            id: "0".repeat(64),
            driver: "local".into(),
            created: "2026-11-24T00:00:00Z".into(),
            subnet: "10.10.0.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 10, 0, 1),
            vlan: switchyard::wire::VlanId::new(3000).unwrap(),
            vni: None,
            ip_range: None,
            mtu: 1500,
            internal: false,
            masquerade: false,
            gateway_mac: "02:53:58:00:0b:b8".parse().unwrap(),
            options: Default::default(),
            endpoints: vec![],
            reservations: vec![],
            scope: Default::default(),
            remote_endpoints: vec![],
            local_ids: vec![],
            parent: None,
            aux_addresses: vec![],
        }
    }

    /// An environment as a runtime sets it: `vars` are `CNI_*` names and values.
    fn env(vars: &[(&str, &str)]) -> Env {
        let var = |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map_or(String::new(), |(_, value)| value.to_string())
        };
        Env {
            command: var("CNI_COMMAND"),
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: var("CNI_ARGS"),
            cni_path: var("CNI_PATH"),
        }
    }

    /// A configuration whose switchd is not there: anything that reaches switchd fails
    /// with "try again later" (11), so a code other than that was decided before.
    fn config(extra: Value) -> Vec<u8> {
        let mut config = serde_json::json!({
            "cniVersion": "1.1.0",
            "name": "blue",
            "type": "switchyard-cni",
            "socket": "/nonexistent/switchyard-cni-test/switchd.sock",
        });
        for (key, value) in extra.as_object().unwrap() {
            config[key] = value.clone();
        }
        serde_json::to_vec(&config).unwrap()
    }

    /// Runs `vars` on `stdin`; the error's code and message.
    fn refusal(vars: &[(&str, &str)], stdin: &[u8]) -> (u32, String) {
        let err = run(&env(vars), stdin, "1.1.0").expect_err("must be refused");
        (err.code, err.msg)
    }

    const ADD: [(&str, &str); 4] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/nonexistent/switchyard-cni-test/netns"),
        ("CNI_IFNAME", "eth0"),
    ];

    /// `ADD` with `name` set to `value`.
    fn add_with(name: &str, value: &str) -> Vec<(&'static str, String)> {
        ADD.iter()
            .map(|(key, default)| {
                let value = if *key == name { value } else { default };
                (*key, value.to_string())
            })
            .collect()
    }

    fn refusal_of(vars: &[(&'static str, String)], stdin: &[u8]) -> (u32, String) {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        refusal(&vars, stdin)
    }

    #[test]
    fn bad_environment_variables_are_code_4_and_named() {
        let cases = [
            ("CNI_IFNAME", "eth0/x"),
            ("CNI_IFNAME", "eth0:1"),
            ("CNI_IFNAME", "eth 0"),
            ("CNI_IFNAME", "a-name-of-16-byt"),
            ("CNI_IFNAME", ".."),
            ("CNI_CONTAINERID", "../../etc/passwd"),
            ("CNI_CONTAINERID", "-starts-with-a-dash"),
            ("CNI_CONTAINERID", "has space"),
            ("CNI_CONTAINERID", "tab\there"),
            ("CNI_NETNS", "relative/netns"),
        ];
        for (name, value) in cases {
            let (code, msg) = refusal_of(&add_with(name, value), &config(serde_json::json!({})));
            assert_eq!(code, 4, "{name}={value:?}: {msg}");
            assert!(msg.contains(name), "{name}={value:?}: {msg}");
        }
        let long = "c".repeat(257);
        let (code, msg) = refusal_of(
            &add_with("CNI_CONTAINERID", &long),
            &config(serde_json::json!({})),
        );
        assert_eq!(code, 4, "{msg}");
        assert!(msg.contains("CNI_CONTAINERID") && msg.len() < 400, "{msg}");
        // The longest accepted container id gets past the check (to the missing namespace).
        let longest = "c".repeat(256);
        let (code, msg) = refusal_of(
            &add_with("CNI_CONTAINERID", &longest),
            &config(serde_json::json!({})),
        );
        assert_eq!(code, 3, "{msg}");
    }

    #[test]
    fn a_delegated_plugin_needs_cni_path() {
        let ipam = config(serde_json::json!({"ipam": {"type": "host-local"}}));
        let del = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ];
        let (code, msg) = refusal(&del, &ipam);
        assert_eq!(code, 4, "{msg}");
        assert!(msg.contains("CNI_PATH"), "{msg}");
        for cni_path in ["", ":", "relative/bin", "/usr/lib/cni:bin"] {
            let mut vars = del.to_vec();
            vars.push(("CNI_PATH", cni_path));
            let (code, msg) = refusal(&vars, &ipam);
            assert_eq!(code, 4, "CNI_PATH={cni_path:?}: {msg}");
            assert!(msg.contains("CNI_PATH"), "{msg}");
        }
        // ... and a plain file name.
        for kind in [
            "./host-local",
            "../host-local",
            "bin/host-local",
            "..",
            ".",
            "",
        ] {
            let config = config(serde_json::json!({"ipam": {"type": kind}}));
            let mut vars = del.to_vec();
            vars.push(("CNI_PATH", "/usr/lib/cni"));
            let (code, msg) = refusal(&vars, &config);
            assert_eq!(code, 7, "type {kind:?}: {msg}");
            assert!(msg.contains("ipam"), "{msg}");
        }
        // Without ipam, CNI_PATH is not needed (DEL gets as far as switchd).
        let (code, msg) = refusal(&del, &config(serde_json::json!({})));
        assert_eq!(code, 11, "{msg}");
    }

    #[test]
    fn results_follow_the_version_asked() {
        let address: Ipv4Net = "10.10.0.2/24".parse().unwrap();
        let v1 = build_result(
            "1.1.0",
            &network(),
            "eth0",
            "02:42:0a:0a:00:02",
            1500,
            "/run/netns/x",
            address,
            None,
        );
        let json = serde_json::to_value(&v1).unwrap();
        assert_eq!(json["ips"][0]["address"], "10.10.0.2/24");
        assert_eq!(json["ips"][0]["interface"], 1);
        assert!(json["ips"][0].get("version").is_none());
        assert_eq!(json["interfaces"][1]["sandbox"], "/run/netns/x");
        assert_eq!(json["routes"][0]["gw"], "10.10.0.1");
        let v04 = build_result("0.4.0", &network(), "eth0", "m", 1500, "/x", address, None);
        assert_eq!(
            serde_json::to_value(&v04).unwrap()["ips"][0]["version"],
            "4"
        );
    }
}
