//! Emulated bug checks: how a contract violation stops the run.
//!
//! Windows stops the machine; the emulator stops the test. A bug check is raised as a Rust panic
//! whose message reads like the blue screen (code, four parameters, the name of the check) plus
//! what was violated and how to fix it. The structured value is kept per thread, so
//! [`crate::Emulator::expect_bugcheck`] can assert on the code and parameters. Unwinding crosses the
//! driver's callbacks safely because every NDIS boundary is `extern "win64-unwind"`.

use std::cell::RefCell;
use std::fmt;

/// BUGCODE_NDIS_DRIVER.
pub const BUGCODE_NDIS_DRIVER: u32 = 0x7C;
/// DRIVER_VERIFIER_DETECTED_VIOLATION.
pub const DRIVER_VERIFIER_DETECTED_VIOLATION: u32 = 0xC4;
/// BAD_POOL_CALLER.
pub const BAD_POOL_CALLER: u32 = 0xC2;
/// DPC_WATCHDOG_VIOLATION.
pub const DPC_WATCHDOG_VIOLATION: u32 = 0x133;
/// HARDWARE_INTERRUPT_STORM: a level-triggered line stayed asserted (parameters: the first ISR
/// on the vector, its context, the interrupt object, 1 not chained / 2 chained).
pub const HARDWARE_INTERRUPT_STORM: u32 = 0xF2;

// BUGCODE_NDIS_DRIVER first parameters (documented codes).
pub const NDIS_BUGCHECK_HALT_WITHOUT_INTERRUPT_DEREGISTER: usize = 0x08;
pub const NDIS_BUGCHECK_INIT_FAILED_WITHOUT_INTERRUPT_DEREGISTER: usize = 0x0B;
pub const NDIS_BUGCHECK_INVALID_OBJECT_HEADER: usize = 0x21;

/// DRIVER_VERIFIER_DETECTED_VIOLATION 0x62: a driver unloads with pool allocations outstanding.
pub const VERIFIER_UNLOAD_WITH_OUTSTANDING_ALLOCATIONS: usize = 0x62;
/// BAD_POOL_CALLER 0x07: freeing memory that is not (or no longer) allocated.
pub const BAD_POOL_FREE_NOT_ALLOCATED: usize = 0x07;

/// The emulator's own rule identifiers for DRIVER_VERIFIER_DETECTED_VIOLATION parameter 1, used
/// where Windows' exact parameters are not documented (see docs/emulator.md).
pub mod rule {
    /// A function was called above its maximum IRQL (param 2: IRQL, param 3: maximum).
    pub const IRQL: usize = 0x0009_1001;
    /// An NDIS call was made outside the callback that may make it (e.g. interrupt registration
    /// outside MiniportInitializeEx).
    pub const CALL_CONTEXT: usize = 0x0009_1002;
    /// A handle that NDIS never gave out, or one already released, was passed back.
    pub const INVALID_HANDLE: usize = 0x0009_1003;
    /// Miniport attributes set out of order, or missing when initialize succeeded.
    pub const ATTRIBUTE_ORDER: usize = 0x0009_1004;
    /// An interrupt handle was used after NdisMDeregisterInterruptEx (SDV rule
    /// NdisMDeregisterInterruptEx).
    pub const INTERRUPT_USED_AFTER_DEREGISTER: usize = 0x0009_1005;
    /// An NDIS 6.20+ driver used an interface obsolete since 6.20 (ISR TargetProcessors,
    /// NdisMQueueDpc).
    pub const OBSOLETE_INTERFACE: usize = 0x0009_1006;
    /// The driver returned from unload still registered with NDIS.
    pub const UNLOAD_WITHOUT_DEREGISTER: usize = 0x0009_1007;
    /// Unload with interrupts, kernel interrupt connections, DPCs, pools, lists or MDLs
    /// outstanding.
    pub const UNLOAD_WITH_OUTSTANDING_OBJECTS: usize = 0x0009_1008;
    /// Datapath misuse: completing or freeing a list that is not the driver's to complete or
    /// free, indicating a malformed chain, leaving sends outstanding across pause or halt.
    pub const DATAPATH: usize = 0x0009_1009;
    /// An OID request completed wrongly: lengths, buffer overrun, double or stray completion.
    pub const OID_REQUEST: usize = 0x0009_100A;
    /// Spin lock misuse: recursive acquisition, release without holding, held at return.
    pub const SPIN_LOCK: usize = 0x0009_100B;
    /// Timer misuse: freeing a set timer, a timer still set when its adapter halts.
    pub const TIMER: usize = 0x0009_100C;
    /// DMA misuse: shared memory without SG DMA registration, a free that does not match the
    /// allocation, DMA still registered at halt.
    pub const DMA: usize = 0x0009_100D;
    /// Register access outside a live `NdisMMapIoSpace` mapping, misaligned, or a mapping
    /// not released by halt.
    pub const MMIO: usize = 0x0009_100E;
    /// Checksum offload misuse: a configuration (default or indicated) enabling a task the
    /// hardware capabilities lack, or a configuration indicated without offload attributes.
    pub const OFFLOAD: usize = 0x0009_100F;
    /// Parameter 4 of a [`DMA`] bug check for shared memory freed after the adapter's
    /// scatter/gather DMA registration was deregistered (parameters 2 and 3: virtual and
    /// physical address). Every other `DMA` check has 0 there.
    pub const DMA_FREED_AFTER_DEREGISTER: usize = 1;
    /// An NDIS export was called with the MiniportAdapterHandle of an adapter NDIS forgot: its
    /// MiniportHaltEx returned, or its MiniportInitializeEx failed (param 2: the handle, param 3:
    /// 1 halted / 2 initialize failed).
    pub const ADAPTER_USED_AFTER_HALT: usize = 0x0009_1010;
    /// A MessageId outside the interrupt's grant (param 2: MessageId, param 3: messages granted,
    /// 0 for a line-based grant; param 4: the interrupt handle).
    pub const MESSAGE_ID: usize = 0x0009_1011;
    /// Driver code allocated or freed heap (pool) above DISPATCH_LEVEL (param 2: IRQL, param 3:
    /// bytes, param 4: 0 allocation / 1 free).
    pub const ALLOCATION_IRQL: usize = 0x0009_1012;
    /// A driver registered below NDIS 6.20 wrote through the interrupt DPC's `NdisReserved1`
    /// argument (which 6.20 turned into `ReceiveThrottleParameters`; param 2: the DPC's message,
    /// param 3: the registered minor version).
    pub const RESERVED_DPC_ARGUMENT: usize = 0x0009_1013;
    /// A device out of D0 was used: its registers accessed after `OID_PNP_SET_POWER` put it in
    /// a low-power state, or receives indicated then (p2: adapter or address, p3: the state).
    pub const LOW_POWER_ACCESS: usize = 0x0009_1020;
    /// A surprise-removed device's registers accessed after the driver was told of the removal.
    pub const REMOVED_DEVICE_ACCESS: usize = 0x0009_1021;
    /// `OID_PNP_QUERY_POWER` or a low-power `OID_PNP_SET_POWER` did not succeed (both must).
    pub const POWER_OID: usize = 0x0009_1022;
    /// A resource requirements list the driver handed back from
    /// `MiniportFilterResourceRequirements` that PnP cannot use: its sizes disagree, it has no
    /// configuration, or a message is pinned to no processor of the machine (param 2: the list,
    /// param 3: what is wrong, [`REQUIREMENTS_MALFORMED`] or [`REQUIREMENTS_NO_PROCESSOR`];
    /// param 4: the list's size or the message).
    pub const RESOURCE_REQUIREMENTS: usize = 0x0009_1030;
    /// Parameter 3 of [`RESOURCE_REQUIREMENTS`]: sizes, counts or vector ranges that do not fit.
    pub const REQUIREMENTS_MALFORMED: usize = 1;
    /// Parameter 3 of [`RESOURCE_REQUIREMENTS`]: `IrqPolicySpecifiedProcessors` with a mask
    /// naming no processor of the machine.
    pub const REQUIREMENTS_NO_PROCESSOR: usize = 2;
    /// `MiniportAddDevice` returned success without setting the add-device registration
    /// attributes, or set them twice (param 2: the adapter handle).
    pub const ADD_DEVICE_ATTRIBUTES: usize = 0x0009_1031;
    /// A loaded image executed an instruction the emulator cannot perform for it: a form other
    /// than a plain load or store on a register mapping, a privileged instruction other than a
    /// CR8 read, a `gs:` access other than the emulated KPCR fields (param 2: its address,
    /// param 3: 1 register mapping / 2 privileged / 3 `gs:`). See docs/emulator.md, "Running
    /// the shipped image: hardware access".
    pub const UNEMULATED_INSTRUCTION: usize = 0x0009_1040;
}

/// One emulated bug check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BugCheck {
    pub code: u32,
    pub params: [usize; 4],
    /// What was violated, in the terms of the NDIS contract, and what to change.
    pub message: String,
}

impl BugCheck {
    pub fn name(&self) -> &'static str {
        match self.code {
            BUGCODE_NDIS_DRIVER => "BUGCODE_NDIS_DRIVER",
            DRIVER_VERIFIER_DETECTED_VIOLATION => "DRIVER_VERIFIER_DETECTED_VIOLATION",
            BAD_POOL_CALLER => "BAD_POOL_CALLER",
            DPC_WATCHDOG_VIOLATION => "DPC_WATCHDOG_VIOLATION",
            HARDWARE_INTERRUPT_STORM => "HARDWARE_INTERRUPT_STORM",
            _ => "DRIVER_BUGCHECK",
        }
    }
}

impl fmt::Display for BugCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "*** STOP: {:#010X} ({:#x}, {:#x}, {:#x}, {:#x}) {}\n{}",
            self.code,
            self.params[0],
            self.params[1],
            self.params[2],
            self.params[3],
            self.name(),
            self.message
        )
    }
}

thread_local! {
    static LAST: RefCell<Option<BugCheck>> = const { RefCell::new(None) };
}

/// Stops the run: records the bug check for this thread and unwinds with its text.
pub fn raise(code: u32, params: [usize; 4], message: impl Into<String>) -> ! {
    let bugcheck = BugCheck {
        code,
        params,
        message: message.into(),
    };
    let text = bugcheck.to_string();
    LAST.with(|l| *l.borrow_mut() = Some(bugcheck));
    crate::machine::mark_bugchecked();
    std::panic::panic_any(text)
}

pub(crate) fn take_last() -> Option<BugCheck> {
    LAST.with(|l| l.borrow_mut().take())
}
