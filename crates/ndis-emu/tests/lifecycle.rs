//! Pause and restart (including pended completion) and shared memory for DMA. The raw test driver
//! takes its pause/restart answers and its initialize/halt scripts from thread-locals.

use std::cell::Cell;

use ndis_emu::{AdapterState, Config, Emulator, InterruptResources, rule};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

#[path = "support/scripted_driver.rs"]
mod scripted_driver;
use scripted_driver::{ON_INIT, handle};

thread_local! {
    static PAUSE_ANSWER: Cell<sys::NDIS_STATUS> = const { Cell::new(sys::NDIS_STATUS_SUCCESS) };
    static RESTART_ANSWER: Cell<sys::NDIS_STATUS> = const { Cell::new(sys::NDIS_STATUS_SUCCESS) };
    /// (header type, revision, size, reason) of the last pause parameters seen.
    static PAUSE_SEEN: Cell<(u8, u8, u16, u32)> = const { Cell::new((0, 0, 0, 0)) };
    static RESTART_SEEN: Cell<(u8, u8, u16)> = const { Cell::new((0, 0, 0)) };
    static HUNG: Cell<bool> = const { Cell::new(false) };
    static RESET_ANSWER: Cell<sys::NDIS_STATUS> = const { Cell::new(sys::NDIS_STATUS_SUCCESS) };
    /// The reset handler calls NdisMResetComplete itself before returning (as a DPC on another
    /// processor could).
    static COMPLETE_INSIDE_RESET: Cell<bool> = const { Cell::new(false) };
}

unsafe extern "win64-unwind" fn check_for_hang(_c: sys::NDIS_HANDLE) -> sys::BOOLEAN {
    HUNG.get() as sys::BOOLEAN
}

unsafe extern "win64-unwind" fn reset(_c: sys::NDIS_HANDLE, addressing: *mut sys::BOOLEAN) -> i32 {
    HUNG.set(false);
    // SAFETY: NDIS passes a writable flag.
    unsafe { *addressing = 1 };
    if COMPLETE_INSIDE_RESET.get() {
        // SAFETY: the adapter's handle, during its reset.
        unsafe { sys::NdisMResetComplete(handle(), sys::NDIS_STATUS_SUCCESS, 0) };
    }
    RESET_ANSWER.get()
}

unsafe extern "win64-unwind" fn pause(
    _c: sys::NDIS_HANDLE,
    p: *mut sys::NDIS_MINIPORT_PAUSE_PARAMETERS,
) -> sys::NDIS_STATUS {
    // SAFETY: NDIS passes valid parameters for the duration of the call.
    let p = unsafe { &*p };
    PAUSE_SEEN.set((
        p.Header.Type,
        p.Header.Revision,
        p.Header.Size,
        p.PauseReason,
    ));
    PAUSE_ANSWER.get()
}

unsafe extern "win64-unwind" fn restart(
    _c: sys::NDIS_HANDLE,
    p: *mut sys::NDIS_MINIPORT_RESTART_PARAMETERS,
) -> sys::NDIS_STATUS {
    // SAFETY: as for pause.
    let p = unsafe { &*p };
    RESTART_SEEN.set((p.Header.Type, p.Header.Revision, p.Header.Size));
    RESTART_ANSWER.get()
}

unsafe extern "win64-unwind" fn entry(
    o: sys::PDRIVER_OBJECT,
    p: *const sys::UNICODE_STRING,
) -> sys::NTSTATUS {
    let mut chars = scripted_driver::characteristics();
    chars.PauseHandler = Some(pause);
    chars.RestartHandler = Some(restart);
    chars.CheckForHangHandlerEx = Some(check_for_hang);
    chars.ResetHandlerEx = Some(reset);
    // SAFETY: DriverEntry's own arguments.
    unsafe { scripted_driver::register(o, p, &chars) }
}

fn start(
    init: impl Fn(sys::NDIS_HANDLE) + 'static,
    halt: impl Fn(sys::NDIS_HANDLE) + 'static,
) -> (Emulator, ndis_emu::AdapterId) {
    PAUSE_ANSWER.set(sys::NDIS_STATUS_SUCCESS);
    RESTART_ANSWER.set(sys::NDIS_STATUS_SUCCESS);
    scripted_driver::start(entry, init, halt)
}

#[test]
fn pause_and_restart_receive_real_parameter_blocks() {
    let (emu, a) = start(|_| {}, |_| {});
    assert_eq!(emu.adapter_state(a), AdapterState::Paused);
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    assert_eq!(emu.adapter_state(a), AdapterState::Running);
    assert_eq!(RESTART_SEEN.get(), (0x80, 1, 20));
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    assert_eq!(emu.adapter_state(a), AdapterState::Paused);
    assert_eq!(
        PAUSE_SEEN.get(),
        (0x80, 1, 12, sys::NDIS_PAUSE_NDIS_INTERNAL)
    );
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

#[test]
fn a_pended_restart_and_pause_finish_with_their_complete_calls() {
    let (emu, a) = start(|_| {}, |_| {});
    RESTART_ANSWER.set(sys::NDIS_STATUS_PENDING);
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_PENDING);
    assert_eq!(emu.adapter_state(a), AdapterState::Restarting);
    // SAFETY: the adapter's handle; the restart is pending.
    unsafe { sys::NdisMRestartComplete(handle(), sys::NDIS_STATUS_SUCCESS) };
    assert_eq!(emu.adapter_state(a), AdapterState::Running);

    PAUSE_ANSWER.set(sys::NDIS_STATUS_PENDING);
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_PENDING);
    assert_eq!(emu.adapter_state(a), AdapterState::Pausing);
    // SAFETY: the adapter's handle; the pause is pending.
    unsafe { sys::NdisMPauseComplete(handle()) };
    assert_eq!(emu.adapter_state(a), AdapterState::Paused);

    // A pended restart that fails leaves the adapter paused.
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_PENDING);
    // SAFETY: as above.
    unsafe { sys::NdisMRestartComplete(handle(), sys::NDIS_STATUS_RESOURCES) };
    assert_eq!(emu.adapter_state(a), AdapterState::Paused);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

#[test]
fn a_failed_restart_leaves_the_adapter_paused() {
    let (emu, a) = start(|_| {}, |_| {});
    RESTART_ANSWER.set(sys::NDIS_STATUS_RESOURCES);
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_RESOURCES);
    assert_eq!(emu.adapter_state(a), AdapterState::Paused);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

#[test]
fn pause_complete_without_a_pending_pause_is_caught() {
    let (emu, a) = start(|_| {}, |_| {});
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    // SAFETY: deliberately wrong: nothing is pending.
    let b = emu.expect_bugcheck(|| unsafe { sys::NdisMPauseComplete(handle()) });
    assert_eq!(
        (b.code, b.params[0], b.params[1]),
        (0xC4, rule::CALL_CONTEXT, a.0)
    );
    assert!(b.message.contains("not pausing"), "{b}");
}

#[test]
fn restart_complete_with_pending_status_is_caught() {
    let (emu, a) = start(|_| {}, |_| {});
    RESTART_ANSWER.set(sys::NDIS_STATUS_PENDING);
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_PENDING);
    // SAFETY: deliberately wrong status.
    let b = emu.expect_bugcheck(|| unsafe {
        sys::NdisMRestartComplete(handle(), sys::NDIS_STATUS_PENDING)
    });
    assert_eq!((b.code, b.params[0]), (0xC4, rule::CALL_CONTEXT));
}

#[test]
fn a_pause_that_fails_is_caught() {
    let (emu, a) = start(|_| {}, |_| {});
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    PAUSE_ANSWER.set(sys::NDIS_STATUS_FAILURE);
    let b = emu.expect_bugcheck(|| {
        emu.pause(a);
    });
    assert_eq!((b.code, b.params[0]), (0xC4, rule::CALL_CONTEXT));
    assert!(b.message.contains("must succeed or pend"), "{b}");
}

// ---- check for hang and reset ----

#[test]
fn a_pended_reset_finishes_with_reset_complete_and_holds_the_checks_meanwhile() {
    let (emu, a) = start(|_| {}, |_| {});
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    // CheckForHangTimeInSeconds 0: NDIS's 2 s default.
    emu.advance_time(std::time::Duration::from_secs(2));
    assert_eq!(emu.hang_checks(a), 1);
    HUNG.set(true);
    RESET_ANSWER.set(sys::NDIS_STATUS_PENDING);
    emu.advance_time(std::time::Duration::from_secs(2));
    assert_eq!((emu.hang_checks(a), emu.resets(a)), (2, vec![]));
    // No checks while the reset is pending.
    emu.advance_time(std::time::Duration::from_secs(6));
    assert_eq!(emu.hang_checks(a), 2);
    // SAFETY: the adapter's handle; the reset is pending.
    unsafe { sys::NdisMResetComplete(handle(), sys::NDIS_STATUS_SUCCESS, 1) };
    assert_eq!(emu.resets(a), [(sys::NDIS_STATUS_SUCCESS, true)]);
    emu.advance_time(std::time::Duration::from_secs(2));
    assert_eq!(emu.hang_checks(a), 3);
    emu.pause(a);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

#[test]
fn a_reset_completed_before_its_handler_returns_pending_counts_once() {
    let (emu, a) = start(|_| {}, |_| {});
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    HUNG.set(true);
    COMPLETE_INSIDE_RESET.set(true);
    RESET_ANSWER.set(sys::NDIS_STATUS_PENDING);
    emu.advance_time(std::time::Duration::from_secs(2));
    assert_eq!(emu.resets(a), [(sys::NDIS_STATUS_SUCCESS, false)]);
    // Not stuck: checks go on.
    emu.advance_time(std::time::Duration::from_secs(2));
    assert_eq!(emu.hang_checks(a), 2);

    // Completing and then returning a final status completes it twice.
    HUNG.set(true);
    RESET_ANSWER.set(sys::NDIS_STATUS_SUCCESS);
    let b = emu.expect_bugcheck(|| emu.advance_time(std::time::Duration::from_secs(2)));
    assert_eq!((b.code, b.params[0]), (0xC4, rule::CALL_CONTEXT));
    assert!(b.message.contains("after calling"), "{b}");
    COMPLETE_INSIDE_RESET.set(false);
}

#[test]
fn reset_complete_without_a_pending_reset_is_caught() {
    let (emu, a) = start(|_| {}, |_| {});
    // SAFETY: deliberately wrong: nothing is pending.
    let b = emu.expect_bugcheck(|| unsafe {
        sys::NdisMResetComplete(handle(), sys::NDIS_STATUS_SUCCESS, 0)
    });
    assert_eq!(
        (b.code, b.params[0], b.params[1]),
        (0xC4, rule::CALL_CONTEXT, a.0)
    );
    assert!(b.message.contains("no reset pending"), "{b}");
}

// ---- shared memory ----

thread_local! {
    static DMA: Cell<usize> = const { Cell::new(0) };
    static BLOCK: Cell<(usize, i64)> = const { Cell::new((0, 0)) };
}

fn register_dma(h: sys::NDIS_HANDLE) -> sys::NDIS_STATUS {
    let mut d = ndis_emu::raw::sg_dma_description();
    let mut dma: sys::NDIS_HANDLE = std::ptr::null_mut();
    // SAFETY: initialize's handle; the description and out-handle live across the call.
    let s = unsafe { sys::NdisMRegisterScatterGatherDma(h, &mut d, &mut dma) };
    assert_ne!(d.ScatterGatherListSize, 0, "NDIS reports the S/G list size");
    DMA.set(dma as usize);
    s
}

fn allocate(h: sys::NDIS_HANDLE, length: u32) -> (usize, i64) {
    let mut va: sys::PVOID = std::ptr::null_mut();
    let mut pa: sys::PHYSICAL_ADDRESS = 0;
    // SAFETY: the adapter handle and two out-pointers.
    unsafe { sys::NdisMAllocateSharedMemory(h, length, 0, &mut va, &mut pa) };
    (va as usize, pa)
}

fn free(h: sys::NDIS_HANDLE, length: u32, (va, pa): (usize, i64)) {
    // SAFETY: what allocate returned (or deliberately not, in the negative tests).
    unsafe { sys::NdisMFreeSharedMemory(h, length, 0, va as sys::PVOID, pa) };
}

fn deregister_dma() {
    // SAFETY: the registration made in initialize.
    unsafe { sys::NdisMDeregisterScatterGatherDma(DMA.get() as sys::NDIS_HANDLE) };
}

#[test]
fn shared_memory_is_visible_to_the_device_at_its_physical_address() {
    let (emu, a) = start(
        |h| {
            assert_eq!(register_dma(h), sys::NDIS_STATUS_SUCCESS);
            let block = allocate(h, 1000);
            assert_ne!(block.0, 0);
            assert_eq!(block.0 % 4096, 0, "shared memory is page aligned");
            assert!(block.1 >= 0x1_0000_0000, "device addresses above 4 GiB");
            // SAFETY: 1000 bytes of live shared memory.
            unsafe { std::ptr::write_bytes(block.0 as *mut u8, 0x5A, 1000) };
            BLOCK.set(block);
        },
        |h| {
            free(h, 1000, BLOCK.get());
            deregister_dma();
        },
    );
    let (va, pa) = BLOCK.get();
    let mut seen = [0u8; 8];
    emu.dma_read(pa as u64 + 992, &mut seen)
        .expect("inside the block");
    assert_eq!(seen, [0x5A; 8]);
    // The device writes; the driver sees it through its virtual address.
    emu.dma_write(pa as u64 + 10, b"virtio")
        .expect("inside the block");
    // SAFETY: live shared memory.
    let driver_view = unsafe { std::slice::from_raw_parts((va + 10) as *const u8, 6) };
    assert_eq!(driver_view, b"virtio");
    // Past the end of the block, and before the first block: refused, never out of bounds.
    assert!(emu.dma_read(pa as u64 + 993, &mut seen).is_none());
    assert!(emu.dma_read(0x1000, &mut seen).is_none());
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

#[test]
fn shared_memory_without_a_dma_registration_is_caught() {
    ON_INIT.with(|f| {
        *f.borrow_mut() = Some(Box::new(|h| {
            allocate(h, 64);
        }))
    });
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(entry), 0);
    let b = emu.expect_bugcheck(|| {
        let _ = emu.add_adapter(InterruptResources::None);
    });
    assert_eq!((b.code, b.params[0]), (0xC4, rule::DMA));
}

#[test]
fn freeing_with_a_wrong_length_is_caught() {
    let (emu, a) = start(
        |h| {
            register_dma(h);
            BLOCK.set(allocate(h, 256));
        },
        |h| free(h, 128, BLOCK.get()),
    );
    let b = emu.expect_bugcheck(|| emu.halt(a, sys::NdisHaltDeviceDisabled));
    assert_eq!((b.code, b.params[0]), (0xC4, rule::DMA));
    assert!(b.message.contains("length and both addresses"), "{b}");
}

#[test]
fn halting_with_dma_registered_is_caught() {
    let (emu, a) = start(
        |h| {
            register_dma(h);
        },
        |_| {},
    );
    let b = emu.expect_bugcheck(|| emu.halt(a, sys::NdisHaltDeviceDisabled));
    assert_eq!((b.code, b.params[0]), (0xC4, rule::DMA));
}

#[test]
fn unloading_with_shared_memory_not_freed_is_caught() {
    let (emu, a) = start(
        |h| {
            register_dma(h);
            BLOCK.set(allocate(h, 4096 * 3));
        },
        |_| deregister_dma(),
    );
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    let b = emu.expect_bugcheck(|| emu.unload());
    assert_eq!(
        (b.code, b.params[0], b.params[2], b.params[3]),
        (0xC4, 0x62, 4096 * 3, 1)
    );
}

#[test]
fn a_second_dma_registration_or_a_failed_allocation_is_a_clean_error() {
    let (emu, a) = start(
        |h| {
            assert_eq!(register_dma(h), sys::NDIS_STATUS_SUCCESS);
            let first = DMA.get();
            let mut d = ndis_emu::raw::sg_dma_description();
            let mut dma: sys::NDIS_HANDLE = std::ptr::null_mut();
            // SAFETY: as in register_dma.
            let s = unsafe { sys::NdisMRegisterScatterGatherDma(h, &mut d, &mut dma) };
            assert_eq!(s, sys::NDIS_STATUS_FAILURE);
            DMA.set(first);
            // A zero-length request fails with null addresses, as on Windows.
            assert_eq!(allocate(h, 0), (0, 0));
        },
        |_| deregister_dma(),
    );
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

// ---- PCI configuration space and registers ----

thread_local! {
    static MAPPING: Cell<usize> = const { Cell::new(0) };
    static BAR_SEEN: Cell<(i64, u32)> = const { Cell::new((0, 0)) };
}

/// The first memory BAR of the adapter's resources, from the init parameters.
fn first_memory_bar(p: *mut sys::NDIS_MINIPORT_INIT_PARAMETERS) -> (i64, u32) {
    // SAFETY: NDIS passes a valid resource list with `Count` descriptors.
    unsafe {
        let partial = &*(*p).AllocatedResources;
        let descriptors =
            std::slice::from_raw_parts(partial.PartialDescriptors.as_ptr(), partial.Count as usize);
        let d = descriptors
            .iter()
            .find(|d| d.Type == sys::CmResourceTypeMemory)
            .expect("a memory BAR");
        (d.u.Memory.Start, d.u.Memory.Length)
    }
}

/// Initialize script: maps the first memory BAR.
fn map_first_bar(h: sys::NDIS_HANDLE) {
    let (start, length) = first_memory_bar(scripted_driver::init_params());
    BAR_SEEN.set((start, length));
    let mut va: sys::PVOID = std::ptr::null_mut();
    // SAFETY: a range from the adapter's own resources.
    let status = unsafe { sys::NdisMMapIoSpace(&mut va, h, start, length) };
    assert_eq!(status, sys::NDIS_STATUS_SUCCESS);
    MAPPING.set(va as usize);
}

fn start_mapped(halt: impl Fn(sys::NDIS_HANDLE) + 'static) -> (Emulator, ndis_emu::AdapterId) {
    scripted_driver::start(entry, map_first_bar, halt)
}

fn unmap(h: sys::NDIS_HANDLE) {
    // SAFETY: the mapping made in initialize, released once.
    unsafe { sys::NdisMUnmapIoSpace(h, MAPPING.get() as sys::PVOID, 0x4000) };
}

#[test]
fn registers_of_a_mapped_bar_reach_the_device_and_config_space_names_it() {
    let (emu, a) = start_mapped(unmap);
    let base = MAPPING.get();
    // SAFETY: offsets inside the 16 KiB mapping, aligned for their width.
    unsafe {
        sys::mmio::WRITE_REGISTER_ULONG((base + 0x100) as *mut u32, 0xA1B2_C3D4);
        assert_eq!(
            sys::mmio::READ_REGISTER_ULONG((base + 0x100) as *const u32),
            0xA1B2_C3D4
        );
        assert_eq!(
            sys::mmio::READ_REGISTER_USHORT((base + 0x102) as *const u16),
            0xA1B2
        );
        assert_eq!(
            sys::mmio::READ_REGISTER_UCHAR((base + 0x100) as *const u8),
            0xD4
        );
    }
    let mut config = [0u8; 0x14];
    // SAFETY: the adapter handle and a 20-byte buffer.
    let n = unsafe {
        sys::NdisMGetBusData(
            handle(),
            sys::PCI_WHICHSPACE_CONFIG,
            0,
            config.as_mut_ptr().cast(),
            0x14,
        )
    };
    assert_eq!(n, 0x14);
    assert_eq!(
        &config[0..4],
        &[0x36, 0x1B, 0x05, 0x00],
        "vendor 1B36, device 0005"
    );
    let bar0 = u32::from_le_bytes(config[0x10..0x14].try_into().unwrap());
    let (start, _) = BAR_SEEN.get();
    assert_eq!(
        bar0 as i64 & !0xF,
        start,
        "config space BAR 0 == the resource"
    );
    assert_eq!(
        start,
        ndis_emu::pci::BAR32_BASE as i64,
        "device 0's BAR 0 where ndis_emu::pci documents it"
    );
    // Reads past the end of configuration space are truncated, not out of bounds.
    let mut tail = [0u8; 8];
    // SAFETY: as above.
    let n = unsafe {
        sys::NdisMGetBusData(
            handle(),
            sys::PCI_WHICHSPACE_CONFIG,
            252,
            tail.as_mut_ptr().cast(),
            8,
        )
    };
    assert_eq!(n, 4);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

#[test]
fn a_register_access_outside_the_mapping_is_caught() {
    let (emu, _a) = start_mapped(unmap);
    let base = MAPPING.get();
    // SAFETY: deliberately one past the end of the mapping (never dereferenced on the host).
    let b = emu.expect_bugcheck(|| unsafe {
        sys::mmio::READ_REGISTER_ULONG((base + 0x4000) as *const u32);
    });
    assert_eq!((b.code, b.params[0]), (0xC4, rule::MMIO));
}

#[test]
fn mapping_a_range_that_is_not_a_resource_is_caught() {
    ON_INIT.with(|f| {
        *f.borrow_mut() = Some(Box::new(|h| {
            let mut va: sys::PVOID = std::ptr::null_mut();
            // SAFETY: deliberately a range the adapter does not own.
            unsafe { sys::NdisMMapIoSpace(&mut va, h, 0x1000, 0x1000) };
        }))
    });
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(entry), 0);
    let b = emu.expect_bugcheck(|| {
        let _ = emu.add_adapter(InterruptResources::None);
    });
    assert_eq!(
        (b.code, b.params[0], b.params[1]),
        (0xC4, rule::MMIO, 0x1000)
    );
}

#[test]
fn halting_with_registers_still_mapped_is_caught() {
    let (emu, a) = start_mapped(|_| {});
    let b = emu.expect_bugcheck(|| emu.halt(a, sys::NdisHaltDeviceDisabled));
    assert_eq!((b.code, b.params[0], b.params[2]), (0xC4, rule::MMIO, 1));
}

thread_local! {
    /// The flags the mapping driver below passes to `NdisMAllocateNetBufferSGList`.
    static SEND_MAP_FLAGS: Cell<sys::ULONG> = const { Cell::new(0) };
}

/// `ProcessSGListHandler`: frees the list at once (the context is its NET_BUFFER).
unsafe extern "win64-unwind" fn free_at_once(
    _device: sys::PDEVICE_OBJECT,
    _reserved: sys::PVOID,
    list: *mut sys::SCATTER_GATHER_LIST,
    nb: sys::PVOID,
) {
    // SAFETY: the list NDIS just made for `nb`, on the registration made in initialize.
    unsafe { sys::NdisMFreeNetBufferSGList(DMA.get() as sys::NDIS_HANDLE, list, nb.cast()) };
}

/// A send handler that maps each list's first NET_BUFFER with `SEND_MAP_FLAGS`, then completes
/// the list with the mapping's status.
unsafe extern "win64-unwind" fn send_mapped(
    _context: sys::NDIS_HANDLE,
    nbl: *mut sys::NET_BUFFER_LIST,
    _port: sys::NDIS_PORT_NUMBER,
    _flags: sys::ULONG,
) {
    // SAFETY: the list NDIS hands over, with one NET_BUFFER; the registration's handle.
    unsafe {
        let nb = (*nbl).FirstNetBuffer;
        (*nbl).Status = sys::NdisMAllocateNetBufferSGList(
            DMA.get() as sys::NDIS_HANDLE,
            nb,
            nb.cast(),
            SEND_MAP_FLAGS.get(),
            std::ptr::null_mut(),
            0,
        );
        sys::NdisMSendNetBufferListsComplete(handle(), nbl, 0);
    }
}

unsafe extern "win64-unwind" fn entry_mapping(
    o: sys::PDRIVER_OBJECT,
    p: *const sys::UNICODE_STRING,
) -> sys::NTSTATUS {
    let mut chars = scripted_driver::characteristics();
    chars.SendNetBufferListsHandler = Some(send_mapped);
    // SAFETY: DriverEntry's own arguments.
    unsafe { scripted_driver::register(o, p, &chars) }
}

/// A send's mapping must say its direction: `NDIS_SG_LIST_WRITE_TO_DEVICE` (the device reads the
/// frame), which the docs ask for on the send path. With it the list is mapped, handed to the
/// handler and freed; without it, or with a flag NDIS does not define, the verifier stops.
#[test]
fn a_send_mapped_without_write_to_device_is_caught() {
    for (flags, caught) in [
        (sys::NDIS_SG_LIST_WRITE_TO_DEVICE, false),
        (0, true),
        (sys::NDIS_SG_LIST_WRITE_TO_DEVICE | 0x100, true),
    ] {
        SEND_MAP_FLAGS.set(flags);
        let (emu, a) = scripted_driver::start(
            entry_mapping,
            |h| {
                let mut d = ndis_emu::raw::sg_dma_description();
                d.ProcessSGListHandler = Some(free_at_once);
                let mut dma: sys::NDIS_HANDLE = std::ptr::null_mut();
                // SAFETY: initialize's handle; the description and out-handle live across it.
                let s = unsafe { sys::NdisMRegisterScatterGatherDma(h, &mut d, &mut dma) };
                assert_eq!(s, sys::NDIS_STATUS_SUCCESS);
                DMA.set(dma as usize);
            },
            |_| deregister_dma(),
        );
        assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
        let frame = [0x5Au8; 1200];
        if caught {
            let b = emu.expect_bugcheck(|| emu.send(a, &[&frame]));
            assert_eq!((b.code, b.params[0]), (0xC4, rule::DMA), "flags {flags:#x}");
            assert!(b.message.contains("NDIS_SG_LIST_WRITE_TO_DEVICE"), "{b}");
        } else {
            emu.send(a, &[&frame]);
            assert_eq!(
                emu.send_completions(),
                vec![(frame.to_vec(), sys::NDIS_STATUS_SUCCESS)]
            );
            assert_eq!(emu.sg_lists(), (1, 1, 0));
            assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
            emu.halt(a, sys::NdisHaltDeviceDisabled);
            emu.unload();
        }
    }
}
