//! `ndis-emu`: a host emulator of `ndis.sys` and of the kernel pieces an NDIS miniport touches, so
//! drivers built on the framework are tested on Linux or macOS without a Windows kernel.
//!
//! It is not a mock: it enforces the NDIS contract (IRQL, call context, ordering, the verifier
//! rules of the interrupt API), delivers interrupts through an emulated `IoConnectInterruptEx` as
//! Windows does, runs DPCs on the processors they target at DISPATCH_LEVEL, injects faults, counts
//! every allocation and object, and reports a violation as Windows would: an emulated bug check
//! with the real code and parameters (see [`BugCheck`]).
//!
//! Driver code reaches it through the import seam of `ndis-sys`: creating an [`Emulator`] installs
//! the emulated exports. See `docs/emulator.md` for a walk-through and a complete example test.
//!
//! A test binary makes [`DriverHeap`] its global allocator, so that the driver's heap is
//! accounted (leaks at unload, heap use above DISPATCH_LEVEL, fallible allocations in fault
//! sweeps); without it [`Emulator::new`] panics with [`NO_DRIVER_HEAP`], which says so:
//!
//! ```
//! use ndis_emu::{Config, Emulator};
//!
//! #[global_allocator]
//! static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;
//!
//! fn main() {
//!     let emu = Emulator::new(Config { cpus: 2, ..Config::default() });
//!     assert!(emu.leak_detection());
//!     // emu.load_driver(DRIVER_ENTRY), emu.add_adapter(..), emu.send(..), emu.halt(..), ...
//! }
//! ```
#![cfg(not(windows))]

mod bugcheck;
mod config;
mod datapath;
pub mod devices;
mod dma;
mod exports;
mod faults;
mod heap;
pub mod image;
mod io;
mod machine;
mod memory;
mod ndis;
mod offload;
mod oid;
pub mod pci;
mod pnp;
mod power;
pub mod raw;
pub mod rss;
mod site;
mod sync;
mod trace;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::rc::Rc;

use ndis_sys as sys;

pub use bugcheck::{
    BAD_POOL_CALLER, BUGCODE_NDIS_DRIVER, DPC_WATCHDOG_VIOLATION,
    DRIVER_VERIFIER_DETECTED_VIOLATION, HARDWARE_INTERRUPT_STORM,
    NDIS_BUGCHECK_HALT_WITHOUT_INTERRUPT_DEREGISTER,
    NDIS_BUGCHECK_INIT_FAILED_WITHOUT_INTERRUPT_DEREGISTER, NDIS_BUGCHECK_INVALID_OBJECT_HEADER,
    VERIFIER_UNLOAD_WITH_OUTSTANDING_ALLOCATIONS,
};
pub use bugcheck::{BugCheck, rule};
pub use datapath::{ListInfo, SendIrql};
pub use dma::{GUEST_MEMORY_BASE, GUEST_MEMORY_SIZE, SgCallback};
pub use exports::{RUST_PANIC_BUGCHECK, Win64Export, win64_exports};
pub use faults::FaultPlan;
pub use heap::{DriverHeap, FALLIBLE_SITE, instrumentation};
pub use image::{LoadError, LoadedImage};
pub use machine::INTERRUPT_STORM_LIMIT;
pub use memory::{Allocation, AllocationKind, UNINITIALIZED_FILL};
pub use ndis::AdapterState;
pub use offload::{
    ChecksumTasks, LargeSendTasks, LsoLimits, OffloadState, RxChecksumInfo, SendChecksum,
    offload_encapsulation, offload_parameters,
};
pub use oid::OidResult;
pub use pnp::{InterruptAsk, RegisteredDriver};
pub use power::{SystemSleep, WakeError};
pub use sync::LinkState;
pub use trace::Event;
/// The guest-memory and virtqueue crates the device models are built on, for tests that drive a
/// model's rings themselves.
pub use {virtio_queue, vm_memory};

use machine::{Callback, Device, Machine, State};

/// `docs/emulator.md`, compiled by `cargo test --doc`: its Rust blocks are doc tests, so the
/// example device model of "Writing a device model" is built and run exactly as printed.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/emulator.md")]
pub struct EmulatorGuide;

/// `DriverEntry` as the emulator calls it.
pub type DriverEntry = unsafe extern "win64-unwind" fn(
    sys::PDRIVER_OBJECT,
    *const sys::UNICODE_STRING,
) -> sys::NTSTATUS;

/// The interrupt resources PnP assigned to a device (after the platform's policy was applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptResources {
    /// No interrupt at all.
    None,
    /// A line interrupt; devices with the same `line` and `shared: true` share it.
    Line { line: u8, shared: bool },
    /// PCI 2.2 MSI: one descriptor carrying the message count.
    Msi { requested: u32, granted: u32 },
    /// MSI-X: one descriptor per granted message.
    MsiX { requested: u32, granted: u32 },
}

impl InterruptResources {
    /// An unshared line.
    pub const fn line() -> Self {
        Self::Line {
            line: 0,
            shared: false,
        }
    }
    /// MSI-X with every requested message granted.
    pub const fn msix(messages: u32) -> Self {
        Self::MsiX {
            requested: messages,
            granted: messages,
        }
    }
    /// One MSI message.
    pub const fn msi() -> Self {
        Self::Msi {
            requested: 1,
            granted: 1,
        }
    }
}

/// Machine and platform settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Processors in group 0 (1..=64).
    pub cpus: usize,
    /// Seed of every scheduling choice; the same seed replays the same interleaving.
    pub seed: u64,
    /// What `NdisGetVersion` returns.
    pub ndis_runtime_version: u32,
    /// The Windows being emulated: `MmGetSystemRoutineAddress` finds only the exports that exist
    /// there (`ndis_sys::availability`), and calling an import newer than it is an error (a real
    /// Windows would have refused to load the image). `WINDOWS_10_1709` plays a Windows without
    /// `ExAllocatePool2`.
    pub windows_version: sys::availability::WindowsVersion,
    /// `MaxNblsToIndicate` handed to interrupt DPCs (`NDIS_INDICATE_ALL_NBLS` for no limit).
    pub max_nbls_per_dpc: u32,
    /// Consecutive `MoreNblsPending` requeues of one DPC before DPC_WATCHDOG_VIOLATION.
    pub dpc_requeue_limit: u32,
    /// `IoConnectInterruptEx` behaves as Iointex.lib on pre-Vista Windows.
    pub pre_vista_io_connect: bool,
    /// Let a DPC of another processor run at preemption points inside a DPC.
    pub interleave_dpcs: bool,
    pub trace: bool,
    pub faults: FaultPlan,
    /// How the protocol above calls the send and return handlers: at DISPATCH_LEVEL with the
    /// `*_DISPATCH_LEVEL` flag set (default), at DISPATCH_LEVEL with it clear, or at
    /// PASSIVE_LEVEL ([`SendIrql`]); [`Emulator::set_send_irql`] changes it during a test.
    pub send_irql: SendIrql,
    /// TCP/IP configures RSS when it binds to an adapter that reports RSS capabilities (see
    /// [`rss`]); on by default.
    pub rss_at_bind: bool,
    /// When NDIS calls a miniport's `ProcessSGListHandler` for a list of
    /// `NdisMAllocateNetBufferSGList`: inline (default) or deferred to a later DPC;
    /// [`Emulator::set_sg_callback`] changes it during a test.
    pub sg_callback: SgCallback,
    /// Run without [`DriverHeap`] as the process's global allocator: the driver's Rust heap goes
    /// unaccounted (no heap leak reports, no heap use above DISPATCH_LEVEL caught, no fallible
    /// heap allocations in fault sweeps). Off by default: [`Emulator::new`] then panics, naming
    /// the two lines a test crate adds, instead of letting those checks silently pass. For
    /// benchmarks and tests of the emulator itself.
    pub unaccounted_heap: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cpus: 4,
            seed: 0,
            ndis_runtime_version: 0x0006_0056, // NDIS 6.86
            windows_version: sys::availability::WindowsVersion::new(10, 0, 26100), // 11 24H2
            max_nbls_per_dpc: 64,
            dpc_requeue_limit: 10_000,
            pre_vista_io_connect: false,
            interleave_dpcs: false,
            trace: false,
            faults: FaultPlan::default(),
            send_irql: SendIrql::default(),
            rss_at_bind: true,
            sg_callback: SgCallback::Inline,
            unaccounted_heap: false,
        }
    }
}

/// A handle on one adapter the emulator started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterId(pub usize);

/// A handle on one emulated PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceId(pub usize);

/// The emulated machine, NDIS and the driver loaded into it. One per thread at a time; the driver
/// code the test calls runs on this thread.
pub struct Emulator {
    machine: Rc<Machine>,
    leak_detection: bool,
    /// Driver images loaded with [`Emulator::load_image`]: mapped until [`Emulator::unload`].
    images: std::cell::RefCell<Vec<image::loader::Mapping>>,
    /// (name, base, size) of every image loaded, kept past unload: leak reports name frames
    /// inside them.
    image_ranges: std::cell::RefCell<Vec<site::ImageRange>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator").finish_non_exhaustive()
    }
}

impl Emulator {
    pub fn new(config: Config) -> Self {
        assert!(
            (1..=64).contains(&config.cpus),
            "cpus must be 1..=64 (group 0 only)"
        );
        sys::host::install(&exports::HOST_IMPORTS);
        sys::host::set_fallible_allocation_hook(heap::fallible_allocation_hook);
        sys::mmio::host::install_mmio(&pci::HOST_MMIO);
        machine::reset_bugchecked();
        heap::reset();
        let leak_detection = heap::probe();
        assert!(
            leak_detection || config.unaccounted_heap,
            "{NO_DRIVER_HEAP}"
        );
        let machine = Rc::new(Machine {
            state: std::cell::RefCell::new(State::new(config)),
        });
        machine::install(machine.clone());
        Emulator {
            machine,
            leak_detection,
            images: std::cell::RefCell::new(Vec::new()),
            image_ranges: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// Loads a cross-built driver image (`.sys`/`.dll`, PE32+ AMD64) as the Windows loader
    /// would: mapped, relocated, its `/GS` cookie initialised, every import bound to the
    /// emulated exports ([`win64_exports`]) that exist on [`Config::windows_version`]. Then
    /// `load_driver(image.entry())` runs its `DriverEntry`. The image stays mapped until
    /// [`unload`](Self::unload) (or until the emulator is dropped). A missing import fails the
    /// load naming `module!function`, as Windows fails the start with Code 39.
    pub fn load_image(&self, path: impl AsRef<std::path::Path>) -> Result<LoadedImage, LoadError> {
        let windows = self.st().config.windows_version;
        let (image, mapping) = image::loader::load_file(path.as_ref(), windows)?;
        // The image's register accesses and privileged instructions fault on the host: the
        // trap performs them (image/trap.rs).
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        self.trap_hardware_access();
        self.images.borrow_mut().push(mapping);
        self.note_image(&image);
        // The image dereferences its register mappings and reads CR8: trap both from now on.
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        self.trap_hardware_access();
        Ok(image)
    }

    fn note_image(&self, image: &LoadedImage) {
        let name = std::path::Path::new(&image.name)
            .file_name()
            .map_or_else(|| image.name.clone(), |n| n.to_string_lossy().into_owned());
        self.image_ranges
            .borrow_mut()
            .push((name, image.base, image.size));
    }

    /// [`load_image`](Self::load_image) from the image's bytes; `name` names it in the trace.
    pub fn load_image_bytes(&self, name: &str, bytes: &[u8]) -> Result<LoadedImage, LoadError> {
        let windows = self.st().config.windows_version;
        let (image, mapping) = image::loader::load_bytes(name, bytes, windows)?;
        // The image's register accesses and privileged instructions fault on the host: the
        // trap performs them (image/trap.rs).
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        self.trap_hardware_access();
        self.images.borrow_mut().push(mapping);
        self.note_image(&image);
        // The image dereferences its register mappings and reads CR8: trap both from now on.
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        self.trap_hardware_access();
        Ok(image)
    }

    /// Whether the driver's Rust heap is accounted: [`DriverHeap`] is this test binary's global
    /// allocator (probed when the emulator is created). Without it, heap leaks, heap use above
    /// DISPATCH_LEVEL and fallible heap allocations in fault sweeps go unseen, and
    /// `Emulator::new` refuses to start unless [`Config::unaccounted_heap`] says to.
    pub fn leak_detection(&self) -> bool {
        self.leak_detection
    }

    /// How the protocol calls the send and return handlers from now on (see [`SendIrql`]).
    pub fn set_send_irql(&self, how: SendIrql) {
        self.st().config.send_irql = how;
    }

    fn st(&self) -> std::cell::RefMut<'_, State> {
        assert!(
            !machine::bugchecked(),
            "the emulated machine bug-checked; it cannot run anything else"
        );
        self.machine.st()
    }

    /// Adds a bare PCI function (for WDM tests of `IoConnectInterruptEx`); returns its PDO too.
    pub fn add_device(&self, resources: InterruptResources) -> (DeviceId, sys::PDEVICE_OBJECT) {
        self.add_device_with(resources, Box::new(pci::PlainFunction::default()))
    }

    /// Adds a PCI function whose hardware is `function` (a device model).
    pub fn add_device_with(
        &self,
        resources: InterruptResources,
        function: Box<dyn pci::PciFunction>,
    ) -> (DeviceId, sys::PDEVICE_OBJECT) {
        let mut st = self.st();
        let messages = match resources {
            InterruptResources::Msi { granted, requested }
            | InterruptResources::MsiX { granted, requested } => {
                assert!(
                    granted <= requested,
                    "cannot grant more messages than the device asked for"
                );
                assert!(
                    granted <= 2048,
                    "Windows allocates at most 2048 messages per function"
                );
                granted
            }
            _ => 0,
        };
        let base =
            machine::MESSAGE_VECTOR_BASE + st.next_message_vector % machine::MESSAGE_VECTOR_SPAN;
        st.next_message_vector += messages.max(1);
        let index = st.devices.len();
        let pci = pci::attach(&mut st.mmio, index, resources, function);
        st.devices.push(Device {
            resources,
            offer: resources,
            message_cpus: Vec::new(),
            pdo: Box::new([0; 8]),
            message_vector_base: base,
            message_connection: None,
            pci,
            power_management_disabled: false,
            line: Default::default(),
        });
        let d = st.devices.len() - 1;
        let pdo = st.devices[d].pdo.as_ptr() as sys::PDEVICE_OBJECT;
        (DeviceId(d), pdo)
    }

    /// Calls `DriverEntry` at PASSIVE_LEVEL (NdisMRegisterMiniportDriver runs inside it).
    pub fn load_driver(&self, entry: DriverEntry) -> sys::NTSTATUS {
        let (object, cpu) = {
            let mut st = self.st();
            assert!(
                st.ndis.driver_object.is_none(),
                "a driver is already loaded"
            );
            st.ndis.driver_object = Some(Box::new([0; 42]));
            (
                st.ndis.driver_object.as_ref().unwrap().as_ptr() as sys::PDRIVER_OBJECT,
                st.cpu,
            )
        };
        let path: Vec<u16> = "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\emulated"
            .encode_utf16()
            .collect();
        let registry_path = sys::UNICODE_STRING {
            Length: (path.len() * 2) as u16,
            MaximumLength: (path.len() * 2) as u16,
            Buffer: path.as_ptr() as *mut u16,
        };
        let status = machine::on_cpu(
            &self.machine,
            cpu,
            sys::PASSIVE_LEVEL,
            Callback::DriverEntry,
            || {
                // SAFETY: DriverEntry is called once with a driver object and registry path that stay
                // valid for the call, at PASSIVE_LEVEL, as the I/O manager does.
                unsafe { entry(object, &registry_path) }
            },
        );
        if status < 0 && self.st().ndis.driver.as_ref().is_some_and(|d| d.live) {
            bugcheck::raise(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    rule::UNLOAD_WITHOUT_DEREGISTER,
                    status as u32 as usize,
                    0,
                    0,
                ],
                "DriverEntry failed after NdisMRegisterMiniportDriver succeeded without calling \
                 NdisMDeregisterMiniportDriver before returning",
            );
        }
        machine::run_dpcs(&self.machine);
        status
    }

    /// Starts an adapter on a new device with `resources`: builds the init parameters (with the
    /// resource list) and calls `MiniportInitializeEx` at PASSIVE_LEVEL.
    pub fn add_adapter(
        &self,
        resources: InterruptResources,
    ) -> Result<AdapterId, sys::NDIS_STATUS> {
        self.add_adapter_with(resources, Box::new(pci::PlainFunction::default()))
    }

    /// [`add_adapter`](Self::add_adapter) on a device whose hardware is `function`.
    pub fn add_adapter_with(
        &self,
        resources: InterruptResources,
        function: Box<dyn pci::PciFunction>,
    ) -> Result<AdapterId, sys::NDIS_STATUS> {
        let (device, _) = self.add_device_with(resources, function);
        let (a, status) = self.initialize_on(device, None);
        if status == sys::NDIS_STATUS_SUCCESS {
            Ok(AdapterId(a))
        } else {
            Err(status)
        }
    }

    /// `MiniportInitializeEx` again for halted adapter `a`, on its device (after a sleep
    /// without power management): the same `AdapterId`, a fresh adapter context.
    pub(crate) fn reinitialize(&self, a: AdapterId) -> sys::NDIS_STATUS {
        let device = {
            let st = self.st();
            let adapter = &st.ndis.adapters[a.0];
            assert_eq!(
                adapter.state,
                AdapterState::Halted,
                "reinitialize a halted adapter"
            );
            DeviceId(adapter.device)
        };
        self.initialize_on(device, Some(a.0)).1
    }

    /// Builds the init parameters (with the resource list) for an adapter on `device` — a new
    /// one, or `reuse` — and calls `MiniportInitializeEx` at PASSIVE_LEVEL.
    fn initialize_on(&self, device: DeviceId, reuse: Option<usize>) -> (usize, sys::NDIS_STATUS) {
        let (a, init, driver_context, params) = {
            let mut st = self.st();
            let driver = st
                .ndis
                .driver
                .as_ref()
                .filter(|d| d.live)
                .expect("load_driver first: no miniport driver registered");
            let init = driver
                .chars
                .InitializeHandlerEx
                .expect("checked at registration");
            let driver_context = driver.context;
            let a = reuse.unwrap_or(st.ndis.adapters.len());
            let resources = resource_list(&st.devices[device.0]);
            // A re-initialization after a sleep keeps the device PnP started: its add-device
            // context and the handlers called so far.
            let (kept_pnp, kept_lifecycle) = reuse
                .map(|i| {
                    let old = &mut st.ndis.adapters[i];
                    (old.pnp.take(), std::mem::take(&mut old.lifecycle))
                })
                .unwrap_or_default();
            let mut adapter = ndis::Adapter {
                device: device.0,
                state: AdapterState::Initializing,
                context: None,
                attribute_flags: 0,
                dma: None,
                general_set: false,
                offload: None,
                interrupt: None,
                hang: ndis::HangCheck::default(),
                pm_capabilities: false,
                device_state: sys::NdisDeviceStateD0,
                asleep: power::Asleep::Awake,
                bound: false,
                bind_filter: None,
                // SAFETY: all-zero is a valid NDIS_MINIPORT_INIT_PARAMETERS (null pointers, zeros).
                init_params: Box::new(unsafe { std::mem::zeroed() }),
                resources,
                pnp: kept_pnp,
                lifecycle: kept_lifecycle,
            };
            *adapter.init_params = sys::NDIS_MINIPORT_INIT_PARAMETERS {
                Header: sys::NDIS_OBJECT_HEADER {
                    Type: sys::NDIS_OBJECT_TYPE_MINIPORT_INIT_PARAMETERS,
                    Revision: sys::NDIS_MINIPORT_INIT_PARAMETERS_REVISION_1,
                    Size: sys::NDIS_SIZEOF_MINIPORT_INIT_PARAMETERS_REVISION_1,
                },
                AllocatedResources: adapter.resources.as_mut_ptr().cast(),
                IfIndex: 10 + a as u32,
                NetLuid: 0x0006_0000_0000_0000 | a as u64,
                ..*adapter.init_params
            };
            let params = &mut *adapter.init_params as *mut sys::NDIS_MINIPORT_INIT_PARAMETERS;
            match reuse {
                Some(i) => st.ndis.adapters[i] = adapter,
                None => st.ndis.adapters.push(adapter),
            }
            (a, init, driver_context, params)
        };
        let pnp_driver = self
            .st()
            .ndis
            .driver
            .as_ref()
            .is_some_and(|d| d.pnp.is_some());
        if pnp_driver && reuse.is_none() {
            let started = pnp::start(&self.machine, a);
            machine::run_dpcs(&self.machine);
            if let Err(status) = started {
                return (a, status);
            }
        }
        if pnp_driver {
            pnp::after_start(&mut self.st(), a);
        }
        self.st().ndis.adapters[a]
            .lifecycle
            .push("MiniportInitializeEx");
        let cpu = self.machine.st().cpu;
        let status = machine::on_cpu(
            &self.machine,
            cpu,
            sys::PASSIVE_LEVEL,
            Callback::Initialize(a),
            || {
                // SAFETY: the driver's initialize handler, with the handle, driver context and init
                // parameters NDIS passes; `params` lives in the adapter record.
                unsafe {
                    init(
                        ndis::adapter_handle(a),
                        driver_context as sys::NDIS_HANDLE,
                        params,
                    )
                }
            },
        );
        ndis::after_initialize(&mut self.st(), a, status);
        if status != sys::NDIS_STATUS_SUCCESS {
            pnp::remove(&self.machine, a);
        }
        machine::run_dpcs(&self.machine);
        (a, status)
    }

    pub fn adapter_state(&self, a: AdapterId) -> AdapterState {
        self.st().ndis.adapters[a.0].state
    }

    /// The device behind an adapter (for interrupt injection).
    pub fn device_of(&self, a: AdapterId) -> DeviceId {
        DeviceId(self.st().ndis.adapters[a.0].device)
    }

    fn adapter_call(
        &self,
        a: AdapterId,
        from: AdapterState,
        callback: Callback,
        pick: impl FnOnce(
            &sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
            sys::NDIS_HANDLE,
        ) -> Box<dyn FnOnce() -> sys::NDIS_STATUS>,
    ) -> sys::NDIS_STATUS {
        {
            let st = self.st();
            let adapter = &st.ndis.adapters[a.0];
            assert_eq!(
                adapter.state, from,
                "adapter {} is {:?}, expected {from:?}",
                a.0, adapter.state
            );
        }
        self.adapter_callback(a, callback, pick)
    }

    /// Calls one of adapter `a`'s handlers at PASSIVE_LEVEL, whatever its state.
    fn adapter_callback(
        &self,
        a: AdapterId,
        callback: Callback,
        pick: impl FnOnce(
            &sys::NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
            sys::NDIS_HANDLE,
        ) -> Box<dyn FnOnce() -> sys::NDIS_STATUS>,
    ) -> sys::NDIS_STATUS {
        let (call, cpu) = {
            let st = self.st();
            let adapter = &st.ndis.adapters[a.0];
            let chars = &st.ndis.driver.as_ref().expect("driver").chars;
            (
                pick(chars, adapter.context.unwrap_or(0) as sys::NDIS_HANDLE),
                st.cpu,
            )
        };
        let status = machine::on_cpu(&self.machine, cpu, sys::PASSIVE_LEVEL, callback, call);
        machine::run_dpcs(&self.machine);
        status
    }

    /// `MiniportRestart`: Paused -> Running (-> Restarting when the driver pends it; its
    /// `NdisMRestartComplete` finishes the transition). Returns what the handler returned.
    pub fn restart(&self, a: AdapterId) -> sys::NDIS_STATUS {
        let mut params = sys::NDIS_MINIPORT_RESTART_PARAMETERS {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_DEFAULT,
                Revision: sys::NDIS_MINIPORT_RESTART_PARAMETERS_REVISION_1,
                Size: sys::NDIS_SIZEOF_MINIPORT_RESTART_PARAMETERS_REVISION_1,
            },
            RestartAttributes: core::ptr::null_mut(),
            Flags: 0,
        };
        let p: *mut sys::NDIS_MINIPORT_RESTART_PARAMETERS = &mut params;
        self.st().ndis.adapters[a.0].state = AdapterState::Restarting;
        let status = self.adapter_call(
            a,
            AdapterState::Restarting,
            Callback::Restart(a.0),
            |c, ctx| {
                let f = c.RestartHandler.expect("checked at registration");
                // SAFETY: the driver's restart handler with its adapter context; the parameters
                // outlive the call.
                Box::new(move || unsafe { f(ctx, p) })
            },
        );
        let (bind, encapsulation) = {
            let mut st = self.st();
            match status {
                sys::NDIS_STATUS_PENDING => {}
                sys::NDIS_STATUS_SUCCESS => st.ndis.adapters[a.0].state = AdapterState::Running,
                _ => st.ndis.adapters[a.0].state = AdapterState::Paused,
            }
            let adapter = &mut st.ndis.adapters[a.0];
            let bind = status == sys::NDIS_STATUS_SUCCESS && !adapter.bound;
            adapter.bound |= bind;
            let offload = &adapter.offload;
            (
                bind,
                status == sys::NDIS_STATUS_SUCCESS
                    && offload.is_some_and(|o| o.encapsulation.is_none()),
            )
        };
        if bind {
            self.bind_packet_filter(a);
        }
        if encapsulation {
            self.bind_tcpip(a);
        }
        if bind {
            self.bind_rss(a);
        }
        status
    }

    /// What TCP/IP does when it binds to an adapter that reported RSS capabilities
    /// (`Config::rss_at_bind`, on by default): `OID_GEN_RECEIVE_SCALE_PARAMETERS` with a random
    /// 40-byte key (from the seed), IPv4, TCP/IPv4, IPv6 and TCP/IPv6, and a 128-entry table
    /// over the first min(processors, receive queues) processors, round robin.
    fn bind_rss(&self, a: AdapterId) {
        let (caps, cpus, key) = {
            let mut st = self.st();
            if !st.config.rss_at_bind {
                return;
            }
            let caps = st.rss.adapters.get(&a.0).and_then(|r| r.caps);
            let mut key = [0u8; 40];
            for b in &mut key {
                *b = st.random_below(256) as u8;
            }
            (caps, st.cpus.len(), key)
        };
        let Some(caps) = caps else {
            return;
        };
        let spread = cpus.min(caps.receive_queues.max(1) as usize).max(1);
        let table: Vec<u8> = (0..128).map(|i| (i % spread) as u8).collect();
        let types = sys::NDIS_HASH_IPV4
            | sys::NDIS_HASH_TCP_IPV4
            | sys::NDIS_HASH_IPV6
            | sys::NDIS_HASH_TCP_IPV6;
        let data = rss::receive_scale_parameters(0, types, &table, &key);
        let _ = self.oid_set(a, sys::OID_GEN_RECEIVE_SCALE_PARAMETERS, &data);
    }

    /// What the RSS checker saw on `adapter` since the last report (and resets it), with the
    /// configuration it checks against (None: RSS off).
    pub fn rss_report(&self, a: AdapterId) -> (rss::RssReport, Option<rss::RssConfig>) {
        let mut st = self.st();
        let r = st.rss.adapters.entry(a.0).or_default();
        (core::mem::take(&mut r.report), r.config.clone())
    }

    /// The RSS capabilities `adapter` reported in its general attributes.
    pub fn rss_capabilities(&self, a: AdapterId) -> Option<rss::RssCapabilities> {
        self.st().rss.adapters.get(&a.0).and_then(|r| r.caps)
    }

    /// The packet filter TCP/IP sets when it binds (directed, multicast, broadcast): until a
    /// protocol sets one, the filter is 0 and a miniport indicates nothing. Done at the first
    /// restart after initialize; a test changes it with `OID_GEN_CURRENT_PACKET_FILTER`.
    fn bind_packet_filter(&self, a: AdapterId) {
        let filter = sys::NDIS_PACKET_TYPE_DIRECTED
            | sys::NDIS_PACKET_TYPE_MULTICAST
            | sys::NDIS_PACKET_TYPE_BROADCAST;
        let mut r = self.oid_set(a, sys::OID_GEN_CURRENT_PACKET_FILTER, &filter.to_le_bytes());
        if r.status == sys::NDIS_STATUS_PENDING {
            self.run_dpcs();
            r.status = self
                .oid_completion()
                .map_or(sys::NDIS_STATUS_PENDING, |c| c.status);
        }
        // A driver that refuses it (a raw test driver without OID handling) stays with filter 0,
        // as TCP/IP's bind would then fail on Windows; the adapter itself is not failed.
        self.st().ndis.adapters[a.0].bind_filter = Some(r.status);
    }

    /// What NDIS does when TCP/IP binds to an adapter that reported checksum offload: set
    /// `OID_OFFLOAD_ENCAPSULATION` (Ethernet, 14-byte header, IPv4 and IPv6 on), before which a
    /// miniport must not validate receive checksums. Done once, at the first restart.
    fn bind_tcpip(&self, a: AdapterId) {
        let e = offload_encapsulation(sys::NDIS_OFFLOAD_SET_ON, sys::NDIS_OFFLOAD_SET_ON, 14);
        let result = self.oid_set(a, sys::OID_OFFLOAD_ENCAPSULATION, &e);
        if let Some(o) = &mut self.st().ndis.adapters[a.0].offload {
            o.encapsulation = Some(result.status);
        }
    }

    /// `adapter`'s checksum offload as NDIS knows it (None: no offload attributes).
    pub fn offload(&self, a: AdapterId) -> Option<OffloadState> {
        self.st().ndis.adapters[a.0].offload
    }

    /// `MiniportPause`: Running -> Paused (-> Pausing when the driver pends it; its
    /// `NdisMPauseComplete` finishes the transition). The protocols return every held receive
    /// first; once pause completes the driver must have completed every send.
    pub fn pause(&self, a: AdapterId) -> sys::NDIS_STATUS {
        datapath::return_held(&self.machine, a.0);
        self.pause_holding_receives(a)
    }

    /// `MiniportPause` while the protocols still hold indicated receives (NDIS does not promise
    /// they were returned first): the miniport must pend the pause and complete it once the last
    /// one comes back ([`return_receives`](Self::return_receives)).
    pub fn pause_holding_receives(&self, a: AdapterId) -> sys::NDIS_STATUS {
        let mut params = sys::NDIS_MINIPORT_PAUSE_PARAMETERS {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_DEFAULT,
                Revision: sys::NDIS_MINIPORT_PAUSE_PARAMETERS_REVISION_1,
                Size: sys::NDIS_SIZEOF_MINIPORT_PAUSE_PARAMETERS_REVISION_1,
            },
            Flags: 0,
            PauseReason: sys::NDIS_PAUSE_NDIS_INTERNAL,
        };
        let p: *mut sys::NDIS_MINIPORT_PAUSE_PARAMETERS = &mut params;
        self.st().ndis.adapters[a.0].state = AdapterState::Pausing;
        let status = self.adapter_call(a, AdapterState::Pausing, Callback::Pause(a.0), |c, ctx| {
            let f = c.PauseHandler.expect("checked at registration");
            // SAFETY: as for restart.
            Box::new(move || unsafe { f(ctx, p) })
        });
        match status {
            sys::NDIS_STATUS_PENDING => {}
            sys::NDIS_STATUS_SUCCESS => {
                datapath::check_no_sends(&self.st(), a.0, "MiniportPause returned");
                self.st().ndis.adapters[a.0].state = AdapterState::Paused;
            }
            other => bugcheck::raise(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::CALL_CONTEXT, a.0, other as u32 as usize, 0],
                format!(
                    "MiniportPause of adapter {} returned {other:#010x}: pause must succeed or pend",
                    a.0
                ),
            ),
        }
        status
    }

    /// `MiniportHaltEx` on a paused adapter; then checks the interrupt was deregistered.
    pub fn halt(&self, a: AdapterId, action: sys::NDIS_HALT_ACTION) {
        self.adapter_call(a, AdapterState::Paused, Callback::Halt(a.0), |c, ctx| {
            let f = c.HaltHandlerEx.expect("checked at registration");
            Box::new(move || {
                // SAFETY: the driver's halt handler with its adapter context, at PASSIVE_LEVEL.
                unsafe { f(ctx, action) };
                sys::NDIS_STATUS_SUCCESS
            })
        });
        ndis::after_halt(&mut self.st(), a.0);
        self.st().ndis.adapters[a.0]
            .lifecycle
            .push("MiniportHaltEx");
        // Halted for a sleep, the device stays: no IRP_MN_REMOVE_DEVICE, and the wake-up
        // initializes it again without a new AddDevice.
        if action != sys::NdisHaltDevicePoweredDown {
            pnp::remove(&self.machine, a.0);
        }
    }

    /// Calls the driver's unload handler, then checks that the driver deregistered and released
    /// every allocation, interrupt, connection and DPC.
    pub fn unload(&self) {
        let (unload, object, cpu) = {
            let st = self.st();
            for (i, a) in st.ndis.adapters.iter().enumerate() {
                assert!(
                    matches!(a.state, AdapterState::Halted | AdapterState::Failed),
                    "adapter {i} is {:?}: halt every adapter before unload",
                    a.state
                );
            }
            let unload = st
                .ndis
                .driver
                .as_ref()
                .filter(|d| d.live)
                .map(|d| d.chars.UnloadHandler.expect("checked"));
            let object = st
                .ndis
                .driver_object
                .as_ref()
                .map(|o| o.as_ptr() as sys::PDRIVER_OBJECT);
            (unload, object, st.cpu)
        };
        // PnP removes every device before the driver unloads (one halted for a sleep that
        // never woke still has its AddDevice context).
        let adapters = self.st().ndis.adapters.len();
        for a in 0..adapters {
            pnp::remove(&self.machine, a);
        }
        if let (Some(unload), Some(object)) = (unload, object) {
            machine::on_cpu(
                &self.machine,
                cpu,
                sys::PASSIVE_LEVEL,
                Callback::Unload,
                || {
                    // SAFETY: the driver's unload handler with its driver object, at PASSIVE_LEVEL.
                    unsafe { unload(object) }
                },
            );
        }
        // Windows unmaps a driver image once its unload routine returned.
        self.images.borrow_mut().clear();
        self.check_released();
    }

    /// The checks unload makes, callable on their own (e.g. for WDM-only tests).
    pub fn check_released(&self) {
        let mut st = self.st();
        if st.ndis.driver.as_ref().is_some_and(|d| d.live) {
            drop(st);
            bugcheck::raise(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::UNLOAD_WITHOUT_DEREGISTER, 0, 0, 0],
                "the driver unloaded while still registered: MiniportDriverUnload must call \
                 NdisMDeregisterMiniportDriver",
            );
        }
        datapath::check_released(&st);
        let (blocks, bytes) = dma::outstanding(&st);
        if blocks > 0 {
            drop(st);
            bugcheck::raise(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    VERIFIER_UNLOAD_WITH_OUTSTANDING_ALLOCATIONS,
                    2,
                    bytes,
                    blocks,
                ],
                format!(
                    "the driver is unloading with {blocks} shared-memory block(s) ({bytes} bytes) not freed"
                ),
            );
        }
        let configs = config::open_handles(&st);
        if configs > 0 {
            drop(st);
            bugcheck::raise(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::UNLOAD_WITH_OUTSTANDING_OBJECTS, configs, 0, 0],
                format!(
                    "unload with {configs} configuration handle(s) not closed (NdisCloseConfiguration)"
                ),
            );
        }
        let timers = sync::live_timers(&st);
        if timers > 0 {
            drop(st);
            bugcheck::raise(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [rule::UNLOAD_WITH_OUTSTANDING_OBJECTS, timers, 0, 0],
                format!("unload with {timers} timer object(s) not freed (NdisFreeTimerObject)"),
            );
        }
        let interrupts = st.ndis.interrupts.iter().filter(|i| i.live).count();
        let connections = st.connections.iter().filter(|c| c.live).count();
        let dpcs: usize = st.cpus.iter().map(|c| c.queue.len()).sum();
        if interrupts + connections + dpcs > 0 {
            drop(st);
            bugcheck::raise(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    rule::UNLOAD_WITH_OUTSTANDING_OBJECTS,
                    interrupts,
                    connections,
                    dpcs,
                ],
                format!(
                    "unload with {interrupts} NDIS interrupt(s), {connections} kernel interrupt connection(s) \
                     and {dpcs} queued DPC(s) outstanding"
                ),
            );
        }
        let (heap_blocks, heap_bytes) = heap::live();
        let images = self.image_ranges.borrow().clone();
        if heap_blocks > 0 {
            drop(st);
            let sites: Vec<String> = heap::live_by_site(&images)
                .into_iter()
                .map(|(site, n, bytes)| format!("{n} x, {bytes} bytes, allocated at {site}"))
                .collect();
            bugcheck::raise(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    VERIFIER_UNLOAD_WITH_OUTSTANDING_ALLOCATIONS,
                    1,
                    heap_bytes,
                    heap_blocks,
                ],
                format!(
                    "the driver is unloading with {heap_blocks} heap allocation(s) ({heap_bytes} bytes) not freed \
                     (Box/Vec/.. made by driver code; ExAllocatePool2 in the kernel image):\n  {}",
                    sites.join("\n  ")
                ),
            );
        }
        if !st.pool.live.is_empty() {
            let count = st.pool.live.len();
            let bytes: usize = st.pool.live.values().map(|a| a.size).sum();
            let live: Vec<(usize, Allocation)> =
                st.pool.live.iter().map(|(p, a)| (*p, *a)).collect();
            let mut sites = std::mem::take(&mut st.pool.sites);
            drop(st);
            let mut list: Vec<String> = live
                .into_iter()
                .map(|(p, a)| {
                    let site = sites
                        .get_mut(&p)
                        .map_or_else(|| "unknown".to_string(), |s| s.describe(&images));
                    format!(
                        "{p:#x}: {} bytes, tag '{}', {:?}, allocated at {site}",
                        a.size,
                        memory::tag_text(a.tag),
                        a.kind
                    )
                })
                .collect();
            list.sort();
            bugcheck::raise(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    VERIFIER_UNLOAD_WITH_OUTSTANDING_ALLOCATIONS,
                    0,
                    bytes,
                    count,
                ],
                format!(
                    "the driver is unloading with {count} allocation(s) ({bytes} bytes) not freed:\n  {}",
                    list.join("\n  ")
                ),
            );
        }
    }

    /// Raises `message` of `device` on the processor its affinity selects (seeded) and runs the
    /// DPCs that result. Returns whether an ISR claimed it, or None when it had to pend.
    pub fn fire_message(&self, device: DeviceId, message: u32) -> Option<bool> {
        self.fire(device, Some(message), None)
    }

    /// Asserts the device's line (every ISR sharing it is called until one claims it).
    pub fn fire_line(&self, device: DeviceId) -> Option<bool> {
        self.fire(device, None, None)
    }

    /// As `fire_message`/`fire_line` (`message: None`), on a chosen processor.
    pub fn fire_on(&self, device: DeviceId, message: Option<u32>, cpu: usize) -> Option<bool> {
        self.fire(device, message, Some(cpu))
    }

    fn fire(&self, device: DeviceId, message: Option<u32>, cpu: Option<usize>) -> Option<bool> {
        assert!(
            !machine::bugchecked(),
            "the emulated machine bug-checked; it cannot run anything else"
        );
        let claimed = machine::assert_source(&self.machine, device.0, message, cpu);
        machine::run_dpcs(&self.machine);
        claimed
    }

    /// Runs `f` on device `device`'s model, which must be a `T`, with the bus (to raise
    /// interrupts, reach shared memory); interrupts it raises are delivered when `f` returns.
    /// This is how a test makes the device do something on its own (a frame arrives, the link
    /// drops).
    pub fn with_device<T: pci::PciFunction, R>(
        &self,
        device: DeviceId,
        f: impl FnOnce(&mut T, &mut pci::Bus<'_>) -> R,
    ) -> R {
        let r = {
            let mut st = self.st();
            let mut function = st.devices[device.0]
                .pci
                .function
                .take()
                .expect("with_device called from inside a device model");
            let r = {
                let any: &mut dyn std::any::Any = function.as_mut();
                let model = any.downcast_mut::<T>().unwrap_or_else(|| {
                    panic!(
                        "device {} is not a {}",
                        device.0,
                        std::any::type_name::<T>()
                    )
                });
                let mut bus = pci::Bus {
                    st: &mut st,
                    device: device.0,
                };
                f(model, &mut bus)
            };
            st.devices[device.0].pci.function = Some(function);
            r
        };
        machine::deliver_pending(&self.machine);
        machine::run_dpcs(&self.machine);
        r
    }

    /// Marks a source asserted without delivering it: it fires at the next preemption point where
    /// the IRQL and interrupt lock allow (e.g. inside a DPC, or during NdisMRegisterInterruptEx).
    pub fn assert_pending(&self, device: DeviceId, message: Option<u32>, cpu: usize) {
        self.st().pending.push((device.0, message, cpu));
    }

    /// Runs every queued DPC.
    pub fn run_dpcs(&self) {
        machine::run_dpcs(&self.machine);
    }

    /// The processor test code (passive-level driver calls) runs on.
    pub fn set_passive_cpu(&self, cpu: usize) {
        let mut st = self.st();
        assert!(cpu < st.cpus.len());
        st.cpu = cpu;
    }

    /// The trace so far, one line per event (empty unless `Config::trace`).
    pub fn trace(&self) -> Vec<String> {
        self.machine
            .st()
            .trace
            .as_ref()
            .map_or_else(Vec::new, |t| t.iter().map(|e| e.to_string()).collect())
    }

    /// Every fallible call made so far, in order, with whether it was failed.
    pub fn fallible_calls(&self) -> Vec<(&'static str, bool)> {
        self.machine.st().faults.log.clone()
    }

    /// (count, bytes) of the heap allocations driver code made since this emulator was created
    /// outside a fallible region (`ndis_sys::host::fallible_allocation`): `Box::new`,
    /// `Vec::push` past capacity, `collect()` and the like. In the kernel each of them bug-checks
    /// the machine when the pool is exhausted (the Rust alloc error handler), so a path NDIS lets
    /// fail should make none. Counted by [`DriverHeap`] (zero without it, see
    /// [`leak_detection`](Self::leak_detection)); with `NDIS_EMU_INFALLIBLE_BACKTRACE` set each
    /// one prints its backtrace on stderr.
    pub fn infallible_heap_allocations(&self) -> (usize, usize) {
        heap::infallible()
    }

    /// Live allocations (address, record).
    pub fn allocations(&self) -> Vec<(usize, Allocation)> {
        let mut v: Vec<_> = self
            .machine
            .st()
            .pool
            .live
            .iter()
            .map(|(p, a)| (*p, *a))
            .collect();
        v.sort_by_key(|(p, _)| *p);
        v
    }

    /// Where each live pool or NDIS-memory block was allocated (address, site), as a leak
    /// report would name it: the innermost driver frames, or `image+offset` for the shipped
    /// image (see `crate::site`).
    pub fn allocation_sites(&self) -> Vec<(usize, String)> {
        let images = self.image_ranges.borrow().clone();
        let mut st = self.machine.st();
        let mut v: Vec<(usize, String)> = st
            .pool
            .sites
            .iter_mut()
            .map(|(p, site)| (*p, site.describe(&images)))
            .collect();
        drop(st);
        v.sort();
        v
    }

    /// Runs `f`, which must bug-check, and returns the bug check. Panics if `f` returns normally
    /// or panics for another reason. The machine is dead afterwards.
    pub fn expect_bugcheck(&self, f: impl FnOnce()) -> BugCheck {
        expect_bugcheck(f)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        machine::uninstall();
        // No callback into an image can be made any more.
        self.images.borrow_mut().clear();
    }
}

/// [`Emulator::expect_bugcheck`] without an emulator: for a bug check a child process of
/// [`image::isolated`] reported (the parent raises it again), or any code that raises one.
pub fn expect_bugcheck(f: impl FnOnce()) -> BugCheck {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => panic!("expected a bug check, but the code ran to completion"),
        Err(payload) => match bugcheck::take_last() {
            Some(b) if machine::bugchecked() => b,
            _ => resume_unwind(payload),
        },
    }
}

/// What [`Emulator::new`] panics with when [`DriverHeap`] is not the global allocator.
pub const NO_DRIVER_HEAP: &str = "ndis-emu: ndis_emu::DriverHeap is not this test binary's global \
allocator, so the driver's Box/Vec leaks, heap use above DISPATCH_LEVEL and fallible heap \
allocations would go unseen. Add to the test crate (each tests/*.rs file that starts an \
emulator, or a module they share):
    #[global_allocator]
    static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;
(or, to run without heap accounting, Config { unaccounted_heap: true, .. }).";

/// The CM_PARTIAL_RESOURCE_LIST PnP would hand the driver for `device` (as 4-byte words).
fn resource_list(device: &Device) -> Box<[u32]> {
    let mut descriptors: Vec<sys::CM_PARTIAL_RESOURCE_DESCRIPTOR> = Vec::new();
    let interrupt = |flags: u16, vector: u32, level: u32, affinity: usize| {
        sys::CM_PARTIAL_RESOURCE_DESCRIPTOR {
            Type: sys::CmResourceTypeInterrupt,
            ShareDisposition: sys::CmResourceShareDeviceExclusive,
            Flags: flags,
            u: sys::CM_PARTIAL_RESOURCE_DESCRIPTOR_U {
                Interrupt: sys::CM_RESOURCE_INTERRUPT {
                    Level: level,
                    Vector: vector,
                    Affinity: affinity,
                },
            },
        }
    };
    // The function's memory BARs, in BAR order.
    for bar in &device.pci.bars {
        descriptors.push(sys::CM_PARTIAL_RESOURCE_DESCRIPTOR {
            Type: sys::CmResourceTypeMemory,
            ShareDisposition: sys::CmResourceShareDeviceExclusive,
            Flags: 0,
            u: sys::CM_PARTIAL_RESOURCE_DESCRIPTOR_U {
                Memory: sys::CM_RESOURCE_MEMORY {
                    Start: bar.physical as i64,
                    Length: bar.size as u32,
                },
            },
        });
    }
    // Its I/O BARs (ports), in BAR order.
    for bar in &device.pci.io_bars {
        descriptors.push(sys::CM_PARTIAL_RESOURCE_DESCRIPTOR {
            Type: sys::CmResourceTypePort,
            ShareDisposition: sys::CmResourceShareDeviceExclusive,
            Flags: sys::CM_RESOURCE_PORT_IO,
            u: sys::CM_PARTIAL_RESOURCE_DESCRIPTOR_U {
                Port: sys::CM_RESOURCE_MEMORY {
                    Start: bar.physical as i64,
                    Length: bar.size as u32,
                },
            },
        });
    }
    match device.resources {
        InterruptResources::None => {}
        InterruptResources::Line { shared, .. } => {
            let v = device.line_vector().unwrap();
            let mut d = interrupt(
                sys::CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE,
                v,
                machine::vector_irql(v) as u32,
                usize::MAX,
            );
            if shared {
                d.ShareDisposition = sys::CmResourceShareShared;
            }
            descriptors.push(d);
        }
        InterruptResources::Msi { granted, .. } => {
            // PCI 2.2 MSI: one descriptor; the raw form carries the message count.
            let mut d = interrupt(
                sys::CM_RESOURCE_INTERRUPT_MESSAGE | sys::CM_RESOURCE_INTERRUPT_LATCHED,
                device.message_vector_base,
                machine::vector_irql(device.message_vector_base) as u32,
                usize::MAX,
            );
            d.u.MessageInterruptRaw.MessageCount = granted as u16;
            descriptors.push(d);
        }
        InterruptResources::MsiX { granted, .. } => {
            for i in 0..granted {
                let v = device.message_vector_base + i % machine::MESSAGE_VECTOR_SPAN;
                descriptors.push(interrupt(
                    sys::CM_RESOURCE_INTERRUPT_MESSAGE | sys::CM_RESOURCE_INTERRUPT_LATCHED,
                    v,
                    machine::vector_irql(v) as u32,
                    usize::MAX,
                ));
            }
        }
    }
    let words = 2 + descriptors.len() * 5;
    let mut buf = vec![0u32; words].into_boxed_slice();
    buf[0] = 1; // Version 1, Revision 0
    buf[1] = descriptors.len() as u32;
    for (i, d) in descriptors.iter().enumerate() {
        // SAFETY: the descriptor is 20 bytes of plain data; slot i is words 2 + 5i .. 2 + 5i + 5.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (d as *const sys::CM_PARTIAL_RESOURCE_DESCRIPTOR).cast::<u32>(),
                5,
            )
        };
        buf[2 + i * 5..2 + i * 5 + 5].copy_from_slice(bytes);
    }
    buf
}

/// Result of [`sweep_fallible_calls`].
#[derive(Debug, Clone)]
pub struct SweepReport {
    /// The fallible calls the scenario makes without faults, in order: the sites swept.
    pub sites: Vec<&'static str>,
}

impl SweepReport {
    /// How many of the swept sites were fallible heap allocations ([`FALLIBLE_SITE`]).
    pub fn heap_sites(&self) -> usize {
        self.sites.iter().filter(|s| **s == FALLIBLE_SITE).count()
    }
}

/// Runs `scenario` once without faults to list its fallible calls, then once per call with that
/// call failed. Each run gets a fresh emulator from `config`; the scenario must cope with the
/// failure and end with `unload()` (whose checks find any leak, live interrupt or DPC). A bug check
/// or panic in any run fails the sweep, naming the failed call site.
pub fn sweep_fallible_calls(
    config: impl Fn() -> Config,
    scenario: impl Fn(&Emulator),
) -> SweepReport {
    let sites: Vec<&'static str> = {
        let emu = Emulator::new(config());
        scenario(&emu);
        emu.fallible_calls().into_iter().map(|(n, _)| n).collect()
    };
    for (i, site) in sites.iter().enumerate() {
        let mut c = config();
        c.faults = FaultPlan {
            nth_fallible_call: Some(i as u64 + 1),
            by_name: Vec::new(),
        };
        let emu = Emulator::new(c);
        let result = catch_unwind(AssertUnwindSafe(|| scenario(&emu)));
        if let Err(payload) = result {
            let text = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "fault sweep: failing fallible call #{} ({site}) broke the scenario:\n{text}",
                i + 1
            );
        }
        let failed: Vec<_> = emu
            .fallible_calls()
            .into_iter()
            .filter(|(_, f)| *f)
            .collect();
        assert_eq!(
            failed.len(),
            1,
            "fault sweep: call #{} ({site}) was not reached the second time",
            i + 1
        );
    }
    SweepReport { sites }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unaccounted() -> Config {
        Config {
            unaccounted_heap: true,
            ..Config::default()
        }
    }

    /// This unit-test binary keeps the system allocator: the probe must see that.
    #[test]
    fn without_driver_heap_as_global_allocator_leak_detection_is_off() {
        let emu = Emulator::new(unaccounted());
        assert!(!emu.leak_detection());
        // A second emulator probes again.
        drop(emu);
        assert!(!Emulator::new(unaccounted()).leak_detection());
    }

    /// Without the opt-out, the emulator refuses to start and says which lines to add.
    #[test]
    fn without_driver_heap_the_emulator_names_the_global_allocator_to_add() {
        let err = std::panic::catch_unwind(|| Emulator::new(Config::default()))
            .expect_err("an emulator without heap accounting");
        let message = err
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| err.downcast_ref::<&str>().copied())
            .expect("a message");
        assert_eq!(message, NO_DRIVER_HEAP);
        assert!(message.contains(
            "#[global_allocator]\n    static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;"
        ));
    }
}
