//! The evaluator's test vectors (`shared/tests/flag_vectors.json`, made by the Python
//! `mmh3` package with `shared/tests/gen_flag_vectors.py`) and their check, run by the
//! native tests and, in the browser, by the flags page under wasm: both run this code
//! over the same file.

use serde::Deserialize;
use serde_json::Value;

use crate::flags::{
    bucket, bucket_hash, murmur3_x86_32, CompiledFlag, ErrorCode, EvaluationContext, FlagConfig,
    Murmur3, Reason, Segment, Segments,
};

#[derive(Debug, Deserialize)]
pub struct Vectors {
    pub murmur3: Vec<MurmurVector>,
    pub buckets: Vec<BucketVector>,
    pub evaluations: Vec<EvaluationVector>,
}

#[derive(Debug, Deserialize)]
pub struct MurmurVector {
    pub input: String,
    pub seed: u32,
    pub hash: u32,
}

#[derive(Debug, Deserialize)]
pub struct BucketVector {
    pub group: String,
    pub key: String,
    pub hash: u32,
    pub normalized: u8,
}

#[derive(Debug, Deserialize)]
pub struct EvaluationVector {
    pub name: String,
    pub flag: FlagConfig,
    pub segments: Vec<Segment>,
    pub context: EvaluationContext,
    pub expected: Expected,
}

#[derive(Debug, Deserialize)]
pub struct Expected {
    pub variant: String,
    pub reason: Reason,
    pub value: Value,
    pub rule_index: Option<usize>,
    pub bucket: Option<u8>,
    pub error_code: Option<ErrorCode>,
}

/// What the vectors said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VectorReport {
    /// Vectors in the file (MurmurHash3, buckets, whole-flag evaluations).
    pub total: usize,
    pub passed: usize,
    /// What failed, one sentence each.
    pub failures: Vec<String>,
}

impl VectorReport {
    pub fn all_pass(&self) -> bool {
        self.total > 0 && self.passed == self.total && self.failures.is_empty()
    }

    /// "Evaluator check: 308/308 vectors match".
    pub fn summary(&self) -> String {
        if self.total == 0 {
            return "Evaluator check: the vectors could not be read".to_owned();
        }
        format!(
            "Evaluator check: {}/{} vectors match",
            self.passed, self.total
        )
    }
}

/// Runs the checks of `shared/tests/flag_vectors.rs` over `json`: each MurmurHash3
/// vector whole and fed byte by byte, each bucket's hash and normalised value, Unleash's
/// two published buckets, and each whole-flag evaluation (compiled and one-shot, every
/// field of the answer).
pub fn check_vectors(json: &str) -> VectorReport {
    let vectors: Vectors = match serde_json::from_str(json) {
        Ok(vectors) => vectors,
        Err(error) => {
            return VectorReport {
                failures: vec![format!("the vectors do not parse: {error}")],
                ..VectorReport::default()
            }
        }
    };
    let mut report = VectorReport::default();
    let mut check = |ok: Result<(), String>| {
        report.total += 1;
        match ok {
            Ok(()) => report.passed += 1,
            Err(why) => report.failures.push(why),
        }
    };
    for vector in &vectors.murmur3 {
        check(murmur_vector(vector));
    }
    for vector in &vectors.buckets {
        check(bucket_vector(vector));
    }
    for vector in &vectors.evaluations {
        check(evaluation_vector(vector));
    }
    // Unleash's client specification (not counted: the file has them too).
    for (group, key, expected) in [("gr1", "123", 73), ("groupX", "999", 25)] {
        let got = bucket(group, key);
        if got != expected {
            report.failures.push(format!(
                "Unleash's bucket of {group}:{key} is {expected}, got {got}"
            ));
        }
    }
    report
}

fn murmur_vector(vector: &MurmurVector) -> Result<(), String> {
    let data = vector.input.as_bytes();
    let whole = murmur3_x86_32(data, vector.seed);
    let mut hasher = Murmur3::new(vector.seed);
    for byte in data {
        hasher.write(std::slice::from_ref(byte));
    }
    let bytewise = hasher.finish();
    if whole == vector.hash && bytewise == vector.hash {
        Ok(())
    } else {
        Err(format!(
            "murmur3 of {:?} seed {}: expected {}, got {whole} ({bytewise} byte by byte)",
            vector.input, vector.seed, vector.hash
        ))
    }
}

fn bucket_vector(vector: &BucketVector) -> Result<(), String> {
    let hash = bucket_hash(&vector.group, &vector.key);
    let normalized = bucket(&vector.group, &vector.key);
    if hash == vector.hash && normalized == vector.normalized {
        Ok(())
    } else {
        Err(format!(
            "bucket of group {:?} key {:?}: expected {} ({}), got {normalized} ({hash})",
            vector.group, vector.key, vector.normalized, vector.hash
        ))
    }
}

fn evaluation_vector(vector: &EvaluationVector) -> Result<(), String> {
    let name = &vector.name;
    let segments: Segments = vector.segments.iter().cloned().collect();
    let flag = CompiledFlag::compile(&vector.flag, &segments)
        .map_err(|error| format!("{name}: does not compile: {error}"))?;
    let answer = flag.evaluate(&vector.context);
    let expected = &vector.expected;
    let mut wrong = Vec::new();
    if answer.variant != expected.variant {
        wrong.push(format!("variant {:?}", answer.variant));
    }
    if answer.reason != expected.reason {
        wrong.push(format!("reason {}", answer.reason));
    }
    if answer.value != &expected.value {
        wrong.push(format!("value {}", answer.value));
    }
    if answer.rule_index != expected.rule_index {
        wrong.push(format!("rule_index {:?}", answer.rule_index));
    }
    if answer.bucket != expected.bucket {
        wrong.push(format!("bucket {:?}", answer.bucket));
    }
    if answer.error_code != expected.error_code {
        wrong.push(format!("error_code {:?}", answer.error_code));
    }
    let owned = crate::flags::evaluate(&vector.flag, &segments, &vector.context);
    if owned != answer.into_owned() {
        wrong.push("evaluate() disagrees with the compiled flag".to_owned());
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{name}: {}", wrong.join(", ")))
    }
}
