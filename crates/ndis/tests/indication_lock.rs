//! A driver that holds a spin lock across an indication, which its return handler also takes,
//! deadlocks on Windows as soon as a protocol returns the receive from inside the indication.
//! The emulator's `set_returns_during_indication` makes that happen, and the run stops with the
//! spin-lock bug check instead of hanging; the same driver passes while returns are deferred.
#![cfg(not(windows))]

use ndis::driver::MiniportDriver;
use ndis::irql::{DispatchOrBelow, Passive};
use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced};
use ndis::nbl::{ReceivePool, Returned, SendLists};
use ndis::sync::SpinLock;
use ndis::{NdisVersion, Status};
use ndis_emu::{AdapterId, Config, Emulator, InterruptResources, rule};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

const BUFFER: usize = 2048;

struct Driver;
struct Adapter {
    receive: ReceivePool,
    /// Taken by both paths; the mistake is holding it across `indicate`.
    lock: SpinLock<u64>,
}

impl MiniportDriver for Driver {
    const NDIS_VERSIONS: ndis::NdisVersions = ndis::NdisVersions::exactly(NdisVersion::V6_20);
    const DRIVER_VERSION: (u8, u8) = (1, 0);
    type Adapter = Adapter;
    fn initialize(&'static self, init: &mut Init<'_>) -> Result<(Adapter, AdapterInfo), Status> {
        let dma = init.register_dma(BUFFER as u32)?;
        let receive = ReceivePool::new(init, &dma, BUFFER, 8)?;
        let info = AdapterInfo::ethernet([2, 0, 0, 0, 0, 1], 1500, 1_000_000_000, true);
        let adapter = Adapter {
            receive,
            lock: SpinLock::new(0),
        };
        Ok((adapter, info))
    }
}

impl Miniport for Adapter {
    fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, irql: &mut DispatchOrBelow<'_>) {
        lists.each(|nbl| {
            let mut frames = Vec::new();
            let mut scratch = [0u8; BUFFER];
            for frame in nbl.frames() {
                let (Some(len), Some(index)) =
                    (frame.copy_to(&mut scratch), self.receive.claim_any(0))
                else {
                    continue;
                };
                assert!(self.receive.write(index, 0, &scratch[..len]));
                frames.push((index, 0, len));
            }
            self.lock.with(irql, |count, dispatch| {
                *count += 1;
                // Wrong: the protocol may return these before `indicate` comes back.
                self.receive
                    .indicate(&frames, dispatch, |i| self.receive.release(i));
            });
            Status::SUCCESS
        });
    }

    fn quiesce(&self, _: &NdisAdapter, _: &mut Passive<'_>) -> Quiesced {
        Quiesced::device_stopped()
    }

    fn return_receives(
        &self,
        _: &NdisAdapter,
        returned: &mut Returned<'_>,
        irql: &mut DispatchOrBelow<'_>,
    ) {
        self.lock.with(irql, |count, _| {
            *count += 1;
            self.receive.take_returned(returned, |_| {});
        });
    }
}

ndis::miniport_driver!(Driver = Driver);

fn start(emu: &Emulator) -> AdapterId {
    assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
    let a = emu.add_adapter(InterruptResources::None).expect("init");
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    a
}

#[test]
fn a_lock_held_across_an_indication_is_caught_when_the_protocol_returns_inside_it() {
    let frame = [0xFFu8; 64];

    // Deferred returns: the mistake goes unnoticed.
    let emu = Emulator::new(Config::default());
    let a = start(&emu);
    emu.send(a, &[&frame]);
    assert_eq!(emu.received_frames(a), [frame.to_vec()]);
    emu.return_receives(a);
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
    drop(emu);

    // Returns inside the indication: the return handler tries to take the lock its own
    // processor already holds.
    let emu = Emulator::new(Config::default());
    emu.set_returns_during_indication(true);
    let a = start(&emu);
    let b = emu.expect_bugcheck(|| emu.send(a, &[&frame]));
    assert_eq!((b.code, b.params[0]), (0xC4, rule::SPIN_LOCK));
    assert!(b.message.contains("already holds spin lock"), "{b}");
}
