//! What must not compile: PASSIVE_LEVEL-only calls from ISR or DPC contexts, forged or escaping
//! IRQL tokens, and reaching interrupt-shared state without the interrupt lock.

#[test]
fn irql_and_shared_state_misuse_is_rejected_by_the_compiler() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
