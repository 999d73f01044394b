//! The Internet checksum (RFC 1071). (Being written.)
