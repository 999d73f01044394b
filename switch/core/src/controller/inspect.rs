//! Looking inside the datapath for a client: packet traces and the port a live capture
//! is for. Neither changes the model.

use super::{Controller, Outcome};
use crate::control::{ControlError, ErrorCode};
use crate::datapath::{MAX_WIRE_LEN, ROUTER_PORT};
use crate::forward::PortKind;
use crate::port::PortId;
use crate::time::Time;
use crate::trace::{Step, Trace};
use crate::wire::HEADER_LEN;

/// A frame given in hexadecimal (`0a1b...`, whitespace and `:` allowed between bytes).
pub fn parse_hex_frame(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b':')
        .collect();
    if digits.len() % 2 != 0 {
        return Err("the frame has an odd number of hex digits".into());
    }
    let frame = digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("{:?} is not a hex byte", String::from_utf8_lossy(pair)))
        })
        .collect::<Result<Vec<u8>, String>>()?;
    if frame.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes is shorter than an Ethernet header ({HEADER_LEN})",
            frame.len()
        ));
    }
    if frame.len() > MAX_WIRE_LEN {
        return Err(format!(
            "{} bytes is more than a port hands over ({MAX_WIRE_LEN})",
            frame.len()
        ));
    }
    Ok(frame)
}

impl Controller {
    /// A local port as `resolve_port` finds it, or a peer's tunnel as `vtep:ADDR`.
    fn resolve_local_or_peer(&self, text: &str) -> Outcome<PortId> {
        match self.resolve_port(text) {
            Ok(id) => Ok(id),
            Err(err) => match text.strip_prefix("vtep:").and_then(|a| a.parse().ok()) {
                Some(addr) => self.peer_port(addr).ok_or(err),
                None => Err(err),
            },
        }
    }

    /// Traces `frame` (hex) from local port `port` at `now` (see [`crate::trace`]).
    pub(super) fn trace(&self, now: Time, port: &str, frame: &str) -> Outcome<Trace> {
        let id = self.resolve_local_or_peer(port)?;
        if let Some(PortKind::Tunnel { remote }) = self.dp.switch().port_kind(id) {
            return Err(ControlError::invalid(format!(
                "port {port} is the tunnel to VTEP {remote}: trace the frame from the sender's port on that node, or from a local port here"
            )));
        }
        let frame = parse_hex_frame(frame)
            .map_err(|why| ControlError::invalid(format!("invalid frame: {why}; give the Ethernet frame in hex, or describe it with --eth-src/--eth-dst")))?;
        let mut trace = self.dp.trace(now, id, &frame);
        // What the router does not know: the host's NAT of the network's traffic.
        for step in &mut trace.steps {
            if let Step::Router { vlan, verdict, .. } = step {
                let masquerade = self
                    .model
                    .networks
                    .by_vlan(*vlan)
                    .is_some_and(|n| n.masquerade);
                if masquerade && verdict.starts_with("routed up the uplink") {
                    verdict.push_str(", where NAT masquerades it as the host");
                }
            }
        }
        let mut mentioned = vec![id];
        for step in &trace.steps {
            match step {
                Step::Ingress { port, .. }
                | Step::Learn { port, .. }
                | Step::Output { port, .. }
                | Step::Encapsulate { port, .. }
                | Step::Drop {
                    port: Some(port), ..
                } => mentioned.push(*port),
                Step::Lookup {
                    result: crate::trace::LookupResult::Known { port },
                    ..
                } => mentioned.push(*port),
                _ => {}
            }
            if let Step::Learn {
                change: crate::trace::LearnChange::Move { from: port },
                ..
            }
            | Step::Learn {
                change: crate::trace::LearnChange::Static { port },
                ..
            } = step
            {
                mentioned.push(*port);
            }
        }
        for id in mentioned {
            let name = if id == ROUTER_PORT {
                "router".to_string()
            } else {
                self.any_port_name(id)
            };
            trace.port_names.insert(id, name);
        }
        Ok(trace)
    }

    /// The port a capture of `port` (an id or name, local or a VTEP peer's) is for, and
    /// its name.
    pub fn capture_port(&self, port: &str) -> Outcome<(PortId, String)> {
        let id = self.resolve_local_or_peer(port)?;
        if self.dp.switch().port_kind(id).is_none() {
            return Err(ControlError::new(
                ErrorCode::NoSuchPort,
                format!("port {port} is not in the datapath (down or being removed); try again"),
            ));
        }
        Ok((id, self.any_port_name(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_hex_frame;

    #[test]
    fn hex_frames_parse_with_separators_and_refuse_junk() {
        let frame = "ffffffffffff 020000000001 88b5".to_string() + &"00".repeat(46);
        assert_eq!(parse_hex_frame(&frame).unwrap().len(), 60);
        assert_eq!(
            parse_hex_frame("ff:ff:ff:ff:ff:ff:02:00:00:00:00:01:08:06").unwrap()[12],
            8
        );
        assert!(parse_hex_frame("fff").unwrap_err().contains("odd"));
        assert!(parse_hex_frame("zz".repeat(14).as_str())
            .unwrap_err()
            .contains("not a hex byte"));
        assert!(parse_hex_frame("00").unwrap_err().contains("shorter"));
    }
}
