//! `SharedMemory` bounds: each fixed-width access (2, 4, 8 and 16 bytes: the ring accessors)
//! reaches the last offset it fits at and panics one byte further, in blocks whose length is
//! not a multiple of the width, and in a block shorter than the width (where no offset fits);
//! the bulk copies check their whole range; a 16-byte descriptor write at an unaligned offset
//! lands byte-exact.
#![cfg(not(windows))]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use ndis::dma::SharedMemory;
use ndis::driver::MiniportDriver;
use ndis::hw::DeviceMemory;
use ndis::irql::{DispatchOrBelow, Passive};
use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced};
use ndis::nbl::{Returned, SendLists};
use ndis::{NdisVersion, Status};
use ndis_emu::{Config, Emulator, InterruptResources};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

/// Block lengths: shorter than every width but the smallest, odd, and a page and a bit.
const LENGTHS: [usize; 4] = [1, 3, 37, 4099];

/// The blocks initialize allocated, for the test to reach.
static BLOCKS: Mutex<Vec<SharedMemory>> = Mutex::new(Vec::new());

struct Driver;
struct Adapter;

impl MiniportDriver for Driver {
    const NDIS_VERSIONS: ndis::NdisVersions = ndis::NdisVersions::exactly(NdisVersion::V6_20);
    const DRIVER_VERSION: (u8, u8) = (1, 0);
    type Adapter = Adapter;
    fn initialize(&'static self, init: &mut Init<'_>) -> Result<(Adapter, AdapterInfo), Status> {
        let dma = init.register_dma(65536)?;
        let mut blocks = BLOCKS.lock().unwrap();
        for length in LENGTHS {
            blocks.push(dma.allocate(init.initializing(), length)?);
        }
        let info = AdapterInfo::ethernet([2, 0, 0, 0, 0, 1], 1500, 1_000_000_000, true);
        Ok((Adapter, info))
    }
}

impl Miniport for Adapter {
    fn quiesce(&self, _: &NdisAdapter, _: &mut Passive<'_>) -> Quiesced {
        Quiesced::device_stopped()
    }
    fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, _: &mut DispatchOrBelow<'_>) {
        lists.each(|_| Status::SUCCESS);
    }
    fn return_receives(&self, _: &NdisAdapter, _: &mut Returned<'_>, _: &mut DispatchOrBelow<'_>) {}
}

ndis::miniport_driver!(Driver = Driver);

/// The panic message of `f`, or None if it returned.
fn refused(f: impl FnOnce()) -> Option<String> {
    let r = catch_unwind(AssertUnwindSafe(f)).err()?;
    Some(
        r.downcast_ref::<String>()
            .cloned()
            .or_else(|| r.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    )
}

/// Every access of `width` bytes to `m` (a read and a write each) at `offset`.
fn access(m: &SharedMemory, width: usize, offset: usize) {
    match width {
        2 => m.write_u16(offset, m.read_u16(offset)),
        4 => m.write_u32(offset, m.read_u32(offset)),
        8 => m.write_u64(offset, m.read_u64(offset)),
        16 => m.write_u64_pair(offset, [0, 0]),
        _ => unreachable!(),
    }
}

#[test]
fn fixed_width_accesses_reach_the_last_offset_and_no_further() {
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
    let a = emu.add_adapter(InterruptResources::None).expect("init");
    let blocks = BLOCKS.lock().unwrap().clone();
    assert_eq!(blocks.len(), LENGTHS.len());
    for m in &blocks {
        let length = m.len();
        for width in [2, 4, 8, 16] {
            if let Some(last) = length.checked_sub(width) {
                for offset in [0, last / 2, last] {
                    assert_eq!(
                        refused(|| access(m, width, offset)),
                        None,
                        "{width} at {offset}"
                    );
                }
            }
            // One byte past the last fit, and far past the end (an offset near usize::MAX
            // must not wrap into the block).
            let first_refused = (length + 1).saturating_sub(width);
            for offset in [first_refused, length, usize::MAX - 1] {
                let text = refused(|| access(m, width, offset))
                    .unwrap_or_else(|| panic!("{width} bytes at {offset} of {length} allowed"));
                assert!(text.contains("outside a"), "{text}");
            }
        }
        // Bulk copies: the whole range checked.
        let mut buf = vec![0u8; length];
        assert_eq!(refused(|| m.read_bytes(0, &mut buf)), None);
        assert!(refused(|| m.read_bytes(1, &mut buf)).is_some());
        assert!(refused(|| m.write_bytes(length, &[1])).is_some());
    }
    // A descriptor at an unaligned offset: both words land, little-endian, byte-exact.
    let m = &blocks[3];
    m.write_u64_pair(3, [0x0807_0605_0403_0201, 0x100F_0E0D_0C0B_0A09]);
    let mut got = [0u8; 16];
    m.read_bytes(3, &mut got);
    assert_eq!(got, core::array::from_fn::<u8, 16, _>(|i| i as u8 + 1));
    assert_eq!(
        (m.read_u64(3), m.read_u64(11)),
        (0x0807_0605_0403_0201, 0x100F_0E0D_0C0B_0A09)
    );
    drop(blocks);
    // The list's own memory too: the driver heap must be empty at unload.
    drop(std::mem::take(&mut *BLOCKS.lock().unwrap()));
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}
