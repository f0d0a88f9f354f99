//! `Miniport::send` gets the whole chain of one `MiniportSendNetBufferLists` call: every list
//! is completed exactly once with the status the driver gave it, lists the driver left without
//! one fail with `NDIS_STATUS_FAILURE`, and the statistics count each list once.
#![cfg(not(windows))]

use std::sync::atomic::{AtomicU32, Ordering};

use ndis::driver::MiniportDriver;
use ndis::irql::{DispatchOrBelow, Passive};
use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced};
use ndis::nbl::{Returned, SendLists};
use ndis::{NdisVersion, Status};
use ndis_emu::{AdapterId, Config, Emulator, InterruptResources};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

/// What the adapter's `send` does with the chain.
static MODE: AtomicU32 = AtomicU32::new(0);
const VISIT_ALL: u32 = 0;
const VISIT_NONE: u32 = 1;
const VISIT_TWICE: u32 = 2;

struct Driver;
struct Adapter;

impl MiniportDriver for Driver {
    const NDIS_VERSIONS: ndis::NdisVersions = ndis::NdisVersions::exactly(NdisVersion::V6_20);
    const DRIVER_VERSION: (u8, u8) = (1, 0);
    type Adapter = Adapter;
    fn initialize(&'static self, _: &mut Init<'_>) -> Result<(Adapter, AdapterInfo), Status> {
        let info = AdapterInfo::ethernet([2, 0, 0, 0, 0, 1], 1500, 1_000_000_000, true);
        Ok((Adapter, info))
    }
}

impl Miniport for Adapter {
    fn quiesce(&self, _: &NdisAdapter, _: &mut Passive<'_>) -> Quiesced {
        Quiesced::device_stopped()
    }
    fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, _: &mut DispatchOrBelow<'_>) {
        match MODE.load(Ordering::Relaxed) {
            VISIT_ALL => {
                // Every other list is refused for lack of room; the others "reach the wire".
                let mut n = 0;
                lists.each(|list| {
                    n += 1;
                    let mut out = [0u8; 1514];
                    if n % 2 == 0 {
                        return Status::RESOURCES;
                    }
                    list.frames().for_each(|f| {
                        f.copy_to(&mut out).expect("a frame that fits");
                    });
                    Status::SUCCESS
                });
            }
            VISIT_NONE => {}
            _ => {
                lists.each(|_| Status::INVALID_LENGTH);
                lists.each(|_| panic!("a second visit"));
            }
        }
    }
    fn return_receives(&self, _: &NdisAdapter, _: &mut Returned<'_>, _: &mut DispatchOrBelow<'_>) {}
}

ndis::miniport_driver!(Driver = Driver);

fn start(emu: &Emulator) -> AdapterId {
    assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
    let a = emu.add_adapter(InterruptResources::None).expect("init");
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    a
}

fn statistics(emu: &Emulator, a: AdapterId) -> (u64, u64, u64) {
    let s = emu.oid_query(a, sys::OID_GEN_STATISTICS, 152);
    assert_eq!(s.status, sys::NDIS_STATUS_SUCCESS);
    let field = |i: usize| u64::from_le_bytes(s.data[8 + 8 * i..16 + 8 * i].try_into().unwrap());
    // ifHCOutUcastPkts, ifOutErrors, ifOutDiscards (NDIS_STATISTICS_INFO order).
    (field(7), field(10), field(11))
}

fn send(emu: &Emulator, a: AdapterId, n: usize) -> Vec<sys::NDIS_STATUS> {
    let frame: Vec<u8> = (0..60u8).collect();
    emu.send(a, &vec![frame.as_slice(); n]);
    emu.send_statuses()
}

#[test]
fn every_list_of_a_chain_gets_the_status_the_driver_gave_it_once() {
    let emu = Emulator::new(Config::default());
    let a = start(&emu);
    use sys::{NDIS_STATUS_RESOURCES as R, NDIS_STATUS_SUCCESS as S};

    MODE.store(VISIT_ALL, Ordering::Relaxed);
    assert_eq!(send(&emu, a, 5), [S, R, S, R, S]);
    assert_eq!(statistics(&emu, a), (3, 0, 2));

    MODE.store(VISIT_NONE, Ordering::Relaxed);
    assert_eq!(send(&emu, a, 3), [sys::NDIS_STATUS_FAILURE; 3]);
    assert_eq!(statistics(&emu, a), (3, 3, 2));

    MODE.store(VISIT_TWICE, Ordering::Relaxed);
    assert_eq!(send(&emu, a, 2), [sys::NDIS_STATUS_INVALID_LENGTH; 2]);
    assert_eq!(statistics(&emu, a), (3, 5, 2));

    // No CHECK_FOR_HANG_SECONDS: no CheckForHang handler registered, never called.
    emu.advance_time(std::time::Duration::from_secs(10));
    assert_eq!(emu.hang_checks(a), 0);

    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}
