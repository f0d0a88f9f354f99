//! Hang detection: a driver that sets `CHECK_FOR_HANG_SECONDS` gets `check_for_hang` on NDIS's
//! period (rounded to 2 s) while it runs, and `reset` at DISPATCH_LEVEL when a check says it
//! hangs; its result reaches NDIS. A driver that does not set it registers neither handler.
#![cfg(not(windows))]

use std::cell::Cell;
use std::time::Duration;

use ndis::driver::MiniportDriver;
use ndis::irql::{Dispatch, DispatchOrBelow, Passive};
use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced, ResetError};
use ndis::nbl::{Returned, SendLists};
use ndis::sync::SpinLock;
use ndis::{NdisVersion, Status};
use ndis_emu::{Config, Emulator, InterruptResources};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

thread_local! {
    /// What the next check answers, and what the next reset returns.
    static HUNG: Cell<bool> = const { Cell::new(false) };
    static RESET_RESULT: Cell<Result<bool, Status>> = const { Cell::new(Ok(false)) };
    static RESETS: Cell<u32> = const { Cell::new(0) };
}

struct Watched;
struct WatchedAdapter {
    /// Something the reset must lock, as a real one would (a queue).
    queue: SpinLock<u32>,
}

impl MiniportDriver for Watched {
    const NDIS_VERSIONS: ndis::NdisVersions = ndis::NdisVersions::exactly(NdisVersion::V6_20);
    const DRIVER_VERSION: (u8, u8) = (1, 0);
    type Adapter = WatchedAdapter;
    fn initialize(
        &'static self,
        _: &mut Init<'_>,
    ) -> Result<(WatchedAdapter, AdapterInfo), Status> {
        let info = AdapterInfo::ethernet([2, 0, 0, 0, 0, 1], 1500, 1_000_000_000, true);
        Ok((
            WatchedAdapter {
                queue: SpinLock::new(0),
            },
            info,
        ))
    }
}

impl Miniport for WatchedAdapter {
    fn quiesce(&self, _: &NdisAdapter, _: &mut Passive<'_>) -> Quiesced {
        Quiesced::device_stopped()
    }
    /// Rounded up to 4 s by NDIS.
    const CHECK_FOR_HANG_SECONDS: Option<u32> = Some(3);

    fn check_for_hang(&self, _: &NdisAdapter, _: &mut Passive<'_>) -> bool {
        HUNG.get()
    }

    fn reset(&self, _: &NdisAdapter, dispatch: &mut Dispatch<'_>) -> Result<bool, ResetError> {
        self.queue.with(dispatch, |q, _| *q += 1);
        RESETS.set(RESETS.get() + 1);
        HUNG.set(false);
        Ok(RESET_RESULT.get()?)
    }

    fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, _: &mut DispatchOrBelow<'_>) {
        lists.each(|_| Status::SUCCESS);
    }
    fn return_receives(&self, _: &NdisAdapter, _: &mut Returned<'_>, _: &mut DispatchOrBelow<'_>) {}
}

ndis::miniport_driver!(Watched = Watched);

#[test]
fn checks_come_on_the_rounded_period_and_a_hang_gets_a_reset() {
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
    let a = emu.add_adapter(InterruptResources::None).expect("init");
    // Paused after initialize: not checked.
    emu.advance_time(Duration::from_secs(5));
    assert_eq!(emu.hang_checks(a), 0);
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    // The next check (every 4 s from initialize) is at 8 s.
    emu.advance_time(Duration::from_secs(2));
    assert_eq!(emu.hang_checks(a), 0);
    emu.advance_time(Duration::from_secs(1));
    assert_eq!(emu.hang_checks(a), 1);
    assert_eq!(emu.resets(a), []);

    HUNG.set(true);
    RESET_RESULT.set(Ok(true));
    emu.advance_time(Duration::from_secs(4));
    assert_eq!((emu.hang_checks(a), RESETS.get()), (2, 1));
    assert_eq!(emu.resets(a), [(sys::NDIS_STATUS_SUCCESS, true)]);

    HUNG.set(true);
    RESET_RESULT.set(Err(Status(sys::NDIS_STATUS_HARD_ERRORS)));
    emu.advance_time(Duration::from_secs(8));
    assert_eq!((emu.hang_checks(a), RESETS.get()), (4, 2));
    assert_eq!(emu.resets(a), [(sys::NDIS_STATUS_HARD_ERRORS, false)]);

    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}
