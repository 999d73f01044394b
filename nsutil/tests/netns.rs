//! Namespaces through the library, as root.

mod common;

use std::path::Path;

use common::{unique_name, TestNs};
use nsutil::netns::{self, run_in, Netns, NetnsError, NetnsId, NetnsRef};

#[test]
#[ignore = "needs root; run by make test"]
fn create_list_delete() {
    let ns = TestNs::new();
    let path = Path::new("/run/netns").join(&ns.name);
    assert!(path.exists());
    assert!(netns::list().unwrap().contains(&ns.name));
    let opened = Netns::open(&ns.reference()).unwrap();
    assert_ne!(opened.id(), Netns::current().unwrap().id());
    assert_eq!(NetnsId::of(&path).unwrap(), opened.id());

    let again = netns::create(&ns.name).unwrap_err();
    assert!(matches!(again, NetnsError::Exists { .. }), "{again}");
    assert!(again
        .to_string()
        .starts_with(&format!("namespace {} already exists", ns.name)));

    netns::delete(&ns.name).unwrap();
    assert!(!path.exists());
    assert!(!netns::list().unwrap().contains(&ns.name));
    let gone = netns::delete(&ns.name).unwrap_err();
    assert!(matches!(gone, NetnsError::NotFound { .. }), "{gone}");
    // The open handle kept the namespace alive, and it is still a network namespace.
    assert!(opened.run(|| Ok::<_, NetnsError>(())).is_ok());
}

#[test]
#[ignore = "needs root; run by make test"]
fn run_in_runs_inside_and_leaves_the_caller_alone() {
    let ns = TestNs::new();
    let before = Netns::current().unwrap().id();
    let target = Netns::open(&ns.reference()).unwrap().id();
    let inside = run_in(&ns.reference(), || {
        Netns::current().map(|current| current.id())
    })
    .unwrap();
    assert_eq!(inside, target);
    assert_ne!(inside, before);
    assert_eq!(Netns::current().unwrap().id(), before);
    // Values and errors of the closure come back out.
    let err = run_in::<(), NetnsError, _>(&ns.reference(), || {
        Err(NetnsError::Exists { name: "x".into() })
    })
    .unwrap_err();
    assert!(matches!(err, NetnsError::Exists { .. }));
}

#[test]
#[ignore = "needs root; run by make test"]
fn two_paths_to_one_namespace_compare_equal() {
    let ns = TestNs::new();
    let by_name = Netns::open(&ns.reference()).unwrap().id();
    // A process sitting in the namespace gives a /proc/PID/ns/net path to it.
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "sleep", "30"])
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut by_pid = None;
    for _ in 0..100 {
        // `ip netns exec` enters the namespace before exec'ing sleep.
        if let Ok(id) = Netns::open(&NetnsRef::Pid(pid)).map(|n| n.id()) {
            if id == by_name {
                by_pid = Some(id);
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(by_pid, Some(by_name));
}

#[test]
#[ignore = "needs root; run by make test"]
fn missing_and_wrong_namespaces_have_clear_errors() {
    let name = unique_name();
    let err = Netns::open(&NetnsRef::Named(name.clone())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no such network namespace '{name}' (/run/netns/{name}): create it with `nsutil create {name}`"
        )
    );
    let err = run_in::<(), NetnsError, _>(&NetnsRef::Named(name.clone()), || Ok(())).unwrap_err();
    assert!(matches!(err, NetnsError::NotFound { .. }));

    // A mount namespace is a namespace, but not a network one.
    let mnt = NetnsRef::parse("/proc/self/ns/mnt").unwrap();
    let err = Netns::open(&mnt).unwrap_err();
    assert!(matches!(err, NetnsError::NotNetns { .. }), "{err}");
    assert!(
        err.to_string().contains("is not a network namespace"),
        "{err}"
    );

    // A plain file (what a failed create would leave) is refused too, and delete clears it.
    std::fs::create_dir_all("/run/netns").unwrap();
    let path = Path::new("/run/netns").join(&name);
    std::fs::write(&path, b"").unwrap();
    let err = Netns::open(&NetnsRef::Named(name.clone())).unwrap_err();
    let text = err.to_string();
    let _ = netns::delete(&name);
    assert!(matches!(err, NetnsError::NotNetns { .. }), "{text}");
    assert!(text.contains("`nsutil delete"), "{text}");
    assert!(!path.exists());
}

#[test]
#[ignore = "needs root; run by make test"]
fn concurrent_creates_do_not_interfere() {
    let handles: Vec<_> = (0..4).map(|_| std::thread::spawn(TestNs::new)).collect();
    let namespaces: Vec<TestNs> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ids: std::collections::HashSet<_> = namespaces
        .iter()
        .map(|ns| Netns::open(&ns.reference()).unwrap().id())
        .collect();
    assert_eq!(ids.len(), namespaces.len());
}
