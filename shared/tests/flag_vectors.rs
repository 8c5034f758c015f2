//! Checks `meridian_shared::flags` against `flag_vectors.json`: MurmurHash3 and bucket
//! vectors computed by the Python `mmh3` package (Unleash's published `normalizedValue`
//! vectors among them), and whole-flag evaluations whose rollout answers the generator
//! derived from those hashes, not from this crate.
//!
//! The file is compiled in (`include_str!`), so the same test runs where there is no file
//! system: the browser build runs it under wasm.

use meridian_shared::flags::{
    bucket, bucket_hash, murmur3_x86_32, CompiledFlag, ErrorCode, EvaluationContext, FlagConfig,
    Murmur3, Reason, Segment, Segments,
};
use serde::Deserialize;
use serde_json::Value;

const VECTORS: &str = include_str!("flag_vectors.json");

#[derive(Deserialize)]
struct Vectors {
    murmur3: Vec<MurmurVector>,
    buckets: Vec<BucketVector>,
    evaluations: Vec<EvaluationVector>,
}

#[derive(Deserialize)]
struct MurmurVector {
    input: String,
    seed: u32,
    hash: u32,
}

#[derive(Deserialize)]
struct BucketVector {
    group: String,
    key: String,
    hash: u32,
    normalized: u8,
}

#[derive(Deserialize)]
struct EvaluationVector {
    name: String,
    flag: FlagConfig,
    segments: Vec<Segment>,
    context: EvaluationContext,
    expected: Expected,
}

#[derive(Deserialize)]
struct Expected {
    variant: String,
    reason: Reason,
    value: Value,
    rule_index: Option<usize>,
    bucket: Option<u8>,
    error_code: Option<ErrorCode>,
}

fn vectors() -> Vectors {
    serde_json::from_str(VECTORS).expect("flag_vectors.json parses")
}

#[test]
fn murmur3_matches_mmh3() {
    let vectors = vectors().murmur3;
    assert!(vectors.len() >= 10);
    for vector in &vectors {
        let data = vector.input.as_bytes();
        assert_eq!(
            murmur3_x86_32(data, vector.seed),
            vector.hash,
            "{:?} seed {}",
            vector.input,
            vector.seed
        );
        // Fed one byte at a time, the hash is the same.
        let mut hasher = Murmur3::new(vector.seed);
        for byte in data {
            hasher.write(std::slice::from_ref(byte));
        }
        assert_eq!(hasher.finish(), vector.hash, "{:?} bytewise", vector.input);
    }
}

#[test]
fn buckets_match_unleash_normalized_value() {
    let vectors = vectors().buckets;
    assert!(vectors.len() >= 200, "{} bucket vectors", vectors.len());
    assert!(vectors.iter().any(|v| v.key.is_empty()) && vectors.iter().any(|v| v.group.is_empty()));
    assert!(vectors.iter().any(|v| !v.key.is_ascii()));
    for vector in &vectors {
        let what = format!("group {:?}, key {:?}", vector.group, vector.key);
        assert_eq!(
            bucket_hash(&vector.group, &vector.key),
            vector.hash,
            "{what}"
        );
        assert_eq!(
            bucket(&vector.group, &vector.key),
            vector.normalized,
            "{what}"
        );
    }
    // Unleash's client specification.
    assert_eq!(bucket("gr1", "123"), 73);
    assert_eq!(bucket("groupX", "999"), 25);
}

#[test]
fn whole_flag_evaluations() {
    let vectors = vectors().evaluations;
    assert!(vectors.len() >= 20);
    for vector in &vectors {
        let segments: Segments = vector.segments.iter().cloned().collect();
        let flag = CompiledFlag::compile(&vector.flag, &segments)
            .unwrap_or_else(|error| panic!("{}: {error}", vector.name));
        let answer = flag.evaluate(&vector.context);
        let expected = &vector.expected;
        let name = &vector.name;
        assert_eq!(answer.variant, expected.variant, "{name}: variant");
        assert_eq!(answer.reason, expected.reason, "{name}: reason");
        assert_eq!(answer.value, &expected.value, "{name}: value");
        assert_eq!(answer.rule_index, expected.rule_index, "{name}: rule_index");
        assert_eq!(answer.bucket, expected.bucket, "{name}: bucket");
        assert_eq!(answer.error_code, expected.error_code, "{name}: error_code");
        // The one-shot path agrees with the compiled one.
        let owned = meridian_shared::flags::evaluate(&vector.flag, &segments, &vector.context);
        assert_eq!(owned, answer.into_owned(), "{name}: evaluate()");
    }
}
