//! Zero-copy sends: frames of at least `vionet::MAP_THRESHOLD` bytes mapped with
//! `NdisMAllocateNetBufferSGList` and read by the device from the protocol's own buffers,
//! completed only once the device used them, every scatter/gather list freed.

#![cfg(not(windows))]

use ndis_emu::devices::virtio_net::regs::feature;
use ndis_emu::{Emulator, InterruptResources, SgCallback};
use ndis_sys as sys;

/// Counts the driver's heap allocations so unload can find leaks (see ndis_emu::DriverHeap).
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

#[macro_use]
#[path = "support/nic.rs"]
mod nic;

use nic::{Build, Nic, config, frame, start_with};

/// `indirect`: whether the device offers `VIRTIO_F_INDIRECT_DESC` (a mapped frame then takes
/// one ring entry, its chain in a table; otherwise a descriptor per piece and the header's).
fn start(build: Build, resources: InterruptResources, how: SgCallback, indirect: bool) -> Nic {
    let nic = start_with(build, Emulator::new(config(4)), 1, resources, |c| {
        if !indirect {
            c.features &= !feature::RING_INDIRECT_DESC;
        }
    })
    .expect("initialize");
    assert_eq!(
        nic.net(|n, _| n.negotiated_features()) & feature::RING_INDIRECT_DESC != 0,
        indirect
    );
    nic.emu.set_sg_callback(how);
    nic
}

fn modes() -> Vec<(InterruptResources, SgCallback, bool)> {
    let mut v = Vec::new();
    for r in [InterruptResources::msix(4), InterruptResources::line()] {
        for how in [SgCallback::Inline, SgCallback::Deferred] {
            for indirect in [true, false] {
                v.push((r, how, indirect));
            }
        }
    }
    v
}

/// Runs DPCs until `n` completions came (a few rounds: interrupts and deferred callbacks).
fn completions(nic: &Nic, n: usize) -> Vec<(Vec<u8>, sys::NDIS_STATUS)> {
    let mut got = nic.emu.send_completions();
    for _ in 0..8 {
        if got.len() >= n {
            break;
        }
        nic.emu.run_dpcs();
        got.extend(nic.emu.send_completions());
    }
    got
}

both_builds! {
fn mapped_sends_are_byte_exact_and_complete_only_after_the_device_used_them(build: Build) {
    for (resources, how, indirect) in modes() {
        let nic = start(build, resources, how, indirect);
        // Transmit queue of pair 0 stalled: the device takes nothing.
        nic.net(|n, bus| n.set_stalled(bus, 1, true));
        let frames: Vec<Vec<u8>> = (0..12).map(|i| frame(i as u8, 1514 - i)).collect();
        for f in &frames {
            nic.emu.send(nic.adapter, &[f]);
        }
        nic.emu.run_dpcs();
        assert!(
            nic.emu.send_completions().is_empty(),
            "{resources:?} {how:?} indirect {indirect}: a mapped send completed before the device read it"
        );
        let (made, _, live) = nic.emu.sg_lists();
        assert!(
            made >= 1 && live >= 1,
            "{resources:?} {how:?} indirect {indirect}: nothing mapped"
        );
        nic.net(|n, bus| n.set_stalled(bus, 1, false));
        let done = completions(&nic, frames.len());
        assert_eq!(done.len(), frames.len(), "{resources:?} {how:?} indirect {indirect}");
        assert!(done.iter().all(|(_, s)| *s == sys::NDIS_STATUS_SUCCESS));
        let seen = nic.net(|n, _| n.take_transmitted(0));
        assert_eq!(
            seen, frames,
            "{resources:?} {how:?} indirect {indirect}: frames in order, byte exact"
        );
        let (made, freed, live) = nic.emu.sg_lists();
        assert_eq!(
            (made, live),
            (frames.len() as u64, 0),
            "{resources:?} {how:?} indirect {indirect}"
        );
        assert_eq!(freed, made);
        // Small frames are still copied (no mapping), and complete at once.
        nic.emu.send(nic.adapter, &[&frame(99, 64)]);
        assert_eq!(nic.emu.send_completions().len(), 1);
        assert_eq!(nic.emu.sg_lists().0, made);
        nic.stop();
    }
}
}

both_builds! {
fn mapped_frames_spread_over_many_mdls_are_byte_exact(build: Build) {
    for (resources, how, indirect) in modes() {
        let nic = start(build, resources, how, indirect);
        // 100-byte pieces: 16 elements, mapped; 8-byte pieces: more elements than the driver
        // chains, so the frame is copied after the mapping is freed.
        for piece in [100, 8, 1514] {
            let frames: Vec<Vec<u8>> = (0..3).map(|i| frame(i as u8 + 40, 1514)).collect();
            let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
            for f in &refs {
                nic.emu.send_fragmented(nic.adapter, &[f], piece);
            }
            let done = completions(&nic, 3);
            assert_eq!(done.len(), 3, "{resources:?} {how:?} indirect {indirect} piece {piece}");
            assert!(done.iter().all(|(_, s)| *s == sys::NDIS_STATUS_SUCCESS));
            let seen = nic.net(|n, _| n.take_transmitted(0));
            assert_eq!(seen, frames, "{resources:?} {how:?} indirect {indirect} piece {piece}");
        }
        let (made, freed, live) = nic.emu.sg_lists();
        assert_eq!((made, freed, live), (9, 9, 0), "{resources:?} {how:?} indirect {indirect}");
        nic.stop();
    }
}
}

both_builds! {
fn a_pause_waits_for_mapped_sends_in_flight_and_halt_finds_no_sg_list(build: Build) {
    for (resources, how, indirect) in modes() {
        let nic = start(build, resources, how, indirect);
        nic.net(|n, bus| n.set_stalled(bus, 1, true));
        let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(i as u8, 1400)).collect();
        for f in &frames {
            nic.emu.send(nic.adapter, &[f]);
        }
        nic.emu.run_dpcs();
        assert_eq!(
            nic.emu.pause(nic.adapter),
            sys::NDIS_STATUS_PENDING,
            "{resources:?} {how:?} indirect {indirect}: the device still reads the frames"
        );
        nic.net(|n, bus| n.set_stalled(bus, 1, false));
        let done = completions(&nic, frames.len());
        assert_eq!(done.len(), frames.len(), "{resources:?} {how:?} indirect {indirect}");
        // Sent (the device had them) or paused (still held behind the mapping when the pause
        // came): none fails otherwise.
        assert!(
            done.iter()
                .all(|(_, s)| *s == sys::NDIS_STATUS_SUCCESS || *s == sys::NDIS_STATUS_PAUSED)
        );
        assert_eq!(nic.emu.sg_lists().2, 0);
        nic.emu.halt(nic.adapter, sys::NdisHaltDeviceDisabled);
        nic.emu.unload();
        nic::assert_no_infallible_allocation(&nic.emu);
    }
}
}

both_builds! {
fn a_halt_with_the_device_stalled_completes_mapped_sends_and_frees_their_lists(build: Build) {
    for (resources, how, indirect) in modes() {
        let nic = start(build, resources, how, indirect);
        nic.net(|n, bus| n.set_stalled(bus, 1, true));
        for i in 0..4 {
            nic.emu.send(nic.adapter, &[&frame(i, 1514)]);
        }
        nic.emu.run_dpcs();
        // A surprise removal: the pause NDIS sends before halt completes what the gone device
        // held; halt finds no scatter/gather list.
        nic.emu.remove_device(nic.adapter);
        nic.emu.notify_surprise_removal(nic.adapter);
        nic.emu.run_dpcs();
        let _ = nic.emu.pause(nic.adapter);
        let done = completions(&nic, 4);
        assert_eq!(done.len(), 4, "{resources:?} {how:?} indirect {indirect}");
        assert!(done.iter().all(|(_, s)| *s != sys::NDIS_STATUS_SUCCESS));
        assert_eq!(nic.emu.sg_lists().2, 0);
        nic.emu
            .halt(nic.adapter, sys::NdisHaltDeviceSurpriseRemoved);
        nic.emu.unload();
        nic::assert_no_infallible_allocation(&nic.emu);
    }
}
}

both_builds! {
fn mapped_sends_are_counted_by_destination_in_the_statistics(build: Build) {
    for (resources, how, indirect) in modes() {
        let nic = start(build, resources, how, indirect);
        let with_destination = |dest: [u8; 6], seed: u8, len: usize| {
            let mut f = frame(seed, len);
            f[..6].copy_from_slice(&dest);
            f
        };
        let frames = [
            frame(1, 1514),
            frame(2, 1200),
            with_destination([0x01, 0x00, 0x5e, 0, 0, 1], 3, 1300),
            with_destination([0xff; 6], 4, 1100),
        ];
        for f in &frames {
            nic.emu.send(nic.adapter, &[f]);
        }
        let done = completions(&nic, frames.len());
        assert_eq!(done.len(), frames.len(), "{resources:?} {how:?} indirect {indirect}");
        assert!(done.iter().all(|(_, s)| *s == sys::NDIS_STATUS_SUCCESS));
        assert_eq!(nic.emu.sg_lists().0, frames.len() as u64, "all mapped");
        let s = nic
            .emu
            .oid_query(nic.adapter, sys::OID_GEN_STATISTICS, 152)
            .data;
        let field = |i: usize| u64::from_le_bytes(s[8 + 8 * i..16 + 8 * i].try_into().unwrap());
        let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
        assert_eq!(field(6), bytes, "{resources:?} {how:?} indirect {indirect}: ifHCOutOctets");
        assert_eq!(
            (field(7), field(8), field(9)),
            (2, 1, 1),
            "{resources:?} {how:?} indirect {indirect}: ifHCOut{{Ucast,Multicast,Broadcast}}Pkts"
        );
        nic.stop();
    }
}
}

both_builds! {
fn a_mapped_send_is_counted_once_whatever_path_it_takes(build: Build) {
    use etherparse::PacketBuilder;
    use ndis_emu::{FaultPlan, SendChecksum};
    // A frame to a group address whose IPv4 header checksum the driver rewrites: mapped, its
    // headers copied and the payload read in place.
    let mut rewritten = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [0x01, 0x00, 0x5e, 0, 0, 5])
        .ipv4([10, 0, 0, 1], [239, 0, 0, 5], 64)
        .udp(4000, 5000)
        .write(&mut rewritten, &[7u8; 1200])
        .unwrap();
    let plain = frame(9, 1400);
    for fail_mapping in [false, true] {
        // The second run: NDIS cannot map the first frame, which is copied instead.
        let mut cfg = config(4);
        if fail_mapping {
            cfg.faults = FaultPlan {
                by_name: vec![("NdisMAllocateNetBufferSGList".into(), Some(1))],
                ..FaultPlan::default()
            };
        }
        let nic = start_with(build, Emulator::new(cfg), 1, InterruptResources::msix(4), |_| {})
            .expect("initialize");
        nic.emu.send(nic.adapter, &[&plain]);
        nic.emu.send_checksummed(
            nic.adapter,
            &[&rewritten],
            SendChecksum {
                ip_header: true,
                transport: false,
            },
        );
        let done = completions(&nic, 2);
        assert_eq!(done.len(), 2, "fail_mapping {fail_mapping}");
        assert!(done.iter().all(|(_, s)| *s == sys::NDIS_STATUS_SUCCESS));
        let mapped = if fail_mapping { 1 } else { 2 };
        assert_eq!(nic.emu.sg_lists().0, mapped, "fail_mapping {fail_mapping}");
        let s = nic
            .emu
            .oid_query(nic.adapter, sys::OID_GEN_STATISTICS, 152)
            .data;
        let field = |i: usize| u64::from_le_bytes(s[8 + 8 * i..16 + 8 * i].try_into().unwrap());
        let bytes = (plain.len() + rewritten.len()) as u64;
        assert_eq!(field(6), bytes, "fail_mapping {fail_mapping}: ifHCOutOctets");
        assert_eq!(
            (field(7), field(8), field(9)),
            (1, 1, 0),
            "fail_mapping {fail_mapping}: ifHCOut{{Ucast,Multicast,Broadcast}}Pkts"
        );
        nic.stop();
    }
}
}

both_builds! {
/// Backpressure with mapped sends: a stalled device fills the ring (a mapped frame takes one
/// entry with indirect tables, two without: header and element; a copied frame one); the lists
/// that find no room are held (none fails), and once the device drains the ring they go out in
/// the order they were sent, byte-exact, every scatter/gather list freed and nothing leaked.
fn mapped_sends_that_find_the_ring_full_are_held_and_sent_in_order(build: Build) {
    const RING: usize = 256;
    for (resources, how, indirect) in modes() {
        let nic = start(build, resources, how, indirect);
        nic.net(|n, bus| n.set_stalled(bus, 1, true));
        // Every sixth list a copied 64-byte frame, the others mapped: 300 ring entries' worth
        // with indirect tables, 550 without, for a ring of 256; far fewer wait than
        // `vionet::TX_BACKLOG`.
        let count = 300;
        let copied = |i: usize| i % 6 == 5;
        let frames: Vec<Vec<u8>> = (0..count)
            .map(|i| {
                let len = if copied(i) { 64 } else { 1514 - i % 5 };
                frame(i as u8, len)
            })
            .collect();
        // The lists the ring takes: the longest prefix that fits (a list that does not waits,
        // and every later one behind it).
        let entries = |i: usize| if copied(i) || indirect { 1 } else { 2 };
        let mut used = 0;
        let taken = (0..count)
            .take_while(|&i| {
                used += entries(i);
                used <= RING
            })
            .count();
        assert!(taken < count);
        let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        nic.emu.send(nic.adapter, &refs);
        nic.emu.run_dpcs();
        // Only copied frames the ring took are complete: a mapped one waits for the device,
        // a held one for room.
        let early = nic.emu.send_completions();
        assert!(
            early
                .iter()
                .all(|(f, s)| *s == sys::NDIS_STATUS_SUCCESS && f.len() == 64),
            "{resources:?} {how:?} indirect {indirect}: a list failed or a mapped send completed early: {:?}",
            early.iter().map(|(f, s)| (f.len(), f[6], *s)).collect::<Vec<_>>()
        );
        let expected: Vec<&Vec<u8>> = (0..taken).filter(|&i| copied(i)).map(|i| &frames[i]).collect();
        assert!(
            early.iter().map(|(f, _)| f).eq(expected.iter().copied()),
            "{resources:?} {how:?} indirect {indirect}: {} copied frames completed, {} of them on the ring (the first {taken} lists)",
            early.len(),
            expected.len()
        );
        nic.net(|n, bus| n.set_stalled(bus, 1, false));
        let mut done = early;
        done.extend(completions(&nic, frames.len() - done.len()));
        assert_eq!(done.len(), frames.len(), "{resources:?} {how:?} indirect {indirect}");
        assert!(
            done.iter().all(|(_, s)| *s == sys::NDIS_STATUS_SUCCESS),
            "{resources:?} {how:?} indirect {indirect}: a list failed"
        );
        let seen = nic.net(|n, _| n.take_transmitted(0));
        assert!(
            seen == frames,
            "{resources:?} {how:?} indirect {indirect}: {} frames on the wire, in order and byte-exact: {}",
            seen.len(),
            seen.len() == frames.len() && seen.iter().zip(&frames).all(|(a, b)| a == b)
        );
        let mapped = (0..count).filter(|&i| !copied(i)).count() as u64;
        let (made, freed, live) = nic.emu.sg_lists();
        assert_eq!(
            (made, freed, live),
            (mapped, mapped, 0),
            "{resources:?} {how:?} indirect {indirect}"
        );
        nic.stop();
    }
}
}

both_builds! {
/// Rings of every small size initialize and send whether or not the device offers indirect
/// tables: with one entry a ring has no room for a table's chain (nor for a header and an
/// element), so its frames are copied; with two and more a mapped frame takes one entry (with
/// tables) or two.
fn small_rings_send_with_and_without_indirect_tables(build: Build) {
    for queue_size in [1u16, 2, 4, 16] {
        for indirect in [true, false] {
            let nic = start_with(
                build,
                Emulator::new(config(4)),
                1,
                InterruptResources::msix(4),
                |c| {
                    c.queue_size = queue_size;
                    if !indirect {
                        c.features &= !feature::RING_INDIRECT_DESC;
                    }
                },
            )
            .unwrap_or_else(|s| panic!("ring of {queue_size}, indirect {indirect}: {s:#x}"));
            let frames: Vec<Vec<u8>> = (0..8)
                .map(|i| frame(i as u8, if i % 2 == 0 { 1514 } else { 64 }))
                .collect();
            for f in &frames {
                nic.emu.send(nic.adapter, &[f]);
            }
            let done = completions(&nic, frames.len());
            assert_eq!(done.len(), frames.len(), "ring of {queue_size}, indirect {indirect}");
            assert!(done.iter().all(|(_, s)| *s == sys::NDIS_STATUS_SUCCESS));
            let seen = nic.net(|n, _| n.take_transmitted(0));
            assert_eq!(seen, frames, "ring of {queue_size}, indirect {indirect}");
            let (made, freed, live) = nic.emu.sg_lists();
            assert_eq!((freed, live), (made, 0));
            assert_eq!(nic.net(|n, _| n.device_error().map(String::from)), None);
            nic.stop();
        }
    }
}
}
