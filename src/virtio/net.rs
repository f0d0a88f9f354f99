//! virtio-net specifics: feature bits, the per-packet header, control-queue commands, the
//! virtqueue numbering and the MSI-X vector plan.
//!
//! # Queue numbering
//!
//! virtio-net fixes it (virtio 1.x, 5.1.2): receive queue of pair `j` is `2j`, transmit queue is
//! `2j + 1`, and the control queue is `2N`, where `N` is the device's `max_virtqueue_pairs` (1
//! without `VIRTIO_NET_F_MQ`) — *not* the number of pairs the driver enables.
//!
//! # MSI-X vector plan
//!
//! [`VectorPlan::new`] decides, from the `k` messages NDIS granted, how many queue pairs to run
//! and which message serves which queue. It follows NetKVM (`ParaNdis_ConfigureMSIXVectors`,
//! `DetermineQueueNumber`):
//!
//! | granted `k` | pairs | RX of pair j | TX of pair j | control queue + config change |
//! |---|---|---|---|---|
//! | 0 (line-based) | 1 | [`NO_VECTOR`] | [`NO_VECTOR`] | [`NO_VECTOR`] (ISR status byte) |
//! | 1 | 1 | 0 | 0 | 0 |
//! | 2 | 1 | 0 | 1 | 1 |
//! | ≥ 3 | `p = min((k-1)/2, device max, CPUs)` | `2j` | `2j + 1` | `2p` |
//!
//! So with `k ≥ 2N + 1` every queue has its own message and the control queue shares one with the
//! configuration-change event (as in NetKVM; both are rare, and one DPC serves them). Messages
//! beyond `2p` stay unused — with QEMU's default of `2N + 2` vectors that is one.
//!
//! Unlike NetKVM, which gives message `2j` to TX and `2j + 1` to RX, the message index here equals
//! the queue index, so a message-based ISR finds its queue without a table. With two messages RX
//! gets its own and TX shares with the control queue and configuration, because receive is the
//! latency-sensitive direction and TX completions can wait in the same DPC as the rare events.
//!
//! When the device refuses a mapping (read-back [`NO_VECTOR`]), the driver builds a new plan
//! with fewer messages (`k = 2`, then `k = 1`) and finally falls back to line-based interrupts.
//!
//! # Spec rules the driver keeps (virtio 1.2)
//!
//! * No available-buffer notification before DRIVER_OK (3.1.1): receive buffers are made
//!   available during bring-up and each receive queue is notified once after DRIVER_OK.
//! * `VIRTIO_F_ACCESS_PLATFORM` (6) is accepted when offered: every address the driver hands
//!   the device comes from NDIS shared memory, whose addresses are logical (bus) addresses as
//!   the platform's DMA translation gives them, which is what the feature means.
//! * The configuration `mac` is read only with `VIRTIO_NET_F_MAC` (5.1.4.2); without it the
//!   adapter uses a random locally administered unicast address ([`random_mac`]), seeded by the
//!   performance counter and the adapter's BAR addresses, and tells the device with
//!   `MAC_ADDR_SET` when it can.
//! * A non-zero used length on a transmit chain (nothing device-writable) is ignored, not a
//!   device fault (2.7.8; see `virtio::queue`).

use super::pci::NO_VECTOR;

/// Feature bits as masks (the bit number is in each doc). Transport bits first, then net bits.
pub mod features {
    /// Bit 28: descriptors may point to indirect tables (a mapped frame's chain goes in one).
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    /// Bit 29: `used_event`/`avail_event` replace the ring flags for notification suppression.
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    /// Bit 32: a modern (virtio 1.x) device; required by this driver.
    pub const VERSION_1: u64 = 1 << 32;
    /// Bit 33: the device is behind an IOMMU and uses the addresses the platform gives.
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
    /// Bit 34: packed rings (not used by this driver).
    pub const RING_PACKED: u64 = 1 << 34;
    /// Bit 35: buffers are used in the order they were made available.
    pub const IN_ORDER: u64 = 1 << 35;
    /// Bit 38: notifications carry extra data (not used by this driver).
    pub const NOTIFICATION_DATA: u64 = 1 << 38;

    /// Bit 0: the device computes TX checksums.
    pub const CSUM: u64 = 1 << 0;
    /// Bit 1: the driver accepts RX packets with partial checksums.
    pub const GUEST_CSUM: u64 = 1 << 1;
    /// Bit 2: offloads can be changed through the control queue.
    pub const CTRL_GUEST_OFFLOADS: u64 = 1 << 2;
    /// Bit 3: the device reports its MTU.
    pub const MTU: u64 = 1 << 3;
    /// Bit 5: the device configuration has a MAC address.
    pub const MAC: u64 = 1 << 5;
    /// Bit 7: the driver accepts TSOv4 on receive.
    pub const GUEST_TSO4: u64 = 1 << 7;
    /// Bit 8: the driver accepts TSOv6 on receive.
    pub const GUEST_TSO6: u64 = 1 << 8;
    /// Bit 11: the device does TSOv4 on transmit.
    pub const HOST_TSO4: u64 = 1 << 11;
    /// Bit 12: the device does TSOv6 on transmit.
    pub const HOST_TSO6: u64 = 1 << 12;
    /// The device handles `GSO_ECN` (CWR on the first segment only) in segmentation requests.
    pub const HOST_ECN: u64 = 1 << 13;
    /// Bit 15: a received packet may span several buffers (`num_buffers`).
    pub const MRG_RXBUF: u64 = 1 << 15;
    /// Bit 16: the configuration `status` field (link state) is valid.
    pub const STATUS: u64 = 1 << 16;
    /// Bit 17: the device has a control queue.
    pub const CTRL_VQ: u64 = 1 << 17;
    /// Bit 18: RX filtering (promiscuous, all-multicast) through the control queue.
    pub const CTRL_RX: u64 = 1 << 18;
    /// Bit 19: VLAN filtering through the control queue.
    pub const CTRL_VLAN: u64 = 1 << 19;
    /// Bit 21: the driver can send gratuitous packets when asked.
    pub const GUEST_ANNOUNCE: u64 = 1 << 21;
    /// Bit 22: several queue pairs (`max_virtqueue_pairs`), steered with `VQ_PAIRS_SET`.
    pub const MQ: u64 = 1 << 22;
    /// Bit 23: the MAC can be set through the control queue.
    pub const CTRL_MAC_ADDR: u64 = 1 << 23;
    /// Bit 57: the device reports RSS hashes.
    pub const HASH_REPORT: u64 = 1 << 57;
    /// Bit 60: device-side RSS.
    pub const RSS: u64 = 1 << 60;
}

/// `struct virtio_net_hdr_v1`, the header in front of every packet buffer on both queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetHeader {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    /// With `MRG_RXBUF`: how many buffers the received packet spans (the device writes it; on
    /// transmit it must be 0).
    pub num_buffers: u16,
}

impl NetHeader {
    /// Bytes of the header with `VERSION_1` (which always includes `num_buffers`).
    pub const LEN: usize = 12;
    /// Bytes of `virtio_net_hdr_v1_hash`, the header on *both* queues once `HASH_REPORT` is
    /// negotiated (the header format is the device's, not per direction; virtio 1.2, 5.1.6):
    /// `hash_value` (le32) at 12, `hash_report` (le16) at 16, 2 bytes of padding.
    pub const HASH_LEN: usize = 20;
    pub const F_NEEDS_CSUM: u8 = 1;
    pub const F_DATA_VALID: u8 = 2;
    pub const F_RSC_INFO: u8 = 4;
    pub const GSO_NONE: u8 = 0;
    pub const GSO_TCPV4: u8 = 1;
    pub const GSO_UDP: u8 = 3;
    pub const GSO_TCPV6: u8 = 4;
    pub const GSO_UDP_L4: u8 = 5;
    pub const GSO_ECN: u8 = 0x80;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        b
    }

    /// [`encode`](Self::encode) followed by zeroed hash fields: the first `len` bytes (12 or 20)
    /// are the transmit header.
    pub fn encode_hash(&self) -> [u8; Self::HASH_LEN] {
        let mut b = [0u8; Self::HASH_LEN];
        b[..Self::LEN].copy_from_slice(&self.encode());
        b
    }

    /// `hash_value` and `hash_report` of a received `virtio_net_hdr_v1_hash`; None for a
    /// shorter header or `VIRTIO_NET_HASH_REPORT_NONE`.
    pub fn decode_hash(b: &[u8]) -> Option<(u32, u16)> {
        let b: &[u8; Self::HASH_LEN] = b.get(..Self::HASH_LEN)?.try_into().ok()?;
        let report = u16::from_le_bytes([b[16], b[17]]);
        (report != hash::REPORT_NONE)
            .then(|| (u32::from_le_bytes([b[12], b[13], b[14], b[15]]), report))
    }

    /// `None` when the device returned fewer bytes than a header (a runt that must be dropped).
    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; Self::LEN] = b.get(..Self::LEN)?.try_into().ok()?;
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
            num_buffers: u(10),
        })
    }
}

/// Control-queue classes and commands (virtio 1.x, 5.1.6.5).
pub mod ctrl {
    pub const CLASS_RX: u8 = 0;
    pub const RX_PROMISC: u8 = 0;
    pub const RX_ALLMULTI: u8 = 1;
    pub const CLASS_MAC: u8 = 1;
    pub const MAC_TABLE_SET: u8 = 0;
    pub const MAC_ADDR_SET: u8 = 1;
    pub const CLASS_VLAN: u8 = 2;
    pub const CLASS_ANNOUNCE: u8 = 3;
    pub const ANNOUNCE_ACK: u8 = 0;
    /// `VIRTIO_NET_CTRL_MQ`.
    pub const CLASS_MQ: u8 = 4;
    /// `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`.
    pub const MQ_VQ_PAIRS_SET: u8 = 0;
    pub const MQ_VQ_PAIRS_MIN: u16 = 1;
    pub const MQ_VQ_PAIRS_MAX: u16 = 0x8000;
    /// `VIRTIO_NET_CTRL_MQ_RSS_CONFIG` (with `VIRTIO_NET_F_RSS`).
    pub const MQ_RSS_CONFIG: u8 = 1;
    /// `VIRTIO_NET_CTRL_MQ_HASH_CONFIG` (with `VIRTIO_NET_F_HASH_REPORT`).
    pub const MQ_HASH_CONFIG: u8 = 2;
    pub const CLASS_GUEST_OFFLOADS: u8 = 5;
    pub const OK: u8 = 0;
    pub const ERR: u8 = 1;
}

/// RSS hash types (`VIRTIO_NET_HASH_TYPE_*`) and hash reports (`VIRTIO_NET_HASH_REPORT_*`),
/// virtio 1.2, 5.1.6.4.3.
pub mod hash {
    pub const TYPE_IPV4: u32 = 1 << 0;
    pub const TYPE_TCPV4: u32 = 1 << 1;
    pub const TYPE_IPV6: u32 = 1 << 3;
    pub const TYPE_TCPV6: u32 = 1 << 4;
    pub const REPORT_NONE: u16 = 0;
    pub const REPORT_IPV4: u16 = 1;
    pub const REPORT_TCPV4: u16 = 2;
    pub const REPORT_IPV6: u16 = 4;
    pub const REPORT_TCPV6: u16 = 5;
}

/// Bytes of the largest `RSS_CONFIG` [`rss_config`] writes: class, command, hash_types,
/// mask, unclassified queue, 128 entries, max_tx_vq, key length, a 40-byte key.
pub const RSS_CONFIG_MAX_LEN: usize = 2 + 4 + 2 + 2 + 2 * 128 + 2 + 1 + 40;

/// `VIRTIO_NET_CTRL_MQ_RSS_CONFIG` into `out`: `table` holds receive-queue (pair) numbers, a
/// power of two of them, at most 128. Returns the length, or None for a table or key the
/// command cannot carry or an `out` too short.
pub fn rss_config(
    hash_types: u32,
    table: &[u16],
    unclassified: u16,
    max_tx_vq: u16,
    key: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    if !table.len().is_power_of_two() || table.len() > 128 || key.len() > 255 {
        return None;
    }
    let len = 2 + 4 + 2 + 2 + 2 * table.len() + 2 + 1 + key.len();
    let out = out.get_mut(..len)?;
    out[0] = ctrl::CLASS_MQ;
    out[1] = ctrl::MQ_RSS_CONFIG;
    out[2..6].copy_from_slice(&hash_types.to_le_bytes());
    out[6..8].copy_from_slice(&((table.len() - 1) as u16).to_le_bytes());
    out[8..10].copy_from_slice(&unclassified.to_le_bytes());
    for (slot, q) in out[10..].chunks_exact_mut(2).zip(table) {
        slot.copy_from_slice(&q.to_le_bytes());
    }
    let at = 10 + 2 * table.len();
    out[at..at + 2].copy_from_slice(&max_tx_vq.to_le_bytes());
    out[at + 2] = key.len() as u8;
    out[at + 3..].copy_from_slice(key);
    Some(len)
}

/// `VIRTIO_NET_CTRL_MQ_HASH_CONFIG` into `out` (hash reports without steering): the RSS
/// layout with the mask, queue, one entry and max_tx_vq reserved (zero).
pub fn hash_config(hash_types: u32, key: &[u8], out: &mut [u8]) -> Option<usize> {
    let len = rss_config(hash_types, &[0], 0, 0, key, out)?;
    out[1] = ctrl::MQ_HASH_CONFIG;
    Some(len)
}

/// The device answered a control command with something other than `VIRTIO_NET_OK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtrlRejected(pub u8);

/// Checks the one-byte ack the device writes into the command's device-writable buffer.
pub fn ctrl_ack(ack: u8) -> Result<(), CtrlRejected> {
    if ack == ctrl::OK {
        Ok(())
    } else {
        Err(CtrlRejected(ack))
    }
}

/// The device-readable part of `VQ_PAIRS_SET` (class, command, `virtqueue_pairs` LE); it is
/// followed on the control queue by a 1-byte device-writable ack. `None` outside the range the
/// spec allows (the driver must also stay within `max_virtqueue_pairs`).
pub fn mq_vq_pairs_set(pairs: u16) -> Option<[u8; 4]> {
    if !(ctrl::MQ_VQ_PAIRS_MIN..=ctrl::MQ_VQ_PAIRS_MAX).contains(&pairs) {
        return None;
    }
    let p = pairs.to_le_bytes();
    Some([ctrl::CLASS_MQ, ctrl::MQ_VQ_PAIRS_SET, p[0], p[1]])
}

/// `features` without the bits whose dependency is missing (virtio 1.x 5.1.3.1: the control
/// queue's features need `CTRL_VQ`, `HOST_TSO4`/`6` need `CSUM`, `HOST_ECN` needs one of them).
pub fn with_dependencies(features: u64) -> u64 {
    let mut f = features;
    if f & features::CTRL_VQ == 0 {
        f &= !(features::CTRL_RX
            | features::CTRL_MAC_ADDR
            | features::MQ
            | features::CTRL_VLAN
            | features::RSS
            | features::HASH_REPORT);
    }
    // Segmentation needs the device to finish checksums.
    if f & features::CSUM == 0 {
        f &= !(features::HOST_TSO4 | features::HOST_TSO6);
    }
    if f & (features::HOST_TSO4 | features::HOST_TSO6) == 0 {
        f &= !features::HOST_ECN;
    }
    f
}

/// A locally administered unicast MAC address (first octet: bit 1 set, bit 0 clear) from
/// `seed`, whose bits are all mixed in (SplitMix64's finalizer), so seeds that differ in one bit
/// give unrelated addresses.
pub fn random_mac(seed: u64) -> [u8; 6] {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let b = z.to_le_bytes();
    [(b[0] & 0xFC) | 0x02, b[1], b[2], b[3], b[4], b[5]]
}

/// `VIRTIO_NET_CTRL_RX_PROMISC` / `_ALLMULTI` (class, command, on/off).
pub fn rx_mode(command: u8, on: bool) -> [u8; 3] {
    [ctrl::CLASS_RX, command, on as u8]
}

/// `VIRTIO_NET_CTRL_MAC_ADDR_SET` (class, command, the address).
pub fn mac_addr_set(mac: [u8; 6]) -> [u8; 8] {
    let mut out = [ctrl::CLASS_MAC, ctrl::MAC_ADDR_SET, 0, 0, 0, 0, 0, 0];
    out[2..].copy_from_slice(&mac);
    out
}

/// Bytes of the largest `MAC_TABLE_SET` [`mac_table_set`] writes for `multicast` entries.
pub const fn mac_table_set_len(multicast: usize) -> usize {
    2 + 4 + 4 + 6 * multicast
}

/// `VIRTIO_NET_CTRL_MAC_TABLE_SET` into `out` (class, command, then two tables of `le32
/// entries` + 6-byte addresses: no extra unicast address, then `multicast`). Returns the length
/// written, or None if `out` is too short.
pub fn mac_table_set(multicast: &[[u8; 6]], out: &mut [u8]) -> Option<usize> {
    let len = mac_table_set_len(multicast.len());
    let out = out.get_mut(..len)?;
    out[0] = ctrl::CLASS_MAC;
    out[1] = ctrl::MAC_TABLE_SET;
    out[2..6].copy_from_slice(&0u32.to_le_bytes());
    out[6..10].copy_from_slice(&(multicast.len() as u32).to_le_bytes());
    for (slot, mac) in out[10..].chunks_exact_mut(6).zip(multicast) {
        slot.copy_from_slice(mac);
    }
    Some(len)
}

/// The most pairs whose queues (and the control queue after them) have 16-bit indices. The spec
/// allows `max_virtqueue_pairs` up to 0x8000, but `num_queues` is 16 bits, so no device can
/// expose more; a larger value is clamped to this.
pub const MAX_ADDRESSABLE_PAIRS: u16 = 0x7FFF;

/// Receive queue of pair `pair` (`pair` < [`MAX_ADDRESSABLE_PAIRS`]).
pub const fn rx_queue(pair: u16) -> u16 {
    2 * pair
}
/// Transmit queue of pair `pair` (`pair` < [`MAX_ADDRESSABLE_PAIRS`]).
pub const fn tx_queue(pair: u16) -> u16 {
    2 * pair + 1
}
/// The control queue: after all `device_max_pairs` pairs the device has, whether used or not.
/// The driver still checks it against `num_queues`.
pub const fn control_queue(device_max_pairs: u16) -> u16 {
    let n = if device_max_pairs > MAX_ADDRESSABLE_PAIRS {
        MAX_ADDRESSABLE_PAIRS
    } else {
        device_max_pairs
    };
    2 * n
}

/// How interrupts reach the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptMode {
    /// Line-based (INTx): no vectors, the ISR status byte decides ownership.
    Line,
    /// One message for everything.
    SingleMessage,
    /// Two messages: RX on 0, everything else on 1.
    TwoMessages,
    /// One message per queue, control queue and configuration sharing the last.
    PerQueue,
}

/// The queues and events one message (or the line) serves; DPC code scans exactly these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTargets {
    /// Pairs whose RX queue this message serves.
    pub rx_pairs: core::ops::Range<u16>,
    /// Pairs whose TX queue this message serves.
    pub tx_pairs: core::ops::Range<u16>,
    /// The control queue and configuration-change events.
    pub control_and_config: bool,
}

/// Which message serves which queue, and how many pairs to run; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorPlan {
    mode: InterruptMode,
    pairs: u16,
    device_max_pairs: u16,
}

impl VectorPlan {
    /// `granted`: MSI-X messages NDIS granted (0: line-based). `device_max_pairs`:
    /// `max_virtqueue_pairs` (pass 1 without `MQ`; clamped to [`MAX_ADDRESSABLE_PAIRS`]).
    /// `cpus`: processors RSS may use. Zeros in the last two are treated as 1, so the plan always
    /// has a pair.
    pub fn new(granted: u16, device_max_pairs: u16, cpus: u16) -> Self {
        let device_max_pairs = device_max_pairs.clamp(1, MAX_ADDRESSABLE_PAIRS);
        let (mode, pairs) = match granted {
            0 => (InterruptMode::Line, 1),
            1 => (InterruptMode::SingleMessage, 1),
            2 => (InterruptMode::TwoMessages, 1),
            k => {
                let p = ((k - 1) / 2).min(device_max_pairs).min(cpus.max(1));
                (InterruptMode::PerQueue, p)
            }
        };
        Self {
            mode,
            pairs,
            device_max_pairs,
        }
    }

    pub fn mode(&self) -> InterruptMode {
        self.mode
    }

    /// Queue pairs to enable (and to announce with `VQ_PAIRS_SET` when more than 1).
    pub fn pairs(&self) -> u16 {
        self.pairs
    }

    /// Messages the plan uses (0 for line-based).
    pub fn messages_used(&self) -> u16 {
        match self.mode {
            InterruptMode::Line => 0,
            InterruptMode::SingleMessage => 1,
            InterruptMode::TwoMessages => 2,
            InterruptMode::PerQueue => 2 * self.pairs + 1,
        }
    }

    /// The vector to program for `queue`, `None` for a queue the plan does not run.
    pub fn queue_vector(&self, queue: u16) -> Option<u16> {
        let control = control_queue(self.device_max_pairs);
        let is_control = queue == control;
        if !is_control && queue >= 2 * self.pairs {
            return None;
        }
        let is_rx = !is_control && queue.is_multiple_of(2);
        Some(match self.mode {
            InterruptMode::Line => NO_VECTOR,
            InterruptMode::SingleMessage => 0,
            InterruptMode::TwoMessages => u16::from(!is_rx),
            InterruptMode::PerQueue if is_control => 2 * self.pairs,
            InterruptMode::PerQueue => queue,
        })
    }

    /// The vector for configuration-change events.
    pub fn config_vector(&self) -> u16 {
        match self.mode {
            InterruptMode::Line => NO_VECTOR,
            InterruptMode::SingleMessage => 0,
            InterruptMode::TwoMessages => 1,
            InterruptMode::PerQueue => 2 * self.pairs,
        }
    }

    /// What message `message` serves; for [`InterruptMode::Line`] any `message` means "the line"
    /// and serves everything.
    pub fn message_targets(&self, message: u16) -> MessageTargets {
        let all = 0..self.pairs;
        let none = 0..0;
        let (rx_pairs, tx_pairs, control_and_config) = match self.mode {
            InterruptMode::Line => (all.clone(), all, true),
            InterruptMode::SingleMessage if message == 0 => (all.clone(), all, true),
            InterruptMode::TwoMessages if message == 0 => (all, none, false),
            InterruptMode::TwoMessages if message == 1 => (none, all, true),
            InterruptMode::PerQueue if message < 2 * self.pairs => {
                let j = message / 2;
                if message.is_multiple_of(2) {
                    (j..j + 1, none, false)
                } else {
                    (none, j..j + 1, false)
                }
            }
            InterruptMode::PerQueue if message == 2 * self.pairs => (none.clone(), none, true),
            _ => (none.clone(), none, false),
        };
        MessageTargets {
            rx_pairs,
            tx_pairs,
            control_and_config,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the plan's invariants and that `message_targets` inverts `queue_vector`.
    fn check_consistent(k: u16, max_pairs: u16, cpus: u16) -> VectorPlan {
        let plan = VectorPlan::new(k, max_pairs, cpus);
        let p = plan.pairs();
        assert!(p >= 1);
        assert!(p <= max_pairs.max(1) && p <= cpus.max(1));
        assert!(plan.messages_used() <= k);
        let ctrl = control_queue(max_pairs.clamp(1, MAX_ADDRESSABLE_PAIRS));
        for j in 0..p {
            for (q, is_rx) in [(rx_queue(j), true), (tx_queue(j), false)] {
                let v = plan.queue_vector(q).expect("queue of a running pair");
                if k == 0 {
                    assert_eq!(v, NO_VECTOR);
                    continue;
                }
                assert!(v < k, "k={k} q={q} v={v}");
                let t = plan.message_targets(v);
                let pairs = if is_rx { t.rx_pairs } else { t.tx_pairs };
                assert!(
                    pairs.contains(&j),
                    "k={k}: message {v} does not serve queue {q}"
                );
            }
        }
        // Queues of pairs not run get no vector.
        for q in (2 * p..ctrl).take(64) {
            assert_eq!(plan.queue_vector(q), None);
        }
        let cv = plan.queue_vector(ctrl).unwrap();
        assert_eq!(cv, plan.config_vector());
        if k > 0 {
            assert!(cv < k);
            assert!(plan.message_targets(cv).control_and_config);
            // Exactly one message serves the control queue and configuration.
            // (Messages past those used serve nothing; a few of them are enough to check.)
            let serving = (0..k.min(plan.messages_used() + 8))
                .filter(|&m| plan.message_targets(m).control_and_config)
                .count();
            assert_eq!(serving, 1);
        }
        plan
    }

    #[test]
    fn control_queue_features_need_the_control_queue() {
        let dependent = features::CTRL_RX | features::CTRL_MAC_ADDR | features::MQ;
        let with = features::VERSION_1 | features::CTRL_VQ | dependent | features::MTU;
        assert_eq!(with_dependencies(with), with);
        let without = with & !features::CTRL_VQ;
        assert_eq!(
            with_dependencies(without),
            features::VERSION_1 | features::MTU
        );
    }

    #[test]
    fn random_macs_are_locally_administered_unicast_and_differ() {
        let macs: Vec<[u8; 6]> = (0..1000u64).map(|i| random_mac(i << 20)).collect();
        for m in &macs {
            assert_eq!(m[0] & 0b11, 0b10, "{m:02x?}");
        }
        let mut unique = macs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), macs.len());
        assert_ne!(random_mac(1), random_mac(2));
    }

    #[test]
    fn mac_table_set_is_two_tables_and_refuses_a_short_buffer() {
        let a = [1, 0, 0x5E, 0, 0, 1];
        let mut out = [0u8; 64];
        let n = mac_table_set(&[a, a], &mut out).unwrap();
        assert_eq!(n, mac_table_set_len(2));
        assert_eq!(
            &out[..10],
            &[ctrl::CLASS_MAC, ctrl::MAC_TABLE_SET, 0, 0, 0, 0, 2, 0, 0, 0]
        );
        assert_eq!(&out[10..22], &[a, a].concat()[..]);
        assert_eq!(mac_table_set(&[a; 9], &mut out), Some(64), "exactly full");
        assert_eq!(mac_table_set(&[a; 10], &mut out), None);
    }

    #[test]
    fn vector_plan_for_each_grant() {
        let n = 4;
        // k = 1: everything on message 0, one pair.
        let p = check_consistent(1, n, 8);
        assert_eq!((p.mode(), p.pairs()), (InterruptMode::SingleMessage, 1));
        assert_eq!(p.queue_vector(0), Some(0));
        assert_eq!(p.queue_vector(1), Some(0));
        assert_eq!(p.config_vector(), 0);
        // k = 2: RX on 0, TX + control + config on 1.
        let p = check_consistent(2, n, 8);
        assert_eq!((p.mode(), p.pairs()), (InterruptMode::TwoMessages, 1));
        assert_eq!(p.queue_vector(rx_queue(0)), Some(0));
        assert_eq!(p.queue_vector(tx_queue(0)), Some(1));
        assert_eq!(p.queue_vector(control_queue(n)), Some(1));
        assert_eq!(p.config_vector(), 1);
        // k = 3: one pair with its own vectors, control + config on 2.
        let p = check_consistent(3, n, 8);
        assert_eq!((p.mode(), p.pairs()), (InterruptMode::PerQueue, 1));
        assert_eq!(p.queue_vector(0), Some(0));
        assert_eq!(p.queue_vector(1), Some(1));
        assert_eq!(p.queue_vector(control_queue(n)), Some(2));
        assert_eq!(p.queue_vector(2), None);
        // k = 2N + 1 and 2N + 2: every queue its own vector, control + config on 2N.
        for k in [2 * n + 1, 2 * n + 2] {
            let p = check_consistent(k, n, 8);
            assert_eq!(p.pairs(), n);
            for q in 0..2 * n {
                assert_eq!(p.queue_vector(q), Some(q));
            }
            assert_eq!(p.config_vector(), 2 * n);
            assert_eq!(p.messages_used(), 2 * n + 1);
        }
        assert_eq!(
            VectorPlan::new(2 * n + 2, n, 8).message_targets(2 * n + 1),
            MessageTargets {
                rx_pairs: 0..0,
                tx_pairs: 0..0,
                control_and_config: false
            }
        );
        // k = 2048: limited by the device, then by the CPUs.
        assert_eq!(check_consistent(2048, n, 8).pairs(), n);
        assert_eq!(check_consistent(2048, n, 2).pairs(), 2);
        assert_eq!(check_consistent(2048, 0x8000, 64).pairs(), 64);
        // k between: (k - 1) / 2 pairs.
        assert_eq!(check_consistent(6, n, 8).pairs(), 2);
        // Line-based.
        let p = check_consistent(0, n, 8);
        assert_eq!(
            (p.mode(), p.pairs(), p.config_vector()),
            (InterruptMode::Line, 1, NO_VECTOR)
        );
        assert!(p.message_targets(0).control_and_config);
    }

    #[test]
    fn vector_plan_is_consistent_over_all_grants() {
        for max_pairs in [0u16, 1, 2, 3, 4, 16, 0x7FFF, 0x8000] {
            for cpus in [0u16, 1, 2, 3, 8] {
                for k in 0..=2048 {
                    check_consistent(k, max_pairs, cpus);
                }
            }
        }
    }

    #[test]
    fn feature_bits_are_the_spec_numbers() {
        let bits = [
            (features::VERSION_1, 32),
            (features::ACCESS_PLATFORM, 33),
            (features::MAC, 5),
            (features::STATUS, 16),
            (features::MQ, 22),
            (features::CTRL_VQ, 17),
            (features::MRG_RXBUF, 15),
            (features::RING_EVENT_IDX, 29),
            (features::CSUM, 0),
            (features::GUEST_CSUM, 1),
            (features::RSS, 60),
            (features::HASH_REPORT, 57),
        ];
        for (mask, bit) in bits {
            assert_eq!(mask.trailing_zeros(), bit);
            assert_eq!(mask.count_ones(), 1);
        }
    }

    #[test]
    fn net_header_round_trips_little_endian() {
        let h = NetHeader {
            flags: NetHeader::F_NEEDS_CSUM,
            gso_type: NetHeader::GSO_TCPV4,
            hdr_len: 0x0102,
            gso_size: 0x0304,
            csum_start: 0x0506,
            csum_offset: 0x0708,
            num_buffers: 0x090A,
        };
        let b = h.encode();
        assert_eq!(b, [1, 1, 2, 1, 4, 3, 6, 5, 8, 7, 0x0A, 9]);
        assert_eq!(NetHeader::decode(&b), Some(h));
        let mut longer = [0xEEu8; 20];
        longer[..12].copy_from_slice(&b);
        assert_eq!(NetHeader::decode(&longer), Some(h));
        assert_eq!(NetHeader::decode(&b[..11]), None);
        assert_eq!(NetHeader::default().encode(), [0; 12]);
    }

    #[test]
    fn rss_and_hash_config_layouts() {
        let mut out = [0u8; RSS_CONFIG_MAX_LEN];
        let key = [7u8; 40];
        let table: Vec<u16> = (0..128).map(|i| i % 4).collect();
        let n = rss_config(0x1b, &table, 2, 4, &key, &mut out).unwrap();
        assert_eq!(n, RSS_CONFIG_MAX_LEN);
        assert_eq!(&out[..10], &[4, 1, 0x1b, 0, 0, 0, 127, 0, 2, 0]);
        assert_eq!(&out[10..14], &[0, 0, 1, 0]);
        assert_eq!(&out[266..269], &[4, 0, 40]);
        assert_eq!(&out[269..], &key);
        assert_eq!(rss_config(1, &table[..96], 0, 1, &key, &mut out), None);
        let n = hash_config(0x1b, &key, &mut out).unwrap();
        assert_eq!(n, 2 + 4 + 8 + 1 + 40);
        assert_eq!(
            &out[..15],
            &[4, 2, 0x1b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40]
        );
        let mut h = [0u8; 20];
        h[12..16].copy_from_slice(&0xdead_beefu32.to_le_bytes());
        assert_eq!(NetHeader::decode_hash(&h), None, "REPORT_NONE");
        h[16] = 2;
        assert_eq!(NetHeader::decode_hash(&h), Some((0xdead_beef, 2)));
        assert_eq!(NetHeader::decode_hash(&h[..19]), None);
    }

    #[test]
    fn control_commands_and_queue_numbers() {
        assert_eq!(mq_vq_pairs_set(4), Some([4, 0, 4, 0]));
        assert_eq!(mq_vq_pairs_set(0x8000), Some([4, 0, 0, 0x80]));
        assert_eq!(mq_vq_pairs_set(0), None);
        assert_eq!(mq_vq_pairs_set(0x8001), None);
        assert_eq!(ctrl_ack(0), Ok(()));
        assert_eq!(ctrl_ack(1), Err(CtrlRejected(1)));
        assert_eq!(
            (rx_queue(0), tx_queue(0), rx_queue(3), tx_queue(3)),
            (0, 1, 6, 7)
        );
        assert_eq!(control_queue(1), 2);
        assert_eq!(control_queue(4), 8);
        assert_eq!(control_queue(0x8000), 0xFFFE);
    }
}
