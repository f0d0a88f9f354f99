//! A driver registered as NDIS 6.0: its interrupt DPC's third argument is `NdisReserved1`, not
//! the receive throttle parameters (NDIS 6.20 and later), and the framework must not touch it
//! (item 11 of the soundness issue). The emulator hands such a driver a reserved block and
//! bug-checks any write through it.
#![cfg(not(windows))]

use std::cell::Cell;

use ndis::driver::MiniportDriver;
use ndis::interrupt::{
    DpcContext, InterruptHandler, InterruptRegistration, IsrContext, IsrOutcome,
};
use ndis::irql::{DispatchOrBelow, Passive};
use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced};
use ndis::nbl::{Returned, SendLists};
use ndis::{NdisVersion, Status};
use ndis_emu::{Config, Emulator, InterruptResources};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

thread_local! {
    static DPCS: Cell<u32> = const { Cell::new(0) };
    /// The first DPC asks for more work (the framework then requeues it itself).
    static MORE: Cell<bool> = const { Cell::new(false) };
}

struct Nic;
impl InterruptHandler for Nic {
    type Queue = ();
    const MSI_SUPPORTED: bool = true;
    fn queues(&self) -> &[()] {
        &[()]
    }
    fn isr(&self, _: &(), _: &IsrContext<'_>) -> IsrOutcome {
        IsrOutcome::QueueDpc
    }
    fn dpc(&self, _: &(), ctx: &mut DpcContext<'_>) {
        DPCS.set(DPCS.get() + 1);
        // No throttle before 6.20: the budget is unbounded.
        assert!(!ctx.budget().is_throttled());
        if MORE.replace(false) {
            ctx.budget().request_more();
        }
    }
}

struct Driver;
struct Adapter {
    _interrupt: InterruptRegistration<Nic>,
}

impl MiniportDriver for Driver {
    const NDIS_VERSIONS: ndis::NdisVersions = ndis::NdisVersions::exactly(NdisVersion::V6_0);
    const DRIVER_VERSION: (u8, u8) = (1, 0);
    type Adapter = Adapter;
    fn initialize(&'static self, init: &mut Init<'_>) -> Result<(Adapter, AdapterInfo), Status> {
        let interrupt = init.register_interrupt(Nic)?;
        let info = AdapterInfo::ethernet([2, 0, 0, 0, 0, 1], 1500, 1_000_000_000, true);
        Ok((
            Adapter {
                _interrupt: interrupt,
            },
            info,
        ))
    }
}

impl Miniport for Adapter {
    fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, _: &mut DispatchOrBelow<'_>) {
        lists.each(|_| Status::SUCCESS);
    }
    fn return_receives(&self, _: &NdisAdapter, _: &mut Returned<'_>, _: &mut DispatchOrBelow<'_>) {}
    fn quiesce(&self, _: &NdisAdapter, _: &mut Passive<'_>) -> Quiesced {
        Quiesced::device_stopped()
    }
}

ndis::miniport_driver!(Driver = Driver);

#[test]
fn item11_an_ndis_6_0_dpc_never_touches_the_reserved_argument() {
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
    let a = emu.add_adapter(InterruptResources::msix(1)).expect("init");
    DPCS.set(0);
    emu.fire_message(emu.device_of(a), 0);
    emu.run_dpcs();
    assert_eq!(DPCS.get(), 1);
    // Asking for more: requeued on this processor by the framework, not through the flag.
    MORE.set(true);
    emu.fire_message(emu.device_of(a), 0);
    emu.run_dpcs();
    assert_eq!(DPCS.get(), 3);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}
