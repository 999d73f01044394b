//! switchd: the switchyard switch process.
//!
//! Reads Ethernet frames from TAP devices living in container network namespaces, runs
//! them through the core's datapath (`switchyard::datapath`), and writes out what it
//! asks for; control requests go to the core's controller (`switchyard::controller`),
//! whose side effects this binary carries out.
//! Runs in the foreground and logs to stderr; controlled over a Unix socket (see
//! `switchyard::control`). Layers, from the outside in:
//!
//! * `main` — flags, the optional TOML config file, logging.
//! * `daemon` — the control thread's `mio` loop: control connections, signals, FDB aging,
//!   ports' lives.
//! * `dataplane` — the forwarding threads (one per TAP port, per VXLAN socket, and the
//!   uplink): thin drivers of the datapath's `Worker`.
//! * `conn` — one control connection, with bounds against misbehaving clients.
//! * `ctl` — control requests: decoded, handed to the core's controller, answered.
//! * `system` — the controller's effects on this machine: TAPs and their threads,
//!   namespaces, the uplink and routes, NAT, path MTU probes, the state directory.
//! * `state` — the state directory: the controller's saved state, written atomically.
//! * `uplink` — the TUN joining the networks' router to this namespace's routing.
//! * `vtep` — the underlay's UDP sockets: GSO sends, GRO receives, path MTU probes.
//!
//! TAPs, namespaces, rtnetlink, nftables and the ioctls are the OS layer's
//! (`switchyard-os`), shared with nsutil and the CNI plugin.

#![forbid(unsafe_code)]

mod capture;
mod cluster;
mod conn;
mod ctl;
mod daemon;
mod dataplane;
mod links;
mod logs;
mod metrics;
mod notify;
mod state;
mod system;
mod uplink;
mod vtep;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::builder::RangedU64ValueParser;
use clap::Parser;
use serde::Deserialize;
use switchyard::control::{parse_on_off, DEFAULT_SOCKET, SOCKET_ENV};
use switchyard::fdb::FdbConfig;
use switchyard::port::StormLimit;

const DEFAULT_STATE_DIR: &str = "/var/lib/switchyard";
/// Measured on the benchmark machine (docs/benchmarks.md): 15-20 µs was best for TCP
/// through the switch; 100 µs took CPU the containers needed.
const DEFAULT_BUSY_POLL_US: u64 = 20;
const MAX_BUSY_POLL_US: u64 = 10_000;
/// Refreshes are recorded once a second, so a shorter aging time would forget busy MACs
/// between refreshes.
const MIN_FDB_AGING_SECS: u64 = 2;

/// Bad usage found after clap's parse: flags that do not go together. switchd exits 2
/// for it, as for clap's own errors; every other error exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

// The flags' value parsers: clap reports their errors as bad usage (exit 2), as
// `invalid value 'TEXT' for '--FLAG <VALUE>': <the message>`, so the messages do not
// repeat the flag. The config file's values are checked in Config::resolve (exit 1).

/// `--metrics`: as the config file's `metrics` (metrics::parse_addr).
fn metrics_flag(text: &str) -> Result<SocketAddr, String> {
    metrics::parse_addr(text).map_err(|err| without_flag(&err.to_string(), "--metrics", text))
}

/// `--log`: a filter check_log_filter accepts, as tracing wants it.
fn log_filter_flag(text: &str) -> Result<String, String> {
    check_log_filter(text).map_err(|err| {
        let message = err.to_string();
        let prefix = format!("invalid log filter {text:?}: ");
        message
            .strip_prefix(&prefix)
            .unwrap_or(&message)
            .to_string()
    })
}

/// `--uplink`: an interface name the kernel takes.
fn uplink_flag(text: &str) -> Result<String, String> {
    switchyard_os::rtnl::validate_ifname(text)
        .map(|()| text.to_string())
        .map_err(|err| err.to_string())
}

/// `--cluster-store`: etcd://HOST:PORT[,HOST:PORT...] (cluster::parse_store_url).
fn store_url_flag(text: &str) -> Result<String, String> {
    cluster::parse_store_url(text)
        .map(|_| text.to_string())
        .map_err(|err| without_flag(&err, "--cluster-store", text))
}

/// `--cluster-advertise`: a unicast IP other nodes can reach.
fn advertise_flag(text: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = text
        .parse()
        .map_err(|_| "give this node's underlay IP, such as 192.0.2.1".to_string())?;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
        return Err(
            "other nodes must reach it; give this node's underlay unicast address".to_string(),
        );
    }
    Ok(ip)
}

/// `--node`: a name the cluster's keys take.
fn node_flag(text: &str) -> Result<String, String> {
    switchyard::cluster::keys::validate_name(text).map(|()| text.to_string())
}

/// `message` without a leading `invalid FLAG "TEXT": `, which clap's own words say.
fn without_flag(message: &str, flag: &str, text: &str) -> String {
    let prefix = format!("invalid {flag} {text:?}: ");
    message.strip_prefix(&prefix).unwrap_or(message).to_string()
}

/// The switchyard switch daemon: MAC learning, VLANs and TAP ports for containers.
// The doc comment above is the help's about text (not the crate's description).
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Exit status: 0 stopped by SIGTERM or SIGINT; 1 failed to start or run (the error is one\n\
                  line on stderr: `switchd: what failed: why; what to do`); 2 bad usage."
)]
struct Args {
    /// TOML file with any of: socket, socket_group, state_dir, log, log_format, metrics, uplink, busy_poll_us, storm_limit_pps, [fdb] aging_secs, max_entries,
    /// max_per_port, [vxlan] vtep, udp_checksum, accept_inner_tagged. Flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Control socket path, as the clients take it [default: /run/switchyard/switchd.sock]
    #[arg(long, value_name = "PATH", env = SOCKET_ENV)]
    socket: Option<PathBuf>,
    /// Let this group's members use the control socket too (mode 0660, owned by the
    /// group) [default: none, only root (mode 0600)]
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// Where ports and static FDB entries are kept [default: /var/lib/switchyard]
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Seconds before an idle learned MAC is forgotten, at least 2 [default: 300]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(MIN_FDB_AGING_SECS..))]
    fdb_aging: Option<u64>,
    /// MAC table size, static entries included [default: 131072]
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    fdb_max_entries: Option<usize>,
    /// Learned MACs per port [default: 65536]
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    fdb_max_per_port: Option<usize>,
    /// Log filter: a level (error, warn, info, debug, trace, off), or tracing directives
    /// whose levels are among those, such as `switchd=debug,warn` [default: info]
    #[arg(long, value_name = "FILTER", value_parser = log_filter_flag)]
    log: Option<String>,
    /// How log lines are written: text, or one JSON object per line [default: text]
    #[arg(long, value_name = "text|json")]
    log_format: Option<logs::LogFormat>,
    /// Serve Prometheus metrics over HTTP at http://ADDR:PORT/metrics, such as
    /// 127.0.0.1:9469 [default: none, no metrics]
    #[arg(long, value_name = "ADDR:PORT", value_parser = metrics_flag)]
    metrics: Option<SocketAddr>,
    /// Be a VXLAN tunnel endpoint on this underlay address: IP or IP:PORT
    /// (port 4789 by default; 8472 is the Linux legacy port)
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = switchyard::control::parse_vtep)]
    vtep: Option<SocketAddr>,
    /// Outer UDP checksums on IPv4 (always on for IPv6) [default: on]
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    vxlan_udp_checksum: Option<bool>,
    /// Accept decapsulated frames that carry their own 802.1Q tag (RFC 7348 §6.1
    /// says to drop them, which is the default)
    #[arg(long)]
    vxlan_accept_inner_tagged: bool,
    /// Name of the TUN device that joins the networks' router to this namespace's
    /// routing, made when the first network that is not --internal is
    /// [default: switchyard0]
    #[arg(long, value_name = "IFNAME", value_parser = uplink_flag)]
    uplink: Option<String>,
    /// Microseconds a forwarding thread keeps reading after its TAP or socket ran dry
    /// before it sleeps again (0: sleep at once). Trades a little CPU under load for
    /// fewer wake-ups; an idle switch never spins [default: 20]
    #[arg(long, value_name = "USECS", value_parser = clap::value_parser!(u64).range(..=MAX_BUSY_POLL_US))]
    busy_poll_us: Option<u64>,
    /// Storm control: broadcast, multicast and unknown-unicast frames per second each
    /// port may flood (burst: twice that), unless the port has a limit of its own
    /// (`swctl port set --storm-limit-pps`); 0 for no limit [default: 2000]
    #[arg(long, value_name = "PPS")]
    storm_limit_pps: Option<u32>,
    /// The embedded DNS on every gateway's UDP port 53: containers' names, the rest
    /// forwarded upstream [default: on]
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    dns: Option<bool>,
    /// An upstream resolver for names that are not containers' (IP or IP:PORT; up to
    /// three, in order) [default: the nameservers of /etc/resolv.conf]
    #[arg(long, value_name = "IP", value_parser = parse_upstream)]
    dns_upstream: Vec<SocketAddr>,
    /// DNS queries a second each source address may send (bursts: twice that); 0 for no
    /// limit [default: 500]
    #[arg(long, value_name = "QPS")]
    dns_rate_limit: Option<u32>,
    /// Join a cluster through this etcd (v3): global networks, cluster-wide IPAM,
    /// tunnel peers and endpoints shared by every node (needs --vtep)
    #[arg(long, value_name = "etcd://HOST:PORT[,HOST:PORT...]", value_parser = store_url_flag)]
    cluster_store: Option<String>,
    /// The address other nodes send VXLAN to [default: the --vtep address]
    #[arg(long, value_name = "IP", value_parser = advertise_flag)]
    cluster_advertise: Option<IpAddr>,
    /// This node's name in the cluster [default: the hostname]
    #[arg(long, value_name = "NAME", value_parser = node_flag)]
    node: Option<String>,
    /// CA certificate (PEM) the etcd servers' certificates are checked against; turns
    /// on TLS
    #[arg(long, value_name = "FILE")]
    cluster_store_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd, with --cluster-store-key
    #[arg(long, value_name = "FILE")]
    cluster_store_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM)
    #[arg(long, value_name = "FILE")]
    cluster_store_key: Option<PathBuf>,
}

/// The cluster flags, checked against the VTEP.
fn cluster_options(
    args: &Args,
    vtep: Option<SocketAddr>,
) -> Result<Option<cluster::ClusterOptions>> {
    let Some(url) = &args.cluster_store else {
        if args.cluster_advertise.is_some()
            || args.node.is_some()
            || args.cluster_store_ca.is_some()
            || args.cluster_store_cert.is_some()
            || args.cluster_store_key.is_some()
        {
            anyhow::bail!(Usage("--cluster-advertise, --node and --cluster-store-ca/-cert/-key go with --cluster-store etcd://HOST:PORT".into()));
        }
        return Ok(None);
    };
    let endpoints = cluster::parse_store_url(url).map_err(anyhow::Error::msg)?;
    let Some(vtep) = vtep else {
        anyhow::bail!(Usage("--cluster-store needs --vtep ADDR (or [vxlan] vtep in the config file): the cluster's networks travel over the VXLAN overlay".into()));
    };
    let advertise = match args.cluster_advertise {
        Some(ip) => SocketAddr::new(ip, vtep.port()),
        None if vtep.ip().is_unspecified() => anyhow::bail!(
            "--vtep {vtep} listens on every address: give --cluster-advertise IP, the one other nodes reach"
        ),
        None => vtep,
    };
    let node = match &args.node {
        Some(node) => node.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_string())
            .context("cannot read the hostname for the node's name: give --node NAME")?,
    };
    // A flag's value is clap's to check (node_flag); the hostname is checked here.
    switchyard::cluster::keys::validate_name(&node).map_err(|err| {
        anyhow::anyhow!("invalid node name {node:?} (the hostname): {err}; give --node NAME")
    })?;
    let tls = cluster::TlsFiles {
        ca: args.cluster_store_ca.clone(),
        cert: args.cluster_store_cert.clone(),
        key: args.cluster_store_key.clone(),
    };
    if tls.cert.is_some() != tls.key.is_some() {
        anyhow::bail!(Usage(
            "--cluster-store-cert and --cluster-store-key go together".into()
        ));
    }
    for (flag, path) in [
        ("--cluster-store-ca", &tls.ca),
        ("--cluster-store-cert", &tls.cert),
        ("--cluster-store-key", &tls.key),
    ] {
        if let Some(path) = path {
            std::fs::metadata(path)
                .with_context(|| format!("cannot read {flag} {}", path.display()))?;
        }
    }
    Ok(Some(cluster::ClusterOptions {
        url: url.clone(),
        endpoints,
        node,
        advertise,
        tls,
    }))
}

/// The most upstream resolvers (as resolv.conf's MAXNS).
const MAX_DNS_UPSTREAMS: usize = 3;

/// `IP`, `IP:PORT` or `[IPv6]:PORT`, with `default_port` when none is given.
fn socket_addr(text: &str, default_port: u16) -> Option<SocketAddr> {
    text.parse().ok().or_else(|| {
        text.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, default_port))
    })
}

/// `--dns-upstream`: `IP` or `IP:PORT` (port 53 by default).
fn parse_upstream(text: &str) -> Result<SocketAddr, String> {
    socket_addr(text, 53)
        .ok_or_else(|| "give an address such as 192.0.2.53 or 192.0.2.53:5353".to_string())
}

/// The IPv4 `nameserver`s of a resolv.conf (switchd asks upstreams over IPv4).
fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<std::net::Ipv4Addr>().ok())
        .map(|ip| SocketAddr::new(IpAddr::V4(ip), 53))
        .take(MAX_DNS_UPSTREAMS)
        .collect()
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT`; the port defaults to the IANA VXLAN port (as
/// `swctl vxlan enable --vtep` takes it).
fn parse_vtep(text: &str) -> Result<SocketAddr> {
    switchyard::control::parse_vtep(text).map_err(|err| anyhow::anyhow!("--vtep: {err}"))
}

/// The group named `name` (or a numeric gid), for `--socket-group`.
fn resolve_group(name: &str) -> Result<daemon::SocketGroup> {
    let found = nix::unistd::Group::from_name(name)
        .with_context(|| format!("cannot look up the group {name:?} for --socket-group"))?;
    let group = match found {
        Some(group) => Some(group),
        None => match name.parse::<u32>() {
            Ok(gid) => nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
                .with_context(|| format!("cannot look up the group {name:?} for --socket-group"))?,
            Err(_) => None,
        },
    };
    match group {
        Some(group) => Ok(daemon::SocketGroup {
            name: group.name,
            gid: group.gid,
        }),
        None => anyhow::bail!(
            "unknown group {name:?} for --socket-group: name an existing group (see getent group), or create it first (groupadd {name})"
        ),
    }
}

/// The levels a log filter may name.
const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// Checks a log filter: comma-separated directives, each a level or `TARGET=LEVEL`
/// (`TARGET` may carry a `[span{field=value}]` part), every level one of
/// [`LOG_LEVELS`]. tracing's own parser takes an unknown word for a target, so a typo
/// such as `inf0` would silence every line without a word; here it is an error.
/// Returns the filter without blanks around its directives, as tracing wants it.
fn check_log_filter(filter: &str) -> Result<String> {
    let valid = LOG_LEVELS.join(", ");
    let directives: Vec<&str> = filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        anyhow::bail!("empty log filter {filter:?}: give a level ({valid}) or directives such as switchd=debug,warn");
    }
    for &directive in &directives {
        let (target, level) = match directive.rsplit_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        if target == Some("") {
            anyhow::bail!(
                "invalid log filter {filter:?}: {directive:?} names no target before '='; give a level ({valid}) or TARGET=LEVEL, such as switchd=debug"
            );
        }
        if !LOG_LEVELS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(level))
        {
            let what = match target {
                Some(target) => format!("{level:?} (for {target})"),
                None => format!("{level:?}"),
            };
            anyhow::bail!(
                "invalid log filter {filter:?}: {what} is not a log level; valid levels are {valid}, alone or as TARGET=LEVEL (such as switchd=debug,warn)"
            );
        }
    }
    Ok(directives.join(","))
}

/// The config file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    socket: Option<PathBuf>,
    socket_group: Option<String>,
    state_dir: Option<PathBuf>,
    log: Option<String>,
    log_format: Option<logs::LogFormat>,
    metrics: Option<String>,
    uplink: Option<String>,
    busy_poll_us: Option<u64>,
    storm_limit_pps: Option<u32>,
    #[serde(default)]
    fdb: FileFdbConfig,
    #[serde(default)]
    vxlan: FileVxlanConfig,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileVxlanConfig {
    vtep: Option<String>,
    udp_checksum: Option<bool>,
    accept_inner_tagged: Option<bool>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileFdbConfig {
    aging_secs: Option<u64>,
    max_entries: Option<usize>,
    max_per_port: Option<usize>,
}

/// Flags over file over defaults.
#[derive(Debug, PartialEq)]
struct Config {
    socket: PathBuf,
    socket_group: Option<daemon::SocketGroup>,
    state_dir: PathBuf,
    log: String,
    log_format: logs::LogFormat,
    /// Where the Prometheus metrics are served, if anywhere.
    metrics: Option<SocketAddr>,
    fdb: FdbConfig,
    vtep: daemon::VtepOptions,
    uplink: String,
    busy_poll: Duration,
    storm_limit: Option<StormLimit>,
    /// The embedded DNS's upstreams, when it is on.
    dns: Option<Vec<SocketAddr>>,
    /// Its per-source rate limit.
    dns_rate_limit: switchyard::dns::RateLimit,
    cluster: Option<cluster::ClusterOptions>,
}

impl Config {
    fn resolve(args: Args) -> Result<Config> {
        let file = match &args.config {
            Some(path) => read_config_file(path)?,
            None => FileConfig::default(),
        };
        let defaults = FdbConfig::default();
        let fdb = FdbConfig {
            aging: args
                .fdb_aging
                .or(file.fdb.aging_secs)
                .map_or(defaults.aging, Duration::from_secs),
            max_entries: args
                .fdb_max_entries
                .or(file.fdb.max_entries)
                .unwrap_or(defaults.max_entries),
            max_per_port: args
                .fdb_max_per_port
                .or(file.fdb.max_per_port)
                .unwrap_or(defaults.max_per_port),
            ..FdbConfig::default()
        };
        // The flags' values are clap's to check; these are the file's.
        if fdb.aging < Duration::from_secs(MIN_FDB_AGING_SECS) {
            anyhow::bail!("FDB aging must be at least {MIN_FDB_AGING_SECS} seconds");
        }
        if fdb.max_entries == 0 || fdb.max_per_port == 0 {
            anyhow::bail!("FDB limits must be at least 1 (max_entries, max_per_port)");
        }
        fdb.validate().map_err(anyhow::Error::msg)?;
        // The checksum and inner-tag settings hold for a VTEP enabled later too.
        let vtep = daemon::VtepOptions {
            local: match args.vtep {
                Some(addr) => Some(addr),
                None => file.vxlan.vtep.map(|text| parse_vtep(&text)).transpose()?,
            },
            udp_checksums: args
                .vxlan_udp_checksum
                .or(file.vxlan.udp_checksum)
                .unwrap_or(true),
            accept_inner_tagged: args.vxlan_accept_inner_tagged
                || file.vxlan.accept_inner_tagged.unwrap_or(false),
        };
        let cluster = cluster_options(&args, vtep.local)?;
        let uplink = args
            .uplink
            .or(file.uplink)
            .unwrap_or_else(|| uplink::DEFAULT_NAME.to_string());
        switchyard_os::rtnl::validate_ifname(&uplink)
            .map_err(|err| anyhow::anyhow!("invalid --uplink: {err}"))?;
        let busy_poll_us = args
            .busy_poll_us
            .or(file.busy_poll_us)
            .unwrap_or(DEFAULT_BUSY_POLL_US);
        if busy_poll_us > MAX_BUSY_POLL_US {
            anyhow::bail!(
                "--busy-poll-us {busy_poll_us} is too long: give 0 to {MAX_BUSY_POLL_US} microseconds"
            );
        }
        let socket_group = args
            .socket_group
            .or(file.socket_group)
            .map(|name| resolve_group(&name))
            .transpose()?;
        let log = args.log.or(file.log).unwrap_or_else(|| "info".into());
        let log = check_log_filter(&log)?;
        let log_format = args.log_format.or(file.log_format).unwrap_or_default();
        let metrics = match args.metrics {
            Some(addr) => Some(addr),
            None => file
                .metrics
                .map(|text| metrics::parse_addr(&text))
                .transpose()?,
        };
        let dns = match args.dns.unwrap_or(true) {
            false if !args.dns_upstream.is_empty() => anyhow::bail!(Usage(
                "--dns-upstream goes with the embedded DNS: leave out --dns off".into()
            )),
            false => None,
            true if args.dns_upstream.len() > MAX_DNS_UPSTREAMS => anyhow::bail!(Usage(format!(
                "--dns-upstream given {} times: at most {MAX_DNS_UPSTREAMS} upstreams are asked",
                args.dns_upstream.len()
            ))),
            true if !args.dns_upstream.is_empty() => Some(args.dns_upstream.clone()),
            true => Some(resolv_conf_nameservers(
                &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            )),
        };
        let dns_rate_limit = match args.dns_rate_limit {
            None => switchyard::dns::RateLimit::default(),
            Some(qps) => switchyard::dns::RateLimit {
                per_second: qps,
                burst: qps.saturating_mul(2),
                ..switchyard::dns::RateLimit::default()
            },
        };
        if dns.is_none() && args.dns_rate_limit.is_some() {
            anyhow::bail!(Usage(
                "--dns-rate-limit goes with the embedded DNS: leave out --dns off".into()
            ));
        }
        Ok(Config {
            cluster,
            dns,
            dns_rate_limit,
            vtep,
            uplink,
            busy_poll: Duration::from_micros(busy_poll_us),
            storm_limit: match args.storm_limit_pps.or(file.storm_limit_pps) {
                Some(pps) => StormLimit::per_second(pps),
                None => Some(StormLimit::DEFAULT),
            },
            socket: args
                .socket
                .or(file.socket)
                .unwrap_or_else(|| DEFAULT_SOCKET.into()),
            socket_group,
            state_dir: args
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            log,
            log_format,
            metrics,
            fdb,
        })
    }
}

/// The capabilities switchd cannot work without, with the bit each has in `CapEff`, and
/// what for.
const NEEDED_CAPABILITIES: [(&str, u32, &str); 2] = [
    (
        "CAP_NET_ADMIN",
        12,
        "create TAP devices, the uplink, routes and NAT rules",
    ),
    (
        "CAP_SYS_ADMIN",
        21,
        "enter containers' network namespaces (setns)",
    ),
];

/// The needed capabilities missing from the effective set in `status` (the text of
/// `/proc/self/status`). An unreadable set counts as none.
fn missing_capabilities(status: &str) -> Vec<(&'static str, &'static str)> {
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    NEEDED_CAPABILITIES
        .iter()
        .filter(|(_, bit, _)| effective & (1 << bit) == 0)
        .map(|(name, _, why)| (*name, *why))
        .collect()
}

/// Refuses to start without the capabilities every port needs: without them switchd
/// would say it is ready, and fail at the first attach.
fn check_capabilities() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").context(
        "cannot read /proc/self/status to check switchd's capabilities; is /proc mounted?",
    )?;
    let missing = missing_capabilities(&status);
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|(name, _)| *name).collect();
    let reasons: Vec<String> = missing
        .iter()
        .map(|(name, why)| format!("{name} to {why}"))
        .collect();
    anyhow::bail!(
        "missing capabilities {} (running as uid {}): switchd needs {}; run it as root, or grant them (systemd: AmbientCapabilities={})",
        names.join(", "),
        nix::unistd::Uid::effective(),
        reasons.join(" and "),
        names.join(" "),
    )
}

/// Every TAP and control connection is a descriptor; the default soft limit (1024) is
/// low for a switch. Raise it to the hard limit.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {err}");
            }
        }
    }
}

fn read_config_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is invalid", path.display()))
}

fn main() {
    // `switchd --generate-man DIR`: switchd.8, for `make install`.
    switchyard_os::cli::generate_man_if_asked(<Args as clap::CommandFactory>::command, "8");
    // A bad flag or value is clap's to report: `switchd: ...`, exit 2.
    let args =
        Args::try_parse().unwrap_or_else(|err| switchyard_os::cli::usage_exit("switchd", err));
    if let Err(err) = run(args) {
        eprintln!("switchd: {err:#}");
        std::process::exit(if err.is::<Usage>() { 2 } else { 1 });
    }
}

fn run(args: Args) -> Result<()> {
    let config = Config::resolve(args)?;
    check_capabilities()?;
    logs::init(&config.log, config.log_format)?;
    // Bound before anything is restored: an address in use stops the start cleanly.
    let metrics_listener = config.metrics.map(metrics::bind).transpose()?;

    // Before any thread exists, so that every thread has them blocked.
    let signals = daemon::signal_fd()?;
    raise_fd_limit();
    let notifier = notify::Notifier::from_env();
    notifier.status(&format!(
        "restoring ports from {}",
        config.state_dir.display()
    ));
    let store = state::StateStore::open(&config.state_dir)?;
    let mut switchd = daemon::Daemon::new(
        daemon::Options {
            socket: config.socket.clone(),
            socket_group: config.socket_group.clone(),
            fdb: config.fdb,
            vtep: config.vtep,
            uplink: config.uplink.clone(),
            busy_poll: dataplane::BusyPoll(config.busy_poll),
            storm_limit: config.storm_limit,
            dns: config.dns.clone(),
            dns_rate_limit: config.dns_rate_limit,
            cluster: config.cluster.clone(),
            metrics: metrics_listener.is_some(),
        },
        store,
        signals,
    )?;
    tracing::info!(
        socket = %config.socket.display(),
        socket_group = config.socket_group.as_ref().map_or("none (root only)", |g| g.name.as_str()),
        state_dir = %config.state_dir.display(),
        ports = switchd.controller.model().ports.len(),
        "switchd ready"
    );
    if let (Some(listener), Some(control)) = (metrics_listener, &switchd.metrics) {
        metrics::serve(
            listener,
            Arc::clone(&switchd.shared.dp),
            Arc::clone(control),
        )?;
    }
    // Every saved port is back (or marked down), the control socket listens, and so does
    // the metrics endpoint if asked for: READY=1 is the last thing before the loop.
    let model = switchd.controller.model();
    notifier.ready(&notify::ready_status(
        model.ports.len(),
        model.networks.iter().count(),
    ));
    let outcome = switchd.run();
    notifier.stopping("stopping: releasing the ports (their TAPs stay)");
    switchd.shutdown();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("switchd").chain(list.iter().copied())).unwrap()
    }

    #[test]
    fn help_and_socket_are_switchds() {
        use clap::CommandFactory;
        let command = Args::command();
        let about = command.get_about().map(ToString::to_string);
        assert_eq!(
            about.as_deref(),
            Some("The switchyard switch daemon: MAC learning, VLANs and TAP ports for containers")
        );
        let socket = command
            .get_arguments()
            .find(|arg| arg.get_id() == "socket")
            .expect("a --socket argument");
        assert_eq!(socket.get_env(), Some(std::ffi::OsStr::new(SOCKET_ENV)));
    }

    #[test]
    fn defaults_without_flags_or_file() {
        let config = Config::resolve(args(&[])).unwrap();
        assert_eq!(config.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(config.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(config.fdb, FdbConfig::default());
        assert!(config.fdb.max_entries >= 64 * 1024);
    }

    #[test]
    fn flags_override_the_file() {
        let path = std::env::temp_dir().join(format!("switchd-config-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "socket = \"/tmp/a.sock\"\nstate_dir = \"/tmp/st\"\n[fdb]\naging_secs = 60\nmax_entries = 1000\n",
        )
        .unwrap();
        let config = Config::resolve(args(&[
            "--config",
            path.to_str().unwrap(),
            "--socket",
            "/tmp/b.sock",
        ]))
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(config.socket, PathBuf::from("/tmp/b.sock"));
        assert_eq!(config.state_dir, PathBuf::from("/tmp/st"));
        assert_eq!(config.fdb.aging, Duration::from_secs(60));
        assert_eq!(config.fdb.max_entries, 1000);
        assert_eq!(config.fdb.max_per_port, FdbConfig::default().max_per_port);
    }

    #[test]
    fn metrics_and_the_log_format_come_from_flags_or_the_file() {
        let config = Config::resolve(args(&[])).unwrap();
        assert_eq!(config.metrics, None, "no metrics unless asked");
        assert_eq!(config.log_format, logs::LogFormat::Text);
        let path =
            std::env::temp_dir().join(format!("switchd-metrics-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "metrics = \"127.0.0.1:9469\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let config = Config::resolve(args(&["--config", file])).unwrap();
        assert_eq!(config.metrics, Some("127.0.0.1:9469".parse().unwrap()));
        assert_eq!(config.log_format, logs::LogFormat::Json);
        let config = Config::resolve(args(&[
            "--config",
            file,
            "--metrics",
            "[::1]:9000",
            "--log-format",
            "text",
        ]))
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(config.metrics, Some("[::1]:9000".parse().unwrap()));
        assert_eq!(config.log_format, logs::LogFormat::Text);
        // A bad flag value is clap's usage error; the file's is resolve's.
        let err = Args::try_parse_from(["switchd", "--metrics", "9469"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(
            err.to_string()
                .contains("invalid value '9469' for '--metrics <ADDR:PORT>': give ADDR:PORT"),
            "{err}"
        );
        let path =
            std::env::temp_dir().join(format!("switchd-metrics-bad-{}.toml", std::process::id()));
        std::fs::write(&path, "metrics = \"9469\"\n").unwrap();
        let err = Config::resolve(args(&["--config", path.to_str().unwrap()])).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(
            format!("{err:#}").contains("invalid --metrics \"9469\""),
            "{err:#}"
        );
        assert!(Args::try_parse_from(["switchd", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn vtep_addresses_take_a_default_port() {
        let parsed = |text: &str| parse_vtep(text).map_err(|e| e.to_string());
        assert_eq!(
            parsed("192.0.2.1").unwrap(),
            "192.0.2.1:4789".parse().unwrap()
        );
        assert_eq!(
            parsed("192.0.2.1:8472").unwrap(),
            "192.0.2.1:8472".parse().unwrap()
        );
        assert_eq!(
            parsed("2001:db8::1").unwrap(),
            "[2001:db8::1]:4789".parse().unwrap()
        );
        assert!(parsed("0.0.0.0").is_err());
        assert!(parsed("vtep.example").is_err());
        let config = Config::resolve(args(&[
            "--vtep",
            "192.0.2.1",
            "--vxlan-udp-checksum",
            "off",
        ]))
        .unwrap();
        let vtep = config.vtep;
        assert_eq!(vtep.local, Some("192.0.2.1:4789".parse().unwrap()));
        assert!(!vtep.udp_checksums && !vtep.accept_inner_tagged);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let path =
            std::env::temp_dir().join(format!("switchd-config-bad-{}.toml", std::process::id()));
        std::fs::write(&path, "sockett = \"/tmp/a.sock\"\n").unwrap();
        let err = Config::resolve(args(&["--config", path.to_str().unwrap()])).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(format!("{err:#}").contains("is invalid"), "{err:#}");
        for bad in [
            &["--fdb-aging", "0"][..],
            &["--fdb-aging", "1"],
            &["--fdb-max-entries", "0"],
            &["--busy-poll-us", "10001"],
            &["--vtep", "0.0.0.0"],
            &["--uplink", "a-name-longer-than-15"],
            &["--dns-upstream", "not-an-address"],
            &["--cluster-advertise", "127.0.0.1"],
            &["--cluster-store", "http://192.0.2.10:2379"],
        ] {
            let line = std::iter::once("switchd").chain(bad.iter().copied());
            assert!(Args::try_parse_from(line).is_err(), "{bad:?}");
        }
        assert!(Config::resolve(args(&["--fdb-aging", "2"])).is_ok());
        // Flags that do not go together: bad usage too (exit 2), found after the parse.
        for conflict in [
            &["--dns", "off", "--dns-upstream", "192.0.2.53"][..],
            &["--dns", "off", "--dns-rate-limit", "10"],
            &["--node", "a"],
            &["--cluster-store", "etcd://192.0.2.10:2379"],
        ] {
            let err = Config::resolve(args(conflict)).unwrap_err();
            assert!(err.is::<Usage>(), "{conflict:?}: {err:#}");
        }
        assert!(Config::resolve(args(&["--config", "/nonexistent/switchd.toml"])).is_err());
    }

    #[test]
    fn the_socket_group_must_exist() {
        assert_eq!(Config::resolve(args(&[])).unwrap().socket_group, None);
        let root = Config::resolve(args(&["--socket-group", "root"]))
            .unwrap()
            .socket_group
            .unwrap();
        assert_eq!(root.gid.as_raw(), 0);
        let by_gid = Config::resolve(args(&["--socket-group", "0"]))
            .unwrap()
            .socket_group
            .unwrap();
        assert_eq!(by_gid.name, "root");
        let err = Config::resolve(args(&["--socket-group", "no-such-group-here"])).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("unknown group \"no-such-group-here\" for --socket-group"),
            "{err}"
        );
        let path =
            std::env::temp_dir().join(format!("switchd-config-group-{}.toml", std::process::id()));
        std::fs::write(&path, "socket_group = \"root\"\n").unwrap();
        let config = Config::resolve(args(&["--config", path.to_str().unwrap()])).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(config.socket_group.unwrap().name, "root");
    }

    #[test]
    fn capabilities_are_read_from_the_effective_set() {
        let status = |eff: &str| {
            format!("Name:\tswitchd\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t{eff}\nCapBnd:\t000001ffffffffff\n")
        };
        let names = |eff: &str| {
            missing_capabilities(&status(eff))
                .into_iter()
                .map(|(name, _)| name)
                .collect::<Vec<_>>()
        };
        assert!(names("000001ffffffffff").is_empty(), "root has them all");
        assert!(names("0000000000201000").is_empty(), "exactly the two");
        assert_eq!(names("0000000000001000"), ["CAP_SYS_ADMIN"]);
        assert_eq!(names("0000000000200000"), ["CAP_NET_ADMIN"]);
        assert_eq!(
            names("0000000000000000"),
            ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
        );
        assert_eq!(
            missing_capabilities("Name:\tswitchd\n").len(),
            2,
            "no CapEff line: none"
        );
    }

    #[test]
    fn log_filters_name_known_levels() {
        for good in [
            "info",
            "off",
            "TRACE",
            "switchd=debug,warn",
            "switchd=debug, switchyard::controller=trace",
            "warn,",
            "switchd[conn{id=3}]=debug",
        ] {
            let checked = check_log_filter(good).unwrap_or_else(|err| panic!("{good:?}: {err:#}"));
            // And tracing reads them as we do.
            tracing_subscriber::EnvFilter::try_new(&checked)
                .unwrap_or_else(|err| panic!("{good:?}: {err}"));
        }
        for bad in [
            "inf0",
            "",
            " , ",
            "switchd",
            "switchd=loud",
            "=debug",
            "info,debgu",
            "switchd[conn{id=3}]",
            "3",
        ] {
            let err = check_log_filter(bad).expect_err(bad).to_string();
            assert!(
                err.contains("error, warn, info, debug, trace, off"),
                "{bad:?}: the message names the valid levels: {err}"
            );
        }
        let err = Args::try_parse_from(["switchd", "--log", "inf0"]).unwrap_err();
        assert!(
            err.to_string().contains("\"inf0\" is not a log level"),
            "{err}"
        );
    }
}
