//! The driver's datapath against an independent virtio-net driver, `virtio-drivers`'
//! `VirtIONetRaw`, on the same emulated device model (`ndis_emu::devices::virtio_net::VirtioNet`,
//! 256-entry queues, one queue pair), one emulated CPU each, in the same process:
//!
//! * **ours**: `vionet` loaded on ndis-emu with four MSI-X messages (one per queue, 2N+2). TX is
//!   `Emulator::send` of a chain of [`BATCH`] NET_BUFFER_LISTs (the emulated NDIS builds the NBLs
//!   and completes them), RX is a burst of [`BATCH`] frames arriving at the device, the interrupt,
//!   the DPC indicating them, the protocol taking them and returning them. In the timed loop the
//!   emulated protocol counts the frames instead of copying them out
//!   (`Emulator::set_count_received_only`); the first round, outside the clock, checks them byte
//!   for byte.
//! * **baseline**: `VirtIONetRaw<_, _, 256>` over a raw test miniport that only maps the BAR and
//!   registers DMA (as `crates/ndis-emu/tests/virtio_net_model.rs` does), given the fairest setup
//!   it supports: **polling** (interrupts suppressed with `VRING_AVAIL_F_NO_INTERRUPT`, so it
//!   pays for no ISR or DPC at all), buffers already in DMA memory (its `Hal::share` is an address
//!   translation, no bounce copy), notify addresses cached per queue. TX is `transmit_begin` of
//!   [`BATCH`] frames (each filled with its header in a DMA buffer) then `poll_transmit` /
//!   `transmit_complete`; RX keeps 256 buffers posted, a burst of [`BATCH`] frames arrives, then
//!   `poll_receive` / `receive_complete` / `receive_begin` again (the frames are counted, not
//!   copied out, in the timed loop, as for ours).
//!
//! "Saturation" on a single-threaded emulator: the device receives a burst of [`BATCH`] frames
//! (`VirtioNet::inject_frames`, one call, the same for both contestants) before the CPU gets to
//! run the interrupt (frames arrive faster than they are handled); the
//! interrupt figure counts every MSI-X message and line assertion the model raised.
//!
//! `cargo bench --bench datapath`: wall-clock packets/s (best of 3) for each path, then, when
//! valgrind is installed, re-runs itself under `valgrind --tool=callgrind` once per path and
//! contestant and reports instructions per packet (whole path: driver, emulated NDIS and device
//! model; the device model's share is shown separately).

#[cfg(not(windows))]
#[path = "datapath/host.rs"]
mod host;

fn main() {
    #[cfg(not(windows))]
    host::main();
}
