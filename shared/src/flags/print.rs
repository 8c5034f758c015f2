//! Finding a string among a fixed few without comparing bytes one by one: a
//! [`PrintMap`] hashes each string's [`KeyPrint`] (its length and first and last 8
//! bytes, which for strings up to 16 bytes is the string itself) into an open-addressing
//! table built when the flag is compiled. The evaluator looks up context keys in its
//! attribute names with it, and attribute values in long `in` lists.

/// A string's length and its first and last 8 bytes: for strings up to 16 bytes, equal
/// prints mean equal strings; longer strings are compared in full when their prints are
/// equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeyPrint {
    head: u64,
    tail: u64,
    len: usize,
}

impl KeyPrint {
    #[inline(always)]
    pub(super) fn of(key: &[u8]) -> KeyPrint {
        let len = key.len();
        let tail = match key.last_chunk::<8>() {
            Some(last) if len > 8 => u64::from_le_bytes(*last),
            _ => 0,
        };
        KeyPrint {
            head: word(key),
            tail,
            len,
        }
    }

    /// Whether equal prints mean equal strings.
    #[inline(always)]
    pub(super) fn exact(&self) -> bool {
        self.len <= 16
    }

    /// A 64-bit hash of the string `bytes` (whose print this is), whose top bits are its
    /// bucket in a table: from the print for strings up to 16 bytes, from every byte
    /// for longer ones, so that long strings that share their ends do not crowd one
    /// bucket.
    #[inline(always)]
    pub(super) fn hash(&self, bytes: &[u8]) -> u64 {
        let hash = if self.exact() {
            (self.head ^ self.tail.rotate_left(29)).wrapping_add(self.len as u64)
        } else {
            long_hash(bytes)
        };
        hash.wrapping_mul(K0)
    }
}

/// A word that, among byte strings of one length up to 8, is unique to each: the first 8
/// bytes; or, shorter, two overlapping 4-byte reads (as hashes such as wyhash read
/// short keys), or the first, middle and last bytes.
#[inline(always)]
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

/// Strings to their indices: an open-addressing table (linear probing, at most half
/// full) of the strings' prints. Strings up to 16 bytes hash by their print; longer ones
/// by all their bytes, so that long strings that share their ends do not crowd one
/// bucket.
#[derive(Debug, Clone)]
pub(super) struct PrintMap {
    /// A power of two, at least twice the number of strings.
    entries: Box<[Entry]>,
    /// 64 minus log2 of the table's size: a hash's top bits are its bucket.
    shift: u32,
    /// The strings, by index, for comparing long ones in full.
    strings: Box<[Box<str>]>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    print: KeyPrint,
    /// The string's index; [`Entry::EMPTY`] for an empty bucket.
    index: usize,
}

impl Entry {
    const EMPTY: usize = usize::MAX;
}

/// Odd 64-bit constants with well-spread bits (from the golden ratio and from wyhash).
const K0: u64 = 0x9e37_79b9_7f4a_7c15;
const K1: u64 = 0xa076_1d64_78bd_642f;

impl PrintMap {
    /// A map of `strings` (distinct) to their positions.
    pub(super) fn new(strings: Vec<Box<str>>) -> PrintMap {
        let bits = (strings.len() * 2)
            .next_power_of_two()
            .trailing_zeros()
            .max(2);
        let empty = Entry {
            print: KeyPrint::of(b""),
            index: Entry::EMPTY,
        };
        let mut map = PrintMap {
            entries: vec![empty; 1 << bits].into_boxed_slice(),
            shift: 64 - bits,
            strings: Box::default(),
        };
        let mask = map.entries.len() - 1;
        for (index, string) in strings.iter().enumerate() {
            let print = KeyPrint::of(string.as_bytes());
            let mut bucket = map.bucket(string.as_bytes(), print);
            while map.entries[bucket].index != Entry::EMPTY {
                bucket = (bucket + 1) & mask;
            }
            map.entries[bucket] = Entry { print, index };
        }
        map.strings = strings.into_boxed_slice();
        map
    }

    /// Whether `key` is one of the strings.
    #[inline(never)]
    pub(super) fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The index of `key`, if it is one of the strings.
    #[inline(always)]
    pub(super) fn get(&self, key: &str) -> Option<usize> {
        let bytes = key.as_bytes();
        let print = KeyPrint::of(bytes);
        let mask = self.entries.len() - 1;
        let mut bucket = self.bucket(bytes, print);
        loop {
            let entry = self.entries.get(bucket)?;
            if entry.index == Entry::EMPTY {
                return None;
            }
            if entry.print == print
                && (print.exact()
                    || self
                        .strings
                        .get(entry.index)
                        .is_some_and(|string| **string == *key))
            {
                return Some(entry.index);
            }
            bucket = (bucket + 1) & mask;
        }
    }

    #[inline(always)]
    fn bucket(&self, bytes: &[u8], print: KeyPrint) -> usize {
        (print.hash(bytes) >> self.shift) as usize
    }
}

/// Up to [`NameIndex::CAPACITY`] distinct strings (a flag's attribute names) to their
/// indices, held in the flag itself: the [`PrintMap`] scheme with one-byte buckets and
/// the prints side by side, so that looking a context key up reads one or two cache
/// lines and follows no pointer.
#[derive(Debug, Clone)]
pub(super) struct NameIndex {
    /// Each bucket's index plus one; 0 for an empty bucket. At least half are empty.
    buckets: [u8; NameIndex::BUCKETS],
    heads: [u64; NameIndex::CAPACITY],
    tails: [u64; NameIndex::CAPACITY],
    lens: [usize; NameIndex::CAPACITY],
    /// The strings, by index, for comparing long ones in full.
    strings: Box<[Box<str>]>,
    /// Each string's print and hash, by index: what a [`PreparedContext`] is searched
    /// with.
    ///
    /// [`PreparedContext`]: super::PreparedContext
    keys: Box<[(KeyPrint, u64)]>,
}

impl NameIndex {
    pub(super) const CAPACITY: usize = 16;
    const BUCKETS: usize = 2 * NameIndex::CAPACITY;

    /// An index of `strings` (distinct); `None` for more than [`Self::CAPACITY`].
    pub(super) fn new(strings: &[Box<str>]) -> Option<NameIndex> {
        if strings.len() > Self::CAPACITY {
            return None;
        }
        let mut index = NameIndex {
            buckets: [0; Self::BUCKETS],
            heads: [0; Self::CAPACITY],
            tails: [0; Self::CAPACITY],
            lens: [0; Self::CAPACITY],
            strings: strings.into(),
            keys: strings
                .iter()
                .map(|string| {
                    let print = KeyPrint::of(string.as_bytes());
                    (print, print.hash(string.as_bytes()))
                })
                .collect(),
        };
        for (slot, string) in strings.iter().enumerate() {
            let print = KeyPrint::of(string.as_bytes());
            index.heads[slot] = print.head;
            index.tails[slot] = print.tail;
            index.lens[slot] = print.len;
            let mut bucket = Self::bucket(print.head, print.len);
            while index.buckets[bucket] != 0 {
                bucket = (bucket + 1) % Self::BUCKETS;
            }
            index.buckets[bucket] = slot as u8 + 1;
        }
        Some(index)
    }

    pub(super) fn len(&self) -> usize {
        self.strings.len()
    }

    /// Each string with its print and hash, by index.
    pub(super) fn keys(&self) -> impl Iterator<Item = (&str, KeyPrint, u64)> {
        self.strings
            .iter()
            .zip(&self.keys)
            .map(|(string, &(print, hash))| (&**string, print, hash))
    }

    /// The index of `key`, if it is one of the strings. Buckets go by length and first
    /// 8 bytes only, so that a key up to 8 bytes long is found without reading more.
    #[inline(always)]
    pub(super) fn get(&self, key: &str) -> Option<usize> {
        let bytes = key.as_bytes();
        let (head, len) = (word(bytes), bytes.len());
        let mut bucket = Self::bucket(head, len);
        loop {
            let entry = usize::from(self.buckets[bucket % Self::BUCKETS]);
            let slot = entry.checked_sub(1)? % Self::CAPACITY;
            if self.heads[slot] == head && self.lens[slot] == len {
                let tail = match bytes.last_chunk::<8>() {
                    Some(last) if len > 8 => u64::from_le_bytes(*last),
                    _ => 0,
                };
                if self.tails[slot] == tail
                    && (len <= 16
                        || self
                            .strings
                            .get(slot)
                            .is_some_and(|string| **string == *key))
                {
                    return Some(slot);
                }
            }
            bucket += 1;
        }
    }

    #[inline(always)]
    fn bucket(head: u64, len: usize) -> usize {
        ((head ^ len as u64).wrapping_mul(K0) >> (64 - Self::BUCKETS.trailing_zeros())) as usize
    }
}

/// All the bytes of a string longer than 16, 8 at a time (multiply-rotate, as Firefox's
/// and rustc's FxHash). The tables are built from configuration, which a context cannot
/// change, so a keyed (DoS-resistant) hash buys nothing here.
fn long_hash(bytes: &[u8]) -> u64 {
    let mut hash = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        hash = (hash.rotate_left(5) ^ word(chunk)).wrapping_mul(K1);
    }
    let rest = words.remainder();
    (hash.rotate_left(5) ^ word(rest) ^ (rest.len() as u64) << 59).wrapping_mul(K1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prints_tell_short_strings_apart() {
        // Names sharing their first and last 8 bytes and their length: equal prints.
        let (a, b) = (b"attribute_one_long_name", b"attribute_two_long_name");
        assert_eq!(KeyPrint::of(a), KeyPrint::of(b));
        // Strings of every length up to 20 have distinct prints when they differ.
        for len in 0..=20 {
            let x = vec![b'x'; len];
            for i in 0..len {
                let mut y = x.clone();
                y[i] = b'y';
                assert!(KeyPrint::of(&x) != KeyPrint::of(&y) || !KeyPrint::of(&x).exact());
            }
        }
    }

    proptest! {
        #[test]
        fn print_maps_and_name_indices_find_exactly_their_strings(
            strings in prop::collection::btree_set("[ab]{0,3}|[a-c]{0,20}|x{8}[ab]{3}x{8}", 0..40),
            probes in prop::collection::vec("[ab]{0,3}|[a-c]{0,20}|x{8}[ab]{3}x{8}", 0..40),
        ) {
            let strings: Vec<Box<str>> = strings.into_iter().map(Box::from).collect();
            let map = PrintMap::new(strings.clone());
            for (index, string) in strings.iter().enumerate() {
                prop_assert_eq!(map.get(string), Some(index));
            }
            for probe in &probes {
                let expected = strings.iter().position(|s| **s == **probe);
                prop_assert_eq!(map.get(probe), expected);
            }
            let index = NameIndex::new(&strings);
            prop_assert_eq!(index.is_some(), strings.len() <= NameIndex::CAPACITY);
            if let Some(index) = index {
                prop_assert_eq!(index.len(), strings.len());
                for (slot, string) in strings.iter().enumerate() {
                    prop_assert_eq!(index.get(string), Some(slot));
                }
                for probe in &probes {
                    let expected = strings.iter().position(|s| **s == **probe);
                    prop_assert_eq!(index.get(probe), expected);
                }
            }
        }
    }
}
