//! `ndis_emu::image::isolated`: a scenario in a child process, its bug check reported to the
//! parent as the structured value, its other failures as test failures with the child's output.
//! The bug check is raised through the `KeBugCheckEx` export called with the Windows x64
//! convention, the way an image's panic handler calls it.
#![cfg(not(windows))]

use ndis_emu::image::{in_isolated_child, isolated};
use ndis_emu::{Config, Emulator, expect_bugcheck, win64_exports};

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

type KeBugCheckEx = unsafe extern "win64-unwind" fn(u32, usize, usize, usize, usize) -> !;

fn ke_bug_check_ex() -> KeBugCheckEx {
    let e = win64_exports()
        .into_iter()
        .find(|e| e.module == "ntoskrnl.exe" && e.name == "KeBugCheckEx")
        .expect("KeBugCheckEx is exported");
    // SAFETY: the export's address, an `extern "win64-unwind"` function of this signature.
    unsafe { std::mem::transmute::<usize, KeBugCheckEx>(e.address) }
}

#[test]
fn a_bug_check_in_the_child_reaches_the_parent_as_the_structured_bug_check() {
    let b = expect_bugcheck(|| {
        isolated(
            concat!(
                module_path!(),
                "::a_bug_check_in_the_child_reaches_the_parent_as_the_structured_bug_check"
            ),
            || {
                assert!(in_isolated_child());
                let _emu = Emulator::new(Config::default());
                // SAFETY: KeBugCheckEx takes plain integers and does not return.
                unsafe { ke_bug_check_ex()(0xE2, 1, 2, 3, usize::MAX) }
            },
        )
    });
    assert!(!in_isolated_child());
    assert_eq!((b.code, b.params), (0xE2, [1, 2, 3, usize::MAX]));
    assert!(b.message.contains("KeBugCheckEx"), "{b}");
}

#[test]
fn a_scenario_that_completes_in_the_child_completes_in_the_parent() {
    isolated(
        concat!(
            module_path!(),
            "::a_scenario_that_completes_in_the_child_completes_in_the_parent"
        ),
        || {
            let emu = Emulator::new(Config::default());
            emu.unload();
        },
    );
}

#[test]
#[should_panic(expected = "failed in its child process: the child's assertion")]
fn a_failed_assertion_in_the_child_fails_the_parent_with_its_message() {
    isolated(
        concat!(
            module_path!(),
            "::a_failed_assertion_in_the_child_fails_the_parent_with_its_message"
        ),
        || panic!("the child's assertion"),
    );
}

#[test]
#[should_panic(expected = "signal: 11")]
fn a_child_killed_by_a_signal_fails_the_parent_with_its_status() {
    isolated(
        concat!(
            module_path!(),
            "::a_child_killed_by_a_signal_fails_the_parent_with_its_status"
        ),
        || {
            // SAFETY: not safe, on purpose: a store to address 0 faults and, with no handler
            // for it, SIGSEGV ends the child, as an unhandled fault in image code would.
            unsafe { core::arch::asm!("mov qword ptr [0], 0") }
        },
    );
}
