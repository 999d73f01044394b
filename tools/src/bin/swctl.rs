//! `swctl`, the control CLI of switchyard's switch daemon `switchd`.
//!
//! Each invocation connects to switchd's control socket, sends one request of the JSON
//! protocol in [`switchyard::control`], and prints the answer: aligned tables or one line
//! for people, the reply itself as pretty JSON with `--json`. Errors are one line on
//! stderr (`swctl: ...`) and exit code 1.

#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use ipnet::Ipv4Net;
use serde::de::DeserializeOwned;
use serde::Serialize;
use switchyard::control::{
    parse_on_off, ClusterStatus, FdbRecord, FdbStats, Flushed, NetworkInfo, NodeInfo, PeerInfo,
    PortAddRequest, PortInfo, PortStats, Request, RouterInfo, Stats, Status, VxlanInfo,
    DEFAULT_SOCKET, SOCKET_ENV,
};
use switchyard::controller::OWN_NETNS;
use switchyard::network::{NetworkConfig, Scope};
use switchyard::port::{PortId, PortMode};
use switchyard::portmap::PortMapping;
use switchyard::wire::{MacAddr, VlanId, VlanSet};
use switchyard_encap::Vni;
use switchyard_os::client::{Client, ClientError};

#[path = "swctl/inspect.rs"]
mod inspect;
#[path = "swctl/show.rs"]
mod show;

// ---------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------

/// What every `--help` ends with (docs/operations.md has the table).
const EXIT_STATUS: &str = "\
Exit status: 0 done; 1 the operation failed (switchd refused it, or could not be reached);
2 bad usage. Errors are one line on stderr: `swctl: what failed: why; what to do`.";

/// Control switchd, switchyard's userspace virtual switch.
#[derive(Debug, Parser)]
#[command(name = "swctl", version, after_help = EXIT_STATUS)]
struct Cli {
    /// switchd's control socket.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "PATH",
        env = SOCKET_ENV,
        default_value = DEFAULT_SOCKET
    )]
    socket: PathBuf,

    /// Print switchd's reply as JSON.
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show whether switchd is running, and its version, pid and uptime.
    Status,
    /// List, reconfigure or remove ports.
    #[command(subcommand)]
    Port(PortCommand),
    /// Show and edit the forwarding database (the MAC table).
    #[command(subcommand)]
    Fdb(FdbCommand),
    /// Show traffic counters per port and FDB counters.
    Stats,
    /// Show and configure the VXLAN overlay (switchd with a VTEP: --vtep, or `vxlan enable`).
    #[command(subcommand)]
    Vxlan(VxlanCommand),
    /// Create, list, inspect and remove networks (subnet, gateway, IPAM, isolation).
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Show switchd's router: the neighbours it knows and its counters.
    #[command(subcommand)]
    Router(RouterCommand),
    /// The cluster store as this node sees it (switchd started with --cluster-store).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// The cluster's nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// switchd's log.
    #[command(subcommand)]
    Log(LogCommand),
    /// The whole switch in one view: ports, networks and endpoints, VTEP peers, uplink.
    Show(ShowArgs),
    /// Watch a port's frames live: one line each, or a pcapng file (-w FILE, -w - for a pipe).
    Capture(inspect::CaptureArgs),
    /// What the datapath would do with a frame from a port, step by step (sends,
    /// learns and counts nothing).
    Trace(inspect::TraceArgs),
    /// Print the completion script of a shell (`swctl completion bash`); needs no switchd.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// `text` for people, `dot` for Graphviz (`swctl show --format dot | dot -Tsvg`),
    /// `json` (the same as --json; --json with `--format text` or `dot` is bad usage)
    /// [default: text]
    #[arg(long, value_enum)]
    format: Option<ShowFormat>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ShowFormat {
    Text,
    Dot,
    Json,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// The store, this node's registration and lease, the last sync, what it shares.
    Status,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// List the nodes registered in the cluster store.
    Ls,
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Change what switchd logs, until the next change or restart (as its --log).
    Level {
        /// A level (error, warn, info, debug, trace, off), or directives such as
        /// switchd=debug,warn
        filter: String,
    },
}

#[derive(Debug, Subcommand)]
enum NetworkCommand {
    /// Create a network; every option has a default.
    Create(NetworkCreateArgs),
    /// List networks.
    Ls,
    /// Show a network and its endpoints (with --json, close to `docker network inspect`).
    Inspect { name: String },
    /// Remove a network that has no endpoints.
    #[command(alias = "del")]
    Rm { name: String },
}

#[derive(Debug, Args)]
struct NetworkCreateArgs {
    /// Letters, digits, '_', '.' and '-'.
    name: String,
    /// IPv4 subnet, such as 10.10.0.0/24 [default: a free /24 of 172.20.0.0/14]
    #[arg(long, value_name = "CIDR")]
    subnet: Option<Ipv4Net>,
    /// The router's address on the network [default: the subnet's first address]
    #[arg(long, value_name = "IP")]
    gateway: Option<Ipv4Addr>,
    /// The MTU of containers' interfaces [default: 1500, 1450 with --vni]
    #[arg(long, value_name = "N")]
    mtu: Option<u32>,
    /// Span hosts: carry the network over the VXLAN overlay as this VNI.
    #[arg(long, value_name = "VNI")]
    vni: Option<Vni>,
    /// Give out automatic addresses only from this part of the subnet; on an overlay
    /// network, give each host its own range.
    #[arg(long, value_name = "CIDR")]
    ip_range: Option<Ipv4Net>,
    /// No uplink: containers reach only each other and the gateway (so not with
    /// --masquerade).
    #[arg(long, conflicts_with = "masquerade")]
    internal: bool,
    /// Source NAT for traffic leaving through the host.
    #[arg(long)]
    masquerade: bool,
    /// `global`: one network on every node of the cluster, with cluster-wide IPAM
    /// (needs switchd started with --cluster-store; the VNI is chosen unless given)
    #[arg(long, value_name = "local|global", default_value = "local")]
    scope: Scope,
    /// A LAN network (Docker's macvlan case): containers on the LAN behind this host
    /// port (`swctl port add`), with the LAN's own router as --gateway (required, as is
    /// --subnet); switchd's router stays out of it. --ip-range keeps the LAN's DHCP pool
    /// free; the MTU defaults to the port's interface's.
    #[arg(long, value_name = "PORT", conflicts_with_all = ["internal", "masquerade", "vni"], requires_all = ["subnet", "gateway"])]
    parent: Option<String>,
    /// With --parent: the LAN's VLAN on the parent port [default: its untagged VLAN].
    #[arg(long, value_name = "N", requires = "parent")]
    vlan: Option<VlanId>,
    /// An address IPAM never hands out (the LAN's other hosts); repeat for more.
    #[arg(long = "aux-address", value_name = "IP")]
    aux_addresses: Vec<Ipv4Addr>,
}

#[derive(Debug, Subcommand)]
enum RouterCommand {
    /// The uplink, the neighbours (ARP) and the counters.
    Show,
}

#[derive(Debug, Subcommand)]
enum VxlanCommand {
    /// Show the VTEP address, the VLAN ↔ VNI map, the peers and overlay drops.
    Show,
    /// Carry a VLAN over the overlay as a VNI.
    Map {
        #[arg(long, value_name = "N")]
        vlan: VlanId,
        #[arg(long, value_name = "VNI")]
        vni: Vni,
    },
    /// Stop carrying a VLAN over the overlay.
    Unmap {
        #[arg(long, value_name = "N")]
        vlan: VlanId,
    },
    /// Add, remove or list remote VTEPs.
    #[command(subcommand)]
    Peer(PeerCommand),
    /// Make switchd a VXLAN tunnel endpoint now, without a restart (remembered across
    /// restarts; refused when it is one already).
    Enable {
        /// This host's underlay address: IP or IP:PORT (port 4789 by default).
        #[arg(long, value_name = "ADDR[:PORT]")]
        vtep: String,
    },
}

#[derive(Debug, Subcommand)]
enum PeerCommand {
    /// Add a remote VTEP: IP or IP:PORT (default: this VTEP's port).
    Add { addr: String },
    /// Remove a remote VTEP and the MACs learned behind it.
    Del { addr: String },
    /// List remote VTEPs with their path MTU and counters.
    Ls,
}

#[derive(Debug, Subcommand)]
enum PortCommand {
    /// List ports.
    Ls,
    /// Make an existing interface (a NIC, bond or veth) a port, or with --internal
    /// create a TAP in switchd's own namespace for the host itself; without --vlan or
    /// --trunk, an access port on VLAN 1.
    Add(PortAddArgs),
    /// Make a port an access port of one VLAN, or a trunk.
    Set(PortSetArgs),
    /// Remove a port and its TAP.
    Del {
        /// Port id, or name such as red/eth0.
        port: String,
    },
    /// Publish ports of switchd's namespace to a port on a network, beside the ones it
    /// publishes already.
    Publish {
        /// Port id, or name such as red/eth0.
        port: String,
        /// [IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp], such as 8080:80,
        /// 127.0.0.1:5353:53/udp or 8000-8009:8000-8009.
        #[arg(value_name = "MAPPING", required = true)]
        mappings: Vec<MappingSpec>,
    },
    /// Stop publishing ports of a port on a network (none given: all of them).
    Unpublish {
        /// Port id, or name such as red/eth0.
        port: String,
        /// Mappings as they were published.
        #[arg(value_name = "MAPPING")]
        mappings: Vec<MappingSpec>,
    },
}

/// One `MAPPING` argument: a port, or a range of them.
#[derive(Clone, Debug)]
struct MappingSpec(Vec<PortMapping>);

impl std::str::FromStr for MappingSpec {
    type Err = switchyard::portmap::PortMapError;
    fn from_str(text: &str) -> Result<MappingSpec, Self::Err> {
        switchyard::portmap::parse_spec(text).map(MappingSpec)
    }
}

fn flatten(specs: &[MappingSpec]) -> Vec<PortMapping> {
    specs
        .iter()
        .flat_map(|spec| spec.0.iter().copied())
        .collect()
}

#[derive(Debug, Args)]
struct PortAddArgs {
    /// The interface (with --internal: the name of the TAP to create).
    ifname: String,

    /// The namespace the interface is in: a name under /run/netns or a path
    /// [default: switchd's own].
    #[arg(long, value_name = "NS", conflicts_with = "internal")]
    netns: Option<String>,

    /// Create a TAP named IFNAME in switchd's own namespace: the host's interface on the
    /// switch.
    #[arg(long)]
    internal: bool,

    #[command(flatten)]
    mode: ModeArgs,

    /// Port security [default: off for a host port, which carries the LAN's many MACs].
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    port_security: Option<bool>,

    /// Storm control: flooded frames per second the port may send; 0 for no limit
    /// [default: switchd's --storm-limit-pps].
    #[arg(long, value_name = "PPS")]
    storm_limit_pps: Option<u32>,
}

impl PortAddArgs {
    /// A namespace name (`lan`) is `/run/netns/lan`; a path stays as it is.
    fn netns_path(&self) -> Option<PathBuf> {
        self.netns.as_ref().map(|ns| {
            if ns.contains('/') {
                PathBuf::from(ns)
            } else {
                Path::new("/run/netns").join(ns)
            }
        })
    }
}

/// A port's VLAN mode as `port add` and `port set` take it: `--vlan N | --trunk LIST
/// [--native N]`.
#[derive(Debug, Args)]
struct ModeArgs {
    /// Access port: untagged frames of VLAN N (not with --trunk or --native).
    #[arg(long, value_name = "N", conflicts_with = "trunk")]
    vlan: Option<VlanId>,

    /// Trunk port: tagged frames of these VLANs, e.g. 10,20,30-39 (not with --vlan).
    #[arg(long, value_name = "LIST")]
    trunk: Option<VlanSet>,

    /// Carry this VLAN untagged on the trunk (needs --trunk).
    #[arg(long, value_name = "N", requires = "trunk", conflicts_with = "vlan")]
    native: Option<VlanId>,
}

impl ModeArgs {
    /// The mode these flags ask for, if any.
    fn port_mode(&self) -> Option<PortMode> {
        match (self.vlan, &self.trunk) {
            (Some(vlan), _) => Some(PortMode::Access { vlan }),
            (None, Some(allowed)) => Some(PortMode::Trunk {
                allowed: allowed.clone(),
                native: self.native,
            }),
            (None, None) => None,
        }
    }
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("change")
        .required(true)
        .multiple(true)
        .args(["vlan", "trunk", "port_security", "storm_limit_pps"])
))]
struct PortSetArgs {
    /// Port id, or name such as red/eth0.
    port: String,

    #[command(flatten)]
    mode: ModeArgs,

    /// Port security: drop frames whose source MAC, IPv4 source or ARP sender is not
    /// the port's (needs a MAC switchd knows: attached by nsutil, CNI or on a network).
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    port_security: Option<bool>,

    /// Storm control: broadcast, multicast and unknown-unicast frames per second the
    /// port may flood (burst: twice that); 0 for no limit.
    #[arg(long, value_name = "PPS")]
    storm_limit_pps: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum FdbCommand {
    /// Show entries, sorted by VLAN then MAC.
    Show {
        /// Only entries of this VLAN.
        #[arg(long, value_name = "N")]
        vlan: Option<VlanId>,
        /// Only entries on this port (id or name).
        #[arg(long, value_name = "PORT")]
        port: Option<String>,
    },
    /// Add (or replace) a static entry, on a local port or behind a VTEP.
    Add {
        mac: MacAddr,
        #[arg(long, value_name = "N")]
        vlan: VlanId,
        #[command(flatten)]
        target: FdbTarget,
    },
    /// Remove an entry, static or learned.
    Del {
        mac: MacAddr,
        #[arg(long, value_name = "N")]
        vlan: VlanId,
    },
    /// Remove learned entries, optionally only of one VLAN or port.
    Flush {
        #[arg(long, value_name = "N")]
        vlan: Option<VlanId>,
        /// Port id or name.
        #[arg(long, value_name = "PORT")]
        port: Option<String>,
        /// Remove static entries too.
        #[arg(long = "static")]
        include_static: bool,
    },
}

/// Exactly one of `--port` and `--vtep`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct FdbTarget {
    /// Port id or name (or --vtep: one of the two).
    #[arg(long, value_name = "PORT")]
    port: Option<String>,
    /// The underlay address of a VXLAN peer the MAC sits behind (or --port).
    #[arg(long, value_name = "IP")]
    vtep: Option<IpAddr>,
}

impl Command {
    /// The one request this command sends to switchd; `None` for the commands that send
    /// several or build theirs where they send them (show, capture, trace), and for
    /// completion, which asks switchd nothing.
    fn to_request(&self) -> Option<Request> {
        Some(match self {
            Command::Status => Request::Status,
            Command::Stats => Request::Stats,
            Command::Completion { .. }
            | Command::Show(_)
            | Command::Capture(_)
            | Command::Trace(_) => return None,
            Command::Port(PortCommand::Ls) => Request::PortList,
            Command::Port(PortCommand::Set(args)) => Request::PortSet {
                port: args.port.clone(),
                mode: args.mode.port_mode(),
                port_security: args.port_security,
                storm_limit_pps: args.storm_limit_pps,
            },
            Command::Port(PortCommand::Del { port }) => Request::PortDel { port: port.clone() },
            Command::Port(PortCommand::Add(args)) => Request::PortAdd(PortAddRequest {
                ifname: args.ifname.clone(),
                netns: args.netns_path(),
                internal: args.internal,
                mode: args.mode.port_mode(),
                port_security: args.port_security,
                storm_limit_pps: args.storm_limit_pps,
            }),
            Command::Port(PortCommand::Publish { port, mappings }) => Request::PortPublish {
                port: port.clone(),
                published: flatten(mappings),
                add: true,
            },
            Command::Port(PortCommand::Unpublish { port, mappings }) => Request::PortUnpublish {
                port: port.clone(),
                published: flatten(mappings),
            },
            Command::Fdb(FdbCommand::Show { vlan, port }) => Request::FdbShow {
                vlan: *vlan,
                port: port.clone(),
            },
            Command::Fdb(FdbCommand::Add { mac, vlan, target }) => Request::FdbAdd {
                mac: *mac,
                vlan: *vlan,
                port: target.port.clone(),
                vtep: target.vtep,
            },
            Command::Fdb(FdbCommand::Del { mac, vlan }) => Request::FdbDel {
                mac: *mac,
                vlan: *vlan,
            },
            Command::Fdb(FdbCommand::Flush {
                vlan,
                port,
                include_static,
            }) => Request::FdbFlush {
                vlan: *vlan,
                port: port.clone(),
                include_static: *include_static,
            },
            Command::Vxlan(VxlanCommand::Show) => Request::VxlanShow,
            Command::Vxlan(VxlanCommand::Map { vlan, vni }) => Request::VxlanMap {
                vlan: *vlan,
                vni: *vni,
            },
            Command::Vxlan(VxlanCommand::Unmap { vlan }) => Request::VxlanUnmap { vlan: *vlan },
            Command::Vxlan(VxlanCommand::Peer(PeerCommand::Add { addr })) => {
                Request::PeerAdd { addr: addr.clone() }
            }
            Command::Vxlan(VxlanCommand::Peer(PeerCommand::Del { addr })) => {
                Request::PeerDel { addr: addr.clone() }
            }
            Command::Vxlan(VxlanCommand::Peer(PeerCommand::Ls)) => Request::PeerList,
            Command::Vxlan(VxlanCommand::Enable { vtep }) => {
                Request::VxlanEnable { vtep: vtep.clone() }
            }
            Command::Network(NetworkCommand::Create(args)) => {
                Request::NetworkCreate(NetworkConfig {
                    name: args.name.clone(),
                    id: None,
                    subnet: args.subnet,
                    gateway: args.gateway,
                    mtu: args.mtu,
                    vni: args.vni,
                    ip_range: args.ip_range,
                    internal: args.internal,
                    masquerade: args.masquerade,
                    scope: args.scope,
                    parent: args.parent.clone(),
                    vlan: args.vlan,
                    aux_addresses: args.aux_addresses.clone(),
                })
            }
            Command::Network(NetworkCommand::Ls) => Request::NetworkList,
            Command::Network(NetworkCommand::Inspect { name }) => {
                Request::NetworkInspect { name: name.clone() }
            }
            Command::Network(NetworkCommand::Rm { name }) => {
                Request::NetworkRemove { name: name.clone() }
            }
            Command::Router(RouterCommand::Show) => Request::RouterShow,
            Command::Cluster(ClusterCommand::Status) => Request::ClusterStatus,
            Command::Node(NodeCommand::Ls) => Request::NodeList,
            Command::Log(LogCommand::Level { filter }) => Request::LogLevel {
                filter: filter.clone(),
            },
        })
    }
}

// ---------------------------------------------------------------------------------------
// Running a command
// ---------------------------------------------------------------------------------------

fn main() -> ExitCode {
    // `swctl --generate-man DIR`: swctl.1 and swctl-port-set.1... for `make install`.
    switchyard_os::cli::generate_man_if_asked(Cli::command, "1");
    let matches = Cli::command()
        .try_get_matches()
        .unwrap_or_else(|err| usage_exit(err));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| usage_exit(err));
    if let Command::Show(ShowArgs {
        format: Some(format @ (ShowFormat::Text | ShowFormat::Dot)),
    }) = &cli.command
    {
        if cli.json {
            let format = if *format == ShowFormat::Text {
                "text"
            } else {
                "dot"
            };
            usage_exit(Cli::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("--json cannot be used with --format {format}; pick one"),
            ));
        }
    }
    if let Command::Completion { shell } = cli.command {
        return print_output(&completion(shell));
    }
    match run(&cli) {
        Ok(output) => print_output(&output),
        Err(err) => {
            eprintln!("swctl: {}", describe_failure(&matches, &err));
            ExitCode::FAILURE
        }
    }
}

/// The completion script of `shell`, from these definitions.
fn completion(shell: clap_complete::Shell) -> String {
    let mut script = Vec::new();
    let mut command = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "swctl", &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

/// Talks to switchd and returns everything to print; nothing is printed on failure.
fn run(cli: &Cli) -> Result<String> {
    let mut client = Client::connect(&cli.socket)?;
    let json = cli.json;
    let Some(request) = cli.command.to_request() else {
        // The commands that build their requests themselves.
        return match &cli.command {
            Command::Capture(args) => inspect::capture(client, args, json),
            Command::Trace(args) => inspect::trace(&mut client, args, json),
            Command::Show(args) => {
                let picture = show::Picture::fetch(&mut client)?;
                // main refused --json with --format text or dot.
                match (json, args.format.unwrap_or(ShowFormat::Text)) {
                    (true, _) | (false, ShowFormat::Json) => Ok(format_json(&picture)?),
                    (false, ShowFormat::Text) => Ok(show::format_text(&picture)),
                    (false, ShowFormat::Dot) => Ok(show::format_dot(&picture)),
                }
            }
            other => unreachable!("main answers {other:?} without switchd"),
        };
    };
    match &cli.command {
        Command::Capture(_) | Command::Trace(_) | Command::Show(_) | Command::Completion { .. } => {
            unreachable!("no single request: answered above")
        }
        Command::Status => call(&mut client, &request, json, format_status),
        Command::Stats => call(&mut client, &request, json, format_stats),
        Command::Port(PortCommand::Ls) => {
            call(&mut client, &request, json, |ports: &Vec<PortInfo>| {
                format_ports(ports)
            })
        }
        Command::Port(PortCommand::Set(_)) => call(&mut client, &request, json, format_port_set),
        Command::Port(PortCommand::Add(_)) => call(&mut client, &request, json, format_port_added),
        Command::Port(PortCommand::Del { .. }) => {
            call(&mut client, &request, json, format_port_removed)
        }
        Command::Port(PortCommand::Publish { .. } | PortCommand::Unpublish { .. }) => call(
            &mut client,
            &request,
            json,
            |e: &switchyard::control::EndpointInfo| {
                format!(
                    "port {} ({}) publishes {}\n",
                    e.port,
                    e.address.addr(),
                    published(&e.published)
                )
            },
        ),
        Command::Fdb(FdbCommand::Show { .. }) => {
            call(&mut client, &request, json, |records: &Vec<FdbRecord>| {
                format_fdb(records)
            })
        }
        Command::Fdb(FdbCommand::Add { .. }) => call(&mut client, &request, json, format_fdb_added),
        Command::Fdb(FdbCommand::Del { .. }) => {
            call(&mut client, &request, json, format_fdb_removed)
        }
        Command::Fdb(FdbCommand::Flush { .. }) => call(&mut client, &request, json, format_flushed),
        Command::Vxlan(VxlanCommand::Show) => call(&mut client, &request, json, format_vxlan),
        Command::Vxlan(VxlanCommand::Map { vlan, vni }) => {
            call(&mut client, &request, json, |info: &VxlanInfo| {
                format_mapped(*vlan, Some(*vni), info)
            })
        }
        Command::Vxlan(VxlanCommand::Unmap { vlan }) => {
            call(&mut client, &request, json, |info: &VxlanInfo| {
                format_mapped(*vlan, None, info)
            })
        }
        Command::Vxlan(VxlanCommand::Peer(PeerCommand::Ls)) => {
            call(&mut client, &request, json, |peers: &Vec<PeerInfo>| {
                format_peers(peers)
            })
        }
        Command::Vxlan(VxlanCommand::Enable { .. }) => {
            call(&mut client, &request, json, |info: &VxlanInfo| {
                format!("VXLAN enabled: VTEP {}\n", info.local)
            })
        }
        Command::Vxlan(VxlanCommand::Peer(PeerCommand::Add { .. })) => {
            call(&mut client, &request, json, |peer: &PeerInfo| {
                format_peer_line("added", peer)
            })
        }
        Command::Vxlan(VxlanCommand::Peer(PeerCommand::Del { .. })) => {
            call(&mut client, &request, json, |peer: &PeerInfo| {
                format_peer_line("removed", peer)
            })
        }
        Command::Network(NetworkCommand::Create(_)) => {
            call(&mut client, &request, json, |n: &NetworkInfo| {
                format!(
                    "created network {} ({}, gateway {}, {})\n",
                    n.name,
                    n.subnet,
                    n.gateway,
                    network_flags(n)
                )
            })
        }
        Command::Network(NetworkCommand::Ls) => call(
            &mut client,
            &request,
            json,
            |networks: &Vec<NetworkInfo>| format_networks(networks),
        ),
        Command::Network(NetworkCommand::Inspect { .. }) => {
            call(&mut client, &request, json, format_network)
        }
        Command::Network(NetworkCommand::Rm { .. }) => {
            call(&mut client, &request, json, |n: &NetworkInfo| {
                format!("removed network {} ({})\n", n.name, n.subnet)
            })
        }
        Command::Router(RouterCommand::Show) => call(&mut client, &request, json, format_router),
        Command::Cluster(ClusterCommand::Status) => {
            call(&mut client, &request, json, format_cluster_status)
        }
        Command::Log(LogCommand::Level { .. }) => call(
            &mut client,
            &request,
            json,
            |f: &switchyard::control::LogFilter| {
                format!("log filter is {} (was {})\n", f.filter, f.previous)
            },
        ),
        Command::Node(NodeCommand::Ls) => {
            call(&mut client, &request, json, |nodes: &Vec<NodeInfo>| {
                format_nodes(nodes)
            })
        }
    }
}

fn format_cluster_status(s: &ClusterStatus) -> String {
    let or_dash = |text: Option<String>| text.unwrap_or_else(|| "-".into());
    format_fields(&[
        ("store", s.store.clone()),
        (
            "connected",
            if s.connected {
                "yes".to_string()
            } else {
                format!("no ({})", or_dash(s.error.clone()))
            },
        ),
        ("member", or_dash(s.member.clone())),
        ("node", s.node.clone()),
        ("advertise", or_dash(s.advertise.map(|a| a.to_string()))),
        (
            "lease",
            format!("{} (ttl {} s)", or_dash(s.lease.clone()), s.lease_ttl_secs),
        ),
        ("revision", s.revision.to_string()),
        (
            "last sync",
            or_dash(s.last_sync_secs_ago.map(|secs| format!("{secs} s ago"))),
        ),
        ("nodes", s.nodes.to_string()),
        ("peers", s.peers.to_string()),
        ("global networks", s.global_networks.to_string()),
        ("remote endpoints", s.remote_endpoints.to_string()),
        (
            "registrations",
            format!(
                "{} (compactions {}, watch events {}, unreadable records {})",
                s.registrations, s.compactions, s.watch_events, s.unreadable_records
            ),
        ),
    ])
}

fn format_nodes(nodes: &[NodeInfo]) -> String {
    let mut table = Table::new(&[
        ("NODE", Align::Left),
        ("VTEP", Align::Left),
        ("PORT", Align::Right),
        ("ENDPOINTS", Align::Right),
        ("STARTED", Align::Left),
    ]);
    for node in nodes {
        table.push(vec![
            if node.local {
                format!("{} (this node)", node.name)
            } else {
                node.name.clone()
            },
            node.vtep.to_string(),
            node.port.map_or_else(|| "-".into(), |p| p.to_string()),
            node.endpoints.to_string(),
            node.started.clone(),
        ]);
    }
    table.render()
}

/// `local, vlan 3000, masquerade`: what kind of network it is.
fn network_flags(n: &NetworkInfo) -> String {
    let mut flags = vec![n.driver.clone(), format!("vlan {}", n.vlan)];
    if n.scope == Scope::Global {
        flags.insert(0, "global".into());
    }
    if let Some(vni) = n.vni {
        flags.push(format!("vni {vni}"));
    }
    if n.internal {
        flags.push("internal".into());
    }
    if n.masquerade {
        flags.push("masquerade".into());
    }
    if n.mtu != 1500 {
        flags.push(format!("mtu {}", n.mtu));
    }
    flags.join(", ")
}

fn format_networks(networks: &[NetworkInfo]) -> String {
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("ID", Align::Left),
        ("DRIVER", Align::Left),
        ("SCOPE", Align::Left),
        ("SUBNET", Align::Left),
        ("GATEWAY", Align::Left),
        ("VLAN", Align::Right),
        ("ENDPOINTS", Align::Right),
        ("OPTIONS", Align::Left),
    ]);
    for n in networks {
        let mut options = Vec::new();
        if let Some(vni) = n.vni {
            options.push(format!("vni={vni}"));
        }
        if n.internal {
            options.push("internal".to_string());
        }
        if n.masquerade {
            options.push("masquerade".to_string());
        }
        options.push(format!("mtu={}", n.mtu));
        table.push(vec![
            n.name.clone(),
            n.id.chars().take(12).collect(),
            n.driver.clone(),
            n.scope.as_str().to_string(),
            n.subnet.to_string(),
            n.gateway.to_string(),
            n.vlan.to_string(),
            (n.endpoints.len() + n.remote_endpoints.len()).to_string(),
            options.join(","),
        ]);
    }
    table.render()
}

/// Published ports as Docker lists them, or `-`.
fn published(list: &[PortMapping]) -> String {
    switchyard::portmap::join(list, ", ", "-")
}

fn format_network(n: &NetworkInfo) -> String {
    let mut out = format_fields(&[
        ("name", n.name.clone()),
        ("id", n.id.clone()),
        ("created", n.created.clone()),
        ("subnet", n.subnet.to_string()),
        ("gateway", format!("{} ({})", n.gateway, n.gateway_mac)),
        ("kind", network_flags(n)),
        ("endpoints", n.endpoints.len().to_string()),
    ]);
    if !n.remote_endpoints.is_empty() {
        let mut table = Table::new(&[
            ("NODE", Align::Left),
            ("ADDRESS", Align::Left),
            ("MAC", Align::Left),
            ("NAME", Align::Left),
        ]);
        for e in &n.remote_endpoints {
            table.push(vec![
                e.node.clone(),
                e.ip.to_string(),
                e.mac.to_string(),
                e.name.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str("\nendpoints on other nodes:\n");
        out.push_str(&table.render());
    }
    if !n.endpoints.is_empty() {
        let mut table = Table::new(&[
            ("PORT", Align::Right),
            ("PORT NAME", Align::Left),
            ("NAME", Align::Left),
            ("ALIASES", Align::Left),
            ("ADDRESS", Align::Left),
            ("MAC", Align::Left),
            ("CONTAINER", Align::Left),
            ("PUBLISHED", Align::Left),
        ]);
        for e in &n.endpoints {
            table.push(vec![
                e.port.to_string(),
                e.port_name.clone(),
                e.name.clone().unwrap_or_else(|| "-".into()),
                if e.aliases.is_empty() {
                    "-".into()
                } else {
                    e.aliases.join(",")
                },
                e.address.to_string(),
                e.mac.to_string(),
                e.container_id.clone().unwrap_or_else(|| "-".into()),
                published(&e.published),
            ]);
        }
        out.push('\n');
        out.push_str(&table.render());
    }
    out
}

fn format_router(info: &RouterInfo) -> String {
    let counters = serde_json::to_value(&info.counters).unwrap_or_default();
    let mut fields = vec![(
        "uplink",
        info.uplink.clone().unwrap_or_else(|| "none".to_string()),
    )];
    let mut rendered = Vec::new();
    if let Some(object) = counters.as_object() {
        for (key, value) in object {
            let text = match value {
                serde_json::Value::Object(map) if map.is_empty() => "none".to_string(),
                serde_json::Value::Object(map) => map
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            rendered.push((key.replace('_', " "), text));
        }
    }
    let dns = serde_json::to_value(&info.dns).unwrap_or_default();
    if let Some(object) = dns.as_object() {
        let nonzero: Vec<String> = object
            .iter()
            .filter(|(_, v)| v.as_u64().is_some_and(|n| n > 0))
            .map(|(k, v)| format!("{} {v}", k.replace('_', " ")))
            .collect();
        rendered.push((
            "dns".to_string(),
            if nonzero.is_empty() {
                "none".to_string()
            } else {
                nonzero.join(", ")
            },
        ));
    }
    for (key, text) in &rendered {
        fields.push((key.as_str(), text.clone()));
    }
    let mut out = format_fields(&fields);
    if !info.neighbors.is_empty() {
        let mut table = Table::new(&[
            ("VLAN", Align::Right),
            ("ADDRESS", Align::Left),
            ("MAC", Align::Left),
            ("KIND", Align::Left),
        ]);
        for neighbor in &info.neighbors {
            table.push(vec![
                neighbor.vlan.to_string(),
                neighbor.ip.to_string(),
                neighbor.mac.to_string(),
                if neighbor.is_static {
                    "static"
                } else {
                    "learned"
                }
                .to_string(),
            ]);
        }
        out.push('\n');
        out.push_str(&table.render());
    }
    out
}

/// Sends `request`, then renders the reply as JSON or with `human`.
fn call<T: DeserializeOwned + Serialize>(
    client: &mut Client,
    request: &Request,
    json: bool,
    human: impl Fn(&T) -> String,
) -> Result<String> {
    let reply: T = client.call(request)?;
    if json {
        Ok(format_json(&reply)?)
    } else {
        Ok(human(&reply))
    }
}

fn print_output(output: &str) -> ExitCode {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        // `swctl fdb show | head`: the reader has seen what it wanted.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("swctl: cannot write to stdout: {err}");
            ExitCode::FAILURE
        }
    }
}

/// clap's verdict on the command line (switchyard_os::cli::usage_exit): help and version
/// on stdout (exit 0); a usage error as `swctl: ...` on stderr (exit 2).
fn usage_exit(err: clap::Error) -> ! {
    switchyard_os::cli::usage_exit("swctl", err)
}

/// `what failed: why; what to do` on one line. A refusal is switchd's message (why, and
/// what to do) after the command refused (`port del: no such port: 9`); the client's
/// own errors (switchd not running...) say what failed themselves.
fn describe_failure(matches: &clap::ArgMatches, err: &anyhow::Error) -> String {
    let refused = matches!(
        err.downcast_ref::<ClientError>(),
        Some(ClientError::Refused(_))
    );
    if refused {
        format!("{}: {}", subcommand_words(matches), one_line(err))
    } else {
        one_line(err)
    }
}

/// The subcommands given, such as `vxlan peer add`.
fn subcommand_words(matches: &clap::ArgMatches) -> String {
    let mut words = Vec::new();
    let mut current = matches;
    while let Some((name, sub)) = current.subcommand() {
        words.push(name);
        current = sub;
    }
    words.join(" ")
}

/// The error's message on one line, whatever switchd put in it.
fn one_line(err: &anyhow::Error) -> String {
    let text = err.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines.join(" ")
}

// ---------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------

fn format_json<T: Serialize>(reply: &T) -> serde_json::Result<String> {
    let mut text = serde_json::to_string_pretty(reply)?;
    text.push('\n');
    Ok(text)
}

fn format_status(status: &Status) -> String {
    format_fields(&[
        ("version", status.version.clone()),
        ("pid", status.pid.to_string()),
        ("uptime", format_duration(status.uptime_secs)),
        ("ports", status.ports.to_string()),
        ("state dir", status.state_dir.display().to_string()),
        ("dns", if status.dns { "on" } else { "off" }.to_string()),
    ])
}

fn format_ports(ports: &[PortInfo]) -> String {
    let mut table = Table::new(&[
        ("ID", Align::Right),
        ("NAME", Align::Left),
        ("NETNS", Align::Left),
        ("IFNAME", Align::Left),
        ("KIND", Align::Left),
        ("MODE", Align::Left),
        ("VLANS", Align::Left),
        ("STATE", Align::Left),
    ]);
    let mut ports: Vec<&PortInfo> = ports.iter().collect();
    ports.sort_by_key(|port| port.id);
    for port in ports {
        // A host or internal port of switchd's own namespace.
        let netns = if port.netns == Path::new(OWN_NETNS) {
            "(switchd's)".to_string()
        } else {
            port.netns.display().to_string()
        };
        table.push(vec![
            port.id.to_string(),
            port.name.clone(),
            netns,
            port.ifname.clone(),
            port.kind.to_string(),
            mode_name(&port.mode).to_string(),
            mode_vlans(&port.mode),
            port.state.clone(),
        ]);
    }
    table.render()
}

fn mode_name(mode: &PortMode) -> &'static str {
    match mode {
        PortMode::Access { .. } => "access",
        PortMode::Trunk { .. } => "trunk",
    }
}

/// The VLANS column: `10` for access, `10,20` or `10,20 native 30` for a trunk.
fn mode_vlans(mode: &PortMode) -> String {
    match mode {
        PortMode::Access { vlan } => vlan.to_string(),
        PortMode::Trunk { allowed, native } => {
            let allowed = if allowed.is_empty() {
                "-".to_string()
            } else {
                allowed.to_string()
            };
            match native {
                Some(native) => format!("{allowed} native {native}"),
                None => allowed,
            }
        }
    }
}

fn format_fdb(records: &[FdbRecord]) -> String {
    let mut table = Table::new(&[
        ("VLAN", Align::Right),
        ("MAC", Align::Left),
        ("PORT", Align::Left),
        ("TYPE", Align::Left),
        ("AGE", Align::Right),
    ]);
    let mut records: Vec<&FdbRecord> = records.iter().collect();
    records.sort_by_key(|record| (record.entry.vlan, record.entry.mac));
    for record in records {
        let entry = &record.entry;
        let age = if entry.is_static {
            "-".to_string()
        } else {
            format_duration(entry.age_secs)
        };
        table.push(vec![
            entry.vlan.to_string(),
            entry.mac.to_string(),
            port_name_or_id(entry.port, &record.port_name),
            entry_kind(record).to_string(),
            age,
        ]);
    }
    table.render()
}

fn entry_kind(record: &FdbRecord) -> &'static str {
    if record.entry.is_static {
        "static"
    } else {
        "learned"
    }
}

fn format_stats(stats: &Stats) -> String {
    let mut ports: Vec<&PortStats> = stats.ports.iter().collect();
    ports.sort_by_key(|port| port.id);
    let mut out = port_counters_table(&ports);
    let drop_lines: Vec<String> = ports.iter().filter_map(|port| drops_line(port)).collect();
    if !drop_lines.is_empty() {
        out.push('\n');
        for line in drop_lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.push('\n');
    out.push_str(&fdb_stats_line(&stats.fdb));
    out.push('\n');
    out
}

fn port_counters_table(ports: &[&PortStats]) -> String {
    let mut table = Table::new(&[
        ("ID", Align::Right),
        ("NAME", Align::Left),
        ("RX_PKTS", Align::Right),
        ("RX_BYTES", Align::Right),
        ("TX_PKTS", Align::Right),
        ("TX_BYTES", Align::Right),
        ("DROPS", Align::Right),
    ]);
    for port in ports {
        let counters = &port.counters;
        let drops: u64 = counters.drops.values().sum();
        table.push(vec![
            port.id.to_string(),
            port.name.clone(),
            counters.rx_packets.to_string(),
            counters.rx_bytes.to_string(),
            counters.tx_packets.to_string(),
            counters.tx_bytes.to_string(),
            drops.to_string(),
        ]);
    }
    table.render()
}

/// `drops on port 1 (red/eth0): tagged_on_access 2, no_egress 1`, or `None` without drops.
fn drops_line(port: &PortStats) -> Option<String> {
    let reasons: Vec<String> = port
        .counters
        .drops
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(reason, count)| format!("{} {count}", reason.as_str()))
        .collect();
    if reasons.is_empty() {
        return None;
    }
    Some(format!(
        "drops on {}: {}",
        port_label(port.id, &port.name),
        reasons.join(", ")
    ))
}

fn fdb_stats_line(fdb: &FdbStats) -> String {
    let counters = &fdb.counters;
    let flapping = if counters.flapped > 0 {
        format!(
            ", flapping {} (learns held back {})",
            counters.flapped, counters.flap_held
        )
    } else {
        String::new()
    };
    format!(
        "fdb: {}/{} entries (at most {} learned per port, aging {}s); \
         learned {}, moved {}, aged {}, evicted {}, refused {}{flapping}",
        fdb.entries,
        fdb.max_entries,
        fdb.max_per_port,
        fdb.aging_secs,
        counters.learned,
        counters.moved,
        counters.aged,
        counters.evicted,
        counters.refused,
    )
}

fn format_port_set(port: &PortInfo) -> String {
    format!("{}: {}\n", port_label(port.id, &port.name), port.mode)
}

/// `added host port eth1: port 5, trunk 10,20`
fn format_port_added(port: &PortInfo) -> String {
    format!(
        "added {} port {}: port {}, {}\n",
        port.kind, port.name, port.id, port.mode
    )
}

fn format_port_removed(port: &PortInfo) -> String {
    format!("removed {}\n", port_label(port.id, &port.name))
}

/// `swctl vxlan show`: the VTEP, the map, the peers, overlay drops.
fn format_vxlan(info: &VxlanInfo) -> String {
    let map = if info.map.is_empty() {
        "none (map one with `swctl vxlan map --vlan N --vni V`)".to_string()
    } else {
        info.map
            .iter()
            .map(|m| format!("vlan {} = vni {}", m.vlan, m.vni))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let drops = if info.unattributed_drops.is_empty() {
        "none".to_string()
    } else {
        info.unattributed_drops
            .iter()
            .map(|(reason, n)| format!("{} {n}", reason.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format_fields(&[
        ("vtep", info.local.to_string()),
        ("map", map),
        ("peers", info.peers.len().to_string()),
        ("strangers", drops),
        (
            "icmp frag-needed sent",
            info.icmp_frag_needed_sent.to_string(),
        ),
        (
            "inner 802.1Q tags",
            if info.accept_inner_tagged {
                "accepted"
            } else {
                "dropped"
            }
            .to_string(),
        ),
    ]);
    if !info.peers.is_empty() {
        out.push('\n');
        out.push_str(&format_peers(&info.peers));
    }
    out
}

/// `swctl vxlan map` and `unmap`: one line of what changed.
fn format_mapped(vlan: VlanId, vni: Option<Vni>, info: &VxlanInfo) -> String {
    let mapped = match info.map.len() {
        1 => "1 VLAN".to_string(),
        n => format!("{n} VLANs"),
    };
    match vni {
        Some(vni) => format!(
            "mapped vlan {vlan} to vni {vni}: carried over the overlay from {} ({mapped} mapped)\n",
            info.local
        ),
        None => {
            format!("unmapped vlan {vlan}: no longer carried over the overlay ({mapped} mapped)\n")
        }
    }
}

fn format_peers(peers: &[PeerInfo]) -> String {
    let mut table = Table::new(&[
        ("PEER", Align::Left),
        ("NODE", Align::Left),
        ("PORT", Align::Right),
        ("PATH_MTU", Align::Right),
        ("INNER_MTU", Align::Right),
        ("RX_PKTS", Align::Right),
        ("TX_PKTS", Align::Right),
        ("DROPS", Align::Right),
    ]);
    for peer in peers {
        table.push(vec![
            peer.addr.to_string(),
            peer.node.clone().unwrap_or_else(|| "-".into()),
            peer.port.to_string(),
            peer.path_mtu.to_string(),
            peer.inner_mtu.to_string(),
            peer.counters.rx_packets.to_string(),
            peer.counters.tx_packets.to_string(),
            peer.counters.drops.values().sum::<u64>().to_string(),
        ]);
    }
    table.render()
}

fn format_peer_line(verb: &str, peer: &PeerInfo) -> String {
    format!(
        "{verb} peer {} (port {}, path MTU {}, inner MTU {})\n",
        peer.addr, peer.port, peer.path_mtu, peer.inner_mtu
    )
}

fn format_fdb_added(record: &FdbRecord) -> String {
    format!("added {}\n", describe_entry(record))
}

fn format_fdb_removed(record: &FdbRecord) -> String {
    format!("removed {}\n", describe_entry(record))
}

/// `static entry 02:42:0a:00:00:01 vlan 10 on port 3 (red/eth0)`.
fn describe_entry(record: &FdbRecord) -> String {
    let entry = &record.entry;
    format!(
        "{} entry {} vlan {} on {}",
        entry_kind(record),
        entry.mac,
        entry.vlan,
        port_label(entry.port, &record.port_name)
    )
}

fn format_flushed(flushed: &Flushed) -> String {
    let noun = if flushed.removed == 1 {
        "entry"
    } else {
        "entries"
    };
    format!("removed {} {noun}\n", flushed.removed)
}

/// `port 3 (red/eth0)`, or `port 3` for a port without a name.
fn port_label(id: PortId, name: &str) -> String {
    if name.is_empty() {
        format!("port {id}")
    } else {
        format!("port {id} ({name})")
    }
}

fn port_name_or_id(id: PortId, name: &str) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        name.to_string()
    }
}

/// A compact duration with its two largest units: `42s`, `4m05s`, `3h07m`, `2d04h`.
fn format_duration(secs: u64) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    match secs {
        s if s < MINUTE => format!("{s}s"),
        s if s < HOUR => format!("{}m{:02}s", s / MINUTE, s % MINUTE),
        s if s < DAY => format!("{}h{:02}m", s / HOUR, s % HOUR / MINUTE),
        s => format!("{}d{:02}h", s / DAY, s % DAY / HOUR),
    }
}

/// `key  value` lines with the values aligned.
fn format_fields(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .map(|(key, _)| key.chars().count())
        .max()
        .unwrap_or(0);
    fields
        .iter()
        .map(|(key, value)| format!("{}\n", pad(key, width, Align::Left) + "  " + value))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// A table of text cells, printed with a header row and columns two spaces apart.
struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(
            row.len(),
            self.columns.len(),
            "row width differs from header"
        );
        self.rows.push(row);
    }

    /// The header and every row, each line ending in a newline and without trailing blanks.
    fn render(&self) -> String {
        let header: Vec<&str> = self.columns.iter().map(|(title, _)| *title).collect();
        let widths = self.column_widths();
        let mut out = self.render_line(&header, &widths);
        for row in &self.rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            out.push_str(&self.render_line(&cells, &widths));
        }
        out
    }

    fn column_widths(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, (title, _))| {
                let widest_cell = self.rows.iter().map(|row| row[i].chars().count()).max();
                widest_cell.unwrap_or(0).max(title.chars().count())
            })
            .collect()
    }

    fn render_line(&self, cells: &[&str], widths: &[usize]) -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .zip(&self.columns)
            .map(|((cell, width), (_, align))| pad(cell, *width, *align))
            .collect();
        let mut line = padded.join("  ").trim_end().to_string();
        line.push('\n');
        line
    }
}

fn pad(text: &str, width: usize, align: Align) -> String {
    match align {
        Align::Left => format!("{text:<width$}"),
        Align::Right => format!("{text:>width$}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::error::ErrorKind;
    use clap::CommandFactory;
    use switchyard::fdb::{FdbCounters, FdbEntry};
    use switchyard::forward::PortCounters;
    use switchyard::DropReason;

    use super::*;

    fn vlan(id: u16) -> VlanId {
        VlanId::new(id).unwrap()
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("swctl").chain(args.iter().copied()))
            .unwrap_or_else(|err| panic!("{args:?} did not parse: {err}"))
    }

    fn parse_error(args: &[&str]) -> ErrorKind {
        match Cli::try_parse_from(std::iter::once("swctl").chain(args.iter().copied())) {
            Ok(cli) => panic!("{args:?} parsed as {cli:?}"),
            Err(err) => err.kind(),
        }
    }

    fn strings(cells: &[&str]) -> Vec<String> {
        cells.iter().map(ToString::to_string).collect()
    }

    fn request(args: &[&str]) -> Request {
        parse(args)
            .command
            .to_request()
            .unwrap_or_else(|| panic!("{args:?} sends no single request"))
    }

    // --- arguments ---------------------------------------------------------------------

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn socket_and_json_are_accepted_before_the_subcommand() {
        let cli = parse(&["--socket", "/tmp/a.sock", "--json", "port", "ls"]);
        assert_eq!(cli.socket, PathBuf::from("/tmp/a.sock"));
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Port(PortCommand::Ls)));
    }

    #[test]
    fn socket_and_json_are_accepted_after_the_subcommand() {
        let cli = parse(&["port", "ls", "--socket", "/tmp/b.sock", "--json"]);
        assert_eq!(cli.socket, PathBuf::from("/tmp/b.sock"));
        assert!(cli.json);
        let cli = parse(&["fdb", "--socket=/tmp/c.sock", "show"]);
        assert_eq!(cli.socket, PathBuf::from("/tmp/c.sock"));
        assert!(!cli.json);
    }

    #[test]
    fn socket_defaults_to_the_daemon_path_and_reads_the_environment() {
        let command = Cli::command();
        let socket = command
            .get_arguments()
            .find(|arg| arg.get_id() == "socket")
            .expect("a --socket argument");
        assert_eq!(socket.get_env(), Some(std::ffi::OsStr::new(SOCKET_ENV)));
        assert_eq!(socket.get_default_values(), [DEFAULT_SOCKET]);
    }

    #[test]
    fn simple_commands_map_to_their_requests() {
        assert_eq!(request(&["status"]), Request::Status);
        assert_eq!(request(&["stats"]), Request::Stats);
        assert_eq!(request(&["port", "ls"]), Request::PortList);
        assert_eq!(
            request(&["port", "del", "red/eth0"]),
            Request::PortDel {
                port: "red/eth0".into()
            }
        );
    }

    #[test]
    fn port_add_takes_an_interface_its_namespace_and_a_mode() {
        assert_eq!(
            request(&["port", "add", "eth1", "--trunk", "10,20", "--native", "1"]),
            Request::PortAdd(PortAddRequest {
                ifname: "eth1".into(),
                mode: Some(PortMode::Trunk {
                    allowed: "10,20".parse().unwrap(),
                    native: Some(vlan(1)),
                }),
                ..PortAddRequest::default()
            })
        );
        assert_eq!(
            request(&["port", "add", "--internal", "host0", "--vlan", "10"]),
            Request::PortAdd(PortAddRequest {
                ifname: "host0".into(),
                internal: true,
                mode: Some(PortMode::Access { vlan: vlan(10) }),
                ..PortAddRequest::default()
            })
        );
        let Request::PortAdd(named) = request(&["port", "add", "veth0", "--netns", "lan"]) else {
            panic!("a port add")
        };
        assert_eq!(named.netns, Some(PathBuf::from("/run/netns/lan")));
        assert_eq!(named.mode, None, "switchd's default: access on VLAN 1");
        let Request::PortAdd(path) =
            request(&["port", "add", "veth0", "--netns", "/proc/42/ns/net"])
        else {
            panic!("a port add")
        };
        assert_eq!(path.netns, Some(PathBuf::from("/proc/42/ns/net")));
        for bad in [
            &["port", "add", "x", "--internal", "--netns", "lan"][..],
            &["port", "add", "x", "--vlan", "1", "--trunk", "2"],
            &["port", "add", "x", "--native", "2"],
            &["port", "add"],
        ] {
            let _ = parse_error(bad);
        }
        let port = PortInfo {
            kind: switchyard::controller::state::SavedPortKind::Host,
            name: "eth1".into(),
            id: PortId(5),
            mode: PortMode::Trunk {
                allowed: "10,20".parse().unwrap(),
                native: None,
            },
            ..red_access()
        };
        assert_eq!(
            format_port_added(&port),
            "added host port eth1: port 5, trunk 10,20\n"
        );
    }

    #[test]
    fn network_create_takes_a_lan_parent() {
        let Request::NetworkCreate(config) = request(&[
            "network",
            "create",
            "lan",
            "--parent",
            "eth1",
            "--vlan",
            "10",
            "--subnet",
            "192.168.0.0/24",
            "--gateway",
            "192.168.0.1",
            "--ip-range",
            "192.168.0.128/25",
            "--aux-address",
            "192.168.0.128",
            "--aux-address",
            "192.168.0.129",
        ]) else {
            panic!("a network create")
        };
        assert_eq!(config.parent.as_deref(), Some("eth1"));
        assert_eq!(config.vlan, Some(vlan(10)));
        assert_eq!(config.aux_addresses.len(), 2);
        for bad in [
            &[
                "network",
                "create",
                "lan",
                "--parent",
                "eth1",
                "--subnet",
                "10.0.0.0/24",
            ][..],
            &["network", "create", "lan", "--vlan", "10"],
            &[
                "network",
                "create",
                "lan",
                "--parent",
                "eth1",
                "--subnet",
                "10.0.0.0/24",
                "--gateway",
                "10.0.0.1",
                "--masquerade",
            ],
        ] {
            let _ = parse_error(bad);
        }
    }

    #[test]
    fn port_set_builds_access_and_trunk_modes() {
        assert_eq!(
            request(&["port", "set", "3", "--vlan", "10"]),
            Request::PortSet {
                port: "3".into(),
                mode: Some(PortMode::Access { vlan: vlan(10) }),
                port_security: None,
                storm_limit_pps: None,
            }
        );
        assert_eq!(
            request(&[
                "port",
                "set",
                "3",
                "--port-security",
                "off",
                "--storm-limit-pps",
                "0"
            ]),
            Request::PortSet {
                port: "3".into(),
                mode: None,
                port_security: Some(false),
                storm_limit_pps: Some(0),
            }
        );
        assert_eq!(
            request(&["port", "set", "red/eth0", "--trunk", "10,20-22", "--native", "30"]),
            Request::PortSet {
                port: "red/eth0".into(),
                mode: Some(PortMode::Trunk {
                    allowed: "10,20,21,22".parse().unwrap(),
                    native: Some(vlan(30)),
                }),
                port_security: None,
                storm_limit_pps: None,
            }
        );
        assert_eq!(
            request(&["port", "set", "red/eth0", "--trunk", "5"]),
            Request::PortSet {
                port: "red/eth0".into(),
                mode: Some(PortMode::Trunk {
                    allowed: "5".parse().unwrap(),
                    native: None,
                }),
                port_security: None,
                storm_limit_pps: None,
            }
        );
    }

    #[test]
    fn port_set_needs_exactly_one_mode() {
        assert_eq!(
            parse_error(&["port", "set", "1", "--vlan", "10", "--trunk", "20"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            parse_error(&["port", "set", "1"]),
            ErrorKind::MissingRequiredArgument
        );
        // --native only makes sense on a trunk.
        assert_eq!(
            parse_error(&["port", "set", "1", "--vlan", "10", "--native", "20"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            parse_error(&["port", "set", "1", "--native", "20"]),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn vlans_and_macs_are_validated_by_their_parsers() {
        assert_eq!(
            parse_error(&["port", "set", "1", "--vlan", "4095"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse_error(&["port", "set", "1", "--trunk", "20-10"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse_error(&["fdb", "add", "02:42:0a:00:00", "--vlan", "1", "--port", "1"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse_error(&["fdb", "show", "--vlan", "0"]),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn fdb_commands_map_to_their_requests() {
        let mac: MacAddr = "02:42:0a:00:00:01".parse().unwrap();
        assert_eq!(
            request(&["fdb", "show"]),
            Request::FdbShow {
                vlan: None,
                port: None
            }
        );
        assert_eq!(
            request(&["fdb", "show", "--vlan", "10", "--port", "red/eth0"]),
            Request::FdbShow {
                vlan: Some(vlan(10)),
                port: Some("red/eth0".into())
            }
        );
        assert_eq!(
            request(&[
                "fdb",
                "add",
                "02:42:0A:00:00:01",
                "--vlan",
                "10",
                "--port",
                "2"
            ]),
            Request::FdbAdd {
                mac,
                vlan: vlan(10),
                port: Some("2".into()),
                vtep: None,
            }
        );
        assert_eq!(
            request(&[
                "fdb",
                "add",
                "02:42:0a:00:00:01",
                "--vlan",
                "10",
                "--vtep",
                "192.0.2.2"
            ]),
            Request::FdbAdd {
                mac,
                vlan: vlan(10),
                port: None,
                vtep: Some("192.0.2.2".parse().unwrap()),
            }
        );
        assert_eq!(
            request(&["fdb", "del", "02-42-0a-00-00-01", "--vlan", "10"]),
            Request::FdbDel {
                mac,
                vlan: vlan(10)
            }
        );
        assert_eq!(
            request(&["fdb", "flush"]),
            Request::FdbFlush {
                vlan: None,
                port: None,
                include_static: false
            }
        );
        assert_eq!(
            request(&[
                "fdb",
                "flush",
                "--static",
                "--vlan",
                "10",
                "--port",
                "blue/eth1"
            ]),
            Request::FdbFlush {
                vlan: Some(vlan(10)),
                port: Some("blue/eth1".into()),
                include_static: true
            }
        );
    }

    #[test]
    fn fdb_add_and_del_need_vlan_and_port() {
        let mac = "02:42:0a:00:00:01";
        assert_eq!(
            parse_error(&["fdb", "add", mac, "--vlan", "10"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse_error(&["fdb", "del", mac]),
            ErrorKind::MissingRequiredArgument
        );
    }

    // --- tables ------------------------------------------------------------------------

    #[test]
    fn table_aligns_columns_and_trims_line_ends() {
        let mut table = Table::new(&[
            ("ID", Align::Right),
            ("NAME", Align::Left),
            ("N", Align::Right),
        ]);
        table.push(strings(&["7", "a", "1000"]));
        table.push(strings(&["12", "longer-name", "5"]));
        assert_eq!(
            table.render(),
            "ID  NAME            N\n \
             7  a            1000\n\
             12  longer-name     5\n"
        );
    }

    #[test]
    fn table_left_aligned_last_column_has_no_trailing_blanks() {
        let mut table = Table::new(&[("A", Align::Left), ("STATE", Align::Left)]);
        table.push(strings(&["x", "up"]));
        assert_eq!(table.render(), "A  STATE\nx  up\n");
    }

    #[test]
    fn empty_table_is_just_its_header() {
        let table = Table::new(&[("ID", Align::Right), ("NAME", Align::Left)]);
        assert_eq!(table.render(), "ID  NAME\n");
        assert_eq!(
            format_ports(&[]),
            "ID  NAME  NETNS  IFNAME  KIND  MODE  VLANS  STATE\n"
        );
        assert_eq!(format_fdb(&[]), "VLAN  MAC  PORT  TYPE  AGE\n");
    }

    #[test]
    fn durations_keep_two_units() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(59), "59s");
        assert_eq!(format_duration(65), "1m05s");
        assert_eq!(format_duration(3600 + 7 * 60 + 9), "1h07m");
        assert_eq!(format_duration(2 * 86400 + 4 * 3600 + 5), "2d04h");
    }

    // --- replies -----------------------------------------------------------------------

    fn red_access() -> PortInfo {
        PortInfo {
            id: PortId(1),
            name: "red/eth0".into(),
            netns: "/run/netns/red".into(),
            ifname: "eth0".into(),
            ifindex: 7,
            mode: PortMode::Access { vlan: vlan(10) },
            state: "up".into(),
            mac: None,
            port_security: true,
            storm_limit_pps: Some(2000),
            kind: Default::default(),
        }
    }

    fn blue_trunk() -> PortInfo {
        PortInfo {
            id: PortId(3),
            name: "blue/eth1".into(),
            netns: "/proc/4242/ns/net".into(),
            ifname: "eth1".into(),
            ifindex: 9,
            mode: PortMode::Trunk {
                allowed: "10,20".parse().unwrap(),
                native: Some(vlan(30)),
            },
            state: "down: no carrier".into(),
            mac: None,
            port_security: false,
            storm_limit_pps: None,
            kind: Default::default(),
        }
    }

    #[test]
    fn port_list_is_a_table_sorted_by_id() {
        assert_eq!(
            format_ports(&[blue_trunk(), red_access()]),
            "\
ID  NAME       NETNS              IFNAME  KIND  MODE    VLANS            STATE
 1  red/eth0   /run/netns/red     eth0    tap   access  10               up
 3  blue/eth1  /proc/4242/ns/net  eth1    tap   trunk   10,20 native 30  down: no carrier
"
        );
    }

    #[test]
    fn trunk_without_vlans_shows_a_dash() {
        let mode = PortMode::Trunk {
            allowed: VlanSet::new(),
            native: None,
        };
        assert_eq!(mode_vlans(&mode), "-");
    }

    fn record(
        vlan_id: u16,
        mac: &str,
        port: u32,
        name: &str,
        is_static: bool,
        age_secs: u64,
    ) -> FdbRecord {
        FdbRecord {
            entry: FdbEntry {
                vlan: vlan(vlan_id),
                mac: mac.parse().unwrap(),
                port: PortId(port),
                is_static,
                age_secs,
            },
            port_name: name.into(),
            vtep: None,
        }
    }

    #[test]
    fn fdb_is_sorted_by_vlan_then_mac() {
        let records = [
            record(20, "02:00:00:00:00:01", 3, "blue/eth1", false, 75),
            record(10, "02:00:00:00:00:0b", 1, "red/eth0", false, 4),
            record(10, "02:00:00:00:00:0a", 3, "blue/eth1", true, 0),
            record(100, "02:00:00:00:00:02", 5, "", false, 7300),
        ];
        assert_eq!(
            format_fdb(&records),
            "\
VLAN  MAC                PORT       TYPE       AGE
  10  02:00:00:00:00:0a  blue/eth1  static       -
  10  02:00:00:00:00:0b  red/eth0   learned     4s
  20  02:00:00:00:00:01  blue/eth1  learned  1m15s
 100  02:00:00:00:00:02  5          learned  2h01m
"
        );
    }

    fn port_stats(id: u32, name: &str, drops: &[(DropReason, u64)]) -> PortStats {
        PortStats {
            id: PortId(id),
            name: name.into(),
            counters: PortCounters {
                rx_packets: u64::from(id) * 10,
                rx_bytes: u64::from(id) * 1500,
                tx_packets: u64::from(id) * 9,
                tx_bytes: u64::from(id) * 1400,
                drops: drops.iter().copied().collect::<BTreeMap<_, _>>(),
            },
        }
    }

    fn fdb_stats() -> FdbStats {
        FdbStats {
            entries: 12,
            max_entries: 131072,
            max_per_port: 65536,
            aging_secs: 300,
            counters: FdbCounters {
                learned: 40,
                moved: 1,
                aged: 20,
                evicted: 0,
                refused: 2,
                ..FdbCounters::default()
            },
        }
    }

    #[test]
    fn vxlan_commands_map_to_their_requests() {
        assert_eq!(
            request(&["vxlan", "map", "--vlan", "10", "--vni", "42"]),
            Request::VxlanMap {
                vlan: vlan(10),
                vni: Vni::new(42).unwrap()
            }
        );
        assert_eq!(
            request(&["vxlan", "unmap", "--vlan", "10"]),
            Request::VxlanUnmap { vlan: vlan(10) }
        );
        assert_eq!(
            request(&["vxlan", "peer", "add", "192.0.2.2"]),
            Request::PeerAdd {
                addr: "192.0.2.2".into()
            }
        );
        assert_eq!(request(&["vxlan", "peer", "ls"]), Request::PeerList);
        assert_eq!(request(&["vxlan", "show"]), Request::VxlanShow);
        assert_eq!(
            request(&["vxlan", "enable", "--vtep", "192.0.2.1:8472"]),
            Request::VxlanEnable {
                vtep: "192.0.2.1:8472".into()
            }
        );
        assert_eq!(
            parse_error(&["vxlan", "map", "--vlan", "10", "--vni", "16777216"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse_error(&[
                "fdb",
                "add",
                "02:42:0a:00:00:01",
                "--vlan",
                "10",
                "--port",
                "1",
                "--vtep",
                "192.0.2.2"
            ]),
            ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn stats_show_ports_then_drop_reasons_then_fdb() {
        let stats = Stats {
            unattributed_drops: Default::default(),
            ports: vec![
                port_stats(
                    3,
                    "blue/eth1",
                    &[(DropReason::TaggedOnAccess, 2), (DropReason::NoEgress, 1)],
                ),
                port_stats(1, "red/eth0", &[]),
            ],
            fdb: fdb_stats(),
        };
        assert_eq!(
            format_stats(&stats),
            "\
ID  NAME       RX_PKTS  RX_BYTES  TX_PKTS  TX_BYTES  DROPS
 1  red/eth0        10      1500        9      1400      0
 3  blue/eth1       30      4500       27      4200      3

drops on port 3 (blue/eth1): tagged_on_access 2, no_egress 1

fdb: 12/131072 entries (at most 65536 learned per port, aging 300s); learned 40, moved 1, aged 20, evicted 0, refused 2
"
        );
    }

    #[test]
    fn stats_without_ports_or_drops_skip_the_drop_section() {
        let stats = Stats {
            unattributed_drops: Default::default(),
            ports: vec![],
            fdb: fdb_stats(),
        };
        let text = format_stats(&stats);
        assert!(
            text.starts_with(
                "ID  NAME  RX_PKTS  RX_BYTES  TX_PKTS  TX_BYTES  DROPS\n\nfdb: 12/131072"
            ),
            "{text}"
        );
        assert!(!text.contains("drops on"));
    }

    #[test]
    fn status_is_aligned_fields() {
        let status = Status {
            version: "0.1.0".into(),
            pid: 4242,
            uptime_secs: 3725,
            ports: 2,
            state_dir: "/var/lib/switchyard".into(),
            dns: true,
            cluster_node: None,
        };
        assert_eq!(
            format_status(&status),
            "\
version    0.1.0
pid        4242
uptime     1h02m
ports      2
state dir  /var/lib/switchyard
dns        on
"
        );
    }

    #[test]
    fn write_commands_print_one_line() {
        assert_eq!(
            format_port_set(&blue_trunk()),
            "port 3 (blue/eth1): trunk 10,20 native 30\n"
        );
        assert_eq!(
            format_port_set(&red_access()),
            "port 1 (red/eth0): access vlan 10\n"
        );
        assert_eq!(
            format_port_removed(&red_access()),
            "removed port 1 (red/eth0)\n"
        );
        let added = record(10, "02:42:0a:00:00:01", 3, "blue/eth1", true, 0);
        assert_eq!(
            format_fdb_added(&added),
            "added static entry 02:42:0a:00:00:01 vlan 10 on port 3 (blue/eth1)\n"
        );
        let removed = record(20, "02:42:0a:00:00:02", 1, "red/eth0", false, 12);
        assert_eq!(
            format_fdb_removed(&removed),
            "removed learned entry 02:42:0a:00:00:02 vlan 20 on port 1 (red/eth0)\n"
        );
        assert_eq!(
            format_flushed(&Flushed { removed: 4 }),
            "removed 4 entries\n"
        );
        assert_eq!(format_flushed(&Flushed { removed: 1 }), "removed 1 entry\n");
        assert_eq!(
            format_flushed(&Flushed { removed: 0 }),
            "removed 0 entries\n"
        );
    }

    #[test]
    fn vxlan_map_and_unmap_print_what_changed() {
        let mut info = VxlanInfo {
            local: "192.0.2.1:4789".parse().unwrap(),
            map: vec![switchyard::control::VniMapping {
                vlan: vlan(10),
                vni: Vni::new(42).unwrap(),
            }],
            peers: vec![],
            unattributed_drops: BTreeMap::new(),
            icmp_frag_needed_sent: 0,
            accept_inner_tagged: false,
        };
        assert_eq!(
            format_mapped(vlan(10), Some(Vni::new(42).unwrap()), &info),
            "mapped vlan 10 to vni 42: carried over the overlay from 192.0.2.1:4789 (1 VLAN mapped)\n"
        );
        info.map.clear();
        assert_eq!(
            format_mapped(vlan(10), None, &info),
            "unmapped vlan 10: no longer carried over the overlay (0 VLANs mapped)\n"
        );
    }

    #[test]
    fn usage_lines_do_not_show_the_optional_socket() {
        fn check(command: &mut clap::Command) {
            let usage = command.render_usage().to_string();
            assert!(!usage.contains("--socket"), "{usage}");
            for sub in command.get_subcommands_mut() {
                check(sub);
            }
        }
        let mut command = Cli::command();
        command.build();
        check(&mut command);
    }

    #[test]
    fn show_takes_a_format_and_json_anywhere() {
        let cli = parse(&["show", "--format", "dot"]);
        assert!(matches!(
            cli.command,
            Command::Show(ShowArgs {
                format: Some(ShowFormat::Dot)
            })
        ));
        // show, capture and trace build their requests themselves; completion has none.
        for args in [
            &["show"][..],
            &["capture", "1"],
            &["trace", "--in-port", "1", "--frame", "00"],
            &["completion", "bash"],
        ] {
            assert_eq!(parse(args).command.to_request(), None, "{args:?}");
        }
        let cli = parse(&["show", "--json"]);
        assert!(cli.json);
        assert_eq!(
            parse_error(&["show", "--format", "svg"]),
            ErrorKind::InvalidValue
        );
    }

    #[test]
    fn json_is_the_reply_pretty_printed() {
        let text = format_json(&Flushed { removed: 4 }).unwrap();
        assert_eq!(text, "{\n  \"removed\": 4\n}\n");
        let ports = vec![red_access()];
        let text = format_json(&ports).unwrap();
        let back: Vec<PortInfo> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ports);
    }

    #[test]
    fn errors_print_on_one_line() {
        let err = anyhow::anyhow!("no such port: 9\n  try `swctl port ls`\n");
        assert_eq!(one_line(&err), "no such port: 9 try `swctl port ls`");
    }
}
