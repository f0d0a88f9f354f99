//! What must not compile (files named `itemNN_*` after the numbered items of the soundness issue:
//! each was safe code that compiled before): PASSIVE_LEVEL-only calls from ISR or DPC contexts,
//! outer tokens inside scopes that raise the IRQL, initialize-only calls elsewhere, forged or escaping
//! IRQL tokens, and reaching interrupt-shared state without the interrupt lock.

#[test]
fn irql_and_shared_state_misuse_is_rejected_by_the_compiler() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    // What a driver writes with the same types, which must keep compiling.
    t.pass("tests/ui-pass/*.rs");
}
