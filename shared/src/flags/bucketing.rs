//! MurmurHash3 x86 32-bit, fed incrementally, and the buckets of rollouts: `"{group}:{key}"`
//! hashed with seed 0, `hash % 100 + 1`, the same numbers as Unleash (see the module
//! documentation of [`crate::flags`]).

use super::TOTAL_WEIGHT;
use serde_json::Number;

/// MurmurHash3 x86 32-bit (Austin Appleby's `MurmurHash3_x86_32`), fed incrementally:
/// `write` any number of times, then `finish`. Equal to hashing the concatenation.
#[derive(Debug, Clone, Copy)]
pub struct Murmur3 {
    h1: u32,
    /// Up to three bytes not yet in a 4-byte block, little-endian.
    tail: u32,
    tail_len: u32,
    len: u64,
}

impl Murmur3 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;

    pub const fn new(seed: u32) -> Murmur3 {
        Murmur3 {
            h1: seed,
            tail: 0,
            tail_len: 0,
            len: 0,
        }
    }

    #[inline]
    fn scramble(k1: u32) -> u32 {
        k1.wrapping_mul(Self::C1)
            .rotate_left(15)
            .wrapping_mul(Self::C2)
    }

    #[inline]
    fn block(&mut self, k1: u32) {
        self.h1 = Self::mix(self.h1, k1);
    }

    #[inline(always)]
    fn mix(h1: u32, k1: u32) -> u32 {
        (h1 ^ Self::scramble(k1))
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64)
    }

    #[inline]
    pub fn write(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        // Complete a pending partial block first.
        while self.tail_len != 0 {
            let Some((&byte, rest)) = bytes.split_first() else {
                return;
            };
            self.tail |= u32::from(byte) << (8 * self.tail_len);
            self.tail_len += 1;
            bytes = rest;
            if self.tail_len == 4 {
                self.block(self.tail);
                self.tail = 0;
                self.tail_len = 0;
            }
        }
        let mut blocks = bytes.chunks_exact(4);
        for block in &mut blocks {
            self.block(u32::from_le_bytes([block[0], block[1], block[2], block[3]]));
        }
        for &byte in blocks.remainder() {
            self.tail |= u32::from(byte) << (8 * self.tail_len);
            self.tail_len += 1;
        }
    }

    #[inline]
    pub fn finish(&self) -> u32 {
        Self::finalize(self.h1, self.tail, self.tail_len, self.len)
    }

    #[inline(always)]
    fn finalize(mut h1: u32, tail: u32, tail_len: u32, len: u64) -> u32 {
        if tail_len != 0 {
            h1 ^= Self::scramble(tail);
        }
        // The reference takes the length as a 32-bit int.
        h1 ^= len as u32;
        h1 ^= h1 >> 16;
        h1 = h1.wrapping_mul(0x85eb_ca6b);
        h1 ^= h1 >> 13;
        h1 = h1.wrapping_mul(0xc2b2_ae35);
        h1 ^ (h1 >> 16)
    }

    /// `write(bytes)` then `finish()`, without changing `self`: what a rollout does with
    /// the state after its group, once per evaluation. Specialised on the number of
    /// bytes waiting for a block, so that the blocks of `bytes` are read whole.
    #[inline]
    pub(super) fn finish_with(&self, bytes: &[u8]) -> u32 {
        match self.tail_len {
            0 => self.finish_after::<0>(bytes),
            1 => self.finish_after::<1>(bytes),
            2 => self.finish_after::<2>(bytes),
            _ => self.finish_after::<3>(bytes),
        }
    }

    /// [`finish_with`](Self::finish_with) when `PENDING` (`self.tail_len`) bytes wait.
    #[inline(always)]
    fn finish_after<const PENDING: u32>(&self, bytes: &[u8]) -> u32 {
        let len = self.len + bytes.len() as u64;
        let mut h1 = self.h1;
        let mut rest = bytes;
        if PENDING != 0 {
            let missing = (4 - PENDING) as usize;
            let Some((first, after)) = bytes.split_at_checked(missing) else {
                // Too few bytes to complete the pending block.
                let mut tail = self.tail;
                for (i, &byte) in bytes.iter().enumerate() {
                    tail |= u32::from(byte) << (8 * (PENDING as usize + i));
                }
                return Self::finalize(h1, tail, PENDING + bytes.len() as u32, len);
            };
            let mut block = self.tail;
            for (i, &byte) in first.iter().enumerate() {
                block |= u32::from(byte) << (8 * (PENDING as usize + i));
            }
            h1 = Self::mix(h1, block);
            rest = after;
        }
        let mut blocks = rest.chunks_exact(4);
        for block in &mut blocks {
            h1 = Self::mix(
                h1,
                u32::from_le_bytes([block[0], block[1], block[2], block[3]]),
            );
        }
        let mut tail = 0;
        let remainder = blocks.remainder();
        for (i, &byte) in remainder.iter().enumerate() {
            tail |= u32::from(byte) << (8 * i);
        }
        Self::finalize(h1, tail, remainder.len() as u32, len)
    }
}

/// MurmurHash3 x86 32-bit of `data`.
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    let mut hasher = Murmur3::new(seed);
    hasher.write(data);
    hasher.finish()
}

/// The hash a rollout buckets by: MurmurHash3 x86 32-bit, seed 0, of `"{group}:{key}"`.
#[inline]
pub fn bucket_hash(group: &str, key: &str) -> u32 {
    bucket_hash_bytes(group, key.as_bytes())
}

/// A key's bucket in a group, 1..=100: Unleash's `normalizedValue(key, group)`.
#[inline]
pub fn bucket(group: &str, key: &str) -> u8 {
    bucket_bytes(group, key.as_bytes())
}

/// The hash state after `"{group}:"`, seed 0.
#[inline]
pub(super) fn group_prefix(group: &str) -> Murmur3 {
    let mut hasher = Murmur3::new(0);
    hasher.write(group.as_bytes());
    hasher.write(b":");
    hasher
}

#[inline]
fn bucket_hash_bytes(group: &str, key: &[u8]) -> u32 {
    let mut hasher = group_prefix(group);
    hasher.write(key);
    hasher.finish()
}

#[inline]
fn bucket_bytes(group: &str, key: &[u8]) -> u8 {
    normalize(bucket_hash_bytes(group, key))
}

/// A hash's bucket, 1..=100.
#[inline]
pub(super) fn normalize(hash: u32) -> u8 {
    (hash % TOTAL_WEIGHT + 1) as u8
}

/// An integer's decimal digits, written into `buffer`; `None` for a non-integer.
pub(super) fn integer_digits<'b>(number: &Number, buffer: &'b mut [u8; 20]) -> Option<&'b [u8]> {
    let (negative, mut magnitude) = match number.as_u64() {
        Some(n) => (false, n),
        None => {
            let n = number.as_i64()?;
            (n < 0, n.unsigned_abs())
        }
    };
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if negative {
        at -= 1;
        buffer[at] = b'-';
    }
    Some(&buffer[at..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn murmur3_published_vectors() {
        assert_eq!(murmur3_x86_32(b"", 0), 0);
        assert_eq!(murmur3_x86_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_x86_32(b"", 0xffff_ffff), 0x81f1_6f39);
        assert_eq!(murmur3_x86_32(b"abc", 0), 0xb3dd_93fa);
        assert_eq!(
            murmur3_x86_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723
        );
        assert_eq!(murmur3_x86_32(&[0, 0, 0, 0], 0), 0x2362_f9de);
        // Unleash's client specification.
        assert_eq!(bucket("gr1", "123"), 73);
        assert_eq!(bucket("groupX", "999"), 25);
    }

    #[test]
    fn integer_bucket_keys_hash_as_their_digits() {
        for n in [0i64, 7, -7, 42, 1_234_567_890, i64::MAX, i64::MIN] {
            let mut buffer = [0u8; 20];
            let digits = integer_digits(&Number::from(n), &mut buffer).unwrap();
            assert_eq!(digits, n.to_string().as_bytes());
        }
        let mut buffer = [0u8; 20];
        let digits = integer_digits(&Number::from(u64::MAX), &mut buffer).unwrap();
        assert_eq!(digits, u64::MAX.to_string().as_bytes());
        assert!(integer_digits(&Number::from_f64(1.5).unwrap(), &mut buffer).is_none());
    }

    proptest! {
        #[test]
        fn incremental_murmur3_equals_one_shot(data in proptest::collection::vec(any::<u8>(), 0..64), cuts in proptest::collection::vec(0usize..64, 0..4), seed: u32) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut hasher = Murmur3::new(seed);
            let mut from = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                hasher.write(&data[from..cut]);
                from = cut;
            }
            prop_assert_eq!(hasher.finish(), murmur3_x86_32(&data, seed));
        }

        #[test]
        fn finish_with_equals_write_then_finish(prefix in proptest::collection::vec(any::<u8>(), 0..12), data in proptest::collection::vec(any::<u8>(), 0..24), seed: u32) {
            let mut hasher = Murmur3::new(seed);
            hasher.write(&prefix);
            let before = hasher;
            hasher.write(&data);
            prop_assert_eq!(before.finish_with(&data), hasher.finish());
            let joined: Vec<u8> = prefix.iter().chain(&data).copied().collect();
            prop_assert_eq!(before.finish_with(&data), murmur3_x86_32(&joined, seed));
        }

        #[test]
        fn buckets_are_1_to_100_and_match_the_hash(group in ".{0,12}", key in ".{0,24}") {
            let value = bucket(&group, &key);
            prop_assert!((1..=100).contains(&value));
            let joined = format!("{group}:{key}");
            prop_assert_eq!(bucket_hash(&group, &key), murmur3_x86_32(joined.as_bytes(), 0));
            prop_assert_eq!(u32::from(value), murmur3_x86_32(joined.as_bytes(), 0) % 100 + 1);
        }
    }
}
