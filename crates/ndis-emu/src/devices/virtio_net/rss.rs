//! Receive side scaling and hash reporting (virtio 1.2, 5.1.6.4.3 and 5.1.6.5.6-7:
//! `VIRTIO_NET_F_RSS`, `VIRTIO_NET_F_HASH_REPORT`).
//!
//! The driver sets a configuration with `VIRTIO_NET_CTRL_MQ_RSS_CONFIG` (hash types, key and an
//! indirection table of receive-queue numbers) or, for hashes without steering,
//! `VIRTIO_NET_CTRL_MQ_HASH_CONFIG` (the same layout with the table fields reserved). The last
//! multiqueue command decides the mode (5.1.6.5.6): `VQ_PAIRS_SET` goes back to automatic
//! steering without hashes, `HASH_CONFIG` hashes without steering, `RSS_CONFIG` hashes and
//! steers. Commands are checked as the spec requires of the driver; anything else is refused
//! with `VIRTIO_NET_ERR` and the configuration in force stays.
//!
//! The Toeplitz hash and the header parsing here are the model's own (bit by bit, over fields
//! `etherparse` slices), sharing nothing with the driver or the framework.

use etherparse::{LinkExtSlice, NetSlice, SlicedPacket, TransportSlice};

/// `VIRTIO_NET_HASH_TYPE_*` bits (`hash_types`, `supported_hash_types`).
pub mod hash_type {
    pub const IPV4: u32 = 1 << 0;
    pub const TCPV4: u32 = 1 << 1;
    pub const UDPV4: u32 = 1 << 2;
    pub const IPV6: u32 = 1 << 3;
    pub const TCPV6: u32 = 1 << 4;
    pub const UDPV6: u32 = 1 << 5;
    pub const IPV6_EX: u32 = 1 << 6;
    pub const TCPV6_EX: u32 = 1 << 7;
    pub const UDPV6_EX: u32 = 1 << 8;
    /// What the model can compute (the `_EX` types, which hash addresses from IPv6 extension
    /// headers, are not implemented).
    pub const SUPPORTED: u32 = IPV4 | TCPV4 | UDPV4 | IPV6 | TCPV6 | UDPV6;
}

/// `VIRTIO_NET_HASH_REPORT_*`: what a received frame's `hash_report` says the hash covers.
pub mod report {
    pub const NONE: u16 = 0;
    pub const IPV4: u16 = 1;
    pub const TCPV4: u16 = 2;
    pub const UDPV4: u16 = 3;
    pub const IPV6: u16 = 4;
    pub const TCPV6: u16 = 5;
    pub const UDPV6: u16 = 6;
}

/// `VIRTIO_NET_CTRL_MQ_RSS_CONFIG` and `VIRTIO_NET_CTRL_MQ_HASH_CONFIG`.
pub const MQ_RSS_CONFIG: u8 = 1;
pub const MQ_HASH_CONFIG: u8 = 2;

/// The configuration an accepted command put in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssConfig {
    /// Enabled hash types (`VIRTIO_NET_HASH_TYPE_*`).
    pub hash_types: u32,
    pub key: Vec<u8>,
    /// With `RSS_CONFIG`: the receive queue (pair) of each entry, `indirection_table_mask + 1`
    /// of them; empty for `HASH_CONFIG` (no steering).
    pub table: Vec<u16>,
    /// Where frames without a hash go (`RSS_CONFIG` only).
    pub unclassified_queue: u16,
    /// `max_tx_vq` of `RSS_CONFIG` (the pairs in use); 0 for `HASH_CONFIG`.
    pub max_tx_vq: u16,
}

impl RssConfig {
    /// Whether the configuration steers (`RSS_CONFIG`) rather than only hashing.
    pub fn steers(&self) -> bool {
        !self.table.is_empty()
    }

    /// The receive queue for a frame of `hash` (None: unclassified).
    pub fn queue_for(&self, hash: Option<(u32, u16)>) -> u16 {
        match hash {
            Some((value, _)) if !self.table.is_empty() => {
                self.table[value as usize & (self.table.len() - 1)]
            }
            _ => self.unclassified_queue,
        }
    }
}

/// The device's limits, as its configuration space reports them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_key_size: u8,
    pub max_table_length: u16,
    pub supported_hash_types: u32,
    /// `max_virtqueue_pairs`.
    pub pairs: u16,
}

/// Parses and checks an `RSS_CONFIG` (`steer`) or `HASH_CONFIG` command body; `enabled(p)`: both
/// queues of pair `p` are enabled. `Ok(None)`: hashing switched off (no types and no key).
pub fn parse(
    data: &[u8],
    steer: bool,
    limits: Limits,
    enabled: impl Fn(u16) -> bool,
) -> Result<Option<RssConfig>, String> {
    let le16 = |at: usize| -> Result<u16, String> {
        data.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(|| format!("command of {} bytes ends inside its fields", data.len()))
    };
    let hash_types = data
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or("command shorter than hash_types")?;
    // HASH_CONFIG: `reserved[4]` stands where the mask, the unclassified queue, one table
    // entry and max_tx_vq are.
    let entries = if steer {
        let mask = le16(4)?;
        let n = usize::from(mask) + 1;
        if !n.is_power_of_two() {
            return Err(format!(
                "indirection_table_mask {mask:#x}: {n} entries, not a power of two"
            ));
        }
        if n > usize::from(limits.max_table_length) {
            return Err(format!(
                "{n} indirection entries, more than rss_max_indirection_table_length {}",
                limits.max_table_length
            ));
        }
        n
    } else {
        1
    };
    let key_len_at = 8 + 2 * entries + 2;
    let key_len = usize::from(
        *data
            .get(key_len_at)
            .ok_or_else(|| format!("command of {} bytes has no hash_key_length", data.len()))?,
    );
    if data.len() != key_len_at + 1 + key_len {
        return Err(format!(
            "command of {} bytes; its fields and a {key_len}-byte key make {}",
            data.len(),
            key_len_at + 1 + key_len
        ));
    }
    if hash_types & !limits.supported_hash_types != 0 {
        return Err(format!(
            "hash_types {hash_types:#x} outside supported_hash_types {:#x}",
            limits.supported_hash_types
        ));
    }
    if key_len > usize::from(limits.max_key_size) {
        return Err(format!(
            "hash_key_length {key_len} > rss_max_key_size {}",
            limits.max_key_size
        ));
    }
    if key_len == 0 && hash_types != 0 {
        return Err("hash types without a key".into());
    }
    let key = data[key_len_at + 1..].to_vec();
    if !steer {
        if hash_types == 0 && key.is_empty() {
            return Ok(None);
        }
        return Ok(Some(RssConfig {
            hash_types,
            key,
            table: Vec::new(),
            unclassified_queue: 0,
            max_tx_vq: 0,
        }));
    }
    let queue_ok = |q: u16| q < limits.pairs && enabled(q);
    let unclassified_queue = le16(6)?;
    if !queue_ok(unclassified_queue) {
        return Err(format!(
            "unclassified_queue {unclassified_queue} is not an enabled receive queue"
        ));
    }
    let table = (0..entries)
        .map(|i| le16(8 + 2 * i))
        .collect::<Result<Vec<u16>, String>>()?;
    if let Some((i, q)) = table.iter().enumerate().find(|&(_, &q)| !queue_ok(q)) {
        return Err(format!(
            "indirection_table[{i}] = {q} is not an enabled receive queue"
        ));
    }
    let max_tx_vq = le16(8 + 2 * entries)?;
    if max_tx_vq == 0 || max_tx_vq > limits.pairs {
        return Err(format!(
            "max_tx_vq {max_tx_vq} outside 1..={}",
            limits.pairs
        ));
    }
    Ok(Some(RssConfig {
        hash_types,
        key,
        table,
        unclassified_queue,
        max_tx_vq,
    }))
}

/// The Toeplitz hash of `input` under `key`: for every set bit of the input, XOR in the 32 key
/// bits starting at that bit position (key bits past its end read as 0).
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let key_bit = |i: usize| -> u32 {
        key.get(i / 8)
            .map_or(0, |b| u32::from((b >> (7 - i % 8)) & 1))
    };
    let mut result = 0u32;
    for (i, byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                let start = i * 8 + bit;
                let window = (0..32).fold(0u32, |w, k| (w << 1) | key_bit(start + k));
                result ^= window;
            }
        }
    }
    result
}

/// The hash of `frame` (Ethernet, at most one 802.1Q tag) under `types` and `key`, with its
/// report type, as 5.1.6.4.3.1 defines it: for IPv4 the 4-tuple when the frame carries a TCP
/// (UDP) header and that type is on, else the addresses when IPv4 is on; the same for IPv6.
/// A fragment carries no transport header here, and neither does IPv6 with extension headers
/// (the `_EX` types are not implemented). None: no enabled type applies.
pub fn hash(frame: &[u8], types: u32, key: &[u8]) -> Option<(u32, u16)> {
    if types == 0 {
        return None;
    }
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    if packet
        .link_exts
        .iter()
        .any(|e| !matches!(e, LinkExtSlice::Vlan(_)))
        || packet.link_exts.len() > 1
    {
        return None;
    }
    let ports = |t: &Option<TransportSlice<'_>>| match t {
        Some(TransportSlice::Tcp(tcp)) => Some((true, tcp.source_port(), tcp.destination_port())),
        Some(TransportSlice::Udp(udp)) => Some((false, udp.source_port(), udp.destination_port())),
        _ => None,
    };
    let mut input = Vec::with_capacity(36);
    match packet.net.as_ref()? {
        NetSlice::Ipv4(ip) => {
            let h = ip.header();
            input.extend_from_slice(&h.source());
            input.extend_from_slice(&h.destination());
            let l4 = if ip.is_payload_fragmented() {
                None
            } else {
                ports(&packet.transport)
            };
            let (l4_type, l4_report) = match l4 {
                Some((true, ..)) => (hash_type::TCPV4, report::TCPV4),
                Some((false, ..)) => (hash_type::UDPV4, report::UDPV4),
                None => (0, 0),
            };
            if let Some((_, src, dst)) = l4.filter(|_| types & l4_type != 0) {
                input.extend_from_slice(&src.to_be_bytes());
                input.extend_from_slice(&dst.to_be_bytes());
                return Some((toeplitz(key, &input), l4_report));
            }
            (types & hash_type::IPV4 != 0).then(|| (toeplitz(key, &input), report::IPV4))
        }
        NetSlice::Ipv6(ip) => {
            let h = ip.header();
            input.extend_from_slice(&h.source());
            input.extend_from_slice(&h.destination());
            let direct = ip.extensions().is_empty();
            let l4 = if direct {
                ports(&packet.transport)
            } else {
                None
            };
            let (l4_type, l4_report) = match l4 {
                Some((true, ..)) => (hash_type::TCPV6, report::TCPV6),
                Some((false, ..)) => (hash_type::UDPV6, report::UDPV6),
                None => (0, 0),
            };
            if let Some((_, src, dst)) = l4.filter(|_| types & l4_type != 0) {
                input.extend_from_slice(&src.to_be_bytes());
                input.extend_from_slice(&dst.to_be_bytes());
                return Some((toeplitz(key, &input), l4_report));
            }
            (types & hash_type::IPV6 != 0).then(|| (toeplitz(key, &input), report::IPV6))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft's key from "Verifying the RSS Hash Calculation".
    const KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    #[test]
    fn toeplitz_matches_microsofts_verification_values() {
        // 66.9.149.187:2794 -> 161.142.100.80:1766
        let mut input = vec![66, 9, 149, 187, 161, 142, 100, 80];
        assert_eq!(toeplitz(&KEY, &input), 0x323e_8fc2);
        input.extend_from_slice(&2794u16.to_be_bytes());
        input.extend_from_slice(&1766u16.to_be_bytes());
        assert_eq!(toeplitz(&KEY, &input), 0x51cc_c178);
    }

    #[test]
    fn tcp_frames_hash_over_the_four_tuple_when_the_type_is_on() {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([66, 9, 149, 187], [161, 142, 100, 80], 64)
            .tcp(2794, 1766, 1, 100);
        let mut f = Vec::new();
        b.write(&mut f, &[0; 4]).unwrap();
        assert_eq!(
            hash(&f, hash_type::TCPV4 | hash_type::IPV4, &KEY),
            Some((0x51cc_c178, report::TCPV4))
        );
        assert_eq!(
            hash(&f, hash_type::IPV4, &KEY),
            Some((0x323e_8fc2, report::IPV4))
        );
        assert_eq!(hash(&f, hash_type::IPV6 | hash_type::TCPV6, &KEY), None);
    }

    fn limits() -> Limits {
        Limits {
            max_key_size: 40,
            max_table_length: 128,
            supported_hash_types: hash_type::SUPPORTED,
            pairs: 4,
        }
    }

    fn command(types: u32, table: &[u16], unclassified: u16, tx: u16, key: &[u8]) -> Vec<u8> {
        let mut c = types.to_le_bytes().to_vec();
        c.extend_from_slice(&((table.len().max(1) - 1) as u16).to_le_bytes());
        c.extend_from_slice(&unclassified.to_le_bytes());
        for q in table {
            c.extend_from_slice(&q.to_le_bytes());
        }
        c.extend_from_slice(&tx.to_le_bytes());
        c.push(key.len() as u8);
        c.extend_from_slice(key);
        c
    }

    #[test]
    fn rss_config_is_checked_as_the_spec_asks() {
        let all = |_| true;
        let t: Vec<u16> = (0..128).map(|i| i % 4).collect();
        let ok = parse(&command(3, &t, 0, 4, &KEY), true, limits(), all).unwrap();
        assert_eq!(ok.unwrap().table, t);
        let bad = [
            ("96 entries", command(3, &t[..96], 0, 4, &KEY)),
            ("256 entries", command(3, &[0; 256], 0, 4, &KEY)),
            ("queue 4", command(3, &[4; 128], 0, 4, &KEY)),
            ("unclassified 4", command(3, &t, 4, 4, &KEY)),
            ("max_tx_vq 0", command(3, &t, 0, 0, &KEY)),
            ("max_tx_vq 5", command(3, &t, 0, 5, &KEY)),
            ("key of 41", command(3, &t, 0, 4, &[1; 41])),
            ("no key", command(3, &t, 0, 4, &[])),
            ("EX type", command(hash_type::IPV6_EX, &t, 0, 4, &KEY)),
        ];
        for (what, c) in bad {
            assert!(parse(&c, true, limits(), all).is_err(), "{what}");
        }
        let mut short = command(3, &t, 0, 4, &KEY);
        short.pop();
        assert!(parse(&short, true, limits(), all).is_err());
        // A queue whose rings the driver did not enable.
        assert!(parse(&command(3, &t, 0, 4, &KEY), true, limits(), |q| q < 2).is_err());
        // HASH_CONFIG: the table fields are reserved; nothing and no key switches hashing off.
        let h = parse(&command(3, &[0], 0, 0, &KEY), false, limits(), all).unwrap();
        assert!(!h.unwrap().steers());
        assert_eq!(
            parse(&command(0, &[0], 0, 0, &[]), false, limits(), all),
            Ok(None)
        );
    }
}
