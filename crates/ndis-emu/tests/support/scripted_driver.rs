//! A raw test miniport whose initialize and halt run per-test closures (scripts), shared by the
//! emulator's tests that need a driver but no framework: it registers, sets the required
//! attributes in initialize, then runs the script; halt runs the halt script; unload
//! deregisters. A test file writes its own `DriverEntry` from [`characteristics`] (adding the
//! handlers it studies) and [`register`].
//!
//! Everything is thread-local: one emulator per test thread.

// Each includer uses a different subset.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};

use ndis_sys as sys;

pub type Script = Box<dyn Fn(sys::NDIS_HANDLE)>;

thread_local! {
    pub static ON_INIT: RefCell<Option<Script>> = RefCell::new(None);
    pub static ON_HALT: RefCell<Option<Script>> = RefCell::new(None);
    static HANDLE: Cell<usize> = const { Cell::new(0) };
    static DRIVER: Cell<usize> = const { Cell::new(0) };
    static INIT_PARAMS: Cell<usize> = const { Cell::new(0) };
}

/// The adapter handle initialize got.
pub fn handle() -> sys::NDIS_HANDLE {
    HANDLE.get() as sys::NDIS_HANDLE
}

/// The parameters of the initialize that is running (for an initialize script; null outside
/// one).
pub fn init_params() -> *mut sys::NDIS_MINIPORT_INIT_PARAMETERS {
    INIT_PARAMS.get() as *mut sys::NDIS_MINIPORT_INIT_PARAMETERS
}

/// Loads the driver `entry` registers, with the scripts, and adds one adapter without
/// interrupt resources (initialize must succeed).
pub fn start(
    entry: ndis_emu::DriverEntry,
    init: impl Fn(sys::NDIS_HANDLE) + 'static,
    halt: impl Fn(sys::NDIS_HANDLE) + 'static,
) -> (ndis_emu::Emulator, ndis_emu::AdapterId) {
    set_scripts(init, halt);
    let emu = ndis_emu::Emulator::new(ndis_emu::Config::default());
    assert_eq!(emu.load_driver(entry), 0);
    let a = emu
        .add_adapter(ndis_emu::InterruptResources::None)
        .expect("initialize");
    (emu, a)
}

/// Installs the scripts for the next initialize and halt.
pub fn set_scripts(
    init: impl Fn(sys::NDIS_HANDLE) + 'static,
    halt: impl Fn(sys::NDIS_HANDLE) + 'static,
) {
    ON_INIT.with(|f| *f.borrow_mut() = Some(Box::new(init)));
    ON_HALT.with(|f| *f.borrow_mut() = Some(Box::new(halt)));
}

unsafe extern "win64-unwind" fn initialize(
    h: sys::NDIS_HANDLE,
    _d: sys::NDIS_HANDLE,
    p: *mut sys::NDIS_MINIPORT_INIT_PARAMETERS,
) -> sys::NDIS_STATUS {
    HANDLE.set(h as usize);
    // SAFETY: initialize's own handle.
    let s = unsafe { ndis_emu::raw::set_required_attributes(h, 1 as sys::NDIS_HANDLE) };
    INIT_PARAMS.set(p as usize);
    ON_INIT.with(|f| f.borrow().as_ref().map(|f| f(h)));
    INIT_PARAMS.set(0);
    s
}

unsafe extern "win64-unwind" fn halt(_c: sys::NDIS_HANDLE, _a: sys::NDIS_HALT_ACTION) {
    ON_HALT.with(|f| f.borrow().as_ref().map(|f| f(handle())));
}

unsafe extern "win64-unwind" fn unload(_o: sys::PDRIVER_OBJECT) {
    // SAFETY: the registered driver handle.
    unsafe { sys::NdisMDeregisterMiniportDriver(DRIVER.get() as sys::NDIS_HANDLE) };
}

/// The scripted driver's characteristics (NDIS 6.20), for the includer to extend.
pub fn characteristics() -> sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS {
    ndis_emu::raw::driver_characteristics(20, initialize, halt, unload)
}

/// Registers `chars` from a `DriverEntry` and remembers the driver handle for unload.
///
/// # Safety
/// `o` and `p` are `DriverEntry`'s own arguments.
pub unsafe fn register(
    o: sys::PDRIVER_OBJECT,
    p: *const sys::UNICODE_STRING,
    chars: &sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
) -> sys::NTSTATUS {
    // SAFETY: the caller's contract.
    let (status, handle) = unsafe { ndis_emu::raw::register_driver(o, p, chars) };
    DRIVER.set(handle as usize);
    status
}
