//! One evaluation's view of its context: the distinct attribute names a flag reads
//! ([`AttributeTable`]) are found in one pass over the context ([`ContextView`]),
//! comparing each key's length and first and last 8 bytes ([`KeyPrint`]) rather than its
//! bytes one by one.

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
/// clause: a search compares several keys' bytes, the pass compares each context key's
/// [`KeyPrint`] with these.
#[derive(Debug, Clone, Default)]
pub(super) struct AttributeTable {
    names: Vec<Box<str>>,
    prints: Vec<KeyPrint>,
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
                self.prints.push(KeyPrint::of(name));
                self.lengths |= length_bit(name.len());
                self.names.len() - 1
            }
        }
    }
}

#[inline]
fn length_bit(len: usize) -> u64 {
    1 << (len % 64)
}

/// A key's length and its first and last 8 bytes: for keys up to 16 bytes, equal prints
/// mean equal keys; longer keys are compared in full when their prints are equal.
/// (`head` comes first: the derived `==` compares fields in order and stops at the
/// first difference.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyPrint {
    head: u64,
    len: usize,
    tail: u64,
}

impl KeyPrint {
    #[inline]
    fn of(key: &str) -> KeyPrint {
        let bytes = key.as_bytes();
        let len = bytes.len();
        let tail = if len > 8 { word(&bytes[len - 8..]) } else { 0 };
        KeyPrint {
            head: word(bytes),
            len,
            tail,
        }
    }

    #[inline]
    fn exact(&self) -> bool {
        self.len <= 16
    }
}

/// A word that, among byte strings of one length up to 8, is unique to each: the first 8
/// bytes; or, shorter, two overlapping 4-byte reads (as hashes such as wyhash read
/// short keys), or the first, middle and last bytes.
#[inline]
pub(super) fn word(bytes: &[u8]) -> u64 {
    let len = bytes.len();
    if let Some(head) = bytes.first_chunk::<8>() {
        u64::from_le_bytes(*head)
    } else if let (Some(low), Some(high)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        u64::from(u32::from_le_bytes(*low)) | u64::from(u32::from_le_bytes(*high)) << 32
    } else if let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) {
        u64::from(first) | u64::from(bytes[len / 2]) << 8 | u64::from(last) << 16
    } else {
        0
    }
}

/// Flags that read at most this many attributes find them in one pass over the context;
/// flags that read more search the context's map for each clause.
const ATTRIBUTE_SLOTS: usize = 16;
/// Contexts of up to this many attributes are scanned once; larger ones are searched once
/// for each attribute the flag reads.
const SCANNED_ATTRIBUTES: usize = 32;

/// One evaluation's view of its context: the flag's attributes, found on first use.
pub(super) struct ContextView<'f, 'c> {
    table: &'f AttributeTable,
    context: &'c EvaluationContext,
    slots: [Option<&'c Value>; ATTRIBUTE_SLOTS],
    resolved: bool,
}

impl<'f, 'c> ContextView<'f, 'c> {
    #[inline]
    pub(super) fn new(
        table: &'f AttributeTable,
        context: &'c EvaluationContext,
    ) -> ContextView<'f, 'c> {
        ContextView {
            table,
            context,
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
        if self.table.names.len() > ATTRIBUTE_SLOTS {
            let attributes = &self.context.attributes;
            return self
                .table
                .names
                .get(slot)
                .and_then(|name| attributes.get(&**name));
        }
        if !self.resolved {
            self.resolve();
        }
        self.slots.get(slot).copied().flatten()
    }

    #[inline(never)]
    fn resolve(&mut self) {
        self.resolved = true;
        let attributes = &self.context.attributes;
        let table = self.table;
        if attributes.len() > SCANNED_ATTRIBUTES {
            for (slot, name) in self.slots.iter_mut().zip(&table.names) {
                *slot = attributes.get(&**name);
            }
            return;
        }
        let mut missing = table.names.len();
        for (key, value) in attributes {
            if missing == 0 {
                break;
            }
            if table.lengths & length_bit(key.len()) == 0 {
                continue;
            }
            let print = KeyPrint::of(key);
            let found = match table.prints.iter().position(|known| *known == print) {
                Some(slot) if print.exact() => Some(slot),
                // Long names can share a print: compare them in full.
                Some(_) => table.names.iter().position(|name| **name == **key),
                None => None,
            };
            if let Some(slot) = found.and_then(|slot| self.slots.get_mut(slot)) {
                *slot = Some(value);
                missing -= 1;
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
        // Names sharing their first and last 8 bytes and their length: equal prints, so
        // the full names decide.
        let (a, b) = ("attribute_one_long_name", "attribute_two_long_name");
        assert_eq!(KeyPrint::of(a), KeyPrint::of(b));
        // Keys of every length up to 20 have distinct prints when they differ.
        for len in 0..=20 {
            let x: String = "x".repeat(len);
            for i in 0..len {
                let mut y = x.clone().into_bytes();
                y[i] = b'y';
                let y = String::from_utf8(y).unwrap();
                assert!(KeyPrint::of(&x) != KeyPrint::of(&y) || !KeyPrint::of(&x).exact());
            }
        }
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
                }
            }
        }
    }
}
