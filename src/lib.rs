//! `vionet`: the reference NIC miniport of the framework, for virtio-net (modern PCI, 1AF4:1041).
//!
//! An NDIS 6.20 to 6.89 miniport (the newest the running Windows knows): modern virtio-pci
//! transport, N queue pairs plus the control queue, one
//! MSI-X message per queue (fewer when fewer are granted or the device refuses vectors), or the
//! line with the read-to-clear ISR status; per-queue DPCs with receive budgets; copied sends;
//! receive buffers lent to NDIS from shared memory. No `unsafe`: registers and DMA memory are
//! reached through the framework's hardware seam (`ndis::hw`).
//!
//! On Windows this crate is the kernel image (`no_std`); on other hosts it is an ordinary library,
//! linked into tests against the emulator.
#![cfg_attr(windows, no_std)]

extern crate alloc;

pub mod adapter;
mod device;
pub use device::{MAP_THRESHOLD, TX_BACKLOG};
pub mod virtio;

use ndis::driver::MiniportDriver;
use ndis::miniport::{AdapterInfo, Init};
use ndis::pnp::{InterruptRequest, ResourceFilter};
use ndis::{NdisVersion, NdisVersions, Status};

// Kernel runtime: the project's own pieces, or the WDK's with the `wdk` feature.
#[cfg(all(windows, not(feature = "wdk")))]
use km_rt as _;
#[cfg(all(windows, not(feature = "wdk")))]
#[global_allocator]
static ALLOCATOR: km_alloc::PoolAllocator<km_alloc::NonPagedPool> =
    km_alloc::PoolAllocator::new(km_alloc::NonPagedPool::new(POOL_TAG));
#[cfg(all(windows, feature = "wdk"))]
use {wdk_panic as _, wdk_sys as _};
#[cfg(all(windows, feature = "wdk"))]
#[global_allocator]
static ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

/// Pool tag of every allocation the driver makes (shown as `vnet` by `!poolused`).
#[cfg(all(windows, not(feature = "wdk")))]
const POOL_TAG: km_alloc::PoolTag = km_alloc::PoolTag::new(*b"vnet");

/// The virtio-net miniport driver.
#[derive(Debug)]
pub struct VioNet;

impl MiniportDriver for VioNet {
    /// Windows 7 to Windows 11 24H2 / Server 2025 (the certification minimum there).
    const NDIS_VERSIONS: NdisVersions = NdisVersions::new(NdisVersion::V6_20, NdisVersion::V6_89);
    const DRIVER_VERSION: (u8, u8) = (0, 1);
    type Adapter = adapter::VioNetAdapter;
    /// One message per queue, each pinned to its pair's processor (see `interrupt_request`).
    const FILTER_RESOURCES: bool = true;

    fn interrupt_request(&'static self, filter: &ResourceFilter<'_>) -> InterruptRequest {
        adapter::interrupt_request(filter)
    }

    fn initialize(
        &'static self,
        init: &mut Init<'_>,
    ) -> Result<(adapter::VioNetAdapter, AdapterInfo), Status> {
        adapter::initialize(init)
    }
}

ndis::miniport_driver!(VioNet = VioNet);
