//! `NdisAdapter::indicate_link_state` from anywhere, initialize included: a report made while
//! initialize runs (as a DPC on another processor may) is not lost to the state `AdapterInfo`
//! carries; after initialize, NDIS gets each change once and in order.
#![cfg(not(windows))]

use std::cell::Cell;

use ndis::driver::MiniportDriver;
use ndis::irql::{DispatchOrBelow, Passive};
use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced};
use ndis::nbl::{Returned, SendLists};
use ndis::{NdisVersion, Status};
use ndis_emu::{AdapterId, Config, Emulator, InterruptResources};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

const SPEED: u64 = 1_000_000_000;

thread_local! {
    /// Whether initialize sees a link-down report race its own (stale) "up" reading (per test
    /// thread: the emulator runs driver code on the thread that drives it).
    static RACE_IN_INITIALIZE: Cell<bool> = const { Cell::new(false) };
}

struct Driver;
struct Adapter;

impl MiniportDriver for Driver {
    const NDIS_VERSIONS: ndis::NdisVersions = ndis::NdisVersions::exactly(NdisVersion::V6_20);
    const DRIVER_VERSION: (u8, u8) = (1, 0);
    type Adapter = Adapter;
    fn initialize(&'static self, init: &mut Init<'_>) -> Result<(Adapter, AdapterInfo), Status> {
        // The driver read "up" from its device...
        let info = AdapterInfo::ethernet([2, 0, 0, 0, 0, 1], 1500, SPEED, true);
        if RACE_IN_INITIALIZE.get() {
            // ...and then the link went down and the config-change DPC reported it before
            // initialize returned.
            init.adapter()
                .indicate_link_state(false, SPEED, init.passive());
        }
        Ok((Adapter, info))
    }
}

/// A private OID whose set reports link states, one byte each (1: up), as DPCs would.
const OID_REPORT_LINK: u32 = 0xFF01_0001;
/// A private OID whose set is a configuration change seen by `link_changed`: the device reads
/// data[0] first, and a second change arrives (from "another processor") during that read,
/// after which the device reads data[1].
const OID_LINK_CHANGED_TWICE: u32 = 0xFF01_0002;

thread_local! {
    static READS: Cell<u32> = const { Cell::new(0) };
}

impl Miniport for Adapter {
    fn quiesce(&self, _: &NdisAdapter, _: &mut Passive<'_>) -> Quiesced {
        Quiesced::device_stopped()
    }
    const EXTRA_OIDS: &'static [u32] = &[OID_REPORT_LINK, OID_LINK_CHANGED_TWICE];

    fn oid_set(
        &self,
        adapter: &NdisAdapter,
        oid: u32,
        data: &mut ndis::oid::SetData<'_>,
        request: &mut ndis::oid::SetRequest<'_>,
    ) -> Result<usize, Status> {
        let passive = request.passive();
        let data = data.bytes();
        if oid == OID_LINK_CHANGED_TWICE {
            let mut device_link = data[0] == 1;
            let read = || {
                READS.set(READS.get() + 1);
                let now = device_link;
                if READS.get() == 1 {
                    // The link changes again while this read is under way, and that change's
                    // DPC reports on another processor: it must not read or report itself.
                    device_link = data[1] == 1;
                    adapter.link_changed(|| panic!("a second reader ran"), passive);
                }
                (now, SPEED)
            };
            adapter.link_changed(read, passive);
            return Ok(data.len());
        }
        if oid != OID_REPORT_LINK {
            return Err(Status::NOT_SUPPORTED);
        }
        for &up in data {
            adapter.indicate_link_state(up == 1, SPEED, passive);
        }
        Ok(data.len())
    }

    fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, _: &mut DispatchOrBelow<'_>) {
        lists.each(|_| Status::SUCCESS);
    }
    fn return_receives(&self, _: &NdisAdapter, _: &mut Returned<'_>, _: &mut DispatchOrBelow<'_>) {}
}

ndis::miniport_driver!(Driver = Driver);

fn connected(emu: &Emulator, a: AdapterId) -> bool {
    let r = emu.oid_query(a, sys::OID_GEN_MEDIA_CONNECT_STATUS, 4);
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    u32::from_le_bytes(r.data[..4].try_into().unwrap()) == 0 // NdisMediaStateConnected
}

/// The link states NDIS was told by indications, in order (true: connected).
fn link_indications(emu: &Emulator, a: AdapterId) -> Vec<bool> {
    emu.status_indications(a)
        .into_iter()
        .filter(|(code, _)| *code == sys::NDIS_STATUS_LINK_STATE)
        .map(|(_, buffer)| {
            let state = i32::from_le_bytes(buffer[4..8].try_into().unwrap());
            state == sys::MediaConnectStateConnected
        })
        .collect()
}

fn run(race: bool, after_initialize: impl FnOnce(&Emulator, AdapterId)) {
    RACE_IN_INITIALIZE.set(race);
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
    let a = emu.add_adapter(InterruptResources::None).expect("init");
    after_initialize(&emu, a);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

#[test]
fn a_report_during_initialize_wins_over_the_adapter_info() {
    run(true, |emu, a| {
        // The general attributes carried the report; nothing needed indicating.
        assert!(!connected(emu, a));
        assert_eq!(link_indications(emu, a), []);
    });
    run(false, |emu, a| {
        assert!(connected(emu, a));
        assert_eq!(link_indications(emu, a), []);
    });
}

#[test]
fn after_initialize_each_change_is_indicated_once_in_order() {
    run(false, |emu, a| {
        // Up (no change: nothing sent), down, down again (dropped), up.
        let r = emu.oid_set(a, OID_REPORT_LINK, &[1, 0, 0, 1]);
        assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
        assert_eq!(link_indications(emu, a), [false, true]);
        assert!(connected(emu, a));
    });
}

#[test]
fn a_change_during_a_link_read_is_read_again_by_the_same_reader() {
    run(false, |emu, a| {
        READS.set(0);
        // The first read sees down; the link comes back up during it.
        let r = emu.oid_set(a, OID_LINK_CHANGED_TWICE, &[0, 1]);
        assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
        assert_eq!(READS.get(), 2, "read again after the change");
        assert_eq!(link_indications(emu, a), [false, true]);
        assert!(connected(emu, a));
    });
}
