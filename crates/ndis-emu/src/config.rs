//! Registry configuration: `NdisOpenConfigurationEx`, `NdisReadConfiguration`,
//! `NdisCloseConfiguration` over keywords the test sets ([`Emulator::set_keyword`]).
//!
//! Values are stored as strings, as an INF's `Ndi\params` defaults and the advanced property
//! page write them (REG_SZ). Reading one as `NdisParameterInteger` parses decimal, as
//! `NdisParameterHexInteger` hexadecimal; a value that does not parse fails the read, as a
//! missing one does. Keyword names are case-insensitive (they are registry value names).
//! Every parameter a read returns stays valid until its handle is closed; unload requires every
//! handle closed. The emulator records which keywords a driver read, so a test can check them
//! against the INF.

use std::collections::{BTreeMap, BTreeSet};

use ndis_sys as sys;

use crate::Emulator;
use crate::bugcheck::{self, rule};
use crate::machine::{self, State};
use crate::ndis::adapter_of_handle;

const CONFIG_TAG: usize = 0x4E44_4300_0000;

#[derive(Default)]
pub(crate) struct ConfigState {
    /// Lower-cased keyword -> (keyword as set, value).
    keywords: BTreeMap<String, (String, String)>,
    handles: Vec<Handle>,
    read: BTreeSet<String>,
}

struct Handle {
    live: bool,
    /// Parameters handed out through this handle (freed on close). Boxed: the driver holds
    /// pointers to them, which must survive the vector growing.
    #[allow(clippy::vec_box)]
    parameters: Vec<Box<Parameter>>,
    /// Network addresses handed out (`NdisReadNetworkAddress`), freed on close.
    addresses: Vec<Vec<u8>>,
}

struct Parameter {
    value: sys::NDIS_CONFIGURATION_PARAMETER,
    _text: Vec<u16>,
}

impl Emulator {
    /// Sets a keyword in every adapter's driver key (as the INF's `Ndi\params` default or the
    /// advanced property page would), e.g. `set_keyword("*NumRssQueues", "4")`.
    pub fn set_keyword(&self, name: &str, value: &str) {
        self.st().config_keys.keywords.insert(
            name.to_ascii_lowercase(),
            (name.to_string(), value.to_string()),
        );
    }

    /// Every keyword the driver tried to read, as it spelled it, whether set or not.
    pub fn keywords_read(&self) -> Vec<String> {
        self.st().config_keys.read.iter().cloned().collect()
    }
}

fn handle_index(st: &State, handle: sys::NDIS_HANDLE, function: &str) -> usize {
    let h = handle as usize;
    let i = (h ^ CONFIG_TAG).wrapping_sub(1);
    if h & CONFIG_TAG == CONFIG_TAG
        && i < st.config_keys.handles.len()
        && st.config_keys.handles[i].live
    {
        return i;
    }
    bugcheck::raise(
        bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
        [rule::INVALID_HANDLE, h, 0, 0],
        format!("{function}({h:#x}): not an open configuration handle"),
    )
}

pub(crate) unsafe fn ndis_open_configuration_ex(
    object: *mut sys::NDIS_CONFIGURATION_OBJECT,
    out: *mut sys::NDIS_HANDLE,
) -> sys::NDIS_STATUS {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "NdisOpenConfigurationEx");
    // SAFETY: the caller's configuration object.
    let o = unsafe { *object };
    if o.Header.Type != sys::NDIS_OBJECT_TYPE_CONFIGURATION_OBJECT
        || o.Header.Revision != sys::NDIS_CONFIGURATION_OBJECT_REVISION_1
        || o.Header.Size < sys::NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1
    {
        drop(st);
        crate::ndis::header_bugcheck(
            "NdisOpenConfigurationEx",
            "configuration object",
            o.Header,
            "0xA9 / 1 / 20",
        );
    }
    adapter_of_handle(&st, o.NdisHandle, "NdisOpenConfigurationEx");
    // SAFETY: the caller's out-pointer.
    unsafe { out.write(core::ptr::null_mut()) };
    if st.fallible("NdisOpenConfigurationEx") {
        return sys::NDIS_STATUS_RESOURCES;
    }
    st.config_keys.handles.push(Handle {
        live: true,
        parameters: Vec::new(),
        addresses: Vec::new(),
    });
    let h = CONFIG_TAG | st.config_keys.handles.len();
    // SAFETY: as above.
    unsafe { out.write(h as sys::NDIS_HANDLE) };
    sys::NDIS_STATUS_SUCCESS
}

pub(crate) unsafe fn ndis_read_configuration(
    status: *mut sys::NDIS_STATUS,
    value: *mut *mut sys::NDIS_CONFIGURATION_PARAMETER,
    handle: sys::NDIS_HANDLE,
    keyword: *mut sys::UNICODE_STRING,
    kind: sys::NDIS_PARAMETER_TYPE,
) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "NdisReadConfiguration");
    let h = handle_index(&st, handle, "NdisReadConfiguration");
    // SAFETY: the caller's out-pointers.
    unsafe {
        status.write(sys::NDIS_STATUS_FAILURE);
        value.write(core::ptr::null_mut());
    }
    // SAFETY: the caller's keyword: `Length` bytes of UTF-16 at `Buffer`.
    let name = unsafe {
        let k = &*keyword;
        String::from_utf16_lossy(core::slice::from_raw_parts(k.Buffer, k.Length as usize / 2))
    };
    st.config_keys.read.insert(name.clone());
    let Some((_, text)) = st
        .config_keys
        .keywords
        .get(&name.to_ascii_lowercase())
        .cloned()
    else {
        return;
    };
    let mut utf16: Vec<u16> = text.encode_utf16().collect();
    let data = match kind {
        sys::NdisParameterInteger | sys::NdisParameterHexInteger => {
            let radix = if kind == sys::NdisParameterInteger {
                10
            } else {
                16
            };
            let Ok(n) = u32::from_str_radix(text.trim(), radix) else {
                return;
            };
            sys::NDIS_CONFIGURATION_PARAMETER_DATA { IntegerData: n }
        }
        sys::NdisParameterString => {
            utf16.push(0);
            sys::NDIS_CONFIGURATION_PARAMETER_DATA {
                StringData: sys::UNICODE_STRING {
                    Length: ((utf16.len() - 1) * 2) as u16,
                    MaximumLength: (utf16.len() * 2) as u16,
                    Buffer: utf16.as_mut_ptr(),
                },
            }
        }
        _ => return,
    };
    let mut parameter = Box::new(Parameter {
        value: sys::NDIS_CONFIGURATION_PARAMETER {
            ParameterType: kind,
            ParameterData: data,
        },
        _text: utf16,
    });
    let p: *mut sys::NDIS_CONFIGURATION_PARAMETER = &mut parameter.value;
    st.config_keys.handles[h].parameters.push(parameter);
    // SAFETY: as above; the parameter lives (boxed) until the handle is closed.
    unsafe {
        value.write(p);
        status.write(sys::NDIS_STATUS_SUCCESS);
    }
}

/// Hex digits of `text` as bytes, pairs of digits, `-` or `:` allowed between bytes; None for
/// anything else (an odd digit count, other characters, an empty string).
fn parse_network_address(text: &str) -> Option<Vec<u8>> {
    let parts: Vec<&str> = text.trim().split(['-', ':']).collect();
    // Separated: every part one byte (two digits); otherwise one run of digit pairs.
    if parts.len() > 1 && parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    let digits: Vec<u8> = parts.iter().flat_map(|part| part.bytes()).collect();
    if digits.is_empty()
        || !digits.len().is_multiple_of(2)
        || !digits.iter().all(u8::is_ascii_hexdigit)
    {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

pub(crate) unsafe fn ndis_read_network_address(
    status: *mut sys::NDIS_STATUS,
    address: *mut sys::PVOID,
    length: *mut sys::UINT,
    handle: sys::NDIS_HANDLE,
) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "NdisReadNetworkAddress");
    let h = handle_index(&st, handle, "NdisReadNetworkAddress");
    // SAFETY: the caller's out-pointers.
    unsafe {
        status.write(sys::NDIS_STATUS_FAILURE);
        address.write(core::ptr::null_mut());
        length.write(0);
    }
    st.config_keys.read.insert("NetworkAddress".to_string());
    let Some(bytes) = st
        .config_keys
        .keywords
        .get("networkaddress")
        .and_then(|(_, text)| parse_network_address(text))
    else {
        return;
    };
    // Kept with the handle, as NDIS keeps it until NdisCloseConfiguration (moving the vector
    // into the list does not move its bytes).
    let (p, n) = (bytes.as_ptr(), bytes.len());
    st.config_keys.handles[h].addresses.push(bytes);
    // SAFETY: as above; the bytes live until the handle is closed.
    unsafe {
        address.write(p as sys::PVOID);
        length.write(n as sys::UINT);
        status.write(sys::NDIS_STATUS_SUCCESS);
    }
}

pub(crate) unsafe fn ndis_close_configuration(handle: sys::NDIS_HANDLE) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "NdisCloseConfiguration");
    let h = handle_index(&st, handle, "NdisCloseConfiguration");
    let entry = &mut st.config_keys.handles[h];
    entry.live = false;
    entry.parameters.clear();
    entry.addresses.clear();
}

/// Unload: configuration handles still open.
pub(crate) fn open_handles(st: &State) -> usize {
    st.config_keys.handles.iter().filter(|h| h.live).count()
}

#[cfg(test)]
mod tests {
    use super::parse_network_address;

    #[test]
    fn network_addresses_are_hex_pairs() {
        let mac = Some(vec![0x02, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE]);
        assert_eq!(parse_network_address("02AABBCCDDEE"), mac);
        assert_eq!(parse_network_address(" 02-aa-bb-cc-dd-ee "), mac);
        assert_eq!(parse_network_address("02:AA:BB:CC:DD:EE"), mac);
        for bad in [
            "",
            "0",
            "02AABBCCDDE",
            "02AABBCCDDEG",
            "+2AABBCCDDEE",
            "02 AA",
            "0-2AABBCCDDEE",
            "02--AA-BB-CC-DD-EE",
            "02AA-BB-CC-DD-EE",
        ] {
            assert_eq!(parse_network_address(bad), None, "{bad:?}");
        }
    }
}
