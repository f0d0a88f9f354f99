//! Receives lent into a chain kept past its pool's borrow (`HeldChain`) go up only through a
//! chain of their own pool, and a chain of receives of several pools comes back run by run.
#![cfg(not(windows))]

use std::cell::RefCell;
use std::sync::Mutex;

use ndis::driver::MiniportDriver;
use ndis::irql::{DispatchOrBelow, Passive};
use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced};
use ndis::nbl::{HeldChain, ReceivePool, Returned, RxFrame, SendLists};
use ndis::{NdisVersion, Status};
use ndis_emu::{AdapterId, Config, Emulator, InterruptResources};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

const BUFFER: usize = 2048;

thread_local! {
    /// What the send path saw: buffers of pool B a held chain of pool A refused, whether
    /// appending B's held chain to a chain of A was refused, and a released buffer claimed
    /// again.
    static SEEN: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
    /// The runs the return handler took: (pool, lists).
    static RUNS: RefCell<Vec<(char, usize)>> = const { RefCell::new(Vec::new()) };
}

struct Driver;
struct Adapter {
    a: ReceivePool,
    b: ReceivePool,
    held_a: Mutex<HeldChain>,
    held_b: Mutex<HeldChain>,
}

impl MiniportDriver for Driver {
    const NDIS_VERSIONS: ndis::NdisVersions = ndis::NdisVersions::exactly(NdisVersion::V6_20);
    const DRIVER_VERSION: (u8, u8) = (1, 0);
    type Adapter = Adapter;
    fn initialize(&'static self, init: &mut Init<'_>) -> Result<(Adapter, AdapterInfo), Status> {
        let dma = init.register_dma(BUFFER as u32)?;
        let a = ReceivePool::new(init, &dma, BUFFER, 8)?;
        let b = ReceivePool::new(init, &dma, BUFFER, 8)?;
        let info = AdapterInfo::ethernet([2, 0, 0, 0, 0, 1], 1500, 1_000_000_000, true);
        let adapter = Adapter {
            held_a: Mutex::new(a.held()),
            held_b: Mutex::new(b.held()),
            a,
            b,
        };
        Ok((adapter, info))
    }
}

fn seen(what: &'static str) {
    SEEN.with(|s| s.borrow_mut().push(what));
}

impl Adapter {
    /// Frame `data` in a claimed buffer of `pool`.
    fn frame(pool: &ReceivePool, data: &[u8]) -> RxFrame {
        let index = pool.claim_any(0).expect("a free buffer");
        assert!(pool.write(index, 0, data));
        RxFrame {
            index,
            offset: 0,
            length: data.len(),
            ..RxFrame::default()
        }
    }
}

impl Miniport for Adapter {
    fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, irql: &mut DispatchOrBelow<'_>) {
        lists.each(|nbl| {
            let mut scratch = [0u8; BUFFER];
            let Some(len) = nbl.frames().next().and_then(|f| f.copy_to(&mut scratch)) else {
                return Status::SUCCESS;
            };
            let data = &scratch[..len];
            let mut held_a = self.held_a.lock().unwrap();
            let mut held_b = self.held_b.lock().unwrap();

            // A frame given back from a held chain is free again.
            let mut chain_a = self.a.chain();
            let f = Self::frame(&self.a, data);
            chain_a.push_held(&mut held_a, &f, |_| seen("a refused"));
            assert_eq!(held_a.len(), 1);
            assert!(self.a.is_lent(f.index));
            assert!(!self.b.release_held(&mut held_a), "another pool's chain");
            assert!(self.a.release_held(&mut held_a));
            assert!(held_a.is_empty());
            if self.a.claim(f.index) {
                seen("released");
                self.a.release(f.index);
            }

            // A's frame held, then indicated through A's chain; B's refused by A's held
            // chain, and B's held chain refused by A's chain.
            let first = Self::frame(&self.a, data);
            chain_a.push_held(&mut held_a, &first, |_| seen("a refused"));
            let mut chain_b = self.b.chain();
            let other = Self::frame(&self.b, data);
            chain_b.push_held(&mut held_a, &other, |i| {
                assert_eq!(i, other.index);
                seen("b refused by a's held chain");
            });
            assert_eq!(held_a.len(), 1);
            chain_b.push(&other, |_| seen("b refused"));
            let stray = Self::frame(&self.b, data);
            chain_b.push_held(&mut held_b, &stray, |_| seen("b refused"));
            if !chain_a.append_held(&mut held_b) {
                seen("b's held chain refused by a's chain");
            }
            assert!(chain_a.append_held(&mut held_a));
            assert!(held_a.is_empty());
            assert_eq!(chain_a.len(), 1);
            assert!(chain_b.append_held(&mut held_b));
            // Up in three indications: A, then B (two), then A.
            assert_eq!(chain_a.indicate(irql, |_| seen("a not indicated")), 1);
            assert_eq!(chain_b.indicate(irql, |_| seen("b not indicated")), 2);
            let last = Self::frame(&self.a, data);
            self.a.indicate(&[last], irql, |_| seen("a not indicated"));
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
        _: &mut DispatchOrBelow<'_>,
    ) {
        loop {
            let (name, pool) = if self.a.owns_first(returned) {
                ('a', &self.a)
            } else if self.b.owns_first(returned) {
                ('b', &self.b)
            } else {
                break;
            };
            let n = pool.reclaim_run(returned, |i| pool.release(i));
            RUNS.with(|r| r.borrow_mut().push((name, n)));
        }
        assert!(returned.is_empty(), "every list taken by its run");
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
fn held_receives_go_up_only_through_their_pool_and_come_back_run_by_run() {
    let frame = [0xFFu8; 64];
    let emu = Emulator::new(Config::default());
    let a = start(&emu);
    emu.send(a, &[&frame]);
    assert_eq!(emu.received_frames(a), vec![frame.to_vec(); 4]);
    assert_eq!(
        SEEN.with(|s| s.take()),
        [
            "released",
            "b refused by a's held chain",
            "b's held chain refused by a's chain"
        ]
    );
    emu.return_receives(a);
    assert_eq!(RUNS.with(|r| r.take()), [('a', 1), ('b', 2), ('a', 1)]);
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}
