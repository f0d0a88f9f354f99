//! Since which Windows every function this crate imports exists, and which Windows ships which
//! NDIS version: the facts `driver-package` checks a driver image against before packaging it
//! (`docs/packaging.md`, "Windows versions"), and that the emulator uses to play an older Windows
//! (`MmGetSystemRoutineAddress` finds nothing newer than the emulated build).
//!
//! Every row names its source: the Microsoft Learn reference page of the function (the
//! "Requirements" table, "Minimum supported client"), quoted. Where a page says "Windows Vista",
//! "NDIS 6.0" or older, the function predates every Windows 10 and so every Windows a package of
//! this project installs on; the row still says what the page says. A test keeps the table in step
//! with the import list in [`crate::functions`]: an import without a row fails it.

/// A Windows version as `major.minor.build` (`10.0.16299` is Windows 10 1709). Ordered by
/// (major, minor, build), the order in which Windows releases shipped on the client line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowsVersion {
    pub major: u16,
    pub minor: u16,
    pub build: u32,
}

impl WindowsVersion {
    pub const fn new(major: u16, minor: u16, build: u32) -> Self {
        WindowsVersion {
            major,
            minor,
            build,
        }
    }

    /// The release name of this exact build (`Windows 10 1709`), if it is one of [`RELEASES`].
    pub fn release_name(&self) -> Option<&'static str> {
        RELEASES.iter().find(|r| r.version == *self).map(|r| r.name)
    }
}

impl core::fmt::Display for WindowsVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// One Windows release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub version: WindowsVersion,
    pub name: &'static str,
}

const fn release(major: u16, minor: u16, build: u32, name: &'static str) -> Release {
    Release {
        version: WindowsVersion::new(major, minor, build),
        name,
    }
}

pub const WINDOWS_2000: WindowsVersion = WindowsVersion::new(5, 0, 2195);
pub const WINDOWS_XP: WindowsVersion = WindowsVersion::new(5, 1, 2600);
pub const WINDOWS_VISTA: WindowsVersion = WindowsVersion::new(6, 0, 6000);
pub const WINDOWS_7: WindowsVersion = WindowsVersion::new(6, 1, 7600);
/// The first Windows 10 (1507).
pub const WINDOWS_10: WindowsVersion = WindowsVersion::new(10, 0, 10240);
pub const WINDOWS_10_1709: WindowsVersion = WindowsVersion::new(10, 0, 16299);
pub const WINDOWS_10_2004: WindowsVersion = WindowsVersion::new(10, 0, 19041);

/// Windows releases by build, oldest first: the names error messages use.
pub const RELEASES: &[Release] = &[
    release(5, 0, 2195, "Windows 2000"),
    release(5, 1, 2600, "Windows XP"),
    release(6, 0, 6000, "Windows Vista"),
    release(6, 0, 6001, "Windows Vista SP1 / Windows Server 2008"),
    release(6, 1, 7600, "Windows 7"),
    release(6, 2, 9200, "Windows 8"),
    release(6, 3, 9600, "Windows 8.1"),
    release(10, 0, 10240, "Windows 10 1507"),
    release(10, 0, 10586, "Windows 10 1511"),
    release(10, 0, 14393, "Windows 10 1607 / Windows Server 2016"),
    release(10, 0, 15063, "Windows 10 1703"),
    release(10, 0, 16299, "Windows 10 1709"),
    release(10, 0, 17134, "Windows 10 1803"),
    release(10, 0, 17763, "Windows 10 1809 / Windows Server 2019"),
    release(10, 0, 18362, "Windows 10 1903"),
    release(10, 0, 18363, "Windows 10 1909"),
    release(10, 0, 19041, "Windows 10 2004"),
    release(10, 0, 19042, "Windows 10 20H2"),
    release(10, 0, 19043, "Windows 10 21H1"),
    release(10, 0, 19044, "Windows 10 21H2"),
    release(10, 0, 19045, "Windows 10 22H2"),
    release(10, 0, 20348, "Windows Server 2022"),
    release(10, 0, 22000, "Windows 11 21H2"),
    release(10, 0, 22621, "Windows 11 22H2"),
    release(10, 0, 22631, "Windows 11 23H2"),
    release(10, 0, 25398, "Windows Server 2022 23H2"),
    release(10, 0, 26100, "Windows 11 24H2 / Windows Server 2025"),
];

/// The first Windows that ships an NDIS version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdisRelease {
    /// `(major, minor)`: 6.20 is `(6, 20)`.
    pub ndis: (u8, u8),
    pub first_windows: WindowsVersion,
}

const fn ndis(minor: u8, major_win: u16, minor_win: u16, build: u32) -> NdisRelease {
    NdisRelease {
        ndis: (6, minor),
        first_windows: WindowsVersion::new(major_win, minor_win, build),
    }
}

/// Source of [`NDIS_RELEASES`].
pub const NDIS_RELEASES_SOURCE: &str = "https://learn.microsoft.com/windows-hardware/drivers/network/overview-of-ndis-versions \
     (\"Overview of NDIS versions\": operating system -> supported NDIS version)";

/// NDIS 6 versions and the first Windows that ships each, oldest first. A driver whose lowest
/// supported NDIS version is newer than its minimum Windows ships cannot register there.
/// 6.85 and 6.88 first shipped on server releases (Windows Server 2022 and its 23H2), so a client
/// build number below those does not have them.
pub const NDIS_RELEASES: &[NdisRelease] = &[
    ndis(0, 6, 0, 6000),    // Windows Vista
    ndis(1, 6, 0, 6001),    // Windows Vista SP1 / Windows Server 2008
    ndis(20, 6, 1, 7600),   // Windows 7 / Windows Server 2008 R2
    ndis(30, 6, 2, 9200),   // Windows 8 / Windows Server 2012
    ndis(40, 6, 3, 9600),   // Windows 8.1 / Windows Server 2012 R2
    ndis(50, 10, 0, 10240), // Windows 10 1507
    ndis(51, 10, 0, 10586), // Windows 10 1511
    ndis(60, 10, 0, 14393), // Windows 10 1607 / Windows Server 2016
    ndis(70, 10, 0, 15063), // Windows 10 1703
    ndis(80, 10, 0, 16299), // Windows 10 1709
    ndis(81, 10, 0, 17134), // Windows 10 1803
    ndis(82, 10, 0, 17763), // Windows 10 1809 / Windows Server 2019
    ndis(83, 10, 0, 18362), // Windows 10 1903
    ndis(84, 10, 0, 19041), // Windows 10 2004
    ndis(85, 10, 0, 20348), // Windows Server 2022
    ndis(86, 10, 0, 22000), // Windows 11 21H2
    ndis(87, 10, 0, 22621), // Windows 11 22H2
    ndis(88, 10, 0, 25398), // Windows Server 2022 23H2
    ndis(89, 10, 0, 26100), // Windows 11 24H2 / Windows Server 2025
];

/// The first Windows that ships NDIS `major.minor`, if it is a known NDIS 6 version.
pub fn ndis_first_windows(major: u8, minor: u8) -> Option<WindowsVersion> {
    NDIS_RELEASES
        .iter()
        .find(|r| r.ndis == (major, minor))
        .map(|r| r.first_windows)
}

/// One import and the first Windows that exports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Availability {
    /// The module the import table names (`ndis.sys`, `ntoskrnl.exe`, `hal.dll`).
    pub module: &'static str,
    pub function: &'static str,
    /// The oldest Windows that exports it.
    pub since: WindowsVersion,
    /// Where `since` comes from: the reference page and what its requirements say.
    pub source: &'static str,
}

macro_rules! rows {
    ($( $module:literal $name:ident $since:expr, $page:expr, $says:literal; )*) => {
        /// Every function `ndis-sys` imports (the `kernel_imports!` list and the C runtime block),
        /// with the first Windows that exports it.
        pub const IMPORTS: &[Availability] = &[$(
            Availability {
                module: $module,
                function: stringify!($name),
                since: $since,
                source: concat!($page, " (", $says, ")"),
            },
        )*];
    };
}

// Each `says` is the page's "Minimum supported client", read from the page source
// (MicrosoftDocs/windows-driver-docs-ddi, `req.target-min-winverclnt`). NDIS 6.0 shipped with
// Windows Vista and NDIS 6.20 with Windows 7 (NDIS_RELEASES); pages that add "NDIS 5.1 ... in
// Windows XP" are about the NDIS 5.1 function of the same name, so the NDIS 6 one is recorded as
// Windows Vista.
rows! {
    "ndis.sys" NdisMRegisterMiniportDriver WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismregisterminiportdriver", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMDeregisterMiniportDriver WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismderegisterminiportdriver", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMSetMiniportAttributes WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismsetminiportattributes", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisSetOptionalHandlers WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndissetoptionalhandlers", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisGetVersion WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisgetversion", "Supported for NDIS 6.0 and NDIS 5.1 drivers in Windows Vista; for NDIS 5.1 drivers in Windows XP";
    "ndis.sys" NdisMRegisterInterruptEx WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismregisterinterruptex", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMDeregisterInterruptEx WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismderegisterinterruptex", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMQueueDpcEx WINDOWS_7, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismqueuedpcex", "Supported in NDIS 6.20 and later: Windows 7";
    "ndis.sys" NdisMQueueDpc WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismqueuedpc", "Supported in NDIS 6.0 and 6.1. For NDIS 6.20 and later, use NdisMQueueDpcEx";
    "ndis.sys" NdisMSynchronizeWithInterruptEx WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismsynchronizewithinterruptex", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisAllocateMemoryWithTagPriority WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisallocatememorywithtagpriority", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisFreeMemoryWithTagPriority WINDOWS_7, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisfreememorywithtagpriority", "Supported in NDIS 6.20 and later: Windows 7";
    "ndis.sys" NdisAllocateNetBufferListPool WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisallocatenetbufferlistpool", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisFreeNetBufferListPool WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisfreenetbufferlistpool", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisAllocateNetBufferAndNetBufferList WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisallocatenetbufferandnetbufferlist", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisFreeNetBufferList WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisfreenetbufferlist", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisAllocateMdl WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisallocatemdl", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisFreeMdl WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisfreemdl", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMSendNetBufferListsComplete WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismsendnetbufferlistscomplete", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMIndicateReceiveNetBufferLists WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismindicatereceivenetbufferlists", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMOidRequestComplete WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismoidrequestcomplete", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisGetDataBuffer WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisgetdatabuffer", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisAllocateSpinLock WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisallocatespinlock", "Supported for NDIS 6.0 and NDIS 5.1 drivers in Windows Vista; for NDIS 5.1 drivers in Windows XP";
    "ndis.sys" NdisFreeSpinLock WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisfreespinlock", "Supported for NDIS 6.0 and NDIS 5.1 drivers in Windows Vista; for NDIS 5.1 drivers in Windows XP";
    "ndis.sys" NdisAcquireSpinLock WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisacquirespinlock", "Supported for NDIS 6.0 and NDIS 5.1 drivers in Windows Vista; for NDIS 5.1 drivers in Windows XP";
    "ndis.sys" NdisReleaseSpinLock WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisreleasespinlock", "Supported for NDIS 6.0 and NDIS 5.1 drivers in Windows Vista; for NDIS 5.1 drivers in Windows XP";
    "ndis.sys" NdisDprAcquireSpinLock WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisdpracquirespinlock", "Supported for NDIS 6.0 and NDIS 5.1 drivers in Windows Vista; for NDIS 5.1 drivers in Windows XP";
    "ndis.sys" NdisDprReleaseSpinLock WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisdprreleasespinlock", "Supported for NDIS 6.0 and NDIS 5.1 drivers in Windows Vista; for NDIS 5.1 drivers in Windows XP";
    "ndis.sys" NdisAllocateTimerObject WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisallocatetimerobject", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisSetTimerObject WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndissettimerobject", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisCancelTimerObject WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndiscanceltimerobject", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisFreeTimerObject WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisfreetimerobject", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMPauseComplete WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismpausecomplete", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMRestartComplete WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismrestartcomplete", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMResetComplete WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismresetcomplete", "Supported in NDIS 5.1, and NDIS 6.0 and later";
    "ndis.sys" NdisMRegisterScatterGatherDma WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismregisterscattergatherdma", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMDeregisterScatterGatherDma WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismderegisterscattergatherdma", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMAllocateNetBufferSGList WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismallocatenetbuffersglist", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMFreeNetBufferSGList WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismfreenetbuffersglist", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMAllocateSharedMemory WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismallocatesharedmemory", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMFreeSharedMemory WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismfreesharedmemory", "Supported for NDIS 6.0 and NDIS 5.1 drivers in Windows Vista; for NDIS 5.1 drivers in Windows XP";
    "ndis.sys" NdisMMapIoSpace WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismmapiospace", "Supported for NDIS 6.0 and NDIS 5.1 drivers in Windows Vista; for NDIS 5.1 drivers in Windows XP";
    "ndis.sys" NdisMUnmapIoSpace WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismunmapiospace", "Supported for NDIS 6.0 and NDIS 5.1 drivers in Windows Vista; for NDIS 5.1 drivers in Windows XP";
    "ndis.sys" NdisMRegisterIoPortRange WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismregisterioportrange", "Supported for NDIS 6.0 and NDIS 5.1 drivers in Windows Vista; for NDIS 5.1 drivers in Windows XP";
    "ndis.sys" NdisMDeregisterIoPortRange WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismderegisterioportrange", "Supported for NDIS 6.0 and NDIS 5.1 drivers in Windows Vista; for NDIS 5.1 drivers in Windows XP";
    "ndis.sys" NdisMGetBusData WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismgetbusdata", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisMSetBusData WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismsetbusdata", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisOpenConfigurationEx WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisopenconfigurationex", "Supported in NDIS 6.0 and later";
    "ndis.sys" NdisReadConfiguration WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisreadconfiguration", "Supported for NDIS 6.0 and NDIS 5.1 drivers in Windows Vista; for NDIS 5.1 drivers in Windows XP";
    "ndis.sys" NdisReadNetworkAddress WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndisreadnetworkaddress", "Supported for NDIS 6.0 and later drivers in Windows Vista and later; for NDIS 5.1 drivers in Windows XP and later";
    "ndis.sys" NdisCloseConfiguration WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndiscloseconfiguration", "Supported for NDIS 6.0 and NDIS 5.1 drivers in Windows Vista; for NDIS 5.1 drivers in Windows XP";
    "ndis.sys" NdisMIndicateStatusEx WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-ndismindicatestatusex", "Supported in NDIS 6.0 and later";
    "ntoskrnl.exe" ExAllocatePool2 WINDOWS_10_2004, "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exallocatepool2", "Windows 10, version 2004";
    "ntoskrnl.exe" ExAllocatePoolWithTag WINDOWS_2000, "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exallocatepoolwithtag", "Available starting with Windows 2000";
    "ntoskrnl.exe" ExFreePoolWithTag WINDOWS_2000, "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exfreepoolwithtag", "Available starting with Windows 2000";
    "ntoskrnl.exe" MmGetSystemRoutineAddress WINDOWS_2000, "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-mmgetsystemroutineaddress", "Available starting with Windows 2000";
    "ntoskrnl.exe" KeBugCheckEx WINDOWS_2000, "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-kebugcheckex", "Available in Windows 2000 and later versions of Windows";
    "ntoskrnl.exe" IoConnectInterruptEx WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-ioconnectinterruptex", "Available on Windows Vista and later versions";
    "ntoskrnl.exe" IoDisconnectInterruptEx WINDOWS_VISTA, "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-iodisconnectinterruptex", "Available starting with Windows Vista";
    "ntoskrnl.exe" KeGetCurrentProcessorNumberEx WINDOWS_7, "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-kegetcurrentprocessornumberex", "Available in Windows 7 and later versions of Windows";
    "ntoskrnl.exe" KeQueryActiveProcessorCountEx WINDOWS_7, "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-kequeryactiveprocessorcountex", "Available in Windows 7 and later versions of Windows";
    "ntoskrnl.exe" KeQueryPerformanceCounter WINDOWS_2000, "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-kequeryperformancecounter", "Available starting with Windows 2000; the page names Hal.dll as its DLL, ndis-sys imports it from ntoskrnl.exe";
    "hal.dll" KeStallExecutionProcessor WINDOWS_2000, "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-kestallexecutionprocessor", "Available starting with Windows 2000";
    // The C runtime block (`crate::crt`): Microsoft documents no requirements for ntoskrnl.exe's
    // exports of these routines. They are recorded as Windows 2000 (older than anything a package
    // installs on) without a source that says so: UNVERIFIED, see docs/packaging.md.
    "ntoskrnl.exe" memcpy WINDOWS_2000, "https://learn.microsoft.com/cpp/c-runtime-library/reference/memcpy-wmemcpy", "a C run-time page: no requirements for the ntoskrnl.exe export; Windows 2000 is UNVERIFIED";
    "ntoskrnl.exe" memmove WINDOWS_2000, "https://learn.microsoft.com/cpp/c-runtime-library/reference/memmove-wmemmove", "a C run-time page: no requirements for the ntoskrnl.exe export; Windows 2000 is UNVERIFIED";
    "ntoskrnl.exe" memset WINDOWS_2000, "https://learn.microsoft.com/cpp/c-runtime-library/reference/memset-wmemset", "a C run-time page: no requirements for the ntoskrnl.exe export; Windows 2000 is UNVERIFIED";
    "ntoskrnl.exe" memcmp WINDOWS_2000, "https://learn.microsoft.com/cpp/c-runtime-library/reference/memcmp-wmemcmp", "a C run-time page: no requirements for the ntoskrnl.exe export; Windows 2000 is UNVERIFIED";
    "ntoskrnl.exe" strlen WINDOWS_2000, "https://learn.microsoft.com/cpp/c-runtime-library/reference/strlen-wcslen-mbslen-mbslen-l-mbstrlen-mbstrlen-l", "a C run-time page: no requirements for the ntoskrnl.exe export; Windows 2000 is UNVERIFIED";
    "ntoskrnl.exe" __chkstk WINDOWS_2000, "https://learn.microsoft.com/windows/win32/devnotes/-win32-__chkstk", "the page documents the user-mode export (kernelbase.dll), not ntoskrnl.exe's; Windows 2000 is UNVERIFIED";
}

/// The row of `module!function` (module names compare case-insensitively, as the loader does).
pub fn lookup(module: &str, function: &str) -> Option<&'static Availability> {
    IMPORTS
        .iter()
        .find(|a| a.module.eq_ignore_ascii_case(module) && a.function == function)
}

#[cfg(all(test, not(windows)))]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::BTreeSet;

    const NDIS_DDI: &str = "https://learn.microsoft.com/windows-hardware/drivers/ddi/ndis/nf-ndis-";
    const WDM_DDI: &str = "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-";

    #[test]
    fn every_declared_import_has_exactly_one_row() {
        let declared: BTreeSet<(&str, &str)> = crate::HostImports::NAMES.iter().copied().collect();
        let mut rows = BTreeSet::new();
        for a in IMPORTS {
            assert!(
                rows.insert((a.module, a.function)),
                "{}!{} has two rows",
                a.module,
                a.function
            );
        }
        let missing: std::vec::Vec<_> = declared.difference(&rows).collect();
        assert!(
            missing.is_empty(),
            "imports without a row in availability.rs: {missing:?}"
        );
        // The only rows without a host-seam import are the C runtime block, which exists on
        // Windows only (crate::crt) and is parsed out of functions.rs below.
        let src = include_str!("functions.rs");
        let crt_start = src
            .find("pub mod crt")
            .expect("functions.rs has the crt block");
        let crt: BTreeSet<&str> = src[crt_start..]
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub fn "))
            .map(|l| l.split('(').next().unwrap())
            .collect();
        assert_eq!(crt.len(), 6, "{crt:?}");
        for (module, function) in rows.difference(&declared) {
            assert!(
                *module == "ntoskrnl.exe" && crt.contains(function),
                "row {module}!{function} names no import of ndis-sys"
            );
        }
        for f in &crt {
            assert!(lookup("ntoskrnl.exe", f).is_some(), "crt {f} has no row");
        }
    }

    #[test]
    fn sources_are_reference_pages_and_versions_are_releases() {
        for a in IMPORTS {
            assert!(
                a.source.starts_with("https://learn.microsoft.com/"),
                "{}: {}",
                a.function,
                a.source
            );
            if a.module == "ndis.sys" {
                let page = std::format!("{NDIS_DDI}{}", a.function.to_ascii_lowercase());
                assert!(a.source.starts_with(&page), "{}: {}", a.function, a.source);
            }
            if a.source.starts_with(WDM_DDI) {
                let page = std::format!("{WDM_DDI}{}", a.function.to_ascii_lowercase());
                assert!(a.source.starts_with(&page), "{}: {}", a.function, a.source);
            }
            assert!(
                a.since.release_name().is_some(),
                "{}: {}",
                a.function,
                a.since
            );
        }
        assert_eq!(
            lookup("NTOSKRNL.EXE", "ExAllocatePool2").map(|a| a.since),
            Some(WINDOWS_10_2004)
        );
    }

    #[test]
    fn ndis_releases_are_in_order_and_name_real_builds() {
        for w in NDIS_RELEASES.windows(2) {
            assert!(w[0].ndis < w[1].ndis && w[0].first_windows < w[1].first_windows);
        }
        for r in NDIS_RELEASES {
            assert!(r.first_windows.release_name().is_some(), "{r:?}");
        }
        for w in RELEASES.windows(2) {
            assert!(w[0].version < w[1].version);
        }
        assert_eq!(ndis_first_windows(6, 20), Some(WINDOWS_7));
        assert_eq!(ndis_first_windows(6, 80), Some(WINDOWS_10_1709));
        assert_eq!(ndis_first_windows(6, 21), None);
    }
}
