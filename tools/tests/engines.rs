//! Root tests of the Docker and Podman fixtures themselves (tests/common/docker.rs,
//! podman.rs), with no switchyard involved: each engine starts in its own namespace, runs
//! a container, survives what the plugin tests will do to it (a restart with live
//! restore), and leaves nothing behind when dropped: no process, no mount in any mount
//! namespace, no directory, namespace or cgroup.
//!
//! Marked `#[ignore]`; `make test` runs them with `--include-ignored`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::docker::{Dockerd, PluginSpec};
use common::engine::{self, Footprint};
use common::podman::Podman;
use common::unique;

/// Drops an engine and insists nothing of it is left.
fn assert_gone<T>(footprint: Footprint, engine: T) {
    drop(engine);
    let left = footprint.leftovers();
    assert!(
        left.is_empty(),
        "left behind by the engine in {}:\n{}",
        footprint.dir.display(),
        left.join("\n")
    );
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
#[ignore = "needs root; run by make test"]
fn dockerd_runs_a_container_without_network_in_its_own_namespace() {
    let dockerd = Dockerd::start();
    // dockerd (and the containerd it started) run in the test's namespace, not the
    // machine's, and leave it as it was: no docker0, no firewall rules.
    let ns = engine::ns_of(dockerd.pid(), "net").expect("dockerd runs");
    let netns_inode = std::fs::metadata(dockerd.netns().path()).expect("the namespace");
    assert_eq!(
        ns,
        format!(
            "net:[{}]",
            std::os::unix::fs::MetadataExt::ino(&netns_inode)
        )
    );
    assert_eq!(dockerd.netns().links(), ["lo"]);
    let rules = dockerd.netns().exec_ok(&["nft", "list", "ruleset"]);
    assert!(
        rules.trim().is_empty(),
        "dockerd added firewall rules:\n{rules}"
    );

    let image = dockerd.image();
    let out = dockerd.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        image,
        "sh",
        "-c",
        "echo hi; ls /sys/class/net",
    ]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["hi", "lo"]);
    assert_gone(dockerd.footprint(), dockerd);
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_running_docker_container_and_processes_next_to_dockerd_go_with_it() {
    let dockerd = Dockerd::start();
    let image = dockerd.image();
    dockerd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "sleeper",
        "--network",
        "none",
        image,
        "sleep",
        "1000",
    ]);
    // `docker run -d` returns once the container runs.
    let pid = dockerd.container_pid("sleeper");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("the container runs");
    assert_eq!(comm.trim(), "sleep");
    // What a plugin test starts next to dockerd goes too: a process left to the holder
    // is killed with it; one handed over with `keep` gets SIGTERM once dockerd is gone.
    let mut left = dockerd
        .command("sleep")
        .arg("1000")
        .spawn()
        .expect("a process in dockerd's namespaces");
    let marker = std::env::temp_dir().join(unique("mark"));
    let on_term = format!(
        "if [ -e {pidfile} ]; then echo running; else echo gone; fi > {marker}; exit 0",
        pidfile = dockerd.dir().join("dockerd.pid").display(),
        marker = marker.display()
    );
    let script = format!("trap '{on_term}' TERM; while true; do sleep 1; done");
    let kept = dockerd
        .command("sh")
        .args(["-c", &script])
        .spawn()
        .expect("a process in dockerd's namespaces");
    dockerd.keep(kept);

    let footprint = dockerd.footprint();
    assert!(footprint.processes.iter().any(|(p, _, _)| *p == pid));
    // The check sees what is there: the container, and its root filesystem mounted in
    // dockerd's mount namespace (not the test's).
    let now = footprint.leftovers();
    let container = format!("process {pid} ");
    assert!(now.iter().any(|l| l.starts_with(&container)), "{now:?}");
    assert!(
        now.iter().any(|l| l.contains("/merged is mounted in")),
        "{now:?}"
    );

    assert_gone(footprint, dockerd);
    assert!(!alive(pid));
    // Its nsenter (outside the namespace) exits once it has reaped it.
    assert!(engine::wait_bounded(&mut left, Duration::from_secs(10)).is_some());
    let said = std::fs::read_to_string(&marker).expect("the kept process got SIGTERM");
    let _ = std::fs::remove_file(&marker);
    assert_eq!(
        said.trim(),
        "gone",
        "the kept process was stopped before dockerd"
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn dockerd_restart_with_live_restore_keeps_a_running_container() {
    let mut dockerd = Dockerd::start();
    let image = dockerd.image();
    // A first process that exits on SIGTERM (busybox sleep as PID 1 does not), so that
    // the restart without live restore can stop it without waiting out its timeout.
    let script = "trap 'exit 0' TERM; while true; do sleep 1; done";
    dockerd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "keeper",
        "--network",
        "none",
        image,
        "sh",
        "-c",
        script,
    ]);
    let pid = dockerd.container_pid("keeper");
    let first = dockerd.pid();

    dockerd.restart(true);
    assert_ne!(dockerd.pid(), first, "dockerd was not restarted");
    assert!(
        alive(pid),
        "the container's process died in a live-restore restart"
    );
    assert_eq!(dockerd.container_pid("keeper"), pid);
    let out = dockerd.docker_ok(&["exec", "keeper", "echo", "still here"]);
    assert_eq!(out.trim(), "still here");

    // Without live restore, dockerd stops its containers when it goes.
    dockerd.restart(false);
    let running = dockerd.docker_ok(&["inspect", "--format", "{{.State.Running}}", "keeper"]);
    assert_eq!(running.trim(), "false");
    assert!(!alive(pid));
    assert_gone(dockerd.footprint(), dockerd);
}

#[test]
#[ignore = "needs root; run by make test"]
fn podman_runs_a_container_without_network_and_reads_the_tests_cni_directory() {
    let podman = Podman::start();
    let image = podman.image();
    let out = podman.podman_ok(&["run", "--rm", "--network", "none", image, "echo", "hi"]);
    assert_eq!(out.trim(), "hi");

    // A network of the test's shows up once its plugin is in the test's plugin directory.
    let name = unique("net");
    let conflist = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": name,
        "plugins": [{"type": "loopback"}],
    });
    std::fs::write(
        podman.cni_config_dir().join(format!("{name}.conflist")),
        conflist.to_string(),
    )
    .expect("write the conflist");
    std::os::unix::fs::symlink(
        "/usr/lib/cni/loopback",
        podman.cni_plugin_dir().join("loopback"),
    )
    .expect("link the loopback plugin");
    let networks = podman.podman_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        networks.lines().any(|n| n == name),
        "podman network ls does not show {name}:\n{networks}"
    );

    // A running container (and its conmon) goes with the rest.
    podman.podman_ok(&[
        "run",
        "-d",
        "--name",
        "sleeper",
        "--network",
        "none",
        image,
        "sleep",
        "1000",
    ]);
    let pid = podman.container_pid("sleeper");
    let footprint = podman.footprint();
    assert!(footprint
        .processes
        .iter()
        .any(|(_, name, _)| name == "conmon"));
    assert!(!footprint.cgroups.is_empty());
    assert_gone(footprint, podman);
    assert!(!alive(pid));
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_plugin_spec_file_is_removed_on_drop() {
    let name = unique("plug");
    let spec = PluginSpec::new(&name, Path::new("/tmp/some/plugin.sock"));
    assert_eq!(spec.name(), name);
    assert_eq!(
        std::fs::read_to_string(spec.path()).expect("the spec file"),
        "unix:///tmp/some/plugin.sock\n"
    );
    let path = spec.path().to_path_buf();
    drop(spec);
    assert!(!path.exists());
}
