//! `vionet`: the reference NIC miniport of the framework, for virtio-net (modern PCI, 1AF4:1041).
//!
//! Today a skeleton: it registers as an NDIS 6.20 miniport in `DriverEntry` and declines every
//! adapter with `NDIS_STATUS_ADAPTER_NOT_FOUND` until the adapter lifecycle and the virtio-net body
//! arrive. It already shows the shape every driver on the framework has: no `unsafe`, one trait
//! impl, one `miniport_driver!` line.
//!
//! On Windows this crate is the kernel image (`no_std`); on other hosts it is an ordinary library,
//! linked into tests against the emulator.
#![cfg_attr(windows, no_std)]

pub mod virtio;

use ndis::driver::MiniportDriver;
use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter};
use ndis::nbl::{Returned, SendIrql, SendNbl};
use ndis::{NdisVersion, Status};

// Kernel runtime: the project's own pieces, or the WDK's with the `wdk` feature.
#[cfg(all(windows, not(feature = "wdk")))]
use km_rt as _;
#[cfg(all(windows, not(feature = "wdk")))]
#[global_allocator]
static ALLOCATOR: km_alloc::PoolAllocator<km_alloc::NonPagedPool> =
    km_alloc::PoolAllocator::new(km_alloc::NonPagedPool { tag: POOL_TAG });
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

/// No adapter can start yet (the virtio-net body is being integrated): uninhabited.
#[derive(Debug)]
pub enum NoAdapter {}

impl Miniport for NoAdapter {
    fn send(&self, _: &NdisAdapter, _: &SendNbl<'_>, _: &SendIrql<'_>) -> Status {
        match *self {}
    }
    fn return_receives(&self, _: &NdisAdapter, _: &mut Returned<'_>) {
        match *self {}
    }
}

impl MiniportDriver for VioNet {
    const NDIS_VERSION: NdisVersion = NdisVersion::V6_20;
    const DRIVER_VERSION: (u8, u8) = (0, 1);
    type Adapter = NoAdapter;

    fn initialize(&'static self, _init: &mut Init<'_>) -> Result<(NoAdapter, AdapterInfo), Status> {
        Err(Status::ADAPTER_NOT_FOUND)
    }
}

ndis::miniport_driver!(VioNet = VioNet);
