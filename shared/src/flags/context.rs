//! One evaluation's view of its context: the distinct attribute names a flag reads
//! ([`AttributeTable`]) are found in one pass over the context ([`ContextView`]), each
//! context key looked up among them by its print ([`NameIndex`]) rather than compared
//! with each name byte by byte. A context evaluated against many flags is hashed once
//! instead ([`PreparedContext`]); each flag then looks its names up in it, by the prints
//! and hashes computed when the flag was compiled.

use super::print::{KeyPrint, NameIndex};
use super::EvaluationContext;
use serde_json::Value;

#[derive(Debug, Clone, Copy)]
pub(super) enum Attribute {
    TargetingKey,
    /// An index into the flag's [`AttributeTable`].
    Named(usize),
}

/// The distinct attribute names a flag reads. An evaluation finds them all in one pass
/// over the context ([`ContextView`]) instead of searching the context's map for each
/// clause: a search compares several keys' bytes, the pass looks each context key up in
/// a [`NameIndex`] of these names.
#[derive(Debug, Clone, Default)]
pub(super) struct AttributeTable {
    names: Vec<Box<str>>,
    /// The names, to their slots; `None` until the first name, and for more names than
    /// [`ATTRIBUTE_SLOTS`] (the evaluation then searches the context's map).
    index: Option<NameIndex>,
    /// Bit `len % 64` set for the length of each name: most context keys that are not
    /// names are skipped on their length alone.
    lengths: u64,
}

impl AttributeTable {
    pub(super) fn slot(&mut self, name: &str) -> usize {
        match self.names.iter().position(|known| **known == *name) {
            Some(slot) => slot,
            None => {
                self.names.push(name.into());
                self.lengths |= length_bit(name.len());
                self.index = NameIndex::new(&self.names);
                self.names.len() - 1
            }
        }
    }
}

#[inline(always)]
fn length_bit(len: usize) -> u64 {
    1 << (len % 64)
}

/// Flags that read at most this many attributes find them in one pass over the context;
/// flags that read more search the context's map for each clause.
const ATTRIBUTE_SLOTS: usize = NameIndex::CAPACITY;
/// Contexts of up to this many attributes are scanned once; larger ones are searched once
/// for each attribute the flag reads.
const SCANNED_ATTRIBUTES: usize = 32;

/// A context made ready to be evaluated against many flags (a request's context against
/// every flag, as OFREP's bulk evaluation does): its attributes hashed by name once, into
/// a table that each flag searches with its names' prints and hashes, computed when the
/// flag was compiled. [`CompiledFlag::evaluate_prepared`] gives the same answer as
/// [`CompiledFlag::evaluate`] on the context; preparing costs about one evaluation's
/// pass over the context and one allocation.
///
/// [`CompiledFlag::evaluate_prepared`]: super::CompiledFlag::evaluate_prepared
/// [`CompiledFlag::evaluate`]: super::CompiledFlag::evaluate
#[derive(Debug, Clone)]
pub struct PreparedContext<'c> {
    context: &'c EvaluationContext,
    /// Open addressing, linear probing, at most half full.
    entries: Box<[Option<PreparedEntry<'c>>]>,
    /// 64 minus log2 of the table's size: a hash's top bits are its bucket.
    shift: u32,
}

#[derive(Debug, Clone, Copy)]
struct PreparedEntry<'c> {
    print: KeyPrint,
    key: &'c str,
    value: &'c Value,
}

impl<'c> PreparedContext<'c> {
    pub fn new(context: &'c EvaluationContext) -> PreparedContext<'c> {
        let bits = (context.attributes.len() * 2)
            .next_power_of_two()
            .trailing_zeros()
            .max(2);
        let mut entries = vec![None; 1 << bits].into_boxed_slice();
        let mask = entries.len() - 1;
        let shift = 64 - bits;
        for (key, value) in &context.attributes {
            let print = KeyPrint::of(key.as_bytes());
            let mut bucket = (print.hash(key.as_bytes()) >> shift) as usize;
            while let Some(Some(_)) = entries.get(bucket) {
                bucket = (bucket + 1) & mask;
            }
            if let Some(entry) = entries.get_mut(bucket) {
                *entry = Some(PreparedEntry { print, key, value });
            }
        }
        PreparedContext {
            context,
            entries,
            shift,
        }
    }

    /// The context this was prepared from.
    pub fn context(&self) -> &'c EvaluationContext {
        self.context
    }

    /// The attribute `name`, whose print and hash these are.
    #[inline(always)]
    fn get(&self, name: &str, print: KeyPrint, hash: u64) -> Option<&'c Value> {
        let mask = self.entries.len() - 1;
        let mut bucket = (hash >> self.shift) as usize;
        loop {
            let entry = (*self.entries.get(bucket)?)?;
            if entry.print == print && (print.exact() || entry.key == name) {
                return Some(entry.value);
            }
            bucket = (bucket + 1) & mask;
        }
    }
}

/// One evaluation's view of its context: the flag's attributes, found on first use.
pub(super) struct ContextView<'f, 'c> {
    table: &'f AttributeTable,
    context: &'c EvaluationContext,
    /// The context, hashed: the names are looked up in it rather than its keys among them.
    prepared: Option<&'f PreparedContext<'c>>,
    slots: [Option<&'c Value>; ATTRIBUTE_SLOTS],
    resolved: bool,
}

impl<'f, 'c> ContextView<'f, 'c> {
    /// A view of `context`, looked up in `prepared` (made from `context`) when given.
    #[inline]
    pub(super) fn new(
        table: &'f AttributeTable,
        context: &'c EvaluationContext,
        prepared: Option<&'f PreparedContext<'c>>,
    ) -> ContextView<'f, 'c> {
        ContextView {
            table,
            context,
            prepared,
            slots: [None; ATTRIBUTE_SLOTS],
            resolved: false,
        }
    }

    #[inline]
    pub(super) fn targeting_key(&self) -> Option<&'c str> {
        self.context.targeting_key.as_deref()
    }

    /// The attribute in the table's `slot`; `None` when the context lacks it.
    #[inline(always)]
    pub(super) fn get(&mut self, slot: usize) -> Option<&'c Value> {
        if !self.resolved {
            self.resolve();
        }
        match self.slots.get(slot) {
            Some(value) if self.table.index.is_some() => *value,
            _ => self
                .table
                .names
                .get(slot)
                .and_then(|name| self.context.attributes.get(&**name)),
        }
    }

    #[inline(never)]
    fn resolve(&mut self) {
        self.resolved = true;
        let attributes = &self.context.attributes;
        let table = self.table;
        let Some(index) = &table.index else {
            return;
        };
        if let Some(prepared) = self.prepared {
            for (slot, (name, print, hash)) in self.slots.iter_mut().zip(index.keys()) {
                *slot = prepared.get(name, print, hash);
            }
            return;
        }
        if attributes.len() > SCANNED_ATTRIBUTES {
            for (slot, name) in self.slots.iter_mut().zip(&table.names) {
                *slot = attributes.get(&**name);
            }
            return;
        }
        let mut missing = index.len();
        for (key, value) in attributes {
            if table.lengths & length_bit(key.len()) == 0 {
                continue;
            }
            if let Some(slot) = index.get(key).and_then(|slot| self.slots.get_mut(slot)) {
                *slot = Some(value);
                missing -= 1;
                if missing == 0 {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::test_support::*;
    use serde_json::json;

    #[test]
    fn attributes_are_found_whatever_the_sizes() {
        // Names sharing their length and first and last 8 bytes: equal prints, so the
        // full names decide.
        let (a, b) = ("attribute_one_long_name", "attribute_two_long_name");
        // A flag reading `names` attributes; rule i matches when attribute i equals "v".
        let flag_with = |names: &[String]| {
            let rules: Vec<Value> = names
                .iter()
                .map(|name| {
                    json!({"clauses": [clause(name, "equals", json!(["v"]))],
                           "serve": {"variation": "on"}})
                })
                .collect();
            let mut flag = rule_flag(json!([]));
            flag["rules"] = json!(rules);
            compile(flag)
        };
        let many: Vec<String> = (0..40).map(|i| format!("attr-{i}")).collect();
        for flag_names in [
            &many[..3],
            &many[..ATTRIBUTE_SLOTS],
            &many[..],
            &[a.to_owned(), b.to_owned()][..],
        ] {
            let flag = flag_with(flag_names);
            for context_size in [0, 1, 5, SCANNED_ATTRIBUTES, 40] {
                for (index, target) in flag_names.iter().enumerate() {
                    // The context holds `context_size` decoys (every name's value but the
                    // target's is not "v"), and the target.
                    let mut ctx = EvaluationContext::new("k");
                    let pair = [a.to_owned(), b.to_owned()];
                    for name in pair.iter().chain(&many).take(context_size) {
                        ctx = ctx.with(name.as_str(), "not v");
                    }
                    ctx = ctx.with(target.as_str(), "v");
                    let answer = flag.evaluate(&ctx);
                    assert_eq!(
                        answer.rule_index,
                        Some(index),
                        "{} names, {context_size} attributes, target {target}",
                        flag_names.len()
                    );
                    let prepared = PreparedContext::new(&ctx);
                    assert_eq!(flag.evaluate_prepared(&prepared), answer);
                }
            }
        }
    }
}
