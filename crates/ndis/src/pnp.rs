//! The PnP handlers NDIS calls before `MiniportInitializeEx`: `MiniportAddDevice`,
//! `MiniportFilterResourceRequirements`, `MiniportStartDevice` and, after halt,
//! `MiniportRemoveDevice`.
//!
//! A driver that sets [`MiniportDriver::FILTER_RESOURCES`] gets them registered (through
//! `MiniportSetOptions` and `NdisSetOptionalHandlers`) and answers one question in safe code,
//! [`MiniportDriver::interrupt_request`]: how many message interrupts to ask for and on which
//! processor each one runs. The framework does the IRP and resource-list surgery: it rewrites
//! every alternative configuration that offers message interrupts so it lists exactly the
//! messages asked for, each pinned with `IrqPolicySpecifiedProcessors`, or removes them all for
//! a line-based driver (which Windows requires before a line registration on a device that
//! offered messages). What PnP then grants is still its choice: the driver reads the grant in
//! initialize, as without the handler.

use core::ffi::c_void;

use ndis_sys as sys;

use crate::Status;
use crate::adapter::AdapterHandle;
use crate::config::Configuration;
use crate::driver::MiniportDriver;
use crate::irql::Passive;

/// Windows allocates at most this many messages to one PCI function (from Windows 8).
pub const MAX_MESSAGES: u32 = 2048;

/// Pool tag of the requirements lists the framework writes (`ndpn`).
const LIST_TAG: u32 = u32::from_le_bytes(*b"ndpn");

/// Which processor each requested message interrupt runs on: its ISR, and its DPCs, which
/// NDIS queues on the processor that took the interrupt.
#[derive(Debug, Clone, Copy)]
pub enum MessageAffinity {
    /// Whatever the platform's policy (`Affinity Policy` in the device's registry key) says.
    Platform,
    /// Message *m* on processor `(m / per_processor) mod processors`: with `per_processor: 2`
    /// the two messages of each queue pair share a processor and pairs go round the machine.
    Spread { per_processor: u32 },
    /// Message *m* on processor `f(m) mod processors`.
    Map(fn(u32) -> u32),
}

/// What a driver asks PnP for, from [`MiniportDriver::interrupt_request`].
#[derive(Debug, Clone, Copy)]
pub struct InterruptRequest {
    messages: u32,
    affinity: MessageAffinity,
}

impl InterruptRequest {
    /// `messages` message interrupts (clamped to `1..=MAX_MESSAGES`), placed by `affinity`.
    /// PnP may still grant fewer (the INF's `MessageNumberLimit`, the device's MSI-X table,
    /// the platform), so initialize plans from the grant, never from the request.
    pub const fn messages(messages: u32, affinity: MessageAffinity) -> Self {
        let messages = if messages == 0 {
            1
        } else if messages > MAX_MESSAGES {
            MAX_MESSAGES
        } else {
            messages
        };
        InterruptRequest { messages, affinity }
    }

    /// No message interrupts: every message descriptor is removed, so PnP assigns the line.
    pub const fn line() -> Self {
        InterruptRequest {
            messages: 0,
            affinity: MessageAffinity::Platform,
        }
    }

    /// Messages asked for; 0 for [`line`](Self::line).
    pub const fn message_count(&self) -> u32 {
        self.messages
    }

    pub const fn affinity(&self) -> MessageAffinity {
        self.affinity
    }

    /// The processor message `message` is pinned to on a machine of `processors` (group 0),
    /// or None when the platform decides.
    pub fn processor_of(&self, message: u32, processors: u32) -> Option<u32> {
        let processors = processors.clamp(1, sys::MAXIMUM_PROC_PER_GROUP);
        match self.affinity {
            MessageAffinity::Platform => None,
            MessageAffinity::Spread { per_processor } => {
                Some((message / per_processor.max(1)) % processors)
            }
            MessageAffinity::Map(f) => Some(f(message) % processors),
        }
    }
}

/// What the driver may look at while it decides its [`InterruptRequest`] (PASSIVE_LEVEL,
/// before initialize: the device's registers are not mapped yet).
pub struct ResourceFilter<'a> {
    handle: AdapterHandle,
    offered: u32,
    passive: Passive<'a>,
}

impl<'a> ResourceFilter<'a> {
    /// Processors in group 0 (message affinities are masks within one group).
    pub fn processors(&self) -> u32 {
        crate::sync::processor_count()
    }

    /// Message interrupts the bus offered in the first configuration (0 when the device has
    /// none, or MSI is off in its registry key).
    pub fn offered_messages(&self) -> u32 {
        self.offered
    }

    /// The adapter's registry keywords, as in initialize.
    pub fn configuration(&self) -> Result<Configuration<'_>, Status> {
        Configuration::open(self.handle, &self.passive)
    }

    pub fn passive(&self) -> &Passive<'a> {
        &self.passive
    }
}

/// The framework's `MiniportAddDeviceContext`: what the later PnP handlers need.
struct PnpDevice {
    handle: AdapterHandle,
    driver: *const c_void,
}

/// `MiniportSetOptions`: registers the PnP handlers, inside `NdisMRegisterMiniportDriver`.
pub(crate) unsafe extern "win64-unwind" fn set_options<D: MiniportDriver>(
    driver_handle: sys::NDIS_HANDLE,
    _driver_context: sys::NDIS_HANDLE,
) -> sys::NDIS_STATUS {
    let mut handlers = sys::NDIS_DRIVER_OPTIONAL_HANDLERS {
        MiniportPnpCharacteristics: sys::NDIS_MINIPORT_PNP_CHARACTERISTICS {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_MINIPORT_PNP_CHARACTERISTICS,
                Revision: sys::NDIS_MINIPORT_PNP_CHARACTERISTICS_REVISION_1,
                Size: sys::NDIS_SIZEOF_MINIPORT_PNP_CHARACTERISTICS_REVISION_1,
            },
            MiniportAddDeviceHandler: Some(add_device),
            MiniportRemoveDeviceHandler: Some(remove_device),
            MiniportFilterResourceRequirementsHandler: Some(filter_resource_requirements::<D>),
            MiniportStartDeviceHandler: Some(start_device),
            Flags: 0,
        },
    };
    // SAFETY: PASSIVE_LEVEL inside MiniportSetOptions with the driver handle NDIS passed; the
    // characteristics live across the call (NDIS copies them).
    unsafe { sys::NdisSetOptionalHandlers(driver_handle, &mut handlers) }
}

unsafe extern "win64-unwind" fn add_device(
    miniport_handle: sys::NDIS_HANDLE,
    driver_context: sys::NDIS_HANDLE,
) -> sys::NDIS_STATUS {
    // SAFETY: MiniportAddDevice runs at PASSIVE_LEVEL.
    let passive = unsafe { Passive::assume() };
    let device = PnpDevice {
        // SAFETY: NDIS passes the adapter's handle; it is the one initialize gets later.
        handle: unsafe { AdapterHandle::from_raw(miniport_handle) },
        driver: driver_context.cast_const(),
    };
    let Ok(device) = crate::heap::try_box(device, &passive) else {
        return sys::NDIS_STATUS_RESOURCES;
    };
    let context = alloc::boxed::Box::into_raw(device);
    // SAFETY: all-zero is a valid attribute union (plain data).
    let mut a: sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES = unsafe { core::mem::zeroed() };
    a.AddDeviceRegistrationAttributes = sys::NDIS_MINIPORT_ADD_DEVICE_REGISTRATION_ATTRIBUTES {
        Header: sys::NDIS_OBJECT_HEADER {
            Type: sys::NDIS_OBJECT_TYPE_MINIPORT_ADD_DEVICE_REGISTRATION_ATTRIBUTES,
            Revision: sys::NDIS_MINIPORT_ADD_DEVICE_REGISTRATION_ATTRIBUTES_REVISION_1,
            Size: sys::NDIS_SIZEOF_MINIPORT_ADD_DEVICE_REGISTRATION_ATTRIBUTES_REVISION_1,
        },
        MiniportAddDeviceContext: context.cast(),
        Flags: 0,
    };
    // SAFETY: AddDevice's handle at PASSIVE_LEVEL; the attributes live across the call.
    let status = unsafe { sys::NdisMSetMiniportAttributes(miniport_handle, &mut a) };
    if status != sys::NDIS_STATUS_SUCCESS {
        // SAFETY: NDIS did not take the context; it is still ours alone.
        drop(unsafe { alloc::boxed::Box::from_raw(context) });
    }
    status
}

unsafe extern "win64-unwind" fn remove_device(context: sys::NDIS_HANDLE) {
    // SAFETY: the context add_device registered; RemoveDevice is the last handler to get it.
    drop(unsafe { alloc::boxed::Box::from_raw(context as *mut PnpDevice) });
}

/// `MiniportStartDevice`. The framework adds message descriptors only while filtering and never
/// removes them here (Windows forbids dropping added messages at start), so there is nothing to
/// change: the IRP goes on as NDIS passed it.
unsafe extern "win64-unwind" fn start_device(
    _context: sys::NDIS_HANDLE,
    _irp: sys::PIRP,
) -> sys::NDIS_STATUS {
    sys::NDIS_STATUS_SUCCESS
}

unsafe extern "win64-unwind" fn filter_resource_requirements<D: MiniportDriver>(
    context: sys::NDIS_HANDLE,
    irp: sys::PIRP,
) -> sys::NDIS_STATUS {
    // SAFETY: the context add_device registered, alive until RemoveDevice.
    let device = unsafe { &*(context as *const PnpDevice) };
    // SAFETY: driver_entry registered `&'static D` as the driver context.
    let driver = unsafe { &*(device.driver as *const D) };
    // SAFETY: NDIS passes the IRP_MN_FILTER_RESOURCE_REQUIREMENTS IRP, valid for the call.
    let information = unsafe { (*irp).IoStatus.Information };
    let list = information as *mut u8;
    if list.is_null() {
        // The device needs no resources: nothing to filter.
        return sys::NDIS_STATUS_SUCCESS;
    }
    // SAFETY: the list PnP built starts with its byte size.
    let size = unsafe { list.cast::<u32>().read_unaligned() } as usize;
    if size < sys::IO_RESOURCE_REQUIREMENTS_LIST_HEADER {
        return sys::NDIS_STATUS_INVALID_DATA;
    }
    // SAFETY: `ListSize` bytes of the list are readable and nobody writes them during the call.
    let old = unsafe { core::slice::from_raw_parts(list, size) };
    let Some(offered) = offered_messages(old) else {
        return sys::NDIS_STATUS_INVALID_DATA;
    };
    let filter = ResourceFilter {
        handle: device.handle,
        offered,
        // SAFETY: MiniportFilterResourceRequirements runs at PASSIVE_LEVEL.
        passive: unsafe { Passive::assume() },
    };
    let request = driver.interrupt_request(&filter);
    let processors = filter.processors();
    let Some(new_size) = rewrite(old, &request, processors, None) else {
        return sys::NDIS_STATUS_INVALID_DATA;
    };
    // SAFETY: PASSIVE_LEVEL; PnP frees the list it is handed back with ExFreePool, so it comes
    // from pool, paged as the IRP's documentation asks. ExAllocatePoolWithTag rather than
    // ExAllocatePool2: the latter exists only from Windows 10 2004 on, and importing it would keep
    // the driver from loading on the older Windows it declares (docs/packaging.md).
    let new = unsafe { sys::ExAllocatePoolWithTag(sys::PagedPool, new_size, LIST_TAG) };
    if new.is_null() {
        return sys::NDIS_STATUS_RESOURCES;
    }
    // SAFETY: a fresh block of `new_size` bytes, ours until it is handed to PnP below.
    let out = unsafe { core::slice::from_raw_parts_mut(new.cast::<u8>(), new_size) };
    // ExAllocatePoolWithTag does not zero; nothing of the pool's old contents reaches PnP.
    out.fill(0);
    rewrite(old, &request, processors, Some(out));
    // SAFETY: the IRP's list is replaced: the old one (PnP's pool, freed as ExFreePool does,
    // tag 0) is no longer referenced, and the IRP now carries the new one.
    unsafe {
        sys::ExFreePoolWithTag(list.cast(), 0);
        (*irp).IoStatus.Information = new as usize;
    }
    sys::NDIS_STATUS_SUCCESS
}

// ---------------------------------------------------------------------------------------------
// The list surgery, on bytes: no pointers, every offset checked against the list's size.

const DESCRIPTOR: usize = core::mem::size_of::<sys::IO_RESOURCE_DESCRIPTOR>();
const D_OPTION: usize = core::mem::offset_of!(sys::IO_RESOURCE_DESCRIPTOR, Option);
const D_TYPE: usize = core::mem::offset_of!(sys::IO_RESOURCE_DESCRIPTOR, Type);
const D_FLAGS: usize = core::mem::offset_of!(sys::IO_RESOURCE_DESCRIPTOR, Flags);
const D_U: usize = core::mem::offset_of!(sys::IO_RESOURCE_DESCRIPTOR, u);
const I_MIN: usize = D_U + core::mem::offset_of!(sys::IO_RESOURCE_INTERRUPT, MinimumVector);
const I_MAX: usize = D_U + core::mem::offset_of!(sys::IO_RESOURCE_INTERRUPT, MaximumVector);
const I_POLICY: usize = D_U + core::mem::offset_of!(sys::IO_RESOURCE_INTERRUPT, AffinityPolicy);
const I_GROUP: usize = D_U + core::mem::offset_of!(sys::IO_RESOURCE_INTERRUPT, Group);
const I_TARGETS: usize =
    D_U + core::mem::offset_of!(sys::IO_RESOURCE_INTERRUPT, TargetedProcessors);
const L_COUNT: usize = core::mem::offset_of!(sys::IO_RESOURCE_LIST, Count);
const R_ALTERNATIVES: usize =
    core::mem::offset_of!(sys::IO_RESOURCE_REQUIREMENTS_LIST, AlternativeLists);

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn is_message(d: &[u8]) -> bool {
    d[D_TYPE] == sys::CmResourceTypeInterrupt
        && u16_at(d, D_FLAGS).is_some_and(|f| f & sys::CM_RESOURCE_INTERRUPT_MESSAGE != 0)
}

/// Messages one message descriptor covers (its vector range).
fn messages_of(d: &[u8]) -> Option<u32> {
    let (min, max) = (u32_at(d, I_MIN)?, u32_at(d, I_MAX)?);
    max.checked_sub(min)?.checked_add(1)
}

/// The alternative lists of a requirements list: (offset of the list, descriptor count), each
/// checked to lie inside `b`.
fn alternatives(b: &[u8]) -> Option<impl Iterator<Item = (usize, usize)> + '_> {
    let count = u32_at(b, R_ALTERNATIVES)? as usize;
    // Every list is checked first, so the iterator cannot run off the end.
    let mut at = sys::IO_RESOURCE_REQUIREMENTS_LIST_HEADER;
    for _ in 0..count {
        let n = u32_at(b, at + L_COUNT)? as usize;
        at = at
            .checked_add(sys::IO_RESOURCE_LIST_HEADER)?
            .checked_add(n.checked_mul(DESCRIPTOR)?)?;
        if at > b.len() {
            return None;
        }
    }
    let mut at = sys::IO_RESOURCE_REQUIREMENTS_LIST_HEADER;
    Some((0..count).map(move |_| {
        let n = u32_at(b, at + L_COUNT).unwrap_or(0) as usize;
        let list = (at, n);
        at += sys::IO_RESOURCE_LIST_HEADER + n * DESCRIPTOR;
        list
    }))
}

/// Messages the first configuration offers; None for a malformed list.
fn offered_messages(b: &[u8]) -> Option<u32> {
    let mut lists = alternatives(b)?;
    let Some((at, n)) = lists.next() else {
        return Some(0);
    };
    let mut total = 0u32;
    for i in 0..n {
        let d = &b[at + sys::IO_RESOURCE_LIST_HEADER + i * DESCRIPTOR..][..DESCRIPTOR];
        if is_message(d) {
            total = total.checked_add(messages_of(d)?)?;
        }
    }
    Some(total)
}

/// Rewrites requirements list `old` for `request`: in every configuration that offers message
/// interrupts, the message descriptors are replaced by `request.message_count()` descriptors of
/// one message each (made from the first one, pinned where the request says), or all removed
/// for a line request, whose line descriptors then stop being mere alternatives. Everything
/// else is copied as it was. Returns the new list's size; writes it into `out` when given one
/// of that size. None for a malformed list.
fn rewrite(
    old: &[u8],
    request: &InterruptRequest,
    processors: u32,
    mut out: Option<&mut [u8]>,
) -> Option<usize> {
    let header = sys::IO_RESOURCE_REQUIREMENTS_LIST_HEADER;
    let mut size = header;
    if let Some(o) = out.as_deref_mut() {
        o[..header].copy_from_slice(&old[..header]);
    }
    for (at, n) in alternatives(old)? {
        let descriptors =
            |i: usize| &old[at + sys::IO_RESOURCE_LIST_HEADER + i * DESCRIPTOR..][..DESCRIPTOR];
        let template = (0..n).map(descriptors).find(|d| is_message(d));
        let list_at = size;
        size += sys::IO_RESOURCE_LIST_HEADER;
        let mut count = 0u32;
        let mut emitted = false;
        for i in 0..n {
            let d = descriptors(i);
            let mut copies: [u8; DESCRIPTOR] = d.try_into().ok()?;
            let Some(template) = template else {
                put(&mut out, &mut size, &mut count, &copies);
                continue;
            };
            if is_message(d) {
                if emitted || request.messages == 0 {
                    continue;
                }
                emitted = true;
                for m in 0..request.messages {
                    let mut new: [u8; DESCRIPTOR] = template.try_into().ok()?;
                    let vector = u32_at(template, I_MAX)?;
                    new[I_MIN..I_MIN + 4].copy_from_slice(&vector.to_le_bytes());
                    new[I_MAX..I_MAX + 4].copy_from_slice(&vector.to_le_bytes());
                    if let Some(cpu) = request.processor_of(m, processors) {
                        let flags =
                            u16_at(&new, D_FLAGS)? | sys::CM_RESOURCE_INTERRUPT_POLICY_INCLUDED;
                        new[D_FLAGS..D_FLAGS + 2].copy_from_slice(&flags.to_le_bytes());
                        new[I_POLICY..I_POLICY + 2]
                            .copy_from_slice(&sys::IrqPolicySpecifiedProcessors.to_le_bytes());
                        new[I_GROUP..I_GROUP + 2].copy_from_slice(&0u16.to_le_bytes());
                        let mask = (1usize << cpu) as u64;
                        new[I_TARGETS..I_TARGETS + 8].copy_from_slice(&mask.to_le_bytes());
                    }
                    put(&mut out, &mut size, &mut count, &new);
                }
            } else {
                if request.messages == 0 && d[D_TYPE] == sys::CmResourceTypeInterrupt {
                    copies[D_OPTION] &= !sys::IO_RESOURCE_ALTERNATIVE;
                }
                put(&mut out, &mut size, &mut count, &copies);
            }
        }
        if let Some(o) = out.as_deref_mut() {
            o[list_at..list_at + sys::IO_RESOURCE_LIST_HEADER]
                .copy_from_slice(&old[at..at + sys::IO_RESOURCE_LIST_HEADER]);
            o[list_at + L_COUNT..list_at + L_COUNT + 4].copy_from_slice(&count.to_le_bytes());
        }
    }
    if let Some(o) = out {
        o[..4].copy_from_slice(&(size as u32).to_le_bytes());
    }
    Some(size)
}

fn put(out: &mut Option<&mut [u8]>, size: &mut usize, count: &mut u32, d: &[u8; DESCRIPTOR]) {
    if let Some(o) = out.as_deref_mut() {
        o[*size..*size + DESCRIPTOR].copy_from_slice(d);
    }
    *size += DESCRIPTOR;
    *count += 1;
}

#[cfg(test)]
mod tests;
