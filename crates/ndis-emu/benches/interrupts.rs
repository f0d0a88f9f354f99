//! Interrupts delivered per second through the emulator (message ISR + its DPC, the full round
//! trip: IoConnectInterruptEx-level delivery, NDIS ISR shim, DPC queue, DPC at DISPATCH_LEVEL),
//! with 1, 8 and 2048 messages, against a baseline run in the same process: the same driver ISR
//! and DPC called directly, back to back. Goal: >= 1 M interrupts/s on one core.
//!
//! `cargo bench -p ndis-emu --bench interrupts`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use ndis_emu::{Config, Emulator, InterruptResources};
use ndis_sys as sys;

static ISR_COUNT: AtomicU64 = AtomicU64::new(0);
static DPC_COUNT: AtomicU64 = AtomicU64::new(0);

unsafe extern "win64-unwind" fn isr(
    _c: sys::NDIS_HANDLE,
    _m: u32,
    qd: *mut sys::BOOLEAN,
    _tp: *mut u32,
) -> sys::BOOLEAN {
    ISR_COUNT.fetch_add(1, Relaxed);
    // SAFETY: NDIS's out-pointer.
    unsafe { *qd = 1 };
    1
}

unsafe extern "win64-unwind" fn dpc(
    _c: sys::NDIS_HANDLE,
    _m: u32,
    _d: sys::PVOID,
    _t: sys::PVOID,
    _r: sys::PVOID,
) {
    DPC_COUNT.fetch_add(1, Relaxed);
}

unsafe extern "win64-unwind" fn line_isr(
    _c: sys::NDIS_HANDLE,
    _q: *mut sys::BOOLEAN,
    _t: *mut u32,
) -> sys::BOOLEAN {
    0
}
unsafe extern "win64-unwind" fn line_dpc(
    _c: sys::NDIS_HANDLE,
    _d: sys::PVOID,
    _t: sys::PVOID,
    _r: sys::PVOID,
) {
}
unsafe extern "win64-unwind" fn nop(_c: sys::NDIS_HANDLE) {}
unsafe extern "win64-unwind" fn nop_m(_c: sys::NDIS_HANDLE, _m: u32) {}
unsafe extern "win64-unwind" fn halt(_c: sys::NDIS_HANDLE, _a: i32) {}
unsafe extern "win64-unwind" fn unload(_o: sys::PDRIVER_OBJECT) {}

unsafe extern "win64-unwind" fn initialize(
    h: sys::NDIS_HANDLE,
    _d: sys::NDIS_HANDLE,
    _p: *mut sys::NDIS_MINIPORT_INIT_PARAMETERS,
) -> i32 {
    // SAFETY: all-zero attribute unions and characteristics are valid; pointers live for the calls.
    unsafe {
        let mut a: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = std::mem::zeroed();
        a.RegistrationAttributes.Header = sys::NDIS_OBJECT_HEADER {
            Type: 0x9E,
            Revision: 1,
            Size: 28,
        };
        a.RegistrationAttributes.MiniportAdapterContext = 1 as sys::NDIS_HANDLE;
        sys::NdisMSetMiniportAttributes(h, &mut a);
        let mut g: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = std::mem::zeroed();
        g.GeneralAttributes.Header = sys::NDIS_OBJECT_HEADER {
            Type: 0x9F,
            Revision: 2,
            Size: 224,
        };
        sys::NdisMSetMiniportAttributes(h, &mut g);
        let mut c: sys::NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS = std::mem::zeroed();
        c.Header = sys::NDIS_OBJECT_HEADER {
            Type: 0x84,
            Revision: 1,
            Size: 96,
        };
        c.InterruptHandler = Some(line_isr);
        c.InterruptDpcHandler = Some(line_dpc);
        c.DisableInterruptHandler = Some(nop);
        c.EnableInterruptHandler = Some(nop);
        c.MsiSupported = 1;
        c.MessageInterruptHandler = Some(isr);
        c.MessageInterruptDpcHandler = Some(dpc);
        c.DisableMessageInterruptHandler = Some(nop_m);
        c.EnableMessageInterruptHandler = Some(nop_m);
        let mut ih: sys::NDIS_HANDLE = std::ptr::null_mut();
        sys::NdisMRegisterInterruptEx(h, std::ptr::null_mut(), &mut c, &mut ih)
    }
}

unsafe extern "win64-unwind" fn entry(
    o: sys::PDRIVER_OBJECT,
    p: *const sys::UNICODE_STRING,
) -> sys::NTSTATUS {
    let chars = ndis_emu::raw::driver_characteristics(20, initialize, halt, unload);
    // SAFETY: DriverEntry's own arguments.
    unsafe { ndis_emu::raw::register_driver(o, p, &chars).0 }
}

fn direct(n: u64, messages: u32) -> f64 {
    let start = Instant::now();
    let mut t = sys::NDIS_RECEIVE_THROTTLE_PARAMETERS {
        MaxNblsToIndicate: 64,
        Flags: 0,
    };
    for i in 0..n {
        let m = (i % messages as u64) as u32;
        let mut qd = 0u8;
        let mut tp = 0u32;
        let f: sys::MINIPORT_MSI_ISR_HANDLER = black_box(Some(isr));
        let d: sys::MINIPORT_MSI_INTERRUPT_DPC_HANDLER = black_box(Some(dpc));
        let (f, d) = (f.unwrap(), d.unwrap());
        // SAFETY: the benchmark's own handlers with valid locals.
        unsafe {
            if f(std::ptr::null_mut(), m, &mut qd, &mut tp) != 0 && qd != 0 {
                d(
                    std::ptr::null_mut(),
                    m,
                    std::ptr::null_mut(),
                    (&raw mut t).cast(),
                    std::ptr::null_mut(),
                );
            }
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn emulated(n: u64, messages: u32) -> f64 {
    let emu = Emulator::new(Config {
        cpus: 4,
        // Measured without heap accounting in the allocator (the hot path allocates nothing).
        unaccounted_heap: true,
        ..Config::default()
    });
    assert_eq!(emu.load_driver(entry), 0);
    let a = emu
        .add_adapter(InterruptResources::msix(messages))
        .expect("initialize");
    let device = emu.device_of(a);
    let before = DPC_COUNT.load(Relaxed);
    let start = Instant::now();
    for i in 0..n {
        emu.fire_message(device, (i % messages as u64) as u32);
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    assert_eq!(
        DPC_COUNT.load(Relaxed) - before,
        n,
        "every interrupt ran its DPC"
    );
    rate
}

fn main() {
    let n = 400_000;
    println!("interrupt round trips (message ISR + DPC), {n} per run, best of 3");
    let mut all_ok = true;
    for messages in [1u32, 8, 2048] {
        let base = (0..3).map(|_| direct(n, messages)).fold(0.0, f64::max);
        let emu = (0..3).map(|_| emulated(n, messages)).fold(0.0, f64::max);
        let ok = emu >= 1.0e6;
        all_ok &= ok;
        println!(
            "  {messages:>4} message(s): emulated {:>6.2} M/s | direct baseline {:>8.2} M/s | emulated/direct = {:.4} | goal >= 1 M/s: {}",
            emu / 1e6,
            base / 1e6,
            emu / base,
            if ok { "met" } else { "MISSED" }
        );
    }
    println!(
        "goal {}",
        if all_ok {
            "met for every message count"
        } else {
            "missed"
        }
    );
}
