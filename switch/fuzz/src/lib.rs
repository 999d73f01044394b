//! The harnesses behind switchyard's fuzz targets, one module per target. Each `run`
//! takes the fuzzer's bytes and must never panic, loop or run away with memory; a
//! harness asserts the contracts its code documents (a refused control request changes
//! nothing, a saved state loads again...), so a broken contract is a crash too.
//!
//! Inputs that drive a sequence of steps are read with [`Input`]: a step is a selector
//! byte, a little-endian `u16` length and that many bytes (cut to what is left), so a
//! seed is easy to build ([`record`]) and the fuzzer's mutations stay meaningful.
//!
//! `cargo fuzz run TARGET --fuzz-dir switch/fuzz` runs one (`make fuzz` runs them all);
//! `cargo run --example seeds` in this directory writes the seed corpora.

pub mod cluster;
pub mod cni_config;
pub mod control_json;
pub mod datapath;
pub mod dns;
pub mod inspect;
pub mod router;
pub mod state_file;
pub mod vxlan;
pub mod wire_views;

/// A cursor over fuzzer bytes that never fails: past the end every read gives zeros or
/// an empty slice.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Up to `len` bytes.
    pub fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A length-prefixed chunk: a `u16` length, then that many bytes.
    pub fn chunk(&mut self) -> &'a [u8] {
        let len = self.u16();
        self.bytes(usize::from(len))
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// One step as [`Input`] reads it back: `selector`, `args` (read by the step before its
/// chunk), then `payload` with its `u16` length. For building seeds.
pub fn record(selector: u8, args: &[u8], payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).expect("a payload of at most 65535 bytes");
    let mut out = vec![selector];
    out.extend_from_slice(args);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    /// Every seed (crashes found included, kept as `seed-crash-*`) through its harness,
    /// without libFuzzer: `cargo test` in this directory.
    type Harness = fn(&[u8]);

    #[test]
    fn every_seed_runs() {
        let targets: [(&str, Harness); 10] = [
            ("wire_views", crate::wire_views::run),
            ("datapath", crate::datapath::run),
            ("vxlan", crate::vxlan::run),
            ("router", crate::router::run),
            ("control_json", crate::control_json::run),
            ("cni_config", crate::cni_config::run),
            ("state_file", crate::state_file::run),
            ("dns", crate::dns::run),
            ("cluster", crate::cluster::run),
            ("inspect", crate::inspect::run),
        ];
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for (target, run) in targets {
            let mut seeds = 0;
            for entry in std::fs::read_dir(corpus.join(target)).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name.starts_with("seed-") {
                    run(&std::fs::read(&path).unwrap());
                    seeds += 1;
                }
            }
            assert!(seeds >= 1, "{target} has seeds");
        }
    }
}
