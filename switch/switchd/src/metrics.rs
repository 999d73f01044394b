//! `--metrics ADDR:PORT`: the Prometheus text format at `GET /metrics`, served over
//! HTTP/1 by a thread of its own (a current-thread tokio runtime, hyper).
//!
//! A scrape reads the counters where they live, at scrape time: the ports' atomics
//! through one snapshot of the switch's topology (no lock), the FDB's and the router's
//! counters under their locks for the time it takes to copy a few numbers. What only
//! the controller knows (the ports' names, IPAM, the NAT rules) the control thread
//! publishes here after each request that changes something and each update from the
//! cluster store ([`Control::publish`]), so a scrape never waits for the control thread,
//! nor the control thread for a scrape. Without `--metrics` there is no [`Control`]:
//! nothing is published, and no request counted.
//! The families exported are `FAMILIES`, documented in docs/operations.md.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use switchyard::control::Request;
use switchyard::controller::{plan, port_name, Controller};
use switchyard::datapath::Datapath;
use switchyard::forward::PortCounters;
use switchyard::network::AddressUsage;
use switchyard::PortId;

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;
/// A client must have sent its request's headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What a family's samples are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// A gauge that is always 1, its labels being the information.
    Info,
}

impl Kind {
    fn metric_type(self) -> MetricType {
        match self {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Info => MetricType::Info,
        }
    }

    /// As the exposition format's `# TYPE` line says it.
    #[cfg(test)]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge | Kind::Info => "gauge",
        }
    }
}

/// One metric family: its name as exposed (`_total` on counters, `_info` on infos), its
/// labels, and its help line.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

impl Family {
    /// The name without the suffix the encoder adds for the kind.
    fn base(&self) -> &'static str {
        let suffix = match self.kind {
            Kind::Counter => "_total",
            Kind::Info => "_info",
            Kind::Gauge => "",
        };
        self.name.strip_suffix(suffix).unwrap_or(self.name)
    }
}

macro_rules! families {
    ($($id:ident = $name:literal, $kind:ident, [$($label:literal),*], $help:literal;)*) => {
        $(const $id: Family = Family {
            name: $name,
            kind: Kind::$kind,
            labels: &[$($label),*],
            help: $help,
        };)*
        /// Every family a scrape exports, in the order it exports them (the tests check
        /// both against a scrape and against docs/operations.md).
        #[cfg(test)]
        pub const FAMILIES: &[Family] = &[$($id),*];
    };
}

families! {
    BUILD_INFO = "switchyard_build_info", Info, ["version"],
        "switchd's version; always 1.";
    PORT_RX_PACKETS = "switchyard_port_rx_packets_total", Counter, ["port"],
        "Frames received from a local port (a TSO super-frame counts once).";
    PORT_RX_BYTES = "switchyard_port_rx_bytes_total", Counter, ["port"],
        "Bytes of the frames received from a local port.";
    PORT_TX_PACKETS = "switchyard_port_tx_packets_total", Counter, ["port"],
        "Frames sent to a local port.";
    PORT_TX_BYTES = "switchyard_port_tx_bytes_total", Counter, ["port"],
        "Bytes of the frames sent to a local port.";
    PORT_DROPS = "switchyard_port_drops_total", Counter, ["port", "reason"],
        "Frames a local port sent that were dropped (or that were dropped on the way to it), by reason; reasons that never happened are absent.";
    FDB_ENTRIES = "switchyard_fdb_entries", Gauge, [],
        "MAC table entries, static ones included (expired ones until they are reclaimed).";
    FDB_MAX_ENTRIES = "switchyard_fdb_max_entries", Gauge, [],
        "The MAC table's size limit (--fdb-max-entries).";
    FDB_LEARNED = "switchyard_fdb_learned_total", Counter, [],
        "MAC addresses learned.";
    FDB_MOVED = "switchyard_fdb_moved_total", Counter, [],
        "Learned MAC addresses that moved to another port.";
    FDB_AGED = "switchyard_fdb_aged_total", Counter, [],
        "Learned MAC addresses forgotten after --fdb-aging idle seconds.";
    FDB_EVICTED = "switchyard_fdb_evicted_total", Counter, [],
        "Learned MAC addresses evicted to make room in a full table or port.";
    FDB_REFUSED = "switchyard_fdb_refused_total", Counter, [],
        "MAC addresses not learned: the table was full with nothing learned to evict.";
    FDB_FLAPPED = "switchyard_fdb_flapped_total", Counter, [],
        "MAC addresses found flapping between ports.";
    FDB_FLAP_HELD = "switchyard_fdb_flap_held_total", Counter, [],
        "Learns held back because the address was flapping.";
    PEER_RX_PACKETS = "switchyard_vxlan_peer_rx_packets_total", Counter, ["peer"],
        "Frames decapsulated from a VTEP peer.";
    PEER_RX_BYTES = "switchyard_vxlan_peer_rx_bytes_total", Counter, ["peer"],
        "Bytes of the frames decapsulated from a VTEP peer.";
    PEER_TX_PACKETS = "switchyard_vxlan_peer_tx_packets_total", Counter, ["peer"],
        "Frames encapsulated to a VTEP peer.";
    PEER_TX_BYTES = "switchyard_vxlan_peer_tx_bytes_total", Counter, ["peer"],
        "Bytes of the frames encapsulated to a VTEP peer.";
    PEER_DROPS = "switchyard_vxlan_peer_drops_total", Counter, ["peer", "reason"],
        "Frames from or to a VTEP peer that were dropped, by reason.";
    STRANGER_DROPS = "switchyard_vxlan_stranger_drops_total", Counter, ["reason"],
        "Drops that belong to no port: VXLAN from addresses that are not peers (unknown_vtep).";
    FRAG_NEEDED_SENT = "switchyard_vxlan_frag_needed_sent_total", Counter, [],
        "ICMP fragmentation-needed answers sent for frames too big to encapsulate.";
    ROUTER_DROPS = "switchyard_router_drops_total", Counter, ["reason"],
        "Packets the router dropped, by reason.";
    ROUTER_ARP_REPLIES = "switchyard_router_arp_replies_sent_total", Counter, [],
        "ARP replies the router sent for gateways (and remote endpoints).";
    ROUTER_ARP_SUPPRESSED = "switchyard_router_arp_suppressed_total", Counter, [],
        "Of the ARP replies, those for remote endpoints (ARP suppression).";
    ROUTER_ARP_REQUESTS = "switchyard_router_arp_requests_sent_total", Counter, [],
        "ARP requests the router sent to resolve or reconfirm neighbours.";
    ROUTER_ECHO_REPLIES = "switchyard_router_echo_replies_sent_total", Counter, [],
        "ICMP echo replies from gateway addresses.";
    ROUTER_TIME_EXCEEDED = "switchyard_router_time_exceeded_sent_total", Counter, [],
        "ICMP time-exceeded messages sent.";
    ROUTER_DNS_QUERIES = "switchyard_router_dns_queries_total", Counter, [],
        "UDP DNS queries to a gateway handed to the embedded DNS.";
    ROUTER_DNS_TCP = "switchyard_router_dns_tcp_segments_total", Counter, [],
        "TCP segments to a gateway's port 53 handed to the embedded DNS.";
    ROUTED_TO_UPLINK = "switchyard_router_routed_to_uplink_total", Counter, [],
        "Packets routed to the uplink TUN (where the host's NAT masquerades them).";
    ROUTED_TO_SWITCH = "switchyard_router_routed_to_switch_total", Counter, [],
        "Packets routed into a network (from the uplink or, for published ports, back).";
    ROUTER_HELD = "switchyard_router_held_total", Counter, [],
        "Packets held while their next hop was being resolved.";
    ROUTER_RELEASED = "switchyard_router_released_total", Counter, [],
        "Held packets sent once their next hop resolved.";
    NAT_MASQUERADE = "switchyard_nat_masquerade_networks", Gauge, [],
        "Networks whose traffic to the uplink is masqueraded (NAT rules in place).";
    NAT_PUBLISHED = "switchyard_nat_published_ports", Gauge, [],
        "Published ports (DNAT rules in place).";
    IPAM_USED = "switchyard_ipam_addresses_used", Gauge, ["network"],
        "A network's addresses held by an endpoint, a reservation or another node, anywhere in its subnet (in its ip_range or not).";
    IPAM_FREE = "switchyard_ipam_addresses_free", Gauge, ["network"],
        "A network's addresses automatic allocation can still hand out: those of its ip_range (its subnet without one) but the network, broadcast and gateway addresses that nobody holds.";
    CONTROL_REQUESTS = "switchyard_control_requests_total", Counter, ["kind", "result"],
        "Control requests answered, by request (its cmd) and result (ok, or the error code).";
}

/// What the control thread knows and a scrape needs; replaced whole after each change.
#[derive(Debug, Default)]
struct ControlView {
    /// Local ports by id, with their names (`red/eth0`).
    ports: Vec<(PortId, String)>,
    /// VTEP peers' tunnel ports, with the peer's address.
    peers: Vec<(PortId, String)>,
    networks: Vec<(String, AddressUsage)>,
    masquerade: usize,
    published: usize,
}

/// The controller's side of the metrics: its published view, and the request counters.
/// Shared by the control thread (which writes) and the metrics thread (which reads).
#[derive(Debug, Default)]
pub struct Control {
    view: Mutex<Arc<ControlView>>,
    requests: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Control {
    /// Publishes what the controller now has: after a request that changed something, or
    /// the cluster's update (only with `--metrics`). Costs a pass over ports, endpoints
    /// and the NAT rules.
    pub fn publish(&self, controller: &Controller) {
        let model = controller.model();
        let mut seen = HashSet::new();
        let ports = model
            .ports
            .iter()
            .map(|(id, port)| {
                let name = port_name(port);
                // Two series of one name would make the exposition invalid.
                let name = if seen.insert(name.clone()) {
                    name
                } else {
                    format!("{name}#{id}")
                };
                (*id, name)
            })
            .collect();
        let peers = model
            .peers
            .iter()
            .map(|(id, addr)| (*id, addr.to_string()))
            .collect();
        let networks = model
            .networks
            .address_usages()
            .into_iter()
            .map(|(name, usage)| (name.to_string(), usage))
            .collect();
        let nat = plan::nat_rules(model, "");
        let view = ControlView {
            ports,
            peers,
            networks,
            masquerade: nat.masquerade.len(),
            published: nat.forwards.len(),
        };
        *self.view.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
    }

    /// Counts one answered request: `kind` is its `cmd`, `result` `ok` or the error code.
    pub fn count_request(&self, kind: &str, result: &'static str) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        match requests.get_mut(&(kind.to_string(), result)) {
            Some(n) => *n += 1,
            None => {
                requests.insert((kind.to_string(), result), 1);
            }
        }
    }

    fn view(&self) -> Arc<ControlView> {
        Arc::clone(&self.view.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn requests(&self) -> BTreeMap<(String, &'static str), u64> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The request's `cmd`, as the protocol spells it (`attach`, `port_list`...).
pub fn request_kind(request: &Request) -> String {
    serde_json::to_value(request)
        .ok()
        .and_then(|value| value.get("cmd")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

/// `--metrics`: `IP:PORT` (`[IPv6]:PORT`).
pub fn parse_addr(text: &str) -> Result<SocketAddr> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        anyhow::anyhow!(
            "invalid --metrics {text:?}: give ADDR:PORT to serve the metrics on, such as 127.0.0.1:9469"
        )
    })?;
    if addr.port() == 0 {
        anyhow::bail!(
            "invalid --metrics {text:?}: give a port (Prometheus must know where to scrape), such as 127.0.0.1:9469"
        );
    }
    Ok(addr)
}

/// Binds the metrics address: before anything else starts, so that a taken or foreign
/// address stops switchd at once with a clear message.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).map_err(|err| {
        let hint = match err.kind() {
            std::io::ErrorKind::AddrInUse => {
                "something else listens there; stop it or choose another port"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "no interface of this host has that address; give one of its own, such as 127.0.0.1"
            }
            std::io::ErrorKind::PermissionDenied => {
                "ports below 1024 need CAP_NET_BIND_SERVICE; choose another port"
            }
            _ => "give another address",
        };
        anyhow::anyhow!("cannot serve metrics on {addr} (--metrics): {err}; {hint}")
    })?;
    listener
        .set_nonblocking(true)
        .context("cannot make the metrics socket non-blocking")?;
    Ok(listener)
}

/// Serves `GET /metrics` on `listener` from a thread of its own, for as long as switchd
/// runs.
pub fn serve(
    listener: std::net::TcpListener,
    dp: Arc<Datapath>,
    control: Arc<Control>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the metrics thread's runtime")?;
    let addr = listener.local_addr().ok();
    let registry = Arc::new(registry(dp, control));
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || runtime.block_on(accept_loop(listener, registry)))
        .context("cannot start the metrics thread")?;
    if let Some(addr) = addr {
        tracing::info!(%addr, "serving metrics at http://{addr}/metrics");
    }
    Ok(())
}

fn registry(dp: Arc<Datapath>, control: Arc<Control>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { dp, control }));
    registry
}

async fn accept_loop(listener: std::net::TcpListener, registry: Arc<Registry>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!("cannot serve metrics: {err}");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of descriptors, most likely: try again shortly.
                tracing::debug!("cannot accept a metrics connection: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = answer(&registry, &request);
                async move { Ok::<_, Infallible>(answer) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            drop(slot);
        });
    }
}

fn answer(registry: &Registry, request: &hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &str| {
        let mut response = Response::new(Full::new(Bytes::from(text.to_string())));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: switchd serves its metrics at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match encode(registry) {
        Ok(text) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                ),
            );
            response
        }
        Err(err) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the metrics: {err}\n"),
        ),
    }
}

/// One scrape, in the Prometheus text format (0.0.4).
fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::with_capacity(64 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

/// The collector: reads everything at scrape time.
struct Scrape {
    dp: Arc<Datapath>,
    control: Arc<Control>,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

/// A family's descriptor; its samples follow through the returned encoder.
fn family<'e>(
    encoder: &'e mut DescriptorEncoder<'_>,
    family: &Family,
) -> Result<MetricEncoder<'e>, fmt::Error> {
    encoder.encode_descriptor(family.base(), family.help, None, family.kind.metric_type())
}

/// The sample `value` of a `kind` family through `encoder`.
fn value(encoder: MetricEncoder<'_>, kind: Kind, value: u64) -> fmt::Result {
    match kind {
        Kind::Counter => ConstCounter::new(value).encode(encoder),
        Kind::Gauge | Kind::Info => ConstGauge::new(value).encode(encoder),
    }
}

/// One sample of `kind` with `labels`.
fn sample(
    metric: &mut MetricEncoder<'_>,
    kind: Kind,
    labels: &[(&str, &str)],
    n: u64,
) -> fmt::Result {
    value(metric.encode_family(&labels)?, kind, n)
}

/// A family without labels: one sample.
fn single(encoder: &mut DescriptorEncoder<'_>, f: &Family, n: u64) -> fmt::Result {
    value(family(encoder, f)?, f.kind, n)
}

/// A family with one label: a sample per `(value of the label, value)`.
fn each<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    f: &Family,
    samples: impl IntoIterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    let mut metric = family(encoder, f)?;
    for (label, value) in samples {
        sample(&mut metric, f.kind, &[(f.labels[0], label)], value)?;
    }
    Ok(())
}

/// Per-port traffic families (local ports or peers), and drops by reason.
fn traffic(
    encoder: &mut DescriptorEncoder<'_>,
    families: [&Family; 5],
    counters: &[(&str, PortCounters)],
) -> fmt::Result {
    let [rx_packets, rx_bytes, tx_packets, tx_bytes, drops] = families;
    type Field = fn(&PortCounters) -> u64;
    let field: [(&Family, Field); 4] = [
        (rx_packets, |c| c.rx_packets),
        (rx_bytes, |c| c.rx_bytes),
        (tx_packets, |c| c.tx_packets),
        (tx_bytes, |c| c.tx_bytes),
    ];
    for (f, value) in field {
        each(
            encoder,
            f,
            counters.iter().map(|(name, c)| (*name, value(c))),
        )?;
    }
    let mut metric = family(encoder, drops)?;
    for (name, c) in counters {
        for (reason, n) in &c.drops {
            let labels = [(drops.labels[0], *name), (drops.labels[1], reason.as_str())];
            sample(&mut metric, drops.kind, &labels, *n)?;
        }
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let view = self.control.view();
        let switch = self.dp.switch();
        // One snapshot of the topology: every port's counters without a lock.
        let topology = switch.view();
        fn read<'v>(
            topology: &switchyard::forward::View,
            list: &'v [(PortId, String)],
        ) -> Vec<(&'v str, PortCounters)> {
            list.iter()
                .filter_map(|(id, name)| Some((name.as_str(), topology.counters(*id)?.snapshot())))
                .collect()
        }
        let ports = read(&topology, &view.ports);
        let peers = read(&topology, &view.peers);
        // Each under its lock for the copy alone.
        let fdb = switch.fdb();
        let fdb_entries = fdb.len();
        let fdb_counters = fdb.counters();
        let router = self.dp.router().counters();
        let strangers = switch.unattributed_drops();
        let requests = self.control.requests();

        let mut metric = family(&mut encoder, &BUILD_INFO)?;
        metric.encode_info(&[(BUILD_INFO.labels[0], env!("CARGO_PKG_VERSION"))])?;
        traffic(
            &mut encoder,
            [
                &PORT_RX_PACKETS,
                &PORT_RX_BYTES,
                &PORT_TX_PACKETS,
                &PORT_TX_BYTES,
                &PORT_DROPS,
            ],
            &ports,
        )?;
        single(&mut encoder, &FDB_ENTRIES, fdb_entries as u64)?;
        single(
            &mut encoder,
            &FDB_MAX_ENTRIES,
            fdb.config().max_entries as u64,
        )?;
        for (f, value) in [
            (&FDB_LEARNED, fdb_counters.learned),
            (&FDB_MOVED, fdb_counters.moved),
            (&FDB_AGED, fdb_counters.aged),
            (&FDB_EVICTED, fdb_counters.evicted),
            (&FDB_REFUSED, fdb_counters.refused),
            (&FDB_FLAPPED, fdb_counters.flapped),
            (&FDB_FLAP_HELD, fdb_counters.flap_held),
        ] {
            single(&mut encoder, f, value)?;
        }
        traffic(
            &mut encoder,
            [
                &PEER_RX_PACKETS,
                &PEER_RX_BYTES,
                &PEER_TX_PACKETS,
                &PEER_TX_BYTES,
                &PEER_DROPS,
            ],
            &peers,
        )?;
        each(
            &mut encoder,
            &STRANGER_DROPS,
            strangers.iter().map(|(reason, n)| (reason.as_str(), *n)),
        )?;
        single(&mut encoder, &FRAG_NEEDED_SENT, self.dp.frag_needed_sent())?;
        each(
            &mut encoder,
            &ROUTER_DROPS,
            router.drops.iter().map(|(reason, n)| (reason.as_str(), *n)),
        )?;
        for (f, value) in [
            (&ROUTER_ARP_REPLIES, router.arp_replies_sent),
            (&ROUTER_ARP_SUPPRESSED, router.arp_suppressed),
            (&ROUTER_ARP_REQUESTS, router.arp_requests_sent),
            (&ROUTER_ECHO_REPLIES, router.echo_replies_sent),
            (&ROUTER_TIME_EXCEEDED, router.time_exceeded_sent),
            (&ROUTER_DNS_QUERIES, router.dns_queries),
            (&ROUTER_DNS_TCP, router.dns_tcp_segments),
            (&ROUTED_TO_UPLINK, router.routed_to_uplink),
            (&ROUTED_TO_SWITCH, router.routed_to_switch),
            (&ROUTER_HELD, router.held),
            (&ROUTER_RELEASED, router.released),
        ] {
            single(&mut encoder, f, value)?;
        }
        single(&mut encoder, &NAT_MASQUERADE, view.masquerade as u64)?;
        single(&mut encoder, &NAT_PUBLISHED, view.published as u64)?;
        each(
            &mut encoder,
            &IPAM_USED,
            view.networks.iter().map(|(n, u)| (n.as_str(), u.used)),
        )?;
        each(
            &mut encoder,
            &IPAM_FREE,
            view.networks.iter().map(|(n, u)| (n.as_str(), u.free)),
        )?;
        let mut metric = family(&mut encoder, &CONTROL_REQUESTS)?;
        for ((kind, result), n) in &requests {
            let labels = [
                (CONTROL_REQUESTS.labels[0], kind.as_str()),
                (CONTROL_REQUESTS.labels[1], *result),
            ];
            sample(&mut metric, CONTROL_REQUESTS.kind, &labels, *n)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use switchyard::fdb::FdbConfig;
    use switchyard::wire::{MacAddr, VlanId};
    use switchyard::{DropReason, PortMode};

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`, Prometheus's metric name.
    fn is_metric_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
    fn is_label_name(name: &str) -> bool {
        let mut chars = name.chars();
        !name.starts_with("__")
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    #[test]
    fn names_follow_the_prometheus_conventions() {
        let mut seen = HashSet::new();
        for f in FAMILIES {
            assert!(is_metric_name(f.name), "{}", f.name);
            assert!(f.name.starts_with("switchyard_"), "{}", f.name);
            assert!(seen.insert(f.name), "{} twice", f.name);
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                f.name
            );
            assert_eq!(
                f.kind == Kind::Info,
                f.name.ends_with("_info"),
                "{}",
                f.name
            );
            for label in f.labels {
                assert!(is_label_name(label), "{}: {label}", f.name);
            }
            assert!(f.help.ends_with('.'), "{}: help is a sentence", f.name);
        }
    }

    /// A datapath with `n` ports that have seen traffic, and the view naming them.
    fn switch_with_ports(n: u32) -> (Arc<Datapath>, Arc<Control>) {
        let dp = Arc::new(Datapath::new(FdbConfig::default()));
        let vlan = VlanId::new(10).unwrap();
        let mut ports = Vec::new();
        for i in 1..=n {
            let id = PortId(i);
            dp.switch().set_port(id, PortMode::Access { vlan });
            ports.push((id, format!("ns{i}/eth0")));
        }
        let topology = dp.switch().view();
        for (id, _) in &ports {
            let counters = topology.counters(*id).unwrap();
            counters.count_rx(1500);
            counters.count_tx(64);
            counters.count_drop(DropReason::SpoofedMac);
            let mac = MacAddr([2, 0, 0, 0, (id.0 >> 8) as u8, id.0 as u8]);
            dp.switch()
                .fdb()
                .learn(switchyard::Time::ZERO, vlan, mac, *id);
        }
        let control = Arc::new(Control::default());
        *control.view.lock().unwrap() = Arc::new(ControlView {
            ports,
            networks: vec![(
                "blue".into(),
                AddressUsage {
                    used: 2,
                    pool: 253,
                    free: 251,
                },
            )],
            ..ControlView::default()
        });
        control.count_request("attach", "ok");
        control.count_request("attach", "ok");
        control.count_request("port_set", "no_such_port");
        (dp, control)
    }

    /// The `# TYPE` lines of an exposition: (name, type).
    fn types(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .map(|rest| {
                let (name, kind) = rest.split_once(' ').unwrap();
                (name.to_string(), kind.to_string())
            })
            .collect()
    }

    #[test]
    fn a_scrape_exports_every_family_once_in_order() {
        let (dp, control) = switch_with_ports(3);
        let text = encode(&registry(dp, control)).unwrap();
        let expected: Vec<(String, String)> = FAMILIES
            .iter()
            .map(|f| (f.name.to_string(), f.kind.as_str().to_string()))
            .collect();
        assert_eq!(types(&text), expected, "{text}");
        for line in [
            "switchyard_build_info{version=\"",
            "switchyard_port_rx_packets_total{port=\"ns1/eth0\"} 1\n",
            "switchyard_port_rx_bytes_total{port=\"ns3/eth0\"} 1500\n",
            "switchyard_port_drops_total{port=\"ns2/eth0\",reason=\"spoofed_mac\"} 1\n",
            "switchyard_fdb_entries 3\n",
            "switchyard_fdb_learned_total 3\n",
            "switchyard_ipam_addresses_used{network=\"blue\"} 2\n",
            "switchyard_ipam_addresses_free{network=\"blue\"} 251\n",
            "switchyard_control_requests_total{kind=\"attach\",result=\"ok\"} 2\n",
            "switchyard_control_requests_total{kind=\"port_set\",result=\"no_such_port\"} 1\n",
        ] {
            assert!(text.contains(line), "{line:?} in:\n{text}");
        }
        assert!(
            !text.contains("# EOF"),
            "the Prometheus format, not OpenMetrics"
        );
    }

    #[test]
    fn request_kinds_are_the_protocols_cmd() {
        assert_eq!(request_kind(&Request::PortList), "port_list");
        assert_eq!(
            request_kind(&Request::LogLevel {
                filter: "debug".into()
            }),
            "log_level"
        );
    }

    #[test]
    fn metrics_addresses_are_checked() {
        assert_eq!(
            parse_addr("127.0.0.1:9469").unwrap(),
            "127.0.0.1:9469".parse().unwrap()
        );
        assert!(parse_addr("[::1]:9469").is_ok());
        for bad in ["127.0.0.1", "localhost:9469", "127.0.0.1:0", "9469", ""] {
            let err = parse_addr(bad).unwrap_err().to_string();
            assert!(err.contains("invalid --metrics"), "{bad:?}: {err}");
        }
    }

    /// The table in docs/operations.md lists exactly these families, with their types
    /// and labels.
    #[test]
    fn the_operations_guide_documents_every_family() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/operations.md");
        let doc = std::fs::read_to_string(path).expect("docs/operations.md");
        let documented: Vec<(String, String, String)> = doc
            .lines()
            .filter_map(|line| line.strip_prefix("| `switchyard_"))
            .map(|rest| {
                let cells: Vec<&str> = rest.split('|').map(str::trim).collect();
                let name = format!("switchyard_{}", cells[0].trim_end_matches('`'));
                let labels = cells[2].replace(['`', ' ', '—'], "");
                (name, cells[1].to_string(), labels)
            })
            .collect();
        let expected: Vec<(String, String, String)> = FAMILIES
            .iter()
            .map(|f| {
                let kind = match f.kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                    Kind::Info => "info",
                };
                (f.name.to_string(), kind.to_string(), f.labels.join(","))
            })
            .collect();
        assert_eq!(documented, expected);
    }

    /// The cost of a scrape of 1,000 ports (docs/operations.md reports it): printed, not
    /// asserted. `cargo test --release -p switchd scrape_of_1000 -- --nocapture`.
    #[test]
    fn a_scrape_of_1000_ports() {
        let (dp, control) = switch_with_ports(1000);
        let registry = registry(Arc::clone(&dp), control);
        let text = encode(&registry).unwrap();
        assert_eq!(
            text.matches("switchyard_port_tx_bytes_total{").count(),
            1000
        );
        let rounds = 200;
        let started = Instant::now();
        let mut bytes = 0;
        for _ in 0..rounds {
            bytes += encode(&registry).unwrap().len();
        }
        let per_scrape = started.elapsed() / rounds;
        // The only locks a scrape takes: the FDB's (twice) and the router's, each to copy.
        let started = Instant::now();
        for _ in 0..rounds {
            let fdb = dp.switch().fdb();
            std::hint::black_box((fdb.len(), fdb.counters()));
        }
        let fdb_lock = started.elapsed() / rounds;
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(dp.router().counters());
        }
        let router_lock = started.elapsed() / rounds;
        eprintln!(
            "a scrape of 1000 ports: {per_scrape:?} ({} bytes); FDB locks held {fdb_lock:?}, router lock {router_lock:?}",
            bytes / rounds as usize
        );
    }
}
