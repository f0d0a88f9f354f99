//! The kernel exports a miniport calls.
//!
//! # The import seam
//! On Windows the blocks link with `raw-dylib` (`+verbatim`, so the import table names `ndis.sys`,
//! not `ndis.sys.dll`): no import library and no WDK. On every other target the same declarations
//! carry no `#[link]`, and the symbols are resolved at link time by whatever crate defines them with
//! `#[unsafe(no_mangle)] extern "system"` — the host emulator, `ndis-emu`. The code that calls them
//! is identical in both worlds. See `docs/architecture.md`.

use crate::base::*;
use crate::interrupt::*;
use crate::io_interrupt::*;
use crate::miniport::*;

#[cfg_attr(
    windows,
    link(name = "ndis.sys", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    /// PASSIVE_LEVEL, from `DriverEntry`. Calls `SetOptionsHandler` before returning.
    pub fn NdisMRegisterMiniportDriver(
        DriverObject: PDRIVER_OBJECT,
        RegistryPath: *const UNICODE_STRING,
        MiniportDriverContext: NDIS_HANDLE,
        MiniportDriverCharacteristics: *const NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
        NdisMiniportDriverHandle: *mut NDIS_HANDLE,
    ) -> NDIS_STATUS;
    /// PASSIVE_LEVEL.
    pub fn NdisMDeregisterMiniportDriver(NdisMiniportDriverHandle: NDIS_HANDLE);
    /// PASSIVE_LEVEL. Reads `Header.Size` bytes.
    pub fn NdisMSetMiniportAttributes(
        NdisMiniportHandle: NDIS_HANDLE,
        MiniportAttributes: *mut NDIS_MINIPORT_ADAPTER_ATTRIBUTES,
    ) -> NDIS_STATUS;
    /// PASSIVE_LEVEL, from `MiniportSetOptions`.
    pub fn NdisSetOptionalHandlers(
        NdisHandle: NDIS_HANDLE,
        OptionalHandlers: *mut NDIS_DRIVER_OPTIONAL_HANDLERS,
    ) -> NDIS_STATUS;
    /// `(major << 16) | minor` of the running NDIS.
    pub fn NdisGetVersion() -> ULONG;

    /// PASSIVE_LEVEL, from `MiniportInitializeEx`. The ISR may run before it returns.
    pub fn NdisMRegisterInterruptEx(
        MiniportAdapterHandle: NDIS_HANDLE,
        MiniportInterruptContext: NDIS_HANDLE,
        MiniportInterruptCharacteristics: *mut NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS,
        NdisInterruptHandle: *mut NDIS_HANDLE,
    ) -> NDIS_STATUS;
    /// PASSIVE_LEVEL. Returns only after every queued DPC has run.
    pub fn NdisMDeregisterInterruptEx(NdisInterruptHandle: NDIS_HANDLE);
    /// Any IRQL. Returns the processors of `TargetProcessors.Group` that got a newly queued DPC.
    pub fn NdisMQueueDpcEx(
        NdisInterruptHandle: NDIS_HANDLE,
        MessageId: ULONG,
        TargetProcessors: *mut GROUP_AFFINITY,
        MiniportDpcContext: PVOID,
    ) -> KAFFINITY;
    /// NDIS 6.0/6.1 only: first 32 processors of group 0.
    pub fn NdisMQueueDpc(
        NdisInterruptHandle: NDIS_HANDLE,
        MessageId: ULONG,
        TargetProcessors: ULONG,
        MiniportDpcContext: PVOID,
    ) -> ULONG;
    /// IRQL <= DIRQL. Runs `SynchronizeFunction` at DIRQL under the interrupt lock.
    pub fn NdisMSynchronizeWithInterruptEx(
        NdisInterruptHandle: NDIS_HANDLE,
        MessageId: ULONG,
        SynchronizeFunction: MINIPORT_SYNCHRONIZE_INTERRUPT_HANDLER,
        SynchronizeContext: PVOID,
    ) -> BOOLEAN;

    /// IRQL <= DISPATCH_LEVEL.
    pub fn NdisAllocateMemoryWithTagPriority(
        NdisHandle: NDIS_HANDLE,
        Length: UINT,
        Tag: ULONG,
        Priority: EX_POOL_PRIORITY,
    ) -> PVOID;
    /// IRQL <= DISPATCH_LEVEL.
    pub fn NdisFreeMemoryWithTagPriority(
        NdisHandle: NDIS_HANDLE,
        VirtualAddress: PVOID,
        Tag: ULONG,
    );
}

#[cfg_attr(
    windows,
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    /// IRQL <= DISPATCH_LEVEL (non-paged). Windows 10 2004+.
    pub fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;
    /// IRQL <= DISPATCH_LEVEL.
    pub fn ExFreePoolWithTag(P: PVOID, Tag: ULONG);
    pub fn KeBugCheckEx(
        BugCheckCode: ULONG,
        BugCheckParameter1: ULONG_PTR,
        BugCheckParameter2: ULONG_PTR,
        BugCheckParameter3: ULONG_PTR,
        BugCheckParameter4: ULONG_PTR,
    ) -> !;
    /// PASSIVE_LEVEL. `Parameters.Version` is in/out.
    pub fn IoConnectInterruptEx(Parameters: *mut IO_CONNECT_INTERRUPT_PARAMETERS) -> NTSTATUS;
    /// PASSIVE_LEVEL.
    pub fn IoDisconnectInterruptEx(Parameters: *mut IO_DISCONNECT_INTERRUPT_PARAMETERS);
    pub fn KeGetCurrentProcessorNumberEx(ProcNumber: *mut PROCESSOR_NUMBER) -> ULONG;
    pub fn KeQueryActiveProcessorCountEx(GroupNumber: USHORT) -> ULONG;
}

#[cfg_attr(
    windows,
    link(name = "hal.dll", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    /// Busy-waits; any IRQL.
    pub fn KeStallExecutionProcessor(MicroSeconds: ULONG);
}

/// The C runtime symbols rustc's code generation references on `*-windows-msvc`: `compiler_builtins`
/// does not provide them there, and a kernel image cannot link the user-mode CRT. ntoskrnl.exe
/// exports all of them, including the real `__chkstk` stack probe (an empty local stub would
/// silently remove stack-overflow probing for frames larger than a page). With the `wdk` feature
/// they come from the WDK's `ntoskrnl.lib` instead.
#[cfg(all(windows, not(feature = "wdk")))]
pub mod crt {
    #[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
    unsafe extern "C" {
        pub fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8;
        pub fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8;
        pub fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8;
        pub fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32;
        pub fn __chkstk();
    }
}
