//! `nsutil`: create network namespaces and wire them to switchd.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{ArgGroup, Args, Parser, Subcommand};
use ipnet::IpNet;
use nsutil::attach::{self, AttachError, AttachOptions, DEFAULT_IFNAME, DEFAULT_MTU};
use nsutil::netns::{self, Netns, NetnsError, NetnsRef};
use serde::Serialize;
use switchyard::control::{
    parse_on_off, EndpointInfo, NetworkInfo, PortInfo, Request, Status, DEFAULT_SOCKET, SOCKET_ENV,
};
use switchyard::port::PortMode;
use switchyard::wire::{MacAddr, VlanId, VlanSet};
use switchyard_os::client::ClientError;

/// `println!` that does not panic when the reader has gone (`nsutil attach red | head -1`):
/// what nsutil did is done either way, and saying so is best effort.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// What every `--help` ends with (docs/operations.md has the table).
const EXIT_STATUS: &str = "\
Exit status: 0 done; 1 the operation failed (the kernel or switchd refused it, or switchd
could not be reached); 2 bad usage. Errors are one line on stderr:
`nsutil: what failed: why; what to do`.";

/// Create network namespaces and attach them to switchd.
#[derive(Parser, Debug)]
#[command(name = "nsutil", version, after_help = EXIT_STATUS)]
struct Cli {
    /// switchd's control socket.
    #[arg(long, global = true, help_heading = "Global options", value_name = "PATH", env = SOCKET_ENV, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,

    /// Print JSON (attach, ls).
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a named network namespace under /run/netns (like `ip netns add`).
    Create {
        /// The namespace's name.
        name: String,
    },
    /// Detach the namespace's ports from switchd, then delete the namespace.
    Delete {
        /// The namespace's name.
        name: String,
    },
    /// Give a namespace a switchd port: a TAP inside it, configured and up.
    Attach(AttachArgs),
    /// Remove a namespace's switchd port; its interface disappears.
    Detach {
        /// A name (red), an absolute path (/proc/PID/ns/net) or pid:PID.
        netns: NetnsRef,
        /// The interface inside the namespace.
        #[arg(long, default_value = DEFAULT_IFNAME)]
        ifname: String,
    },
    /// List the namespaces under /run/netns and the switchd ports in each.
    Ls,
    /// Print the completion script of a shell (`nsutil completion bash`).
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("port").required(true).multiple(true).args(["ip", "trunk", "network"])))]
struct AttachArgs {
    /// A name (red), an absolute path (/proc/PID/ns/net) or pid:PID.
    netns: NetnsRef,

    /// Attach to this switchd network (`swctl network create`): it assigns the address
    /// (or takes --ip), gateway route, VLAN, MAC and MTU, so not with --trunk, --vlan,
    /// --gw, --mac or --mtu.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["trunk", "vlan", "gw", "mac", "mtu"])]
    network: Option<String>,

    /// Access port with this address and prefix, e.g. 10.0.0.1/24 (not with --trunk); with
    /// --network, the address to take from the network's subnet, e.g. 10.10.0.50.
    #[arg(long, value_name = "CIDR", conflicts_with = "trunk")]
    ip: Option<String>,

    /// Default gateway (inside the --ip subnet; needs --ip, not with --network).
    #[arg(long, value_name = "IP", requires = "ip")]
    gw: Option<IpAddr>,

    /// Trunk port carrying these VLANs tagged, e.g. 10,20,30-39.
    #[arg(long, value_name = "LIST")]
    trunk: Option<VlanSet>,

    /// The access VLAN (default 1), or with --trunk the native (untagged) VLAN; not with
    /// --network, whose VLAN it is.
    #[arg(long, value_name = "N")]
    vlan: Option<VlanId>,

    /// MAC address (default: 02:42 + the IPv4 address, or one derived from the
    /// namespace and interface name); not with --network, which gives one.
    #[arg(long)]
    mac: Option<MacAddr>,

    /// The interface name inside the namespace.
    #[arg(long, default_value = DEFAULT_IFNAME)]
    ifname: String,

    /// The interface's MTU, 68 to 65535 [default: 1500]; not with --network, which gives
    /// its own (`swctl network create --mtu`)
    #[arg(long)]
    mtu: Option<u32>,

    /// Port security: switchd drops frames whose source MAC, IPv4 source or ARP sender
    /// is not the interface's [default: on for an access port, off for a trunk]
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    port_security: Option<bool>,

    /// With --network: publish a port on switchd's namespace,
    /// [HOSTIP:]HOSTPORT[-END]:PORT[-END][/tcp|/udp] (repeatable), e.g. 8080:80 or
    /// 127.0.0.1:5353:53/udp.
    #[arg(long, value_name = "MAPPING", requires = "network")]
    publish: Vec<String>,

    /// With --network: the container's DNS name there [default: the namespace's name]
    #[arg(long, requires = "network")]
    name: Option<String>,

    /// With --network: another DNS name, which other containers may share (repeatable).
    #[arg(long = "alias", value_name = "NAME", requires = "network")]
    aliases: Vec<String>,
}

/// A usage error found after the parse (an argument clap takes as text): exit code 2,
/// as for clap's own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

fn parse_cidr(text: &str) -> Result<IpNet, String> {
    if !text.contains('/') {
        return Err(format!(
            "{text} has no prefix length; write the address as CIDR, such as 10.0.0.1/24"
        ));
    }
    text.parse::<IpNet>()
        .map_err(|_| format!("{text} is not an address in CIDR notation, such as 10.0.0.1/24"))
}

/// An address on a network: `10.10.0.50`, or with the network's prefix (switchd checks
/// that it is the network's).
fn parse_network_ip(network: &str, text: &str) -> Result<(Ipv4Addr, Option<u8>)> {
    let invalid = || {
        anyhow::anyhow!(
            "invalid --ip {text:?} for network {network}: give an IPv4 address such as 10.10.0.50"
        )
    };
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (
            address,
            Some(
                prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 32)
                    .ok_or_else(invalid)?,
            ),
        ),
        None => (text, None),
    };
    Ok((address.parse::<Ipv4Addr>().map_err(|_| invalid())?, prefix))
}

fn main() -> ExitCode {
    // `nsutil --generate-man DIR`: nsutil.1 and nsutil-attach.1... for `make install`.
    switchyard_os::cli::generate_man_if_asked(<Cli as clap::CommandFactory>::command, "1");
    let cli = Cli::try_parse().unwrap_or_else(|err| switchyard_os::cli::usage_exit("nsutil", err));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nsutil: {}", describe(&err));
            if err.is::<Usage>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The error and its causes, leaving out causes whose text the message already has.
fn describe(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Create { name } => {
            let created = netns::create(&name)?;
            say!(
                "created network namespace {created} ({})",
                created.path().display()
            );
        }
        Command::Delete { name } => delete(&cli.socket, &name)?,
        Command::Attach(args) => attach_cmd(&cli.socket, args, cli.json)?,
        Command::Detach { netns, ifname } => match attach::detach(&cli.socket, &netns, &ifname)? {
            Some(port) => say!("detached {netns}/{ifname}: port {}", port.id),
            None => say!("{netns}/{ifname} was not attached; nothing to do"),
        },
        Command::Ls => ls(&cli.socket, cli.json)?,
        Command::Completion { shell } => {
            // Whole, then written: clap_complete panics on a write error (`| head`).
            let mut script = Vec::new();
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "nsutil", &mut script);
            let _ = std::io::stdout().write_all(&script);
        }
    }
    Ok(())
}

fn attach_cmd(socket: &Path, args: AttachArgs, json: bool) -> Result<()> {
    let mode = match args.trunk {
        Some(allowed) => PortMode::Trunk {
            allowed,
            native: args.vlan,
        },
        None => PortMode::Access {
            vlan: args.vlan.unwrap_or(VlanId::DEFAULT),
        },
    };
    let (addr, network_ip, network_prefix) = match (&args.network, args.ip.as_deref()) {
        (_, None) => (None, None, None),
        (Some(network), Some(text)) => {
            let (ip, prefix) =
                parse_network_ip(network, text).map_err(|err| Usage(err.to_string()))?;
            (None, Some(ip), prefix)
        }
        (None, Some(text)) => (
            Some(parse_cidr(text).map_err(|err| Usage(format!("invalid --ip: {err}")))?),
            None,
            None,
        ),
    };
    let options = AttachOptions {
        netns: args.netns,
        ifname: args.ifname,
        addr,
        gateway: args.gw,
        mode,
        mac: args.mac,
        mtu: args.mtu.unwrap_or(DEFAULT_MTU),
        network: args.network,
        network_ip,
        container_id: None,
        network_prefix,
        port_security: args.port_security,
        published: switchyard::portmap::parse_specs(&args.publish)
            .map_err(|err| Usage(format!("invalid --publish: {err}")))?,
        name: args.name,
        fallback_name: None,
        aliases: args.aliases,
    };
    let attachment = attach::attach(socket, &options)?;
    if json {
        print_json(&attachment)?;
    } else {
        say!("{attachment}");
    }
    point_resolver_at_gateway(socket, &options.netns, &attachment, !json);
    Ok(())
}

/// A named namespace on a network, with switchd's DNS on: its resolver file names the
/// gateway (see [`nsutil::resolv`]). Best effort: the attach is done either way.
fn point_resolver_at_gateway(
    socket: &Path,
    netns: &NetnsRef,
    attachment: &attach::Attachment,
    say: bool,
) {
    let (NetnsRef::Named(name), Some(network), Some(IpAddr::V4(gateway))) =
        (netns, &attachment.network, attachment.gateway)
    else {
        return;
    };
    // switchd's DNS answers on its own gateways only: not on a LAN network's, which is
    // the LAN's router (its resolver is the LAN's business).
    let dns = switchyard_os::client::Client::connect(socket).is_ok_and(|mut client| {
        client
            .call::<Status>(&Request::Status)
            .is_ok_and(|status| status.dns)
            && client
                .call::<switchyard::control::NetworkInfo>(&Request::NetworkInspect {
                    name: network.clone(),
                })
                .is_ok_and(|info| info.parent.is_none())
    });
    if !dns {
        return;
    }
    let root = Path::new(nsutil::resolv::NETNS_ETC);
    match nsutil::resolv::point_at_gateway(root, name, gateway, network) {
        Ok(nsutil::resolv::Written::Ours(path)) if say => {
            say!("{}: nameserver {gateway} (switchd's DNS)", path.display())
        }
        Ok(nsutil::resolv::Written::Theirs(path)) if say => say!(
            "{} is not nsutil's: left as it is (switchd's DNS answers on {gateway})",
            path.display()
        ),
        Ok(_) => {}
        Err(err) => eprintln!(
            "nsutil: cannot write {}/{name}/resolv.conf ({err}); switchd's DNS answers on {gateway}",
            root.display()
        ),
    }
}

fn delete(socket: &Path, name: &str) -> Result<()> {
    let reference = NetnsRef::named(name)?;
    match Netns::open(&reference) {
        Ok(netns) => match attach::detach_all(socket, &netns) {
            Ok(ports) => {
                for port in ports {
                    say!("detached {reference}/{}: port {}", port.ifname, port.id);
                }
            }
            Err(AttachError::Switchd {
                source: ClientError::NotRunning { path, .. },
                ..
            }) => eprintln!(
                "nsutil: switchd is not running at {}; deleting {name} without detaching its ports",
                path.display()
            ),
            Err(err) => eprintln!("nsutil: {err}; deleting {name} anyway"),
        },
        // A placeholder left by a failed create holds no ports; delete removes it.
        Err(NetnsError::NotNetns { .. }) => {}
        Err(err) => return Err(err.into()),
    }
    netns::delete(name)?;
    if let Err(err) = nsutil::resolv::remove(Path::new(nsutil::resolv::NETNS_ETC), name) {
        eprintln!("nsutil: cannot remove {name}'s resolver file: {err}");
    }
    say!("deleted network namespace {name}");
    Ok(())
}

#[derive(Serialize)]
struct NamespaceEntry {
    name: String,
    path: PathBuf,
    /// `None` when switchd could not be asked.
    ports: Option<Vec<PortInfo>>,
    /// The ports' endpoints on networks: address, name, aliases, published ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    endpoints: Vec<EndpointInfo>,
}

fn ls(socket: &Path, json: bool) -> Result<()> {
    let names = netns::list()?;
    let ports = match attach::ports(socket) {
        Ok(ports) => Some(ports),
        Err(ClientError::NotRunning { path, .. }) => {
            eprintln!(
                "nsutil: switchd is not running at {}; the namespaces' ports are unknown",
                path.display()
            );
            None
        }
        Err(err) => {
            eprintln!(
                "nsutil: cannot list switchd's ports ({err}); the namespaces' ports are unknown"
            );
            None
        }
    };
    let endpoints: Vec<EndpointInfo> = match ports {
        Some(_) => switchyard_os::client::Client::connect(socket)
            .and_then(|mut client| client.call::<Vec<NetworkInfo>>(&Request::NetworkList))
            .map(|networks| networks.into_iter().flat_map(|n| n.endpoints).collect())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let entries: Vec<NamespaceEntry> = names
        .into_iter()
        .map(|name| {
            let reference = NetnsRef::Named(name.clone());
            let id = Netns::open(&reference).ok().map(|netns| netns.id());
            let mine = ports.as_ref().map(|ports| {
                ports
                    .iter()
                    .filter(|port| {
                        port.netns == reference.path()
                            || id.is_some_and(|id| attach::port_is_in(port, id))
                    })
                    .cloned()
                    .collect()
            });
            let endpoints = endpoints
                .iter()
                .filter(|e| {
                    mine.as_ref()
                        .is_some_and(|ports: &Vec<PortInfo>| ports.iter().any(|p| p.id == e.port))
                })
                .cloned()
                .collect();
            NamespaceEntry {
                name,
                path: reference.path(),
                ports: mine,
                endpoints,
            }
        })
        .collect();
    if json {
        return print_json(&entries);
    }
    let mut out = std::io::stdout().lock();
    if ports.is_none() {
        for entry in &entries {
            writeln!(out, "{}", entry.name)?;
        }
        return Ok(());
    }
    let mut rows = vec![[
        "NAMESPACE".to_string(),
        "IFNAME".to_string(),
        "PORT".to_string(),
        "MODE".to_string(),
        "NETWORK".to_string(),
        "NAME".to_string(),
    ]];
    for entry in &entries {
        match entry.ports.as_deref() {
            Some(ports) if !ports.is_empty() => {
                for port in ports {
                    let endpoint = entry.endpoints.iter().find(|e| e.port == port.id);
                    rows.push([
                        entry.name.clone(),
                        port.ifname.clone(),
                        port.id.to_string(),
                        port.mode.to_string(),
                        endpoint.map_or("-".into(), |e| e.network.clone()),
                        endpoint
                            .and_then(|e| e.name.clone())
                            .unwrap_or_else(|| "-".into()),
                    ]);
                }
            }
            _ => rows.push([
                entry.name.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]),
        }
    }
    if rows.len() == 1 {
        return Ok(());
    }
    let widths: Vec<usize> = (0..6)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            line.push_str(&format!("{cell:w$}  ", w = widths[column]));
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot encode the answer as JSON")?;
    say!("{text}");
    Ok(())
}
