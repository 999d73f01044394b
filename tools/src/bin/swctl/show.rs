//! `swctl show`: the whole switch in one view, built here from the answers to Status,
//! PortList, NetworkList, VxlanShow and RouterShow: ports with their VLANs and state,
//! networks with their endpoints, the VTEP and its peers, the uplink. As text, as one
//! JSON object, or as a Graphviz graph (`--format dot`).

use std::collections::BTreeMap;

use serde::Serialize;
use switchyard::control::{
    ErrorCode, NetworkInfo, PeerInfo, PortInfo, Request, RouterInfo, Status, VxlanInfo,
};
use switchyard::port::{PortId, PortMode};
use switchyard_os::client::{Client, ClientError};

use super::{format_duration, format_fields, format_peers, mode_name, mode_vlans, network_flags};
use super::{Align, Table};

/// What `swctl show --json` prints.
#[derive(Debug, Serialize)]
pub struct Picture {
    pub status: Status,
    pub ports: Vec<PortInfo>,
    pub networks: Vec<NetworkInfo>,
    /// The overlay, or `null` when switchd runs without a VTEP.
    pub vxlan: Option<VxlanInfo>,
    pub router: RouterInfo,
}

impl Picture {
    /// Asks switchd for every part, on one connection.
    pub fn fetch(client: &mut Client) -> Result<Picture, ClientError> {
        let status = client.call(&Request::Status)?;
        let mut ports: Vec<PortInfo> = client.call(&Request::PortList)?;
        ports.sort_by_key(|port| port.id);
        let mut networks: Vec<NetworkInfo> = client.call(&Request::NetworkList)?;
        networks.sort_by(|a, b| a.name.cmp(&b.name));
        let vxlan = match client.call::<VxlanInfo>(&Request::VxlanShow) {
            Ok(info) => Some(info),
            Err(err) if err.code() == Some(ErrorCode::NoOverlay) => None,
            Err(err) => return Err(err),
        };
        let router = client.call(&Request::RouterShow)?;
        Ok(Picture {
            status,
            ports,
            networks,
            vxlan,
            router,
        })
    }

    /// The network and address of each port that is an endpoint of a network.
    fn endpoints(&self) -> BTreeMap<PortId, (&NetworkInfo, String)> {
        let mut map = BTreeMap::new();
        for network in &self.networks {
            for endpoint in &network.endpoints {
                map.insert(endpoint.port, (network, endpoint.address.to_string()));
            }
        }
        map
    }

    fn peers(&self) -> &[PeerInfo] {
        self.vxlan.as_ref().map_or(&[], |vxlan| &vxlan.peers)
    }
}

/// The text view: a summary, then ports, networks and peers.
pub fn format_text(picture: &Picture) -> String {
    let status = &picture.status;
    let mut summary = vec![
        (
            "switchd",
            format!(
                "{} (pid {}, up {}, {} ports)",
                status.version,
                status.pid,
                format_duration(status.uptime_secs),
                status.ports
            ),
        ),
        (
            "uplink",
            picture
                .router
                .uplink
                .clone()
                .unwrap_or_else(|| "none".into()),
        ),
    ];
    summary.push((
        "vtep",
        match &picture.vxlan {
            None => "none (make one with `swctl vxlan enable --vtep ADDR`)".into(),
            Some(vxlan) if vxlan.map.is_empty() => format!("{}, no VLAN mapped", vxlan.local),
            Some(vxlan) => format!(
                "{}, {}",
                vxlan.local,
                vxlan
                    .map
                    .iter()
                    .map(|m| format!("vlan {} = vni {}", m.vlan, m.vni))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    ));
    let mut out = format_fields(&summary);

    let endpoints = picture.endpoints();
    out.push_str("\nports:\n");
    if picture.ports.is_empty() {
        out.push_str("  none (attach one with `nsutil attach`)\n");
    } else {
        let mut table = Table::new(&[
            ("ID", Align::Right),
            ("NAME", Align::Left),
            ("MODE", Align::Left),
            ("VLANS", Align::Left),
            ("NETWORK", Align::Left),
            ("ADDRESS", Align::Left),
            ("STATE", Align::Left),
        ]);
        for port in &picture.ports {
            let (network, address) = match endpoints.get(&port.id) {
                Some((network, address)) => (network.name.clone(), address.clone()),
                None => ("-".into(), "-".into()),
            };
            table.push(vec![
                port.id.to_string(),
                port.name.clone(),
                mode_name(&port.mode).to_string(),
                mode_vlans(&port.mode),
                network,
                address,
                port.state.clone(),
            ]);
        }
        out.push_str(&indent(&table.render()));
    }

    out.push_str("\nnetworks:\n");
    if picture.networks.is_empty() {
        out.push_str("  none (create one with `swctl network create NAME`)\n");
    }
    for network in &picture.networks {
        out.push_str(&format!(
            "  {} {} gateway {} ({})\n",
            network.name,
            network.subnet,
            network.gateway,
            network_flags(network)
        ));
        // Endpoints as aligned columns: port, address, MAC, DNS name.
        let rows: Vec<[String; 4]> = network
            .endpoints
            .iter()
            .map(|e| {
                [
                    e.port_name.clone(),
                    e.address.to_string(),
                    e.mac.to_string(),
                    e.name.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let widths: Vec<usize> = (0..4)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            out.push_str(&format!("    {}\n", cells.join("  ").trim_end()));
        }
        for remote in &network.remote_endpoints {
            out.push_str(&format!(
                "    on {}  {}  {}\n",
                remote.node, remote.ip, remote.mac
            ));
        }
        if network.endpoints.is_empty() && network.remote_endpoints.is_empty() {
            out.push_str("    no endpoints\n");
        }
    }

    if picture.vxlan.is_some() {
        out.push_str("\npeers:\n");
        if picture.peers().is_empty() {
            out.push_str("  none (add one with `swctl vxlan peer add IP`)\n");
        } else {
            out.push_str(&indent(&format_peers(picture.peers())));
        }
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

/// `text` as a DOT quoted string (an ID or an escString label): `"` and `\` escaped,
/// line breaks as `\n`, other control characters left out.
pub fn dot_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One labelled line of DOT: `id [label="...", extra];`.
fn dot_node(id: &str, label: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!("{} [label={}{extra}];\n", dot_quote(id), dot_quote(label))
}

fn dot_edge(from: &str, to: &str, label: &str) -> String {
    format!(
        "{} -> {} [label={}];\n",
        dot_quote(from),
        dot_quote(to),
        dot_quote(label)
    )
}

fn port_id(port: PortId) -> String {
    format!("port {port}")
}

/// The Graphviz view: switchd in the middle; each network a cluster holding its ports
/// and gateway; ports on no network in one cluster per access VLAN (trunks on their
/// own); VTEP peers and the uplink beside the switch.
pub fn format_dot(picture: &Picture) -> String {
    let mut out = String::from("digraph switchyard {\n");
    out.push_str("  graph [rankdir=LR, fontname=\"sans-serif\"];\n");
    out.push_str("  node [shape=box, fontname=\"sans-serif\"];\n");
    out.push_str("  edge [dir=none, fontname=\"sans-serif\", fontsize=10];\n");
    let switch = "switchd";
    out.push_str("  ");
    out.push_str(&dot_node(
        switch,
        &format!(
            "switchd {}\n{} ports",
            picture.status.version,
            picture.ports.len()
        ),
        "shape=box3d, style=bold",
    ));

    let endpoints = picture.endpoints();
    let port_label = |port: &PortInfo| match endpoints.get(&port.id) {
        Some((_, address)) => format!("{}\n{address}", port.name),
        None => format!("{}\n{}", port.name, port.state),
    };
    let mut edges = String::new();
    for network in &picture.networks {
        out.push_str(&format!(
            "  subgraph {} {{\n",
            dot_quote(&format!("cluster network {}", network.name))
        ));
        out.push_str(&format!(
            "    label={};\n",
            dot_quote(&format!(
                "network {}\n{} vlan {}",
                network.name, network.subnet, network.vlan
            ))
        ));
        let gateway = format!("gateway {}", network.name);
        out.push_str("    ");
        out.push_str(&dot_node(
            &gateway,
            &format!("gateway {}", network.gateway),
            "shape=ellipse",
        ));
        edges.push_str("  ");
        edges.push_str(&dot_edge(switch, &gateway, "router"));
        for port in picture.ports.iter().filter(
            |port| matches!(endpoints.get(&port.id), Some((n, _)) if n.name == network.name),
        ) {
            out.push_str("    ");
            out.push_str(&dot_node(&port_id(port.id), &port_label(port), ""));
            edges.push_str("  ");
            edges.push_str(&dot_edge(switch, &port_id(port.id), &port.mode.to_string()));
        }
        for remote in &network.remote_endpoints {
            let id = format!("remote {} {}", network.name, remote.ip);
            out.push_str("    ");
            out.push_str(&dot_node(
                &id,
                &format!(
                    "{}\n{} on {}",
                    remote.name.as_deref().unwrap_or("-"),
                    remote.ip,
                    remote.node
                ),
                "style=dashed",
            ));
        }
        out.push_str("  }\n");
    }

    // Ports on no network: access ports grouped by VLAN, trunks alone.
    let mut by_vlan: BTreeMap<u16, Vec<&PortInfo>> = BTreeMap::new();
    for port in picture
        .ports
        .iter()
        .filter(|port| !endpoints.contains_key(&port.id))
    {
        match &port.mode {
            PortMode::Access { vlan } => by_vlan.entry(vlan.get()).or_default().push(port),
            PortMode::Trunk { .. } => {
                out.push_str("  ");
                out.push_str(&dot_node(&port_id(port.id), &port_label(port), ""));
            }
        }
        edges.push_str("  ");
        edges.push_str(&dot_edge(switch, &port_id(port.id), &port.mode.to_string()));
    }
    for (vlan, ports) in &by_vlan {
        out.push_str(&format!(
            "  subgraph {} {{\n    label={};\n    style=dashed;\n",
            dot_quote(&format!("cluster vlan {vlan}")),
            dot_quote(&format!("vlan {vlan}"))
        ));
        for port in ports {
            out.push_str("    ");
            out.push_str(&dot_node(&port_id(port.id), &port_label(port), ""));
        }
        out.push_str("  }\n");
    }

    if let Some(vxlan) = &picture.vxlan {
        for peer in &vxlan.peers {
            let id = format!("peer {}", peer.addr);
            let label = match &peer.node {
                Some(node) => format!("VTEP {}\n{node}", peer.addr),
                None => format!("VTEP {}", peer.addr),
            };
            out.push_str("  ");
            out.push_str(&dot_node(&id, &label, "shape=cylinder"));
            edges.push_str("  ");
            edges.push_str(&dot_edge(
                switch,
                &id,
                &format!("vxlan from {}", vxlan.local),
            ));
        }
    }
    if let Some(uplink) = &picture.router.uplink {
        out.push_str("  ");
        out.push_str(&dot_node(
            "uplink",
            &format!("uplink {uplink}"),
            "shape=cds",
        ));
        edges.push_str("  ");
        edges.push_str(&dot_edge(switch, "uplink", "host"));
    }
    out.push_str(&edges);
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use switchyard::control::{EndpointInfo, VniMapping};
    use switchyard::router::RouterCounters;
    use switchyard::wire::VlanId;

    use super::*;

    fn vlan(id: u16) -> VlanId {
        VlanId::new(id).unwrap()
    }

    fn port(id: u32, name: &str, mode: PortMode) -> PortInfo {
        PortInfo {
            id: PortId(id),
            name: name.into(),
            netns: format!("/run/netns/{name}").into(),
            ifname: "eth0".into(),
            ifindex: 2,
            mode,
            state: "up".into(),
            mac: None,
            port_security: true,
            storm_limit_pps: None,
            kind: Default::default(),
        }
    }

    fn network() -> NetworkInfo {
        NetworkInfo {
            name: "blue".into(),
            id: "0123456789abcdef".into(),
            driver: "local".into(),
            created: "2026-01-01T00:00:00Z".into(),
            subnet: "10.10.0.0/24".parse().unwrap(),
            gateway: "10.10.0.1".parse().unwrap(),
            vlan: vlan(3000),
            vni: None,
            ip_range: None,
            mtu: 1500,
            internal: false,
            masquerade: true,
            gateway_mac: "02:00:00:00:00:fe".parse().unwrap(),
            options: BTreeMap::new(),
            endpoints: vec![EndpointInfo {
                network: "blue".into(),
                address: "10.10.0.2/24".parse().unwrap(),
                gateway: "10.10.0.1".parse().unwrap(),
                mac: "02:42:0a:0a:00:02".parse().unwrap(),
                mtu: 1500,
                port: PortId(2),
                port_name: "web/eth0".into(),
                ifname: "eth0".into(),
                netns: "/run/netns/web".into(),
                container_id: None,
                published: vec![],
                name: Some("web".into()),
                aliases: vec![],
                dns: true,
            }],
            reservations: vec![],
            scope: Default::default(),
            remote_endpoints: vec![],
            local_ids: vec![],
            parent: None,
            aux_addresses: vec![],
        }
    }

    fn picture(vxlan: bool) -> Picture {
        Picture {
            status: Status {
                version: "0.1.0".into(),
                pid: 42,
                uptime_secs: 65,
                ports: 2,
                state_dir: "/var/lib/switchyard".into(),
                dns: true,
                cluster_node: None,
            },
            ports: vec![
                port(1, "we\"ird\\ns/eth0", PortMode::Access { vlan: vlan(10) }),
                port(2, "web/eth0", PortMode::Access { vlan: vlan(3000) }),
            ],
            networks: vec![network()],
            vxlan: vxlan.then(|| VxlanInfo {
                local: "192.0.2.1:4789".parse().unwrap(),
                map: vec![VniMapping {
                    vlan: vlan(10),
                    vni: switchyard_encap::Vni::new(42).unwrap(),
                }],
                peers: vec![PeerInfo {
                    addr: "192.0.2.2:4789".parse().unwrap(),
                    port: PortId(100),
                    node: None,
                    path_mtu: 1500,
                    inner_mtu: 1450,
                    counters: Default::default(),
                }],
                unattributed_drops: BTreeMap::new(),
                icmp_frag_needed_sent: 0,
                accept_inner_tagged: false,
            }),
            router: RouterInfo {
                uplink: Some("switchyard0".into()),
                neighbors: vec![],
                counters: RouterCounters::default(),
                dns: Default::default(),
            },
        }
    }

    #[test]
    fn dot_strings_escape_quotes_backslashes_and_line_breaks() {
        assert_eq!(dot_quote("red/eth0"), r#""red/eth0""#);
        assert_eq!(dot_quote(r#"a"b"#), r#""a\"b""#);
        assert_eq!(dot_quote(r"a\b"), r#""a\\b""#);
        assert_eq!(dot_quote("a\nb"), r#""a\nb""#);
        assert_eq!(dot_quote("a\u{1b}[1mb\r"), r#""a[1mb""#);
        assert_eq!(dot_quote(""), r#""""#);
    }

    #[test]
    fn dot_has_the_switch_networks_vlans_peers_and_uplink() {
        let dot = format_dot(&picture(true));
        assert!(dot.starts_with("digraph switchyard {\n"), "{dot}");
        assert!(dot.ends_with("}\n"), "{dot}");
        assert!(
            dot.contains("  subgraph \"cluster network blue\" {\n    label=\"network blue\\n10.10.0.0/24 vlan 3000\";\n"),
            "{dot}"
        );
        assert!(
            dot.contains("    \"port 2\" [label=\"web/eth0\\n10.10.0.2/24\"];\n"),
            "{dot}"
        );
        assert!(
            dot.contains("\"gateway blue\" [label=\"gateway 10.10.0.1\", shape=ellipse];"),
            "{dot}"
        );
        // A port on no network sits in its VLAN's cluster, its odd name escaped.
        assert!(dot.contains("subgraph \"cluster vlan 10\""), "{dot}");
        assert!(
            dot.contains(r#"    "port 1" [label="we\"ird\\ns/eth0\nup"];"#),
            "{dot}"
        );
        assert!(
            dot.contains(r#""peer 192.0.2.2:4789" [label="VTEP 192.0.2.2:4789", shape=cylinder];"#),
            "{dot}"
        );
        assert!(
            dot.contains(r#""switchd" -> "port 1" [label="access vlan 10"];"#),
            "{dot}"
        );
        assert!(
            dot.contains(r#""switchd" -> "uplink" [label="host"];"#),
            "{dot}"
        );
        // Every quote is balanced: an even number of unescaped quotes per line.
        for line in dot.lines() {
            let unescaped = line.replace("\\\\", "").replace("\\\"", "");
            assert_eq!(unescaped.matches('"').count() % 2, 0, "{line}");
        }
    }

    #[test]
    fn text_names_ports_networks_endpoints_and_peers() {
        let text = format_text(&picture(true));
        assert!(
            text.starts_with(
                "switchd  0.1.0 (pid 42, up 1m05s, 2 ports)\n\
                 uplink   switchyard0\n\
                 vtep     192.0.2.1:4789, vlan 10 = vni 42\n\n\
                 ports:\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("   2  web/eth0        access  3000   blue     10.10.0.2/24  up\n"),
            "{text}"
        );
        assert!(
            text.contains("  blue 10.10.0.0/24 gateway 10.10.0.1 (local, vlan 3000, masquerade)\n    web/eth0  10.10.0.2/24  02:42:0a:0a:00:02  web\n"),
            "{text}"
        );
        assert!(text.contains("\npeers:\n  PEER"), "{text}");
        assert!(text.contains("192.0.2.2:4789"), "{text}");
        let without = format_text(&picture(false));
        assert!(without.contains("vtep     none"), "{without}");
        assert!(!without.contains("peers:"), "{without}");
    }

    #[test]
    fn json_is_one_object_of_every_part() {
        let value = serde_json::to_value(picture(false)).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["networks", "ports", "router", "status", "vxlan"]);
        assert!(value["vxlan"].is_null());
        assert_eq!(value["ports"][1]["name"], "web/eth0");
    }
}
