//! Feature flags: the configuration's wire types, its validation, and the one evaluation
//! that the server, the Rust SDK and the browser all run, so that a context gets the same
//! answer wherever it is evaluated.
//!
//! A [`Flag`] has a kind (boolean, string, number or JSON), named [`Variation`]s, and one
//! [`FlagEnvironmentConfig`] per environment ([`ENVIRONMENTS`]). One environment's view of a
//! flag is a [`FlagConfig`]. [`CompiledFlag::compile`] validates it against the
//! [`Segments`] it names and turns it into a form that evaluates without allocating;
//! [`CompiledFlag::evaluate`] answers for an [`EvaluationContext`] (OpenFeature's
//! `targetingKey` plus attributes). The `Ofrep*` types carry answers over the OpenFeature
//! Remote Evaluation Protocol.
//!
//! # Evaluation, in order
//!
//! 1. `killed` (the kill switch): the off variation, reason `DISABLED`. It overrides
//!    everything else, `enabled` and every rule included.
//! 2. `enabled: false`: the off variation, reason `DISABLED`.
//! 3. The rules, in order: the first whose clauses all match serves its [`Serve`], reason
//!    `TARGETING_MATCH`, with `rule_index` (and `bucket` when it serves a rollout).
//! 4. Otherwise `default_serve`: reason `SPLIT` if it is a rollout; `STATIC` if it is a
//!    fixed variation and the flag has no rules (the answer cannot depend on the context);
//!    `DEFAULT` otherwise.
//!
//! Evaluation never panics. It fails (reason `ERROR`, value `null`, no variant: the caller
//! serves its own default, as OpenFeature does) only when a rollout must bucket a context
//! that lacks the bucketing attribute: `TARGETING_KEY_MISSING` when that is the targeting
//! key (absent or empty), `INVALID_CONTEXT` for another attribute that is absent or
//! neither a non-empty string nor an integer. An invalid configuration never evaluates:
//! [`CompiledFlag::compile`] refuses it, and [`evaluate`] answers `PARSE_ERROR`.
//!
//! # Clauses
//!
//! A rule matches when all its clauses do. A clause reads one attribute (`targetingKey`
//! names the targeting key; other names are top-level context attributes) and tests it
//! with its operator against its `values`:
//! - a missing attribute, or `null`, makes every clause false, the negative operators
//!   (`not_equals`, `not_in`) included;
//! - an array attribute matches a positive operator if any element does, and a negative
//!   one if no element matches its positive counterpart;
//! - `equals`/`not_equals` take one value, `in`/`not_in` one or more, compared as JSON
//!   scalars: numbers by value (`1` equals `1.0`), and a string never equals a number;
//! - `contains`/`starts_with`/`ends_with` take one or more strings (any may match) and
//!   match only string attributes;
//! - `case_insensitive` (string operators only) compares both sides lowercased;
//! - `lt`/`lte`/`gt`/`gte` take a number; the attribute is a number or a string that
//!   parses as a finite one (`"42"`);
//! - `semver_eq`/`lt`/`lte`/`gt`/`gte` take a semantic version, parsed strictly per
//!   semver.org 2.0.0 (`1.2` and `v1.2.3` are not versions) and compared by precedence:
//!   pre-releases below their release, identifiers numerically or in ASCII order, build
//!   metadata ignored. An attribute that is not a version fails the clause;
//! - `in_segment`/`not_in_segment` take segment keys and ignore `attribute`: the context
//!   is in any of those segments / in none of them.
//!
//! A [`Segment`] contains a context whose targeting key is `included`; otherwise not if
//! it is `excluded`; otherwise if any of the segment's rules (clauses, all of which must
//! match) matches. Segments cannot refer to segments. Segments carry no environment: the
//! server keeps one [`Segments`] set per environment if it needs to.
//!
//! # Bucketing (the same numbers as Unleash)
//!
//! A rollout hashes the UTF-8 bytes of `"{group}:{key}"` with MurmurHash3 x86 32-bit,
//! seed 0, and takes `hash % 100 + 1`: a bucket in 1..=100 (Unleash's `normalizedValue`).
//! The key is the `bucket_by` attribute (default the targeting key; an integer hashes as
//! its decimal digits); the group is `group` (default the flag key). Weights are whole
//! percents that sum to 100, laid end to end in order: the first variation owns buckets
//! 1..=w1, the second w1+1..=w1+w2, and so on. So raising the first variation's weight
//! (10% → 20%) keeps everyone who had it; any change moves only the buckets between the
//! old and the new boundaries. Rollouts that share a group put a context in the same
//! bucket (correlated rollouts); a new group reshuffles everyone.
//!
//! MurmurHash3 is written here rather than taken from the `murmur3` crate: it is 40
//! lines, and ours hashes incrementally (group, `:`, key, with no string built) without
//! `std::io::Read`. The test vectors in `shared/tests/flag_vectors.json` come from the
//! Python `mmh3` package.
//!
//! # Speed
//!
//! A [`CompiledFlag`] holds everything pre-parsed: variation indices, numbers, semantic
//! versions, lowercased string lists (past [`SMALL_SET`] entries, in a hash table of the
//! strings' prints: length and first and last 8 bytes), the segments it names, the hash
//! state after each rollout's group, and the distinct attribute names its clauses read,
//! indexed by their prints. An evaluation finds those attributes in one pass over the
//! context (each key looked up in that index by its print, not compared with each name;
//! the pass stops once all are found), borrows its answer from the compiled flag
//! ([`EvaluationRef`]), and allocates nothing, with one exception: a case-insensitive
//! `equals`/`in`/`contains` on a non-ASCII attribute, or one longer than 128 bytes,
//! lowercases it into a `String`. A context evaluated against many flags can be
//! prepared once ([`PreparedContext`]: its attributes hashed by name, one allocation);
//! [`CompiledFlag::evaluate_prepared`] then looks each of the flag's names up in it by the
//! print and hash computed at compilation, instead of passing over the context. The
//! bench (`benches/flags.rs`) has the figures, against Unleash's engine. Recompile a flag
//! when it, or a segment it names, changes.

mod bucketing;
mod clause;
mod compiled;
mod context;
mod evaluation;
mod ofrep;
mod print;
#[cfg(test)]
mod reference;
mod semver;
#[cfg(test)]
mod test_support;
mod types;
mod validation;

pub mod admin;
pub mod vectors;

pub use bucketing::{bucket, bucket_hash, murmur3_x86_32, Murmur3};
pub use compiled::CompiledFlag;
pub use context::PreparedContext;
pub use evaluation::{evaluate, Evaluation, EvaluationRef};
pub use ofrep::{
    ErrorCode, EvaluationContext, FlagMetadataValue, OfrepBulkEvaluationFailure,
    OfrepBulkEvaluationSuccess, OfrepEvaluationFailure, OfrepEvaluationRequest,
    OfrepEvaluationSuccess, OfrepFlagResult, Reason,
};
pub use semver::Semver;
pub use types::{
    Clause, Flag, FlagConfig, FlagEnvironmentConfig, FlagKind, Operator, Rollout, Rule, Segment,
    SegmentRule, Segments, Serve, Variation, WeightedVariation,
};
pub use validation::ValidationError;

/// The attribute name that means the context's targeting key.
pub const TARGETING_KEY: &str = "targetingKey";
/// The environments every deployment has (a flag may have more).
pub const ENVIRONMENTS: [&str; 2] = ["development", "production"];
/// The longest flag key, segment key or environment name, in bytes.
pub const MAX_KEY_LEN: usize = 128;
/// Rollout weights are whole percents that sum to this.
pub const TOTAL_WEIGHT: u32 = 100;
/// String lists up to this long are scanned; longer ones are hashed.
pub const SMALL_SET: usize = 8;
