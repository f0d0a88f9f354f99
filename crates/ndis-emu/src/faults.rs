//! Fault injection: make any fallible call fail, by position or by name.
//!
//! Every export that can fail on Windows asks [`Faults::should_fail`] first. A plan fails the Nth
//! fallible call overall (what [`crate::sweep_fallible_calls`] iterates over) or every / the Nth
//! call of one named export. The log of fallible calls a run made is kept, so a sweep can say which
//! call site it failed.

/// Which calls to fail.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// Fail the Nth fallible call of the run (1-based), whatever its name.
    pub nth_fallible_call: Option<u64>,
    /// Fail calls of this export: every call (`None`) or its Nth call (1-based).
    pub by_name: Vec<(String, Option<u64>)>,
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub plan: FaultPlan,
    /// Every fallible call made so far, in order, and whether it was failed.
    pub log: Vec<(&'static str, bool)>,
    /// Calls made so far per name (so that a call costs a lookup, not a scan of the log: a
    /// long datapath run makes millions).
    pub per_name: std::collections::HashMap<&'static str, u64>,
}

impl Faults {
    pub fn should_fail(&mut self, name: &'static str) -> bool {
        let index = self.log.len() as u64 + 1;
        let nth_of_name = {
            let count = self.per_name.entry(name).or_default();
            *count += 1;
            *count
        };
        let fail = self.plan.nth_fallible_call == Some(index)
            || self
                .plan
                .by_name
                .iter()
                .any(|(n, when)| n == name && when.is_none_or(|k| k == nth_of_name));
        self.log.push((name, fail));
        fail
    }
}
