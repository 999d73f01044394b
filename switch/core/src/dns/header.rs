//! A zero-copy view of the DNS header (RFC 1035 §4.1.1), and the end of the question.
//!
//! Enough to decide what to do with a message without decoding it: drop it, answer an
//! error, or rewrite its id on the way to or from an upstream.

use std::ops::Range;

/// Bytes in a DNS header.
pub const HEADER_LEN: usize = 12;

const ID: Range<usize> = 0..2;
const FLAGS_HI: usize = 2;
const FLAGS_LO: usize = 3;
const QDCOUNT: usize = 4;
const ANCOUNT: usize = 6;
const NSCOUNT: usize = 8;
const ARCOUNT: usize = 10;

const QR: u8 = 0x80;
const AA: u8 = 0x04;
const TC: u8 = 0x02;
const RD: u8 = 0x01;
const RA: u8 = 0x80;

/// The longest domain name on the wire, length bytes and root included (RFC 1035 §3.1).
const MAX_NAME_WIRE_LEN: usize = 255;

/// A DNS message's header, over any byte buffer at least [`HEADER_LEN`] long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// The header of `buffer`, or `None` if it is shorter than a header.
    pub fn new_checked(buffer: T) -> Option<Header<T>> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(Header { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn byte(&self, at: usize) -> u8 {
        self.buffer.as_ref().get(at).copied().unwrap_or(0)
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.byte(at), self.byte(at + 1)])
    }

    pub fn id(&self) -> u16 {
        self.u16_at(ID.start)
    }

    /// QR: a response, not a query.
    pub fn is_response(&self) -> bool {
        self.byte(FLAGS_HI) & QR != 0
    }

    /// The 4-bit opcode (0 is QUERY).
    pub fn opcode(&self) -> u8 {
        (self.byte(FLAGS_HI) >> 3) & 0x0f
    }

    pub fn authoritative(&self) -> bool {
        self.byte(FLAGS_HI) & AA != 0
    }

    /// TC: the message was cut to fit.
    pub fn truncated(&self) -> bool {
        self.byte(FLAGS_HI) & TC != 0
    }

    pub fn recursion_desired(&self) -> bool {
        self.byte(FLAGS_HI) & RD != 0
    }

    pub fn recursion_available(&self) -> bool {
        self.byte(FLAGS_LO) & RA != 0
    }

    /// The low 4 bits of the response code (an OPT record may carry 8 more).
    pub fn rcode(&self) -> u8 {
        self.byte(FLAGS_LO) & 0x0f
    }

    pub fn question_count(&self) -> u16 {
        self.u16_at(QDCOUNT)
    }

    pub fn answer_count(&self) -> u16 {
        self.u16_at(ANCOUNT)
    }

    pub fn authority_count(&self) -> u16 {
        self.u16_at(NSCOUNT)
    }

    pub fn additional_count(&self) -> u16 {
        self.u16_at(ARCOUNT)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    pub fn set_id(&mut self, id: u16) {
        if let Some(field) = self.buffer.as_mut().get_mut(ID) {
            field.copy_from_slice(&id.to_be_bytes());
        }
    }
}

/// A header-only reply to the query whose header is `query`: same id and opcode, RD
/// copied, RA set, `rcode` (its low 4 bits), every count 0.
pub(crate) fn error_reply<T: AsRef<[u8]>>(query: &Header<T>, rcode: u8) -> Vec<u8> {
    header_only(query.id(), query.opcode(), query.recursion_desired(), rcode)
}

/// A header-only response: `id`, `opcode` and RD as given, RA set, `rcode` (its low 4
/// bits), every count 0.
pub(crate) fn header_only(id: u16, opcode: u8, rd: bool, rcode: u8) -> Vec<u8> {
    let mut reply = vec![0; HEADER_LEN];
    reply[ID].copy_from_slice(&id.to_be_bytes());
    reply[FLAGS_HI] = QR | ((opcode & 0x0f) << 3) | u8::from(rd);
    reply[FLAGS_LO] = RA | (rcode & 0x0f);
    reply
}

/// Where the first question of `message` ends: after its name (labels only, no
/// compression pointer: nothing precedes the first name but the header), type and class.
/// `None` if the message has no complete question there, or the name is longer than 255
/// bytes.
pub fn question_end(message: &[u8]) -> Option<usize> {
    let mut at = HEADER_LEN;
    loop {
        let len = usize::from(*message.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len > crate::dns::MAX_LABEL_LEN {
            // A compression pointer or an extended label type.
            return None;
        }
        at += 1 + len;
        if at - HEADER_LEN >= MAX_NAME_WIRE_LEN {
            return None;
        }
    }
    let end = at + 4;
    (end <= message.len()).then_some(end)
}

/// Whether two questions (as [`question_end`] delimits them, header excluded) are the
/// same: names equal without regard to ASCII case, type and class equal. Label length
/// bytes are below 64, so they never fold.
pub(crate) fn same_question(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || a.len() < 4 {
        return false;
    }
    let (a_name, a_rest) = a.split_at(a.len() - 4);
    let (b_name, b_rest) = b.split_at(b.len() - 4);
    a_name.eq_ignore_ascii_case(b_name) && a_rest == b_rest
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `www.example.com. IN A`, id 0x1234, RD.
    const QUERY: [u8; 33] = [
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, //
        3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm',
        0, //
        0, 1, 0, 1,
    ];

    #[test]
    fn header_fields() {
        let h = Header::new_checked(&QUERY[..]).unwrap();
        assert_eq!(h.id(), 0x1234);
        assert!(!h.is_response());
        assert_eq!(h.opcode(), 0);
        assert!(h.recursion_desired());
        assert!(!h.truncated() && !h.authoritative() && !h.recursion_available());
        assert_eq!(h.rcode(), 0);
        assert_eq!(
            (
                h.question_count(),
                h.answer_count(),
                h.authority_count(),
                h.additional_count()
            ),
            (1, 0, 0, 0)
        );
        assert!(Header::new_checked(&QUERY[..11]).is_none());
        assert!(Header::new_checked(&[][..]).is_none());
    }

    #[test]
    fn flags_and_id_rewrite() {
        let mut bytes = QUERY;
        bytes[2] = 0x80 | (5 << 3) | 0x04 | 0x02;
        bytes[3] = 0x80 | 0x03;
        let mut h = Header::new_checked(&mut bytes[..]).unwrap();
        assert!(h.is_response() && h.authoritative() && h.truncated());
        assert!(!h.recursion_desired() && h.recursion_available());
        assert_eq!((h.opcode(), h.rcode()), (5, 3));
        h.set_id(0xbeef);
        assert_eq!(h.id(), 0xbeef);
        assert_eq!(bytes[..2], [0xbe, 0xef]);
        assert_eq!(bytes[2..], QUERY_WITH_FLAGS[2..]);
    }

    const QUERY_WITH_FLAGS: [u8; 33] = {
        let mut q = QUERY;
        q[2] = 0x80 | (5 << 3) | 0x04 | 0x02;
        q[3] = 0x80 | 0x03;
        q
    };

    #[test]
    fn error_replies_echo_id_opcode_and_rd() {
        let mut bytes = QUERY;
        bytes[2] = (2 << 3) | 0x01;
        let reply = error_reply(&Header::new_checked(&bytes[..]).unwrap(), 4);
        assert_eq!(
            reply,
            [
                0x12,
                0x34,
                0x80 | (2 << 3) | 0x01,
                0x84,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0
            ]
        );
    }

    #[test]
    fn question_bounds() {
        assert_eq!(question_end(&QUERY), Some(QUERY.len()));
        assert_eq!(question_end(&QUERY[..QUERY.len() - 1]), None);
        assert_eq!(question_end(&QUERY[..HEADER_LEN]), None);
        // The root name: a single zero byte.
        let root = [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1];
        assert_eq!(question_end(&root), Some(17));
        // A compression pointer where the first name starts.
        let mut pointer = QUERY;
        pointer[12] = 0xc0;
        assert_eq!(question_end(&pointer), None);
        // A name longer than 255 bytes: four 63-byte labels and the root.
        let mut long = QUERY[..HEADER_LEN].to_vec();
        for _ in 0..4 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(question_end(&long), None);
    }

    #[test]
    fn questions_compare_names_without_case() {
        let q = &QUERY[HEADER_LEN..];
        let mut upper = q.to_vec();
        upper[1..4].copy_from_slice(b"WWW");
        assert!(same_question(q, &upper));
        let mut other_type = q.to_vec();
        let n = other_type.len();
        other_type[n - 3] = 28;
        assert!(!same_question(q, &other_type));
        assert!(!same_question(q, &q[..q.len() - 1]));
        assert!(!same_question(&[], &[]));
        // Type 0x0041 ('A') and 0x0061 ('a') are different types, not one in two cases.
        let mut a = q.to_vec();
        let mut b = q.to_vec();
        a[n - 3] = b'A';
        b[n - 3] = b'a';
        assert!(!same_question(&a, &b));
    }
}
