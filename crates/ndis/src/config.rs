//! Registry keywords of the adapter (`NdisOpenConfigurationEx` / `NdisReadConfiguration`): the
//! values an INF's `Ndi\params` declares and the advanced property page edits.

use ndis_sys as sys;

use crate::Status;
use crate::adapter::AdapterHandle;
use crate::irql::Passive;

/// An open configuration handle, closed on drop. Opened in initialize
/// ([`Init::configuration`](crate::miniport::Init::configuration)) and borrowing it, so it is
/// closed there, at PASSIVE_LEVEL: it cannot be kept in the adapter, and while it lives the
/// initialize context cannot enter a scope that raises the IRQL (where closing would be wrong).
#[derive(Debug)]
pub struct Configuration<'i> {
    handle: sys::NDIS_HANDLE,
    _initializing: core::marker::PhantomData<&'i Passive<'i>>,
}

/// Longest keyword name accepted (registry value names used as NDIS keywords are short).
const MAX_KEYWORD: usize = 64;

impl<'i> Configuration<'i> {
    pub(crate) fn open(adapter: AdapterHandle, _passive: &'i Passive<'_>) -> Result<Self, Status> {
        let mut object = sys::NDIS_CONFIGURATION_OBJECT {
            Header: sys::NDIS_OBJECT_HEADER {
                Type: sys::NDIS_OBJECT_TYPE_CONFIGURATION_OBJECT,
                Revision: sys::NDIS_CONFIGURATION_OBJECT_REVISION_1,
                Size: sys::NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1,
            },
            NdisHandle: adapter.as_raw(),
            Flags: 0,
        };
        let mut handle: sys::NDIS_HANDLE = core::ptr::null_mut();
        // SAFETY: PASSIVE_LEVEL (token); the object and out-handle live across the call.
        let status = unsafe { sys::NdisOpenConfigurationEx(&mut object, &mut handle) };
        if status != sys::NDIS_STATUS_SUCCESS || handle.is_null() {
            return Err(Status(status));
        }
        Ok(Configuration {
            handle,
            _initializing: core::marker::PhantomData,
        })
    }

    /// The keyword as a decimal integer; None when absent or not a number (the caller's
    /// default then applies).
    pub fn read_u32(&self, keyword: &str, _passive: &Passive<'_>) -> Option<u32> {
        let mut name = [0u16; MAX_KEYWORD];
        let mut n = 0;
        for unit in keyword.encode_utf16() {
            *name.get_mut(n)? = unit;
            n += 1;
        }
        let mut string = sys::UNICODE_STRING {
            Length: (n * 2) as u16,
            MaximumLength: (MAX_KEYWORD * 2) as u16,
            Buffer: name.as_mut_ptr(),
        };
        let mut status = sys::NDIS_STATUS_FAILURE;
        let mut value: *mut sys::NDIS_CONFIGURATION_PARAMETER = core::ptr::null_mut();
        // SAFETY: PASSIVE_LEVEL (token); an open handle; out-pointers and the name live across
        // the call.
        unsafe {
            sys::NdisReadConfiguration(
                &mut status,
                &mut value,
                self.handle,
                &mut string,
                sys::NdisParameterInteger,
            )
        };
        if status != sys::NDIS_STATUS_SUCCESS || value.is_null() {
            return None;
        }
        // SAFETY: NDIS returned a parameter valid until the handle closes (it outlives `self`'s
        // borrow here).
        let parameter = unsafe { &*value };
        if parameter.ParameterType != sys::NdisParameterInteger {
            return None;
        }
        // SAFETY: the type says this is the integer member.
        Some(unsafe { parameter.ParameterData.IntegerData })
    }

    /// The `NetworkAddress` keyword (the address an administrator set on the advanced property
    /// page), if it is a usable Ethernet unicast address: six bytes, not multicast or
    /// broadcast, not all zero. Anything else is ignored, and the caller keeps the permanent
    /// address.
    pub fn read_network_address(&self, _passive: &Passive<'_>) -> Option<[u8; 6]> {
        let mut status = sys::NDIS_STATUS_FAILURE;
        let mut address: sys::PVOID = core::ptr::null_mut();
        let mut length: sys::UINT = 0;
        // SAFETY: PASSIVE_LEVEL (token); an open handle; the out-pointers live across the call.
        unsafe { sys::NdisReadNetworkAddress(&mut status, &mut address, &mut length, self.handle) };
        if status != sys::NDIS_STATUS_SUCCESS || address.is_null() || length != 6 {
            return None;
        }
        let mut mac = [0u8; 6];
        // SAFETY: NDIS returned `length` (6) readable bytes, valid until the handle closes.
        mac.copy_from_slice(unsafe { core::slice::from_raw_parts(address.cast::<u8>(), 6) });
        let multicast = mac[0] & 1 != 0; // broadcast included
        (!multicast && mac != [0; 6]).then_some(mac)
    }

    /// The keyword clamped into `range`, or `default` when absent/invalid; out-of-range values
    /// are clamped rather than refused, as the advanced property page may hold anything.
    pub fn read_u32_in(
        &self,
        keyword: &str,
        range: core::ops::RangeInclusive<u32>,
        default: u32,
        passive: &Passive<'_>,
    ) -> u32 {
        self.read_u32(keyword, passive)
            .map(|v| v.clamp(*range.start(), *range.end()))
            .unwrap_or(default)
    }
}

impl Drop for Configuration<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle opened in `open`, closed once, at PASSIVE_LEVEL: the configuration
        // borrows initialize's token, so it is dropped inside initialize and never inside a
        // scope that raises the IRQL (that scope needs the token mutably).
        unsafe { sys::NdisCloseConfiguration(self.handle) }
    }
}
