//! `cni_config`: arbitrary bytes as the CNI plugin's stdin: the network configuration
//! (or a configuration list), its subnet, gateway and VNI, and the `prevResult` that
//! CHECK decodes. The parsing is the plugin's own `spec.rs`, compiled in here as a
//! module, so the binary need not become a library.
//!
//! Checked: nothing panics; an error encodes as the spec's error JSON with a code; a
//! `prevResult` that decodes encodes and decodes to itself.

#[allow(dead_code)]
#[path = "../../../tools/src/bin/switchyard-cni/spec.rs"]
mod spec;

use switchyard_encap::Vni;

use spec::{CniError, CniResult, SUPPORTED_VERSIONS};

pub fn run(data: &[u8]) {
    let version = SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1];
    if let Err(err) = parse(data) {
        let json = err.to_json(version);
        assert!(json["code"].as_u64().is_some_and(|c| c > 0), "{json}");
        serde_json::to_string(&json).expect("an error encodes");
    }
}

fn parse(data: &[u8]) -> Result<(), CniError> {
    let input = spec::parse_input(data)?;
    let conf = &input.conf;
    assert!(SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()));
    // Parsing validated every field: what it kept is in range.
    if let (Some(subnet), Some(gateway)) = (conf.subnet, conf.gateway) {
        let _ = subnet.contains(&gateway);
    }
    if let Some(vni) = conf.vni {
        assert!(Vni::new(vni.get()).is_some());
    }
    if let Some(value) = &conf.prev_result {
        // As CHECK decodes it.
        let prev: Result<CniResult, _> = serde_json::from_value(value.clone());
        if let Ok(prev) = prev {
            let encoded = serde_json::to_value(&prev).expect("a result encodes");
            let decoded: CniResult =
                serde_json::from_value(encoded).expect("an encoded result decodes");
            assert_eq!(decoded, prev, "a result survives encoding");
        }
    }
    Ok(())
}
