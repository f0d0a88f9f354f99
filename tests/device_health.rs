//! Device health on the emulator: a virtio-net device that resets itself, sets
//! DEVICE_NEEDS_RESET or drops DRIVER_OK is noticed (on the interrupt path and by
//! check-for-hang), reported as a lost link, refused sends get a clear status, and
//! `MiniportResetEx` re-initializes it (the driver's suspend/resume pair) into what initialize set
//! up, with its control-queue state replayed; a device that cannot be brought back leaves the
//! adapter failed cleanly. Every run halts with zero leaks (the accounting allocator below).
#![cfg(not(windows))]

use std::time::Duration;

use ndis_emu::InterruptResources;
use ndis_emu::devices::virtio_net::DEFAULT_FEATURES;
use ndis_emu::devices::virtio_net::regs::feature;
use ndis_sys as sys;

/// Counts the driver's heap allocations so unload can find leaks (see ndis_emu::DriverHeap).
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

#[macro_use]
#[path = "support/nic.rs"]
mod nic;

use nic::{Build, MAC, Nic, check_tx, frame, start};

/// What goes wrong with the device.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// It resets itself (status 0, rings forgotten).
    SelfReset,
    /// It sets DEVICE_NEEDS_RESET.
    NeedsReset,
    /// It clears DRIVER_OK.
    LostDriverOk,
}

const FAULTS: [Fault; 3] = [Fault::SelfReset, Fault::NeedsReset, Fault::LostDriverOk];

/// The grants each fault is tried under: every message per queue (2 pairs), one message, the
/// line.
fn grants() -> [(u16, InterruptResources); 3] {
    [
        (2, InterruptResources::msix(6)),
        (1, InterruptResources::msix(1)),
        (1, InterruptResources::line()),
    ]
}

fn inject(nic: &Nic, fault: Fault, notify: bool) {
    nic.net(|n, bus| match fault {
        Fault::SelfReset => n.reset_by_device(bus, notify),
        Fault::NeedsReset => n.set_needs_reset(bus, notify),
        Fault::LostDriverOk => n.clear_driver_ok(bus, notify),
    });
    nic.emu.run_dpcs();
}

/// The link reports indicated since the last call (true: connected).
fn link_reports(nic: &Nic) -> Vec<bool> {
    nic.emu
        .status_indications(nic.adapter)
        .into_iter()
        .filter(|(s, _)| *s == sys::NDIS_STATUS_LINK_STATE)
        .map(|(_, b)| {
            i32::from_le_bytes(b[4..8].try_into().unwrap()) == sys::MediaConnectStateConnected
        })
        .collect()
}

/// Doorbell writes the device has seen, all queues.
fn doorbells(nic: &Nic) -> u64 {
    nic.net(|n, _| n.counters().notifications.iter().sum())
}

/// `OID_GEN_STATISTICS` counter `index` (0: ifInDiscards ... 10: ifOutErrors).
fn statistic(nic: &Nic, index: usize) -> u64 {
    let stats = nic
        .emu
        .oid_query(nic.adapter, sys::OID_GEN_STATISTICS, 152)
        .data;
    let at = 8 + 8 * index;
    u64::from_le_bytes(stats[at..at + 8].try_into().unwrap())
}
const IF_OUT_ERRORS: usize = 10;

/// Sends `n` frames and returns their completion statuses; nothing may reach the device.
fn sends_refused(nic: &Nic, n: usize) -> Vec<i32> {
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| frame(200u8.wrapping_add(i as u8), 80))
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    nic.emu.send(nic.adapter, &refs);
    let statuses: Vec<i32> = nic
        .emu
        .send_completions()
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    for p in 0..nic.device_pairs {
        assert!(
            nic.net(|n, _| n.take_transmitted(p)).is_empty(),
            "a refused send reached the device"
        );
    }
    statuses
}

/// 100 frames in each direction, byte-exact (receives spread over the pairs the device uses).
fn traffic(nic: &Nic, seed: u8) {
    let frames: Vec<Vec<u8>> = (0..100)
        .map(|i| frame(seed.wrapping_add(i as u8), 60 + (i * 37) % 1455))
        .collect();
    check_tx(nic, &frames);
    let pairs = nic.net(|n, _| n.active_queue_pairs());
    let frames: Vec<(u16, Vec<u8>)> = (0..100usize)
        .map(|i| {
            let f = frame(seed.wrapping_add(i as u8) ^ 0x55, 60 + (i * 53) % 1455);
            ((i % pairs as usize) as u16, f)
        })
        .collect();
    nic.check_rx_on(&frames);
}

const GROUPS: [[u8; 6]; 2] = [[0x01, 0x00, 0x5E, 0, 0, 1], [0x33, 0x33, 0, 0, 0, 0x0C]];

/// Sets a promiscuous filter and a multicast list, which a reset must replay.
fn configure(nic: &Nic) {
    let filter = sys::NDIS_PACKET_TYPE_DIRECTED
        | sys::NDIS_PACKET_TYPE_BROADCAST
        | sys::NDIS_PACKET_TYPE_PROMISCUOUS;
    let r = nic.emu.oid_set(
        nic.adapter,
        sys::OID_GEN_CURRENT_PACKET_FILTER,
        &filter.to_le_bytes(),
    );
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    let r = nic
        .emu
        .oid_set(nic.adapter, sys::OID_802_3_MULTICAST_LIST, &GROUPS.concat());
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
}

/// The device holds what initialize and the OIDs gave it.
fn assert_configured(nic: &Nic, pairs: u16) {
    let (running, promiscuous, multicast, active) = nic.net(|n, _| {
        (
            n.status() & 0x04 != 0,
            n.promiscuous(),
            n.mac_table().1.to_vec(),
            n.active_queue_pairs(),
        )
    });
    assert!(running, "DRIVER_OK");
    assert!(promiscuous, "the packet filter was replayed");
    assert_eq!(
        multicast,
        GROUPS.to_vec(),
        "the multicast list was replayed"
    );
    assert_eq!(active, pairs, "VQ_PAIRS_SET was replayed");
}

/// Runs NDIS's check-for-hang once (the 2 s default) and returns the resets it made.
fn check_for_hang(nic: &Nic) -> Vec<(i32, bool)> {
    let before = nic.emu.hang_checks(nic.adapter);
    nic.emu.advance_time(Duration::from_secs(2));
    assert_eq!(
        nic.emu.hang_checks(nic.adapter),
        before + 1,
        "one check per 2 s"
    );
    nic.emu.resets(nic.adapter)
}

/// A fault the device announces (a configuration-change interrupt): noticed at once on the
/// interrupt path, link down, sends refused with MEDIA_DISCONNECTED and no doorbell rung; then
/// check-for-hang asks for a reset, which brings back everything, with receives lent to NDIS
/// across the reset reposted when returned.
fn announced(build: Build, fault: Fault, pairs: u16, resources: InterruptResources) {
    let nic = start(build, pairs, resources);
    configure(&nic);
    traffic(&nic, 1);
    assert_configured(&nic, pairs);
    // Receives held by the protocol across the failure and the reset.
    for i in 0..5u8 {
        nic.net(|n, bus| n.inject_frame(bus, 0, &frame(90 + i, 70)));
    }
    nic.emu.run_dpcs();
    let held = nic.emu.received_frames(nic.adapter);
    assert_eq!(held.len(), 5);
    let _ = link_reports(&nic);

    inject(&nic, fault, true);
    assert_eq!(
        link_reports(&nic),
        vec![false],
        "{fault:?}: link down indicated"
    );
    let rung = doorbells(&nic);
    let statuses = sends_refused(&nic, 10);
    assert!(
        statuses
            .iter()
            .all(|&s| s == sys::NDIS_STATUS_MEDIA_DISCONNECTED),
        "{fault:?}: {statuses:x?}"
    );
    assert_eq!(
        doorbells(&nic),
        rung,
        "{fault:?}: a doorbell for a device that needs a reset"
    );
    // Frames arriving meanwhile wait in the device: nothing is indicated.
    nic.net(|n, bus| n.inject_frame(bus, 0, &frame(77, 64)));
    nic.emu.run_dpcs();
    assert!(nic.emu.received_frames(nic.adapter).is_empty());

    assert_eq!(
        check_for_hang(&nic),
        vec![(sys::NDIS_STATUS_SUCCESS, false)],
        "{fault:?}: one reset, addressing kept by the driver"
    );
    assert_eq!(link_reports(&nic), vec![true], "{fault:?}: link up again");
    assert_configured(&nic, pairs);
    // What waited in the device is delivered into the reposted buffers.
    assert_eq!(nic.emu.received_frames(nic.adapter), vec![frame(77, 64)]);
    // Lent across the reset, returned now, and posted again.
    nic.emu.return_receives(nic.adapter);
    traffic(&nic, 2);
    // And the next check finds nothing wrong.
    assert!(check_for_hang(&nic).is_empty());
    traffic(&nic, 3);
    nic.stop();
}

both_builds! {
fn a_device_that_resets_itself_is_noticed_and_recovered_by_reset(build: Build) {
    for (pairs, resources) in grants() {
        announced(build, Fault::SelfReset, pairs, resources);
    }
}
}

both_builds! {
fn a_device_that_sets_needs_reset_is_noticed_and_recovered_by_reset(build: Build) {
    for (pairs, resources) in grants() {
        announced(build, Fault::NeedsReset, pairs, resources);
    }
}
}

both_builds! {
fn a_device_that_loses_driver_ok_is_noticed_and_recovered_by_reset(build: Build) {
    for (pairs, resources) in grants() {
        announced(build, Fault::LostDriverOk, pairs, resources);
    }
}
}

both_builds! {
/// A fault the device does not announce: found by check-for-hang (one status read every 2 s),
/// or earlier by a transmit ring that fills up. Frames completed to NDIS that the device never
/// took are counted as transmit errors when the reset forfeits them, and not sent afterwards.
fn a_silent_fault_is_found_by_check_for_hang_and_forfeited_sends_are_counted(build: Build) {
    for fault in FAULTS {
        for (pairs, resources) in grants() {
            let nic = start(build, pairs, resources);
            configure(&nic);
            traffic(&nic, 10);
            let _ = link_reports(&nic);
            inject(&nic, fault, false);
            assert!(
                link_reports(&nic).is_empty(),
                "nothing said, nothing seen yet"
            );
            let errors = statistic(&nic, IF_OUT_ERRORS);
            // The driver cannot know yet: these go into a ring the device does not read.
            let statuses = sends_refused(&nic, 7);
            assert!(statuses.iter().all(|&s| s == sys::NDIS_STATUS_SUCCESS));
            assert_eq!(
                check_for_hang(&nic),
                vec![(sys::NDIS_STATUS_SUCCESS, false)],
                "{fault:?}"
            );
            assert_eq!(
                link_reports(&nic),
                vec![false, true],
                "{fault:?}: down, then up"
            );
            let lost = statistic(&nic, IF_OUT_ERRORS) - errors;
            // NEEDS_RESET/lost DRIVER_OK with a live ring: the device stopped processing, so
            // each frame was forfeit; the same for a reset device.
            assert_eq!(
                lost, 7,
                "{fault:?}: forfeited sends counted as transmit errors"
            );
            assert_configured(&nic, pairs);
            let unexpected: Vec<Vec<u8>> = (0..pairs)
                .flat_map(|p| nic.net(|n, _| n.take_transmitted(p)))
                .collect();
            assert!(
                unexpected.is_empty(),
                "{fault:?}: a forfeited frame was sent after all"
            );
            traffic(&nic, 11);
            nic.stop();
        }
    }
}
}

both_builds! {
/// The symptom: after a silent self-reset, 256 sends SUCCESS and then RESOURCES
/// forever. Now the full ring makes the driver read the status: the rest fail with
/// MEDIA_DISCONNECTED, and the link is reported down at the next check, which resets.
fn a_full_transmit_ring_of_a_reset_device_fails_sends_as_disconnected_not_resources(build: Build) {
    let nic = start(build, 1, InterruptResources::msix(4));
    traffic(&nic, 20);
    inject(&nic, Fault::SelfReset, false);
    let statuses = sends_refused(&nic, 300);
    let ok = statuses
        .iter()
        .filter(|&&s| s == sys::NDIS_STATUS_SUCCESS)
        .count();
    assert_eq!(ok, 256, "the ring took 256 before it was full");
    assert!(
        statuses[256..]
            .iter()
            .all(|&s| s == sys::NDIS_STATUS_MEDIA_DISCONNECTED),
        "{:x?}",
        &statuses[256..]
    );
    let rung = doorbells(&nic);
    assert!(
        sends_refused(&nic, 5)
            .iter()
            .all(|&s| s == sys::NDIS_STATUS_MEDIA_DISCONNECTED)
    );
    assert_eq!(doorbells(&nic), rung);
    assert_eq!(
        check_for_hang(&nic),
        vec![(sys::NDIS_STATUS_SUCCESS, false)]
    );
    assert_eq!(
        nic.emu.link_state(nic.adapter).map(|l| l.connected),
        Some(true)
    );
    // Doorbells before the driver noticed are the device's doing, not driver errors (stop()
    // checks there are none).
    assert!(nic.net(|n, _| n.counters().notifications_after_device_reset) > 0);
    traffic(&nic, 21);
    nic.stop();
}
}

both_builds! {
/// A used ring the device cannot have written is a fault a reset clears too.
fn a_used_ring_fault_is_recovered_by_reset(build: Build) {
    for (pairs, resources) in grants() {
        let nic = start(build, pairs, resources);
        traffic(&nic, 30);
        let _ = link_reports(&nic);
        nic.net(|n, _| n.set_used_index_jump(0, true));
        nic.net(|n, bus| n.inject_frame(bus, 0, &frame(1, 64)));
        nic.emu.run_dpcs();
        assert!(nic.emu.received_frames(nic.adapter).is_empty());
        assert_eq!(link_reports(&nic), vec![false]);
        assert!(
            sends_refused(&nic, 3)
                .iter()
                .all(|&s| s == sys::NDIS_STATUS_MEDIA_DISCONNECTED)
        );
        nic.net(|n, _| n.set_used_index_jump(0, false));
        assert_eq!(
            check_for_hang(&nic),
            vec![(sys::NDIS_STATUS_SUCCESS, false)]
        );
        assert_eq!(link_reports(&nic), vec![true]);
        // The frame the driver dropped with the broken ring is gone; new ones pass.
        let _ = nic.emu.received_frames(nic.adapter);
        nic.emu.return_receives(nic.adapter);
        traffic(&nic, 31);
        nic.stop();
    }
}
}

both_builds! {
/// A device that fails again while it is re-initialized: the reset reports
/// NDIS_STATUS_HARD_ERRORS, the device is left reset and FAILED, sends get HARD_ERRORS, nothing
/// is rung; once the device behaves, a later check-for-hang recovers it. Halt has zero leaks
/// either way.
fn a_device_that_fails_during_reinitialization_leaves_the_adapter_failed_cleanly(build: Build) {
    #[derive(Debug, Clone, Copy)]
    enum Refusal {
        FeaturesOk,
        FeatureWithdrawn,
        ControlUnanswered,
    }
    for refusal in [
        Refusal::FeaturesOk,
        Refusal::FeatureWithdrawn,
        Refusal::ControlUnanswered,
    ] {
        for (pairs, resources) in grants() {
            for recover in [false, true] {
                let nic = start(build, pairs, resources);
                configure(&nic);
                traffic(&nic, 40);
                nic.net(|n, bus| match refusal {
                    Refusal::FeaturesOk => n.refuse_features_ok(true),
                    Refusal::FeatureWithdrawn => {
                        n.set_offered_features(DEFAULT_FEATURES & !feature::GUEST_CSUM)
                    }
                    // The control queue's answers never come after the reset.
                    Refusal::ControlUnanswered => {
                        let control = if n.negotiated_features() & feature::MQ != 0 {
                            2 * pairs
                        } else {
                            2
                        };
                        n.set_stalled(bus, control, true)
                    }
                });
                inject(&nic, Fault::SelfReset, true);
                let resets = check_for_hang(&nic);
                assert_eq!(resets.len(), 1, "{refusal:?}");
                assert_eq!(resets[0].0, sys::NDIS_STATUS_HARD_ERRORS, "{refusal:?}");
                let status = nic.net(|n, _| n.status());
                assert!(
                    status & 0x80 != 0 && status & 0x04 == 0,
                    "{refusal:?}: left FAILED, not running: {status:#x}"
                );
                assert_eq!(
                    nic.emu.link_state(nic.adapter).map(|l| l.connected),
                    Some(false)
                );
                let rung = doorbells(&nic);
                assert!(
                    sends_refused(&nic, 4)
                        .iter()
                        .all(|&s| s == sys::NDIS_STATUS_HARD_ERRORS),
                    "{refusal:?}"
                );
                assert_eq!(doorbells(&nic), rung);
                if recover {
                    nic.net(|n, bus| match refusal {
                        Refusal::FeaturesOk => n.refuse_features_ok(false),
                        Refusal::FeatureWithdrawn => n.set_offered_features(DEFAULT_FEATURES),
                        Refusal::ControlUnanswered => {
                            let control = if pairs > 1 { 2 * pairs } else { 2 };
                            n.set_stalled(bus, control, false)
                        }
                    });
                    assert_eq!(
                        check_for_hang(&nic),
                        vec![(sys::NDIS_STATUS_SUCCESS, false)],
                        "{refusal:?}: the next check recovers"
                    );
                    assert_configured(&nic, pairs);
                    traffic(&nic, 41);
                }
                nic.stop();
            }
        }
    }
}
}

both_builds! {
/// Surprise removal is not a reset: registers reading all ones stay "removed", check-for-hang
/// does not ask for a reset, sends keep failing with ADAPTER_REMOVED.
fn a_removed_device_is_not_reset(build: Build) {
    for (pairs, resources) in grants() {
        let nic = start(build, pairs, resources);
        traffic(&nic, 50);
        nic.net(|n, _| n.set_surprise_removed(true));
        assert!(
            check_for_hang(&nic).is_empty(),
            "no reset for a removed device"
        );
        assert!(
            sends_refused(&nic, 3)
                .iter()
                .all(|&s| s == sys::NDIS_STATUS_ADAPTER_REMOVED)
        );
        assert!(check_for_hang(&nic).is_empty());
        nic.stop();
    }
}
}

both_builds! {
/// The MAC address given with MAC_ADDR_SET at initialize (here the `NetworkAddress` keyword) is
/// given again after a reset.
fn a_locally_set_mac_address_is_replayed_after_a_reset(build: Build) {
    let emu = ndis_emu::Emulator::new(nic::config(4));
    emu.set_keyword("NetworkAddress", "02AABBCCDDEE");
    let nic = nic::start_with(build, emu, 1, InterruptResources::msix(4), |_| {}).expect("initialize");
    let local = [0x02, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE];
    assert_eq!(nic.net(|n, _| n.mac_address_set()), Some(local));
    // Promiscuous: the test frames are not addressed to `local`.
    configure(&nic);
    inject(&nic, Fault::SelfReset, true);
    assert_eq!(
        nic.net(|n, _| n.mac_address_set()),
        None,
        "the device forgot it"
    );
    assert_eq!(
        check_for_hang(&nic),
        vec![(sys::NDIS_STATUS_SUCCESS, false)]
    );
    assert_eq!(nic.net(|n, _| n.mac_address_set()), Some(local));
    assert_ne!(local, MAC);
    traffic(&nic, 60);
    nic.stop();
}
}
