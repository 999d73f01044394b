//! switchyard-docker: Docker's network driver and IPAM driver for switchyard.
//!
//! A legacy ("v1") Docker plugin: an HTTP server on a Unix socket in Docker's plugin
//! directory, named after the driver (`/run/docker/plugins/switchyard.sock` makes
//! `docker network create -d switchyard --ipam-driver switchyard`). Every call becomes
//! requests to switchd ([`driver`]); this file is the server around it and the
//! background work that waits on Docker (naming networks, following TAPs into
//! containers).

mod driver;
mod protocol;

use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use switchyard::control::{DEFAULT_SOCKET, SOCKET_ENV};
use tracing::{debug, info, warn};

use crate::driver::{provisional_name, Driver, Failure, FollowUp, Moved, Settings, SocketSwitchd};

/// The content type of Docker plugin answers.
const PLUGIN_JSON: &str = "application/vnd.docker.plugins.v1+json";

/// How long the background work waits on Docker before it gives up.
const FOLLOW_UP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Parser, Debug)]
#[command(
    name = "switchyard-docker",
    version,
    about = "Docker network and IPAM driver for switchyard: serves Docker's plugin protocol on a Unix socket and turns each call into switchd requests",
    after_help = "Start switchd first, then this, then use it with\n  docker network create -d switchyard --ipam-driver switchyard --subnet 10.40.0.0/24 mynet\nThe plugin keeps no state: stop and start it (or switchd) at any time."
)]
struct Cli {
    /// The driver's name: Docker finds the plugin as <plugin-dir>/<name>.sock and uses it
    /// with `-d <name>` and `--ipam-driver <name>`.
    #[arg(long, default_value = "switchyard")]
    name: String,
    /// Docker's plugin directory.
    #[arg(long, default_value = "/run/docker/plugins")]
    plugin_dir: PathBuf,
    /// switchd's control socket.
    #[arg(long, env = SOCKET_ENV, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Docker's API, to learn the names of networks (`unix://` only).
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    docker_host: String,
    /// The network namespace dockerd runs in (where Join makes TAPs for Docker to move
    /// into containers) [default: this process's].
    #[arg(long)]
    netns: Option<PathBuf>,
    /// Log filter (tracing's EnvFilter syntax).
    #[arg(long, env = "SWITCHYARD_DOCKER_LOG", default_value = "info")]
    log: String,
}

struct App {
    driver: Driver<SocketSwitchd>,
    /// Docker sends calls for different containers at once; the driver's handlers read
    /// and then change switchd's state, so they take turns.
    serial: Mutex<()>,
    docker: PathBuf,
}

fn main() -> Result<()> {
    // `switchyard-docker --generate-man DIR`: switchyard-docker.8, for `make install`.
    switchyard_os::cli::generate_man_if_asked(<Cli as clap::CommandFactory>::command, "8");
    let cli = Cli::try_parse()
        .unwrap_or_else(|err| switchyard_os::cli::usage_exit("switchyard-docker", err));
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .with_context(|| format!("--log {:?} is not a valid log filter", cli.log))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if cli.name.is_empty()
        || !cli
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        bail!(
            "--name {:?}: give letters, digits, '_', '.' or '-'",
            cli.name
        );
    }
    let docker = match cli.docker_host.strip_prefix("unix://") {
        Some(path) => PathBuf::from(path),
        None => bail!(
            "--docker-host {:?}: switchyard-docker talks to Docker over a Unix socket only; give unix:///path/to/docker.sock",
            cli.docker_host
        ),
    };
    let netns = cli
        .netns
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/proc/{}/ns/net", std::process::id())));
    switchyard_os::netns::Netns::open_path(&netns)
        .with_context(|| format!("cannot open the network namespace {}", netns.display()))?;

    let app = Arc::new(App {
        driver: Driver::new(
            SocketSwitchd {
                path: cli.socket.clone(),
            },
            Settings {
                docker_netns: netns,
            },
        ),
        serial: Mutex::new(()),
        docker,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the plugin's runtime")?;
    runtime.block_on(serve(cli, app))
}

async fn serve(cli: Cli, app: Arc<App>) -> Result<()> {
    std::fs::create_dir_all(&cli.plugin_dir).with_context(|| {
        format!(
            "cannot create the plugin directory {}",
            cli.plugin_dir.display()
        )
    })?;
    let path = cli.plugin_dir.join(format!("{}.sock", cli.name));
    let listener = bind(&path).await?;
    // Docker is root; nobody else gets to drive switchd through the plugin.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    info!(socket = %path.display(), switchd = %cli.socket.display(), "serving Docker's plugin protocol");

    tokio::spawn(resume_unfinished(app.clone()));

    let router = Router::new().fallback(call).with_state(app);
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await;
    let _ = std::fs::remove_file(&path);
    served.context("the plugin's server failed")
}

/// Binds the plugin socket: a socket file nobody answers on is left over and replaced;
/// one that answers belongs to a running plugin and is refused.
async fn bind(path: &Path) -> Result<tokio::net::UnixListener> {
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!(
                "{} is in use: another plugin serves it (stop it, or give this one another --name)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot listen on {}", path.display()))
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    info!("stopping");
}

/// One plugin call: `POST /<Method>` with a JSON body.
async fn call(State(app): State<Arc<App>>, method: Method, uri: Uri, body: Bytes) -> Response {
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "plugin calls are POST\n").into_response();
    }
    let name = uri.path().trim_start_matches('/').to_string();
    let worker = app.clone();
    let call_name = name.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let _turn = worker.serial.lock().unwrap_or_else(|p| p.into_inner());
        worker.driver.handle(&call_name, &body)
    })
    .await
    .unwrap_or_else(|err| {
        Err(Failure::internal(format!(
            "{name} failed inside the plugin: {err}"
        )))
    });
    match answer {
        Ok((value, follow_ups)) => {
            debug!(call = %name, answer = %value, "answered");
            for follow_up in follow_ups {
                tokio::spawn(follow(app.clone(), follow_up));
            }
            reply(StatusCode::OK, &value)
        }
        Err(failure) => {
            if failure.status == 404 {
                debug!(call = %name, "not implemented");
            } else {
                warn!(call = %name, error = %failure.message, "refused");
            }
            let status =
                StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            // The network calls read `Err`, the IPAM calls `Error`: both carry the message.
            reply(
                status,
                &json!({"Err": failure.message, "Error": failure.message}),
            )
        }
    }
}

fn reply(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, PLUGIN_JSON)],
        value.to_string(),
    )
        .into_response()
}

/// Runs one piece of work that waits on Docker, until it is done or
/// [`FOLLOW_UP_TIMEOUT`] has passed.
async fn follow(app: Arc<App>, follow_up: FollowUp) {
    let deadline = tokio::time::Instant::now() + FOLLOW_UP_TIMEOUT;
    let mut pause = Duration::from_millis(20);
    loop {
        let last = tokio::time::Instant::now() >= deadline;
        let done = match &follow_up {
            FollowUp::NameNetwork { network_id } => name_network(&app, network_id).await,
            FollowUp::TrackMove {
                port,
                ifname,
                sandbox,
            } => track_move(&app, port, ifname, sandbox, last).await,
            FollowUp::ResumeMove {
                port,
                ifname,
                network_ids,
                endpoint_id,
            } => resume_move(&app, port, ifname, network_ids, endpoint_id, last).await,
        };
        match done {
            Ok(Progress::Done) => return,
            Ok(Progress::Waiting(why)) if last => {
                if let FollowUp::ResumeMove { port, .. } = &follow_up {
                    warn!(
                        port = %port,
                        why = %why,
                        "cannot tell switchd which container port {port}'s TAP is in, so a switchd restart will not find it again; reconnect its container (docker network disconnect, then connect) or restart it"
                    );
                } else {
                    warn!(?follow_up, why = %why, "gave up waiting on Docker");
                }
                return;
            }
            Ok(Progress::Waiting(_)) => {}
            Err(err) => {
                warn!(?follow_up, error = %format!("{err:#}"), "cannot finish");
                return;
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

enum Progress {
    Done,
    /// Docker is not there yet: why.
    Waiting(String),
}

/// Gives the network Docker's name for it, once Docker's API has it.
async fn name_network(app: &Arc<App>, network_id: &str) -> Result<Progress> {
    let Some(name) = docker_network_name(&app.docker, network_id).await? else {
        return Ok(Progress::Waiting(format!(
            "Docker's API does not show network {network_id}"
        )));
    };
    let worker = app.clone();
    let id = network_id.to_string();
    let renamed = tokio::task::spawn_blocking(move || {
        let _turn = worker.serial.lock().unwrap_or_else(|p| p.into_inner());
        worker
            .driver
            .name_network(&id, &name)
            .map(|info| (name, info))
    })
    .await?;
    match renamed {
        Ok((name, info)) => info!(network = %name, id = %info.id, "named after Docker's network"),
        // Another switchyard network has the name (or it is not one switchyard takes):
        // the network keeps working under its provisional name.
        Err(failure) => warn!(
            network = %provisional_name(network_id),
            error = %failure.message,
            "keeps its provisional name"
        ),
    }
    Ok(Progress::Done)
}

/// Tells switchd where Docker moved a TAP.
async fn track_move(
    app: &Arc<App>,
    port: &str,
    ifname: &str,
    sandbox: &Path,
    last: bool,
) -> Result<Progress> {
    let worker = app.clone();
    let (port, ifname, sandbox) = (port.to_string(), ifname.to_string(), sandbox.to_path_buf());
    let moved = tokio::task::spawn_blocking(move || {
        let _turn = worker.serial.lock().unwrap_or_else(|p| p.into_inner());
        worker.driver.port_moved(&port, sandbox)
    })
    .await?
    .map_err(|failure| anyhow::anyhow!(failure.message))?;
    Ok(match moved {
        // Docker moves the TAP and then renames it: wait for the new name, unless this is
        // the last try.
        Moved::There(info) if info.ifname == ifname && !last => {
            Progress::Waiting(format!("the TAP is still called {ifname}"))
        }
        Moved::There(info) => {
            debug!(port = %info.id, netns = %info.netns.display(), ifname = %info.ifname, "followed into its container");
            Progress::Done
        }
        Moved::NotYet(why) => Progress::Waiting(why),
        Moved::Gone => Progress::Done,
    })
}

/// A TAP a previous run of the plugin did not see into its container: finds the
/// container's sandbox in Docker's API, then tells switchd as [`track_move`] does.
async fn resume_move(
    app: &Arc<App>,
    port: &str,
    ifname: &str,
    network_ids: &[String],
    endpoint_id: &str,
    last: bool,
) -> Result<Progress> {
    for network_id in network_ids {
        if let Some(sandbox) = docker_sandbox(&app.docker, network_id, endpoint_id).await? {
            return track_move(app, port, ifname, &sandbox, last).await;
        }
    }
    Ok(Progress::Waiting(format!(
        "Docker's API shows no container with endpoint {} on network {}",
        &endpoint_id[..endpoint_id.len().min(12)],
        network_ids.first().map(String::as_str).unwrap_or("?")
    )))
}

/// What a previous run of the plugin left unfinished (networks it did not get to name,
/// TAPs it did not see into their containers), picked up once at start.
async fn resume_unfinished(app: Arc<App>) {
    let worker = app.clone();
    let found = tokio::task::spawn_blocking(move || {
        let _turn = worker.serial.lock().unwrap_or_else(|p| p.into_inner());
        worker.driver.unfinished()
    })
    .await;
    let follow_ups = match found {
        Ok(Ok(follow_ups)) => follow_ups,
        // switchd not running yet: Docker's calls will say so; nothing to resume.
        Ok(Err(failure)) => {
            debug!(error = %failure.message, "cannot look for unfinished work");
            return;
        }
        Err(err) => {
            warn!(error = %err, "cannot look for unfinished work");
            return;
        }
    };
    for follow_up in follow_ups {
        if let FollowUp::ResumeMove { port, ifname, .. } = &follow_up {
            info!(port = %port, ifname = %ifname, "resuming: following the TAP of port {port} into its container, which a previous run did not record");
        }
        tokio::spawn(follow(app.clone(), follow_up));
    }
}

/// The name Docker's API gives network `id`, or `None` while it does not know it.
async fn docker_network_name(socket: &Path, id: &str) -> Result<Option<String>> {
    Ok(docker_get(socket, &format!("/networks/{id}"))
        .await?
        .as_ref()
        .and_then(|network| network.get("Name"))
        .and_then(Value::as_str)
        .map(str::to_string))
}

/// The `SandboxKey` of the container that has endpoint `endpoint_id` on network
/// `network_id`, or `None` while Docker's API does not show one.
async fn docker_sandbox(
    socket: &Path,
    network_id: &str,
    endpoint_id: &str,
) -> Result<Option<PathBuf>> {
    let Some(network) = docker_get(socket, &format!("/networks/{network_id}")).await? else {
        return Ok(None);
    };
    let Some(container) = container_of_endpoint(&network, endpoint_id) else {
        return Ok(None);
    };
    let Some(container) = docker_get(socket, &format!("/containers/{container}/json")).await?
    else {
        return Ok(None);
    };
    Ok(sandbox_key(&container))
}

/// The id of the container that `GET /networks/{id}` lists with endpoint `endpoint_id`
/// (`Containers: {container id: {EndpointID, ...}}`).
fn container_of_endpoint(network: &Value, endpoint_id: &str) -> Option<String> {
    network
        .get("Containers")?
        .as_object()?
        .iter()
        .find(|(_, member)| member.get("EndpointID").and_then(Value::as_str) == Some(endpoint_id))
        .map(|(container, _)| container.clone())
        // Only an id goes into the path of the next request.
        .filter(|container| container.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A container's `NetworkSettings.SandboxKey` from `GET /containers/{id}/json`: its
/// network namespace file, empty while the container is not running.
fn sandbox_key(container: &Value) -> Option<PathBuf> {
    container
        .pointer("/NetworkSettings/SandboxKey")
        .and_then(Value::as_str)
        .filter(|key| !key.is_empty())
        .map(PathBuf::from)
}

/// `GET path` from Docker's API, decoded, or `None` when Docker does not answer yet (it
/// may be starting) or has no such thing (404).
async fn docker_get(socket: &Path, path: &str) -> Result<Option<Value>> {
    let stream = match tokio::net::UnixStream::connect(socket).await {
        Ok(stream) => stream,
        // Docker not answering yet (it may be starting): try again later.
        Err(err) => {
            debug!(socket = %socket.display(), error = %err, "Docker's API is not answering");
            return Ok(None);
        }
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("Docker's API")?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(header::HOST, "docker")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await.context("Docker's API")?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .context("Docker's API")?
        .to_bytes();
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        bail!("Docker's API answered GET {path} with {status}");
    }
    let value: Value = serde_json::from_slice(&body)
        .with_context(|| format!("Docker's API answered GET {path} with something not JSON"))?;
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `GET /networks/{id}` and `GET /containers/{id}/json`, cut down, as dockerd 20.10
    /// answers them.
    const NETWORK: &str = r#"{"Name":"steady","Id":"a08a0fcbdeaf","Driver":"sy1","Containers":{"5d6c1f0a9b2e":{"Name":"alpha","EndpointID":"0e26f370b562","MacAddress":"","IPv4Address":"10.35.0.2/24","IPv6Address":""},"9f8e7d6c5b4a":{"Name":"beta","EndpointID":"77aa0fcbdeaf","MacAddress":"","IPv4Address":"10.35.0.3/24","IPv6Address":""}}}"#;
    const CONTAINER: &str = r#"{"Id":"9f8e7d6c5b4a","State":{"Running":true},"NetworkSettings":{"SandboxID":"3c1e4e5b1f2a","SandboxKey":"/var/run/docker/netns/3c1e4e5b1f2a","Networks":{}}}"#;

    #[test]
    fn the_container_of_an_endpoint_comes_from_the_networks_containers() {
        let network: Value = serde_json::from_str(NETWORK).unwrap();
        assert_eq!(
            container_of_endpoint(&network, "77aa0fcbdeaf").as_deref(),
            Some("9f8e7d6c5b4a")
        );
        assert_eq!(container_of_endpoint(&network, "123456789abc"), None);
        assert_eq!(
            container_of_endpoint(&json!({"Containers": null}), "77aa"),
            None
        );
        // Only an id goes into the next request's path.
        let odd = json!({"Containers": {"../../x": {"EndpointID": "77aa"}}});
        assert_eq!(container_of_endpoint(&odd, "77aa"), None);
    }

    #[test]
    fn the_sandbox_is_the_containers_sandbox_key_while_it_runs() {
        let container: Value = serde_json::from_str(CONTAINER).unwrap();
        assert_eq!(
            sandbox_key(&container),
            Some(PathBuf::from("/var/run/docker/netns/3c1e4e5b1f2a"))
        );
        let stopped = json!({"NetworkSettings": {"SandboxKey": ""}});
        assert_eq!(sandbox_key(&stopped), None);
    }
}
