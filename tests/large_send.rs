//! Large send offload (LSOv2) of the reference driver on the emulator: a large TCP send the stack
//! hands down leaves the virtio-net device model as the segments TCP would have sent, built here
//! independently with `etherparse`; and the cases NDIS says fail.
#![cfg(not(windows))]

#[macro_use]
#[path = "support/nic.rs"]
mod nic;

use etherparse::{Ipv4Header, Ipv6Header, TcpHeader};
use ndis_emu::InterruptResources;
use ndis_sys as sys;

use nic::{MAC, Nic, check_tx, frame, start, tagged};

/// Counts the driver's heap allocations so unload can find leaks (see ndis_emu::DriverHeap).
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

/// A TCP segment of `payload` bytes over IPv4 (or IPv6), correct checksums, as TCP would hand
/// it down before segmentation. `flags`: the TCP flags byte (0x18: PSH|ACK).
fn large(ipv6: bool, payload: usize, flags: u8, seed: u8) -> Vec<u8> {
    use etherparse::PacketBuilder;
    let eth = PacketBuilder::ethernet2(MAC, [2, 0, 0, 0, 0, seed]);
    let ip = if ipv6 {
        let mut source = [0u8; 16];
        source[0] = 0xfe;
        source[1] = 0x80;
        source[15] = 1;
        let mut destination = source;
        destination[15] = seed;
        eth.ipv6(source, destination, 64)
    } else {
        eth.ipv4([10, 0, 0, 1], [10, 0, 0, seed], 64)
    };
    let mut tcp = ip.tcp(50000, 443, 0xFFFF_F000, 65535).ack(7);
    if flags & 0x08 != 0 {
        tcp = tcp.psh();
    }
    if flags & 0x01 != 0 {
        tcp = tcp.fin();
    }
    if flags & 0x80 != 0 {
        tcp = tcp.cwr();
    }
    let data: Vec<u8> = (0..payload).map(|i| (i % 251) as u8 ^ seed).collect();
    let mut out = Vec::new();
    tcp.write(&mut out, &data).unwrap();
    if !ipv6 {
        // A nonzero identification, close to the wrap, so each segment's is visible.
        let (mut h, _) = Ipv4Header::from_slice(&out[14..]).unwrap();
        h.identification = 0xFFFE;
        h.header_checksum = h.calc_header_checksum();
        out[14..34].copy_from_slice(&h.to_bytes());
    }
    out
}

/// The segments TCP would have sent for `frame` at `mss` (as Linux's segmentation makes them:
/// the IPv4 identification counting up, the sequence number advancing, FIN and PSH on the last
/// segment only, CWR on the first only), with checksums computed by `etherparse`.
fn segments(frame: &[u8], mss: usize) -> Vec<Vec<u8>> {
    let ipv6 = frame[12..14] == [0x86, 0xDD];
    let l4 = if ipv6 {
        54
    } else {
        14 + usize::from(frame[14] & 0x0F) * 4
    };
    let (tcp, payload) = TcpHeader::from_slice(&frame[l4..]).unwrap();
    let chunks: Vec<&[u8]> = payload.chunks(mss).collect();
    let n = chunks.len();
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut t = tcp.clone();
            t.sequence_number = tcp.sequence_number.wrapping_add((i * mss) as u32);
            t.fin &= i + 1 == n;
            t.psh &= i + 1 == n;
            t.cwr &= i == 0;
            let mut out = frame[..14].to_vec();
            if ipv6 {
                let (mut ip, _) = Ipv6Header::from_slice(&frame[14..]).unwrap();
                ip.payload_length = (t.header_len() + chunk.len()) as u16;
                t.checksum = t.calc_checksum_ipv6(&ip, chunk).unwrap();
                ip.write(&mut out).unwrap();
            } else {
                let (mut ip, _) = Ipv4Header::from_slice(&frame[14..]).unwrap();
                ip.set_payload_len(t.header_len() + chunk.len()).unwrap();
                ip.identification = ip.identification.wrapping_add(i as u16);
                ip.header_checksum = ip.calc_header_checksum();
                t.checksum = t.calc_checksum_ipv4(&ip, chunk).unwrap();
                ip.write(&mut out).unwrap();
            }
            t.write(&mut out).unwrap();
            out.extend_from_slice(chunk);
            out
        })
        .collect()
}

/// Sends `frames` as large sends of `mss` (headers and payload in MDLs of `piece` bytes) and
/// checks every list completed with `LsoV2TransmitComplete` and the wire saw their segments.
fn check_large(
    nic: &Nic,
    frames: &[Vec<u8>],
    mss: u32,
    piece: usize,
    wire: impl Fn(&[u8]) -> Vec<u8>,
) {
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    nic.emu.send_large_in_pieces(nic.adapter, &refs, mss, piece);
    let done = nic.emu.send_completions_large();
    assert_eq!(done.len(), frames.len());
    for (_, status, info) in &done {
        assert_eq!(*status, sys::NDIS_STATUS_SUCCESS);
        assert_eq!(
            *info,
            1 << 30,
            "LsoV2TransmitComplete: type V2 (1), reserved 0"
        );
    }
    let seen = nic.net(|n, _| n.take_transmitted(0));
    let want: Vec<Vec<u8>> = frames
        .iter()
        .flat_map(|f| segments(f, mss as usize))
        .map(|s| wire(&s))
        .collect();
    assert_eq!(seen.len(), want.len(), "segments on the wire");
    for (i, (got, want)) in seen.iter().zip(&want).enumerate() {
        assert!(
            got == want,
            "segment {i} differs from what TCP would have sent"
        );
    }
}

both_builds! {
fn large_sends_leave_the_wire_as_the_segments_tcp_would_have_sent(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    let o = nic.emu.offload(nic.adapter).unwrap();
    let limits = ndis_emu::LsoLimits {
        max_offload_size: 0xF800,
        min_segment_count: 2,
        extension_headers: false,
    };
    assert_eq!(
        (o.current_lso.ipv4, o.current_lso.ipv6),
        (Some(limits), Some(limits))
    );
    let frames = [
        large(false, 3000, 0x18, 1), // 1440 + 1440 + 120, PSH on the last
        large(false, 2 * 1440, 0x19 | 0x80, 2), // an exact multiple; FIN, PSH, CWR
        large(true, 5000, 0x18, 3),
        large(false, 0xF800, 0x10, 4), // the largest: 45 segments
    ];
    // 1440: the largest MSS whose IPv6 segments fit a 1500-byte MTU. Each frame in one piece:
    // mapped (its headers copied and rewritten, the payload read in place), its list freed.
    check_large(&nic, &frames, 1440, usize::MAX, |s| s.to_vec());
    assert_eq!(nic.emu.sg_lists(), (4, 4, 0), "large sends mapped, lists freed");
    // Headers and payload in separate buffers (gathered, so copied), odd MSS.
    check_large(&nic, &frames[..3], 1001, 54, |s| s.to_vec());
    assert_eq!(nic.emu.sg_lists(), (4, 4, 0), "frames in pieces are copied");
    let stats = nic.net(|n, _| n.counters().clone());
    assert_eq!(stats.tx_gso_packets, 7);
    // The adapter's VLAN: the tag goes in before the device segments.
    let vlan = 12u32;
    let status = nic
        .emu
        .oid_set(nic.adapter, sys::OID_GEN_VLAN_ID, &vlan.to_le_bytes())
        .status;
    assert_eq!(status, sys::NDIS_STATUS_SUCCESS);
    check_large(&nic, &frames[..1], 1448, usize::MAX, |s| tagged(s, 12));
    assert_eq!(nic.emu.sg_lists(), (5, 5, 0), "a tagged large send is mapped too");
    nic.stop();
}
}

both_builds! {
fn large_sends_ndis_says_to_fail_fail_and_lose_no_buffer(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    let v2 = |mss: u32, offset: u32, ipv6: bool| {
        mss | (offset << 20) | (1 << 30) | (u32::from(ipv6) << 31)
    };
    let tcp = large(false, 3000, 0x18, 1);
    let udp = {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ethernet2(MAC, [2, 0, 0, 0, 0, 9])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 9], 64)
            .udp(1, 2)
            .write(&mut out, &[0; 3000])
            .unwrap();
        out
    };
    let cases: [(&[u8], u32, i32); 5] = [
        (&tcp, 1448 | (34 << 20), sys::NDIS_STATUS_INVALID_PACKET), // LSOv1: never offered
        (&tcp, v2(1448, 30, false), sys::NDIS_STATUS_INVALID_PACKET), // header offset wrong
        (&tcp, v2(1448, 34, true), sys::NDIS_STATUS_INVALID_PACKET), // not IPv6
        (&udp, v2(1448, 34, false), sys::NDIS_STATUS_INVALID_PACKET), // not TCP
        (
            &tcp,
            v2(70_000 & 0xF_FFFF, 34, false),
            sys::NDIS_STATUS_INVALID_PACKET,
        ), // MSS > 64K
    ];
    for (f, info, want) in cases {
        nic.emu.send_with_large_send_info(nic.adapter, &[(f, info)]);
        let done = nic.emu.send_completions_large();
        assert_eq!(done[0].1, want, "info {info:#x}");
        assert_eq!(
            done[0].2, info as usize,
            "a failed large send keeps its request"
        );
    }
    let huge = large(false, 0xF800 + 1000, 0x18, 5);
    nic.emu
        .send_with_large_send_info(nic.adapter, &[(&huge, v2(1448, 34, false))]);
    assert_eq!(
        nic.emu.send_completions_large()[0].1,
        sys::NDIS_STATUS_INVALID_LENGTH
    );

    // LSO switched off for IPv4: a large send still on its way is dropped.
    let mut p = ndis_emu::offload_parameters([0; 5]);
    p[11] = 1;
    let status = nic
        .emu
        .oid_set(nic.adapter, sys::OID_TCP_OFFLOAD_PARAMETERS, &p)
        .status;
    assert_eq!(status, sys::NDIS_STATUS_SUCCESS);
    nic.emu
        .send_with_large_send_info(nic.adapter, &[(&tcp, v2(1448, 34, false))]);
    assert_eq!(
        nic.emu.send_completions_large()[0].1,
        sys::NDIS_STATUS_INVALID_PACKET
    );
    assert!(
        nic.net(|n, _| n.take_transmitted(0)).is_empty(),
        "nothing went out"
    );

    // Every bounce buffer came back: with the device holding everything it is given, exactly
    // a ring's worth of frames is taken (256), and the next one is held for the ring to drain.
    nic.net(|n, bus| n.set_stalled(bus, 1, true));
    let ring: Vec<Vec<u8>> = (0..257).map(|i| frame(i as u8, 64)).collect();
    let refs: Vec<&[u8]> = ring.iter().map(|f| f.as_slice()).collect();
    nic.emu.send(nic.adapter, &refs);
    let statuses = nic.emu.send_statuses();
    assert_eq!(
        statuses,
        vec![sys::NDIS_STATUS_SUCCESS; 256],
        "the ring's worth"
    );
    nic.net(|n, bus| n.set_stalled(bus, 1, false));
    nic.emu.run_dpcs();
    assert_eq!(
        nic.emu.send_statuses(),
        [sys::NDIS_STATUS_SUCCESS],
        "the held one, once the device drained"
    );
    let good: Vec<Vec<u8>> = (0..300).map(|i| frame(i as u8, 64)).collect();
    nic.net(|n, _| n.take_transmitted(0));
    check_tx(&nic, &good);
    nic.stop();
}
}

both_builds! {
fn what_the_device_cannot_segment_is_refused_not_handed_over(build: Build) {
    let v2 = |mss: u32, offset: u32, ipv6: bool| {
        mss | (offset << 20) | (1 << 30) | (u32::from(ipv6) << 31)
    };
    // An MSS whose segments would not fit the adapter's frame.
    let nic = start(build, 1, InterruptResources::msix(4));
    let tcp = large(false, 6000, 0x18, 1);
    nic.emu
        .send_with_large_send_info(nic.adapter, &[(&tcp, v2(1461, 34, false))]);
    assert_eq!(
        nic.emu.send_completions_large()[0].1,
        sys::NDIS_STATUS_INVALID_PACKET
    );
    // An IPv6 destination-options header (not claimed): refused, and the device lives on.
    let plain = large(true, 3000, 0x18, 2);
    let mut with_option = plain[..54].to_vec();
    with_option[20] = 60; // next header: destination options
    with_option.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // next TCP, 8 bytes, PadN
    with_option.extend_from_slice(&plain[54..]);
    nic.emu
        .send_with_large_send_info(nic.adapter, &[(&with_option, v2(1440, 62, true))]);
    assert_eq!(
        nic.emu.send_completions_large()[0].1,
        sys::NDIS_STATUS_INVALID_PACKET
    );
    check_large(&nic, &[plain], 1440, usize::MAX, |s| s.to_vec());
    nic.stop();

    // A device without HOST_ECN: a template carrying CWR is refused, others go out.
    let emu = ndis_emu::Emulator::new(nic::config(2));
    let nic = nic::start_with(build, emu, 1, InterruptResources::msix(4), |c| {
        c.features &= !ndis_emu::devices::virtio_net::regs::feature::HOST_ECN;
    })
    .unwrap();
    let cwr = large(false, 3000, 0x98, 3);
    nic.emu
        .send_with_large_send_info(nic.adapter, &[(&cwr, v2(1448, 34, false))]);
    assert_eq!(
        nic.emu.send_completions_large()[0].1,
        sys::NDIS_STATUS_INVALID_PACKET
    );
    check_large(
        &nic,
        &[large(false, 3000, 0x18, 4)],
        1448,
        usize::MAX,
        |s| s.to_vec(),
    );
    nic.stop();

    // Rings too small for two of the largest large sends: no LSO is offered at all.
    let emu = ndis_emu::Emulator::new(nic::config(2));
    let nic = nic::start_with(build, emu, 1, InterruptResources::msix(4), |c| c.queue_size = 16).unwrap();
    let o = nic.emu.offload(nic.adapter).unwrap();
    assert_eq!((o.hardware_lso.ipv4, o.hardware_lso.ipv6), (None, None));
    nic.stop();
}
}

both_builds! {
fn large_sends_fill_the_ring_and_wait_for_room(build: Build) {
    // 64 transmit buffers of 2 KiB: a 62 KiB send takes 32 of them, so the third needs the
    // device to finish the first.
    let emu = ndis_emu::Emulator::new(nic::config(2));
    emu.set_keyword("*TransmitBuffers", "64");
    let nic = nic::start_with(build, emu, 1, InterruptResources::msix(4), |_| {}).unwrap();
    let frames: Vec<Vec<u8>> = (0..5).map(|i| large(i % 2 == 1, 0xF000, 0x18, i)).collect();
    check_large(&nic, &frames, 1440, usize::MAX, |s| s.to_vec());
    nic.stop();
}
}

both_builds! {
fn a_large_send_mapped_after_lso_was_switched_off_is_dropped(build: Build) {
    // NDIS's rule for a large send on an IP version whose LSO an OID switched off holds for one
    // whose mapping completes after the switch too (the callback may come from a later DPC).
    let nic = start(build, 1, InterruptResources::msix(4));
    nic.emu.set_sg_callback(ndis_emu::SgCallback::Held);
    let tcp = large(false, 3000, 0x18, 1);
    nic.emu.send_large(nic.adapter, &[&tcp], 1448);
    assert!(
        nic.emu.send_completions_large().is_empty(),
        "held until its mapping comes"
    );
    let mut p = ndis_emu::offload_parameters([0; 5]);
    p[11] = 1; // LsoV2IPv4: disabled
    let status = nic
        .emu
        .oid_set(nic.adapter, sys::OID_TCP_OFFLOAD_PARAMETERS, &p)
        .status;
    assert_eq!(status, sys::NDIS_STATUS_SUCCESS);
    nic.emu.release_sg_callbacks();
    let done = nic.emu.send_completions_large();
    assert_eq!(done.len(), 1, "completed once");
    assert_eq!(done[0].1, sys::NDIS_STATUS_INVALID_PACKET);
    assert!(
        nic.net(|n, _| n.take_transmitted(0)).is_empty(),
        "nothing went out"
    );
    let (made, freed, live) = nic.emu.sg_lists();
    assert_eq!((made, live), (1, 0), "mapped once, its list freed");
    assert_eq!(freed, made);
    nic.stop();
}
}
