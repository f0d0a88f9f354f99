//! `NonPagedPool` against the emulated kernel: on a Windows with `ExAllocatePool2` it allocates
//! there; on one without (Windows 10 1709), it falls back to `ExAllocatePoolWithTag` and zeroes
//! what it promised to zero, since that pool hands out uninitialized (0xCD-filled) memory.
#![cfg(not(windows))]

use core::alloc::{GlobalAlloc, Layout};

use km_alloc::{NonPagedPool, PoolAllocator, PoolTag};
use ndis_emu::{Config, Emulator};
use ndis_sys::availability::{WINDOWS_10_1709, WINDOWS_10_2004, WindowsVersion};

const TAG: PoolTag = PoolTag::new(*b"kmat");

/// Allocates zeroed and uninitialized blocks (one over-aligned) on `windows`, checks their
/// contents and the emulator's pool accounting, frees them, and returns the pool functions the
/// emulator saw called.
fn exercise(windows: WindowsVersion) -> (Option<bool>, Vec<&'static str>) {
    let emu = Emulator::new(Config {
        windows_version: windows,
        // What is tested is the pool allocator itself, called directly, not a driver's Rust heap.
        unaccounted_heap: true,
        ..Config::default()
    });
    let a = PoolAllocator::new(NonPagedPool::new(TAG));
    assert_eq!(a.pool().has_pool2(), None, "nothing resolved before use");
    let layouts = [
        (Layout::from_size_align(100, 8).unwrap(), true),
        (Layout::from_size_align(300, 256).unwrap(), true),
        (Layout::from_size_align(64, 16).unwrap(), false),
    ];
    let mut blocks = Vec::new();
    for (layout, zeroed) in layouts {
        // SAFETY: non-zero sizes.
        let p = unsafe {
            if zeroed {
                a.alloc_zeroed(layout)
            } else {
                a.alloc(layout)
            }
        };
        assert!(!p.is_null());
        assert_eq!(p as usize % layout.align(), 0);
        // SAFETY: p is valid for layout.size() bytes.
        let bytes = unsafe { core::slice::from_raw_parts(p, layout.size()) };
        if zeroed {
            assert!(bytes.iter().all(|b| *b == 0), "zeroed block not zero");
        } else {
            assert!(
                bytes.iter().all(|b| *b == ndis_emu::UNINITIALIZED_FILL),
                "an uninitialized block was zeroed needlessly (or not from the pool)"
            );
        }
        blocks.push((p, layout));
    }
    let live = emu.allocations();
    assert_eq!(live.len(), 3);
    assert!(live.iter().all(|(_, r)| r.tag == TAG.0));
    for (p, layout) in blocks {
        // SAFETY: from alloc/alloc_zeroed with this layout.
        unsafe { a.dealloc(p, layout) };
    }
    assert!(emu.allocations().is_empty(), "blocks left after the frees");
    let calls = emu.fallible_calls().into_iter().map(|(f, _)| f).collect();
    (a.pool().has_pool2(), calls)
}

#[test]
fn without_exallocatepool2_it_falls_back_to_exallocatepoolwithtag_and_zeroes() {
    let (has_pool2, calls) = exercise(WINDOWS_10_1709);
    assert_eq!(has_pool2, Some(false));
    assert_eq!(calls, ["ExAllocatePoolWithTag"; 3]);
}

#[test]
fn with_exallocatepool2_it_uses_it() {
    for windows in [WINDOWS_10_2004, Config::default().windows_version] {
        let (has_pool2, calls) = exercise(windows);
        assert_eq!(has_pool2, Some(true), "{windows}");
        assert_eq!(calls, ["ExAllocatePool2"; 3], "{windows}");
    }
}

#[test]
fn a_failed_fallback_allocation_is_null_and_not_written() {
    let emu = Emulator::new(Config {
        windows_version: WINDOWS_10_1709,
        unaccounted_heap: true,
        faults: ndis_emu::FaultPlan {
            by_name: vec![("ExAllocatePoolWithTag".into(), None)],
            ..Default::default()
        },
        ..Config::default()
    });
    let a = PoolAllocator::new(NonPagedPool::new(TAG));
    // SAFETY: non-zero size.
    let p = unsafe { a.alloc_zeroed(Layout::from_size_align(32, 8).unwrap()) };
    assert!(p.is_null());
    assert!(emu.allocations().is_empty());
}
