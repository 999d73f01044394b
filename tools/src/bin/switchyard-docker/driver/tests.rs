//! The handlers against recorded Docker request bodies, with a fake switchd.
//!
//! The bodies are as Docker 20.10 (libnetwork's remote driver and IPAM clients) sends
//! them, `null`s included. The fake switchd keeps networks, their reservations and
//! endpoints in memory, answers the requests the handlers make the way switchd does
//! (refusals with switchd's codes), and records every request, so a test can say exactly
//! what reached switchd, or that nothing did.

use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::control::EndpointInfo;
use switchyard::network::Reservation;
use switchyard::wire::VlanId;
use switchyard::PortId;

use super::*;

// ---------------------------------------------------------------------------------------
// Recorded bodies.

const NETWORK_ID: &str = "a08a0fcbdeafd3c1b3a4b495b9a9c9d96850f08946b52bc0622347d3b6e73b78";
const ENDPOINT_ID: &str = "0e26f370b56256f2c7dc5a6c5b4a43cbdfb8a61961fcd697e65896ec1579f9e8";

const REQUEST_POOL: &str =
    r#"{"AddressSpace":"switchyard","Pool":"10.77.0.0/24","SubPool":"","Options":{},"V6":false}"#;
const REQUEST_GATEWAY: &str = r#"{"PoolID":"10.77.0.0/24","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}"#;
const REQUEST_ADDRESS: &str = r#"{"PoolID":"10.77.0.0/24","Address":"","Options":null}"#;
const RELEASE_ADDRESS: &str = r#"{"PoolID":"10.77.0.0/24","Address":"10.77.0.2"}"#;
const CREATE_NETWORK: &str = r#"{"NetworkID":"a08a0fcbdeafd3c1b3a4b495b9a9c9d96850f08946b52bc0622347d3b6e73b78","Options":{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{"masquerade":"true","mtu":"1400"}},"IPv4Data":[{"AddressSpace":"switchyard","Pool":"10.77.0.0/24","Gateway":"10.77.0.1/24","AuxAddresses":null}],"IPv6Data":[]}"#;
const DELETE_NETWORK: &str =
    r#"{"NetworkID":"a08a0fcbdeafd3c1b3a4b495b9a9c9d96850f08946b52bc0622347d3b6e73b78"}"#;
const CREATE_ENDPOINT: &str = r#"{"NetworkID":"a08a0fcbdeafd3c1b3a4b495b9a9c9d96850f08946b52bc0622347d3b6e73b78","EndpointID":"0e26f370b56256f2c7dc5a6c5b4a43cbdfb8a61961fcd697e65896ec1579f9e8","Interface":{"Address":"10.77.0.2/24","AddressIPv6":"","MacAddress":""},"Options":{"com.docker.network.endpoint.exposedports":null,"com.docker.network.portmap":null}}"#;
const DELETE_ENDPOINT: &str = r#"{"NetworkID":"a08a0fcbdeafd3c1b3a4b495b9a9c9d96850f08946b52bc0622347d3b6e73b78","EndpointID":"0e26f370b56256f2c7dc5a6c5b4a43cbdfb8a61961fcd697e65896ec1579f9e8"}"#;
const JOIN: &str = r#"{"NetworkID":"a08a0fcbdeafd3c1b3a4b495b9a9c9d96850f08946b52bc0622347d3b6e73b78","EndpointID":"0e26f370b56256f2c7dc5a6c5b4a43cbdfb8a61961fcd697e65896ec1579f9e8","SandboxKey":"/var/run/docker/netns/3c1e4e5b1f2a","Options":null}"#;
const PROGRAM_EXTERNAL_CONNECTIVITY: &str = r#"{"NetworkID":"a08a0fcbdeafd3c1b3a4b495b9a9c9d96850f08946b52bc0622347d3b6e73b78","EndpointID":"0e26f370b56256f2c7dc5a6c5b4a43cbdfb8a61961fcd697e65896ec1579f9e8","Options":{"com.docker.network.endpoint.exposedports":[{"Proto":6,"Port":80}],"com.docker.network.portmap":null}}"#;

/// `body` with the value at JSON pointer `pointer` set to `value` (the parent must exist).
fn edit(body: &str, pointer: &str, value: Value) -> String {
    let mut body: Value = serde_json::from_str(body).unwrap();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    body.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {parent:?}"))
        .insert(key.to_string(), value);
    body.to_string()
}

// ---------------------------------------------------------------------------------------
// switchd's side: networks as switchd reports them.

fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// A network as `network inspect` shows it: gateway the first address, no endpoints.
fn network(name: &str, id: &str, subnet: &str) -> NetworkInfo {
    let subnet = net(subnet);
    let gateway = subnet.hosts().next().unwrap();
    NetworkInfo {
        name: name.to_string(),
        id: id.to_string(),
        driver: "local".to_string(),
        created: "2024-05-01T12:00:00Z".to_string(),
        subnet,
        gateway,
        vlan: VlanId::new(100).unwrap(),
        vni: None,
        ip_range: None,
        mtu: 1500,
        internal: false,
        masquerade: false,
        gateway_mac: MacAddr([0x02, 0x5e, 0, 0, 0, 1]),
        options: Default::default(),
        endpoints: Vec::new(),
        reservations: Vec::new(),
        scope: Default::default(),
        remote_endpoints: Vec::new(),
        local_ids: Vec::new(),
        parent: None,
        aux_addresses: Vec::new(),
    }
}

/// Docker's network, as switchd has it once the plugin has named it `web`.
fn docker_network() -> NetworkInfo {
    network("web", NETWORK_ID, "10.77.0.0/24")
}

fn reservation(network: &NetworkInfo, address: &str, owner: &str) -> Reservation {
    Reservation {
        network: network.name.clone(),
        ip: ip(address),
        owner: owner.to_string(),
    }
}

/// An endpoint a Join made: port `port`, owned by Docker's endpoint `container_id`.
fn endpoint(network: &NetworkInfo, address: &str, port: u32, container_id: &str) -> EndpointInfo {
    let address = Ipv4Net::new(ip(address), network.subnet.prefix_len()).unwrap();
    EndpointInfo {
        network: network.name.clone(),
        address,
        gateway: network.gateway,
        mac: MacAddr::from_ipv4(address.addr()),
        mtu: network.mtu,
        port: PortId(port),
        port_name: format!("docker:{}/eth0", short(container_id)),
        ifname: "eth0".to_string(),
        netns: PathBuf::from("/var/run/docker/netns/3c1e4e5b1f2a"),
        container_id: Some(container_id.to_string()),
        published: Vec::new(),
        name: None,
        aliases: Vec::new(),
        dns: true,
    }
}

fn refusal(code: ErrorCode, message: String) -> ControlError {
    ControlError::new(code, message)
}

/// switchd in memory. Every request is recorded; `down` makes every call fail as when
/// switchd is not running.
#[derive(Default)]
struct FakeSwitchd {
    networks: Mutex<Vec<NetworkInfo>>,
    requests: Mutex<Vec<Request>>,
    down: bool,
}

impl FakeSwitchd {
    fn with(networks: Vec<NetworkInfo>) -> FakeSwitchd {
        FakeSwitchd {
            networks: Mutex::new(networks),
            ..FakeSwitchd::default()
        }
    }

    fn down() -> FakeSwitchd {
        FakeSwitchd {
            down: true,
            ..FakeSwitchd::default()
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    fn clear_requests(&self) {
        self.requests.lock().unwrap().clear();
    }

    /// The network `key` as switchd has it now.
    fn network(&self, key: &str) -> NetworkInfo {
        let networks = self.networks.lock().unwrap();
        let index = find(&networks, key).unwrap();
        networks[index].clone()
    }

    fn answer(&self, request: &Request) -> Result<Value, ControlError> {
        let mut networks = self.networks.lock().unwrap();
        let value = match request {
            Request::NetworkCreate(config) => {
                let info = create(&networks, config)?;
                networks.push(info.clone());
                json!(info)
            }
            Request::NetworkList => json!(*networks),
            Request::NetworkInspect { name } => json!(networks[find(&networks, name)?]),
            Request::NetworkRemove { name } => {
                let index = find(&networks, name)?;
                let network = &networks[index];
                if !network.endpoints.is_empty() {
                    return Err(refusal(
                        ErrorCode::NetworkInUse,
                        format!(
                            "network {} has {} endpoints; remove them first",
                            network.name,
                            network.endpoints.len()
                        ),
                    ));
                }
                json!(networks.remove(index))
            }
            Request::NetworkRename { name, new_name } => {
                let index = find(&networks, name)?;
                networks[index].name = new_name.clone();
                json!(networks[index])
            }
            Request::SubnetSuggest { .. } => json!(Suggested {
                subnet: net("10.99.0.0/24")
            }),
            Request::AddressReserve { network, ip, owner } => {
                let index = find(&networks, network)?;
                json!(reserve(&mut networks[index], *ip, owner)?)
            }
            Request::AddressRelease { network, ip } => {
                let index = find(&networks, network)?;
                let network = &mut networks[index];
                let at = network
                    .reservations
                    .iter()
                    .position(|r| r.ip == *ip)
                    .ok_or_else(|| {
                        refusal(
                            ErrorCode::NoSuchEntry,
                            format!("{ip} is not reserved in network {}", network.name),
                        )
                    })?;
                let released = network.reservations.remove(at);
                json!(Reserved {
                    network: network.name.clone(),
                    address: Ipv4Net::new(released.ip, network.subnet.prefix_len()).unwrap(),
                    owner: released.owner,
                })
            }
            Request::PortDel { port } => {
                let removed = networks.iter_mut().find_map(|n| {
                    let at = n
                        .endpoints
                        .iter()
                        .position(|e| e.port.to_string() == *port)?;
                    Some(n.endpoints.remove(at))
                });
                let removed = removed
                    .ok_or_else(|| refusal(ErrorCode::NoSuchPort, format!("no port {port}")))?;
                json!({"id": removed.port, "name": removed.port_name})
            }
            Request::PortPublish {
                port,
                published,
                add: false,
            } => {
                let endpoint = networks
                    .iter_mut()
                    .flat_map(|n| n.endpoints.iter_mut())
                    .find(|e| e.port.to_string() == *port)
                    .ok_or_else(|| refusal(ErrorCode::NoSuchPort, format!("no port {port}")))?;
                endpoint.published = published.clone();
                json!(endpoint)
            }
            other => panic!("the fake switchd does not model {other:?}"),
        };
        Ok(value)
    }
}

impl Switchd for FakeSwitchd {
    fn call(&self, request: &Request) -> Result<Value, ClientError> {
        self.requests.lock().unwrap().push(request.clone());
        if self.down {
            return Err(ClientError::NotRunning {
                path: PathBuf::from("/run/switchyard/switchd.sock"),
                source: io::Error::from(io::ErrorKind::ConnectionRefused),
            });
        }
        self.answer(request).map_err(ClientError::Refused)
    }
}

/// switchd's lookup: by name, id, or an id prefix of at least 12 digits.
fn find(networks: &[NetworkInfo], key: &str) -> Result<usize, ControlError> {
    networks
        .iter()
        .position(|n| n.name == key || n.id == key || (key.len() >= 12 && n.id.starts_with(key)))
        .ok_or_else(|| refusal(ErrorCode::NoSuchNetwork, format!("no network {key}")))
}

fn create(networks: &[NetworkInfo], config: &NetworkConfig) -> Result<NetworkInfo, ControlError> {
    let id = config.id.clone().unwrap_or_else(|| "e".repeat(64));
    let subnet = config.subnet.unwrap_or_else(|| net("10.99.0.0/24"));
    if let Some(other) = networks
        .iter()
        .find(|n| n.name == config.name || n.id == id)
    {
        return Err(refusal(
            ErrorCode::AlreadyExists,
            format!("network {} exists", other.name),
        ));
    }
    if let Some(other) = networks
        .iter()
        .find(|n| n.subnet.contains(&subnet.network()) || subnet.contains(&n.subnet.network()))
    {
        return Err(refusal(
            ErrorCode::Conflict,
            format!(
                "subnet {subnet} overlaps network {}'s {}",
                other.name, other.subnet
            ),
        ));
    }
    let mut info = network(&config.name, &id, &subnet.to_string());
    if let Some(gateway) = config.gateway {
        info.gateway = gateway;
    }
    info.mtu = config.mtu.unwrap_or(1500);
    info.vni = config.vni;
    info.ip_range = config.ip_range;
    info.internal = config.internal;
    info.masquerade = config.masquerade;
    Ok(info)
}

fn reserve(
    network: &mut NetworkInfo,
    wanted: Option<Ipv4Addr>,
    owner: &str,
) -> Result<Reserved, ControlError> {
    let taken = |network: &NetworkInfo, ip: Ipv4Addr, owner: &str| {
        ip == network.gateway
            || network.endpoints.iter().any(|e| e.address.addr() == ip)
            || network
                .reservations
                .iter()
                .any(|r| r.ip == ip && r.owner != owner)
    };
    let ip = match wanted {
        Some(ip) if !network.subnet.contains(&ip) => {
            return Err(refusal(
                ErrorCode::AddressUnavailable,
                format!("{ip} is outside network {}'s subnet", network.name),
            ))
        }
        Some(ip) if taken(network, ip, owner) => {
            return Err(refusal(
                ErrorCode::AddressUnavailable,
                format!("{ip} is taken in network {}", network.name),
            ))
        }
        Some(ip) => ip,
        None => network
            .ip_range
            .unwrap_or(network.subnet)
            .hosts()
            .find(|ip| !taken(network, *ip, owner))
            .ok_or_else(|| refusal(ErrorCode::AddressUnavailable, "exhausted".to_string()))?,
    };
    if !network.reservations.iter().any(|r| r.ip == ip) {
        network.reservations.push(Reservation {
            network: network.name.clone(),
            ip,
            owner: owner.to_string(),
        });
    }
    Ok(Reserved {
        network: network.name.clone(),
        address: Ipv4Net::new(ip, network.subnet.prefix_len()).unwrap(),
        owner: owner.to_string(),
    })
}

// ---------------------------------------------------------------------------------------
// The driver's side.

fn plugin(switchd: FakeSwitchd) -> Driver<FakeSwitchd> {
    Driver::new(
        switchd,
        Settings {
            docker_netns: PathBuf::from("/nonexistent/switchyard-test/netns"),
        },
    )
}

/// The answer to a call that must succeed.
fn answered(driver: &Driver<FakeSwitchd>, method: &str, body: &str) -> (Value, Vec<FollowUp>) {
    driver
        .handle(method, body.as_bytes())
        .unwrap_or_else(|failure| panic!("{method} failed: {failure:?}"))
}

/// The answer to a call that must succeed and leave nothing for later.
fn answer(driver: &Driver<FakeSwitchd>, method: &str, body: &str) -> Value {
    let (value, follow_ups) = answered(driver, method, body);
    assert_eq!(follow_ups, [], "{method}");
    value
}

/// The failure of a call that must fail.
fn refused(driver: &Driver<FakeSwitchd>, method: &str, body: &str) -> Failure {
    match driver.handle(method, body.as_bytes()) {
        Ok(answer) => panic!("{method} must fail, answered {answer:?}"),
        Err(failure) => failure,
    }
}

fn requests(driver: &Driver<FakeSwitchd>) -> Vec<Request> {
    driver.switchd().requests()
}

/// The configuration of the one request that reached switchd, a NetworkCreate.
fn sent_config(driver: &Driver<FakeSwitchd>) -> NetworkConfig {
    match requests(driver).as_slice() {
        [Request::NetworkCreate(config)] => config.clone(),
        other => panic!("expected one NetworkCreate, switchd got {other:?}"),
    }
}

fn assert_mentions(failure: &Failure, words: &[&str]) {
    for word in words {
        assert!(
            failure.message.contains(word),
            "{word:?} is not in {:?}",
            failure.message
        );
    }
}

fn remove_network() -> Request {
    Request::NetworkRemove {
        name: NETWORK_ID.to_string(),
    }
}

fn inspect() -> Request {
    Request::NetworkInspect {
        name: NETWORK_ID.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// The handshake.

#[test]
fn activate_implements_both_drivers_with_local_scope() {
    let driver = plugin(FakeSwitchd::default());
    assert_eq!(
        answer(&driver, "Plugin.Activate", ""),
        json!({"Implements": ["NetworkDriver", "IpamDriver"]})
    );
    let capabilities = answer(&driver, "NetworkDriver.GetCapabilities", "");
    assert_eq!(capabilities["Scope"], "local");
    assert_eq!(capabilities["ConnectivityScope"], "local");
    let spaces = answer(&driver, "IpamDriver.GetDefaultAddressSpaces", "");
    assert_eq!(spaces["LocalDefaultAddressSpace"], "switchyard");
    assert_eq!(
        answer(&driver, "IpamDriver.GetCapabilities", ""),
        json!({"RequiresMACAddress": false, "RequiresRequestReplay": false})
    );
    assert_eq!(requests(&driver), [], "the handshake needs no switchd");
}

#[test]
fn an_unknown_method_is_404() {
    let driver = plugin(FakeSwitchd::default());
    for method in ["NetworkDriver.AllocateNetwork", "VolumeDriver.Create", ""] {
        let failure = refused(&driver, method, "{}");
        assert_eq!(failure.status, 404, "{method}");
        assert_mentions(&failure, &[method, "not implemented"]);
    }
    assert_eq!(requests(&driver), []);
}

#[test]
fn calls_with_nothing_to_do_answer_empty_without_switchd() {
    let driver = plugin(FakeSwitchd::default());
    let calls = [
        ("NetworkDriver.Leave", DELETE_ENDPOINT),
        (
            "NetworkDriver.DiscoverNew",
            r#"{"DiscoveryType":1,"DiscoveryData":null}"#,
        ),
        (
            "NetworkDriver.DiscoverDelete",
            r#"{"DiscoveryType":1,"DiscoveryData":null}"#,
        ),
        ("IpamDriver.ReleasePool", r#"{"PoolID":"10.77.0.0/24"}"#),
    ];
    for (method, body) in calls {
        assert_eq!(answer(&driver, method, body), json!({}), "{method}");
    }
    assert_eq!(
        answer(&driver, "NetworkDriver.EndpointOperInfo", DELETE_ENDPOINT),
        json!({"Value": {}})
    );
    assert_eq!(requests(&driver), []);
}

// ---------------------------------------------------------------------------------------
// CreateNetwork.

#[test]
fn create_network_with_global_names_the_clusters_network_and_needs_no_renaming() {
    let driver = plugin(FakeSwitchd::default());
    let body = edit(
        CREATE_NETWORK,
        "/Options/com.docker.network.generic",
        json!({"global": "blue"}),
    );
    let (value, follow_ups) = answered(&driver, "NetworkDriver.CreateNetwork", &body);
    assert_eq!(value, json!({}));
    assert_eq!(follow_ups, [], "the name is the cluster's already");
    let sent = requests(&driver);
    let [Request::NetworkCreate(config)] = sent.as_slice() else {
        panic!("one NetworkCreate: {sent:?}");
    };
    assert_eq!(config.name, "blue");
    assert_eq!(config.scope, Scope::Global);
    assert_eq!(
        config.id.as_deref(),
        Some(NETWORK_ID),
        "Docker's id: this host's handle"
    );
    for bad in ["", "a/b", ".x"] {
        let body = edit(
            CREATE_NETWORK,
            "/Options/com.docker.network.generic",
            json!({ "global": bad }),
        );
        let err = refused(&driver, "NetworkDriver.CreateNetwork", &body);
        assert!(err.message.contains("option global="), "{bad:?}: {err:?}");
    }
}

#[test]
fn create_network_sends_dockers_id_a_provisional_name_and_the_options() {
    let driver = plugin(FakeSwitchd::default());
    let (value, follow_ups) = answered(&driver, "NetworkDriver.CreateNetwork", CREATE_NETWORK);
    assert_eq!(value, json!({}));
    assert_eq!(
        follow_ups,
        [FollowUp::NameNetwork {
            network_id: NETWORK_ID.to_string()
        }]
    );
    assert_eq!(
        requests(&driver),
        [Request::NetworkCreate(NetworkConfig {
            name: "docker-a08a0fcbdeaf".to_string(),
            id: Some(NETWORK_ID.to_string()),
            subnet: Some(net("10.77.0.0/24")),
            gateway: Some(ip("10.77.0.1")),
            mtu: Some(1400),
            vni: None,
            ip_range: None,
            internal: false,
            masquerade: true,
            scope: Default::default(),
            ..NetworkConfig::default()
        })]
    );
    assert_eq!(
        driver.switchd().network(NETWORK_ID).name,
        "docker-a08a0fcbdeaf"
    );
}

#[test]
fn create_network_maps_internal_and_vni() {
    let driver = plugin(FakeSwitchd::default());
    let body = edit(
        CREATE_NETWORK,
        "/Options/com.docker.network.generic",
        json!({"internal": "yes", "vni": "4242"}),
    );
    answered(&driver, "NetworkDriver.CreateNetwork", &body);
    let config = sent_config(&driver);
    assert!(config.internal && !config.masquerade);
    assert_eq!(config.vni, Vni::new(4242));
    assert_eq!(config.mtu, None);
}

#[test]
fn create_network_internal_flag_of_docker() {
    // `docker network create --internal` arrives outside the generic options.
    let driver = plugin(FakeSwitchd::default());
    let body = edit(
        CREATE_NETWORK,
        "/Options/com.docker.network.internal",
        json!(true),
    );
    let body = edit(&body, "/Options/com.docker.network.generic", json!({}));
    answered(&driver, "NetworkDriver.CreateNetwork", &body);
    let config = sent_config(&driver);
    assert!(config.internal);
}

#[test]
fn create_network_takes_the_ip_range_of_its_request_pool_once() {
    let driver = plugin(FakeSwitchd::default());
    let pool = edit(REQUEST_POOL, "/SubPool", json!("10.77.0.128/25"));
    answer(&driver, "IpamDriver.RequestPool", &pool);
    answered(&driver, "NetworkDriver.CreateNetwork", CREATE_NETWORK);
    let config = sent_config(&driver);
    assert_eq!(config.ip_range, Some(net("10.77.0.128/25")));
    assert_eq!(
        driver.switchd().network(NETWORK_ID).ip_range,
        Some(net("10.77.0.128/25"))
    );

    // The range went with that network: the next network on the subnet has none.
    answer(&driver, "NetworkDriver.DeleteNetwork", DELETE_NETWORK);
    driver.switchd().clear_requests();
    answered(&driver, "NetworkDriver.CreateNetwork", CREATE_NETWORK);
    let config = sent_config(&driver);
    assert_eq!(config.ip_range, None);
}

#[test]
fn a_released_pool_forgets_its_ip_range() {
    // `docker network create --subnet 10.77.0.0/24 --ip-range 10.77.0.128/25 --ipv6 a`:
    // RequestPool (v4, with SubPool), RequestPool (v6) refused, so Docker gives the v4
    // pool back. Then `docker network create --subnet 10.77.0.0/24 b`.
    let driver = plugin(FakeSwitchd::default());
    let with_range = edit(REQUEST_POOL, "/SubPool", json!("10.77.0.128/25"));
    answer(&driver, "IpamDriver.RequestPool", &with_range);
    let v6 = r#"{"AddressSpace":"switchyard","Pool":"","SubPool":"","Options":{},"V6":true}"#;
    refused(&driver, "IpamDriver.RequestPool", v6);
    answer(
        &driver,
        "IpamDriver.ReleasePool",
        r#"{"PoolID":"10.77.0.0/24"}"#,
    );

    answer(&driver, "IpamDriver.RequestPool", REQUEST_POOL);
    answered(&driver, "NetworkDriver.CreateNetwork", CREATE_NETWORK);
    assert_eq!(
        driver.switchd().network(NETWORK_ID).ip_range,
        None,
        "network b was given network a's --ip-range"
    );
}

#[test]
fn create_network_refuses_what_switchyard_cannot_make_without_asking_switchd() {
    let ipv6 = edit(
        CREATE_NETWORK,
        "/IPv6Data",
        json!([{"AddressSpace":"switchyard","Pool":"fd00:77::/64","Gateway":"fd00:77::1/64","AuxAddresses":null}]),
    );
    let second = json!({"AddressSpace":"switchyard","Pool":"10.78.0.0/24","Gateway":"10.78.0.1/24","AuxAddresses":null});
    let first: Value =
        serde_json::from_str::<Value>(CREATE_NETWORK).unwrap()["IPv4Data"][0].clone();
    let generic = |options: Value| {
        edit(
            CREATE_NETWORK,
            "/Options/com.docker.network.generic",
            options,
        )
    };
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("IPv6 data", ipv6, &["IPv4 only", "--ipv6"]),
        (
            "no IPv4 data",
            edit(CREATE_NETWORK, "/IPv4Data", json!([])),
            &["exactly one IPv4 subnet"],
        ),
        (
            "null IPv4 data",
            edit(CREATE_NETWORK, "/IPv4Data", Value::Null),
            &["exactly one IPv4 subnet"],
        ),
        (
            "two IPv4 data",
            edit(CREATE_NETWORK, "/IPv4Data", json!([first, second])),
            &["exactly one IPv4 subnet"],
        ),
        (
            "no network id",
            edit(CREATE_NETWORK, "/NetworkID", json!("")),
            &["NetworkID"],
        ),
        (
            "an IPv6 subnet",
            edit(
                CREATE_NETWORK,
                "/IPv4Data",
                json!([{"Pool":"fd00:77::/64"}]),
            ),
            &["subnet", "fd00:77::/64"],
        ),
        (
            "unknown option",
            generic(json!({"com.docker.network.bridge.name": "br-web"})),
            &["unknown option com.docker.network.bridge.name"],
        ),
        ("bad mtu", generic(json!({"mtu": "jumbo"})), &["mtu=jumbo"]),
        ("negative mtu", generic(json!({"mtu": "-1"})), &["mtu=-1"]),
        (
            "vni too large",
            generic(json!({"vni": "16777216"})),
            &["vni=16777216"],
        ),
        (
            "vni not a number",
            generic(json!({"vni": "blue"})),
            &["vni=blue"],
        ),
        (
            "bad masquerade",
            generic(json!({"masquerade": "maybe"})),
            &["masquerade=maybe", "true or false"],
        ),
    ];
    for (case, body, words) in cases {
        let driver = plugin(FakeSwitchd::default());
        let failure = refused(&driver, "NetworkDriver.CreateNetwork", &body);
        assert_eq!(failure.status, 500, "{case}");
        assert_mentions(&failure, words);
        assert_eq!(requests(&driver), [], "{case}: nothing may reach switchd");
    }
}

#[test]
fn create_network_refused_by_switchd_carries_its_message_and_names_nothing() {
    let other = network("blue", &"b".repeat(64), "10.77.0.0/16");
    let driver = plugin(FakeSwitchd::with(vec![other]));
    let failure = refused(&driver, "NetworkDriver.CreateNetwork", CREATE_NETWORK);
    assert_eq!(
        failure.message,
        "subnet 10.77.0.0/24 overlaps network blue's 10.77.0.0/16"
    );
    assert_eq!(requests(&driver).len(), 1);
}

// ---------------------------------------------------------------------------------------
// CreateEndpoint.

#[test]
fn create_endpoint_takes_over_the_ipam_reservation() {
    let mut web = docker_network();
    web.reservations = vec![reservation(
        &web,
        "10.77.0.2",
        "docker-ipam:5f1d2c3b4a596877",
    )];
    let driver = plugin(FakeSwitchd::with(vec![web]));
    assert_eq!(
        answer(&driver, "NetworkDriver.CreateEndpoint", CREATE_ENDPOINT),
        json!({"Interface": {}})
    );
    assert_eq!(
        requests(&driver),
        [
            inspect(),
            Request::AddressRelease {
                network: NETWORK_ID.to_string(),
                ip: ip("10.77.0.2"),
            },
            Request::AddressReserve {
                network: NETWORK_ID.to_string(),
                ip: Some(ip("10.77.0.2")),
                owner: ENDPOINT_ID.to_string(),
            },
        ]
    );
    let web = driver.switchd().network(NETWORK_ID);
    assert_eq!(
        web.reservations,
        [reservation(&web, "10.77.0.2", ENDPOINT_ID)]
    );
}

#[test]
fn create_endpoint_with_another_ipams_address_reserves_it() {
    let driver = plugin(FakeSwitchd::with(vec![docker_network()]));
    assert_eq!(
        answer(&driver, "NetworkDriver.CreateEndpoint", CREATE_ENDPOINT),
        json!({"Interface": {}})
    );
    assert_eq!(
        requests(&driver),
        [
            inspect(),
            Request::AddressReserve {
                network: NETWORK_ID.to_string(),
                ip: Some(ip("10.77.0.2")),
                owner: ENDPOINT_ID.to_string(),
            },
        ]
    );
}

#[test]
fn create_endpoint_again_keeps_its_own_reservation() {
    let mut web = docker_network();
    web.reservations = vec![reservation(&web, "10.77.0.2", ENDPOINT_ID)];
    let driver = plugin(FakeSwitchd::with(vec![web]));
    answer(&driver, "NetworkDriver.CreateEndpoint", CREATE_ENDPOINT);
    assert!(
        !requests(&driver)
            .iter()
            .any(|r| matches!(r, Request::AddressRelease { .. })),
        "{:?}",
        requests(&driver)
    );
    assert_eq!(driver.switchd().network(NETWORK_ID).reservations.len(), 1);
}

#[test]
fn create_endpoint_refuses_an_address_someone_else_reserved() {
    let mut web = docker_network();
    web.reservations = vec![reservation(&web, "10.77.0.2", "cni:7a7a7a7a")];
    let driver = plugin(FakeSwitchd::with(vec![web]));
    let failure = refused(&driver, "NetworkDriver.CreateEndpoint", CREATE_ENDPOINT);
    assert_mentions(&failure, &["10.77.0.2/24", "reserved", "cni:7a7a7a7a"]);
    assert_eq!(requests(&driver), [inspect()]);
}

#[test]
fn create_endpoint_refuses_an_address_outside_the_subnet() {
    let driver = plugin(FakeSwitchd::with(vec![docker_network()]));
    let body = edit(CREATE_ENDPOINT, "/Interface/Address", json!("10.78.0.2/24"));
    let failure = refused(&driver, "NetworkDriver.CreateEndpoint", &body);
    assert_mentions(&failure, &["10.78.0.2/24", "outside", "10.77.0.0/24"]);
    assert_eq!(requests(&driver), [inspect()], "no AddressReserve");
}

#[test]
fn create_endpoint_refuses_a_mac_of_its_own_but_takes_switchyards() {
    let driver = plugin(FakeSwitchd::with(vec![docker_network()]));
    let body = edit(
        CREATE_ENDPOINT,
        "/Interface/MacAddress",
        json!("02:42:ac:11:00:05"),
    );
    let failure = refused(&driver, "NetworkDriver.CreateEndpoint", &body);
    assert_mentions(
        &failure,
        &["02:42:ac:11:00:05", "02:42:0a:4d:00:02", "--mac-address"],
    );
    assert_eq!(requests(&driver), [inspect()], "no AddressReserve");

    // The MAC switchyard derives from the address anyway is fine.
    let body = edit(
        CREATE_ENDPOINT,
        "/Interface/MacAddress",
        json!("02:42:0a:4d:00:02"),
    );
    assert_eq!(
        answer(&driver, "NetworkDriver.CreateEndpoint", &body),
        json!({"Interface": {}})
    );
}

#[test]
fn create_endpoint_refuses_a_missing_or_unusable_address() {
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "no Interface",
            edit(CREATE_ENDPOINT, "/Interface", Value::Null),
            &["without an address", "--ipam-driver"],
        ),
        (
            "empty address",
            edit(CREATE_ENDPOINT, "/Interface/Address", json!("")),
            &["without an address"],
        ),
        (
            "null address",
            edit(CREATE_ENDPOINT, "/Interface/Address", Value::Null),
            &["without an address"],
        ),
        (
            "IPv6 address",
            edit(
                CREATE_ENDPOINT,
                "/Interface/AddressIPv6",
                json!("fd00:77::2/64"),
            ),
            &["IPv4 only"],
        ),
        (
            "no prefix",
            edit(CREATE_ENDPOINT, "/Interface/Address", json!("10.77.0.2")),
            &["\"10.77.0.2\"", "prefix"],
        ),
    ];
    for (case, body, words) in cases {
        let driver = plugin(FakeSwitchd::with(vec![docker_network()]));
        let failure = refused(&driver, "NetworkDriver.CreateEndpoint", &body);
        assert_mentions(&failure, words);
        assert_eq!(requests(&driver), [inspect()], "{case}: no AddressReserve");
    }
}

#[test]
fn create_endpoint_in_an_unknown_network_says_so() {
    let driver = plugin(FakeSwitchd::default());
    let failure = refused(&driver, "NetworkDriver.CreateEndpoint", CREATE_ENDPOINT);
    assert_eq!(failure.message, format!("no network {NETWORK_ID}"));
    assert_eq!(requests(&driver), [inspect()]);
}

// ---------------------------------------------------------------------------------------
// Join (its refusals only: its success configures a TAP in a real namespace).

#[test]
fn join_without_a_reservation_or_endpoint_is_refused_before_attaching() {
    let driver = plugin(FakeSwitchd::with(vec![docker_network()]));
    let failure = refused(&driver, "NetworkDriver.Join", JOIN);
    assert_mentions(
        &failure,
        &["endpoint 0e26f370b562", "no address", "network web"],
    );
    assert_eq!(requests(&driver), [inspect()], "no Attach");
}

#[test]
fn join_in_an_unknown_network_is_refused_before_attaching() {
    let driver = plugin(FakeSwitchd::default());
    let failure = refused(&driver, "NetworkDriver.Join", JOIN);
    assert_eq!(failure.message, format!("no network {NETWORK_ID}"));
    assert_eq!(requests(&driver), [inspect()], "no Attach");
}

// ---------------------------------------------------------------------------------------
// DeleteEndpoint and DeleteNetwork.

#[test]
fn delete_endpoint_removes_its_port() {
    let mut web = docker_network();
    web.endpoints = vec![endpoint(&web, "10.77.0.2", 7, ENDPOINT_ID)];
    let driver = plugin(FakeSwitchd::with(vec![web]));
    assert_eq!(
        answer(&driver, "NetworkDriver.DeleteEndpoint", DELETE_ENDPOINT),
        json!({})
    );
    assert_eq!(
        requests(&driver),
        [
            inspect(),
            Request::PortDel {
                port: "7".to_string()
            }
        ]
    );
    assert_eq!(driver.switchd().network(NETWORK_ID).endpoints, []);
}

#[test]
fn delete_endpoint_before_join_releases_its_reservation() {
    let mut web = docker_network();
    web.reservations = vec![
        reservation(&web, "10.77.0.2", ENDPOINT_ID),
        reservation(&web, "10.77.0.3", "docker-ipam:00112233aabbccdd"),
    ];
    let driver = plugin(FakeSwitchd::with(vec![web]));
    assert_eq!(
        answer(&driver, "NetworkDriver.DeleteEndpoint", DELETE_ENDPOINT),
        json!({})
    );
    assert_eq!(
        requests(&driver),
        [
            inspect(),
            Request::AddressRelease {
                network: NETWORK_ID.to_string(),
                ip: ip("10.77.0.2"),
            }
        ]
    );
    let web = driver.switchd().network(NETWORK_ID);
    assert_eq!(
        web.reservations,
        [reservation(
            &web,
            "10.77.0.3",
            "docker-ipam:00112233aabbccdd"
        )],
        "another endpoint's reservation stays"
    );
}

#[test]
fn delete_endpoint_is_idempotent() {
    // Unknown network: nothing to do.
    let driver = plugin(FakeSwitchd::default());
    assert_eq!(
        answer(&driver, "NetworkDriver.DeleteEndpoint", DELETE_ENDPOINT),
        json!({})
    );
    assert_eq!(requests(&driver), [inspect()]);

    // Known network, endpoint already gone: nothing to remove.
    let driver = plugin(FakeSwitchd::with(vec![docker_network()]));
    assert_eq!(
        answer(&driver, "NetworkDriver.DeleteEndpoint", DELETE_ENDPOINT),
        json!({})
    );
    assert_eq!(requests(&driver), [inspect()]);
}

#[test]
fn delete_network_removes_it_and_a_missing_one_is_fine() {
    let driver = plugin(FakeSwitchd::with(vec![docker_network()]));
    assert_eq!(
        answer(&driver, "NetworkDriver.DeleteNetwork", DELETE_NETWORK),
        json!({})
    );
    assert_eq!(requests(&driver), [remove_network()]);
    assert_eq!(
        answer(&driver, "NetworkDriver.DeleteNetwork", DELETE_NETWORK),
        json!({})
    );
    assert_eq!(requests(&driver), [remove_network(), remove_network()]);
}

#[test]
fn delete_network_in_use_carries_switchds_message() {
    let mut web = docker_network();
    web.endpoints = vec![endpoint(&web, "10.77.0.2", 7, ENDPOINT_ID)];
    let driver = plugin(FakeSwitchd::with(vec![web]));
    let failure = refused(&driver, "NetworkDriver.DeleteNetwork", DELETE_NETWORK);
    assert_eq!(
        failure,
        Failure {
            status: 500,
            message: "network web has 1 endpoints; remove them first".to_string(),
        }
    );
    assert_eq!(driver.switchd().network(NETWORK_ID).endpoints.len(), 1);
}

// ---------------------------------------------------------------------------------------
// The IPAM driver.

#[test]
fn request_pool_with_a_subnet_needs_no_switchd() {
    let driver = plugin(FakeSwitchd::default());
    assert_eq!(
        answer(&driver, "IpamDriver.RequestPool", REQUEST_POOL),
        json!({"PoolID": "10.77.0.0/24", "Pool": "10.77.0.0/24", "Data": {}})
    );
    assert_eq!(requests(&driver), []);
}

#[test]
fn request_pool_without_a_subnet_asks_switchd_for_one() {
    let driver = plugin(FakeSwitchd::default());
    let body = edit(REQUEST_POOL, "/Pool", json!(""));
    assert_eq!(
        answer(&driver, "IpamDriver.RequestPool", &body),
        json!({"PoolID": "10.99.0.0/24", "Pool": "10.99.0.0/24", "Data": {}})
    );
    assert_eq!(
        requests(&driver),
        [Request::SubnetSuggest { internal: false }]
    );
}

#[test]
fn request_pool_refuses_v6_and_bad_subnets() {
    let driver = plugin(FakeSwitchd::default());
    let v6 = r#"{"AddressSpace":"switchyard","Pool":"","SubPool":"","Options":{},"V6":true}"#;
    assert_mentions(
        &refused(&driver, "IpamDriver.RequestPool", v6),
        &["IPv4 only", "--ipv6"],
    );
    let bad = edit(REQUEST_POOL, "/Pool", json!("10.77.0.0"));
    assert_mentions(
        &refused(&driver, "IpamDriver.RequestPool", &bad),
        &["\"10.77.0.0\""],
    );
    let bad = edit(REQUEST_POOL, "/SubPool", json!("half"));
    assert_mentions(
        &refused(&driver, "IpamDriver.RequestPool", &bad),
        &["ip range", "\"half\""],
    );
    assert_eq!(requests(&driver), []);
}

#[test]
fn request_address_for_the_gateway_reserves_nothing() {
    // The network does not exist yet when Docker asks for its gateway.
    let driver = plugin(FakeSwitchd::default());
    assert_eq!(
        answer(&driver, "IpamDriver.RequestAddress", REQUEST_GATEWAY),
        json!({"Address": "10.77.0.1/24", "Data": {}})
    );
    let chosen = edit(REQUEST_GATEWAY, "/Address", json!("10.77.0.254"));
    assert_eq!(
        answer(&driver, "IpamDriver.RequestAddress", &chosen),
        json!({"Address": "10.77.0.254/24", "Data": {}})
    );
    assert_eq!(requests(&driver), []);
}

#[test]
fn request_address_for_a_container_reserves_it_for_docker_ipam() {
    let driver = plugin(FakeSwitchd::with(vec![docker_network()]));
    assert_eq!(
        answer(&driver, "IpamDriver.RequestAddress", REQUEST_ADDRESS),
        json!({"Address": "10.77.0.2/24", "Data": {}})
    );
    let sent = requests(&driver);
    let [Request::NetworkList, Request::AddressReserve {
        network,
        ip: None,
        owner,
    }] = sent.as_slice()
    else {
        panic!("{sent:?}");
    };
    assert_eq!(network, NETWORK_ID);
    assert!(owner.starts_with("docker-ipam:"), "{owner}");
    assert!(owner.len() > "docker-ipam:".len(), "{owner}");
    let web = driver.switchd().network(NETWORK_ID);
    assert_eq!(web.reservations, [reservation(&web, "10.77.0.2", owner)]);

    // Another container gets another address, under another owner.
    answer(&driver, "IpamDriver.RequestAddress", REQUEST_ADDRESS);
    let web = driver.switchd().network(NETWORK_ID);
    assert_eq!(web.reservations.len(), 2);
    assert_eq!(web.reservations[1].ip, ip("10.77.0.3"));
    assert_ne!(&web.reservations[1].owner, owner);
}

#[test]
fn request_address_of_a_chosen_address_asks_for_that_one() {
    let driver = plugin(FakeSwitchd::with(vec![docker_network()]));
    let body = edit(REQUEST_ADDRESS, "/Address", json!("10.77.0.50"));
    assert_eq!(
        answer(&driver, "IpamDriver.RequestAddress", &body),
        json!({"Address": "10.77.0.50/24", "Data": {}})
    );
    assert!(matches!(
        requests(&driver).as_slice(),
        [Request::NetworkList, Request::AddressReserve { ip: Some(wanted), .. }] if *wanted == ip("10.77.0.50")
    ));
    let taken = refused(&driver, "IpamDriver.RequestAddress", &body);
    assert_eq!(taken.message, "10.77.0.50 is taken in network web");
}

#[test]
fn request_address_before_the_network_exists_is_refused() {
    let driver = plugin(FakeSwitchd::default());
    let failure = refused(&driver, "IpamDriver.RequestAddress", REQUEST_ADDRESS);
    assert_mentions(&failure, &["no switchyard network has subnet 10.77.0.0/24"]);
    assert_eq!(requests(&driver), [Request::NetworkList]);
}

#[test]
fn release_address_gives_the_reservation_back() {
    let mut web = docker_network();
    web.reservations = vec![reservation(
        &web,
        "10.77.0.2",
        "docker-ipam:5f1d2c3b4a596877",
    )];
    let driver = plugin(FakeSwitchd::with(vec![web]));
    assert_eq!(
        answer(&driver, "IpamDriver.ReleaseAddress", RELEASE_ADDRESS),
        json!({})
    );
    assert_eq!(
        requests(&driver),
        [
            Request::NetworkList,
            Request::AddressRelease {
                network: NETWORK_ID.to_string(),
                ip: ip("10.77.0.2"),
            }
        ]
    );
    assert_eq!(driver.switchd().network(NETWORK_ID).reservations, []);
}

#[test]
fn release_address_of_the_gateway_releases_nothing() {
    let driver = plugin(FakeSwitchd::with(vec![docker_network()]));
    let body = edit(RELEASE_ADDRESS, "/Address", json!("10.77.0.1"));
    assert_eq!(
        answer(&driver, "IpamDriver.ReleaseAddress", &body),
        json!({})
    );
    assert_eq!(requests(&driver), [Request::NetworkList], "only a lookup");
}

#[test]
fn release_address_of_something_already_gone_is_fine() {
    // No reservation any more (DeleteEndpoint released the endpoint's).
    let driver = plugin(FakeSwitchd::with(vec![docker_network()]));
    assert_eq!(
        answer(&driver, "IpamDriver.ReleaseAddress", RELEASE_ADDRESS),
        json!({})
    );
    assert_eq!(requests(&driver).len(), 2);

    // No network any more (Docker releases the gateway after DeleteNetwork).
    let driver = plugin(FakeSwitchd::default());
    let gateway = edit(RELEASE_ADDRESS, "/Address", json!("10.77.0.1"));
    assert_eq!(
        answer(&driver, "IpamDriver.ReleaseAddress", &gateway),
        json!({})
    );
    assert_eq!(requests(&driver), [Request::NetworkList]);
}

#[test]
fn release_address_refuses_what_is_not_an_address() {
    let driver = plugin(FakeSwitchd::with(vec![docker_network()]));
    let body = edit(RELEASE_ADDRESS, "/Address", json!("10.77.0.2/24"));
    assert_mentions(
        &refused(&driver, "IpamDriver.ReleaseAddress", &body),
        &["\"10.77.0.2/24\""],
    );
    assert_eq!(requests(&driver), []);
}

// ---------------------------------------------------------------------------------------
// Published ports.

/// ProgramExternalConnectivity with `-p` bindings as Docker 20.10 sends them.
fn program(bindings: Value) -> String {
    edit(
        PROGRAM_EXTERNAL_CONNECTIVITY,
        "/Options/com.docker.network.portmap",
        bindings,
    )
}

fn publish_request(port: u32, published: &[&str]) -> Request {
    Request::PortPublish {
        port: port.to_string(),
        published: published.iter().map(|m| m.parse().unwrap()).collect(),
        add: false,
    }
}

#[test]
fn program_external_connectivity_publishes_the_ipv4_bindings() {
    let mut web = docker_network();
    web.endpoints = vec![endpoint(&web, "10.77.0.2", 7, ENDPOINT_ID)];
    let driver = plugin(FakeSwitchd::with(vec![web]));
    // `-p 8080:80 -p 127.0.0.1:5353:53/udp`: Docker adds an IPv6 twin of the first.
    let body = program(json!([
        {"Proto":6,"IP":"","Port":80,"HostIP":"0.0.0.0","HostPort":8080,"HostPortEnd":8080},
        {"Proto":6,"IP":"","Port":80,"HostIP":"::","HostPort":8080,"HostPortEnd":8080},
        {"Proto":17,"IP":"","Port":53,"HostIP":"127.0.0.1","HostPort":5353,"HostPortEnd":5353}
    ]));
    assert_eq!(
        answer(&driver, "NetworkDriver.ProgramExternalConnectivity", &body),
        json!({})
    );
    assert_eq!(
        requests(&driver),
        [
            inspect(),
            publish_request(7, &["8080:80", "127.0.0.1:5353:53/udp"])
        ]
    );
    assert_eq!(
        driver.switchd().network(NETWORK_ID).endpoints[0]
            .published
            .len(),
        2
    );

    // Revoke unpublishes; a second revoke has nothing to do.
    driver.switchd().clear_requests();
    answer(
        &driver,
        "NetworkDriver.RevokeExternalConnectivity",
        DELETE_ENDPOINT,
    );
    assert_eq!(requests(&driver), [inspect(), publish_request(7, &[])]);
    driver.switchd().clear_requests();
    answer(
        &driver,
        "NetworkDriver.RevokeExternalConnectivity",
        DELETE_ENDPOINT,
    );
    assert_eq!(requests(&driver), [inspect()]);
}

#[test]
fn program_external_connectivity_refuses_what_switchyard_cannot_publish() {
    let mut web = docker_network();
    web.endpoints = vec![endpoint(&web, "10.77.0.2", 7, ENDPOINT_ID)];
    let driver = plugin(FakeSwitchd::with(vec![web]));
    for (bindings, words) in [
        (
            json!([{"Proto":132,"Port":80,"HostIP":"","HostPort":8080}]),
            &["protocol 132", "tcp and udp"][..],
        ),
        (
            json!([{"Proto":6,"Port":80,"HostIP":"","HostPort":0,"HostPortEnd":0}]),
            &["no host port", "-p 8080:80"][..],
        ),
        (
            json!([{"Proto":6,"Port":80,"HostIP":"x","HostPort":1}]),
            &["not an address"][..],
        ),
        (
            json!([{"Proto":"tcp"}]),
            &["cannot read a published port"][..],
        ),
    ] {
        let failure = refused(
            &driver,
            "NetworkDriver.ProgramExternalConnectivity",
            &program(bindings),
        );
        assert_mentions(&failure, words);
    }
    assert_eq!(requests(&driver), [], "nothing reached switchd");

    // An endpoint that is not ours cannot publish; switchd's refusal comes through.
    let other = edit(
        &program(json!([{"Proto":6,"Port":80,"HostPort":8080}])),
        "/EndpointID",
        json!("ab12"),
    );
    let failure = refused(&driver, "NetworkDriver.ProgramExternalConnectivity", &other);
    assert_mentions(&failure, &["endpoint ab12", "not attached to network web"]);
}

#[test]
fn exposed_ports_alone_or_an_empty_port_map_need_nothing() {
    let driver = plugin(FakeSwitchd::default());
    for body in [
        PROGRAM_EXTERNAL_CONNECTIVITY.to_string(),
        program(json!([])),
        edit(PROGRAM_EXTERNAL_CONNECTIVITY, "/Options", Value::Null),
    ] {
        assert_eq!(
            answer(&driver, "NetworkDriver.ProgramExternalConnectivity", &body),
            json!({})
        );
    }
    assert_eq!(requests(&driver), []);
    // Revoking in a network that is gone is fine.
    answer(
        &driver,
        "NetworkDriver.RevokeExternalConnectivity",
        DELETE_ENDPOINT,
    );
}

// ---------------------------------------------------------------------------------------
// switchd not running.

#[test]
fn without_switchd_every_call_that_needs_it_says_so_at_once() {
    let driver = plugin(FakeSwitchd::down());
    let calls = [
        ("NetworkDriver.CreateNetwork", CREATE_NETWORK.to_string()),
        ("NetworkDriver.DeleteNetwork", DELETE_NETWORK.to_string()),
        ("NetworkDriver.CreateEndpoint", CREATE_ENDPOINT.to_string()),
        ("NetworkDriver.DeleteEndpoint", DELETE_ENDPOINT.to_string()),
        ("NetworkDriver.Join", JOIN.to_string()),
        (
            "IpamDriver.RequestPool",
            edit(REQUEST_POOL, "/Pool", json!("")),
        ),
        ("IpamDriver.RequestAddress", REQUEST_ADDRESS.to_string()),
        ("IpamDriver.ReleaseAddress", RELEASE_ADDRESS.to_string()),
    ];
    for (method, body) in calls {
        driver.switchd().clear_requests();
        let started = Instant::now();
        let failure = refused(&driver, method, &body);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{method} waited"
        );
        assert_eq!(requests(&driver).len(), 1, "{method} must not retry");
        assert_eq!(failure.status, 500, "{method}");
        assert_mentions(
            &failure,
            &["switchd is not running", "start it with `switchd"],
        );
    }
}

#[test]
fn without_switchd_the_calls_that_need_none_still_work() {
    let driver = plugin(FakeSwitchd::down());
    answer(&driver, "Plugin.Activate", "");
    answer(&driver, "NetworkDriver.GetCapabilities", "");
    answer(&driver, "IpamDriver.RequestPool", REQUEST_POOL);
    answer(&driver, "IpamDriver.RequestAddress", REQUEST_GATEWAY);
    answer(&driver, "NetworkDriver.Leave", DELETE_ENDPOINT);
    answer(
        &driver,
        "NetworkDriver.ProgramExternalConnectivity",
        PROGRAM_EXTERNAL_CONNECTIVITY,
    );
    assert_eq!(requests(&driver), []);
}

// ---------------------------------------------------------------------------------------
// Reading bodies.

#[test]
fn bodies_with_nulls_parse() {
    let driver = plugin(FakeSwitchd::default());
    let create = r#"{"NetworkID":"a08a0fcbdeafd3c1b3a4b495b9a9c9d96850f08946b52bc0622347d3b6e73b78","Options":null,"IPv4Data":[{"AddressSpace":null,"Pool":"10.77.0.0/24","Gateway":null,"AuxAddresses":null}],"IPv6Data":null}"#;
    answered(&driver, "NetworkDriver.CreateNetwork", create);
    let config = sent_config(&driver);
    assert_eq!(
        (config.subnet, config.gateway),
        (Some(net("10.77.0.0/24")), None)
    );
    assert!(!config.masquerade && config.mtu.is_none());

    let pool = r#"{"AddressSpace":"switchyard","Pool":"10.78.0.0/24","SubPool":null,"Options":null,"V6":null}"#;
    answer(&driver, "IpamDriver.RequestPool", pool);
    let endpoint = r#"{"NetworkID":"a08a0fcbdeafd3c1b3a4b495b9a9c9d96850f08946b52bc0622347d3b6e73b78","EndpointID":"0e26f370b56256f2c7dc5a6c5b4a43cbdfb8a61961fcd697e65896ec1579f9e8","Interface":{"Address":"10.77.0.2/24","AddressIPv6":null,"MacAddress":null},"Options":null}"#;
    answer(&driver, "NetworkDriver.CreateEndpoint", endpoint);
    let release = r#"{"PoolID":"10.77.0.0/24","Address":"10.77.0.2","Options":null}"#;
    answer(&driver, "IpamDriver.ReleaseAddress", release);
    answer(&driver, "NetworkDriver.DeleteEndpoint", DELETE_ENDPOINT);
}

#[test]
fn bodies_as_go_encodes_them_end_in_a_newline() {
    let driver = plugin(FakeSwitchd::default());
    answer(
        &driver,
        "IpamDriver.RequestPool",
        &format!("{REQUEST_POOL}\n"),
    );
    answered(
        &driver,
        "NetworkDriver.CreateNetwork",
        &format!("{CREATE_NETWORK}\n"),
    );
    assert_eq!(requests(&driver).len(), 1);
}

#[test]
fn empty_bodies_parse_as_empty_requests() {
    let driver = plugin(FakeSwitchd::default());
    for body in ["", "\n", " \r\n"] {
        // Read as `{}`, then refused for what is missing, not for the body.
        let failure = refused(&driver, "NetworkDriver.CreateNetwork", body);
        assert_eq!(failure.message, "CreateNetwork without a NetworkID");
        let failure = refused(&driver, "IpamDriver.RequestAddress", body);
        assert_mentions(&failure, &["pool \"\""]);
        // An empty RequestPool asks for a subnet.
        answer(&driver, "IpamDriver.RequestPool", body);
    }
    assert_eq!(
        requests(&driver),
        vec![Request::SubnetSuggest { internal: false }; 3]
    );
}

#[test]
fn a_body_that_is_not_json_is_refused_naming_the_call() {
    let driver = plugin(FakeSwitchd::default());
    for body in ["{", "null", r#"{"NetworkID":42}"#] {
        let failure = refused(&driver, "NetworkDriver.DeleteNetwork", body);
        assert_eq!(failure.status, 500);
        assert_mentions(
            &failure,
            &["NetworkDriver.DeleteNetwork: cannot read the request"],
        );
    }
    assert_eq!(requests(&driver), []);
}

#[test]
fn a_network_id_that_is_not_hex_is_refused_not_a_panic() {
    let driver = plugin(FakeSwitchd::default());
    // 13 bytes: the 12th byte is inside the last 'é'.
    let body = edit(CREATE_NETWORK, "/NetworkID", json!("aéééééé"));
    let answer =
        std::panic::catch_unwind(|| driver.handle("NetworkDriver.CreateNetwork", body.as_bytes()));
    assert!(matches!(answer, Ok(Err(_))), "CreateNetwork panicked");
}

// ---------------------------------------------------------------------------------------
// The follow-up that names a network.

#[test]
fn name_network_renames_it_by_dockers_id() {
    let driver = plugin(FakeSwitchd::with(vec![network(
        &provisional_name(NETWORK_ID),
        NETWORK_ID,
        "10.77.0.0/24",
    )]));
    let renamed = driver.name_network(NETWORK_ID, "web").unwrap();
    assert_eq!(renamed.name, "web");
    assert_eq!(
        requests(&driver),
        [Request::NetworkRename {
            name: NETWORK_ID.to_string(),
            new_name: "web".to_string(),
        }]
    );
}

// ---------------------------------------------------------------------------------------
// What a plugin start picks up from a previous run.

#[test]
fn unfinished_finds_unnamed_networks_and_taps_never_followed_into_their_containers() {
    const OTHER_ENDPOINT: &str = "77aa0fcbdeafd3c1b3a4b495b9a9c9d96850f08946b52bc0622347d3b6e73b78";
    const THIRD_ENDPOINT: &str = "88bb0fcbdeafd3c1b3a4b495b9a9c9d96850f08946b52bc0622347d3b6e73b78";
    let unnamed_id = "b1".repeat(32);
    let mut named = docker_network();
    // Followed into its container: nothing to do.
    named
        .endpoints
        .push(endpoint(&named, "10.77.0.2", 1, ENDPOINT_ID));
    // Still where a previous plugin (PID 64) made it, as Join named it.
    let mut left = endpoint(&named, "10.77.0.3", 2, OTHER_ENDPOINT);
    left.netns = PathBuf::from("/proc/64/ns/net");
    left.ifname = tap_name(OTHER_ENDPOINT);
    named.endpoints.push(left);
    // In the container, but recorded before Docker renamed it.
    let mut unrenamed = endpoint(&named, "10.77.0.4", 3, THIRD_ENDPOINT);
    unrenamed.ifname = tap_name(THIRD_ENDPOINT);
    named.endpoints.push(unrenamed);
    // An nsutil namespace in a process's namespace is none of the plugin's business.
    let mut nsutil = endpoint(&named, "10.77.0.5", 4, "legacy");
    nsutil.port_name = "legacy/eth0".to_string();
    nsutil.netns = PathBuf::from("/proc/99/ns/net");
    named.endpoints.push(nsutil);
    let mut unnamed = network(&provisional_name(&unnamed_id), &unnamed_id, "10.78.0.0/24");
    // In the namespace --netns names.
    let mut in_dockerd = endpoint(&unnamed, "10.78.0.2", 5, ENDPOINT_ID);
    in_dockerd.netns = PathBuf::from("/nonexistent/switchyard-test/netns");
    unnamed.endpoints.push(in_dockerd);
    let driver = plugin(FakeSwitchd::with(vec![named, unnamed]));

    let follow_ups = driver.unfinished().unwrap();
    let resume =
        |port: u32, endpoint_id: &str, network_id: &str, ifname: String| FollowUp::ResumeMove {
            port: port.to_string(),
            ifname,
            network_ids: vec![network_id.to_string()],
            endpoint_id: endpoint_id.to_string(),
        };
    assert_eq!(
        follow_ups,
        [
            resume(2, OTHER_ENDPOINT, NETWORK_ID, tap_name(OTHER_ENDPOINT)),
            resume(3, THIRD_ENDPOINT, NETWORK_ID, tap_name(THIRD_ENDPOINT)),
            FollowUp::NameNetwork {
                network_id: unnamed_id.clone(),
            },
            resume(5, ENDPOINT_ID, &unnamed_id, "eth0".to_string()),
        ]
    );
    assert_eq!(requests(&driver), [Request::NetworkList]);
}

#[test]
fn unfinished_asks_a_global_network_by_dockers_ids_too() {
    let mut global = network("shared", &"c2".repeat(32), "10.79.0.0/24");
    global.local_ids = vec![NETWORK_ID.to_string()];
    let mut left = endpoint(&global, "10.79.0.2", 7, ENDPOINT_ID);
    left.netns = PathBuf::from("/proc/64/ns/net");
    global.endpoints.push(left);
    let driver = plugin(FakeSwitchd::with(vec![global]));
    assert_eq!(
        driver.unfinished().unwrap(),
        [FollowUp::ResumeMove {
            port: "7".to_string(),
            ifname: "eth0".to_string(),
            network_ids: vec!["c2".repeat(32), NETWORK_ID.to_string()],
            endpoint_id: ENDPOINT_ID.to_string(),
        }]
    );
}

#[test]
fn unfinished_without_switchd_says_so() {
    let driver = plugin(FakeSwitchd::down());
    let failure = driver.unfinished().unwrap_err();
    assert_mentions(&failure, &["switchd is not running"]);
}
