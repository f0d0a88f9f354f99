//! `MapPool`: mappings take the pool's requests while any is free, and allocate their own once
//! all are in use (never failing a send for it); every request, pooled or allocated, comes back
//! when its send completes, and nothing is left behind: each scatter/gather list is freed and
//! the driver's heap is empty again at unload. With NDIS's callback inline and deferred.
#![cfg(not(windows))]

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndis::driver::MiniportDriver;
use ndis::heap::Shared;
use ndis::irql::{Dispatch, DispatchOrBelow, Passive};
use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced};
use ndis::nbl::{ListMapping, MapHook, MapPool, MappedSend, Returned, SendCompletion, SendLists};
use ndis::{NdisVersion, Status};
use ndis_emu::{Config, Emulator, InterruptResources, SgCallback};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

/// Requests in the pool: one, so the second mapping in flight allocates.
const POOLED: usize = 1;
/// Free requests of the pool, as the last `send` saw them after mapping its lists.
static AVAILABLE: AtomicUsize = AtomicUsize::new(usize::MAX);
/// What `send` does: map its lists and keep them, or complete its lists and every mapped send
/// (the "device" is done with them).
static COMPLETE: AtomicUsize = AtomicUsize::new(0);

struct Driver;

/// Where mapped sends wait until the test lets the adapter complete them.
struct Hook {
    mapped: Mutex<Vec<MappedSend>>,
}

impl MapHook for Hook {
    fn mapped(&self, _: &Shared<Self>, send: MappedSend, _: &mut Dispatch<'_>) {
        self.mapped.lock().unwrap().push(send);
    }
}

struct Adapter {
    pool: MapPool,
    hook: Shared<Hook>,
}

impl MiniportDriver for Driver {
    const NDIS_VERSIONS: ndis::NdisVersions = ndis::NdisVersions::exactly(NdisVersion::V6_20);
    const DRIVER_VERSION: (u8, u8) = (1, 0);
    type Adapter = Adapter;
    fn initialize(&'static self, init: &mut Init<'_>) -> Result<(Adapter, AdapterInfo), Status> {
        let dma = init.register_dma(65536)?;
        let pool = MapPool::new(&dma, POOLED, init.passive())?;
        let hook = Shared::try_new(
            Hook {
                mapped: Mutex::new(Vec::new()),
            },
            init.passive(),
        )?;
        let info = AdapterInfo::ethernet([2, 0, 0, 0, 0, 1], 1500, 1_000_000_000, true);
        Ok((Adapter { pool, hook }, info))
    }
}

impl Miniport for Adapter {
    fn quiesce(&self, _: &NdisAdapter, _: &mut Passive<'_>) -> Quiesced {
        Quiesced::device_stopped()
    }

    /// Maps every list and keeps it, or (`COMPLETE`) completes its lists and every mapped send.
    fn send(
        &self,
        adapter: &NdisAdapter,
        lists: &mut SendLists<'_>,
        irql: &mut DispatchOrBelow<'_>,
    ) {
        if COMPLETE.load(Ordering::SeqCst) != 0 {
            lists.each(|_| Status::SUCCESS);
            let mut done = SendCompletion::new(adapter);
            for m in self.hook.mapped.lock().unwrap().drain(..) {
                m.complete(&mut done, Status::SUCCESS);
            }
            done.complete(irql);
            AVAILABLE.store(self.pool.available(), Ordering::SeqCst);
            return;
        }
        lists.each(
            |list| match self.pool.map_list(list, &self.hook, 0, &*irql) {
                ListMapping::Mapped(send) => {
                    self.hook.mapped.lock().unwrap().push(send);
                    Status::PENDING
                }
                ListMapping::Deferred => Status::PENDING,
                ListMapping::NotHeld => Status::RESOURCES,
                ListMapping::Failed(..) => panic!("the emulator maps every list"),
            },
        );
        AVAILABLE.store(self.pool.available(), Ordering::SeqCst);
    }

    fn return_receives(&self, _: &NdisAdapter, _: &mut Returned<'_>, _: &mut DispatchOrBelow<'_>) {}
}

ndis::miniport_driver!(Driver = Driver);

#[test]
fn mappings_past_the_pool_allocate_and_every_request_comes_back() {
    for how in [SgCallback::Inline, SgCallback::Deferred] {
        let emu = Emulator::new(Config {
            cpus: 2,
            ..Config::default()
        });
        emu.set_sg_callback(how);
        assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
        let a = emu.add_adapter(InterruptResources::None).expect("init");
        assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
        let frames: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 200 + usize::from(i)]).collect();
        for round in 0..3 {
            COMPLETE.store(0, Ordering::SeqCst);
            let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
            emu.send(a, &refs);
            emu.run_dpcs();
            // Three in flight, one request in the pool: it is in use, the others allocated.
            assert_eq!(AVAILABLE.load(Ordering::SeqCst), 0, "{how:?} round {round}");
            assert_eq!(emu.sg_lists().2, 3, "{how:?}: three lists mapped and held");
            assert!(emu.send_completions().is_empty());
            // The "device" is done: the three complete, with the list that says so.
            COMPLETE.store(1, Ordering::SeqCst);
            emu.send(a, &[&frames[0]]);
            let done = emu.send_completions();
            assert_eq!(done.len(), 4, "{how:?} round {round}");
            assert!(done.iter().all(|(_, s)| *s == sys::NDIS_STATUS_SUCCESS));
            let mut sent: Vec<Vec<u8>> = done.into_iter().map(|(f, _)| f).collect();
            sent.sort();
            let mut want = frames.clone();
            want.push(frames[0].clone());
            want.sort();
            assert_eq!(sent, want, "{how:?}: each list completed once");
            assert_eq!(emu.sg_lists().2, 0, "{how:?}: every list freed");
            assert_eq!(
                AVAILABLE.load(Ordering::SeqCst),
                POOLED,
                "{how:?}: the request is back"
            );
        }
        assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
        emu.halt(a, sys::NdisHaltDeviceDisabled);
        emu.unload();
    }
}
