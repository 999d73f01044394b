//! Live capture: copies of the frames that cross a port, for `swctl capture`.
//!
//! # Contract
//!
//! * **Nothing for ports nobody captures.** A port carries a list of [`CaptureTap`]s in
//!   the published topology; forwarding checks that the list is empty (a length in the
//!   port's entry, which it reads anyway) and does nothing more.
//! * **Never waits for the reader.** A tap's queue is bounded in bytes
//!   ([`CaptureTap::budget`]). A frame that does not fit is not copied but counted
//!   ([`CaptureTap::lost`]); forwarding never waits for the reader.
//! * **As on the wire.** Received frames are copied as the port handed them over,
//!   802.1Q tag included on a trunk; sent frames after they were tagged for the port.
//!   A TCP super-frame (TSO/GRO) is one frame, as it crossed, not its segments. Frames of
//!   a tunnel port are the inner frames, untagged, as VXLAN carries them.
//! * **Time is given.** Each copy carries the datapath's [`Time`]; the driver turns it
//!   into wall-clock time when it writes the file.
//!
//! The file format is pcapng ([`pcapng`]): its packet blocks say in which direction a
//! frame crossed, its interface block names the port, and the statistics block at the
//! end says how many frames were lost, so all of it reaches Wireshark and tshark.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::time::Time;

/// Which direction a capture wants, as `swctl capture --direction` says it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Directions {
    /// Frames the port received (from its container, or from the peer's VTEP).
    In,
    /// Frames the switch sent out of the port.
    Out,
    #[default]
    Both,
}

impl Directions {
    fn wants(self, direction: Direction) -> bool {
        matches!(
            (self, direction),
            (Directions::Both, _)
                | (Directions::In, Direction::In)
                | (Directions::Out, Direction::Out)
        )
    }
}

/// The direction one frame crossed the port in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    In,
    Out,
}

/// One copied frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    pub at: Time,
    pub direction: Direction,
    pub frame: Vec<u8>,
}

/// Bytes of frames a tap may hold before its reader takes them: room for about 64
/// super-frames, or 2800 full-size frames.
pub const DEFAULT_BUDGET: usize = 4 << 20;

/// One capture of one port: the forwarding threads' end of its queue. See the module
/// documentation.
#[derive(Debug)]
pub struct CaptureTap {
    directions: Directions,
    queue: crossbeam_channel::Sender<Captured>,
    /// Bytes in the queue (frames the reader has not taken yet).
    queued: Arc<AtomicUsize>,
    budget: usize,
    taken: AtomicU64,
    lost: AtomicU64,
}

/// The reader's end of a tap's queue.
#[derive(Debug)]
pub struct CaptureReader {
    queue: crossbeam_channel::Receiver<Captured>,
    queued: Arc<AtomicUsize>,
}

impl CaptureTap {
    /// A tap for `directions` holding at most `budget` bytes, and its reader.
    pub fn new(directions: Directions, budget: usize) -> (Arc<CaptureTap>, CaptureReader) {
        let (queue, receiver) = crossbeam_channel::unbounded();
        let queued = Arc::new(AtomicUsize::new(0));
        let tap = CaptureTap {
            directions,
            queue,
            queued: Arc::clone(&queued),
            budget,
            taken: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        };
        (
            Arc::new(tap),
            CaptureReader {
                queue: receiver,
                queued,
            },
        )
    }

    /// Copies `frame` if the capture wants `direction` and its queue has room; counts
    /// it as lost if not. Never blocks.
    #[cold]
    pub fn offer(&self, at: Time, direction: Direction, frame: &[u8]) {
        if !self.directions.wants(direction) {
            return;
        }
        let len = frame.len();
        let fits = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued + len <= self.budget).then_some(queued + len)
            })
            .is_ok();
        if !fits {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let copy = Captured {
            at,
            direction,
            frame: frame.to_vec(),
        };
        if self.queue.send(copy).is_ok() {
            self.taken.fetch_add(1, Ordering::Relaxed);
        } else {
            // The reader is gone; the tap is about to be removed.
            self.queued.fetch_sub(len, Ordering::AcqRel);
        }
    }

    /// Frames copied into the queue so far.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Frames the capture wanted but its queue had no room for.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// The queue's bound in bytes.
    pub fn budget(&self) -> usize {
        self.budget
    }
}

impl CaptureReader {
    /// The next frame, waiting at most `timeout`; `None` on timeout (or if every tap
    /// went away).
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Option<Captured> {
        let captured = self.queue.recv_timeout(timeout).ok()?;
        self.queued
            .fetch_sub(captured.frame.len(), Ordering::AcqRel);
        Some(captured)
    }
}

/// Offers `frame` to each tap in `taps` (a port's captures).
#[cold]
#[inline(never)]
pub fn offer_all(taps: &[Arc<CaptureTap>], at: Time, direction: Direction, frame: &[u8]) {
    for tap in taps {
        tap.offer(at, direction, frame);
    }
}

/// The pcapng file format (draft-ietf-opsawg-pcapng), the part a capture needs: a
/// section, one Ethernet interface, enhanced packet blocks with their direction, and an
/// interface statistics block. Little-endian, as the writer's choice; readers accept
/// either order (this one reads what it writes, and refuses the other).
pub mod pcapng {
    use super::Direction;

    pub const SECTION_HEADER: u32 = 0x0A0D_0D0A;
    pub const INTERFACE_DESCRIPTION: u32 = 0x0000_0001;
    pub const ENHANCED_PACKET: u32 = 0x0000_0006;
    pub const INTERFACE_STATISTICS: u32 = 0x0000_0005;
    const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
    /// LINKTYPE_ETHERNET.
    pub const LINKTYPE_ETHERNET: u16 = 1;
    /// Frames are kept whole: a TCP super-frame is up to 64 KiB plus headers.
    pub const SNAPLEN: u32 = 262_144;

    const OPT_END: u16 = 0;
    const OPT_COMMENT: u16 = 1;
    const IF_NAME: u16 = 2;
    const IF_TSRESOL: u16 = 9;
    const EPB_FLAGS: u16 = 2;
    const ISB_IFRECV: u16 = 4;
    const ISB_IFDROP: u16 = 5;
    const SHB_USERAPPL: u16 = 4;

    fn pad4(len: usize) -> usize {
        (4 - len % 4) % 4
    }

    fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
        out.extend_from_slice(&code.to_le_bytes());
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
        out.extend(std::iter::repeat_n(0, pad4(value.len())));
    }

    /// A block of `kind` around `body` (which must be a multiple of 4 bytes long).
    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let total = (12 + body.len()) as u32;
        let mut out = Vec::with_capacity(total as usize);
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&total.to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&total.to_le_bytes());
        out
    }

    /// The section header: the start of the file. `application` names the writer.
    pub fn section_header(application: &str) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        // Section length: not given.
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        option(&mut body, SHB_USERAPPL, application.as_bytes());
        option(&mut body, OPT_END, &[]);
        block(SECTION_HEADER, &body)
    }

    /// Interface 0: an Ethernet port called `name`, timestamps in nanoseconds.
    pub fn interface_description(name: &str) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&SNAPLEN.to_le_bytes());
        option(&mut body, IF_NAME, name.as_bytes());
        option(&mut body, IF_TSRESOL, &[9]);
        option(&mut body, OPT_END, &[]);
        block(INTERFACE_DESCRIPTION, &body)
    }

    /// One frame on interface 0, at `unix_ns` nanoseconds since the epoch.
    pub fn enhanced_packet(unix_ns: u64, direction: Direction, frame: &[u8]) -> Vec<u8> {
        let captured = frame.len().min(SNAPLEN as usize);
        let mut body = Vec::with_capacity(32 + captured);
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&((unix_ns >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(unix_ns as u32).to_le_bytes());
        body.extend_from_slice(&(captured as u32).to_le_bytes());
        body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        body.extend_from_slice(&frame[..captured]);
        body.extend(std::iter::repeat_n(0, pad4(captured)));
        let flags: u32 = match direction {
            Direction::In => 1,
            Direction::Out => 2,
        };
        option(&mut body, EPB_FLAGS, &flags.to_le_bytes());
        option(&mut body, OPT_END, &[]);
        block(ENHANCED_PACKET, &body)
    }

    /// How interface 0 did: frames the capture saw and frames it lost, at `unix_ns`,
    /// with `comment` (why the capture ended).
    pub fn interface_statistics(
        unix_ns: u64,
        received: u64,
        dropped: u64,
        comment: &str,
    ) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&((unix_ns >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(unix_ns as u32).to_le_bytes());
        option(&mut body, ISB_IFRECV, &received.to_le_bytes());
        option(&mut body, ISB_IFDROP, &dropped.to_le_bytes());
        option(&mut body, OPT_COMMENT, comment.as_bytes());
        option(&mut body, OPT_END, &[]);
        block(INTERFACE_STATISTICS, &body)
    }

    /// A block read back: what a reader of the stream needs.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Block {
        SectionHeader,
        Interface {
            name: Option<String>,
        },
        Packet {
            unix_ns: u64,
            direction: Option<Direction>,
            original_len: u32,
            data: Vec<u8>,
        },
        Statistics {
            received: Option<u64>,
            dropped: Option<u64>,
            comment: Option<String>,
        },
        Other {
            kind: u32,
        },
    }

    /// Why bytes are not a block.
    #[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
    pub enum ReadError {
        #[error("a block header says {0} bytes, which cannot be")]
        BadLength(u32),
        #[error("the block's trailing length differs from its leading one")]
        LengthMismatch,
        #[error("a big-endian section, which this reader does not read")]
        BigEndian,
        #[error("a block's body is shorter than its fields")]
        Truncated,
    }

    /// The length of the block at the start of `bytes`, once its first 8 bytes are
    /// there: how much to read before [`parse`] can take it.
    pub fn block_len(bytes: &[u8]) -> Option<Result<usize, ReadError>> {
        let len = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
        Some(if len < 12 || len % 4 != 0 || len > SNAPLEN + 1024 {
            Err(ReadError::BadLength(len))
        } else {
            Ok(len as usize)
        })
    }

    fn u32_at(bytes: &[u8], at: usize) -> Result<u32, ReadError> {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
            .ok_or(ReadError::Truncated)
    }

    /// Options from `bytes` on: (code, value) until the end option or the bytes end.
    fn options(mut bytes: &[u8]) -> Vec<(u16, &[u8])> {
        let mut found = Vec::new();
        while bytes.len() >= 4 {
            let code = u16::from_le_bytes([bytes[0], bytes[1]]);
            let len = u16::from_le_bytes([bytes[2], bytes[3]]) as usize;
            if code == OPT_END {
                break;
            }
            let Some(value) = bytes.get(4..4 + len) else {
                break;
            };
            found.push((code, value));
            bytes = bytes.get(4 + len + pad4(len)..).unwrap_or_default();
        }
        found
    }

    fn u64_option(value: &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(value.try_into().ok()?))
    }

    /// Parses one whole block (its length from [`block_len`]).
    pub fn parse(block: &[u8]) -> Result<Block, ReadError> {
        let kind = u32_at(block, 0)?;
        let len = u32_at(block, 4)?;
        if len as usize != block.len() || len < 12 {
            return Err(ReadError::BadLength(len));
        }
        if u32_at(block, block.len() - 4)? != len {
            return Err(ReadError::LengthMismatch);
        }
        let body = &block[8..block.len() - 4];
        Ok(match kind {
            SECTION_HEADER => {
                if u32_at(body, 0)? != BYTE_ORDER_MAGIC {
                    return Err(ReadError::BigEndian);
                }
                Block::SectionHeader
            }
            INTERFACE_DESCRIPTION => {
                let opts = body.get(8..).ok_or(ReadError::Truncated)?;
                let name = options(opts)
                    .into_iter()
                    .find(|(code, _)| *code == IF_NAME)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
                Block::Interface { name }
            }
            ENHANCED_PACKET => {
                let high = u32_at(body, 4)? as u64;
                let low = u32_at(body, 8)? as u64;
                let captured = u32_at(body, 12)? as usize;
                let original_len = u32_at(body, 16)?;
                let data = body.get(20..20 + captured).ok_or(ReadError::Truncated)?;
                let opts = body
                    .get(20 + captured + pad4(captured)..)
                    .unwrap_or_default();
                let direction = options(opts)
                    .into_iter()
                    .find(|(code, _)| *code == EPB_FLAGS)
                    .and_then(|(_, v)| Some(u32::from_le_bytes(v.try_into().ok()?)))
                    .and_then(|flags| match flags & 3 {
                        1 => Some(Direction::In),
                        2 => Some(Direction::Out),
                        _ => None,
                    });
                Block::Packet {
                    unix_ns: (high << 32) | low,
                    direction,
                    original_len,
                    data: data.to_vec(),
                }
            }
            INTERFACE_STATISTICS => {
                let opts = body.get(12..).ok_or(ReadError::Truncated)?;
                let options = options(opts);
                let find = |code| {
                    options
                        .iter()
                        .find(|(c, _)| *c == code)
                        .and_then(|(_, v)| u64_option(v))
                };
                Block::Statistics {
                    received: find(ISB_IFRECV),
                    dropped: find(ISB_IFDROP),
                    comment: options
                        .iter()
                        .find(|(c, _)| *c == OPT_COMMENT)
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned()),
                }
            }
            kind => Block::Other { kind },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::pcapng::{self, Block};
    use super::*;
    use std::time::Duration;

    fn at(ms: u64) -> Time {
        Time::from_duration(Duration::from_millis(ms))
    }

    #[test]
    fn a_tap_copies_what_its_directions_want() {
        let (tap, reader) = CaptureTap::new(Directions::In, DEFAULT_BUDGET);
        tap.offer(at(1), Direction::Out, b"out");
        tap.offer(at(2), Direction::In, b"in");
        let got = reader.recv_timeout(Duration::from_millis(10)).unwrap();
        assert_eq!(got.frame, b"in");
        assert_eq!(got.direction, Direction::In);
        assert!(reader.recv_timeout(Duration::from_millis(1)).is_none());
        assert_eq!((tap.taken(), tap.lost()), (1, 0));
    }

    #[test]
    fn a_full_queue_counts_instead_of_waiting() {
        let (tap, reader) = CaptureTap::new(Directions::Both, 100);
        for _ in 0..5 {
            tap.offer(at(0), Direction::In, &[0u8; 40]);
        }
        // Two fit in 100 bytes; three were lost.
        assert_eq!((tap.taken(), tap.lost()), (2, 3));
        // Taking one makes room for one more.
        reader.recv_timeout(Duration::from_millis(1)).unwrap();
        tap.offer(at(0), Direction::In, &[0u8; 40]);
        assert_eq!((tap.taken(), tap.lost()), (3, 3));
    }

    #[test]
    fn a_gone_reader_frees_what_it_would_have_held() {
        let (tap, reader) = CaptureTap::new(Directions::Both, 100);
        drop(reader);
        for _ in 0..10 {
            tap.offer(at(0), Direction::In, &[0u8; 40]);
        }
        assert_eq!((tap.taken(), tap.lost()), (0, 0));
    }

    #[test]
    fn pcapng_blocks_read_back() {
        let shb = pcapng::section_header("switchd test");
        assert_eq!(pcapng::block_len(&shb), Some(Ok(shb.len())));
        assert_eq!(pcapng::parse(&shb), Ok(Block::SectionHeader));
        let idb = pcapng::interface_description("red/eth0");
        assert_eq!(
            pcapng::parse(&idb),
            Ok(Block::Interface {
                name: Some("red/eth0".into())
            })
        );
        for len in [0usize, 1, 2, 3, 4, 60, 1514, 65_000] {
            let frame: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let epb = pcapng::enhanced_packet(0x1_2345_6789, Direction::Out, &frame);
            assert_eq!(epb.len() % 4, 0);
            assert_eq!(
                pcapng::parse(&epb),
                Ok(Block::Packet {
                    unix_ns: 0x1_2345_6789,
                    direction: Some(Direction::Out),
                    original_len: len as u32,
                    data: frame,
                })
            );
        }
        let isb = pcapng::interface_statistics(5, 100, 7, "count reached");
        assert_eq!(
            pcapng::parse(&isb),
            Ok(Block::Statistics {
                received: Some(100),
                dropped: Some(7),
                comment: Some("count reached".into()),
            })
        );
    }

    #[test]
    fn pcapng_refuses_bad_blocks() {
        let mut epb = pcapng::enhanced_packet(1, Direction::In, b"abcd");
        let n = epb.len();
        epb[n - 1] ^= 1;
        assert_eq!(pcapng::parse(&epb), Err(pcapng::ReadError::LengthMismatch));
        assert_eq!(
            pcapng::block_len(&[6, 0, 0, 0, 5, 0, 0, 0]),
            Some(Err(pcapng::ReadError::BadLength(5)))
        );
        assert_eq!(pcapng::block_len(&[6, 0, 0]), None);
        // A packet block claiming more captured bytes than it has.
        let mut short = pcapng::enhanced_packet(1, Direction::In, b"abcd");
        short[20..24].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(pcapng::parse(&short), Err(pcapng::ReadError::Truncated));
    }
}
