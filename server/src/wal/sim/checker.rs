//! The linearizability checker for the register workload: Wing and Gong's search with
//! Lowe's memoization, as Knossos and Porcupine do it.
//!
//! A history is cut per key (a register per key: linearizability is compositional),
//! and for each key a depth-first search picks which operation takes effect next: any
//! pending operation that no other pending operation returned before (real-time
//! order). A write sets the register; a read must return what the register holds. The
//! search remembers each (set of operations done, register value) it has failed from,
//! so no state is explored twice.
//!
//! Outcomes: an operation that returned `Ok` took effect between its invocation and
//! its return. One whose outcome is unknown (timed out, its node crashed) may take
//! effect at any point after its invocation, or never: it never blocks another and the
//! search succeeds without it. A failed one had no effect and is left out, as is a read
//! of unknown outcome (it tells nothing). An unknown write nobody read is left out too:
//! with no read between it and the next write it can always be assumed not to have
//! happened.
//!
//! Times are positions in one global order of events (a counter the workload bumps at
//! every invocation and return), so "returned before" is exact even when simulated time
//! stands still.

use std::collections::{BTreeMap, BTreeSet, HashSet};

/// What a client asked of one key's register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Write(String),
    /// A read, and the value it returned (`None`: the key was absent).
    Read(Option<String>),
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It returned at this event.
    Ok { returned: u64 },
    /// It surely had no effect.
    Failed,
    /// Nobody knows: it may take effect any time after its invocation, or never.
    Unknown,
}

/// One operation of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub action: Action,
    /// Its invocation's position in the global order of events.
    pub invoked: u64,
    pub outcome: Outcome,
    /// Simulated milliseconds at invocation and end, for people reading a failure.
    pub invoked_ms: u64,
    pub ended_ms: u64,
}

/// The checker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order of this key's operations explains what its reads returned.
    NotLinearizable {
        key: String,
    },
    /// The search gave up on this key after its budget of states.
    Inconclusive {
        key: String,
    },
}

/// States one key's search may visit before it gives up.
pub const DEFAULT_BUDGET: u64 = 2_000_000;

/// Checks `history` key by key.
pub fn check(history: &[Operation], budget: u64) -> Verdict {
    let mut keys: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for operation in history {
        keys.entry(&operation.key).or_default().push(operation);
    }
    let mut inconclusive = None;
    for (key, operations) in keys {
        match KeySearch::new(&operations, budget).run() {
            Some(true) => {}
            Some(false) => {
                return Verdict::NotLinearizable {
                    key: key.to_owned(),
                }
            }
            None => inconclusive = inconclusive.or(Some(key.to_owned())),
        }
    }
    match inconclusive {
        Some(key) => Verdict::Inconclusive { key },
        None => Verdict::Linearizable,
    }
}

/// One operation as the search sees it: values are numbered (0 is "absent").
#[derive(Clone, Copy, Debug)]
struct Step {
    invoked: u64,
    /// `u64::MAX` when the outcome is unknown.
    returned: u64,
    write: Option<u32>,
    read: Option<u32>,
}

struct KeySearch {
    /// Sorted by invocation.
    steps: Vec<Step>,
    required: usize,
    seen: HashSet<(Vec<u64>, u32)>,
    budget: u64,
}

impl KeySearch {
    fn new(operations: &[&Operation], budget: u64) -> KeySearch {
        let read_values: BTreeSet<&str> = operations
            .iter()
            .filter(|op| matches!(op.outcome, Outcome::Ok { .. }))
            .filter_map(|op| match &op.action {
                Action::Read(Some(value)) => Some(value.as_str()),
                _ => None,
            })
            .collect();
        let mut numbers: BTreeMap<String, u32> = BTreeMap::new();
        let mut number = |value: &Option<String>| match value {
            None => 0,
            Some(value) => {
                let next = numbers.len() as u32 + 1;
                *numbers.entry(value.clone()).or_insert(next)
            }
        };
        let mut steps = Vec::new();
        for op in operations {
            let returned = match (op.outcome, &op.action) {
                (Outcome::Failed, _) | (Outcome::Unknown, Action::Read(_)) => continue,
                (Outcome::Unknown, Action::Write(value))
                    if !read_values.contains(value.as_str()) =>
                {
                    continue
                }
                (Outcome::Unknown, _) => u64::MAX,
                (Outcome::Ok { returned }, _) => returned,
            };
            let (write, read) = match &op.action {
                Action::Write(value) => (Some(number(&Some(value.clone()))), None),
                Action::Read(value) => (None, Some(number(value))),
            };
            steps.push(Step {
                invoked: op.invoked,
                returned,
                write,
                read,
            });
        }
        steps.sort_by_key(|step| step.invoked);
        let required = steps.iter().filter(|s| s.returned != u64::MAX).count();
        KeySearch {
            steps,
            required,
            seen: HashSet::new(),
            budget,
        }
    }

    /// `Some(linearizable)`, or `None` when the budget ran out.
    fn run(mut self) -> Option<bool> {
        let mut done = vec![0u64; self.steps.len().div_ceil(64)];
        self.search(&mut done, 0, self.required)
    }

    fn search(&mut self, done: &mut Vec<u64>, register: u32, required: usize) -> Option<bool> {
        if required == 0 {
            return Some(true);
        }
        if !self.seen.insert((done.clone(), register)) {
            return Some(false);
        }
        if self.seen.len() as u64 > self.budget {
            return None;
        }
        let is_done = |done: &[u64], i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        let first_return = (0..self.steps.len())
            .filter(|&i| !is_done(done, i))
            .map(|i| self.steps[i].returned)
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..self.steps.len() {
            let step = self.steps[i];
            if step.invoked > first_return {
                break;
            }
            if is_done(done, i) {
                continue;
            }
            let next = match (step.write, step.read) {
                (Some(value), _) => value,
                (None, Some(value)) if value == register => register,
                _ => continue,
            };
            done[i / 64] |= 1 << (i % 64);
            let left = required - usize::from(step.returned != u64::MAX);
            let found = self.search(done, next, left);
            done[i / 64] &= !(1 << (i % 64));
            match found {
                Some(false) => {}
                other => return other,
            }
        }
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An operation on key "x" from `invoked` to `returned` (`None`: unknown).
    fn op(action: Action, invoked: u64, returned: Option<u64>) -> Operation {
        Operation {
            client: 0,
            key: "x".into(),
            action,
            invoked,
            outcome: match returned {
                Some(returned) => Outcome::Ok { returned },
                None => Outcome::Unknown,
            },
            invoked_ms: invoked,
            ended_ms: returned.unwrap_or(invoked),
        }
    }

    fn write(value: &str, invoked: u64, returned: Option<u64>) -> Operation {
        op(Action::Write(value.into()), invoked, returned)
    }

    fn read(value: Option<&str>, invoked: u64, returned: u64) -> Operation {
        op(
            Action::Read(value.map(str::to_owned)),
            invoked,
            Some(returned),
        )
    }

    fn verdict(history: &[Operation]) -> Verdict {
        check(history, DEFAULT_BUDGET)
    }

    const NOT: fn() -> Verdict = || Verdict::NotLinearizable { key: "x".into() };

    #[test]
    fn a_sequential_history_is_linearizable() {
        let history = [
            read(None, 0, 1),
            write("a", 2, Some(3)),
            read(Some("a"), 4, 5),
            write("b", 6, Some(7)),
            read(Some("b"), 8, 9),
        ];
        assert_eq!(verdict(&history), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_is_not() {
        let history = [
            write("a", 0, Some(1)),
            write("b", 2, Some(3)),
            read(Some("a"), 4, 5),
        ];
        assert_eq!(verdict(&history), NOT());
    }

    #[test]
    fn a_read_of_a_value_not_yet_written_is_not() {
        let history = [read(Some("a"), 0, 1), write("a", 2, Some(3))];
        assert_eq!(verdict(&history), NOT());
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        for seen in [None, Some("a")] {
            let history = [write("a", 0, Some(3)), read(seen, 1, 2)];
            assert_eq!(verdict(&history), Verdict::Linearizable, "{seen:?}");
        }
    }

    #[test]
    fn two_reads_cannot_see_two_writes_in_both_orders() {
        let history = [
            write("a", 0, Some(10)),
            write("b", 1, Some(11)),
            read(Some("b"), 12, 13),
            read(Some("a"), 14, 15),
        ];
        assert_eq!(verdict(&history), NOT());
        let concurrent = [
            write("a", 0, Some(20)),
            write("b", 1, Some(21)),
            read(Some("b"), 12, 13),
            read(Some("a"), 14, 15),
        ];
        assert_eq!(verdict(&concurrent), Verdict::Linearizable);
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        let late = [
            write("a", 0, None),
            read(None, 5, 6),
            read(Some("a"), 100, 101),
        ];
        assert_eq!(verdict(&late), Verdict::Linearizable);
        let never = [
            write("a", 0, Some(1)),
            write("b", 2, None),
            read(Some("a"), 3, 4),
            read(Some("a"), 5, 6),
        ];
        assert_eq!(verdict(&never), Verdict::Linearizable);
    }

    #[test]
    fn an_unknown_write_cannot_take_effect_before_it_was_invoked() {
        let history = [read(Some("a"), 0, 1), write("a", 2, None)];
        assert_eq!(verdict(&history), NOT());
    }

    #[test]
    fn an_unknown_write_takes_effect_once() {
        let history = [
            write("a", 0, None),
            write("b", 1, Some(2)),
            read(Some("a"), 3, 4),
            read(Some("b"), 5, 6),
        ];
        assert_eq!(verdict(&history), NOT());
    }

    #[test]
    fn failed_operations_and_unknown_reads_are_left_out() {
        let mut failed = write("a", 0, Some(1));
        failed.outcome = Outcome::Failed;
        let mut unknown_read = read(Some("zzz"), 2, 3);
        unknown_read.outcome = Outcome::Unknown;
        let history = [failed, unknown_read, read(None, 4, 5)];
        assert_eq!(verdict(&history), Verdict::Linearizable);
    }

    #[test]
    fn keys_are_checked_apart() {
        let mut other = read(None, 2, 3);
        other.key = "y".into();
        let history = [write("a", 0, Some(1)), other, read(Some("a"), 4, 5)];
        assert_eq!(verdict(&history), Verdict::Linearizable);
    }

    #[test]
    fn a_search_over_its_budget_is_inconclusive() {
        let mut history: Vec<Operation> = (0..12)
            .map(|i| write(&format!("v{i}"), i, Some(100 + i)))
            .collect();
        history.push(read(Some("nothing-wrote-this"), 200, 201));
        assert_eq!(
            check(&history, 50),
            Verdict::Inconclusive { key: "x".into() }
        );
        assert_eq!(verdict(&history), NOT());
    }
}
