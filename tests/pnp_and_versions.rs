//! vionet's PnP handlers (the interrupt request it files before start, and the grant it gets)
//! and the NDIS version it registers on each Windows it supports, on the emulator.
#![cfg(not(windows))]

use ndis_emu::devices::virtio_net::{VirtioNet, VirtioNetConfig};
use ndis_emu::{Config, Emulator, FaultPlan, InterruptAsk, InterruptResources};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

#[macro_use]
#[path = "support/nic.rs"]
mod nic;

use nic::{Nic, check_tx, frame, start_with};

fn emulator(cpus: usize, runtime: u32) -> Emulator {
    Emulator::new(Config {
        cpus,
        ndis_runtime_version: runtime,
        ..Config::default()
    })
}

/// `(major << 16) | minor`, as `NdisGetVersion` returns it.
const fn os(minor: u32) -> u32 {
    0x0006_0000 | minor
}

/// Frames both ways on pair 0, byte-exact.
fn traffic(nic: &Nic) {
    check_tx(
        nic,
        &(0..20)
            .map(|i| frame(i, 60 + 37 * i as usize))
            .collect::<Vec<_>>(),
    );
    let sent: Vec<Vec<u8>> = (0..20)
        .map(|i| frame(100 + i, 64 + 41 * i as usize))
        .collect();
    let got = nic.receive(&sent, |e, a| e.received_frames(a));
    assert!(got == sent, "received frames differ from those injected");
}

both_builds! {
fn vionet_registers_the_newest_version_each_os_knows_and_runs_there(build: Build) {
    for (minor, revision) in [(20, 2), (30, 2), (50, 2), (85, 3), (89, 3)] {
        let emu = emulator(2, os(minor));
        let nic = start_with(build, emu, 2, InterruptResources::msix(6), |_| {})
            .expect("initialize");
        let registered = nic.emu.registered_driver().unwrap();
        assert_eq!(registered.ndis_version, (6, minor as u8), "OS 6.{minor}");
        assert_eq!(
            registered.characteristics_revision, revision,
            "OS 6.{minor}"
        );
        assert!(registered.pnp_handlers);
        // OID_GEN_DRIVER_VERSION: the NDIS version registered, major in the high byte.
        let q = nic
            .emu
            .oid_query(nic.adapter, sys::OID_GEN_DRIVER_VERSION, 2);
        assert_eq!(q.status, sys::NDIS_STATUS_SUCCESS);
        assert_eq!(
            q.data,
            (0x0600u16 | minor as u16).to_le_bytes(),
            "OS 6.{minor}"
        );
        assert_eq!(nic.net(|n, _| n.active_queue_pairs()), 2);
        traffic(&nic);
        nic.stop();
    }
}
}

both_builds! {
fn on_an_ndis_newer_than_it_knows_vionet_registers_its_newest(build: Build) {
    let emu = emulator(2, os(95));
    let nic =
        start_with(build, emu, 1, InterruptResources::msix(3), |_| {}).expect("initialize");
    assert_eq!(nic.emu.registered_driver().unwrap().ndis_version, (6, 89));
    traffic(&nic);
    nic.stop();
}
}

both_builds! {
fn an_ndis_older_than_the_minimum_fails_driver_entry_with_bad_version(build: Build) {
    for runtime in [os(1), os(0)] {
        let emu = emulator(2, runtime);
        assert_eq!(
            nic::load(&emu, build),
            sys::NDIS_STATUS_BAD_VERSION
        );
        assert_eq!(emu.registered_driver(), None, "nothing registered");
        emu.check_released();
    }
}
}

both_builds! {
fn vionet_asks_for_two_messages_per_pair_plus_one_each_pinned_to_its_pair(build: Build) {
    // (processors, *NumRssQueues, messages asked, processor of each message)
    let cases: [(usize, Option<&str>, u32, &[usize]); 4] = [
        (4, None, 9, &[0, 0, 1, 1, 2, 2, 3, 3, 0]),
        (2, None, 5, &[0, 0, 1, 1, 0]),
        (8, Some("3"), 7, &[0, 0, 1, 1, 2, 2, 3]),
        (1, None, 3, &[0, 0, 0]),
    ];
    for (cpus, rss, messages, processors) in cases {
        let emu = emulator(cpus, os(89));
        if let Some(v) = rss {
            emu.set_keyword("*NumRssQueues", v);
        }
        let nic = start_with(build, emu, 8, InterruptResources::msix(18), |_| {})
            .expect("initialize");
        let ask = nic.emu.interrupt_ask(nic.adapter).unwrap();
        assert_eq!(
            ask,
            InterruptAsk {
                messages,
                processors: processors.iter().map(|&c| Some(c)).collect(),
                line: true,
            },
            "{cpus} processors, *NumRssQueues {rss:?}"
        );
        // The table (18) and the platform allow more: PnP grants what was asked, each message
        // on its processor, and the driver runs one pair per two messages.
        assert_eq!(
            nic.emu.assigned_resources(nic.device),
            InterruptResources::MsiX {
                requested: 18,
                granted: messages
            }
        );
        assert_eq!(nic.emu.message_processors(nic.device), processors);
        assert_eq!(
            nic.net(|n, _| n.active_queue_pairs()) as u32,
            (messages - 1) / 2
        );
        traffic(&nic);
        nic.stop();
    }
}
}

both_builds! {
fn the_platform_limit_caps_the_grant_and_the_driver_plans_from_the_grant(build: Build) {
    for (limit, pairs) in [(3, 1), (2, 1), (1, 1), (7, 3)] {
        let emu = emulator(4, os(89));
        let resources = InterruptResources::MsiX {
            requested: 10,
            granted: limit,
        };
        let nic = start_with(build, emu, 4, resources, |_| {}).expect("initialize");
        assert_eq!(nic.emu.interrupt_ask(nic.adapter).unwrap().messages, 9);
        assert_eq!(
            nic.emu.assigned_resources(nic.device),
            InterruptResources::MsiX {
                requested: 10,
                granted: limit
            }
        );
        assert_eq!(
            nic.net(|n, _| n.active_queue_pairs()),
            pairs,
            "limit {limit}"
        );
        traffic(&nic);
        nic.stop();
    }
}
}

both_builds! {
fn the_pnp_handlers_come_in_order_and_remove_device_follows_halt(build: Build) {
    let emu = emulator(2, os(89));
    let nic =
        start_with(build, emu, 1, InterruptResources::msix(3), |_| {}).expect("initialize");
    assert_eq!(
        nic.emu.lifecycle(nic.adapter),
        [
            "MiniportAddDevice",
            "MiniportFilterResourceRequirements",
            "MiniportStartDevice",
            "MiniportInitializeEx"
        ]
    );
    assert_eq!(nic.emu.pause(nic.adapter), sys::NDIS_STATUS_SUCCESS);
    nic.emu.halt(nic.adapter, sys::NdisHaltDeviceDisabled);
    assert_eq!(
        nic.emu.lifecycle(nic.adapter)[4..],
        ["MiniportHaltEx", "MiniportRemoveDevice"]
    );
    // RemoveDevice released the framework's add-device context: unload finds no leak.
    nic.emu.unload();
    nic::assert_no_infallible_allocation(&nic.emu);
}
}

both_builds! {
fn a_line_device_is_left_to_its_line_and_a_failed_filter_allocation_fails_the_start(build: Build) {
    let emu = emulator(2, os(89));
    let nic =
        start_with(build, emu, 1, InterruptResources::line(), |_| {}).expect("initialize");
    let ask = nic.emu.interrupt_ask(nic.adapter).unwrap();
    assert_eq!((ask.messages, ask.line), (0, true));
    assert_eq!(
        nic.emu.assigned_resources(nic.device),
        InterruptResources::line()
    );
    traffic(&nic);
    nic.stop();

    // The framework's new list cannot be allocated: the filter fails with RESOURCES, PnP does
    // not start the device, and everything made so far is released (unload checks).
    let emu = Emulator::new(Config {
        cpus: 2,
        faults: FaultPlan {
            by_name: vec![("ExAllocatePoolWithTag".into(), None)],
            ..FaultPlan::default()
        },
        ..Config::default()
    });
    assert_eq!(nic::load(&emu, build), sys::STATUS_SUCCESS);
    let model = VirtioNet::new(VirtioNetConfig::new(1));
    let started = emu.add_adapter_with(InterruptResources::msix(3), Box::new(model));
    assert_eq!(started, Err(sys::NDIS_STATUS_RESOURCES));
    assert_eq!(
        emu.lifecycle(ndis_emu::AdapterId(0)),
        [
            "MiniportAddDevice",
            "MiniportFilterResourceRequirements",
            "MiniportRemoveDevice"
        ]
    );
    emu.unload();
    nic::assert_no_infallible_allocation(&emu);
}
}
