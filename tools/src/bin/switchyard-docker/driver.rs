//! Docker's NetworkDriver and IpamDriver calls, turned into switchd control requests.
//!
//! The plugin keeps no state of its own that a restart could lose: networks are
//! switchyard networks whose id is Docker's network id, an endpoint's address is a
//! reservation (before Join) or an endpoint (after) whose owner or container id is Docker's
//! endpoint id, and a pool is its subnet. A call after a plugin restart finds everything in
//! switchd. The one thing held in memory is the sub-pool (`--ip-range`) that RequestPool
//! saw, between it and the CreateNetwork of the same `docker network create`.
//!
//! Each handler takes the call's body and answers with the JSON Docker expects, or a
//! [`Failure`] that the server sends as `{"Err": ...}`. What has to wait until after the
//! answer (Docker moves the TAP into the container only once Join has answered; the
//! network's name is in Docker's API only once CreateNetwork has answered) comes back as
//! [`FollowUp`]s, which the server runs in the background.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;

use ipnet::Ipv4Net;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use switchyard::control::{
    AttachRequest, Attached, ControlError, EndpointInfo, ErrorCode, NetworkInfo, PortInfo, Request,
    Reserved, Suggested,
};
use switchyard::network::{NetworkConfig, Scope};
use switchyard::portmap::{PortMapping, Protocol};
use switchyard::wire::MacAddr;
use switchyard::PortMode;
use switchyard_encap::Vni;
use switchyard_os::client::{Client, ClientError};

use crate::protocol::{
    CreateNetwork, Endpoint, NetworkOnly, PoolAddress, PortBinding, RequestPool, ADDRESS_TYPE,
    GATEWAY_TYPE, GENERIC_OPTIONS, INTERNAL_OPTION, PORT_MAP,
};

/// A call that failed: the HTTP status and the message Docker shows.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub message: String,
}

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure {
            status: 500,
            message: message.into(),
        }
    }

    /// Something inside the plugin went wrong.
    pub fn internal(message: impl Into<String>) -> Failure {
        Failure::new(message)
    }

    /// The call is not implemented (Docker accepts that for the external connectivity
    /// calls only).
    pub fn not_found(method: &str) -> Failure {
        Failure {
            status: 404,
            message: format!("{method} is not implemented by switchyard"),
        }
    }
}

/// Work that must wait until Docker has had the answer.
#[derive(Debug, PartialEq, Eq)]
pub enum FollowUp {
    /// Learn the network's name from Docker's API and give the switchyard network that
    /// name (it was created as `docker-<id>`).
    NameNetwork { network_id: String },
    /// Wait until Docker has moved the TAP `ifname` out of our namespace, then tell
    /// switchd where it went.
    TrackMove {
        port: String,
        ifname: String,
        sandbox: PathBuf,
    },
    /// A TAP that a previous run of the plugin made but did not see into its container
    /// (it stopped first): learn the container's sandbox from Docker's API (the endpoint
    /// `endpoint_id` on the network Docker knows by one of `network_ids`), then as
    /// [`FollowUp::TrackMove`].
    ResumeMove {
        port: String,
        ifname: String,
        network_ids: Vec<String>,
        endpoint_id: String,
    },
}

/// Where a TAP is, after Join.
#[derive(Debug)]
pub enum Moved {
    /// In the sandbox; switchd knows.
    There(PortInfo),
    /// Not in the sandbox yet (or the sandbox is not mounted yet): why.
    NotYet(String),
    /// The port is gone.
    Gone,
}

/// How the plugin talks to switchd (a trait, so the handlers are tested without one).
pub trait Switchd: Send + Sync {
    fn call(&self, request: &Request) -> Result<Value, ClientError>;
}

/// switchd at a control socket.
pub struct SocketSwitchd {
    pub path: PathBuf,
}

impl Switchd for SocketSwitchd {
    fn call(&self, request: &Request) -> Result<Value, ClientError> {
        Client::connect(&self.path)?.call(request)
    }
}

/// What the driver needs to know about its surroundings.
pub struct Settings {
    /// The network namespace dockerd runs in, where TAPs are made for Join (Docker moves
    /// them from there into the container).
    pub docker_netns: PathBuf,
}

pub struct Driver<S> {
    switchd: S,
    settings: Settings,
    /// Sub-pools RequestPool saw, by pool id, until CreateNetwork takes them.
    sub_pools: Mutex<HashMap<String, Ipv4Net>>,
}

type Answer = Result<(Value, Vec<FollowUp>), Failure>;

fn parse<T: DeserializeOwned>(method: &str, body: &[u8]) -> Result<T, Failure> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|err| Failure::new(format!("{method}: cannot read the request: {err}")))
}

fn cidr(field: &str, text: &str) -> Result<Ipv4Net, Failure> {
    text.parse::<Ipv4Net>().map_err(|_| {
        Failure::new(format!(
            "{field} {text:?} is not an IPv4 address with a prefix (switchyard networks are IPv4)"
        ))
    })
}

/// The switchyard name a Docker network starts with, until its own is known.
pub fn provisional_name(network_id: &str) -> String {
    format!("docker-{}", &network_id[..network_id.len().min(12)])
}

/// The TAP Join makes for an endpoint (at most 15 bytes).
pub fn tap_name(endpoint_id: &str) -> String {
    format!("sy{}", &endpoint_id[..endpoint_id.len().min(11)])
}

impl<S: Switchd> Driver<S> {
    pub fn new(switchd: S, settings: Settings) -> Driver<S> {
        Driver {
            switchd,
            settings,
            sub_pools: Mutex::new(HashMap::new()),
        }
    }

    #[cfg(test)]
    pub fn switchd(&self) -> &S {
        &self.switchd
    }

    /// A request to switchd, its answer decoded. A refusal becomes Docker's error with
    /// switchd's message; switchd not running says so and what to start.
    fn ask<T: DeserializeOwned>(&self, request: &Request) -> Result<T, Failure> {
        self.try_ask(request)?
            .map_err(|err| Failure::new(err.message))
    }

    /// Like [`Driver::ask`], with switchd's refusal kept apart for the caller to look at.
    fn try_ask<T: DeserializeOwned>(
        &self,
        request: &Request,
    ) -> Result<Result<T, ControlError>, Failure> {
        match self.switchd.call(request) {
            Ok(value) => serde_json::from_value(value)
                .map(Ok)
                .map_err(|err| Failure::new(format!("switchd's answer is not understood: {err}"))),
            Err(ClientError::Refused(err)) => Ok(Err(err)),
            Err(err) => Err(client_failure(err)),
        }
    }

    /// Answers one call. `method` is the path without its leading `/`.
    pub fn handle(&self, method: &str, body: &[u8]) -> Answer {
        check_ids(method, body)?;
        let plain = |value: Value| Ok((value, Vec::new()));
        match method {
            "Plugin.Activate" => plain(json!({"Implements": ["NetworkDriver", "IpamDriver"]})),
            "NetworkDriver.GetCapabilities" => {
                plain(json!({"Scope": "local", "ConnectivityScope": "local"}))
            }
            "NetworkDriver.CreateNetwork" => self.create_network(parse(method, body)?),
            "NetworkDriver.DeleteNetwork" => self.delete_network(parse(method, body)?),
            "NetworkDriver.CreateEndpoint" => self.create_endpoint(parse(method, body)?),
            "NetworkDriver.EndpointOperInfo" => plain(json!({"Value": {}})),
            "NetworkDriver.DeleteEndpoint" => self.delete_endpoint(parse(method, body)?),
            "NetworkDriver.Join" => self.join(parse(method, body)?),
            "NetworkDriver.Leave" => plain(json!({})),
            "NetworkDriver.DiscoverNew" | "NetworkDriver.DiscoverDelete" => plain(json!({})),
            "NetworkDriver.ProgramExternalConnectivity" => {
                let request: Endpoint = parse(method, body)?;
                let published = port_bindings(request.options.get(PORT_MAP))?;
                if published.is_empty() {
                    // Right after Join: nothing was published before either.
                    return plain(json!({}));
                }
                self.publish(&request, published)
            }
            "NetworkDriver.RevokeExternalConnectivity" => {
                self.publish(&parse(method, body)?, Vec::new())
            }
            "IpamDriver.GetCapabilities" => {
                plain(json!({"RequiresMACAddress": false, "RequiresRequestReplay": false}))
            }
            "IpamDriver.GetDefaultAddressSpaces" => plain(json!({
                "LocalDefaultAddressSpace": "switchyard",
                "GlobalDefaultAddressSpace": "switchyard-global"
            })),
            "IpamDriver.RequestPool" => self.request_pool(parse(method, body)?),
            "IpamDriver.ReleasePool" => {
                let request: PoolAddress = parse(method, body)?;
                self.sub_pools
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&request.pool_id);
                plain(json!({}))
            }
            "IpamDriver.RequestAddress" => self.request_address(parse(method, body)?),
            "IpamDriver.ReleaseAddress" => self.release_address(parse(method, body)?),
            other => Err(Failure::not_found(other)),
        }
    }

    fn create_network(&self, request: CreateNetwork) -> Answer {
        if request.network_id.is_empty() {
            return Err(Failure::new("CreateNetwork without a NetworkID"));
        }
        if !request.ipv6_data.is_empty() {
            return Err(Failure::new(
                "switchyard networks are IPv4 only; create the network without --ipv6",
            ));
        }
        let [data] = request.ipv4_data.as_slice() else {
            return Err(Failure::new(
                "a switchyard network has exactly one IPv4 subnet; give one --subnet",
            ));
        };
        let subnet = cidr("subnet", &data.pool)?;
        let gateway = match data.gateway.as_str() {
            "" => None,
            text => Some(cidr("gateway", text)?.addr()),
        };
        let mut config = NetworkConfig {
            name: provisional_name(&request.network_id),
            id: Some(request.network_id.clone()),
            subnet: Some(subnet),
            gateway,
            ip_range: self
                .sub_pools
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&subnet.to_string()),
            internal: request
                .options
                .get(INTERNAL_OPTION)
                .and_then(Value::as_bool)
                .unwrap_or(false),
            ..NetworkConfig::default()
        };
        if let Some(generic) = request
            .options
            .get(GENERIC_OPTIONS)
            .and_then(Value::as_object)
        {
            apply_options(&mut config, generic)?;
        }
        let global = config.scope == Scope::Global;
        let _: NetworkInfo = self.ask(&Request::NetworkCreate(config))?;
        // A global network has its cluster-wide name already.
        let follow_ups = if global {
            Vec::new()
        } else {
            vec![FollowUp::NameNetwork {
                network_id: request.network_id,
            }]
        };
        Ok((json!({}), follow_ups))
    }

    fn delete_network(&self, request: NetworkOnly) -> Answer {
        let removed: Result<NetworkInfo, ControlError> = self.try_ask(&Request::NetworkRemove {
            name: request.network_id,
        })?;
        // Gone already (a second DeleteNetwork, or removed by hand): nothing to do.
        removed
            .filter_missing(ErrorCode::NoSuchNetwork)
            .map_err(|err| Failure::new(err.message))?;
        Ok((json!({}), Vec::new()))
    }

    fn network(&self, network_id: &str) -> Result<NetworkInfo, Failure> {
        self.ask(&Request::NetworkInspect {
            name: network_id.to_string(),
        })
    }

    fn create_endpoint(&self, request: Endpoint) -> Answer {
        let network = self.network(&request.network_id)?;
        let interface = request.interface.unwrap_or_default();
        if !interface.address_ipv6.is_empty() {
            return Err(Failure::new("switchyard networks are IPv4 only"));
        }
        if interface.address.is_empty() {
            return Err(Failure::new(
                "CreateEndpoint without an address: create the network with an IPAM driver (--ipam-driver switchyard)",
            ));
        }
        let address = cidr("address", &interface.address)?;
        if !network.subnet.contains(&address.addr()) {
            return Err(Failure::new(format!(
                "address {address} is outside network {}'s subnet {}",
                network.name, network.subnet
            )));
        }
        let mac = MacAddr::from_ipv4(address.addr());
        if !interface.mac_address.is_empty() && interface.mac_address.parse() != Ok(mac) {
            return Err(Failure::new(format!(
                "a MAC of the container's own ({}) is not supported: switchyard gives {address} the MAC {mac}; run the container without --mac-address",
                interface.mac_address
            )));
        }
        // The address was reserved for Docker's IPAM (by us) or not at all (another IPAM):
        // reserve it for the endpoint itself, so Join finds it, even after a restart.
        if let Some(held) = network
            .reservations
            .iter()
            .find(|r| r.ip == address.addr() && r.owner != request.endpoint_id)
        {
            if !held.owner.starts_with(IPAM_OWNER) {
                return Err(Failure::new(format!(
                    "address {address} is reserved in network {} by {}",
                    network.name, held.owner
                )));
            }
            let _: Reserved = self.ask(&Request::AddressRelease {
                network: network.id.clone(),
                ip: address.addr(),
            })?;
        }
        let _: Reserved = self.ask(&Request::AddressReserve {
            network: network.id.clone(),
            ip: Some(address.addr()),
            owner: request.endpoint_id,
        })?;
        // The address came from Docker: the Interface answer stays empty (the protocol
        // refuses values it already has). The TAP gets the MAC in Join.
        Ok((json!({"Interface": {}}), Vec::new()))
    }

    fn delete_endpoint(&self, request: Endpoint) -> Answer {
        let found = self
            .try_ask::<NetworkInfo>(&Request::NetworkInspect {
                name: request.network_id.clone(),
            })?
            .filter_missing(ErrorCode::NoSuchNetwork)
            .map_err(|err| Failure::new(err.message))?;
        let Some(network) = found else {
            return Ok((json!({}), Vec::new()));
        };
        let owner = Some(request.endpoint_id.clone());
        if let Some(endpoint) = network.endpoints.iter().find(|e| e.container_id == owner) {
            let removed: Result<Value, ControlError> = self.try_ask(&Request::PortDel {
                port: endpoint.port.to_string(),
            })?;
            if let Err(err) = removed.filter_missing(ErrorCode::NoSuchPort) {
                return Err(Failure::new(err.message));
            }
        }
        if let Some(reserved) = network
            .reservations
            .iter()
            .find(|r| Some(&r.owner) == owner.as_ref())
        {
            let released: Result<Reserved, ControlError> =
                self.try_ask(&Request::AddressRelease {
                    network: network.id.clone(),
                    ip: reserved.ip,
                })?;
            if let Err(err) = released.filter_missing(ErrorCode::NoSuchEntry) {
                return Err(Failure::new(err.message));
            }
        }
        Ok((json!({}), Vec::new()))
    }

    fn join(&self, request: Endpoint) -> Answer {
        let network = self.network(&request.network_id)?;
        let owner = request.endpoint_id.clone();
        let address = match (
            network.reservations.iter().find(|r| r.owner == owner),
            network.endpoints.iter().find(|e| e.container_id.as_deref() == Some(owner.as_str())),
        ) {
            (Some(reserved), _) => reserved.ip,
            (None, Some(endpoint)) => endpoint.address.addr(),
            (None, None) => {
                return Err(Failure::new(format!(
                    "endpoint {} has no address in network {}: Docker did not create it through this plugin",
                    short(&owner),
                    network.name
                )))
            }
        };
        let ifname = tap_name(&owner);
        let attached: Attached = self.ask(&Request::Attach(AttachRequest {
            netns: self.settings.docker_netns.clone(),
            ifname: ifname.clone(),
            mode: PortMode::default(),
            label: Some(format!("{DOCKER_LABEL}{}", short(&owner))),
            network: Some(network.id.clone()),
            ip: Some(address),
            container_id: Some(owner),
            ..AttachRequest::default()
        }))?;
        let endpoint = attached
            .endpoint
            .ok_or_else(|| Failure::new("switchd made no endpoint"))?;
        // Docker sets neither the MTU nor (without --mac-address) the MAC: the TAP gets
        // them here, in dockerd's namespace, before Docker moves it.
        if let Err(err) = configure_tap(
            &self.settings.docker_netns,
            &ifname,
            endpoint.mac,
            endpoint.mtu,
        ) {
            let _ = self.switchd.call(&Request::PortDel {
                port: attached.port.id.to_string(),
            });
            return Err(Failure::new(format!(
                "cannot configure TAP {ifname}: {err:#}"
            )));
        }
        Ok((
            json!({
                "InterfaceName": {"SrcName": ifname, "DstPrefix": "eth"},
                "Gateway": endpoint.gateway.to_string(),
            }),
            vec![FollowUp::TrackMove {
                port: attached.port.id.to_string(),
                ifname,
                sandbox: PathBuf::from(request.sandbox_key),
            }],
        ))
    }

    /// Publishes `published` on the endpoint's port (none: unpublishes). An endpoint
    /// that is gone (Docker revokes after a failed Join, or twice) has nothing to undo.
    fn publish(&self, request: &Endpoint, published: Vec<PortMapping>) -> Answer {
        let network = match self.try_ask::<NetworkInfo>(&Request::NetworkInspect {
            name: request.network_id.clone(),
        })? {
            Ok(network) => network,
            Err(err) if err.code == ErrorCode::NoSuchNetwork && published.is_empty() => {
                return Ok((json!({}), Vec::new()))
            }
            Err(err) => return Err(Failure::new(err.message)),
        };
        let owner = Some(request.endpoint_id.as_str());
        let Some(endpoint) = network
            .endpoints
            .iter()
            .find(|e| e.container_id.as_deref() == owner)
        else {
            if published.is_empty() {
                return Ok((json!({}), Vec::new()));
            }
            return Err(Failure::new(format!(
                "endpoint {} is not attached to network {}: Docker did not join it through this plugin",
                short(&request.endpoint_id),
                network.name
            )));
        };
        if endpoint.published.is_empty() && published.is_empty() {
            return Ok((json!({}), Vec::new()));
        }
        let _: EndpointInfo = self.ask(&Request::PortPublish {
            port: endpoint.port.to_string(),
            published,
            add: false,
        })?;
        Ok((json!({}), Vec::new()))
    }

    fn request_pool(&self, request: RequestPool) -> Answer {
        if request.v6 {
            return Err(Failure::new(
                "switchyard's IPAM is IPv4 only; create the network without --ipv6",
            ));
        }
        let pool = match request.pool.as_str() {
            "" => {
                let suggested: Suggested = self.ask(&Request::SubnetSuggest { internal: false })?;
                suggested.subnet
            }
            text => cidr("subnet", text)?,
        };
        // The sub-pool of this request, and no older one that a failed create left.
        let mut sub_pools = self.sub_pools.lock().unwrap_or_else(|p| p.into_inner());
        match request.sub_pool.as_str() {
            "" => sub_pools.remove(&pool.to_string()),
            text => sub_pools.insert(pool.to_string(), cidr("ip range", text)?),
        };
        Ok((
            json!({"PoolID": pool.to_string(), "Pool": pool.to_string(), "Data": {}}),
            Vec::new(),
        ))
    }

    /// The network whose subnet is the pool `pool_id`, if one exists yet.
    fn network_of_pool(&self, pool_id: &str) -> Result<Option<NetworkInfo>, Failure> {
        let pool = cidr("pool", pool_id)?;
        let networks: Vec<NetworkInfo> = self.ask(&Request::NetworkList)?;
        Ok(networks.into_iter().find(|n| n.subnet == pool))
    }

    fn request_address(&self, request: PoolAddress) -> Answer {
        let pool = cidr("pool", &request.pool_id)?;
        let wanted = match request.address.as_str() {
            "" => None,
            text => Some(
                text.parse::<Ipv4Addr>()
                    .map_err(|_| Failure::new(format!("{text:?} is not an IPv4 address")))?,
            ),
        };
        let gateway =
            request.options.get(ADDRESS_TYPE).and_then(Value::as_str) == Some(GATEWAY_TYPE);
        let address = if gateway {
            // The network does not exist yet: its gateway is what was asked for, or the
            // first address, as switchd would pick.
            let address = wanted
                .or_else(|| pool.hosts().next())
                .ok_or_else(|| Failure::new(format!("{pool} has no room for a gateway")))?;
            Ipv4Net::new(address, pool.prefix_len()).map_err(|e| Failure::new(e.to_string()))?
        } else {
            let network = self.network_of_pool(&request.pool_id)?.ok_or_else(|| {
                Failure::new(format!("no switchyard network has subnet {pool} yet"))
            })?;
            let owner = format!("{IPAM_OWNER}{}", random_suffix());
            let reserved: Reserved = self.ask(&Request::AddressReserve {
                network: network.id,
                ip: wanted,
                owner,
            })?;
            reserved.address
        };
        Ok((
            json!({"Address": address.to_string(), "Data": {}}),
            Vec::new(),
        ))
    }

    fn release_address(&self, request: PoolAddress) -> Answer {
        let Ok(ip) = request.address.parse::<Ipv4Addr>() else {
            return Err(Failure::new(format!(
                "{:?} is not an IPv4 address",
                request.address
            )));
        };
        let Some(network) = self.network_of_pool(&request.pool_id)? else {
            return Ok((json!({}), Vec::new()));
        };
        if network.gateway == ip {
            return Ok((json!({}), Vec::new()));
        }
        let released: Result<Reserved, ControlError> = self.try_ask(&Request::AddressRelease {
            network: network.id,
            ip,
        })?;
        match released.filter_missing(ErrorCode::NoSuchEntry) {
            Ok(_) => Ok((json!({}), Vec::new())),
            Err(err) => Err(Failure::new(err.message)),
        }
    }

    /// Gives the network with Docker's id `network_id` the name Docker knows it by.
    pub fn name_network(&self, network_id: &str, name: &str) -> Result<NetworkInfo, Failure> {
        self.ask(&Request::NetworkRename {
            name: network_id.to_string(),
            new_name: name.to_string(),
        })
    }

    /// What a previous run of the plugin left unfinished, from switchd's networks:
    /// networks still under their provisional name, and Docker's endpoints whose TAP
    /// switchd still places where Join made it (the move into the container was never
    /// recorded, so a switchd restart would not find the TAP again).
    pub fn unfinished(&self) -> Result<Vec<FollowUp>, Failure> {
        let networks: Vec<NetworkInfo> = self.ask(&Request::NetworkList)?;
        let mut follow_ups = Vec::new();
        for network in networks {
            if network.name == provisional_name(&network.id) {
                follow_ups.push(FollowUp::NameNetwork {
                    network_id: network.id.clone(),
                });
            }
            for endpoint in &network.endpoints {
                let Some(endpoint_id) = &endpoint.container_id else {
                    continue;
                };
                if endpoint.port_name.starts_with(DOCKER_LABEL)
                    && self.not_moved(&endpoint.netns, &endpoint.ifname, endpoint_id)
                {
                    follow_ups.push(FollowUp::ResumeMove {
                        port: endpoint.port.to_string(),
                        ifname: endpoint.ifname.clone(),
                        // A global network's own id is the cluster's; Docker's are
                        // its local ids.
                        network_ids: std::iter::once(&network.id)
                            .chain(&network.local_ids)
                            .cloned()
                            .collect(),
                        endpoint_id: endpoint_id.clone(),
                    });
                }
            }
        }
        Ok(follow_ups)
    }

    /// Whether a Docker endpoint's TAP, recorded in `netns` as `ifname`, is still where
    /// Join made it: in dockerd's namespace as this plugin names it (`--netns`), or in a
    /// plugin's own (`/proc/PID/ns/net`, a previous run's), or still under Join's name
    /// (Docker renames it as it moves it; `PortMoved` was answered in between).
    fn not_moved(&self, netns: &std::path::Path, ifname: &str, endpoint_id: &str) -> bool {
        let in_a_process = netns
            .to_str()
            .and_then(|path| path.strip_prefix("/proc/"))
            .and_then(|rest| rest.strip_suffix("/ns/net"))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        in_a_process || netns == self.settings.docker_netns || ifname == tap_name(endpoint_id)
    }

    /// Tells switchd that port `port`'s TAP now lives in `sandbox`.
    pub fn port_moved(&self, port: &str, sandbox: PathBuf) -> Result<Moved, Failure> {
        let moved: Result<PortInfo, ControlError> = self.try_ask(&Request::PortMoved {
            port: port.to_string(),
            netns: sandbox,
        })?;
        match moved {
            Ok(info) => Ok(Moved::There(info)),
            // Docker mounts the sandbox's namespace (at the container's start) and moves
            // the TAP into it after Join has answered.
            Err(err)
                if matches!(
                    err.code,
                    ErrorCode::Conflict | ErrorCode::NamespaceUnavailable
                ) =>
            {
                Ok(Moved::NotYet(err.message))
            }
            // The container is gone again (it stopped, Docker deleted the endpoint).
            Err(err) if err.code == ErrorCode::NoSuchPort => Ok(Moved::Gone),
            Err(err) => Err(Failure::new(err.message)),
        }
    }
}

/// How the ports Join makes are labelled (`docker:<endpoint id12>`).
const DOCKER_LABEL: &str = "docker:";

/// The owners of reservations made for Docker's RequestAddress, before CreateEndpoint
/// names the endpoint.
const IPAM_OWNER: &str = "docker-ipam:";

fn random_suffix() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Docker's network and endpoint ids are hexadecimal (64 digits); the handlers cut them
/// into names, so anything else is refused before it gets there.
fn check_ids(method: &str, body: &[u8]) -> Result<(), Failure> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Ok(()); // Each handler says what is wrong with its body.
    };
    for key in ["NetworkID", "EndpointID"] {
        if let Some(Value::String(id)) = fields.get(key) {
            if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Failure::new(format!(
                    "{method}: {key} {id:?} is not a Docker id (up to 64 hexadecimal digits)"
                )));
            }
        }
    }
    Ok(())
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Docker's published ports (`com.docker.network.portmap`, a list of libnetwork's
/// `types.PortBinding`) as switchyard mappings. Docker lists an IPv6 binding beside each
/// IPv4 one; switchyard networks are IPv4, so those are left out.
fn port_bindings(value: Option<&Value>) -> Result<Vec<PortMapping>, Failure> {
    let Some(list) = value.and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut mappings = Vec::new();
    for binding in list {
        let binding: PortBinding = serde_json::from_value(binding.clone())
            .map_err(|err| Failure::new(format!("cannot read a published port: {err}")))?;
        let host_ip = match binding.host_ip.as_str() {
            "" => None,
            text => match text.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(ip)) => Some(ip).filter(|ip| !ip.is_unspecified()),
                Ok(std::net::IpAddr::V6(_)) => continue,
                Err(_) => {
                    return Err(Failure::new(format!(
                        "published port: {text:?} is not an address"
                    )))
                }
            },
        };
        let protocol = match binding.proto {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            other => {
                return Err(Failure::new(format!(
                    "published port {}: protocol {other} is not supported; switchyard publishes tcp and udp",
                    binding.port
                )))
            }
        };
        if binding.host_port == 0 {
            return Err(Failure::new(format!(
                "published port {}/{protocol} has no host port: switchyard does not pick one; give it, as in -p 8080:{}",
                binding.port, binding.port
            )));
        }
        let mapping = PortMapping {
            protocol,
            host_ip,
            host_port: binding.host_port,
            container_port: binding.port,
        };
        if !mappings.contains(&mapping) {
            mappings.push(mapping);
        }
    }
    Ok(mappings)
}

/// Generic options (`-o key=value`) onto the network's configuration.
fn apply_options(config: &mut NetworkConfig, options: &Map<String, Value>) -> Result<(), Failure> {
    for (key, value) in options {
        let text = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let flag = |text: &str| match text {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(Failure::new(format!(
                "option {key}={text}: give true or false"
            ))),
        };
        match key.as_str() {
            "masquerade" => config.masquerade = flag(&text)?,
            "internal" => config.internal = flag(&text)?,
            "mtu" => {
                config.mtu = Some(text.parse().map_err(|_| {
                    Failure::new(format!("option mtu={text}: give a number such as 1450"))
                })?)
            }
            "vni" => {
                let vni = text.parse::<u32>().ok().and_then(Vni::new).ok_or_else(|| {
                    Failure::new(format!("option vni={text}: give a VXLAN id from 0 to 16777215"))
                })?;
                config.vni = Some(vni);
            }
            // This host's Docker network is the cluster's global network NAME (made if
            // it does not exist yet), the same on every host that says so.
            "global" => {
                switchyard::cluster::keys::validate_name(&text)
                    .map_err(|err| Failure::new(format!("option global={text}: {err}")))?;
                config.name = text;
                config.scope = Scope::Global;
            }
            other => {
                return Err(Failure::new(format!(
                    "unknown option {other}: switchyard networks take masquerade, internal, mtu, vni and global"
                )))
            }
        }
    }
    Ok(())
}

/// Sets the TAP's MAC and MTU inside the namespace at `netns`.
fn configure_tap(
    netns: &std::path::Path,
    ifname: &str,
    mac: MacAddr,
    mtu: u32,
) -> anyhow::Result<()> {
    let netns = switchyard_os::netns::Netns::open_path(netns)?;
    netns.run(|| {
        let mut rtnl = switchyard_os::rtnl::Rtnl::open()?;
        let link = rtnl.link(ifname)?;
        rtnl.set_mac(&link, mac)?;
        rtnl.set_mtu(&link, mtu)?;
        Ok::<(), anyhow::Error>(())
    })
}

/// A client error other than a refusal as Docker's `Err`: switchd not running says what
/// to start.
fn client_failure(err: ClientError) -> Failure {
    Failure::new(format!("switchyard-docker: {err}"))
}

/// A refusal with `code` means "already gone": fine for removals.
trait MissingIsFine<T> {
    fn filter_missing(self, code: ErrorCode) -> Result<Option<T>, ControlError>;
}

impl<T> MissingIsFine<T> for Result<T, ControlError> {
    fn filter_missing(self, code: ErrorCode) -> Result<Option<T>, ControlError> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(err) if err.code == code => Ok(None),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests;
