//! The reference driver, compiled for the host, run on the emulator against the virtio-net device
//! model: the same code as the kernel image, its NDIS calls answered by ndis-emu and its register
//! and DMA accesses by the device model.
#![cfg(not(windows))]

use ndis_emu::devices::virtio_net::regs::feature;
use ndis_emu::devices::virtio_net::{DEFAULT_FEATURES, VectorRefusal, VirtioNet, VirtioNetConfig};
use ndis_emu::{Config, DeviceId, Emulator, InterruptResources, sweep_fallible_calls};
use ndis_sys as sys;

/// Counts the driver's heap allocations so unload can find leaks (see ndis_emu::DriverHeap).
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

#[macro_use]
#[path = "support/nic.rs"]
mod nic;

use nic::{
    Build, MAC, Nic, check_tx, check_tx_in_pieces, config, frame, start, start_with, tagged,
};

/// Injects frames on each pair and checks the driver indicated them byte-exact.
fn check_rx(nic: &Nic, pairs: u16, per_pair: usize) {
    let frames: Vec<(u16, Vec<u8>)> = (0..pairs)
        .flat_map(|p| {
            (0..per_pair)
                .map(move |i| (p, frame((p as usize * 100 + i) as u8, 60 + (17 * i) % 1455)))
        })
        .collect();
    nic.check_rx_on(&frames);
}

fn datapath(build: Build, pairs: u16, resources: InterruptResources, expect_pairs: u16) {
    let nic = start(build, pairs, resources);
    assert_eq!(nic.net(|n, _| n.active_queue_pairs()), expect_pairs);
    let frames: Vec<Vec<u8>> = (0..50).map(|i| frame(i, 60 + i as usize * 29)).collect();
    check_tx(&nic, &frames);
    check_rx(&nic, expect_pairs, 20);
    // Many more than a ring holds: buffers come back from NDIS and are posted again.
    for round in 0..3 {
        check_rx(&nic, 1, 300 + round);
    }
    check_tx(
        &nic,
        &(0..600).map(|i| frame(i as u8, 64)).collect::<Vec<_>>(),
    );
    nic.stop();
}

both_builds! {
fn receives_returned_from_inside_the_indication_are_reposted_once(build: Build) {
    for (pairs, resources) in [
        (1, InterruptResources::msix(4)),
        (4, InterruptResources::msix(10)),
        (1, InterruptResources::line()),
    ] {
        let nic = start(build, pairs, resources);
        nic.emu.set_returns_during_indication(true);
        // More frames than the ring holds arrive at once; all get through without the test
        // returning anything: the buffers came back during the DPC's own indications.
        let burst: Vec<Vec<u8>> = (0..300).map(|i| frame(i as u8, 64 + i % 50)).collect();
        nic.net(|n, bus| {
            for f in &burst {
                n.inject_frame(bus, 0, f);
            }
        });
        nic.emu.run_dpcs();
        let mut got = nic.emu.received_frames(nic.adapter);
        assert_eq!(nic.emu.held_receives(nic.adapter), 0);
        got.sort();
        let mut expected = burst.clone();
        expected.sort();
        assert!(got == expected, "frames lost or corrupted");
        // Every buffer is posted again exactly once (a buffer posted twice would take two
        // frames and corrupt one).
        for round in 0..3 {
            check_rx(&nic, pairs, 300 + round);
        }
        assert_eq!(nic.emu.held_receives(nic.adapter), 0);
        check_tx(&nic, &(0..40).map(|i| frame(i, 64)).collect::<Vec<_>>());
        // Pause finds nothing lent (it would pend otherwise).
        nic.stop();
    }
}
}

both_builds! {
fn the_emulator_knows_where_each_live_block_was_allocated(build: Build) {
    // What a leak report would say of each block the running driver holds: on the host the
    // driver's own functions, on the shipped image the image's call into the export, as
    // image+offset. Only live blocks are named. The host build's driver heap is not pool, and
    // the running host driver holds no pool or NDIS memory (the one site this test used to see
    // there was the resource requirements list the framework's filter allocated and PnP
    // freed); the image's heap is pool.
    let nic = start(build, 1, InterruptResources::msix(4));
    let sites = nic.emu.allocation_sites();
    let live: Vec<usize> = nic.emu.allocations().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        sites.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        {
            let mut l = live.clone();
            l.sort();
            l
        },
        "one site per live block"
    );
    if build == Build::Image {
        assert!(!sites.is_empty(), "the running image holds pool (its heap)");
    }
    for (at, site) in &sites {
        assert!(site != "unknown", "{at:#x}: no site");
        assert!(!site.contains("ndis_emu::"), "{at:#x}: {site}");
        match build {
            Build::Host => assert!(
                site.contains("vionet::") || site.contains("ndis::"),
                "{at:#x}: {site}"
            ),
            Build::Image => assert!(site.contains("+0x"), "{at:#x}: {site}"),
        }
    }
    nic.stop();
}
}

fn refs(frames: &[Vec<u8>]) -> Vec<&[u8]> {
    frames.iter().map(|f| f.as_slice()).collect()
}

both_builds! {
fn a_list_of_several_frames_goes_out_whole_or_not_at_all(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    let out_ucast = |nic: &Nic| {
        let s = nic
            .emu
            .oid_query(nic.adapter, sys::OID_GEN_STATISTICS, 152)
            .data;
        u64::from_le_bytes(s[8 + 8 * 7..16 + 8 * 7].try_into().unwrap()) // ifHCOutUcastPkts
    };
    let a: Vec<Vec<u8>> = (0..3).map(|i| frame(i, 60 + 100 * i as usize)).collect();
    let b = vec![frame(10, 64), frame(11, 1519), frame(12, 64)]; // one frame too long
    let c = vec![frame(20, 1514)];
    let (ra, rb, rc) = (refs(&a), refs(&b), refs(&c));
    nic.emu.send_lists(nic.adapter, &[&ra, &rb, &rc]);
    // Completion order across lists is not fixed: `c` (1514 bytes) is mapped and completes
    // when the device is done with it, in its own completion call.
    let mut statuses = nic.emu.send_statuses();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            sys::NDIS_STATUS_INVALID_LENGTH,
            sys::NDIS_STATUS_SUCCESS,
            sys::NDIS_STATUS_SUCCESS
        ]
    );
    // Every frame of the good lists, in order; nothing of the refused one.
    let seen = nic.net(|n, _| n.take_transmitted(0));
    assert!(
        seen == [a.clone(), c.clone()].concat(),
        "frames the device saw"
    );
    assert_eq!(out_ucast(&nic), 4, "frames of the lists that went out");

    // A list larger than the whole ring is refused whole too (NDIS_STATUS_RESOURCES), and
    // takes no buffer with it.
    let big: Vec<Vec<u8>> = (0..300).map(|i| frame(i as u8, 64)).collect();
    let rbig = refs(&big);
    nic.emu.send_lists(nic.adapter, &[&rbig]);
    assert_eq!(nic.emu.send_statuses(), [sys::NDIS_STATUS_RESOURCES]);
    assert!(nic.net(|n, _| n.take_transmitted(0)).is_empty());
    check_tx(&nic, &big[..200]);
    nic.stop();
}
}

both_builds! {
fn frames_spread_over_several_mdls_are_sent_byte_exact(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    let mut frames: Vec<Vec<u8>> = [14, 15, 60, 64, 333, 1514]
        .iter()
        .enumerate()
        .map(|(i, &len)| frame(i as u8, len))
        .collect();
    // A frame the stack tagged itself may exceed the MTU by its tag.
    frames.push(tagged(&frame(9, 1514), 7));
    for piece in [1, 7, 64, 1000] {
        check_tx_in_pieces(&nic, &frames, piece);
    }
    nic.stop();
}
}

both_builds! {
fn an_oversized_frame_is_refused_without_losing_a_transmit_buffer(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    // More refusals than the ring has buffers, contiguous and in pieces.
    let oversized = frame(9, 1519);
    let refs = vec![oversized.as_slice(); 300];
    for piece in [usize::MAX, 100] {
        nic.emu.send_fragmented(nic.adapter, &refs, piece);
        let c = nic.emu.send_completions();
        assert_eq!(c.len(), refs.len());
        assert!(c.iter().all(|(_, s)| *s == sys::NDIS_STATUS_INVALID_LENGTH));
        assert!(nic.net(|n, _| n.take_transmitted(0)).is_empty());
    }
    // Every transmit buffer is still there: more frames than the ring holds all go through.
    for round in 0..3u8 {
        check_tx(
            &nic,
            &(0..200)
                .map(|i| frame(i as u8 ^ round, 64))
                .collect::<Vec<_>>(),
        );
    }
    nic.stop();
}
}

both_builds! {
fn msix_one_message_per_queue_with_one_pair(build: Build) {
    datapath(build, 1, InterruptResources::msix(4), 1);
}
}

both_builds! {
fn msix_one_message_per_queue_with_four_pairs(build: Build) {
    datapath(build, 4, InterruptResources::msix(10), 4);
}
}

both_builds! {
fn msix_two_messages_shared_by_the_queues(build: Build) {
    datapath(
        build,
        4,
        InterruptResources::MsiX {
            requested: 10,
            granted: 2,
        },
        1,
    );
}
}

both_builds! {
fn msix_a_single_message(build: Build) {
    datapath(
        build,
        4,
        InterruptResources::MsiX {
            requested: 10,
            granted: 1,
        },
        1,
    );
}
}

both_builds! {
fn line_based(build: Build) {
    datapath(build, 1, InterruptResources::line(), 1);
    datapath(build, 4, InterruptResources::line(), 1);
}
}

both_builds! {
fn every_message_reaches_its_queue_dpc(build: Build) {
    let nic = start(build, 4, InterruptResources::msix(10));
    for p in 0..4u16 {
        nic.net(|n, bus| n.inject_frame(bus, p, &frame(p as u8, 80)));
    }
    nic.emu.run_dpcs();
    assert_eq!(nic.emu.received_frames(nic.adapter).len(), 4);
    let (vectors, rx_vectors) = nic.net(|n, _| {
        let c = n.counters();
        (
            (0..4).map(|p| n.queue_vector(2 * p)).collect::<Vec<_>>(),
            c.message_interrupts.clone(),
        )
    });
    assert_eq!(vectors, vec![0, 2, 4, 6], "RX queue 2j on message 2j");
    for v in [0usize, 2, 4, 6] {
        assert!(
            rx_vectors.get(v).copied().unwrap_or(0) >= 1,
            "message {v}: {rx_vectors:?}"
        );
    }
    nic.stop();
}
}

both_builds! {
fn refused_vectors_fall_back_to_fewer_messages(build: Build) {
    // The device maps only vectors 0 and 1: the driver retries with two messages.
    let emu = Emulator::new(config(4));
    assert_eq!(nic::load(&emu, build), sys::STATUS_SUCCESS);
    let mut model = VirtioNet::new(VirtioNetConfig::new(4));
    model.refuse_vectors(VectorRefusal::AtOrAbove(2));
    let adapter = emu
        .add_adapter_with(InterruptResources::msix(10), Box::new(model))
        .expect("initialize with two vectors");
    let device = emu.device_of(adapter);
    assert_eq!(emu.restart(adapter), sys::NDIS_STATUS_SUCCESS);
    let nic = Nic {
        emu,
        adapter,
        device,
        device_pairs: 4,
    };
    assert_eq!(
        nic.net(|n, _| (n.queue_vector(0), n.queue_vector(1))),
        (0, 1)
    );
    check_tx(&nic, &[frame(1, 100)]);
    check_rx(&nic, 1, 5);
    nic.stop();
    // Every vector refused: a clean failure, nothing leaked.
    let emu = Emulator::new(config(4));
    assert_eq!(nic::load(&emu, build), sys::STATUS_SUCCESS);
    let mut model = VirtioNet::new(VirtioNetConfig::new(1));
    model.refuse_vectors(VectorRefusal::All);
    assert_eq!(
        emu.add_adapter_with(InterruptResources::msix(4), Box::new(model)),
        Err(sys::NDIS_STATUS_RESOURCE_CONFLICT)
    );
    emu.unload();
    nic::assert_no_infallible_allocation(&emu);
}
}

both_builds! {
fn link_changes_are_indicated(build: Build) {
    for resources in [InterruptResources::msix(4), InterruptResources::line()] {
        let nic = start(build, 1, resources);
        nic.net(|n, bus| n.set_link(bus, false));
        nic.emu.run_dpcs();
        assert_eq!(
            nic.emu.link_state(nic.adapter).map(|l| l.connected),
            Some(false)
        );
        nic.net(|n, bus| n.set_link(bus, true));
        nic.emu.run_dpcs();
        assert_eq!(
            nic.emu.link_state(nic.adapter).map(|l| l.connected),
            Some(true)
        );
        nic.stop();
    }
}
}

both_builds! {
fn a_device_that_needs_reset_is_dropped_and_reported_as_link_down(build: Build) {
    for resources in [InterruptResources::msix(4), InterruptResources::line()] {
        let nic = start(build, 1, resources);
        check_tx(&nic, &[frame(1, 64)]);
        nic.net(|n, bus| n.fail_device(bus, "internal error (test)"));
        nic.emu.run_dpcs();
        assert_eq!(
            nic.emu.link_state(nic.adapter).map(|l| l.connected),
            Some(false)
        );
        // Not touched again: sends fail, nothing reaches the device.
        nic.emu.send(nic.adapter, &[&frame(2, 64)]);
        assert_ne!(nic.emu.send_completions()[0].1, sys::NDIS_STATUS_SUCCESS);
        assert!(nic.net(|n, _| n.take_transmitted(0)).is_empty());
        nic.stop();
    }
}
}

both_builds! {
fn packet_filter_and_multicast_list_reach_the_device_through_the_control_queue(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    let filter = |f: u32| {
        nic.emu.oid_set(
            nic.adapter,
            sys::OID_GEN_CURRENT_PACKET_FILTER,
            &f.to_le_bytes(),
        )
    };
    let directed = sys::NDIS_PACKET_TYPE_DIRECTED | sys::NDIS_PACKET_TYPE_BROADCAST;
    assert_eq!(
        filter(directed | sys::NDIS_PACKET_TYPE_PROMISCUOUS).status,
        sys::NDIS_STATUS_SUCCESS
    );
    assert_eq!(
        nic.net(|n, _| (n.promiscuous(), n.all_multicast())),
        (true, false)
    );
    assert_eq!(
        filter(directed | sys::NDIS_PACKET_TYPE_ALL_MULTICAST).status,
        sys::NDIS_STATUS_SUCCESS
    );
    assert_eq!(
        nic.net(|n, _| (n.promiscuous(), n.all_multicast())),
        (false, true)
    );

    let groups = [[0x01, 0x00, 0x5E, 0, 0, 1], [0x33, 0x33, 0, 0, 0, 0x0C]];
    let r = nic
        .emu
        .oid_set(nic.adapter, sys::OID_802_3_MULTICAST_LIST, &groups.concat());
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    let table = nic.net(|n, _| (n.mac_table().0.to_vec(), n.mac_table().1.to_vec()));
    assert_eq!(table, (vec![], groups.to_vec()));
    let r = nic
        .emu
        .oid_set(nic.adapter, sys::OID_802_3_MULTICAST_LIST, &[]);
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    assert!(nic.net(|n, _| n.mac_table().1.is_empty()));
    // The largest list the framework takes (32) is the largest command; one more is refused
    // before it reaches the driver.
    let full: Vec<[u8; 6]> = (0..32u8).map(|i| [0x01, 0x00, 0x5E, 0, 0, i]).collect();
    let r = nic
        .emu
        .oid_set(nic.adapter, sys::OID_802_3_MULTICAST_LIST, &full.concat());
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    assert_eq!(nic.net(|n, _| n.mac_table().1.to_vec()), full);
    let over = [full.concat(), vec![0x01, 0x00, 0x5E, 0, 0, 99]].concat();
    let r = nic
        .emu
        .oid_set(nic.adapter, sys::OID_802_3_MULTICAST_LIST, &over);
    assert_eq!(r.status, sys::NDIS_STATUS_MULTICAST_FULL);
    assert_eq!(nic.net(|n, _| n.mac_table().1.len()), 32);
    // Every command was accepted, and the datapath still works.
    assert!(nic.net(|n, _| n.control_log().iter().all(|c| c.ack == 0)));
    check_tx(&nic, &[frame(1, 64)]);
    nic.stop();
}
}

both_builds! {
fn a_control_command_the_device_never_answers_pends_its_oid_until_ndis_cancels_it(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    let control_queue = 2; // after RX 0 and TX 1
    // Commands before (TCP/IP's packet filter at bind).
    let before = nic.net(|n, _| n.control_log().len());
    nic.net(|n, bus| n.set_stalled(bus, control_queue, true));
    let promiscuous = sys::NDIS_PACKET_TYPE_PROMISCUOUS.to_le_bytes();
    let set = || {
        nic.emu.oid_set(
            nic.adapter,
            sys::OID_GEN_CURRENT_PACKET_FILTER,
            &promiscuous,
        )
    };
    // The handler does not wait for the device (no busy-wait in MiniportOidRequest): the
    // request is pended...
    assert_eq!(set().status, sys::NDIS_STATUS_PENDING);
    assert!(nic.emu.oid_completion().is_none());
    // ...until NDIS gives up on it (its Timeout): cancelled, it completes as aborted.
    nic.emu.cancel_oid();
    let aborted = nic.emu.oid_completion().expect("completed on cancel");
    assert_eq!(aborted.status, sys::NDIS_STATUS_REQUEST_ABORTED);
    // A set while that command is still on the queue is best effort: it succeeds without a
    // command of its own (the filter NDIS set stands).
    assert_eq!(set().status, sys::NDIS_STATUS_SUCCESS);
    // The device wakes and answers the old command: taken for that one (only one is ever in
    // flight), and the cancelled request's second command is not sent.
    nic.net(|n, bus| n.set_stalled(bus, control_queue, false));
    nic.emu.run_dpcs();
    let commands = nic.net(|n, _| n.control_log().len());
    assert_eq!(
        commands,
        before + 1,
        "only the stalled command reached the device"
    );
    // The queue works again: the next set sends both commands and completes.
    let r = set();
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    assert_eq!(nic.net(|n, _| n.control_log().len()), commands + 2);
    // The datapath is unaffected.
    check_tx(&nic, &[frame(3, 64)]);
    nic.stop();
}
}

both_builds! {
fn a_device_that_refuses_every_control_command_still_runs(build: Build) {
    // Refusing from the start: the device keeps to one pair, the permanent address stays
    // current, and the receive filter still stands.
    let emu = Emulator::new(config(4));
    emu.set_keyword("NetworkAddress", "02AABBCCDDEE");
    assert_eq!(nic::load(&emu, build), sys::STATUS_SUCCESS);
    let mut net = VirtioNet::new(VirtioNetConfig::new(4));
    net.refuse_control_commands(true);
    let adapter = emu
        .add_adapter_with(InterruptResources::msix(10), Box::new(net))
        .expect("initialize");
    assert_eq!(emu.restart(adapter), sys::NDIS_STATUS_SUCCESS);
    let nic = Nic {
        device: emu.device_of(adapter),
        emu,
        adapter,
        device_pairs: 4,
    };
    assert_eq!(nic.net(|n, _| n.active_queue_pairs()), 1);
    let current = nic
        .emu
        .oid_query(nic.adapter, sys::OID_802_3_CURRENT_ADDRESS, 6)
        .data;
    assert_eq!(current, MAC);
    let f = (sys::NDIS_PACKET_TYPE_DIRECTED | sys::NDIS_PACKET_TYPE_ALL_MULTICAST).to_le_bytes();
    let r = nic
        .emu
        .oid_set(nic.adapter, sys::OID_GEN_CURRENT_PACKET_FILTER, &f);
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    assert!(!nic.net(|n, _| n.all_multicast()), "refused, so unchanged");
    assert!(nic.net(|n, _| n.control_log().iter().all(|c| c.ack != 0)));
    // Sends from every processor go to the one pair the device uses.
    check_tx(&nic, &(0..40).map(|i| frame(i, 64)).collect::<Vec<_>>());
    check_rx(&nic, 1, 20);
    nic.stop();
}
}

both_builds! {
fn the_mac_comes_from_the_device_configuration(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    assert_ne!(nic.net(|n, _| n.negotiated_features()) & feature::MAC, 0);
    let r = nic
        .emu
        .oid_query(nic.adapter, sys::OID_802_3_PERMANENT_ADDRESS, 6);
    assert_eq!(r.data, MAC);
    assert_eq!(
        nic.net(|n, _| n.mac_address_set()),
        None,
        "the device's own address needs no MAC_ADDR_SET"
    );
    nic.stop();
}
}

both_builds! {
/// virtio 1.2, 5.1.4.2: without VIRTIO_NET_F_MAC the configuration's `mac` is not the
/// adapter's (the model still shows [`MAC`] there); the driver makes up a locally administered
/// unicast address, a different one per adapter, and tells the device when it can.
fn without_f_mac_each_adapter_gets_its_own_random_locally_administered_address(build: Build) {
    for ctrl_mac_addr in [true, false] {
        let emu = Emulator::new(config(2));
        assert_eq!(nic::load(&emu, build), sys::STATUS_SUCCESS);
        let mut features = DEFAULT_FEATURES & !feature::MAC;
        if !ctrl_mac_addr {
            features &= !feature::CTRL_MAC_ADDR;
        }
        let adapters: Vec<_> = (0..2)
            .map(|_| {
                let mut cfg = VirtioNetConfig::new(1);
                cfg.features = features;
                let a = emu
                    .add_adapter_with(InterruptResources::msix(4), Box::new(VirtioNet::new(cfg)))
                    .expect("initialize");
                assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
                a
            })
            .collect();
        let mut permanent = Vec::new();
        for &a in &adapters {
            let dev = emu.device_of(a);
            let net = |f: &dyn Fn(&VirtioNet) -> Option<[u8; 6]>| {
                emu.with_device::<VirtioNet, _>(dev, |n, _| f(n))
            };
            assert_eq!(
                emu.with_device::<VirtioNet, _>(dev, |n, _| n.negotiated_features()) & feature::MAC,
                0
            );
            let mac = emu.oid_query(a, sys::OID_802_3_PERMANENT_ADDRESS, 6).data;
            let current = emu.oid_query(a, sys::OID_802_3_CURRENT_ADDRESS, 6).data;
            assert_eq!(current, mac);
            assert_ne!(
                mac, MAC,
                "the configuration's mac is not valid without F_MAC"
            );
            assert_eq!(mac[0] & 0b10, 0b10, "locally administered: {mac:02x?}");
            assert_eq!(mac[0] & 0b01, 0, "unicast: {mac:02x?}");
            let told = net(&|n| n.mac_address_set());
            if ctrl_mac_addr {
                assert_eq!(told.map(|m| m.to_vec()), Some(mac.clone()));
            } else {
                assert_eq!(told, None);
            }
            permanent.push(mac);
        }
        assert_ne!(permanent[0], permanent[1], "one address per adapter");
        // The adapters work with their addresses.
        for &a in &adapters {
            emu.send(a, &[&frame(1, 64)]);
            assert_eq!(emu.send_statuses(), vec![sys::NDIS_STATUS_SUCCESS]);
        }
        for &a in &adapters {
            assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
            emu.halt(a, sys::NdisHaltDeviceDisabled);
        }
        emu.unload();
        nic::assert_no_infallible_allocation(&emu);
    }
}
}

both_builds! {
/// virtio 1.2, 3.1.1: the driver MUST NOT notify the device before DRIVER_OK. Receive buffers are
/// made available during bring-up and each receive queue is notified once, after DRIVER_OK.
fn receive_queues_are_notified_once_after_driver_ok_and_never_before(build: Build) {
    let cases = [
        (1, InterruptResources::msix(4), DEFAULT_FEATURES),
        (4, InterruptResources::msix(10), DEFAULT_FEATURES),
        (4, InterruptResources::line(), DEFAULT_FEATURES),
        (
            2,
            InterruptResources::msix(6),
            DEFAULT_FEATURES & !feature::RING_EVENT_IDX,
        ),
    ];
    for (pairs, resources, features) in cases {
        let nic = start_with(build, Emulator::new(config(4)), pairs, resources, |c| {
            c.features = features
        })
        .expect("initialize");
        let what = format!("{pairs} pairs, {resources:?}, features {features:#x}");
        let (errors, early, notifications, active) = nic.net(|n, _| {
            (
                n.driver_errors().to_vec(),
                n.counters().early_notifications,
                n.counters().notifications.clone(),
                n.active_queue_pairs(),
            )
        });
        assert_eq!(errors, Vec::<String>::new(), "{what}");
        assert_eq!(early, 0, "{what}");
        for j in 0..active as usize {
            assert_eq!(notifications[2 * j], 1, "RX queue of pair {j}: {what}");
            assert_eq!(notifications[2 * j + 1], 0, "TX queue of pair {j}: {what}");
        }
        // The buffers are the device's: traffic flows on every pair.
        check_rx(&nic, active, 10);
        check_tx(&nic, &(0..20).map(|i| frame(i, 64)).collect::<Vec<_>>());
        nic.stop();
    }
}
}

both_builds! {
/// VIRTIO_F_ACCESS_PLATFORM (bit 33): NDIS shared-memory addresses are logical (bus)
/// addresses, what the feature means, so the driver accepts it when offered; the model, like a
/// device behind an IOMMU, does not let FEATURES_OK stick without it.
fn access_platform_is_negotiated_when_offered_and_not_needed_when_not(build: Build) {
    for offered in [true, false] {
        let nic = start_with(
            build,
            Emulator::new(config(2)),
            2,
            InterruptResources::msix(6),
            |c| {
                if offered {
                    c.features |= feature::ACCESS_PLATFORM;
                }
            },
        )
        .unwrap_or_else(|s| panic!("initialize with ACCESS_PLATFORM offered={offered}: {s:#x}"));
        let negotiated = nic.net(|n, _| n.negotiated_features());
        assert_eq!(
            negotiated & feature::ACCESS_PLATFORM != 0,
            offered,
            "{negotiated:#x}"
        );
        check_rx(&nic, 2, 10);
        check_tx(&nic, &(0..20).map(|i| frame(i, 64)).collect::<Vec<_>>());
        nic.stop();
    }
}
}

both_builds! {
/// virtio 1.2, 2.7.8: a device-readable chain is completed with a used length of 0, but some
/// devices report the bytes they read. The driver ignores the value instead of failing the
/// device: sends keep working, over many more frames than the ring holds (so completions are
/// reaped many times).
fn a_non_zero_used_length_on_transmit_chains_is_ignored(build: Build) {
    for (pairs, resources) in [
        (1, InterruptResources::msix(4)),
        (1, InterruptResources::line()),
    ] {
        let nic = start(build, pairs, resources);
        nic.net(|n, _| n.set_tx_used_length(1514));
        for round in 0..3 {
            check_tx(
                &nic,
                &(0..600)
                    .map(|i| frame(i as u8, 60 + round))
                    .collect::<Vec<_>>(),
            );
        }
        // The TX completion path of the DPC reaps the rest.
        match resources {
            InterruptResources::Line { .. } => nic.emu.fire_line(nic.device),
            _ => nic.emu.fire_message(nic.device, 1),
        };
        nic.emu.run_dpcs();
        check_tx(&nic, &[frame(9, 100)]);
        check_rx(&nic, 1, 20);
        assert_eq!(nic.net(|n, _| n.device_error().map(String::from)), None);
        assert_ne!(
            nic.emu.link_state(nic.adapter).map(|l| l.connected),
            Some(false),
            "the device was not given up"
        );
        nic.stop();
    }
}
}

both_builds! {
fn a_network_address_keyword_becomes_the_current_address_when_usable(build: Build) {
    let current = |value: Option<&str>, features: Option<u64>| {
        let emu = Emulator::new(config(2));
        if let Some(v) = value {
            emu.set_keyword("NetworkAddress", v);
        }
        let nic = start_with(build, emu, 1, InterruptResources::msix(4), |c| {
            if let Some(f) = features {
                c.features = f;
            }
        })
        .expect("initialize");
        let q = |oid| nic.emu.oid_query(nic.adapter, oid, 6).data;
        let seen = (
            q(sys::OID_802_3_PERMANENT_ADDRESS),
            q(sys::OID_802_3_CURRENT_ADDRESS),
            nic.net(|n, _| n.mac_address_set()),
        );
        nic.stop();
        seen
    };
    let local = [0x02, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE];
    assert_eq!(
        current(Some("02AABBCCDDEE"), None),
        (MAC.to_vec(), local.to_vec(), Some(local))
    );
    // Absent, multicast, all zero, too short, not hex: the permanent address stays current.
    for value in [
        None,
        Some("01AABBCCDDEE"),
        Some("000000000000"),
        Some("02AABB"),
        Some("zz"),
    ] {
        assert_eq!(
            current(value, None),
            (MAC.to_vec(), MAC.to_vec(), None),
            "{value:?}"
        );
    }
    // A device without CTRL_MAC_ADDR cannot receive on another address.
    let without = ndis_emu::devices::virtio_net::DEFAULT_FEATURES
        & !ndis_emu::devices::virtio_net::regs::feature::CTRL_MAC_ADDR;
    assert_eq!(
        current(Some("02AABBCCDDEE"), Some(without)),
        (MAC.to_vec(), MAC.to_vec(), None)
    );
}
}

both_builds! {
fn jumbo_frames_follow_the_keyword_within_the_device_mtu(build: Build) {
    // (keyword, device MTU) -> the MTU the adapter runs with.
    let run = |keyword: Option<&str>, device_mtu: u16| {
        let emu = Emulator::new(config(2));
        if let Some(k) = keyword {
            emu.set_keyword("*JumboPacket", k);
        }
        let nic = start_with(build, emu, 1, InterruptResources::msix(4), |c| c.mtu = device_mtu)
            .expect("initialize");
        let q = |oid| {
            let d = nic.emu.oid_query(nic.adapter, oid, 4).data;
            u32::from_le_bytes(d[..4].try_into().unwrap())
        };
        let mtu = q(sys::OID_GEN_MAXIMUM_FRAME_SIZE);
        assert_eq!(q(sys::OID_GEN_MAXIMUM_TOTAL_SIZE), mtu + 14);
        (nic, mtu)
    };
    for (keyword, device_mtu, expect) in [
        (None, 9000, 1500),
        (Some("9014"), 1500, 1500),
        (Some("4088"), 9000, 4074),
        (Some("20000"), 9000, 9000),
    ] {
        let (nic, mtu) = run(keyword, device_mtu);
        assert_eq!(mtu, expect, "{keyword:?} on a device with MTU {device_mtu}");
        nic.stop();
    }

    let (nic, mtu) = run(Some("9014"), 9000);
    assert_eq!(mtu, 9000);
    // Full-size jumbo frames both ways, byte-exact, and one tagged in band on send; one byte
    // more is refused.
    let frames = [frame(1, 9014), frame(3, 60), frame(4, 5000)];
    check_tx(&nic, &frames);
    check_tx(&nic, &[tagged(&frame(2, 9014), 9)]);
    nic.net(|n, bus| {
        for f in &frames {
            n.inject_frame(bus, 0, f);
        }
    });
    nic.emu.run_dpcs();
    let mut got = nic.emu.received_frames(nic.adapter);
    got.sort();
    let mut want = frames.to_vec();
    want.sort();
    assert!(got == want, "jumbo frames indicated byte-exact");
    nic.emu.return_receives(nic.adapter);
    for too_long in [frame(5, 9015), tagged(&frame(6, 9015), 9)] {
        nic.emu.send(nic.adapter, &[&too_long]);
        assert_eq!(
            nic.emu.send_completions()[0].1,
            sys::NDIS_STATUS_INVALID_LENGTH
        );
    }
    nic.stop();
}
}

both_builds! {
fn keywords_out_of_range_or_not_numbers_are_clamped_or_defaulted_as_their_constants_say(build: Build) {
    // (receive buffers, transmit buffers, the 802.1p/802.1Q MAC options) the adapter reports.
    let (p, q) = (
        sys::NDIS_MAC_OPTION_8021P_PRIORITY,
        sys::NDIS_MAC_OPTION_8021Q_VLAN,
    );
    let run = |keywords: &[(&str, &str)]| {
        let emu = Emulator::new(config(2));
        for (k, v) in keywords {
            emu.set_keyword(k, v);
        }
        let nic = start_with(build, emu, 1, InterruptResources::msix(4), |_| {}).expect("initialize");
        let query = |oid| {
            let d = nic.emu.oid_query(nic.adapter, oid, 4).data;
            u32::from_le_bytes(d[..4].try_into().unwrap())
        };
        // 2 KiB per buffer for standard frames.
        let got = (
            query(sys::OID_GEN_RECEIVE_BUFFER_SPACE) / 2048,
            query(sys::OID_GEN_TRANSMIT_BUFFER_SPACE) / 2048,
            query(sys::OID_GEN_MAC_OPTIONS) & (p | q),
        );
        nic.stop();
        got
    };
    assert_eq!(run(&[]), (256, 256, p | q));
    assert_eq!(
        run(&[
            ("*ReceiveBuffers", "5000"),
            ("*TransmitBuffers", "1"),
            ("*PriorityVLANTag", "7"),
        ]),
        (1024, 64, p | q)
    );
    assert_eq!(
        run(&[
            ("*ReceiveBuffers", "many"),
            ("*TransmitBuffers", "128"),
            ("*PriorityVLANTag", "1"),
        ]),
        (256, 128, p)
    );
}
}

both_builds! {
fn receive_buffers_hold_the_device_mtu_even_when_the_adapter_uses_less(build: Build) {
    // The device may send 9000-byte packets (virtio requires buffers for them); the adapter
    // runs at 1500 and discards what is longer, without the device failing.
    let nic = start_with(
        build,
        Emulator::new(config(2)),
        1,
        InterruptResources::msix(4),
        |c| c.mtu = 9000,
    )
    .expect("initialize");
    let q = nic
        .emu
        .oid_query(nic.adapter, sys::OID_GEN_MAXIMUM_FRAME_SIZE, 4)
        .data;
    assert_eq!(q, 1500u32.to_le_bytes());
    let (big, fits) = (frame(1, 9014), frame(2, 1514));
    nic.net(|n, bus| {
        n.inject_frame(bus, 0, &big);
        n.inject_frame(bus, 0, &fits);
    });
    nic.emu.run_dpcs();
    assert_eq!(nic.emu.received_frames(nic.adapter), [fits]);
    assert_eq!(
        nic.net(|n, _| n.counters().rx_dropped),
        0,
        "the device had room"
    );
    assert!(nic.net(|n, _| n.device_error().is_none()));
    let s = nic
        .emu
        .oid_query(nic.adapter, sys::OID_GEN_STATISTICS, 152)
        .data;
    assert_eq!(s[8..16], 1u64.to_le_bytes(), "ifInDiscards");
    nic.stop();
}
}

both_builds! {
fn every_supported_oid_survives_every_buffer_length_and_garbage_sets(build: Build) {
    let nic = start(build, 2, InterruptResources::msix(6));
    let list = nic
        .emu
        .oid_query(nic.adapter, sys::OID_GEN_SUPPORTED_LIST, 4096);
    assert_eq!(list.status, sys::NDIS_STATUS_SUCCESS);
    let oids: Vec<u32> = list
        .data
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(oids.len() > 20, "{} OIDs", oids.len());
    let short = [
        sys::NDIS_STATUS_INVALID_LENGTH,
        sys::NDIS_STATUS_BUFFER_TOO_SHORT,
    ];
    for &oid in &oids {
        // The full answer, then every shorter buffer: a clean "too short" with the size needed,
        // never a partial answer.
        let full = nic.emu.oid_query(nic.adapter, oid, 4096);
        if full.status != sys::NDIS_STATUS_SUCCESS {
            continue; // a set-only OID
        }
        let needed = full.data.len();
        for len in 0..needed {
            let r = nic.emu.oid_query(nic.adapter, oid, len);
            if needed == 8 && len >= 4 && r.status == sys::NDIS_STATUS_SUCCESS {
                // A 64-bit counter answers a 4-byte buffer with its low 32 bits.
                assert_eq!(r.data, full.data[..4], "OID {oid:#010x}, {len} bytes");
                continue;
            }
            assert!(
                short.contains(&r.status) && r.bytes_needed as usize == needed && r.data.is_empty(),
                "OID {oid:#010x} with {len} of {needed} bytes: {:#x}, needs {}, wrote {}",
                r.status,
                r.bytes_needed,
                r.data.len()
            );
        }
        for len in [needed, needed + 1, needed + 64] {
            let r = nic.emu.oid_query(nic.adapter, oid, len);
            assert_eq!(
                r.status,
                sys::NDIS_STATUS_SUCCESS,
                "OID {oid:#010x}, {len} bytes"
            );
            assert_eq!(r.data.len(), needed, "OID {oid:#010x}, {len} bytes");
        }
    }
    // Sets of garbage of every small length: an answer each, never a bug check or a pending
    // request, and never more read than given.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut garbage = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    for &oid in &oids {
        for len in [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 18, 64, 200] {
            let data = garbage(len);
            let r = nic.emu.oid_set(nic.adapter, oid, &data);
            assert_ne!(r.status, sys::NDIS_STATUS_PENDING, "OID {oid:#010x}");
            if r.status == sys::NDIS_STATUS_SUCCESS {
                assert!(
                    r.bytes_read as usize <= len,
                    "OID {oid:#010x}: read {}",
                    r.bytes_read
                );
            }
        }
    }
    // A sane filter again; the adapter still moves frames both ways.
    let directed = sys::NDIS_PACKET_TYPE_DIRECTED | sys::NDIS_PACKET_TYPE_BROADCAST;
    let r = nic.emu.oid_set(
        nic.adapter,
        sys::OID_GEN_CURRENT_PACKET_FILTER,
        &directed.to_le_bytes(),
    );
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    check_tx(&nic, &(0..20).map(|i| frame(i, 64)).collect::<Vec<_>>());
    check_rx(&nic, 2, 20);
    nic.stop();
}
}

both_builds! {
fn vlan_tags_are_inserted_on_send_stripped_on_receive_and_filtered(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    let options = nic
        .emu
        .oid_query(nic.adapter, sys::OID_GEN_MAC_OPTIONS, 4)
        .data;
    let options = u32::from_le_bytes(options[..4].try_into().unwrap());
    let both = sys::NDIS_MAC_OPTION_8021P_PRIORITY | sys::NDIS_MAC_OPTION_8021Q_VLAN;
    assert_eq!(options & both, both, "*PriorityVLANTag defaults to both");
    let sent = |nic: &Nic| nic.net(|n, _| n.take_transmitted(0));
    let f = frame(1, 100);

    // Send: the list's priority and VLAN become a tag; a list without them stays untagged.
    nic.emu.send_tagged(nic.adapter, &[&f], 5, 100);
    assert_eq!(nic.emu.send_statuses(), [sys::NDIS_STATUS_SUCCESS]);
    assert_eq!(sent(&nic), [tagged(&f, (5 << 13) | 100)]);
    nic.emu.send(nic.adapter, &[&f]);
    nic.emu.send_statuses();
    assert_eq!(sent(&nic), std::slice::from_ref(&f));

    // Receive: the tag is stripped into the list's 802.1Q information.
    let receive =
        |nic: &Nic, frames: &[Vec<u8>]| nic.receive(frames, Emulator::received_frames_8021q);
    assert_eq!(
        receive(&nic, &[tagged(&f, (3 << 13) | 100), f.clone()]),
        [(f.clone(), Some((3, 100))), (f.clone(), None)]
    );

    // With a VLAN set: other VLANs' frames are dropped, priority-only and untagged ones kept,
    // and sends without a VLAN of their own carry the adapter's.
    let set = |v: u32| {
        nic.emu
            .oid_set(nic.adapter, sys::OID_GEN_VLAN_ID, &v.to_le_bytes())
            .status
    };
    assert_eq!(set(100), sys::NDIS_STATUS_SUCCESS);
    assert_eq!(set(4096), sys::NDIS_STATUS_INVALID_DATA);
    let q = nic.emu.oid_query(nic.adapter, sys::OID_GEN_VLAN_ID, 4).data;
    assert_eq!(q, 100u32.to_le_bytes());
    assert_eq!(
        receive(
            &nic,
            &[
                tagged(&f, 200),
                tagged(&f, 100),
                tagged(&f, 6 << 13),
                f.clone()
            ]
        ),
        [
            (f.clone(), Some((0, 100))),
            (f.clone(), Some((6, 0))),
            (f.clone(), None)
        ]
    );
    nic.emu.send(nic.adapter, &[&f]);
    nic.emu.send_statuses();
    assert_eq!(sent(&nic), [tagged(&f, 100)]);
    // A tagged send one byte short of the limit still fits; at the limit it is refused.
    nic.emu
        .send_tagged(nic.adapter, &[&frame(2, 1514), &frame(3, 1515)], 1, 0);
    assert_eq!(
        nic.emu.send_statuses(),
        [sys::NDIS_STATUS_SUCCESS, sys::NDIS_STATUS_INVALID_LENGTH]
    );
    assert_eq!(sent(&nic).len(), 1);
    nic.stop();
}
}

both_builds! {
fn priority_only_and_vlan_only_tagging_handle_the_other_field_as_documented(build: Build) {
    let f = frame(1, 100);
    let run = |keyword: &str| {
        let emu = Emulator::new(config(2));
        emu.set_keyword("*PriorityVLANTag", keyword);
        let nic = start_with(build, emu, 1, InterruptResources::msix(4), |_| {}).expect("initialize");
        nic.emu.send_tagged(nic.adapter, &[&f], 5, 100);
        nic.emu.send_statuses();
        let sent = nic.net(|n, _| n.take_transmitted(0));
        let inject = [tagged(&f, (3 << 13) | 100), tagged(&f, 6 << 13)];
        nic.net(|n, bus| {
            for x in &inject {
                n.inject_frame(bus, 0, x);
            }
        });
        nic.emu.run_dpcs();
        let got = nic.emu.received_frames_8021q(nic.adapter);
        nic.stop();
        (sent, got)
    };
    // Priority only: sends carry the priority alone; VLAN-tagged receives pass in band,
    // priority-only tags are stripped.
    assert_eq!(
        run("1"),
        (
            vec![tagged(&f, 5 << 13)],
            vec![
                (tagged(&f, (3 << 13) | 100), None),
                (f.clone(), Some((6, 0)))
            ]
        )
    );
    // VLAN only: sends carry the VLAN alone; every tag is stripped, priorities not reported.
    assert_eq!(
        run("2"),
        (
            vec![tagged(&f, 100)],
            vec![(f.clone(), Some((0, 100))), (f.clone(), None)]
        )
    );
}
}

both_builds! {
fn a_reused_receive_buffer_does_not_keep_the_last_frame_tag(build: Build) {
    let emu = Emulator::new(config(2));
    emu.set_keyword("*ReceiveBuffers", "64");
    let nic = start_with(build, emu, 1, InterruptResources::msix(4), |_| {}).expect("initialize");
    let f = frame(1, 80);
    for (round, tci) in [(0, Some(100)), (1, None), (2, Some(6 << 13)), (3, None)] {
        let x = tci.map_or(f.clone(), |t| tagged(&f, t));
        nic.net(|n, bus| {
            for _ in 0..64 {
                n.inject_frame(bus, 0, &x);
            }
        });
        nic.emu.run_dpcs();
        let got = nic.emu.received_frames_8021q(nic.adapter);
        assert_eq!(got.len(), 64, "round {round}");
        let expect = tci.map(|t| ((t >> 13) as u8, t & 0xFFF));
        assert!(
            got.iter().all(|(g, i)| *g == f && *i == expect),
            "round {round}"
        );
        nic.emu.return_receives(nic.adapter);
    }
    nic.stop();
}
}

/// One pair on a device without `VIRTIO_NET_F_CTRL_RX`: it filters nothing, and takes no
/// filter commands.
fn start_without_ctrl_rx(build: Build) -> Nic {
    start_with(
        build,
        Emulator::new(config(2)),
        1,
        InterruptResources::msix(4),
        |c| c.features = DEFAULT_FEATURES & !feature::CTRL_RX,
    )
    .expect("initialize")
}

both_builds! {
fn without_ctrl_rx_the_filter_and_multicast_list_stand_without_commands(build: Build) {
    let nic = start_without_ctrl_rx(build);
    let f = (sys::NDIS_PACKET_TYPE_DIRECTED | sys::NDIS_PACKET_TYPE_PROMISCUOUS).to_le_bytes();
    let r = nic
        .emu
        .oid_set(nic.adapter, sys::OID_GEN_CURRENT_PACKET_FILTER, &f);
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    let r = nic.emu.oid_set(
        nic.adapter,
        sys::OID_802_3_MULTICAST_LIST,
        &[1, 0, 0x5E, 0, 0, 1],
    );
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    assert!(nic.net(|n, _| n.control_log().is_empty()));
    nic.stop();
}
}

both_builds! {
/// The packet filter on receive, decided by the framework for whatever the device lets
/// through (without CTRL_RX the device filters nothing): directed frames only for the
/// adapter's address (each byte of it compared), broadcast, the multicast list, and everything
/// when promiscuous.
fn the_packet_filter_decides_which_receives_go_up(build: Build) {
    let nic = start_without_ctrl_rx(build);
    let set = |filter: u32| {
        let r = nic.emu.oid_set(
            nic.adapter,
            sys::OID_GEN_CURRENT_PACKET_FILTER,
            &filter.to_le_bytes(),
        );
        assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    };
    let group = [1, 0, 0x5E, 0, 0, 1];
    let r = nic
        .emu
        .oid_set(nic.adapter, sys::OID_802_3_MULTICAST_LIST, &group);
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    set(sys::NDIS_PACKET_TYPE_DIRECTED
        | sys::NDIS_PACKET_TYPE_MULTICAST
        | sys::NDIS_PACKET_TYPE_BROADCAST);
    let to = |destination: [u8; 6], seed: u8| {
        let mut f = frame(seed, 80);
        f[..6].copy_from_slice(&destination);
        f
    };
    // The adapter's address, then that address with one byte changed (each byte in turn, and
    // a multicast bit flipped on the last), broadcast, the listed group and another group.
    let mut sent = vec![(to(MAC, 0), true)];
    for i in 0..6 {
        let mut other = MAC;
        other[i] ^= if i == 0 { 0x02 } else { 0x01 };
        sent.push((to(other, 1 + i as u8), false));
    }
    sent.push((to([0xFF; 6], 7), true));
    sent.push((to(group, 8), true));
    sent.push((to([1, 0, 0x5E, 0, 0, 2], 9), false));
    let frames: Vec<&[u8]> = sent.iter().map(|(f, _)| f.as_slice()).collect();
    nic.net(|n, bus| n.inject_frames(bus, 0, &frames));
    nic.emu.run_dpcs();
    let want: Vec<Vec<u8>> = sent
        .iter()
        .filter(|(_, up)| *up)
        .map(|(f, _)| f.clone())
        .collect();
    assert_eq!(nic.emu.received_frames(nic.adapter), want);
    nic.emu.return_receives(nic.adapter);
    // Promiscuous: all of them.
    set(sys::NDIS_PACKET_TYPE_PROMISCUOUS);
    nic.net(|n, bus| n.inject_frames(bus, 0, &frames));
    nic.emu.run_dpcs();
    let all: Vec<Vec<u8>> = sent.iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(nic.emu.received_frames(nic.adapter), all);
    nic.emu.return_receives(nic.adapter);
    nic.stop();
}
}

both_builds! {
fn with_tagging_off_frames_pass_as_they_are(build: Build) {
    let emu = Emulator::new(config(2));
    emu.set_keyword("*PriorityVLANTag", "0");
    let nic = start_with(build, emu, 1, InterruptResources::msix(4), |_| {}).expect("initialize");
    let f = frame(1, 100);
    nic.emu.send_tagged(nic.adapter, &[&f], 5, 100);
    nic.emu.send_statuses();
    assert_eq!(
        nic.net(|n, _| n.take_transmitted(0)),
        std::slice::from_ref(&f)
    );
    let t = tagged(&f, 100);
    nic.net(|n, bus| n.inject_frame(bus, 0, &t));
    nic.emu.run_dpcs();
    assert_eq!(nic.emu.received_frames_8021q(nic.adapter), [(t, None)]);
    let r = nic
        .emu
        .oid_set(nic.adapter, sys::OID_GEN_VLAN_ID, &7u32.to_le_bytes());
    assert_eq!(r.status, sys::NDIS_STATUS_NOT_SUPPORTED);
    nic.stop();
}
}

both_builds! {
fn a_device_that_is_not_virtio_net_is_declined(build: Build) {
    let emu = Emulator::new(config(2));
    assert_eq!(nic::load(&emu, build), sys::STATUS_SUCCESS);
    assert_eq!(
        emu.add_adapter(InterruptResources::msix(4)),
        Err(sys::NDIS_STATUS_ADAPTER_NOT_FOUND)
    );
    emu.unload();
    nic::assert_no_infallible_allocation(&emu);
}
}

/// The pool allocations of km-alloc, the image's global allocator (ExAllocatePool2 on the
/// emulated Windows 11, ExAllocatePoolWithTag before 2004).
fn is_pool_allocation(site: &str) -> bool {
    matches!(site, "ExAllocatePool2" | "ExAllocatePoolWithTag")
}

/// The fault sweep on `build`: the fallible calls it failed one at a time, and how many of the
/// calls were heap allocations.
///
/// Every call is swept on both builds. On the host the driver's heap allocations go through the
/// accounting allocator, and those the framework makes fallibly (`ndis::heap`, marked for the
/// emulator) are fallible calls; an infallible one is counted instead
/// (`nic::assert_no_infallible_allocation`). In the image every Rust allocation is a km-alloc
/// pool call, failed like any other: an infallible `Box`/`Vec`/`Arc` allocation would end in
/// km-rt's bug check 0x52504E43 (a failed heap allocation), as on Windows.
fn sweep(
    build: Build,
    config: impl Fn() -> Config,
    scenario: impl Fn(&Emulator),
) -> (Vec<&'static str>, usize) {
    let report = sweep_fallible_calls(config, |emu| {
        scenario(emu);
        nic::assert_no_infallible_allocation(emu);
    });
    let heap = match build {
        Build::Host => report.heap_sites(),
        Build::Image => report
            .sites
            .iter()
            .filter(|s| is_pool_allocation(s))
            .count(),
    };
    (report.sites, heap)
}

both_builds! {
fn initialize_survives_every_failing_ndis_call_without_a_leak(build: Build) {
    // Small rings keep the sweep quick: every receive buffer's MDL and list is a fallible call.
    for (pairs, resources) in [
        (2, InterruptResources::msix(6)),
        (1, InterruptResources::line()),
    ] {
        let (sites, heap) = sweep(
            build,
            || config(4),
            |emu| {
                emu.set_keyword("*ReceiveBuffers", "64");
                emu.set_keyword("*TransmitBuffers", "64");
                if nic::load(emu, build) != sys::STATUS_SUCCESS {
                    return;
                }
                let model = VirtioNet::new(VirtioNetConfig::new(pairs));
                match emu.add_adapter_with(resources, Box::new(model)) {
                    Ok(a) => emu.halt(a, sys::NdisHaltDeviceDisabled),
                    Err(_) => {
                        // A failed initialize leaves the device untouched or marked FAILED, never
                        // running with queues in freed memory.
                        let status =
                            emu.with_device::<VirtioNet, _>(DeviceId(0), |n, _| n.status());
                        assert!(
                            status == 0 || status & 0x80 != 0,
                            "device status {status:#x}"
                        );
                        assert_eq!(status & 0x04, 0, "DRIVER_OK after a failed initialize");
                    }
                }
                emu.unload();
                nic::assert_no_infallible_allocation(emu);
            },
        );
        assert!(sites.len() > 10, "{sites:?}");
        eprintln!(
            "{build:?}: swept {} fallible calls, {heap} of them heap allocations",
            sites.len()
        );
        assert!(heap >= 8, "heap allocations: {heap} of {sites:?}");
    }
}
}

/// A set OID, completed if the driver pends it; its status (any: a failed call may fail it).
fn set_oid(emu: &Emulator, adapter: ndis_emu::AdapterId, oid: u32, data: &[u8]) -> i32 {
    let r = emu.oid_set(adapter, oid, data);
    if r.status != sys::NDIS_STATUS_PENDING {
        return r.status;
    }
    emu.oid_completion().expect("a pended set completes").status
}

/// The whole life of an adapter with one call failed: initialize, restart (with TCP/IP's RSS
/// configuration), a packet filter and a multicast list (control-queue OIDs), frames sent and
/// received, a sleep (D3) and the wake-up (D0, restart), pause, halt, unload. Without a failure
/// every step must succeed and every frame get through.
fn lifecycle_with_a_failure(build: Build, emu: &Emulator) {
    emu.set_keyword("*ReceiveBuffers", "64");
    emu.set_keyword("*TransmitBuffers", "64");
    if nic::load(emu, build) != sys::STATUS_SUCCESS {
        return;
    }
    let model = VirtioNet::new(VirtioNetConfig::new(2));
    let Ok(a) = emu.add_adapter_with(InterruptResources::msix(6), Box::new(model)) else {
        let status = emu.with_device::<VirtioNet, _>(DeviceId(0), |n, _| n.status());
        assert_eq!(status & 0x04, 0, "DRIVER_OK after a failed initialize");
        emu.unload();
        nic::assert_no_infallible_allocation(emu);
        return;
    };
    let failed = || emu.fallible_calls().iter().any(|(_, f)| *f);
    let mut ok = [0usize; 4];
    if emu.restart(a) == sys::NDIS_STATUS_SUCCESS {
        let filter =
            (sys::NDIS_PACKET_TYPE_DIRECTED | sys::NDIS_PACKET_TYPE_MULTICAST).to_le_bytes();
        let list = [1, 0, 0x5e, 0, 0, 1, 1, 0, 0x5e, 0, 0, 2];
        ok[0] += (set_oid(emu, a, sys::OID_GEN_CURRENT_PACKET_FILTER, &filter)
            == sys::NDIS_STATUS_SUCCESS) as usize;
        ok[0] += (set_oid(emu, a, sys::OID_802_3_MULTICAST_LIST, &list) == sys::NDIS_STATUS_SUCCESS)
            as usize;
        for round in 0..2u8 {
            let frames: Vec<Vec<u8>> = (0..4)
                .map(|i| frame(10 * round + i, 60 + 440 * i as usize))
                .collect();
            let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
            emu.send(a, &refs);
            let statuses = emu.send_statuses();
            assert_eq!(statuses.len(), frames.len(), "every send completed");
            ok[1] += statuses
                .iter()
                .filter(|s| **s == sys::NDIS_STATUS_SUCCESS)
                .count();
            emu.with_device::<VirtioNet, _>(DeviceId(0), |n, bus| {
                for p in 0..2 {
                    n.take_transmitted(p);
                }
                for f in &frames {
                    n.inject_frame(bus, 0, f);
                }
            });
            emu.run_dpcs();
            let got = emu.received_frames(a);
            assert!(got.iter().all(|f| frames.contains(f)), "frames not sent");
            ok[2] += got.len();
            emu.return_receives(a);
            if round == 0 {
                emu.sleep(a, ndis_emu::SystemSleep::SLEEP);
                match emu.wake(a) {
                    Ok(()) => ok[3] += 1,
                    Err(e) => {
                        assert!(failed(), "wake-up failed without a failure: {e:?}");
                        break;
                    }
                }
            }
        }
        if emu.adapter_state(a) == ndis_emu::AdapterState::Running {
            assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
        }
    }
    if !failed() {
        assert_eq!(
            ok,
            [2, 8, 8, 1],
            "(OIDs, sends, receives, wake-ups) that succeeded"
        );
    }
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
    nic::assert_no_infallible_allocation(emu);
}

both_builds! {
/// Every fallible call of an adapter's life, failed one at a time: each ends in a status (the
/// initialize, restart, OID or send that made it fails), never in a bug check, and unload finds
/// nothing leaked. On the image every pool allocation is one of them (km-alloc is the image's
/// allocator): an infallible `Box`/`Vec`/`Arc` left on these paths would end in km-rt's bug
/// check 0x52504E43 here. On the host the framework's fallible allocations are swept, and the
/// heap accounting finds any infallible one the driver made.
fn every_allocation_failure_in_the_lifecycle_ends_in_a_status(build: Build) {
    let (sites, heap) = sweep(build, || config(2), |emu| lifecycle_with_a_failure(build, emu));
    eprintln!(
        "{build:?}: swept {} fallible calls, {heap} of them heap allocations",
        sites.len()
    );
    assert!(heap >= 40, "heap allocations: {heap} of {sites:?}");
}
}

both_builds! {
fn surprise_removal_stops_the_driver_cleanly(build: Build) {
    let nic = start(build, 1, InterruptResources::line());
    nic.net(|n, _| n.set_surprise_removed(true));
    // The line fires; the ISR reads 0xFF: not ours, and the driver stops using the device.
    assert_eq!(nic.emu.fire_line(nic.device), Some(false), "0xFF: not ours");
    nic.emu.send(nic.adapter, &[&frame(1, 64)]);
    let c = nic.emu.send_completions();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].1, sys::NDIS_STATUS_ADAPTER_REMOVED);
    assert!(nic.net(|n, _| n.transmitted_frames(0).is_empty()));
    nic.stop();
}
}

both_builds! {
fn a_used_index_that_jumps_is_a_device_error_not_an_overrun(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    nic.net(|n, _| n.set_used_index_jump(0, true));
    nic.net(|n, bus| n.inject_frame(bus, 0, &frame(1, 64)));
    nic.emu.run_dpcs();
    assert!(nic.emu.received_frames(nic.adapter).is_empty());
    assert_eq!(
        nic.emu.link_state(nic.adapter).map(|l| l.connected),
        Some(false),
        "a failed device is reported as a lost link"
    );
    // The driver stopped using the device: sends fail instead of touching it.
    nic.emu.send(nic.adapter, &[&frame(2, 64)]);
    let c = nic.emu.send_completions();
    assert_ne!(c[0].1, sys::NDIS_STATUS_SUCCESS);
    nic.stop();
}
}

both_builds! {
/// A full ring holds lists back (up to `TX_BACKLOG` per ring) instead of failing them, and
/// sends them, in order, from the transmit completion path once the device makes room; only
/// lists beyond the backlog fail with `NDIS_STATUS_RESOURCES`.
fn a_stalled_transmit_queue_holds_a_bounded_backlog_and_sends_it_when_the_device_drains(build: Build) {
    for resources in [InterruptResources::msix(4), InterruptResources::line()] {
        let nic = start(build, 1, resources);
        nic.net(|n, bus| n.set_stalled(bus, 1, true));
        const HELD: usize = vionet::TX_BACKLOG;
        let frames: Vec<Vec<u8>> = (0..256 + HELD + 20)
            .map(|i| frame(i as u8, 64 + i % 7))
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        nic.emu.send(nic.adapter, &refs);
        let c = nic.emu.send_completions();
        // 256 on the ring (copied: complete now), TX_BACKLOG held, 20 beyond the backlog.
        assert_eq!(c.len(), 256 + 20);
        let ok: Vec<Vec<u8>> = c
            .iter()
            .filter(|(_, s)| *s == sys::NDIS_STATUS_SUCCESS)
            .map(|(f, _)| f.clone())
            .collect();
        assert_eq!(ok[..], frames[..256]);
        let refused: Vec<&Vec<u8>> = c
            .iter()
            .filter(|(_, s)| *s == sys::NDIS_STATUS_RESOURCES)
            .map(|(f, _)| f)
            .collect();
        assert_eq!(refused.len(), 20);
        assert!(refused.iter().zip(&frames[256 + HELD..]).all(|(a, b)| *a == b));
        // Each refused list is counted once, as a discard (ifOutDiscards, the 12th counter).
        let stats = nic
            .emu
            .oid_query(nic.adapter, sys::OID_GEN_STATISTICS, 152)
            .data;
        let out_discards = u64::from_le_bytes(stats[96..104].try_into().unwrap());
        assert_eq!(out_discards, 20);
        assert!(nic.net(|n, _| n.transmitted_frames(0).is_empty()));
        // Unstalled, the device drains the ring; its interrupt's DPC sends the backlog, which
        // completes once the device took it, without another send call.
        nic.net(|n, bus| n.set_stalled(bus, 1, false));
        nic.emu.run_dpcs();
        let mut later = nic.emu.send_completions();
        // A ring's worth at a time: each DPC reaps what the device took and sends more.
        for _ in 0..4 * HELD / 256 {
            if later.len() == HELD {
                break;
            }
            nic.emu.run_dpcs();
            later.extend(nic.emu.send_completions());
        }
        assert_eq!(later.len(), HELD, "{resources:?}");
        assert!(later.iter().all(|(_, s)| *s == sys::NDIS_STATUS_SUCCESS));
        assert!(
            later
                .iter()
                .zip(&frames[256..256 + HELD])
                .all(|((f, _), g)| f == g)
        );
        nic.emu.send(nic.adapter, &[&frame(7, 90)]);
        assert_eq!(nic.emu.send_completions()[0].1, sys::NDIS_STATUS_SUCCESS);
        let seen = nic.net(|n, _| n.take_transmitted(0));
        assert_eq!(seen.len(), 256 + HELD + 1);
        assert!(seen[..256 + HELD] == frames[..256 + HELD] && seen[256 + HELD] == frame(7, 90));
        nic.stop();
    }
}
}

both_builds! {
/// Lists held for a full ring do not outlive a pause: the pause completes them
/// (`NDIS_STATUS_PAUSED`) and completes itself only after (the emulator checks that no send is
/// outstanding when `NdisMPauseComplete` comes or the pause returns).
fn a_pause_completes_the_lists_a_full_ring_held(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    nic.net(|n, bus| n.set_stalled(bus, 1, true));
    let frames: Vec<Vec<u8>> = (0..300).map(|i| frame(i as u8, 64)).collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    nic.emu.send(nic.adapter, &refs);
    assert_eq!(nic.emu.send_completions().len(), 256);
    assert_eq!(nic.emu.pause(nic.adapter), sys::NDIS_STATUS_SUCCESS);
    let c = nic.emu.send_completions();
    assert_eq!(c.len(), 44);
    assert!(c.iter().all(|(_, s)| *s == sys::NDIS_STATUS_PAUSED));
    assert!(c.iter().zip(&frames[256..]).all(|((f, _), g)| f == g));
    assert_eq!(nic.emu.restart(nic.adapter), sys::NDIS_STATUS_SUCCESS);
    nic.net(|n, bus| n.set_stalled(bus, 1, false));
    nic.stop();
}
}

both_builds! {
fn each_queue_dpc_runs_at_dispatch_on_its_message_cpu(build: Build) {
    let emu = Emulator::new(Config {
        cpus: 4,
        trace: true,
        ..Config::default()
    });
    let nic = start_with(build, emu, 4, InterruptResources::msix(10), |_| {}).expect("initialize");
    for p in 0..4u16 {
        nic.net(|n, bus| n.inject_frame(bus, p, &frame(p as u8, 80)));
    }
    nic.emu.run_dpcs();
    let trace = nic.emu.trace();
    // vionet's filtered requirements pin pair j's two messages to processor j, and the
    // emulated PnP honours them (docs/emulator.md); RX of pair j is message 2j, so its DPC must
    // run on processor j, at DISPATCH_LEVEL (without the pinning it would be processor 2j mod 4).
    assert_eq!(
        nic.emu.message_processors(nic.emu.device_of(nic.adapter)),
        [0, 0, 1, 1, 2, 2, 3, 3, 0]
    );
    for j in 0..4usize {
        let m = 2 * j;
        let cpu = j;
        let line = format!("cpu{cpu} irql  2 DPC msg {m}");
        assert!(
            trace.iter().any(|l| l.starts_with(&line)),
            "no `{line}` in the trace: {:?}",
            trace
                .iter()
                .filter(|l| l.contains("DPC"))
                .collect::<Vec<_>>()
        );
    }
    nic.stop();
}
}

both_builds! {
fn runts_fail_with_invalid_length_and_short_frames_are_padded_to_60_bytes(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    let runt = frame(1, 14)[..13].to_vec();
    let empty: Vec<u8> = Vec::new();
    let short = frame(2, 42); // an ARP request's size
    nic.emu
        .send_lists(nic.adapter, &[&[&runt], &[&empty], &[&short]]);
    assert_eq!(
        nic.emu.send_statuses(),
        vec![
            sys::NDIS_STATUS_INVALID_LENGTH,
            sys::NDIS_STATUS_INVALID_LENGTH,
            sys::NDIS_STATUS_SUCCESS
        ]
    );
    let seen = nic.net(|n, _| n.take_transmitted(0));
    assert_eq!(seen.len(), 1, "only the 42-byte frame went out");
    assert_eq!(seen[0].len(), 60);
    assert_eq!(&seen[0][..42], &short[..]);
    assert!(seen[0][42..].iter().all(|&b| b == 0), "zero padding");
    nic.stop();
}
}

both_builds! {
fn vlan_4095_is_refused_in_the_oid_and_in_a_lists_8021q_info(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    for id in [4095u32, 4096, u32::MAX] {
        assert_eq!(
            nic.emu
                .oid_set(nic.adapter, sys::OID_GEN_VLAN_ID, &id.to_le_bytes())
                .status,
            sys::NDIS_STATUS_INVALID_DATA,
            "VLAN {id}"
        );
    }
    assert_eq!(
        nic.emu
            .oid_set(nic.adapter, sys::OID_GEN_VLAN_ID, &4094u32.to_le_bytes())
            .status,
        sys::NDIS_STATUS_SUCCESS
    );
    nic.emu.send_tagged(nic.adapter, &[&frame(3, 64)], 0, 4095);
    assert_eq!(
        nic.emu.send_statuses(),
        vec![sys::NDIS_STATUS_INVALID_PACKET]
    );
    assert!(nic.net(|n, _| n.take_transmitted(0)).is_empty());
    nic.emu.send_tagged(nic.adapter, &[&frame(3, 64)], 0, 4094);
    assert_eq!(nic.emu.send_statuses(), vec![sys::NDIS_STATUS_SUCCESS]);
    nic.stop();
}
}

both_builds! {
fn set_power_outside_d0_to_d3_is_invalid_data(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    for state in [0u32, 5, 0xFFFF_FFFF] {
        assert_eq!(
            nic.emu
                .oid_set(nic.adapter, sys::OID_PNP_SET_POWER, &state.to_le_bytes())
                .status,
            sys::NDIS_STATUS_INVALID_DATA,
            "state {state}"
        );
    }
    assert_eq!(
        nic.emu
            .oid_set(nic.adapter, sys::OID_PNP_SET_POWER, &1u32.to_le_bytes())
            .status,
        sys::NDIS_STATUS_SUCCESS,
        "D0"
    );
    nic.stop();
}
}

/// Sixty-four adapters on one machine: every device's BARs get addresses of their own (the
/// configuration-space value is the address, 64-bit BARs decode above 4 GiB, nothing overlaps
/// another device or the guest memory DMA uses), and every adapter initializes and moves frames
/// both ways. (BARs were once placed at a fixed stride that wrapped at the 17th device.)
#[test]
fn sixty_four_adapters_each_get_their_own_bars_and_carry_traffic() {
    use ndis_emu::pci::{GUEST_MEMORY_BASE, GUEST_MEMORY_SIZE, PciFunction};
    let emu = Emulator::new(config(2));
    // The smallest rings the driver accepts, so that 64 adapters fit the guest memory.
    emu.set_keyword("*ReceiveBuffers", "64");
    emu.set_keyword("*TransmitBuffers", "64");
    emu.set_keyword("*NumRssQueues", "1");
    assert_eq!(emu.load_driver(vionet::DRIVER_ENTRY), sys::STATUS_SUCCESS);
    let mut nics = Vec::new();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for i in 0..64 {
        let cfg = VirtioNetConfig::new(1);
        let bars = VirtioNet::new(cfg.clone()).bars();
        let adapter = emu
            .add_adapter_with(InterruptResources::msix(4), Box::new(VirtioNet::new(cfg)))
            .unwrap_or_else(|s| panic!("adapter {i}: initialize failed with {s:#x}"));
        assert_eq!(emu.restart(adapter), sys::NDIS_STATUS_SUCCESS);
        let device = emu.device_of(adapter);
        emu.with_device::<VirtioNet, _>(device, |n, _| {
            let config = n.config();
            for b in &bars {
                let reg = 0x10 + 4 * b.index as usize;
                let low = u32::from_le_bytes(config[reg..reg + 4].try_into().unwrap());
                let mut address = (low & !0xF) as u64;
                if b.is_64bit {
                    let high = u32::from_le_bytes(config[reg + 4..reg + 8].try_into().unwrap());
                    address |= (high as u64) << 32;
                    assert!(address >= 1 << 32, "adapter {i}: a 64-bit BAR above 4 GiB");
                }
                assert_ne!(address, 0, "adapter {i} BAR {}: an address", b.index);
                assert_eq!(address % b.size, 0, "adapter {i} BAR {}: aligned", b.index);
                ranges.push((address, address + b.size));
            }
        });
        nics.push((adapter, device));
    }
    ranges.push((GUEST_MEMORY_BASE, GUEST_MEMORY_BASE + GUEST_MEMORY_SIZE));
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "overlapping ranges {:x?} and {:x?}",
            w[0],
            w[1]
        );
    }
    for (i, &(adapter, device)) in nics.iter().enumerate() {
        let out = frame(i as u8, 100 + i);
        emu.send(adapter, &[&out]);
        let sent = emu.with_device::<VirtioNet, _>(device, |n, _| n.take_transmitted(0));
        assert_eq!(sent, vec![out], "adapter {i} transmitted");
        let inbound = frame(200u8.wrapping_add(i as u8), 90 + i);
        emu.with_device::<VirtioNet, _>(device, |n, bus| n.inject_frame(bus, 0, &inbound));
        emu.run_dpcs();
        assert_eq!(
            emu.received_frames(adapter),
            vec![inbound],
            "adapter {i} received"
        );
        emu.return_receives(adapter);
    }
    for &(adapter, _) in &nics {
        assert_eq!(emu.pause(adapter), sys::NDIS_STATUS_SUCCESS);
        emu.halt(adapter, sys::NdisHaltDeviceDisabled);
    }
    emu.unload();
    nic::assert_no_infallible_allocation(&emu);
}
