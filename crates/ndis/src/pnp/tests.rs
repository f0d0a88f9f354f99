use alloc::vec;
use alloc::vec::Vec;

use super::*;

const TOKEN: u32 = sys::CM_RESOURCE_INTERRUPT_MESSAGE_TOKEN;

fn memory() -> [u8; DESCRIPTOR] {
    let mut d = [0u8; DESCRIPTOR];
    d[D_TYPE] = sys::CmResourceTypeMemory;
    d[D_U..D_U + 4].copy_from_slice(&0x1000u32.to_le_bytes());
    d
}

fn message(vectors: u32) -> [u8; DESCRIPTOR] {
    let mut d = [0u8; DESCRIPTOR];
    d[D_TYPE] = sys::CmResourceTypeInterrupt;
    let flags = sys::CM_RESOURCE_INTERRUPT_MESSAGE | sys::CM_RESOURCE_INTERRUPT_LATCHED;
    d[D_FLAGS..D_FLAGS + 2].copy_from_slice(&flags.to_le_bytes());
    d[I_MIN..I_MIN + 4].copy_from_slice(&(TOKEN - (vectors - 1)).to_le_bytes());
    d[I_MAX..I_MAX + 4].copy_from_slice(&TOKEN.to_le_bytes());
    d
}

fn line() -> [u8; DESCRIPTOR] {
    let mut d = [0u8; DESCRIPTOR];
    d[D_OPTION] = sys::IO_RESOURCE_ALTERNATIVE;
    d[D_TYPE] = sys::CmResourceTypeInterrupt;
    d[I_MIN..I_MIN + 4].copy_from_slice(&0x50u32.to_le_bytes());
    d[I_MAX..I_MAX + 4].copy_from_slice(&0x50u32.to_le_bytes());
    d
}

fn list(alternatives: &[&[[u8; DESCRIPTOR]]]) -> Vec<u8> {
    let mut b = vec![0u8; sys::IO_RESOURCE_REQUIREMENTS_LIST_HEADER];
    b[4..8].copy_from_slice(&5u32.to_le_bytes()); // PCIBus
    b[R_ALTERNATIVES..R_ALTERNATIVES + 4]
        .copy_from_slice(&(alternatives.len() as u32).to_le_bytes());
    for descriptors in alternatives {
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&(descriptors.len() as u32).to_le_bytes());
        for d in *descriptors {
            b.extend_from_slice(d);
        }
    }
    let size = b.len() as u32;
    b[..4].copy_from_slice(&size.to_le_bytes());
    b
}

/// The descriptors of alternative `which` of `b`.
fn descriptors(b: &[u8], which: usize) -> Vec<[u8; DESCRIPTOR]> {
    let (at, n) = alternatives(b).unwrap().nth(which).unwrap();
    (0..n)
        .map(|i| {
            b[at + sys::IO_RESOURCE_LIST_HEADER + i * DESCRIPTOR..][..DESCRIPTOR]
                .try_into()
                .unwrap()
        })
        .collect()
}

fn filtered(old: &[u8], request: &InterruptRequest, processors: u32) -> Vec<u8> {
    let size = rewrite(old, request, processors, None).unwrap();
    let mut out = vec![0u8; size];
    assert_eq!(
        rewrite(old, request, processors, Some(&mut out)),
        Some(size)
    );
    assert_eq!(u32_at(&out, 0), Some(size as u32), "ListSize");
    out
}

fn targets(d: &[u8]) -> u64 {
    u64::from_le_bytes(d[I_TARGETS..I_TARGETS + 8].try_into().unwrap())
}

#[test]
fn messages_are_replaced_by_the_request_each_pinned_where_it_says() {
    let old = list(&[&[memory(), message(1), message(1), message(1), line()]]);
    assert_eq!(offered_messages(&old), Some(3));
    let request = InterruptRequest::messages(5, MessageAffinity::Spread { per_processor: 2 });
    let new = filtered(&old, &request, 4);
    let d = descriptors(&new, 0);
    assert_eq!(d.len(), 1 + 5 + 1);
    assert_eq!(d[0], memory());
    for (m, want) in [1u64, 1, 2, 2, 4].into_iter().enumerate() {
        let msg = &d[1 + m];
        assert!(is_message(msg));
        assert_eq!(messages_of(msg), Some(1));
        assert_eq!(
            u16_at(msg, I_POLICY),
            Some(sys::IrqPolicySpecifiedProcessors)
        );
        assert_ne!(
            u16_at(msg, D_FLAGS).unwrap() & sys::CM_RESOURCE_INTERRUPT_POLICY_INCLUDED,
            0
        );
        assert_eq!(targets(msg), want, "message {m}");
    }
    assert_eq!(d[6], line(), "the line alternative stays");
    assert_eq!(offered_messages(&new), Some(5));
}

#[test]
fn fewer_messages_than_offered_and_the_platform_policy() {
    // PCI 2.2 MSI: one descriptor covering 8 vectors.
    let old = list(&[&[message(8), memory()]]);
    assert_eq!(offered_messages(&old), Some(8));
    let new = filtered(
        &old,
        &InterruptRequest::messages(2, MessageAffinity::Platform),
        4,
    );
    let d = descriptors(&new, 0);
    assert_eq!(d.len(), 3);
    assert_eq!(u16_at(&d[0], I_POLICY), Some(sys::IrqPolicyMachineDefault));
    assert_eq!(targets(&d[0]), 0);
    assert_eq!(d[2], memory());
}

#[test]
fn a_line_request_removes_every_message_and_makes_the_line_the_requirement() {
    let old = list(&[&[message(1), message(1), line(), memory()]]);
    let new = filtered(&old, &InterruptRequest::line(), 2);
    let d = descriptors(&new, 0);
    assert_eq!(d.len(), 2);
    assert_eq!(d[0][D_TYPE], sys::CmResourceTypeInterrupt);
    assert_eq!(d[0][D_OPTION] & sys::IO_RESOURCE_ALTERNATIVE, 0);
    assert_eq!(d[1], memory());
    assert_eq!(offered_messages(&new), Some(0));
}

#[test]
fn every_alternative_is_rewritten_and_one_without_messages_is_kept() {
    let old = list(&[&[memory(), message(1), line()], &[memory(), line()]]);
    let request = InterruptRequest::messages(3, MessageAffinity::Map(|m| 3 - m));
    let new = filtered(&old, &request, 8);
    let first = descriptors(&new, 0);
    assert_eq!(first.len(), 5);
    assert_eq!(
        first[1..4].iter().map(|d| targets(d)).collect::<Vec<_>>(),
        [8, 4, 2]
    );
    assert_eq!(descriptors(&new, 1), [memory(), line()]);
}

#[test]
fn malformed_lists_are_refused() {
    let mut old = list(&[&[memory(), message(1)]]);
    // A descriptor count past the end of the list.
    let count = sys::IO_RESOURCE_REQUIREMENTS_LIST_HEADER + L_COUNT;
    old[count..count + 4].copy_from_slice(&3u32.to_le_bytes());
    assert_eq!(offered_messages(&old), None);
    assert_eq!(rewrite(&old, &InterruptRequest::line(), 1, None), None);
    // More alternatives than the bytes hold.
    let mut old = list(&[&[memory()]]);
    old[R_ALTERNATIVES..R_ALTERNATIVES + 4].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(offered_messages(&old), None);
    // A message descriptor whose range is upside down.
    let mut bad = message(1);
    bad[I_MIN..I_MIN + 4].copy_from_slice(&TOKEN.to_le_bytes());
    bad[I_MAX..I_MAX + 4].copy_from_slice(&(TOKEN - 4).to_le_bytes());
    assert_eq!(offered_messages(&list(&[&[bad]])), None);
}

#[test]
fn requests_are_clamped_and_processors_wrap() {
    assert_eq!(
        InterruptRequest::messages(5000, MessageAffinity::Platform).message_count(),
        MAX_MESSAGES
    );
    assert_eq!(
        InterruptRequest::messages(0, MessageAffinity::Platform).message_count(),
        1
    );
    assert_eq!(InterruptRequest::line().message_count(), 0);
    let spread = InterruptRequest::messages(9, MessageAffinity::Spread { per_processor: 2 });
    assert_eq!(spread.processor_of(7, 4), Some(3));
    assert_eq!(spread.processor_of(8, 4), Some(0));
    assert_eq!(spread.processor_of(8, 3), Some(1));
    assert_eq!(InterruptRequest::line().processor_of(0, 4), None);
}
