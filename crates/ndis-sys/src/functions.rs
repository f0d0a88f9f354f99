//! The kernel exports a miniport calls.
//!
//! # The import seam
//! One list below generates both worlds:
//! * on Windows, `raw-dylib` import blocks (`+verbatim`, so the import table names `ndis.sys`, not
//!   `ndis.sys.dll`): no import library, no WDK;
//! * on every other target, a function of the same name and signature that forwards through
//!   [`HostImports`], a table of function pointers the host emulator (`ndis-emu`) installs with
//!   [`host::install`]. A table rather than link-time symbol resolution: it does not depend on the
//!   order in which the linker meets the driver and the emulator, and nothing is left unresolved.
//!
//! Callers are identical in both worlds. The ABI is `extern "win64-unwind"`: the Windows x64
//! calling convention on Windows, where nothing can unwind (kernel images are built with
//! `panic = "abort"`); on the host it lets an emulated bug check unwind back to the test as a panic
//! instead of aborting the test binary. See `docs/architecture.md`.

use crate::base::*;
use crate::datapath::*;
use crate::dma::*;
use crate::general::*;
use crate::interrupt::*;
use crate::io_interrupt::*;
use crate::miniport::*;
use crate::oid::*;
use crate::sync::*;

macro_rules! kernel_imports {
    ($(
        dll $dll:literal {
            $( $(#[$m:meta])* fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)? ; )*
        }
    )*) => {
        $(
            #[cfg(windows)]
            #[link(name = $dll, kind = "raw-dylib", modifiers = "+verbatim")]
            unsafe extern "win64-unwind" {
                $( $(#[$m])* pub fn $name($($arg: $ty),*) $(-> $ret)?; )*
            }
        )*

        /// The host's implementation of every import, installed by the emulator.
        #[cfg(not(windows))]
        #[derive(Clone, Copy, Debug)]
        pub struct HostImports {
            $($( pub $name: unsafe extern "win64-unwind" fn($($ty),*) $(-> $ret)?, )*)*
        }

        #[cfg(not(windows))]
        impl HostImports {
            /// `(module, function)` for every import, in declaration order.
            pub const NAMES: &'static [(&'static str, &'static str)] =
                &[$($(($dll, stringify!($name)),)*)*];
        }

        $($(
            #[cfg(not(windows))]
            $(#[$m])*
            ///
            /// # Safety
            /// The contract of the kernel export of this name.
            #[inline]
            pub unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
                // SAFETY: forwards the caller's arguments unchanged to the installed
                // implementation, which has the kernel export's contract.
                unsafe { (host::imports().$name)($($arg),*) }
            }
        )*)*
    };
}

kernel_imports! {
    dll "ndis.sys" {
        /// PASSIVE_LEVEL, from `DriverEntry`. Calls `SetOptionsHandler` before returning.
        fn NdisMRegisterMiniportDriver(
            DriverObject: PDRIVER_OBJECT,
            RegistryPath: *const UNICODE_STRING,
            MiniportDriverContext: NDIS_HANDLE,
            MiniportDriverCharacteristics: *const NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
            NdisMiniportDriverHandle: *mut NDIS_HANDLE,
        ) -> NDIS_STATUS;
        /// PASSIVE_LEVEL.
        fn NdisMDeregisterMiniportDriver(NdisMiniportDriverHandle: NDIS_HANDLE);
        /// PASSIVE_LEVEL. Reads `Header.Size` bytes.
        fn NdisMSetMiniportAttributes(
            NdisMiniportHandle: NDIS_HANDLE,
            MiniportAttributes: *mut NDIS_MINIPORT_ADAPTER_ATTRIBUTES,
        ) -> NDIS_STATUS;
        /// PASSIVE_LEVEL, from `MiniportSetOptions`.
        fn NdisSetOptionalHandlers(
            NdisHandle: NDIS_HANDLE,
            OptionalHandlers: *mut NDIS_DRIVER_OPTIONAL_HANDLERS,
        ) -> NDIS_STATUS;
        /// `(major << 16) | minor` of the running NDIS.
        fn NdisGetVersion() -> ULONG;
        /// PASSIVE_LEVEL, from `MiniportInitializeEx`. The ISR may run before it returns.
        fn NdisMRegisterInterruptEx(
            MiniportAdapterHandle: NDIS_HANDLE,
            MiniportInterruptContext: NDIS_HANDLE,
            MiniportInterruptCharacteristics: *mut NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS,
            NdisInterruptHandle: *mut NDIS_HANDLE,
        ) -> NDIS_STATUS;
        /// PASSIVE_LEVEL. Returns only after every queued DPC has run.
        fn NdisMDeregisterInterruptEx(NdisInterruptHandle: NDIS_HANDLE);
        /// Any IRQL. Returns the processors of `TargetProcessors.Group` that got a newly queued DPC.
        fn NdisMQueueDpcEx(
            NdisInterruptHandle: NDIS_HANDLE,
            MessageId: ULONG,
            TargetProcessors: *mut GROUP_AFFINITY,
            MiniportDpcContext: PVOID,
        ) -> KAFFINITY;
        /// NDIS 6.0/6.1 only: first 32 processors of group 0.
        fn NdisMQueueDpc(
            NdisInterruptHandle: NDIS_HANDLE,
            MessageId: ULONG,
            TargetProcessors: ULONG,
            MiniportDpcContext: PVOID,
        ) -> ULONG;
        /// IRQL <= DIRQL. Runs `SynchronizeFunction` at DIRQL under the interrupt lock.
        fn NdisMSynchronizeWithInterruptEx(
            NdisInterruptHandle: NDIS_HANDLE,
            MessageId: ULONG,
            SynchronizeFunction: MINIPORT_SYNCHRONIZE_INTERRUPT_HANDLER,
            SynchronizeContext: PVOID,
        ) -> BOOLEAN;
        /// IRQL <= DISPATCH_LEVEL.
        fn NdisAllocateMemoryWithTagPriority(
            NdisHandle: NDIS_HANDLE,
            Length: UINT,
            Tag: ULONG,
            Priority: EX_POOL_PRIORITY,
        ) -> PVOID;
        /// IRQL <= DISPATCH_LEVEL.
        fn NdisFreeMemoryWithTagPriority(NdisHandle: NDIS_HANDLE, VirtualAddress: PVOID, Tag: ULONG);
        /// IRQL <= DISPATCH_LEVEL. Null on failure.
        fn NdisAllocateNetBufferListPool(
            NdisHandle: NDIS_HANDLE,
            Parameters: *const NET_BUFFER_LIST_POOL_PARAMETERS,
        ) -> NDIS_HANDLE;
        /// IRQL <= DISPATCH_LEVEL; every list of the pool must have been freed.
        fn NdisFreeNetBufferListPool(PoolHandle: NDIS_HANDLE);
        /// IRQL <= DISPATCH_LEVEL. One list with one buffer describing `DataLength` bytes of
        /// `MdlChain` from `DataOffset`.
        fn NdisAllocateNetBufferAndNetBufferList(
            PoolHandle: NDIS_HANDLE,
            ContextSize: USHORT,
            ContextBackFill: USHORT,
            MdlChain: PMDL,
            DataOffset: ULONG,
            DataLength: SIZE_T,
        ) -> *mut NET_BUFFER_LIST;
        /// IRQL <= DISPATCH_LEVEL.
        fn NdisFreeNetBufferList(NetBufferList: *mut NET_BUFFER_LIST);
        /// IRQL <= DISPATCH_LEVEL. Describes `Length` bytes of non-paged memory at `VirtualAddress`.
        fn NdisAllocateMdl(NdisHandle: NDIS_HANDLE, VirtualAddress: PVOID, Length: UINT) -> PMDL;
        /// IRQL <= DISPATCH_LEVEL.
        fn NdisFreeMdl(Mdl: PMDL);
        /// IRQL <= DISPATCH_LEVEL: hands sent lists back to NDIS with their `Status`.
        fn NdisMSendNetBufferListsComplete(MiniportAdapterHandle: NDIS_HANDLE, NetBufferList: *mut NET_BUFFER_LIST, SendCompleteFlags: ULONG);
        /// IRQL <= DISPATCH_LEVEL.
        fn NdisMIndicateReceiveNetBufferLists(
            MiniportAdapterHandle: NDIS_HANDLE,
            NetBufferLists: *mut NET_BUFFER_LIST,
            PortNumber: NDIS_PORT_NUMBER,
            NumberOfNetBufferLists: ULONG,
            ReceiveFlags: ULONG,
        );
        /// IRQL <= DISPATCH_LEVEL: completes a request the miniport returned NDIS_STATUS_PENDING for.
        fn NdisMOidRequestComplete(MiniportAdapterHandle: NDIS_HANDLE, OidRequest: *mut NDIS_OID_REQUEST, Status: NDIS_STATUS);
        /// Any IRQL <= DISPATCH_LEVEL: `BytesNeeded` contiguous bytes at the buffer's current
        /// position, in place or copied into `Storage`; null if neither is possible.
        fn NdisGetDataBuffer(
            NetBuffer: *mut NET_BUFFER,
            BytesNeeded: ULONG,
            Storage: PVOID,
            AlignMultiple: UINT,
            AlignOffset: UINT,
        ) -> PVOID;
        /// Any IRQL.
        fn NdisAllocateSpinLock(SpinLock: *mut NDIS_SPIN_LOCK);
        /// The lock must not be held.
        fn NdisFreeSpinLock(SpinLock: *mut NDIS_SPIN_LOCK);
        /// IRQL <= DISPATCH_LEVEL; raises to DISPATCH_LEVEL until the release.
        fn NdisAcquireSpinLock(SpinLock: *mut NDIS_SPIN_LOCK);
        /// Restores the IRQL the acquire saved.
        fn NdisReleaseSpinLock(SpinLock: *mut NDIS_SPIN_LOCK);
        /// At DISPATCH_LEVEL exactly.
        fn NdisDprAcquireSpinLock(SpinLock: *mut NDIS_SPIN_LOCK);
        /// At DISPATCH_LEVEL exactly.
        fn NdisDprReleaseSpinLock(SpinLock: *mut NDIS_SPIN_LOCK);
        /// IRQL <= DISPATCH_LEVEL.
        fn NdisAllocateTimerObject(
            NdisHandle: NDIS_HANDLE,
            TimerCharacteristics: *mut NDIS_TIMER_CHARACTERISTICS,
            pTimerObject: *mut NDIS_HANDLE,
        ) -> NDIS_STATUS;
        /// IRQL <= DISPATCH_LEVEL. `DueTime` < 0: relative, in 100 ns units. TRUE if it was queued.
        fn NdisSetTimerObject(TimerObject: NDIS_HANDLE, DueTime: i64, MillisecondsPeriod: LONG, FunctionContext: PVOID) -> BOOLEAN;
        /// IRQL <= DISPATCH_LEVEL (PASSIVE_LEVEL for periodic timers). TRUE if it was queued.
        fn NdisCancelTimerObject(TimerObject: NDIS_HANDLE) -> BOOLEAN;
        /// IRQL <= DISPATCH_LEVEL; cancel first.
        fn NdisFreeTimerObject(TimerObject: NDIS_HANDLE);
        /// Completes a pause that `MiniportPause` returned NDIS_STATUS_PENDING for.
        fn NdisMPauseComplete(MiniportAdapterHandle: NDIS_HANDLE);
        /// Completes a restart that `MiniportRestart` returned NDIS_STATUS_PENDING for.
        fn NdisMRestartComplete(MiniportAdapterHandle: NDIS_HANDLE, Status: NDIS_STATUS);
        /// IRQL <= DISPATCH_LEVEL. Completes a reset that `MiniportResetEx` returned
        /// NDIS_STATUS_PENDING for.
        fn NdisMResetComplete(MiniportAdapterHandle: NDIS_HANDLE, Status: NDIS_STATUS, AddressingReset: BOOLEAN);
        /// PASSIVE_LEVEL, from `MiniportInitializeEx` of a bus-master adapter.
        fn NdisMRegisterScatterGatherDma(
            MiniportAdapterHandle: NDIS_HANDLE,
            DmaDescription: *mut NDIS_SG_DMA_DESCRIPTION,
            NdisMiniportDmaHandle: *mut NDIS_HANDLE,
        ) -> NDIS_STATUS;
        /// PASSIVE_LEVEL.
        fn NdisMDeregisterScatterGatherDma(NdisMiniportDmaHandle: NDIS_HANDLE);
        /// DISPATCH_LEVEL. Maps a NET_BUFFER's data (from its current MDL and offset) for DMA;
        /// NDIS calls the registration's `ProcessSGListHandler` with the list, possibly before
        /// this returns, possibly later (at DISPATCH_LEVEL, maybe on another processor).
        /// `ScatterGatherListBuffer` (null, or `ScatterGatherListBufferSize` bytes of at least the
        /// registration's `ScatterGatherListSize`) holds the list if it fits.
        fn NdisMAllocateNetBufferSGList(
            NdisMiniportDmaHandle: NDIS_HANDLE,
            NetBuffer: *mut NET_BUFFER,
            Context: PVOID,
            Flags: ULONG,
            ScatterGatherListBuffer: PVOID,
            ScatterGatherListBufferSize: ULONG,
        ) -> NDIS_STATUS;
        /// DISPATCH_LEVEL. Frees a list `NdisMAllocateNetBufferSGList` made for `NetBuffer`,
        /// once the device is done with the memory it describes.
        fn NdisMFreeNetBufferSGList(
            NdisMiniportDmaHandle: NDIS_HANDLE,
            pSGL: *mut SCATTER_GATHER_LIST,
            NetBuffer: *mut NET_BUFFER,
        );
        /// PASSIVE_LEVEL, from `MiniportInitializeEx`, after SG DMA registration. `*VirtualAddress`
        /// is null on failure.
        fn NdisMAllocateSharedMemory(
            MiniportAdapterHandle: NDIS_HANDLE,
            Length: ULONG,
            Cached: BOOLEAN,
            VirtualAddress: *mut PVOID,
            PhysicalAddress: *mut PHYSICAL_ADDRESS,
        );
        /// IRQL <= DISPATCH_LEVEL; the arguments must match the allocation.
        fn NdisMFreeSharedMemory(
            MiniportAdapterHandle: NDIS_HANDLE,
            Length: ULONG,
            Cached: BOOLEAN,
            VirtualAddress: PVOID,
            PhysicalAddress: PHYSICAL_ADDRESS,
        );
        /// PASSIVE_LEVEL. Maps a memory range from the adapter's translated resources (a BAR);
        /// access the mapping only with `READ_REGISTER_*` / `WRITE_REGISTER_*` ([`crate::mmio`]).
        fn NdisMMapIoSpace(
            VirtualAddress: *mut PVOID,
            MiniportAdapterHandle: NDIS_HANDLE,
            PhysicalAddress: PHYSICAL_ADDRESS,
            Length: UINT,
        ) -> NDIS_STATUS;
        /// PASSIVE_LEVEL; the arguments must match the mapping.
        fn NdisMUnmapIoSpace(MiniportAdapterHandle: NDIS_HANDLE, VirtualAddress: PVOID, Length: UINT);
        /// PASSIVE_LEVEL, in initialize. Claims a port range from the adapter's translated
        /// resources (an I/O BAR) and returns the port base to access it with `READ_PORT_*` /
        /// `WRITE_PORT_*` ([`crate::mmio`]).
        fn NdisMRegisterIoPortRange(
            PortOffset: *mut PVOID,
            MiniportAdapterHandle: NDIS_HANDLE,
            InitialPort: UINT,
            NumberOfPorts: UINT,
        ) -> NDIS_STATUS;
        /// PASSIVE_LEVEL, in initialize or halt; the arguments must match the registration.
        fn NdisMDeregisterIoPortRange(
            MiniportAdapterHandle: NDIS_HANDLE,
            InitialPort: UINT,
            NumberOfPorts: UINT,
            PortOffset: PVOID,
        );
        /// IRQL <= DISPATCH_LEVEL. Reads the adapter's bus (PCI configuration) space; returns the
        /// number of bytes read.
        fn NdisMGetBusData(
            NdisMiniportHandle: NDIS_HANDLE,
            WhichSpace: ULONG,
            Offset: ULONG,
            Buffer: PVOID,
            Length: ULONG,
        ) -> ULONG;
        /// IRQL <= DISPATCH_LEVEL. Returns the number of bytes written.
        fn NdisMSetBusData(
            NdisMiniportHandle: NDIS_HANDLE,
            WhichSpace: ULONG,
            Offset: ULONG,
            Buffer: PVOID,
            Length: ULONG,
        ) -> ULONG;
        /// PASSIVE_LEVEL. Opens the registry key `ConfigObject` names.
        fn NdisOpenConfigurationEx(
            ConfigObject: *mut NDIS_CONFIGURATION_OBJECT,
            ConfigurationHandle: *mut NDIS_HANDLE,
        ) -> NDIS_STATUS;
        /// PASSIVE_LEVEL. `*ParameterValue` stays valid until the handle is closed.
        fn NdisReadConfiguration(
            Status: *mut NDIS_STATUS,
            ParameterValue: *mut *mut NDIS_CONFIGURATION_PARAMETER,
            ConfigurationHandle: NDIS_HANDLE,
            Keyword: *mut UNICODE_STRING,
            ParameterType: NDIS_PARAMETER_TYPE,
        );
        /// PASSIVE_LEVEL. The `NetworkAddress` keyword (a hex string) as bytes; `*NetworkAddress`
        /// stays valid until the handle is closed. NDIS_STATUS_FAILURE when absent or not a string.
        fn NdisReadNetworkAddress(
            Status: *mut NDIS_STATUS,
            NetworkAddress: *mut PVOID,
            NetworkAddressLength: *mut UINT,
            ConfigurationHandle: NDIS_HANDLE,
        );
        /// PASSIVE_LEVEL. Frees every parameter read through the handle.
        fn NdisCloseConfiguration(ConfigurationHandle: NDIS_HANDLE);
        /// IRQL <= DISPATCH_LEVEL.
        fn NdisMIndicateStatusEx(MiniportAdapterHandle: NDIS_HANDLE, StatusIndication: *mut NDIS_STATUS_INDICATION);
    }
    dll "ntoskrnl.exe" {
        /// IRQL <= DISPATCH_LEVEL (non-paged). Windows 10 2004+: a driver whose minimum Windows
        /// is older must not import it (packaging refuses the image); `km-alloc` resolves it at
        /// run time instead.
        fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;
        /// IRQL <= DISPATCH_LEVEL for non-paged pool. The memory is not initialized. Deprecated
        /// from Windows 10 2004 in favour of `ExAllocatePool2`, but exported by every version.
        fn ExAllocatePoolWithTag(PoolType: POOL_TYPE, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;
        /// PASSIVE_LEVEL. The address of a routine ntoskrnl.exe or hal.dll exports, or null when
        /// this Windows has no routine of that name.
        fn MmGetSystemRoutineAddress(SystemRoutineName: *mut UNICODE_STRING) -> PVOID;
        /// IRQL <= DISPATCH_LEVEL.
        fn ExFreePoolWithTag(P: PVOID, Tag: ULONG);
        /// Stops the machine.
        fn KeBugCheckEx(
            BugCheckCode: ULONG,
            BugCheckParameter1: ULONG_PTR,
            BugCheckParameter2: ULONG_PTR,
            BugCheckParameter3: ULONG_PTR,
            BugCheckParameter4: ULONG_PTR,
        ) -> !;
        /// PASSIVE_LEVEL. `Parameters.Version` is in/out.
        fn IoConnectInterruptEx(Parameters: *mut IO_CONNECT_INTERRUPT_PARAMETERS) -> NTSTATUS;
        /// PASSIVE_LEVEL.
        fn IoDisconnectInterruptEx(Parameters: *mut IO_DISCONNECT_INTERRUPT_PARAMETERS);
        /// Any IRQL.
        fn KeGetCurrentProcessorNumberEx(ProcNumber: *mut PROCESSOR_NUMBER) -> ULONG;
        /// Any IRQL.
        fn KeQueryActiveProcessorCountEx(GroupNumber: USHORT) -> ULONG;
        /// Any IRQL. Returns the performance counter (`LARGE_INTEGER`, passed like an `i64`);
        /// stores its ticks per second through `PerformanceFrequency` when that is not null.
        fn KeQueryPerformanceCounter(PerformanceFrequency: *mut i64) -> i64;
    }
    dll "hal.dll" {
        /// Busy-waits; any IRQL.
        fn KeStallExecutionProcessor(MicroSeconds: ULONG);
    }
}

/// Installing the host implementation of the imports (see the module docs).
#[cfg(not(windows))]
pub mod host {
    use core::sync::atomic::{AtomicPtr, Ordering};

    use super::HostImports;

    static IMPORTS: AtomicPtr<HostImports> = AtomicPtr::new(core::ptr::null_mut());

    /// Makes `table` the implementation every import forwards to, for the whole process.
    pub fn install(table: &'static HostImports) {
        IMPORTS.store(
            table as *const HostImports as *mut HostImports,
            Ordering::Release,
        );
    }

    /// The installed table. Panics, naming the fix, when driver code calls into NDIS on a host
    /// where no implementation was installed.
    #[inline]
    pub fn imports() -> &'static HostImports {
        let table = IMPORTS.load(Ordering::Acquire);
        if table.is_null() {
            no_host_imports();
        }
        // SAFETY: only `install` stores into IMPORTS, always from a `&'static HostImports`.
        unsafe { &*table }
    }

    #[cold]
    fn no_host_imports() -> ! {
        panic!(
            "driver code called an NDIS/kernel import, but no host implementation is installed: \
             create an ndis_emu::Emulator (it installs one) before running driver code"
        )
    }

    /// The hook [`FallibleAllocation`] calls; null when none is installed.
    static FALLIBLE_HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

    /// Installs `hook`, called with `true` when a [`FallibleAllocation`] guard is entered and
    /// with `false` when it is dropped (once each per guard, so nested guards nest: a hook
    /// counts depth). The emulator installs one so that its heap accounting knows which heap
    /// allocations the driver makes fallibly (`Vec::try_reserve`, `Box::try_new`) and may fail
    /// them in a fault sweep; infallible ones (`Box::new`, `Vec::push`) abort on failure and are
    /// never failed.
    pub fn set_fallible_allocation_hook(hook: fn(bool)) {
        FALLIBLE_HOOK.store(hook as *mut (), Ordering::Release);
    }

    fn call_fallible_hook(entering: bool) {
        let hook = FALLIBLE_HOOK.load(Ordering::Acquire);
        if !hook.is_null() {
            // SAFETY: only `set_fallible_allocation_hook` stores into FALLIBLE_HOOK, always a
            // `fn(bool)` cast to a data pointer; function and data pointers have the same size
            // and representation on every target this host seam builds for.
            let hook: fn(bool) = unsafe { core::mem::transmute::<*mut (), fn(bool)>(hook) };
            hook(entering);
        }
    }

    /// Marks the heap allocations made while it lives as fallible: their failure (a null from
    /// the allocator) is handled by the code making them. With no hook installed, entering and
    /// dropping it do nothing.
    #[derive(Debug)]
    #[must_use = "the allocations are marked fallible only while the guard lives"]
    pub struct FallibleAllocation(());

    impl FallibleAllocation {
        pub fn enter() -> Self {
            call_fallible_hook(true);
            FallibleAllocation(())
        }
    }

    impl Drop for FallibleAllocation {
        fn drop(&mut self) {
            call_fallible_hook(false);
        }
    }

    /// Runs `f` with its heap allocations marked fallible (see [`FallibleAllocation`]).
    pub fn fallible_allocation<R>(f: impl FnOnce() -> R) -> R {
        let _guard = FallibleAllocation::enter();
        f()
    }
}

/// Runs `f`, whose heap allocations are fallible (`Vec::try_reserve`, `Box::try_new`: the code
/// handles a failure). In the kernel image this is just `f()`; on the host it marks them for the
/// emulator's fault injection ([`host::fallible_allocation`]).
#[inline]
pub fn fallible_allocation<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(not(windows))]
    {
        host::fallible_allocation(f)
    }
    #[cfg(windows)]
    {
        f()
    }
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
        /// Referenced by `alloc` (`CString`).
        pub fn strlen(s: *const core::ffi::c_char) -> usize;
        pub fn __chkstk();
    }
}
