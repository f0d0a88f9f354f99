//! The export table: every emulated function, with the Windows x64 ABI the NDIS seam uses on
//! every target (`extern "win64-unwind"`, see docs/architecture.md), installed into
//! `ndis_sys::HostImports` (which driver code compiled for the host calls) and listed by
//! `module!name`, so a PE loader can bind the imports of a real cross-built `.sys` loaded into a
//! host process to the very same functions.
//!
//! The host table's type comes from `ndis-sys`, so an import added there without an emulation
//! here fails to compile.

#![allow(non_snake_case)] // the functions carry the Windows export names

use ndis_sys as sys;
use sys::*;

use crate::{config, datapath, dma, io, machine, memory, ndis, oid, pci, sync};

macro_rules! exports {
    ($( $module:literal $name:ident ( $($arg:ident : $ty:ty),* ) $(-> $ret:ty)? => $imp:expr; )*) => {
        mod win64_abi {
            use super::*;
            $(
                pub(super) unsafe extern "win64-unwind" fn $name($($arg: $ty),*) $(-> $ret)? {
                    let _emulator = crate::heap::EmulatorCode::export();
                    // SAFETY: the caller upholds the kernel export's contract, which the
                    // emulation requires too.
                    unsafe { $imp($($arg),*) }
                }
            )*
        }

        pub(crate) static HOST_IMPORTS: HostImports = HostImports { $($name: win64_abi::$name,)* };

        /// Every export with its Windows x64 ABI entry point: the same functions driver code
        /// compiled for the host reaches through `HostImports`, and the C run-time functions
        /// ntoskrnl.exe exports for images (`memcpy`, `memset`, `__chkstk`, ...; host builds
        /// use the host's C library).
        pub fn win64_exports() -> Vec<Win64Export> {
            let mut v = vec![$(Win64Export { module: $module, name: stringify!($name), address: win64_abi::$name as *const () as usize },)*];
            v.extend(crate::image::crt_exports());
            v
        }

        /// `(module, address)` of the export `name` (one ABI for host builds and images).
        fn export_address(name: &str) -> Option<(&'static str, usize)> {
            match name {
                $(stringify!($name) => Some(($module, win64_abi::$name as *const () as usize)),)*
                _ => None,
            }
        }
    };
}

/// One export as a PE loader binds it: `module!name` -> address of an `extern "win64"` function.
#[derive(Debug, Clone, Copy)]
pub struct Win64Export {
    pub module: &'static str,
    pub name: &'static str,
    pub address: usize,
}

exports! {
    "ndis.sys" NdisMRegisterMiniportDriver(a: PDRIVER_OBJECT, b: *const UNICODE_STRING, c: NDIS_HANDLE, d: *const NDIS_MINIPORT_DRIVER_CHARACTERISTICS, e: *mut NDIS_HANDLE) -> NDIS_STATUS => ndis::ndis_m_register_miniport_driver;
    "ndis.sys" NdisMDeregisterMiniportDriver(a: NDIS_HANDLE) => ndis::ndis_m_deregister_miniport_driver;
    "ndis.sys" NdisMSetMiniportAttributes(a: NDIS_HANDLE, b: *mut NDIS_MINIPORT_ADAPTER_ATTRIBUTES) -> NDIS_STATUS => ndis::ndis_m_set_miniport_attributes;
    "ndis.sys" NdisSetOptionalHandlers(a: NDIS_HANDLE, b: *mut NDIS_DRIVER_OPTIONAL_HANDLERS) -> NDIS_STATUS => ndis::ndis_set_optional_handlers;
    "ndis.sys" NdisGetVersion() -> ULONG => ndis_get_version;
    "ndis.sys" NdisMRegisterInterruptEx(a: NDIS_HANDLE, b: NDIS_HANDLE, c: *mut NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS, d: *mut NDIS_HANDLE) -> NDIS_STATUS => ndis::ndis_m_register_interrupt_ex;
    "ndis.sys" NdisMDeregisterInterruptEx(a: NDIS_HANDLE) => ndis::ndis_m_deregister_interrupt_ex;
    "ndis.sys" NdisMQueueDpcEx(a: NDIS_HANDLE, b: ULONG, c: *mut GROUP_AFFINITY, d: PVOID) -> KAFFINITY => ndis::ndis_m_queue_dpc_ex;
    "ndis.sys" NdisMQueueDpc(a: NDIS_HANDLE, b: ULONG, c: ULONG, d: PVOID) -> ULONG => ndis::ndis_m_queue_dpc;
    "ndis.sys" NdisMSynchronizeWithInterruptEx(a: NDIS_HANDLE, b: ULONG, c: MINIPORT_SYNCHRONIZE_INTERRUPT_HANDLER, d: PVOID) -> BOOLEAN => ndis::ndis_m_synchronize_with_interrupt_ex;
    "ndis.sys" NdisAllocateMemoryWithTagPriority(a: NDIS_HANDLE, b: UINT, c: ULONG, d: EX_POOL_PRIORITY) -> PVOID => memory::ndis_allocate_memory_with_tag_priority;
    "ndis.sys" NdisFreeMemoryWithTagPriority(a: NDIS_HANDLE, b: PVOID, c: ULONG) => memory::ndis_free_memory_with_tag_priority;
    "ndis.sys" NdisAllocateNetBufferListPool(a: NDIS_HANDLE, b: *const NET_BUFFER_LIST_POOL_PARAMETERS) -> NDIS_HANDLE => datapath::ndis_allocate_net_buffer_list_pool;
    "ndis.sys" NdisFreeNetBufferListPool(a: NDIS_HANDLE) => datapath::ndis_free_net_buffer_list_pool;
    "ndis.sys" NdisAllocateNetBufferAndNetBufferList(a: NDIS_HANDLE, b: USHORT, c: USHORT, d: PMDL, e: ULONG, f: SIZE_T) -> *mut NET_BUFFER_LIST => datapath::ndis_allocate_net_buffer_and_net_buffer_list;
    "ndis.sys" NdisFreeNetBufferList(a: *mut NET_BUFFER_LIST) => datapath::ndis_free_net_buffer_list;
    "ndis.sys" NdisAllocateMdl(a: NDIS_HANDLE, b: PVOID, c: UINT) -> PMDL => datapath::ndis_allocate_mdl;
    "ndis.sys" NdisFreeMdl(a: PMDL) => datapath::ndis_free_mdl;
    "ndis.sys" NdisMSendNetBufferListsComplete(a: NDIS_HANDLE, b: *mut NET_BUFFER_LIST, c: ULONG) => datapath::ndis_m_send_net_buffer_lists_complete;
    "ndis.sys" NdisMIndicateReceiveNetBufferLists(a: NDIS_HANDLE, b: *mut NET_BUFFER_LIST, c: NDIS_PORT_NUMBER, d: ULONG, e: ULONG) => datapath::ndis_m_indicate_receive_net_buffer_lists;
    "ndis.sys" NdisMOidRequestComplete(a: NDIS_HANDLE, b: *mut NDIS_OID_REQUEST, c: NDIS_STATUS) => oid::ndis_m_oid_request_complete;
    "ndis.sys" NdisGetDataBuffer(a: *mut NET_BUFFER, b: ULONG, c: PVOID, d: UINT, e: UINT) -> PVOID => datapath::ndis_get_data_buffer;
    "ndis.sys" NdisAllocateSpinLock(a: *mut NDIS_SPIN_LOCK) => sync::ndis_allocate_spin_lock;
    "ndis.sys" NdisFreeSpinLock(a: *mut NDIS_SPIN_LOCK) => sync::ndis_free_spin_lock;
    "ndis.sys" NdisAcquireSpinLock(a: *mut NDIS_SPIN_LOCK) => sync::ndis_acquire_spin_lock;
    "ndis.sys" NdisReleaseSpinLock(a: *mut NDIS_SPIN_LOCK) => sync::ndis_release_spin_lock;
    "ndis.sys" NdisDprAcquireSpinLock(a: *mut NDIS_SPIN_LOCK) => sync::ndis_dpr_acquire_spin_lock;
    "ndis.sys" NdisDprReleaseSpinLock(a: *mut NDIS_SPIN_LOCK) => sync::ndis_dpr_release_spin_lock;
    "ndis.sys" NdisAllocateTimerObject(a: NDIS_HANDLE, b: *mut NDIS_TIMER_CHARACTERISTICS, c: *mut NDIS_HANDLE) -> NDIS_STATUS => sync::ndis_allocate_timer_object;
    "ndis.sys" NdisSetTimerObject(a: NDIS_HANDLE, b: i64, c: LONG, d: PVOID) -> BOOLEAN => sync::ndis_set_timer_object;
    "ndis.sys" NdisCancelTimerObject(a: NDIS_HANDLE) -> BOOLEAN => sync::ndis_cancel_timer_object;
    "ndis.sys" NdisFreeTimerObject(a: NDIS_HANDLE) => sync::ndis_free_timer_object;
    "ndis.sys" NdisMIndicateStatusEx(a: NDIS_HANDLE, b: *mut NDIS_STATUS_INDICATION) => sync::ndis_m_indicate_status_ex;
    "ndis.sys" NdisMPauseComplete(a: NDIS_HANDLE) => ndis::ndis_m_pause_complete;
    "ndis.sys" NdisMRestartComplete(a: NDIS_HANDLE, b: NDIS_STATUS) => ndis::ndis_m_restart_complete;
    "ndis.sys" NdisMResetComplete(a: NDIS_HANDLE, b: NDIS_STATUS, c: BOOLEAN) => ndis::ndis_m_reset_complete;
    "ndis.sys" NdisMRegisterScatterGatherDma(a: NDIS_HANDLE, b: *mut NDIS_SG_DMA_DESCRIPTION, c: *mut NDIS_HANDLE) -> NDIS_STATUS => dma::ndis_m_register_scatter_gather_dma;
    "ndis.sys" NdisMDeregisterScatterGatherDma(a: NDIS_HANDLE) => dma::ndis_m_deregister_scatter_gather_dma;
    "ndis.sys" NdisMAllocateNetBufferSGList(a: NDIS_HANDLE, b: *mut NET_BUFFER, c: PVOID, d: ULONG, e: PVOID, f: ULONG) -> NDIS_STATUS => dma::ndis_m_allocate_net_buffer_sg_list;
    "ndis.sys" NdisMFreeNetBufferSGList(a: NDIS_HANDLE, b: *mut SCATTER_GATHER_LIST, c: *mut NET_BUFFER) => dma::ndis_m_free_net_buffer_sg_list;
    "ndis.sys" NdisMAllocateSharedMemory(a: NDIS_HANDLE, b: ULONG, c: BOOLEAN, d: *mut PVOID, e: *mut PHYSICAL_ADDRESS) => dma::ndis_m_allocate_shared_memory;
    "ndis.sys" NdisMFreeSharedMemory(a: NDIS_HANDLE, b: ULONG, c: BOOLEAN, d: PVOID, e: PHYSICAL_ADDRESS) => dma::ndis_m_free_shared_memory;
    "ndis.sys" NdisMMapIoSpace(a: *mut PVOID, b: NDIS_HANDLE, c: PHYSICAL_ADDRESS, d: UINT) -> NDIS_STATUS => pci::ndis_m_map_io_space;
    "ndis.sys" NdisMUnmapIoSpace(a: NDIS_HANDLE, b: PVOID, c: UINT) => pci::ndis_m_unmap_io_space;
    "ndis.sys" NdisMRegisterIoPortRange(a: *mut PVOID, b: NDIS_HANDLE, c: UINT, d: UINT) -> NDIS_STATUS => pci::ndis_m_register_io_port_range;
    "ndis.sys" NdisMDeregisterIoPortRange(a: NDIS_HANDLE, b: UINT, c: UINT, d: PVOID) => pci::ndis_m_deregister_io_port_range;
    "ndis.sys" NdisMGetBusData(a: NDIS_HANDLE, b: ULONG, c: ULONG, d: PVOID, e: ULONG) -> ULONG => pci::ndis_m_get_bus_data;
    "ndis.sys" NdisMSetBusData(a: NDIS_HANDLE, b: ULONG, c: ULONG, d: PVOID, e: ULONG) -> ULONG => pci::ndis_m_set_bus_data;
    "ndis.sys" NdisOpenConfigurationEx(a: *mut NDIS_CONFIGURATION_OBJECT, b: *mut NDIS_HANDLE) -> NDIS_STATUS => config::ndis_open_configuration_ex;
    "ndis.sys" NdisReadConfiguration(a: *mut NDIS_STATUS, b: *mut *mut NDIS_CONFIGURATION_PARAMETER, c: NDIS_HANDLE, d: *mut UNICODE_STRING, e: NDIS_PARAMETER_TYPE) => config::ndis_read_configuration;
    "ndis.sys" NdisReadNetworkAddress(a: *mut NDIS_STATUS, b: *mut PVOID, c: *mut UINT, d: NDIS_HANDLE) => config::ndis_read_network_address;
    "ndis.sys" NdisCloseConfiguration(a: NDIS_HANDLE) => config::ndis_close_configuration;
    "ntoskrnl.exe" ExAllocatePool2(a: POOL_FLAGS, b: SIZE_T, c: ULONG) -> PVOID => memory::ex_allocate_pool2;
    "ntoskrnl.exe" ExAllocatePoolWithTag(a: POOL_TYPE, b: SIZE_T, c: ULONG) -> PVOID => memory::ex_allocate_pool_with_tag;
    "ntoskrnl.exe" ExFreePoolWithTag(a: PVOID, b: ULONG) => memory::ex_free_pool_with_tag;
    "ntoskrnl.exe" MmGetSystemRoutineAddress(a: *mut UNICODE_STRING) -> PVOID => mm_get_system_routine_address;
    "ntoskrnl.exe" KeBugCheckEx(a: ULONG, b: ULONG_PTR, c: ULONG_PTR, d: ULONG_PTR, e: ULONG_PTR) -> ! => ke_bug_check_ex;
    "ntoskrnl.exe" IoConnectInterruptEx(a: *mut IO_CONNECT_INTERRUPT_PARAMETERS) -> NTSTATUS => io::io_connect_interrupt_ex;
    "ntoskrnl.exe" IoDisconnectInterruptEx(a: *mut IO_DISCONNECT_INTERRUPT_PARAMETERS) => io::io_disconnect_interrupt_ex;
    "ntoskrnl.exe" KeGetCurrentProcessorNumberEx(a: *mut PROCESSOR_NUMBER) -> ULONG => ke_get_current_processor_number_ex;
    "ntoskrnl.exe" KeQueryActiveProcessorCountEx(a: USHORT) -> ULONG => ke_query_active_processor_count_ex;
    "ntoskrnl.exe" KeQueryPerformanceCounter(a: *mut i64) -> i64 => ke_query_performance_counter;
    "hal.dll" KeStallExecutionProcessor(a: ULONG) => ke_stall_execution_processor;
}

/// Fails the test when the driver calls an import the emulated Windows does not export: on that
/// Windows the image would not have loaded (packaging refuses such an image for its declared
/// minimum, see `driver-package compat`).
pub(crate) fn require_export(st: &machine::State, module: &str, function: &str) {
    let Some(row) = sys::availability::lookup(module, function) else {
        return;
    };
    if row.since > st.config.windows_version {
        panic!(
            "the driver imports {module}!{function}, first exported by Windows {} ({}), but the \
             emulated Windows is {}: Windows would not have loaded the image",
            row.since,
            row.since.release_name().unwrap_or("?"),
            st.config.windows_version
        );
    }
}

/// `MmGetSystemRoutineAddress`: ntoskrnl.exe and hal.dll exports only (not ndis.sys, as on
/// Windows), and only those the emulated Windows has ([`crate::Config::windows_version`]).
unsafe fn mm_get_system_routine_address(name: *mut UNICODE_STRING) -> PVOID {
    let m = machine::current();
    let st = m.st();
    st.require_irql(PASSIVE_LEVEL, "MmGetSystemRoutineAddress");
    assert!(!name.is_null(), "MmGetSystemRoutineAddress(NULL)");
    // SAFETY: the caller passes a valid UNICODE_STRING (the export's contract).
    let s = unsafe { name.read() };
    let units: &[u16] = if s.Length == 0 {
        &[]
    } else {
        assert!(
            !s.Buffer.is_null() && s.Length % 2 == 0,
            "MmGetSystemRoutineAddress: malformed UNICODE_STRING"
        );
        // SAFETY: Buffer holds Length bytes (the UNICODE_STRING contract).
        unsafe { core::slice::from_raw_parts(s.Buffer, s.Length as usize / 2) }
    };
    let routine = String::from_utf16_lossy(units);
    match export_address(&routine) {
        Some((module, address))
            if module != "ndis.sys"
                && sys::availability::lookup(module, &routine)
                    .is_some_and(|row| row.since <= st.config.windows_version) =>
        {
            address as PVOID
        }
        _ => core::ptr::null_mut(),
    }
}

unsafe fn ndis_get_version() -> u32 {
    machine::current().st().config.ndis_runtime_version
}

/// The bug-check code km-rt's (and wdk-panic's) panic handler raises: "RPNC", parameters file
/// name address, its length, line, column (low 32 bits of parameter 4).
pub const RUST_PANIC_BUGCHECK: u32 = 0x5250_4E43;

unsafe fn ke_bug_check_ex(code: u32, p1: usize, p2: usize, p3: usize, p4: usize) -> ! {
    let message = if code == RUST_PANIC_BUGCHECK {
        // The file name lies in the image that panicked; a pointer anywhere else is not read.
        match crate::image::image_str(p1, p2) {
            Some(file) => format!(
                "the driver panicked at {file}:{p3}:{} (KeBugCheckEx from its panic handler{})",
                p4 as u32,
                if p4 as u64 & (1 << 32) != 0 {
                    ", a failed heap allocation"
                } else {
                    ""
                }
            ),
            None => "the driver called KeBugCheckEx with the Rust panic code (file name not \
                     inside a loaded image)"
                .to_string(),
        }
    } else {
        "the driver called KeBugCheckEx".to_string()
    };
    crate::bugcheck::raise(code, [p1, p2, p3, p4], message)
}

unsafe fn ke_get_current_processor_number_ex(number: *mut PROCESSOR_NUMBER) -> u32 {
    let cpu = machine::current().st().cpu;
    if !number.is_null() {
        // SAFETY: a non-null out-pointer from the caller.
        unsafe {
            number.write(PROCESSOR_NUMBER {
                Group: 0,
                Number: cpu as u8,
                Reserved: 0,
            })
        };
    }
    cpu as u32
}

unsafe fn ke_query_active_processor_count_ex(group: u16) -> u32 {
    let st = machine::current();
    let n = st.st().cpus.len() as u32;
    if group == 0 || group == 0xFFFF { n } else { 0 }
}

/// A busy wait: the virtual clock advances by `microseconds` (so device events scheduled
/// within the wait come due: a driver polling a register with stalls sees the device progress),
/// then a preemption point. Timers do not fire here; they run when the test advances the clock.
unsafe fn ke_stall_execution_processor(microseconds: u32) {
    let m = machine::current();
    m.st().sync.stall(microseconds);
    machine::preempt(&m);
}

/// Ticks per second of the emulated performance counter: the virtual clock's 100 ns unit, the
/// 10 MHz that current Windows versions report.
pub const PERFORMANCE_FREQUENCY: i64 = 10_000_000;

unsafe fn ke_query_performance_counter(frequency: *mut i64) -> i64 {
    let ticks = machine::current().st().sync.performance_counter();
    if !frequency.is_null() {
        // SAFETY: a non-null out-pointer from the caller.
        unsafe { frequency.write(PERFORMANCE_FREQUENCY) };
    }
    ticks as i64
}
