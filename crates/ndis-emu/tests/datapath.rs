//! Sends, receives and OID requests through the emulated datapath, with a raw loopback miniport:
//! every frame it is sent, it indicates back up from its own receive buffers.

use std::cell::{Cell, RefCell};

use ndis_emu::{Config, Emulator, InterruptResources, rule};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

const OID_GEN_MAXIMUM_FRAME_SIZE: u32 = 0x0001_0106;
const OID_GEN_CURRENT_PACKET_FILTER: u32 = 0x0001_010E;
/// A private OID this driver completes later (from its next send).
const OID_PENDING_EXAMPLE: u32 = 0xFF00_0001;
const RX_BUFFERS: usize = 4;
const RX_SIZE: usize = 1514;

#[derive(Default, Clone, Copy)]
struct Bugs {
    overrun_oid_buffer: bool,
    understate_bytes_needed: bool,
    complete_send_twice: bool,
    keep_sends_at_pause: bool,
    leak_mdl: bool,
}

thread_local! {
    static BUGS: Cell<Bugs> = Cell::new(Bugs::default());
    static DRIVER: Cell<usize> = const { Cell::new(0) };
    static STATS: Cell<(u32, u32)> = const { Cell::new((0, 0)) }; // (returned lists, filter)
}

struct Rx {
    memory: Box<[u8]>,
    mdl: sys::PMDL,
    nbl: *mut sys::NET_BUFFER_LIST,
}

struct Loopback {
    handle: sys::NDIS_HANDLE,
    pool: sys::NDIS_HANDLE,
    rx: Vec<Rx>,
    free: RefCell<Vec<usize>>,
    held_sends: RefCell<Vec<*mut sys::NET_BUFFER_LIST>>,
    pending_oid: Cell<*mut sys::NDIS_OID_REQUEST>,
    leaked: Cell<sys::PMDL>,
}

fn adapter(ctx: sys::NDIS_HANDLE) -> &'static Loopback {
    // SAFETY: the adapter context initialize created, alive until halt.
    unsafe { &*(ctx as *const Loopback) }
}

unsafe extern "win64-unwind" fn initialize(
    h: sys::NDIS_HANDLE,
    _d: sys::NDIS_HANDLE,
    _p: *mut sys::NDIS_MINIPORT_INIT_PARAMETERS,
) -> i32 {
    let params = sys::NET_BUFFER_LIST_POOL_PARAMETERS {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: 0x80,
            Revision: 1,
            Size: 16,
        },
        ProtocolId: 0,
        fAllocateNetBuffer: 1,
        ContextSize: 0,
        PoolTag: u32::from_le_bytes(*b"loop"),
        DataSize: 0,
    };
    // SAFETY: initialize's own handle; the parameters live across the call.
    let pool = unsafe { sys::NdisAllocateNetBufferListPool(h, &params) };
    if pool.is_null() {
        return sys::NDIS_STATUS_RESOURCES;
    }
    let mut rx = Vec::new();
    for _ in 0..RX_BUFFERS {
        let mut memory = vec![0u8; RX_SIZE].into_boxed_slice();
        // SAFETY: `memory` lives in the adapter until halt frees the MDL first.
        let mdl = unsafe { sys::NdisAllocateMdl(h, memory.as_mut_ptr().cast(), RX_SIZE as u32) };
        // SAFETY: a live pool and MDL.
        let nbl = unsafe { sys::NdisAllocateNetBufferAndNetBufferList(pool, 0, 0, mdl, 0, 0) };
        assert!(
            !mdl.is_null() && !nbl.is_null(),
            "no faults are injected in these tests"
        );
        rx.push(Rx { memory, mdl, nbl });
    }
    let a = Box::new(Loopback {
        handle: h,
        pool,
        rx,
        free: RefCell::new((0..RX_BUFFERS).collect()),
        held_sends: RefCell::new(Vec::new()),
        pending_oid: Cell::new(std::ptr::null_mut()),
        leaked: Cell::new(std::ptr::null_mut()),
    });
    let ctx = Box::into_raw(a);
    // SAFETY: initialize's own handle.
    unsafe { ndis_emu::raw::set_required_attributes(h, ctx.cast()) }
}

unsafe extern "win64-unwind" fn halt(ctx: sys::NDIS_HANDLE, _a: i32) {
    // SAFETY: the adapter created in initialize, freed once.
    let a = unsafe { Box::from_raw(ctx.cast::<Loopback>()) };
    // SAFETY: every list and MDL is back with the driver at halt.
    unsafe {
        for rx in &a.rx {
            sys::NdisFreeNetBufferList(rx.nbl);
            sys::NdisFreeMdl(rx.mdl);
        }
        sys::NdisFreeNetBufferListPool(a.pool);
    }
    if !a.leaked.get().is_null() {
        std::mem::forget(a); // the buggy variant also leaks its state
    }
}

unsafe extern "win64-unwind" fn unload(_o: sys::PDRIVER_OBJECT) {
    // SAFETY: the registered driver handle.
    unsafe { sys::NdisMDeregisterMiniportDriver(DRIVER.get() as sys::NDIS_HANDLE) };
}

unsafe extern "win64-unwind" fn send(
    ctx: sys::NDIS_HANDLE,
    nbls: *mut sys::NET_BUFFER_LIST,
    _port: u32,
    flags: u32,
) {
    let a = adapter(ctx);
    let bugs = BUGS.get();
    // Complete a request left pending by an earlier OID.
    let pending = a.pending_oid.replace(std::ptr::null_mut());
    if !pending.is_null() {
        // SAFETY: the request NDIS handed over, still owned by the driver.
        unsafe { sys::NdisMOidRequestComplete(a.handle, pending, sys::NDIS_STATUS_SUCCESS) };
    }
    let mut nbl = nbls;
    let mut indicate: *mut sys::NET_BUFFER_LIST = std::ptr::null_mut();
    let mut count = 0;
    while !nbl.is_null() {
        // SAFETY: the chain NDIS handed over; one buffer per list.
        let (next, nb) = unsafe { ((*nbl).Next, (*nbl).FirstNetBuffer) };
        // SAFETY: as above.
        let length = unsafe { (*nb).DataLength.DataLength };
        let slot = a.free.borrow_mut().pop();
        if let Some(slot) = slot {
            let mut frame = vec![0u8; length as usize];
            // SAFETY: `frame` has room for the whole frame; NdisGetDataBuffer copies into it when
            // the data is not contiguous.
            let data =
                unsafe { sys::NdisGetDataBuffer(nb, length, frame.as_mut_ptr().cast(), 1, 0) };
            assert!(!data.is_null());
            // SAFETY: `data` points to `length` readable bytes; the receive buffer holds RX_SIZE.
            unsafe {
                let dst = a.rx[slot].memory.as_ptr().cast_mut();
                std::ptr::copy_nonoverlapping(data.cast::<u8>(), dst, length as usize);
                let rx_nbl = a.rx[slot].nbl;
                let rx_nb = (*rx_nbl).FirstNetBuffer;
                (*rx_nb).DataLength.DataLength = length;
                (*rx_nbl).Next = indicate;
            }
            indicate = a.rx[slot].nbl;
            count += 1;
        }
        // SAFETY: completing the list NDIS sent.
        unsafe {
            (*nbl).Status = sys::NDIS_STATUS_SUCCESS;
            (*nbl).Next = std::ptr::null_mut();
        }
        if bugs.keep_sends_at_pause {
            a.held_sends.borrow_mut().push(nbl);
        } else {
            let complete_flags = flags & sys::NDIS_SEND_FLAGS_DISPATCH_LEVEL;
            // SAFETY: the adapter's handle; the list NDIS sent, completed once...
            unsafe { sys::NdisMSendNetBufferListsComplete(a.handle, nbl, complete_flags) };
            if bugs.complete_send_twice {
                // ...except in the buggy variant.
                // SAFETY: deliberately wrong (the test expects the bug check).
                unsafe { sys::NdisMSendNetBufferListsComplete(a.handle, nbl, complete_flags) };
            }
        }
        nbl = next;
    }
    if count > 0 {
        // SAFETY: lists of this driver's pool, chained above; at DISPATCH_LEVEL as flagged.
        unsafe {
            sys::NdisMIndicateReceiveNetBufferLists(
                a.handle,
                indicate,
                0,
                count,
                sys::NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL,
            )
        };
    }
    if bugs.leak_mdl && a.leaked.get().is_null() {
        // SAFETY: a fresh MDL over the adapter's first buffer, never freed (the bug).
        a.leaked.set(unsafe {
            sys::NdisAllocateMdl(a.handle, a.rx[0].memory.as_ptr().cast_mut().cast(), 16)
        });
    }
}

unsafe extern "win64-unwind" fn return_nbls(
    ctx: sys::NDIS_HANDLE,
    mut nbl: *mut sys::NET_BUFFER_LIST,
    _flags: u32,
) {
    let a = adapter(ctx);
    while !nbl.is_null() {
        let slot = a.rx.iter().position(|r| r.nbl == nbl).expect("one of ours");
        a.free.borrow_mut().push(slot);
        let (returned, filter) = STATS.get();
        STATS.set((returned + 1, filter));
        // SAFETY: our own list, back from the protocol.
        nbl = unsafe { (*nbl).Next };
    }
}

unsafe extern "win64-unwind" fn oid(
    ctx: sys::NDIS_HANDLE,
    r: *mut sys::NDIS_OID_REQUEST,
) -> sys::NDIS_STATUS {
    let a = adapter(ctx);
    let bugs = BUGS.get();
    // SAFETY: the request NDIS handed over; the DATA member follows RequestType.
    unsafe {
        match ((*r).RequestType, (*r).DATA.QUERY_INFORMATION.Oid) {
            (sys::NdisRequestQueryInformation, OID_GEN_MAXIMUM_FRAME_SIZE) => {
                let q = &mut (*r).DATA.QUERY_INFORMATION;
                let needed = if bugs.understate_bytes_needed { 2 } else { 4 };
                if q.InformationBufferLength < 4 && !bugs.overrun_oid_buffer {
                    q.BytesNeeded = needed;
                    return sys::NDIS_STATUS_INVALID_LENGTH;
                }
                let bytes: [u8; 8] = [0xDC, 0x05, 0, 0, 0xEE, 0xEE, 0xEE, 0xEE];
                let n = if bugs.overrun_oid_buffer { 8 } else { 4 };
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), q.InformationBuffer.cast::<u8>(), n);
                q.BytesWritten = 4;
                sys::NDIS_STATUS_SUCCESS
            }
            (sys::NdisRequestSetInformation, OID_GEN_CURRENT_PACKET_FILTER) => {
                let s = &mut (*r).DATA.SET_INFORMATION;
                if s.InformationBufferLength < 4 {
                    s.BytesNeeded = 4;
                    return sys::NDIS_STATUS_INVALID_LENGTH;
                }
                let filter = std::ptr::read_unaligned(s.InformationBuffer.cast::<u32>());
                STATS.set((STATS.get().0, filter));
                s.BytesRead = 4;
                sys::NDIS_STATUS_SUCCESS
            }
            (sys::NdisRequestQueryInformation, OID_PENDING_EXAMPLE) => {
                a.pending_oid.set(r);
                sys::NDIS_STATUS_PENDING
            }
            _ => sys::NDIS_STATUS_NOT_SUPPORTED,
        }
    }
}

unsafe extern "win64-unwind" fn pause(
    ctx: sys::NDIS_HANDLE,
    _p: *mut sys::NDIS_MINIPORT_PAUSE_PARAMETERS,
) -> i32 {
    let _ = adapter(ctx);
    sys::NDIS_STATUS_SUCCESS
}

unsafe extern "win64-unwind" fn entry(
    o: sys::PDRIVER_OBJECT,
    p: *const sys::UNICODE_STRING,
) -> sys::NTSTATUS {
    let mut chars = ndis_emu::raw::driver_characteristics(20, initialize, halt, unload);
    chars.SendNetBufferListsHandler = Some(send);
    chars.ReturnNetBufferListsHandler = Some(return_nbls);
    chars.OidRequestHandler = Some(oid);
    chars.PauseHandler = Some(pause);
    // SAFETY: DriverEntry's own arguments.
    let (status, handle) = unsafe { ndis_emu::raw::register_driver(o, p, &chars) };
    DRIVER.set(handle as usize);
    status
}

fn running(bugs: Bugs) -> (Emulator, ndis_emu::AdapterId) {
    BUGS.set(bugs);
    STATS.set((0, 0));
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(entry), 0);
    let a = emu
        .add_adapter(InterruptResources::None)
        .expect("initialize");
    assert_eq!(emu.restart(a), 0);
    (emu, a)
}

fn stop(emu: &Emulator, a: ndis_emu::AdapterId) {
    emu.pause(a);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

#[test]
fn sent_frames_are_completed_and_indicated_back_byte_exact() {
    let (emu, a) = running(Bugs::default());
    let frames: Vec<Vec<u8>> = (0..3u8)
        .map(|i| (0..60 + i as usize * 700).map(|b| (b as u8) ^ i).collect())
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    emu.send(a, &refs);
    let completions = emu.send_completions();
    assert_eq!(completions.len(), 3);
    for ((frame, status), sent) in completions.iter().zip(&frames) {
        assert_eq!((frame, *status), (sent, sys::NDIS_STATUS_SUCCESS));
    }
    let mut received = emu.received_frames(a);
    received.sort();
    let mut expected = frames.clone();
    expected.sort();
    assert_eq!(received, expected, "indicated byte for byte");
    assert_eq!(
        emu.held_receives(a),
        3,
        "the protocol holds indicated lists until it returns them"
    );
    emu.return_receives(a);
    assert_eq!((emu.held_receives(a), STATS.get().0), (0, 3));
    stop(&emu, a);
}

#[test]
fn pause_returns_held_receives_first() {
    let (emu, a) = running(Bugs::default());
    emu.send(a, &[&[1, 2, 3], &[4, 5, 6]]);
    assert_eq!(emu.held_receives(a), 2);
    stop(&emu, a);
    assert_eq!(STATS.get().0, 2);
}

#[test]
fn oid_query_set_and_short_buffers() {
    let (emu, a) = running(Bugs::default());
    let r = emu.oid_query(a, OID_GEN_MAXIMUM_FRAME_SIZE, 4);
    assert_eq!(
        (r.status, r.data),
        (sys::NDIS_STATUS_SUCCESS, 1500u32.to_le_bytes().to_vec())
    );
    let short = emu.oid_query(a, OID_GEN_MAXIMUM_FRAME_SIZE, 2);
    assert_eq!(
        (short.status, short.bytes_needed),
        (sys::NDIS_STATUS_INVALID_LENGTH, 4)
    );
    let set = emu.oid_set(a, OID_GEN_CURRENT_PACKET_FILTER, &0x0Bu32.to_le_bytes());
    assert_eq!(
        (set.status, set.bytes_read, STATS.get().1),
        (sys::NDIS_STATUS_SUCCESS, 4, 0x0B)
    );
    assert_eq!(
        emu.oid_query(a, 0x0001_0101, 16).status,
        sys::NDIS_STATUS_NOT_SUPPORTED
    );
    stop(&emu, a);
}

#[test]
fn a_pending_oid_completes_later() {
    let (emu, a) = running(Bugs::default());
    assert_eq!(
        emu.oid_query(a, OID_PENDING_EXAMPLE, 8).status,
        sys::NDIS_STATUS_PENDING
    );
    assert_eq!(emu.oid_completion(), None);
    emu.send(a, &[&[9; 20]]); // the driver completes the request from its send handler
    assert_eq!(
        emu.oid_completion().map(|r| r.status),
        Some(sys::NDIS_STATUS_SUCCESS)
    );
    stop(&emu, a);
}

#[test]
fn writing_past_the_oid_buffer_is_caught() {
    let (emu, a) = running(Bugs {
        overrun_oid_buffer: true,
        ..Bugs::default()
    });
    let b = emu.expect_bugcheck(|| {
        emu.oid_query(a, OID_GEN_MAXIMUM_FRAME_SIZE, 4);
    });
    assert_eq!((b.code, b.params[0]), (0xC4, rule::OID_REQUEST));
    assert!(b.message.contains("past the end"), "{b}");
}

#[test]
fn a_short_buffer_answer_must_say_how_much_is_needed() {
    let (emu, a) = running(Bugs {
        understate_bytes_needed: true,
        ..Bugs::default()
    });
    let b = emu.expect_bugcheck(|| {
        emu.oid_query(a, OID_GEN_MAXIMUM_FRAME_SIZE, 2);
    });
    assert_eq!(
        (b.code, b.params[0], b.params[3]),
        (0xC4, rule::OID_REQUEST, 2)
    );
}

#[test]
fn completing_a_send_twice_is_caught() {
    let (emu, a) = running(Bugs {
        complete_send_twice: true,
        ..Bugs::default()
    });
    let b = emu.expect_bugcheck(|| emu.send(a, &[&[1; 64]]));
    assert_eq!((b.code, b.params[0]), (0xC4, rule::DATAPATH));
    assert!(b.message.contains("completed twice"), "{b}");
}

#[test]
fn sends_still_held_when_pause_returns_are_caught() {
    let (emu, a) = running(Bugs {
        keep_sends_at_pause: true,
        ..Bugs::default()
    });
    emu.send(a, &[&[1; 64], &[2; 64]]);
    let b = emu.expect_bugcheck(|| {
        emu.pause(a);
    });
    assert_eq!(
        (b.code, b.params[0], b.params[2]),
        (0xC4, rule::DATAPATH, 2)
    );
}

#[test]
fn an_mdl_leaked_at_unload_is_caught() {
    let (emu, a) = running(Bugs {
        leak_mdl: true,
        ..Bugs::default()
    });
    emu.send(a, &[&[1; 64]]);
    emu.pause(a);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    let b = emu.expect_bugcheck(|| emu.unload());
    assert_eq!(
        (b.code, b.params[0], b.params[3]),
        (0xC4, rule::UNLOAD_WITH_OUTSTANDING_OBJECTS, 1)
    );
}
