//! `state_file`: arbitrary bytes as switchd's `state.json`, loaded as switchd loads it
//! (decode, version, [`SavedState::check`]), then [`Model::from_saved`] and
//! [`Controller::restore`] over a [`FakeSystem`] that has every saved port's namespace
//! and the TAPs of every other port (so some reattach and some are found missing).
//!
//! Checked: a state that passes `check` makes a model; a restored controller's datapath
//! has exactly its model's ports and peers, and the state it would save loads back as
//! its model (the next start must be able to read what this one writes); a port and a
//! peer can be added and removed again, the state file following the model; then a few
//! read-only requests are answered and encode.

use std::sync::Arc;

use switchyard::control::{AttachRequest, Reply, Request};
use switchyard::controller::effects::NamespaceId;
use switchyard::controller::fake::{FakeSystem, FakeTap};
use switchyard::controller::state::{SavedState, VERSION};
use switchyard::controller::{Controller, Model};
use switchyard::datapath::Datapath;
use switchyard::port::PortMode;

use crate::control_json::{clock, config, consistent};
use crate::datapath::small_fdb;

pub fn run(data: &[u8]) {
    let Ok(saved) = serde_json::from_slice::<SavedState>(data) else {
        return;
    };
    if saved.version != VERSION || saved.check().is_err() {
        return;
    }
    let model = Model::from_saved(&saved).expect("a state that passes check makes a model");

    let mut fx = FakeSystem::new();
    fx.vtep = Some("192.0.2.1:4789".parse().unwrap());
    for (i, port) in saved.ports.iter().enumerate() {
        fx.namespaces.insert(
            port.netns.clone(),
            NamespaceId {
                dev: port.netns_dev,
                ino: port.netns_ino,
                cookie: port.netns_cookie,
            },
        );
        if i % 2 == 0 {
            fx.taps.insert(FakeTap {
                netns: port.netns.clone(),
                ifname: port.ifname.clone(),
                ifindex: port.ifindex,
            });
        }
    }
    fx.saved = Some(saved.clone());
    let dp = Arc::new(Datapath::new(small_fdb()));
    let Ok(mut controller) = Controller::restore(dp, config(), saved, &mut fx) else {
        return;
    };
    assert!(controller.model().ports.len() <= model.ports.len());
    consistent(&controller, &fx);
    let again = controller.saved_state();
    let reloaded = Model::from_saved(&again).expect("the state a start would save loads");
    assert_eq!(reloaded, *controller.model(), "and is the model");

    // The restored switch keeps working: a port and a peer come and go.
    fx.namespaces.insert(
        "/run/netns/fuzz".into(),
        NamespaceId {
            dev: 4,
            ino: 1,
            cookie: 1,
        },
    );
    let changes = [
        Request::Attach(AttachRequest {
            netns: "/run/netns/fuzz".into(),
            ifname: "eth9".into(),
            mode: PortMode::default(),
            label: None,
            network: None,
            ip: None,
            container_id: None,
            ..AttachRequest::default()
        }),
        Request::PeerAdd {
            addr: "192.0.2.99".into(),
        },
        Request::PeerDel {
            addr: "192.0.2.99".into(),
        },
        Request::Detach {
            netns: "/run/netns/fuzz".into(),
            ifname: "eth9".into(),
        },
    ];
    for request in changes {
        let before = controller.model().clone();
        if controller.handle(&mut fx, clock(), request).is_err() {
            assert_eq!(
                *controller.model(),
                before,
                "a refused request changes nothing"
            );
        }
        consistent(&controller, &fx);
    }

    for request in [
        Request::PortList,
        Request::NetworkList,
        Request::Stats,
        Request::VxlanShow,
        Request::RouterShow,
        Request::FdbShow {
            vlan: None,
            port: None,
        },
    ] {
        let reply = match controller.handle(&mut fx, clock(), request) {
            Ok(value) => Reply::Result(value),
            Err(err) => Reply::refused(err),
        };
        serde_json::to_string(&reply).expect("the answer encodes");
    }
}
