//! vionet through what a real machine does to an adapter besides running it (the lifecycle
//! issue): surprise removal with traffic in flight, and sleep and hibernation cycles, under
//! MSI-X (2N+2, 2 and 1 messages) and the line, with 1 and 4 queue pairs.
#![cfg(not(windows))]

use ndis_emu::InterruptResources;
use ndis_sys as sys;

/// Counts the driver's heap allocations so unload can find leaks (see ndis_emu::DriverHeap).
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

#[path = "support/nic.rs"]
mod nic;

use nic::{Nic, check_tx, frame, start};

/// The interrupt grants the lifecycle is tried under, for `pairs` queue pairs.
fn grants(pairs: u16) -> [InterruptResources; 4] {
    [
        InterruptResources::msix(2 * pairs as u32 + 2),
        InterruptResources::msix(2),
        InterruptResources::msix(1),
        InterruptResources::line(),
    ]
}

/// `n` frames injected on pair 0 come up byte-exact (all of them returned afterwards).
fn check_rx(nic: &Nic, seed: u8, n: usize) {
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| frame(seed.wrapping_add(i as u8), 60 + 37 * i))
        .collect();
    let got = nic.receive(&frames, ndis_emu::Emulator::received_frames);
    assert!(got == frames, "received frames differ from those injected");
}

#[test]
fn item4_surprise_removal_with_traffic_in_flight() {
    for pairs in [1u16, 4] {
        for grant in grants(pairs) {
            let nic = start(pairs, grant);
            let tx: Vec<Vec<u8>> = (0..10).map(|i| frame(i, 100 + i as usize)).collect();
            check_tx(&nic, &tx);
            check_rx(&nic, 0, 10);
            // In flight: receives the protocol holds, frames on the device's ring not yet
            // indicated, and a packet-filter set whose control command the device sits on.
            nic.net(|n, bus| {
                for i in 0..5 {
                    n.inject_frame(bus, 0, &frame(50 + i, 80));
                }
            });
            nic.emu.run_dpcs();
            let held = nic.emu.held_receives(nic.adapter);
            assert_eq!(held, 5, "{grant:?}");
            nic.net(|n, bus| n.inject_frame(bus, 0, &frame(60, 80)));
            // The control queue follows every pair the device has.
            let control_queue = 2 * nic.device_pairs;
            nic.net(|n, bus| n.set_stalled(bus, control_queue, true));
            let promiscuous = sys::NDIS_PACKET_TYPE_PROMISCUOUS.to_le_bytes();
            let r = nic.emu.oid_set(
                nic.adapter,
                sys::OID_GEN_CURRENT_PACKET_FILTER,
                &promiscuous,
            );
            assert_eq!(r.status, sys::NDIS_STATUS_PENDING, "{grant:?}");
            // Gone: registers read all ones; then NDIS tells the driver.
            nic.emu.remove_device(nic.adapter);
            nic.emu.notify_surprise_removal(nic.adapter);
            let done = nic
                .emu
                .oid_completion()
                .expect("the pended set is completed");
            assert_eq!(done.status, sys::NDIS_STATUS_NOT_ACCEPTED, "{grant:?}");
            let r = nic.emu.oid_query(nic.adapter, sys::OID_GEN_LINK_SPEED, 4);
            assert_eq!(r.status, sys::NDIS_STATUS_NOT_ACCEPTED);
            nic.emu.send(nic.adapter, &[&frame(1, 64)]);
            assert_eq!(
                nic.emu.send_statuses(),
                [sys::NDIS_STATUS_ADAPTER_REMOVED],
                "{grant:?}"
            );
            // Interrupts that were on their way find a device the driver no longer touches
            // (a register access now would be a bug check).
            nic.emu.run_dpcs();
            // NDIS pauses (the protocol returns what it held) and halts; unload finds no leak.
            assert_eq!(nic.emu.pause(nic.adapter), sys::NDIS_STATUS_SUCCESS);
            nic.emu
                .halt(nic.adapter, sys::NdisHaltDeviceSurpriseRemoved);
            nic.emu.unload();
        }
    }
}
