//! The register file's layout: PCI identity, capability list, BAR regions and the field offsets of
//! the virtio 1.x modern common configuration (virtio spec, "Virtio Over PCI Bus").
//!
//! The layout copies QEMU's `virtio-net-pci-non-transitional`: the virtio structures in one
//! 64-bit memory BAR (BAR 4, 16 KiB, one 4 KiB page per structure) and the MSI-X table and PBA in
//! BAR 1. A driver must find all of it through the capability list; tests use these constants
//! only to check what the walk found.

use crate::pci::CONFIG_SPACE_SIZE;

pub const VENDOR_ID: u16 = 0x1AF4;
/// 0x1040 + virtio device ID 1 (network): the modern-only ("non-transitional") ID.
pub const DEVICE_ID: u16 = 0x1041;
/// Non-transitional devices have revision >= 1.
pub const REVISION: u8 = 1;
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x1AF4;
/// What QEMU reports for modern devices (>= 0x40 as the spec asks; NetKVM's INF matches
/// `SUBSYS_1100xxxx`).
pub const SUBSYSTEM_ID: u16 = 0x1100;

/// The BAR holding the MSI-X table and PBA.
pub const MSIX_BAR: u8 = 1;
/// The 64-bit BAR holding the virtio structures.
pub const MODERN_BAR: u8 = 4;
pub const MODERN_BAR_SIZE: u64 = 0x4000;
pub const COMMON_OFFSET: u64 = 0x0000;
pub const COMMON_LENGTH: u32 = 0x1000;
pub const ISR_OFFSET: u64 = 0x1000;
pub const ISR_LENGTH: u32 = 0x1000;
pub const DEVICE_OFFSET: u64 = 0x2000;
pub const DEVICE_LENGTH: u32 = 0x1000;
pub const NOTIFY_OFFSET: u64 = 0x3000;
pub const NOTIFY_LENGTH: u32 = 0x1000;
/// Queue q's doorbell is at `NOTIFY_OFFSET + q * NOTIFY_OFF_MULTIPLIER` (queue_notify_off = q).
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;

/// `cfg_type` of the virtio vendor capabilities.
pub const CAP_COMMON: u8 = 1;
pub const CAP_NOTIFY: u8 = 2;
pub const CAP_ISR: u8 = 3;
pub const CAP_DEVICE: u8 = 4;
pub const PCI_CAP_ID_VENDOR: u8 = 0x09;
pub const PCI_CAP_ID_MSIX: u8 = 0x11;
/// Where the capabilities sit in configuration space.
pub const CAP_COMMON_AT: usize = 0x40;
pub const CAP_ISR_AT: usize = 0x50;
pub const CAP_DEVICE_AT: usize = 0x60;
pub const CAP_NOTIFY_AT: usize = 0x70;
pub const CAP_MSIX_AT: usize = 0x84;

/// Common configuration field offsets.
pub mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    pub const DEVICE_FEATURE: u64 = 0x04;
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub const DRIVER_FEATURE: u64 = 0x0C;
    pub const CONFIG_MSIX_VECTOR: u64 = 0x10;
    pub const NUM_QUEUES: u64 = 0x12;
    pub const DEVICE_STATUS: u64 = 0x14;
    pub const CONFIG_GENERATION: u64 = 0x15;
    pub const QUEUE_SELECT: u64 = 0x16;
    pub const QUEUE_SIZE: u64 = 0x18;
    pub const QUEUE_MSIX_VECTOR: u64 = 0x1A;
    pub const QUEUE_ENABLE: u64 = 0x1C;
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1E;
    pub const QUEUE_DESC: u64 = 0x20;
    pub const QUEUE_DRIVER: u64 = 0x28;
    pub const QUEUE_DEVICE: u64 = 0x30;
    pub const QUEUE_NOTIF_CONFIG_DATA: u64 = 0x38;
    pub const QUEUE_RESET: u64 = 0x3A;
    /// Size of the structure this model implements (no admin-queue fields).
    pub const SIZE: usize = 0x3C;
}

/// Device status bits.
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

/// Feature bits (virtio-net and transport).
pub mod feature {
    /// The device completes partial TX checksums (`NEEDS_CSUM`).
    pub const CSUM: u64 = 1 << 0;
    /// The driver accepts RX frames marked `DATA_VALID` or carrying a partial checksum.
    pub const GUEST_CSUM: u64 = 1 << 1;
    pub const MTU: u64 = 1 << 3;
    pub const MAC: u64 = 1 << 5;
    /// The device segments TCP/IPv4 packets (`gso_type` TCPV4). Needs CSUM.
    pub const HOST_TSO4: u64 = 1 << 11;
    /// The device segments TCP/IPv6 packets (`gso_type` TCPV6). Needs CSUM.
    pub const HOST_TSO6: u64 = 1 << 12;
    /// The driver may set the ECN bit of `gso_type`. Needs HOST_TSO4 or HOST_TSO6. Offered by
    /// default, as QEMU does; without it negotiated the ECN bit is a device error.
    pub const HOST_ECN: u64 = 1 << 13;
    pub const MRG_RXBUF: u64 = 1 << 15;
    pub const STATUS: u64 = 1 << 16;
    pub const CTRL_VQ: u64 = 1 << 17;
    pub const CTRL_RX: u64 = 1 << 18;
    pub const CTRL_VLAN: u64 = 1 << 19;
    pub const MQ: u64 = 1 << 22;
    pub const CTRL_MAC_ADDR: u64 = 1 << 23;
    /// The device reports each received frame's hash (`virtio_net_hdr_v1_hash`, 20 bytes, on
    /// both queues). Needs CTRL_VQ.
    pub const HASH_REPORT: u64 = 1 << 57;
    /// The device steers received frames by an RSS indirection table
    /// (`VIRTIO_NET_CTRL_MQ_RSS_CONFIG`). Needs CTRL_VQ.
    pub const RSS: u64 = 1 << 60;
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    pub const VERSION_1: u64 = 1 << 32;
    /// The device reaches memory through the platform's translation (an IOMMU): the addresses
    /// in descriptors and ring registers are bus (logical) addresses, not physical ones.
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
    pub const RING_RESET: u64 = 1 << 40;
}

/// `VIRTIO_MSI_NO_VECTOR`: the event is not mapped (also what a refused mapping reads back).
pub const NO_VECTOR: u16 = 0xFFFF;
/// ISR status bits.
pub const ISR_QUEUE: u8 = 1;
pub const ISR_CONFIG: u8 = 2;
/// Device config `status` bits.
pub const NET_S_LINK_UP: u16 = 1;
/// `struct virtio_net_hdr_v1` (with `num_buffers`, present whenever VERSION_1 is negotiated).
pub const NET_HDR_LEN: usize = 12;
/// `struct virtio_net_hdr_v1_hash`: the header on both queues once HASH_REPORT is negotiated
/// (`hash_value` le32 at 12, `hash_report` le16 at 16, 2 bytes of padding).
pub const NET_HDR_HASH_LEN: usize = 20;
/// `flags`: the checksum from `csum_start` to the end of the frame is still to be computed and
/// stored at `csum_start + csum_offset` (the field holds the pseudo-header sum).
pub const NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `flags` (RX only): the device verified the frame's checksums.
pub const NET_HDR_F_DATA_VALID: u8 = 2;
/// `gso_type`: not a segmentation offload.
pub const NET_HDR_GSO_NONE: u8 = 0;
/// `gso_type`: a TCP/IPv4 packet to segment into `gso_size`-byte payloads (HOST_TSO4).
pub const NET_HDR_GSO_TCPV4: u8 = 1;
/// `gso_type`: a TCP/IPv6 packet to segment into `gso_size`-byte payloads (HOST_TSO6).
pub const NET_HDR_GSO_TCPV6: u8 = 4;
/// `gso_type` bit: the packet carries ECN (CWR set on the first segment only, as always), allowed
/// only with HOST_ECN.
pub const NET_HDR_GSO_ECN: u8 = 0x80;

/// Byte offsets of the `virtio_net_hdr_v1` fields (every multi-byte field little-endian).
pub mod net_hdr {
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: usize = 2;
    pub const GSO_SIZE: usize = 4;
    pub const CSUM_START: usize = 6;
    pub const CSUM_OFFSET: usize = 8;
    pub const NUM_BUFFERS: usize = 10;
}

/// Control queue classes, commands and acks.
pub mod ctrl {
    pub const CLASS_RX: u8 = 0;
    pub const RX_PROMISC: u8 = 0;
    pub const RX_ALLMULTI: u8 = 1;
    pub const RX_NOBCAST: u8 = 5;
    pub const CLASS_MAC: u8 = 1;
    pub const MAC_TABLE_SET: u8 = 0;
    pub const MAC_ADDR_SET: u8 = 1;
    pub const CLASS_ANNOUNCE: u8 = 3;
    pub const CLASS_MQ: u8 = 4;
    pub const MQ_VQ_PAIRS_SET: u8 = 0;
    pub const MQ_RSS_CONFIG: u8 = 1;
    pub const MQ_HASH_CONFIG: u8 = 2;
    pub const OK: u8 = 0;
    pub const ERR: u8 = 1;
}

/// MSI-X placement in [`MSIX_BAR`] for a table of `vectors` entries: (PBA offset, BAR size).
/// The table starts at 0; as in QEMU the PBA follows at 0x800 for up to 128 vectors.
pub fn msix_layout(vectors: u16) -> (u64, u64) {
    let table = vectors as u64 * 16;
    let pba_offset = table.next_multiple_of(0x800).max(0x800);
    let pba_bytes = (vectors as u64).div_ceil(64) * 8;
    (
        pba_offset,
        (pba_offset + pba_bytes).next_power_of_two().max(0x1000),
    )
}

fn put16(c: &mut [u8], at: usize, v: u16) {
    c[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(c: &mut [u8], at: usize, v: u32) {
    c[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// One `struct virtio_pci_cap` (16 bytes; 20 for the notify capability).
fn vendor_cap(c: &mut [u8], at: usize, next: usize, cfg_type: u8, offset: u64, length: u32) {
    c[at] = PCI_CAP_ID_VENDOR;
    c[at + 1] = next as u8;
    c[at + 2] = if cfg_type == CAP_NOTIFY { 20 } else { 16 };
    c[at + 3] = cfg_type;
    c[at + 4] = MODERN_BAR;
    c[at + 5] = 0; // id
    put32(c, at + 8, offset as u32);
    put32(c, at + 12, length);
}

/// The configuration space of a function with an MSI-X table of `vectors` entries (none when 0:
/// a line-only function).
pub fn config_space(vectors: u16) -> [u8; CONFIG_SPACE_SIZE] {
    let mut c = [0u8; CONFIG_SPACE_SIZE];
    put16(&mut c, 0x00, VENDOR_ID);
    put16(&mut c, 0x02, DEVICE_ID);
    put16(&mut c, 0x04, 0x0006); // memory space + bus master
    put16(&mut c, 0x06, 0x0010); // capability list present
    c[0x08] = REVISION;
    c[0x09] = 0x00; // programming interface
    c[0x0A] = 0x00; // Ethernet
    c[0x0B] = 0x02; // network controller
    put16(&mut c, 0x2C, SUBSYSTEM_VENDOR_ID);
    put16(&mut c, 0x2E, SUBSYSTEM_ID);
    c[0x34] = CAP_COMMON_AT as u8;
    c[0x3D] = 1; // INTA#
    let after_notify = if vectors > 0 { CAP_MSIX_AT } else { 0 };
    vendor_cap(
        &mut c,
        CAP_COMMON_AT,
        CAP_ISR_AT,
        CAP_COMMON,
        COMMON_OFFSET,
        COMMON_LENGTH,
    );
    vendor_cap(
        &mut c,
        CAP_ISR_AT,
        CAP_DEVICE_AT,
        CAP_ISR,
        ISR_OFFSET,
        ISR_LENGTH,
    );
    vendor_cap(
        &mut c,
        CAP_DEVICE_AT,
        CAP_NOTIFY_AT,
        CAP_DEVICE,
        DEVICE_OFFSET,
        DEVICE_LENGTH,
    );
    vendor_cap(
        &mut c,
        CAP_NOTIFY_AT,
        after_notify,
        CAP_NOTIFY,
        NOTIFY_OFFSET,
        NOTIFY_LENGTH,
    );
    put32(&mut c, CAP_NOTIFY_AT + 16, NOTIFY_OFF_MULTIPLIER);
    if vectors > 0 {
        let (pba, _) = msix_layout(vectors);
        c[CAP_MSIX_AT] = PCI_CAP_ID_MSIX;
        c[CAP_MSIX_AT + 1] = 0;
        put16(&mut c, CAP_MSIX_AT + 2, vectors - 1); // table size - 1; enable/mask clear
        put32(&mut c, CAP_MSIX_AT + 4, MSIX_BAR as u32); // table at 0
        put32(&mut c, CAP_MSIX_AT + 8, pba as u32 | MSIX_BAR as u32);
    }
    c
}
