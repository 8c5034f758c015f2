//! Checks `meridian_shared::flags` against `flag_vectors.json`: MurmurHash3 and bucket
//! vectors computed by the Python `mmh3` package (Unleash's published `normalizedValue`
//! vectors among them), and whole-flag evaluations whose rollout answers the generator
//! derived from those hashes, not from this crate.
//!
//! The check itself is `meridian_shared::flags::vectors::check_vectors`, the same code the
//! flags page runs in the browser under wasm over the same (compiled-in) file.

use meridian_shared::flags::bucket;
use meridian_shared::flags::vectors::{check_vectors, Vectors};

const VECTORS: &str = include_str!("flag_vectors.json");

#[test]
fn the_file_covers_what_it_must() {
    let vectors: Vectors = serde_json::from_str(VECTORS).expect("flag_vectors.json parses");
    assert!(vectors.murmur3.len() >= 10);
    assert!(
        vectors.buckets.len() >= 200,
        "{} bucket vectors",
        vectors.buckets.len()
    );
    let buckets = &vectors.buckets;
    assert!(buckets.iter().any(|v| v.key.is_empty()) && buckets.iter().any(|v| v.group.is_empty()));
    assert!(buckets.iter().any(|v| !v.key.is_ascii()));
    assert!(vectors.evaluations.len() >= 20);
}

#[test]
fn every_vector_matches() {
    let report = check_vectors(VECTORS);
    assert!(
        report.all_pass(),
        "{}: {:#?}",
        report.summary(),
        report.failures
    );
    // Unleash's client specification.
    assert_eq!(bucket("gr1", "123"), 73);
    assert_eq!(bucket("groupX", "999"), 25);
}

#[test]
fn a_wrong_vector_is_reported() {
    let mut vectors: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    vectors["buckets"][0]["normalized"] = serde_json::json!(101);
    let report = check_vectors(&vectors.to_string());
    assert!(!report.all_pass());
    assert_eq!(report.passed + 1, report.total);
    assert!(
        report.failures[0].contains("bucket of group"),
        "{:?}",
        report.failures
    );
}
