//! Checksum offload in the virtio-net model (virtio 1.2, 5.1.6.2 and 5.1.6.4), at register level
//! with hand-built rings: `virtio-drivers` negotiates neither CSUM nor GUEST_CSUM.
//!
//! Frames are built by `etherparse`'s `PacketBuilder` with correct checksums; the pseudo-header
//! sums and the completion of a partial checksum are computed here with `etherparse`'s
//! `Sum16BitWords`, not with the model's code. TX: the test turns a correct frame into the
//! partial one a driver hands over and expects the device to put the original back on the wire.
//! RX: the test injects correct (or damaged) frames and reads the header the device wrote.

use etherparse::checksum::Sum16BitWords;
use etherparse::{PacketBuilder, SlicedPacket, VlanId};
use ndis_emu::devices::virtio_net::regs::{self, feature, net_hdr};
use ndis_emu::devices::virtio_net::{RxChecksum, VirtioNet, VirtioNetConfig};
use ndis_emu::{DeviceId, Emulator, InterruptResources};

#[path = "support/virtio_rings.rs"]
mod virtio_rings;
use virtio_rings::{Regs, Ring, bring_up_pair, device_only, needs_reset};

/// Counts the driver's heap allocations so unload can find leaks (see ndis_emu::DriverHeap).
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

const MAC_A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
const V4_A: [u8; 4] = [192, 168, 7, 1];
const V4_B: [u8; 4] = [192, 168, 7, 2];
const V6_A: [u8; 16] = [0xFE, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_B: [u8; 16] = [
    0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34,
];
const TCP: u8 = 6;
const UDP: u8 = 17;

// ---- frames ----

fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ 0x5A)
        .collect()
}

fn tcp_v4(data: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(V4_A, V4_B, 64)
        .tcp(40000, 80, 0x1234_5678, 4096);
    let mut f = Vec::new();
    b.write(&mut f, data).unwrap();
    f
}

fn udp_v4(data: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(V4_A, V4_B, 64)
        .udp(5353, 53);
    let mut f = Vec::new();
    b.write(&mut f, data).unwrap();
    f
}

fn udp_v6(data: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(V6_A, V6_B, 64)
        .udp(5353, 53);
    let mut f = Vec::new();
    b.write(&mut f, data).unwrap();
    f
}

fn tcp_v6(data: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(V6_A, V6_B, 64)
        .tcp(443, 50000, 7, 65535);
    let mut f = Vec::new();
    b.write(&mut f, data).unwrap();
    f
}

fn tcp_v4_vlan(data: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .single_vlan(VlanId::try_new(42).unwrap())
        .ipv4(V4_A, V4_B, 64)
        .tcp(40000, 80, 1, 4096);
    let mut f = Vec::new();
    b.write(&mut f, data).unwrap();
    f
}

/// Where a frame's TCP/UDP header starts, its length, protocol, and where its checksum sits
/// (`csum_start`, L4 length, protocol, `csum_offset`), from etherparse.
fn l4_of(frame: &[u8]) -> (usize, usize, u8, usize) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let (l4, proto, offset) = match p.transport.unwrap() {
        etherparse::TransportSlice::Tcp(t) => (t.slice(), TCP, 16),
        etherparse::TransportSlice::Udp(u) => (u.slice(), UDP, 6),
        other => panic!("not TCP/UDP: {other:?}"),
    };
    let start = l4.as_ptr() as usize - frame.as_ptr() as usize;
    (start, l4.len(), proto, offset)
}

/// The folded, not complemented, pseudo-header sum of a frame's TCP/UDP segment, as the two
/// bytes a driver (or a host delivering a local packet) puts in the checksum field.
fn pseudo_header_sum(frame: &[u8]) -> [u8; 2] {
    let (_, l4_len, proto, _) = l4_of(frame);
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let sum = match p.net.unwrap() {
        etherparse::NetSlice::Ipv4(ip) => Sum16BitWords::new()
            .add_4bytes(ip.header().source())
            .add_4bytes(ip.header().destination())
            .add_2bytes([0, proto])
            .add_2bytes((l4_len as u16).to_be_bytes()),
        etherparse::NetSlice::Ipv6(ip) => Sum16BitWords::new()
            .add_16bytes(ip.header().source())
            .add_16bytes(ip.header().destination())
            .add_4bytes((l4_len as u32).to_be_bytes())
            .add_4bytes([0, 0, 0, proto]),
        other => panic!("not IP: {other:?}"),
    };
    // ones_complement() is the complement of the folded sum, in memory order.
    (!sum.ones_complement()).to_ne_bytes()
}

/// What a driver does with NEEDS_CSUM: the checksum of `frame[start..]`, field included,
/// stored at `field` (0 sent as 0xFFFF).
fn complete(frame: &mut [u8], start: usize, field: usize) {
    let sum = Sum16BitWords::new().add_slice(&frame[start..]);
    let c = match sum.ones_complement().to_ne_bytes() {
        [0, 0] => [0xFF, 0xFF],
        c => c,
    };
    frame[field..field + 2].copy_from_slice(&c);
}

/// The partial form of a correct frame, and the header asking the device to complete it.
fn partial_tx(frame: &[u8]) -> ([u8; regs::NET_HDR_LEN], Vec<u8>) {
    let (start, _, _, offset) = l4_of(frame);
    let mut partial = frame.to_vec();
    partial[start + offset..start + offset + 2].copy_from_slice(&pseudo_header_sum(frame));
    (
        tx_header(regs::NET_HDR_F_NEEDS_CSUM, 0, start as u16, offset as u16),
        partial,
    )
}

fn tx_header(flags: u8, gso_type: u8, start: u16, offset: u16) -> [u8; regs::NET_HDR_LEN] {
    let mut h = [0u8; regs::NET_HDR_LEN];
    h[net_hdr::FLAGS] = flags;
    h[net_hdr::GSO_TYPE] = gso_type;
    h[net_hdr::CSUM_START..][..2].copy_from_slice(&start.to_le_bytes());
    h[net_hdr::CSUM_OFFSET..][..2].copy_from_slice(&offset.to_le_bytes());
    h
}

fn checksum_field(frame: &[u8]) -> [u8; 2] {
    let (start, _, _, offset) = l4_of(frame);
    [frame[start + offset], frame[start + offset + 1]]
}

// ---- the device ----

const CSUMS: u64 = feature::VERSION_1 | feature::CSUM | feature::GUEST_CSUM;

/// A device with one pair and the default features (CSUM and GUEST_CSUM among them).
fn device() -> (Emulator, DeviceId) {
    device_only(InterruptResources::line(), VirtioNetConfig::new(1))
}

/// Sends `frame` behind `header` and returns what went on the wire.
fn send(r: &Regs<'_>, tx: &mut Ring, slot: u16, header: &[u8; 12], frame: &[u8]) -> Vec<u8> {
    tx.transmit_with_header(r, slot, header, frame);
    assert!(
        !needs_reset(r),
        "{:?}",
        r.model(|m| m.device_error().map(String::from))
    );
    r.model(|m| m.transmitted_frames(0).last().cloned().unwrap())
}

/// Injects `frame` into a freshly posted buffer and returns (header, frame as delivered).
fn receive(r: &Regs<'_>, rx: &mut Ring, frame: &[u8]) -> ([u8; 12], Vec<u8>) {
    let n = rx.used_idx(r);
    rx.post_receive(r, n % virtio_rings::RING_SIZE);
    r.emu
        .with_device::<VirtioNet, _>(r.dev, |m, bus| m.inject_frame(bus, 0, frame));
    assert_eq!(rx.used_idx(r), n.wrapping_add(1), "delivered");
    let got = rx.received(r, n);
    let (header, delivered) = got.split_at(regs::NET_HDR_LEN);
    assert_eq!(
        u16::from_le_bytes([
            header[net_hdr::NUM_BUFFERS],
            header[net_hdr::NUM_BUFFERS + 1]
        ]),
        1,
        "num_buffers"
    );
    (header.try_into().unwrap(), delivered.to_vec())
}

fn le16(h: &[u8; 12], at: usize) -> u16 {
    u16::from_le_bytes([h[at], h[at + 1]])
}

// ---- TX ----

#[test]
fn tx_completes_a_tcp_ipv4_checksum_and_the_wire_sees_the_completed_frame() {
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let (mut rx, mut tx) = bring_up_pair(&emu, dev, CSUMS);
    r.model(|m| m.set_loopback(true));
    let original = tcp_v4(&payload(200));
    let (header, partial) = partial_tx(&original);
    assert_ne!(partial, original, "the field held the real checksum");
    rx.post_receive(&r, 0);
    assert_eq!(send(&r, &mut tx, 0, &header, &partial), original);
    // The loopback carries the wire frame too.
    let looped = rx.received(&r, 0);
    assert_eq!(&looped[regs::NET_HDR_LEN..], &original[..]);
    // Without NEEDS_CSUM the frame goes out untouched, even a wrong checksum.
    assert_eq!(send(&r, &mut tx, 1, &[0; 12], &partial), partial);
    assert_eq!(r.model(|m| m.counters().tx_checksummed), 1);
}

#[test]
fn tx_completes_udp_ipv6_and_tcp_ipv6_checksums() {
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let (_rx, mut tx) = bring_up_pair(&emu, dev, CSUMS);
    for (slot, original) in [udp_v6(&payload(333)), tcp_v6(&payload(64))]
        .into_iter()
        .enumerate()
    {
        let (header, partial) = partial_tx(&original);
        assert_eq!(send(&r, &mut tx, slot as u16, &header, &partial), original);
    }
    assert_eq!(r.model(|m| m.counters().tx_checksummed), 2);
}

#[test]
fn tx_pads_an_odd_length_segment_with_a_zero_byte() {
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let (_rx, mut tx) = bring_up_pair(&emu, dev, CSUMS);
    for (slot, len) in [(0u16, 1usize), (1, 7), (2, 1001)] {
        let original = tcp_v4(&payload(len));
        assert_eq!(original.len() % 2, 1, "an odd frame");
        let (header, partial) = partial_tx(&original);
        assert_eq!(
            send(&r, &mut tx, slot, &header, &partial),
            original,
            "{len}"
        );
    }
}

#[test]
fn tx_sends_a_computed_zero_as_all_ones() {
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let (_rx, mut tx) = bring_up_pair(&emu, dev, CSUMS);
    // Choose the last payload word so that everything else plus it sums to 0xFFFF: the
    // checksum (its complement) is then 0, which UDP must send as 0xFFFF.
    let mut data = payload(40);
    data[38..].fill(0);
    let probe = udp_v4(&data);
    let (start, _, _, offset) = l4_of(&probe);
    let mut zeroed = probe.clone();
    zeroed[start + offset..start + offset + 2].copy_from_slice(&pseudo_header_sum(&probe));
    let rest = !Sum16BitWords::new()
        .add_slice(&zeroed[start..])
        .ones_complement();
    data[38..].copy_from_slice(&(0xFFFF - rest).to_ne_bytes());
    let original = udp_v4(&data);
    assert_eq!(checksum_field(&original), [0xFF, 0xFF], "etherparse agrees");
    let (header, partial) = partial_tx(&original);
    let sent = send(&r, &mut tx, 0, &header, &partial);
    assert_eq!(checksum_field(&sent), [0xFF, 0xFF]);
    assert_eq!(sent, original);
}

#[test]
fn tx_checksum_outside_the_frame_is_a_device_error() {
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let (_rx, mut tx) = bring_up_pair(&emu, dev, CSUMS);
    let frame = udp_v4(&payload(10));
    let len = frame.len() as u16;
    // The last two bytes are the last place the field may be.
    let fits = tx_header(regs::NET_HDR_F_NEEDS_CSUM, 0, len - 6, 4);
    send(&r, &mut tx, 0, &fits, &frame);
    let one_past = tx_header(regs::NET_HDR_F_NEEDS_CSUM, 0, len - 6, 5);
    tx.transmit_with_header(&r, 1, &one_past, &frame);
    assert!(needs_reset(&r));
    let why = r.model(|m| m.device_error().unwrap().to_string());
    assert!(
        why.contains(&format!("csum_start {}", len - 6))
            && why.contains("csum_offset 5")
            && why.contains(&format!("{len}-byte frame")),
        "{why}"
    );
    assert_eq!(r.model(|m| m.transmitted_frames(0).len()), 1);
    // A csum_start past the end (u16 sums that would overflow a u16 too).
    let (_rx, mut tx) = bring_up_pair(&emu, dev, CSUMS);
    let far = tx_header(regs::NET_HDR_F_NEEDS_CSUM, 0, u16::MAX, u16::MAX);
    tx.transmit_with_header(&r, 0, &far, &frame);
    assert!(needs_reset(&r));
    assert!(r.model(|m| m.device_error().unwrap().contains("csum_start 65535")));
}

#[test]
fn tx_needs_csum_without_csum_negotiated_is_a_device_error() {
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let features = feature::VERSION_1 | feature::GUEST_CSUM;
    let (_rx, mut tx) = bring_up_pair(&emu, dev, features);
    let (header, partial) = partial_tx(&tcp_v4(&payload(20)));
    tx.transmit_with_header(&r, 0, &header, &partial);
    assert!(needs_reset(&r));
    let why = r.model(|m| m.device_error().unwrap().to_string());
    assert!(
        why.contains("NEEDS_CSUM") && why.contains("not negotiated"),
        "{why}"
    );
    assert!(r.model(|m| m.transmitted_frames(0).is_empty()));
}

#[test]
fn tx_gso_without_tso_negotiated_is_a_device_error() {
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let (_rx, mut tx) = bring_up_pair(&emu, dev, CSUMS);
    // VIRTIO_NET_HDR_GSO_TCPV4 with CSUM but not HOST_TSO4 negotiated (TSO: virtio_net_tso.rs).
    let header = tx_header(0, 1, 0, 0);
    tx.transmit_with_header(&r, 0, &header, &tcp_v4(&payload(20)));
    assert!(needs_reset(&r));
    let why = r.model(|m| m.device_error().unwrap().to_string());
    assert!(why.contains("gso_type 1"), "{why}");
    assert!(r.model(|m| m.transmitted_frames(0).is_empty()));
}

// ---- RX ----

#[test]
fn rx_validate_marks_good_tcp_ipv4_udp_ipv6_and_vlan_frames_data_valid() {
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let (mut rx, _tx) = bring_up_pair(&emu, dev, CSUMS);
    for good in [
        tcp_v4(&payload(100)),
        udp_v6(&payload(33)),
        tcp_v4_vlan(&payload(5)),
        tcp_v6(&payload(0)),
    ] {
        let (h, delivered) = receive(&r, &mut rx, &good);
        assert_eq!(h[net_hdr::FLAGS], regs::NET_HDR_F_DATA_VALID);
        assert_eq!(le16(&h, net_hdr::CSUM_START), 0);
        assert_eq!(delivered, good, "unchanged");
    }
    assert_eq!(r.model(|m| m.counters().rx_data_valid), 4);
}

#[test]
fn rx_validate_leaves_bad_or_unknown_checksums_unmarked() {
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let (mut rx, _tx) = bring_up_pair(&emu, dev, CSUMS);
    let corrupt = |mut f: Vec<u8>| {
        let last = f.len() - 1;
        f[last] ^= 0x40;
        f
    };
    let mut no_udp_checksum = udp_v4(&payload(12));
    let (start, _, _, offset) = l4_of(&no_udp_checksum);
    no_udp_checksum[start + offset..start + offset + 2].fill(0);
    // A first fragment: its TCP checksum covers bytes this frame does not carry.
    let mut fragment = tcp_v4(&payload(100));
    let (mut ip, _) = etherparse::Ipv4Header::from_slice(&fragment[14..]).unwrap();
    ip.more_fragments = true;
    ip.header_checksum = ip.calc_header_checksum();
    fragment[14..34].copy_from_slice(&ip.to_bytes());
    for bad in [
        fragment,
        corrupt(tcp_v4(&payload(100))),
        corrupt(udp_v6(&payload(33))),
        corrupt(tcp_v4_vlan(&payload(5))),
        no_udp_checksum,
        b"not even ethernet".to_vec(),
    ] {
        let (h, delivered) = receive(&r, &mut rx, &bad);
        assert_eq!(h[net_hdr::FLAGS], 0, "{bad:02x?}");
        assert_eq!(delivered, bad);
    }
    assert_eq!(r.model(|m| m.counters().rx_data_valid), 0);
}

#[test]
fn rx_partial_hands_over_the_pseudo_header_sum_and_completing_it_gives_the_original() {
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let (mut rx, _tx) = bring_up_pair(&emu, dev, CSUMS);
    r.model(|m| m.set_rx_checksum(RxChecksum::Partial));
    for original in [
        tcp_v4(&payload(100)),
        udp_v6(&payload(33)),
        tcp_v4_vlan(&payload(7)),
    ] {
        let (start, _, _, offset) = l4_of(&original);
        let (h, mut delivered) = receive(&r, &mut rx, &original);
        assert_eq!(h[net_hdr::FLAGS], regs::NET_HDR_F_NEEDS_CSUM);
        assert_eq!(h[net_hdr::GSO_TYPE], regs::NET_HDR_GSO_NONE);
        let (csum_start, csum_offset) = (
            le16(&h, net_hdr::CSUM_START) as usize,
            le16(&h, net_hdr::CSUM_OFFSET) as usize,
        );
        assert_eq!((csum_start, csum_offset), (start, offset));
        let field = csum_start + csum_offset;
        assert_eq!(
            delivered[field..field + 2],
            pseudo_header_sum(&original),
            "the field holds the pseudo-header sum"
        );
        assert_eq!(delivered[..field], original[..field]);
        assert_eq!(delivered[field + 2..], original[field + 2..]);
        complete(&mut delivered, csum_start, field);
        assert_eq!(delivered, original);
    }
    assert_eq!(r.model(|m| m.counters().rx_partial), 3);
    // A frame that does not verify is not handed over as partial (nor marked).
    let mut bad = udp_v6(&payload(33));
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(receive(&r, &mut rx, &bad).0[net_hdr::FLAGS], 0);
    // Non-zero bytes after the segment would spoil the driver's completion: DATA_VALID instead.
    let mut padded = tcp_v4(&payload(2));
    padded.extend_from_slice(&[0xEE; 4]);
    assert_eq!(
        receive(&r, &mut rx, &padded).0[net_hdr::FLAGS],
        regs::NET_HDR_F_DATA_VALID
    );
    // Zero padding adds nothing: still partial.
    let mut zero_padded = tcp_v4(&payload(2));
    zero_padded.resize(60, 0);
    assert_eq!(
        receive(&r, &mut rx, &zero_padded).0[net_hdr::FLAGS],
        regs::NET_HDR_F_NEEDS_CSUM
    );
    let c = r.model(|m| m.counters().clone());
    assert_eq!((c.rx_partial, c.rx_data_valid), (4, 1));
}

#[test]
fn rx_flags_stay_zero_when_off_or_guest_csum_is_not_negotiated() {
    let (emu, dev) = device();
    let r = Regs { emu: &emu, dev };
    let good = tcp_v4(&payload(100));
    // Not negotiated: every mode leaves flags 0.
    let (mut rx, _tx) = bring_up_pair(&emu, dev, feature::VERSION_1 | feature::CSUM);
    for mode in [RxChecksum::Validate, RxChecksum::Partial, RxChecksum::Off] {
        r.model(|m| m.set_rx_checksum(mode));
        let (h, delivered) = receive(&r, &mut rx, &good);
        assert_eq!(h, {
            let mut plain = [0u8; 12];
            plain[net_hdr::NUM_BUFFERS] = 1;
            plain
        });
        assert_eq!(delivered, good, "{mode:?}");
    }
    // Negotiated but Off.
    let (mut rx, _tx) = bring_up_pair(&emu, dev, CSUMS);
    r.model(|m| m.set_rx_checksum(RxChecksum::Off));
    let (h, delivered) = receive(&r, &mut rx, &good);
    assert_eq!(h[net_hdr::FLAGS], 0);
    assert_eq!(delivered, good);
    let c = r.model(|m| m.counters().clone());
    assert_eq!((c.rx_data_valid, c.rx_partial), (0, 0));
    // The same frame is marked once the mode asks for it.
    r.model(|m| m.set_rx_checksum(RxChecksum::Validate));
    assert_eq!(
        receive(&r, &mut rx, &good).0[net_hdr::FLAGS],
        regs::NET_HDR_F_DATA_VALID
    );
}

#[test]
fn checksum_offloads_are_offered_by_default() {
    let offered = VirtioNetConfig::default().features;
    assert_ne!(offered & feature::CSUM, 0);
    assert_ne!(offered & feature::GUEST_CSUM, 0);
    assert_eq!(feature::GUEST_CSUM, 1 << 1);
}
