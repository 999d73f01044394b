//! `swctl capture` and `swctl trace`: looking at what crosses a port, and asking the
//! datapath what it would do with a frame.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use switchyard::capture::pcapng::{self, Block};
use switchyard::capture::{Direction, Directions};
use switchyard::control::{CaptureStarted, NetworkInfo, Request};
use switchyard::trace::{FrameSpec, Proto, Trace};
use switchyard::wire::MacAddr;
use switchyard_os::client::Client;

#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// The port: id, name (red/eth0), or vtep:ADDR for a VTEP peer's tunnel
    port: String,
    /// Write the frames as a pcapng file (Wireshark, tshark, tcpdump read it); `-` for
    /// stdout (`swctl capture red/eth0 -w - | tshark -r -`). Without it, one line per
    /// frame
    #[arg(short = 'w', long = "write", value_name = "FILE|-")]
    write: Option<PathBuf>,
    /// Stop after this many frames
    #[arg(short = 'c', long = "count", value_name = "COUNT")]
    count: Option<u64>,
    /// Frames the port received (in), sent (out), or both
    #[arg(long, value_enum, default_value_t = DirectionArg::Both)]
    direction: DirectionArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DirectionArg {
    In,
    Out,
    Both,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").args(["frame", "eth_src"]).required(true)))]
pub struct TraceArgs {
    /// The port the frame comes in on: id or name (red/eth0)
    #[arg(long, value_name = "PORT")]
    in_port: String,
    /// The whole Ethernet frame in hex, as the port would hand it over
    #[arg(long, value_name = "HEX", conflicts_with = "eth_dst")]
    frame: Option<String>,
    /// Source MAC of a frame described by its fields
    #[arg(long, value_name = "MAC", requires = "eth_dst")]
    eth_src: Option<MacAddr>,
    /// Destination MAC (ff:ff:ff:ff:ff:ff for a broadcast), or `gateway` for the
    /// gateway of the port's network
    #[arg(long, value_name = "MAC|gateway", requires = "eth_src")]
    eth_dst: Option<Destination>,
    /// An 802.1Q tag with this VLAN id (0 for a priority tag)
    #[arg(long, value_name = "N", requires = "eth_src", value_parser = clap::value_parser!(u16).range(0..=4095))]
    vlan: Option<u16>,
    /// IPv4 source (with --ipv4-dst): the frame carries IPv4
    #[arg(long, value_name = "A", requires_all = ["ipv4_dst", "eth_src"])]
    ipv4_src: Option<Ipv4Addr>,
    /// IPv4 destination
    #[arg(long, value_name = "B", requires = "ipv4_src")]
    ipv4_dst: Option<Ipv4Addr>,
    /// The transport inside IPv4 [default: icmp, an echo request]
    #[arg(long, value_enum, requires = "ipv4_src")]
    proto: Option<ProtoArg>,
    /// TCP or UDP destination port [default: 80]
    #[arg(long, value_name = "N", requires = "proto")]
    dport: Option<u16>,
    /// TCP or UDP source port [default: 40000]
    #[arg(long, value_name = "N", requires = "proto")]
    sport: Option<u16>,
    /// Make the frame this many bytes long, tag included (zeros after the headers): to
    /// see whether a frame of that size fits the overlay [default: the headers, padded
    /// to 60]
    #[arg(long, value_name = "BYTES", requires = "eth_src")]
    len: Option<usize>,
}

/// `--eth-dst`: a MAC, or the gateway of the in-port's network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Destination {
    Mac(MacAddr),
    Gateway,
}

impl std::str::FromStr for Destination {
    type Err = String;

    fn from_str(text: &str) -> Result<Destination, String> {
        if text == "gateway" {
            return Ok(Destination::Gateway);
        }
        text.parse()
            .map(Destination::Mac)
            .map_err(|err: switchyard::wire::ParseMacError| format!("{err}, or `gateway`"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ProtoArg {
    Tcp,
    Udp,
    Icmp,
}

impl TraceArgs {
    /// The frame to trace, in hex.
    fn frame_hex(&self, client: &mut Client) -> Result<String> {
        if let Some(frame) = &self.frame {
            return Ok(frame.clone());
        }
        let (Some(src), Some(dst)) = (self.eth_src, self.eth_dst) else {
            bail!("give --frame HEX, or --eth-src MAC and --eth-dst MAC");
        };
        let dst = match dst {
            Destination::Mac(mac) => mac,
            Destination::Gateway => self.gateway_mac(client)?,
        };
        let spec = FrameSpec {
            src,
            dst,
            vlan: self.vlan,
            ipv4: self.ipv4_src.zip(self.ipv4_dst),
            proto: self.proto.map(|p| match p {
                ProtoArg::Tcp => Proto::Tcp,
                ProtoArg::Udp => Proto::Udp,
                ProtoArg::Icmp => Proto::Icmp,
            }),
            dport: self.dport,
            sport: self.sport,
            len: self.len,
        };
        let frame = spec
            .build()
            .with_context(|| "cannot build the frame to trace")?;
        Ok(frame.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The gateway MAC of the network the in-port is an endpoint of.
    fn gateway_mac(&self, client: &mut Client) -> Result<MacAddr> {
        let networks: Vec<NetworkInfo> = client.call(&Request::NetworkList)?;
        let port = &self.in_port;
        networks
            .iter()
            .find(|n| {
                n.endpoints
                    .iter()
                    .any(|e| &e.port_name == port || e.port.0.to_string() == *port)
            })
            .map(|n| n.gateway_mac)
            .with_context(|| {
                format!("--eth-dst gateway: port {port} is an endpoint of no network; give the MAC")
            })
    }
}

/// `swctl trace`: the request, and the trace as text or JSON.
pub fn trace(client: &mut Client, args: &TraceArgs, json: bool) -> Result<String> {
    let request = Request::Trace {
        port: args.in_port.clone(),
        frame: args.frame_hex(client)?,
    };
    let trace: Trace = client.call(&request)?;
    Ok(if json {
        super::format_json(&trace)?
    } else {
        trace.to_string() + "\n"
    })
}

/// Where `swctl capture` puts what it receives.
enum Sink {
    /// The pcapng bytes, as they come.
    File(Box<dyn Write>),
    /// One line per frame, or one JSON object per frame.
    Lines { json: bool },
}

/// `swctl capture`: streams until the count is reached, the port goes away, or the
/// reader of our output does. Prints nothing on success but the frames (and, on stderr,
/// how many were captured and lost); returns what is left to print.
pub fn capture(client: Client, args: &CaptureArgs, json: bool) -> Result<String> {
    let mut sink = match &args.write {
        Some(path) if path.as_os_str() == "-" => {
            if io::stdout().is_terminal() {
                bail!("will not write a pcapng file to a terminal: pipe it (-w - | tshark -r -) or give -w FILE");
            }
            Sink::File(Box::new(io::stdout().lock()))
        }
        Some(path) => Sink::File(Box::new(File::create(path).with_context(|| {
            format!(
                "cannot create {}: check the directory exists and is writable",
                path.display()
            )
        })?)),
        None => Sink::Lines { json },
    };
    let mut client = client;
    let request = Request::Capture {
        port: args.port.clone(),
        directions: match args.direction {
            DirectionArg::In => Directions::In,
            DirectionArg::Out => Directions::Out,
            DirectionArg::Both => Directions::Both,
        },
        count: args.count,
    };
    let started: CaptureStarted = client.call(&request)?;
    let to_file = matches!(sink, Sink::File(_));
    if !to_file || args.write.as_ref().is_some_and(|p| p.as_os_str() != "-") {
        eprintln!(
            "swctl: capturing on port {} ({}){}",
            started.port,
            started.name,
            args.count
                .map_or(String::new(), |n| format!(", {n} frames"))
        );
    }
    let mut stream = client.into_stream()?;
    let mut frames = 0u64;
    let mut ended = None;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err).context("the capture's connection to switchd failed"),
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while let Some(len) = pcapng::block_len(&buf[at..]) {
            let len = len.context("switchd sent a capture this swctl cannot read")?;
            let Some(block) = buf.get(at..at + len) else {
                break;
            };
            let parsed =
                pcapng::parse(block).context("switchd sent a capture this swctl cannot read")?;
            let written = match (&mut sink, &parsed) {
                (Sink::File(out), _) => out.write_all(block),
                (
                    Sink::Lines { json },
                    Block::Packet {
                        unix_ns,
                        direction,
                        original_len,
                        data,
                    },
                ) => {
                    let line = frame_line(*json, *unix_ns, *direction, *original_len, data);
                    writeln!(io::stdout(), "{line}")
                }
                (Sink::Lines { .. }, _) => Ok(()),
            };
            match written {
                Ok(()) => {}
                // The reader went (tshark -c, head): that is the end, not a failure.
                Err(err) if err.kind() == io::ErrorKind::BrokenPipe => return Ok(String::new()),
                Err(err) => return Err(err).context("cannot write the capture"),
            }
            match parsed {
                Block::Packet { .. } => frames += 1,
                Block::Statistics {
                    dropped, comment, ..
                } => ended = Some((dropped, comment)),
                _ => {}
            }
            at += len;
        }
        buf.drain(..at);
        if let Sink::File(out) = &mut sink {
            if let Err(err) = out.flush() {
                if err.kind() == io::ErrorKind::BrokenPipe {
                    return Ok(String::new());
                }
                return Err(err).context("cannot write the capture");
            }
        }
    }
    let (lost, why) = match ended {
        Some((lost, why)) => (lost, why.unwrap_or_else(|| "switchd ended it".into())),
        None => (None, "the connection to switchd was cut".into()),
    };
    let lost = match lost {
        Some(0) => "none lost".to_string(),
        Some(lost) => {
            format!("{lost} lost (switchd's queue for the capture was full: a slow reader)")
        }
        None => "lost unknown".to_string(),
    };
    eprintln!("swctl: {frames} frames captured, {lost}; {why}");
    Ok(String::new())
}

/// One frame as a line: time, direction, length and what it is (or a JSON object).
fn frame_line(
    json: bool,
    unix_ns: u64,
    direction: Option<Direction>,
    len: u32,
    data: &[u8],
) -> String {
    let dir = match direction {
        Some(Direction::In) => "in",
        Some(Direction::Out) => "out",
        None => "?",
    };
    let (src, dst) = match (data.get(6..12), data.get(0..6)) {
        (Some(src), Some(dst)) => (
            MacAddr::from_slice(src)
                .map(|m| m.to_string())
                .unwrap_or_default(),
            MacAddr::from_slice(dst)
                .map(|m| m.to_string())
                .unwrap_or_default(),
        ),
        _ => (String::new(), String::new()),
    };
    let summary = switchyard::trace::summarize(data);
    if json {
        return serde_json::json!({
            "time_ns": unix_ns,
            "direction": dir,
            "len": len,
            "src": src,
            "dst": dst,
            "summary": summary,
        })
        .to_string();
    }
    let secs = unix_ns / 1_000_000_000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let micros = (unix_ns / 1000) % 1_000_000;
    format!("{h:02}:{m:02}:{s:02}.{micros:06} {dir:<3} {src} > {dst}, {summary}, length {len}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lines_say_time_direction_and_what() {
        let frame = FrameSpec::new(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr::BROADCAST)
            .build()
            .unwrap();
        let line = frame_line(false, 3_723_000_001_000, Some(Direction::In), 60, &frame);
        assert_eq!(
            line,
            "01:02:03.000001 in  02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype 0x88b5, length 60"
        );
        let json: serde_json::Value =
            serde_json::from_str(&frame_line(true, 5, Some(Direction::Out), 60, &frame)).unwrap();
        assert_eq!(json["direction"], "out");
        assert_eq!(json["len"], 60);
    }
}
