//! `control_json`: arbitrary bytes as control request lines, decoded as switchd's control
//! connection decodes them and handled by a [`Controller`] over a [`FakeSystem`] with
//! three namespaces and a VTEP.
//!
//! Input: lines (at most 32); each that decodes as a [`Request`] is handled in turn, so
//! a run can create a network, attach to it and remove it. Checked after each: a decoded
//! request encodes and decodes to itself; the answer encodes; a refused request leaves
//! the model as it was; the datapath has exactly the model's ports and peers; the state
//! file, when there is one, loads back as the model.

use std::sync::Arc;

use switchyard::control::{Reply, Request};
use switchyard::controller::fake::FakeSystem;
use switchyard::controller::{Clock, Controller, ControllerConfig, Model};
use switchyard::datapath::{Datapath, ROUTER_PORT};
use switchyard::port::PortId;
use switchyard::time::Time;

use crate::datapath::small_fdb;

pub const MAX_LINES: usize = 32;

pub fn clock() -> Clock {
    Clock {
        now: Time::from_secs(10),
        unix_secs: 1_796_000_000,
    }
}

pub fn config() -> ControllerConfig {
    ControllerConfig {
        boot_id: "boot".into(),
        uplink_name: "switchyard0".into(),
        storm_limit: switchyard::port::StormLimit::per_second(2000),
    }
}

/// A world with namespaces `red`, `blue` and `green` and a VTEP.
pub fn world() -> FakeSystem {
    let mut fx = FakeSystem::new();
    for name in ["red", "blue", "green"] {
        fx.add_namespace(name);
    }
    fx.vtep = Some("192.0.2.1:4789".parse().unwrap());
    fx
}

pub fn run(data: &[u8]) {
    let mut fx = world();
    let dp = Arc::new(Datapath::new(small_fdb()));
    let mut controller =
        Controller::restore(dp, config(), Default::default(), &mut fx).expect("an empty start");
    for line in data.split(|&b| b == b'\n').take(MAX_LINES) {
        let Ok(request) = serde_json::from_slice::<Request>(line) else {
            continue;
        };
        let encoded = serde_json::to_vec(&request).expect("a request encodes");
        let decoded: Request = serde_json::from_slice(&encoded).expect("and decodes again");
        assert_eq!(decoded, request, "a request survives encoding: {encoded:?}");

        let before = controller.model().clone();
        let answer = controller.handle(&mut fx, clock(), request);
        let reply = match answer {
            Ok(value) => Reply::Result(value),
            Err(err) => {
                assert_eq!(
                    *controller.model(),
                    before,
                    "a refused request changes nothing: {err}"
                );
                Reply::refused(err)
            }
        };
        serde_json::to_string(&reply).expect("the answer encodes");
        controller.take_notes();
        consistent(&controller, &fx);
    }
}

/// The datapath knows exactly the model's ports and peers, and the state file (if any)
/// is the model.
pub fn consistent(controller: &Controller, fx: &FakeSystem) {
    let model = controller.model();
    let mut switch_ports = controller.datapath().switch().port_ids();
    switch_ports.retain(|id| *id != ROUTER_PORT);
    let mut expected: Vec<PortId> = model
        .ports
        .keys()
        .chain(model.peers.keys())
        .copied()
        .collect();
    expected.sort();
    assert_eq!(switch_ports, expected, "the switch's ports are the model's");
    if let Some(saved) = &fx.saved {
        let loaded = Model::from_saved(saved).expect("the saved state loads");
        assert_eq!(loaded, *model, "the state file is the model");
    }
}
