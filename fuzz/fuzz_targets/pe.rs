//! `pe-check` on malformed PE files (mutations of real driver images).
//!
//! Properties: a malformed file is refused with a message, never a panic or an out-of-bounds
//! read; the PE checksum equals an independent implementation of `CheckSumMappedFile`'s sum; an
//! image with no violation really has the shape Windows requires of a kernel driver, each
//! fact checked here from the raw headers (read with plain offsets, not through `object`):
//! AMD64, NATIVE subsystem 10.0, FORCE_INTEGRITY, NX and DYNAMIC_BASE, a non-zero checksum
//! that matches, the entry point inside an executable section, no writable executable section.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pe_check::{DriverImage, pe_checksum};

fn le16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn le32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

/// `CheckSumMappedFile`: 16-bit words summed with end-around carry, the checksum field
/// skipped, plus the length.
fn reference_checksum(d: &[u8]) -> Option<u32> {
    let field = le32(d, 0x3C)? as usize + 4 + 20 + 64;
    if field + 4 > d.len() {
        return None;
    }
    let mut sum: u32 = 0;
    let mut at = 0;
    while at < d.len() {
        if at != field && at != field + 2 {
            let w = u32::from(d[at]) | u32::from(*d.get(at + 1).unwrap_or(&0)) << 8;
            sum += w;
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        at += 2;
    }
    Some(((sum & 0xFFFF) + (sum >> 16)).wrapping_add(d.len() as u32))
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(
        pe_checksum(data).ok(),
        reference_checksum(data),
        "PE checksum"
    );
    let image = match DriverImage::parse(data) {
        Ok(i) => i,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "a parse error without a message");
            return;
        }
    };
    assert_eq!(Some(image.checksum_computed), reference_checksum(data));
    let violations = image.kernel_driver_violations();
    for v in &violations {
        assert!(!v.0.is_empty());
    }
    if !violations.is_empty() {
        return;
    }
    // No violation: check the facts from the raw headers.
    let pe = le32(data, 0x3C).unwrap() as usize;
    assert_eq!(data.get(pe..pe + 4), Some(&b"PE\0\0"[..]));
    let fh = pe + 4;
    let oh = fh + 20;
    assert_eq!(le16(data, fh), Some(0x8664), "machine");
    assert_eq!(le16(data, oh), Some(0x20B), "PE32+");
    assert_eq!(le16(data, oh + 68), Some(1), "subsystem NATIVE");
    assert_eq!(
        (le16(data, oh + 48), le16(data, oh + 50)),
        (Some(10), Some(0)),
        "subsystem version"
    );
    let dll = le16(data, oh + 70).unwrap();
    assert_eq!(dll & 0x0080, 0x0080, "FORCE_INTEGRITY");
    assert_eq!(dll & 0x0100, 0x0100, "NX_COMPAT");
    assert_eq!(dll & 0x0040, 0x0040, "DYNAMIC_BASE");
    let stored = le32(data, oh + 64).unwrap();
    assert!(
        stored != 0 && Some(stored) == reference_checksum(data),
        "checksum"
    );
    let entry = le32(data, oh + 16).unwrap();
    let sections = usize::from(le16(data, fh + 2).unwrap());
    let table = oh + usize::from(le16(data, fh + 16).unwrap());
    let mut entry_in_code = false;
    for i in 0..sections {
        let s = table + 40 * i;
        let (vsize, rva, ch) = (
            le32(data, s + 8).unwrap(),
            le32(data, s + 12).unwrap(),
            le32(data, s + 36).unwrap(),
        );
        let exec = ch & (0x2000_0000 | 0x20) != 0;
        assert!(
            !(exec && ch & 0x8000_0000 != 0),
            "a writable executable section passed"
        );
        if exec && entry >= rva && u64::from(entry) < u64::from(rva) + u64::from(vsize.max(1)) {
            entry_in_code = true;
        }
    }
    assert!(
        entry_in_code || entry == 0,
        "the entry point {entry:#x} lies in no executable section"
    );
});
