//! A loopback Ethernet miniport: every frame sent is received back. No device, no interrupts,
//! no `unsafe`: the least a vendor writes on the framework — one [`MiniportDriver`] with its
//! `initialize`, one [`Miniport`] with `send` and `return_receives`, one `miniport_driver!` line.
//! The framework answers the general OIDs, keeps statistics, refuses sends while paused and
//! releases everything on halt.
#![cfg_attr(windows, no_std)]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use ndis::driver::MiniportDriver;
use ndis::irql::{DispatchOrBelow, Passive};
use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced};
use ndis::nbl::{ReceivePool, Returned, SendLists, SendNbl};
use ndis::{NdisVersion, NdisVersions, Status};

#[cfg(windows)]
use km_rt as _;
#[cfg(windows)]
#[global_allocator]
static ALLOCATOR: km_alloc::PoolAllocator<km_alloc::NonPagedPool> = km_alloc::PoolAllocator::new(
    km_alloc::NonPagedPool::new(km_alloc::PoolTag::new(*b"loop")),
);

/// A locally administered address (bit 1 of the first byte set).
pub const MAC: [u8; 6] = [0x02, 0x00, 0x4C, 0x4F, 0x4F, 0x50];
const MTU: usize = 1500;
const BUFFER: usize = 1536;
/// Receive buffers; `*ReceiveBuffers` in the registry overrides it.
const DEFAULT_BUFFERS: u32 = 64;

pub struct LoopbackDriver;

pub struct Loopback {
    /// Its shared memory keeps the DMA registration; the framework frees both after halt.
    receive: ReceivePool,
    /// Next buffer to try (round robin).
    next: AtomicUsize,
}

impl MiniportDriver for LoopbackDriver {
    /// Windows 7 (6.20, where the NDIS 6 interfaces the framework uses are all present) to
    /// Windows 11 24H2 / Server 2025 (6.89): no hardware, nothing tied to a newer version.
    const NDIS_VERSIONS: NdisVersions = NdisVersions::new(NdisVersion::V6_20, NdisVersion::V6_89);
    const DRIVER_VERSION: (u8, u8) = (1, 0);
    type Adapter = Loopback;

    fn initialize(&'static self, init: &mut Init<'_>) -> Result<(Loopback, AdapterInfo), Status> {
        // Test builds only (feature `test-panic`, never in the shipped image): a panic on demand.
        #[cfg(feature = "test-panic")]
        if init
            .configuration()?
            .read_u32_in("TestPanic", 0..=1, 0, init.passive())
            == 1
        {
            panic!("TestPanic is 1: the loopback sample panics in initialize");
        }
        let buffers = init.configuration()?.read_u32_in(
            "*ReceiveBuffers",
            1..=1024,
            DEFAULT_BUFFERS,
            init.passive(),
        );
        let dma = init.register_dma(BUFFER as u32)?;
        let receive = ReceivePool::new(init, &dma, BUFFER, buffers as usize)?;
        let mut info = AdapterInfo::ethernet(MAC, MTU as u32, 10_000_000_000, true);
        info.description = "ndis-rs loopback";
        Ok((
            Loopback {
                receive,
                next: AtomicUsize::new(0),
            },
            info,
        ))
    }
}

impl Loopback {
    /// Claims a free receive buffer, if any (round robin; NDIS may hold the others).
    fn free_buffer(&self) -> Option<usize> {
        self.receive
            .claim_any(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// One list: every frame goes back up as a receive.
    fn loop_back(
        &self,
        adapter: &NdisAdapter,
        nbl: &SendNbl<'_>,
        irql: &DispatchOrBelow<'_>,
    ) -> Status {
        let mut frames = Vec::new();
        let mut scratch = [0u8; BUFFER];
        for frame in nbl.frames() {
            let Some(len) = frame.copy_to(&mut scratch[..MTU + 14]) else {
                for &(index, _, _) in &frames {
                    self.receive.release(index);
                }
                return Status::INVALID_LENGTH;
            };
            let Some(index) = self.free_buffer() else {
                // No buffer: the loop drops the frame, as a wire would.
                adapter.stats.rx_discards(1);
                continue;
            };
            // Ours until indicated: the claim lets the pool write it.
            let written = self.receive.write(index, 0, &scratch[..len]);
            debug_assert!(written);
            // Grown fallibly: an infallible push would bug-check an exhausted pool.
            if let Err(status) = ndis::heap::try_push(&mut frames, (index, 0, len), irql) {
                self.receive.release(index);
                for &(index, _, _) in &frames {
                    self.receive.release(index);
                }
                return status;
            }
        }
        // Frames NDIS does not take (paused meanwhile) give their buffers back.
        let release = |index| self.receive.release(index);
        self.receive.indicate(&frames, irql, release);
        Status::SUCCESS
    }
}

impl Miniport for Loopback {
    fn send(
        &self,
        adapter: &NdisAdapter,
        lists: &mut SendLists<'_>,
        irql: &mut DispatchOrBelow<'_>,
    ) {
        lists.each(|nbl| self.loop_back(adapter, nbl, irql));
    }

    fn quiesce(&self, _adapter: &NdisAdapter, _passive: &mut Passive<'_>) -> Quiesced {
        // No device: nothing reaches the receive memory but this driver.
        Quiesced::device_stopped()
    }

    fn return_receives(
        &self,
        _adapter: &NdisAdapter,
        returned: &mut Returned<'_>,
        _irql: &mut DispatchOrBelow<'_>,
    ) {
        // The buffers become free again; nothing else to do without a device.
        self.receive.take_returned(returned, |_| {});
    }
}

ndis::miniport_driver!(LoopbackDriver = LoopbackDriver);
