//! OID requests to vionet through the real dispatch (the emulator's NDIS builds the
//! `NDIS_OID_REQUEST`, the framework's `MiniportOidRequest` trampoline decodes it, vionet's
//! handlers and the framework's general OIDs answer): queries and sets of every OID the
//! adapter lists in `OID_GEN_SUPPORTED_LIST` (and, now and then, any other number), with any
//! buffer length and contents, pended requests cancelled or completed.
//!
//! Properties: the emulator's verifier finds nothing (no write past the information buffer,
//! `BytesWritten`/`BytesRead` within it, one completion per request); a request fails with a
//! length status only while saying how much it needs (more than it was given); a query's
//! answer fits its buffer; a set that succeeded reads back byte-exact for the OIDs whose value
//! is what was set (packet filter, multicast list, VLAN ID, lookahead); an unsupported OID is
//! refused as such; afterwards the adapter still pauses, halts and unloads with nothing leaked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ndis_rs_fuzz::Input;
use ndis_rs_fuzz::nic::Nic;
use ndis_sys as sys;

/// OIDs whose query returns what a successful set stored.
const READ_BACK: [u32; 4] = [
    sys::OID_GEN_CURRENT_PACKET_FILTER,
    sys::OID_802_3_MULTICAST_LIST,
    sys::OID_GEN_VLAN_ID,
    sys::OID_GEN_CURRENT_LOOKAHEAD,
];

fn length_status(s: sys::NDIS_STATUS) -> bool {
    s == sys::NDIS_STATUS_BUFFER_TOO_SHORT || s == sys::NDIS_STATUS_INVALID_LENGTH
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let nic = Nic::start(&[], |_| {});
    let list = nic
        .emu
        .oid_query(nic.adapter, sys::OID_GEN_SUPPORTED_LIST, 4096);
    assert_eq!(list.status, sys::NDIS_STATUS_SUCCESS);
    let supported: Vec<u32> = list
        .data
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(!supported.is_empty());

    for _ in 0..16 {
        if input.is_empty() {
            break;
        }
        let pick = input.u8();
        let oid = if pick == 0xFF {
            input.u32()
        } else {
            supported[usize::from(pick) % supported.len()]
        };
        let query = input.bool();
        let cancel = input.bool();
        let length = usize::from(input.u16() % 1024);
        let bytes = input.bytes(length).to_vec();
        let mut r = if query {
            nic.emu
                .oid_query_with(nic.adapter, oid, &bytes, length.max(bytes.len()))
        } else {
            nic.emu.oid_set(nic.adapter, oid, &bytes)
        };
        if r.status == sys::NDIS_STATUS_PENDING {
            if cancel {
                nic.emu.cancel_oid();
            }
            r = nic
                .emu
                .oid_completion()
                .expect("a pended request completes");
            assert_ne!(r.status, sys::NDIS_STATUS_PENDING);
        }
        let given = if query {
            length.max(bytes.len())
        } else {
            bytes.len()
        };
        if length_status(r.status) {
            assert!(
                r.bytes_needed as usize > given,
                "OID {oid:#x} ({}) refused {given} bytes but needs {}",
                if query { "query" } else { "set" },
                r.bytes_needed
            );
        }
        if query {
            assert!(
                r.data.len() <= given,
                "OID {oid:#x} answered past its buffer"
            );
        } else {
            assert!(r.bytes_read as usize <= given);
        }
        if !supported.contains(&oid) && pick == 0xFF {
            assert!(
                r.status == sys::NDIS_STATUS_NOT_SUPPORTED
                    || r.status == sys::NDIS_STATUS_INVALID_OID
                    || r.status == sys::NDIS_STATUS_SUCCESS
                        && query
                        && oid == sys::OID_GEN_SUPPORTED_LIST,
                "unlisted OID {oid:#x}: {:#x}",
                r.status
            );
        }
        if !query && r.status == sys::NDIS_STATUS_SUCCESS && READ_BACK.contains(&oid) {
            let back = nic.emu.oid_query(nic.adapter, oid, 4096);
            assert_eq!(
                back.status,
                sys::NDIS_STATUS_SUCCESS,
                "OID {oid:#x} set but not queried"
            );
            let read = r.bytes_read as usize;
            assert_eq!(
                back.data,
                bytes[..read],
                "OID {oid:#x} reads back other bytes than were set"
            );
        }
    }
    nic.stop();
});
