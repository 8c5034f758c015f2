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
//! versions, lowercased string lists (in hash sets past [`SMALL_SET`] entries), the
//! segments it names, and the distinct attribute names its clauses read. An evaluation
//! finds those attributes in one pass over the context (comparing each key's length and
//! first and last 8 bytes, not its bytes one by one, and stopping once all are found),
//! borrows its answer from the compiled flag ([`EvaluationRef`]), and allocates nothing,
//! with one exception: a case-insensitive `equals`/`in`/`contains` on a non-ASCII
//! attribute, or one longer than 128 bytes, lowercases it into a `String`. The bench
//! (`benches/flags.rs`) has the figures. Recompile a flag when it, or a segment it names,
//! changes.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

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

// ---------------------------------------------------------------------------------------
// Wire types: the admin API
// ---------------------------------------------------------------------------------------

/// What a flag serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    Boolean,
    String,
    Number,
    /// A JSON object or array.
    Json,
}

impl FlagKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagKind::Boolean => "boolean",
            FlagKind::String => "string",
            FlagKind::Number => "number",
            FlagKind::Json => "json",
        }
    }

    /// Whether a flag of this kind can serve `value`.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            FlagKind::Boolean => value.is_boolean(),
            FlagKind::String => value.is_string(),
            FlagKind::Number => value.is_number(),
            FlagKind::Json => value.is_object() || value.is_array(),
        }
    }

    fn values_noun(self) -> &'static str {
        match self {
            FlagKind::Boolean => "booleans",
            FlagKind::String => "strings",
            FlagKind::Number => "numbers",
            FlagKind::Json => "JSON objects or arrays",
        }
    }
}

impl fmt::Display for FlagKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One value a flag can serve, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Variation {
    /// Unique within the flag; rules, rollouts and OFREP's `variant` use it.
    pub name: String,
    /// Of the flag's kind.
    pub value: Value,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A flag, with its configuration in every environment (`/api/flags`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Flag {
    /// Unique; the OFREP path's `{key}`.
    pub key: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub kind: FlagKind,
    pub variations: Vec<Variation>,
    /// By environment name (`development`, `production`, ...).
    pub environments: BTreeMap<String, FlagEnvironmentConfig>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A flag's behaviour in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlagEnvironmentConfig {
    /// Off: everyone gets `off_variation`.
    pub enabled: bool,
    /// The kill switch: everyone gets `off_variation`, whatever `enabled` and the rules say.
    #[serde(default)]
    pub killed: bool,
    pub off_variation: String,
    /// What a context that no rule matches gets (the fallthrough).
    pub default_serve: Serve,
    /// Tried in order; the first that matches serves.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One environment's view of a flag: everything evaluation needs, and what the server
/// sends SDKs that evaluate locally. `environment`'s fields sit beside `key`, `kind` and
/// `variations` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlagConfig {
    pub key: String,
    pub kind: FlagKind,
    pub variations: Vec<Variation>,
    #[serde(flatten)]
    pub environment: FlagEnvironmentConfig,
}

/// A targeting rule: when all `clauses` match, serve `serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rule {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// At least one.
    pub clauses: Vec<Clause>,
    pub serve: Serve,
}

/// One test of a context attribute (see the module documentation for each operator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Clause {
    /// `targetingKey` or an attribute's name; empty for the segment operators.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub attribute: String,
    pub operator: Operator,
    #[serde(default)]
    pub values: Vec<Value>,
    /// String operators only: compare lowercased.
    #[serde(default, skip_serializing_if = "is_false")]
    pub case_insensitive: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A clause's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    Lt,
    Lte,
    Gt,
    Gte,
    SemverEq,
    SemverLt,
    SemverLte,
    SemverGt,
    SemverGte,
    InSegment,
    NotInSegment,
}

impl Operator {
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "equals",
            Operator::NotEquals => "not_equals",
            Operator::In => "in",
            Operator::NotIn => "not_in",
            Operator::Contains => "contains",
            Operator::StartsWith => "starts_with",
            Operator::EndsWith => "ends_with",
            Operator::Lt => "lt",
            Operator::Lte => "lte",
            Operator::Gt => "gt",
            Operator::Gte => "gte",
            Operator::SemverEq => "semver_eq",
            Operator::SemverLt => "semver_lt",
            Operator::SemverLte => "semver_lte",
            Operator::SemverGt => "semver_gt",
            Operator::SemverGte => "semver_gte",
            Operator::InSegment => "in_segment",
            Operator::NotInSegment => "not_in_segment",
        }
    }

    /// The operators that `case_insensitive` applies to.
    pub fn compares_strings(self) -> bool {
        matches!(
            self,
            Operator::Equals
                | Operator::NotEquals
                | Operator::In
                | Operator::NotIn
                | Operator::Contains
                | Operator::StartsWith
                | Operator::EndsWith
        )
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule (or the default) serves: `{"variation": "on"}` or `{"rollout": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Serve {
    /// Everyone gets this variation.
    Variation(String),
    /// A percentage rollout.
    Rollout(Rollout),
}

/// A percentage rollout: variations with weights, by bucket (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rollout {
    /// In order: the first owns the lowest buckets. Weights sum to 100.
    pub variations: Vec<WeightedVariation>,
    /// The attribute hashed into the bucket; `targetingKey` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_by: Option<String>,
    /// Hashed with the key; the flag's key when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// One variation's share of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WeightedVariation {
    pub variation: String,
    /// Whole percents, 0 to 100.
    pub weight: u32,
}

/// A reusable set of contexts (`/api/segments`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Segment {
    /// Unique; `in_segment` clauses name it.
    pub key: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Targeting keys that are always in (this wins over `excluded`).
    #[serde(default)]
    pub included: Vec<String>,
    /// Targeting keys that are never in, whatever the rules say.
    #[serde(default)]
    pub excluded: Vec<String>,
    /// A context is in when any rule matches.
    #[serde(default)]
    pub rules: Vec<SegmentRule>,
}

/// A segment rule: matches when all its clauses do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SegmentRule {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub clauses: Vec<Clause>,
}

/// The segments that flags may name, by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Segments {
    by_key: BTreeMap<String, Segment>,
}

impl Segments {
    pub fn new() -> Segments {
        Segments::default()
    }

    /// Adds or replaces the segment with `segment.key`; returns the one it replaced.
    pub fn insert(&mut self, segment: Segment) -> Option<Segment> {
        self.by_key.insert(segment.key.clone(), segment)
    }

    pub fn get(&self, key: &str) -> Option<&Segment> {
        self.by_key.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Segment> {
        self.by_key.values()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

impl FromIterator<Segment> for Segments {
    fn from_iter<I: IntoIterator<Item = Segment>>(segments: I) -> Segments {
        let mut set = Segments::new();
        for segment in segments {
            set.insert(segment);
        }
        set
    }
}

impl Flag {
    /// This flag as one environment sees it; `None` for an environment it lacks.
    pub fn config(&self, environment: &str) -> Option<FlagConfig> {
        let config = self.environments.get(environment)?;
        Some(FlagConfig {
            key: self.key.clone(),
            kind: self.kind,
            variations: self.variations.clone(),
            environment: config.clone(),
        })
    }

    /// Checks the whole flag, every environment against `segments`. Paths in errors start
    /// at the flag: `environments.production.rules[2].clauses[0]`.
    pub fn validate(&self, segments: &Segments) -> Result<(), ValidationError> {
        check_key(&self.key).map_err(|message| ValidationError::new("key", message))?;
        if self.name.trim().is_empty() {
            return Err(ValidationError::new("name", "a flag needs a name"));
        }
        check_variations(self.kind, &self.variations)?;
        for (name, config) in &self.environments {
            let path = format!("environments.{name}");
            check_key(name).map_err(|message| ValidationError::new(&path, message))?;
            compile_environment(&self.key, self.kind, &self.variations, config, segments)
                .map_err(|error| error.within(&path))?;
        }
        for (i, tag) in self.tags.iter().enumerate() {
            if tag.trim().is_empty() {
                return Err(ValidationError::new(
                    format!("tags[{i}]"),
                    "a tag is not empty",
                ));
            }
        }
        Ok(())
    }
}

impl FlagConfig {
    /// Checks this configuration against `segments`: `compile` without keeping the result.
    pub fn validate(&self, segments: &Segments) -> Result<(), ValidationError> {
        CompiledFlag::compile(self, segments).map(|_| ())
    }
}

impl Segment {
    /// Checks the key and the rules (which cannot name segments).
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut compiler = Compiler {
            flag_key: "",
            variations: &[],
            segments: None,
            compiled_segments: Vec::new(),
            attributes: AttributeTable::default(),
        };
        compile_segment(self, &mut compiler).map(|_| ())
    }
}

/// Why a configuration is refused: where (`rules[2].clauses[0]`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// A path into the JSON: `rules[2].clauses[0]`, `default_serve.rollout`; empty for
    /// the whole.
    pub path: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ValidationError {
        ValidationError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same error, with its path under `prefix`.
    fn within(mut self, prefix: &str) -> ValidationError {
        self.path = if self.path.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", self.path)
        };
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ValidationError {}

// ---------------------------------------------------------------------------------------
// Wire types: evaluation and OFREP
// ---------------------------------------------------------------------------------------

/// What a flag is evaluated for: OpenFeature's evaluation context, as OFREP sends it,
/// `{"targetingKey": "user-1", "email": "...", ...}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvaluationContext {
    /// Who: the default key of rollouts and segments' `included`/`excluded`.
    #[serde(
        rename = "targetingKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub targeting_key: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub attributes: Map<String, Value>,
}

impl EvaluationContext {
    /// A context with this targeting key and no attributes.
    pub fn new(targeting_key: impl Into<String>) -> EvaluationContext {
        EvaluationContext {
            targeting_key: Some(targeting_key.into()),
            attributes: Map::new(),
        }
    }

    /// Adds (or replaces) an attribute.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> EvaluationContext {
        self.attributes.insert(name.into(), value.into());
        self
    }
}

/// Why an evaluation answered what it did: OpenFeature's resolution reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The flag has no rules and serves one variation: no context changes the answer.
    Static,
    /// A rule matched (`rule_index`).
    TargetingMatch,
    /// The default serve's rollout bucketed the context.
    Split,
    /// The flag is off or killed: the off variation.
    Disabled,
    /// No rule matched: the default serve's variation.
    Default,
    /// No answer (`error_code` says why): the caller serves its own default.
    Error,
    /// Not produced by evaluation; OpenFeature SDKs and other OFREP servers use it.
    Cached,
    /// Not produced by evaluation; see `Cached`.
    Stale,
    /// Not produced by evaluation; see `Cached`.
    Unknown,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Disabled => "DISABLED",
            Reason::Default => "DEFAULT",
            Reason::Error => "ERROR",
            Reason::Cached => "CACHED",
            Reason::Stale => "STALE",
            Reason::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why there is no answer: OpenFeature's error codes, as OFREP's `errorCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// No flag with this key (in this environment).
    FlagNotFound,
    /// The request, or the flag's configuration, could not be parsed.
    ParseError,
    /// A rollout buckets by the targeting key and the context has none.
    TargetingKeyMissing,
    /// The context is not usable (e.g. a rollout's bucketing attribute is missing).
    InvalidContext,
    /// The flag's kind is not the one asked for.
    TypeMismatch,
    /// Anything else.
    General,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::General => "GENERAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /ofrep/v1/evaluate/flags/{key}` and `POST /ofrep/v1/evaluate/flags`:
/// `{"context": {...}}` (an absent context is an empty one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OfrepEvaluationRequest {
    #[serde(default)]
    pub context: EvaluationContext,
}

/// A value of OFREP's `metadata`: a boolean, a number or a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum FlagMetadataValue {
    Bool(bool),
    Number(f64),
    String(String),
}

/// OFREP's successful evaluation: `{key, value, reason, variant, metadata}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OfrepEvaluationSuccess {
    pub key: String,
    pub value: Value,
    pub reason: Reason,
    #[serde(default)]
    pub variant: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, FlagMetadataValue>,
}

/// OFREP's failed evaluation: `{key, errorCode, errorDetails}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OfrepEvaluationFailure {
    pub key: String,
    pub error_code: ErrorCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<String>,
}

/// One flag's answer: a success or a failure (told apart by `errorCode`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum OfrepFlagResult {
    Failure(OfrepEvaluationFailure),
    Success(OfrepEvaluationSuccess),
}

/// `POST /ofrep/v1/evaluate/flags`, 200: `{"flags": [...]}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OfrepBulkEvaluationSuccess {
    pub flags: Vec<OfrepFlagResult>,
}

/// `POST /ofrep/v1/evaluate/flags`, 400: `{errorCode, errorDetails}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OfrepBulkEvaluationFailure {
    pub error_code: ErrorCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Evaluation results
// ---------------------------------------------------------------------------------------

/// An evaluation's answer, owning its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The variation's value; `null` on error.
    pub value: Value,
    /// The variation's name; empty on error.
    pub variant: String,
    pub reason: Reason,
    /// Set exactly when `reason` is `Error`.
    pub error_code: Option<ErrorCode>,
    pub error_details: Option<String>,
    /// The rule that matched, for `TARGETING_MATCH`.
    pub rule_index: Option<usize>,
    /// The context's bucket (1..=100) when a rollout served.
    pub bucket: Option<u8>,
}

/// An evaluation's answer, borrowing its value and variant from the [`CompiledFlag`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvaluationRef<'a> {
    pub value: &'a Value,
    pub variant: &'a str,
    pub reason: Reason,
    pub error_code: Option<ErrorCode>,
    pub error_details: Option<&'static str>,
    pub rule_index: Option<usize>,
    pub bucket: Option<u8>,
}

static NULL: Value = Value::Null;

impl<'a> EvaluationRef<'a> {
    /// No answer, for `code`.
    pub fn error(code: ErrorCode, details: &'static str) -> EvaluationRef<'a> {
        EvaluationRef {
            value: &NULL,
            variant: "",
            reason: Reason::Error,
            error_code: Some(code),
            error_details: Some(details),
            rule_index: None,
            bucket: None,
        }
    }

    pub fn is_error(&self) -> bool {
        self.error_code.is_some()
    }

    pub fn into_owned(self) -> Evaluation {
        Evaluation {
            value: self.value.clone(),
            variant: self.variant.to_owned(),
            reason: self.reason,
            error_code: self.error_code,
            error_details: self.error_details.map(str::to_owned),
            rule_index: self.rule_index,
            bucket: self.bucket,
        }
    }

    /// The OFREP answer for the flag `key`, without metadata.
    pub fn to_ofrep(&self, key: &str) -> OfrepFlagResult {
        ofrep_result(
            key,
            self.value,
            self.variant,
            self.reason,
            self.error_code,
            self.error_details,
        )
    }
}

impl From<EvaluationRef<'_>> for Evaluation {
    fn from(evaluation: EvaluationRef<'_>) -> Evaluation {
        evaluation.into_owned()
    }
}

impl Evaluation {
    /// No answer, for `code`.
    pub fn error(code: ErrorCode, details: impl Into<String>) -> Evaluation {
        Evaluation {
            value: Value::Null,
            variant: String::new(),
            reason: Reason::Error,
            error_code: Some(code),
            error_details: Some(details.into()),
            rule_index: None,
            bucket: None,
        }
    }

    pub fn is_error(&self) -> bool {
        self.error_code.is_some()
    }

    /// The OFREP answer for the flag `key`, without metadata.
    pub fn to_ofrep(&self, key: &str) -> OfrepFlagResult {
        ofrep_result(
            key,
            &self.value,
            &self.variant,
            self.reason,
            self.error_code,
            self.error_details.as_deref(),
        )
    }
}

fn ofrep_result(
    key: &str,
    value: &Value,
    variant: &str,
    reason: Reason,
    error_code: Option<ErrorCode>,
    error_details: Option<&str>,
) -> OfrepFlagResult {
    match error_code {
        Some(error_code) => OfrepFlagResult::Failure(OfrepEvaluationFailure {
            key: key.to_owned(),
            error_code,
            error_details: error_details.map(str::to_owned),
        }),
        None => OfrepFlagResult::Success(OfrepEvaluationSuccess {
            key: key.to_owned(),
            value: value.clone(),
            reason,
            variant: variant.to_owned(),
            metadata: BTreeMap::new(),
        }),
    }
}

/// Compiles `flag` and evaluates it once: for one-off answers (tests, the admin page's
/// "try a context"). Anything that evaluates a flag more than once keeps a
/// [`CompiledFlag`]. An invalid configuration answers `PARSE_ERROR` with the validation
/// message.
pub fn evaluate(flag: &FlagConfig, segments: &Segments, context: &EvaluationContext) -> Evaluation {
    match CompiledFlag::compile(flag, segments) {
        Ok(compiled) => compiled.evaluate(context).into_owned(),
        Err(error) => Evaluation::error(ErrorCode::ParseError, error.to_string()),
    }
}

// ---------------------------------------------------------------------------------------
// The compiled form
// ---------------------------------------------------------------------------------------

/// A validated flag in one environment, ready to evaluate many times without allocating.
#[derive(Debug, Clone)]
pub struct CompiledFlag {
    key: Box<str>,
    kind: FlagKind,
    variations: Box<[(Box<str>, Value)]>,
    enabled: bool,
    killed: bool,
    off_variation: usize,
    rules: Box<[CompiledRule]>,
    default_serve: CompiledServe,
    /// The segments the clauses name, by index.
    segments: Box<[CompiledSegment]>,
    /// The attributes that the clauses, the segments' clauses and the rollouts read.
    attributes: AttributeTable,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    clauses: Box<[CompiledClause]>,
    serve: CompiledServe,
}

#[derive(Debug, Clone)]
enum CompiledServe {
    Variation(usize),
    Rollout(CompiledRollout),
}

#[derive(Debug, Clone)]
struct CompiledRollout {
    /// (last bucket, variation index), in bucket order; the last bound is 100.
    bounds: Box<[(u8, usize)]>,
    bucket_by: Attribute,
    /// The hash state after `"{group}:"`: each evaluation hashes only the key.
    group_prefix: Murmur3,
}

#[derive(Debug, Clone)]
struct CompiledSegment {
    key: Box<str>,
    included: StringSet,
    excluded: StringSet,
    rules: Box<[Box<[CompiledClause]>]>,
}

#[derive(Debug, Clone)]
struct CompiledClause {
    attribute: Attribute,
    test: Test,
    /// `not_equals`, `not_in`, `not_in_segment`: true when the attribute is present and
    /// the positive test fails.
    negate: bool,
}

#[derive(Debug, Clone, Copy)]
enum Attribute {
    TargetingKey,
    /// An index into the flag's [`AttributeTable`].
    Named(usize),
}

/// The distinct attribute names a flag reads. An evaluation finds them all in one pass
/// over the context ([`ContextView`]) instead of searching the context's map for each
/// clause: a search compares several keys' bytes, the pass compares each context key's
/// [`KeyPrint`] with these.
#[derive(Debug, Clone, Default)]
struct AttributeTable {
    names: Vec<Box<str>>,
    prints: Vec<KeyPrint>,
    /// Bit `len % 64` set for the length of each name: most context keys that are not
    /// names are skipped on their length alone.
    lengths: u64,
}

impl AttributeTable {
    fn slot(&mut self, name: &str) -> usize {
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
fn word(bytes: &[u8]) -> u64 {
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
struct ContextView<'f, 'c> {
    table: &'f AttributeTable,
    context: &'c EvaluationContext,
    slots: [Option<&'c Value>; ATTRIBUTE_SLOTS],
    resolved: bool,
}

impl<'f, 'c> ContextView<'f, 'c> {
    #[inline]
    fn new(table: &'f AttributeTable, context: &'c EvaluationContext) -> ContextView<'f, 'c> {
        ContextView {
            table,
            context,
            slots: [None; ATTRIBUTE_SLOTS],
            resolved: false,
        }
    }

    #[inline]
    fn targeting_key(&self) -> Option<&'c str> {
        self.context.targeting_key.as_deref()
    }

    /// The attribute in the table's `slot`; `None` when the context lacks it.
    #[inline(always)]
    fn get(&mut self, slot: usize) -> Option<&'c Value> {
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

#[derive(Debug, Clone)]
enum Test {
    /// Indices into the flag's segments; the context is in any of them.
    Segment(Box<[usize]>),
    OneOf {
        set: ValueSet,
        case_insensitive: bool,
    },
    Text {
        op: TextOp,
        needles: Box<[Box<str>]>,
        case_insensitive: bool,
    },
    Number {
        comparison: Comparison,
        value: f64,
    },
    Semver {
        comparison: Comparison,
        value: Semver,
    },
}

#[derive(Debug, Clone, Copy)]
enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy)]
enum Comparison {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Comparison {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Eq => ordering == Ordering::Equal,
            Comparison::Lt => ordering == Ordering::Less,
            Comparison::Lte => ordering != Ordering::Greater,
            Comparison::Gt => ordering == Ordering::Greater,
            Comparison::Gte => ordering != Ordering::Less,
        }
    }
}

/// The scalars of an `equals`/`in` list, by type.
#[derive(Debug, Clone)]
struct ValueSet {
    strings: StringSet,
    numbers: Box<[f64]>,
    /// Whether `false`, `true` are in the list.
    booleans: [bool; 2],
}

#[derive(Debug, Clone)]
enum StringSet {
    Small(Box<[Box<str>]>),
    Hashed(HashSet<Box<str>, BuildHasherDefault<FxHasher>>),
}

impl StringSet {
    fn new(strings: Vec<Box<str>>) -> StringSet {
        if strings.len() <= SMALL_SET {
            StringSet::Small(strings.into_boxed_slice())
        } else {
            StringSet::Hashed(strings.into_iter().collect())
        }
    }

    #[inline]
    fn contains(&self, text: &str) -> bool {
        match self {
            StringSet::Small(strings) => strings.iter().any(|s| **s == *text),
            StringSet::Hashed(strings) => strings.contains(text),
        }
    }
}

/// Firefox's and rustc's multiply-rotate hash: a fixed, fast hasher for the string sets.
/// The sets are built from configuration, which a context cannot change, so a keyed
/// (DoS-resistant) hasher buys nothing here.
#[derive(Debug, Clone, Copy, Default)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for chunk in &mut words {
            self.add(word(chunk));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            // `word` is unique per length only: mix the length in.
            self.add(word(rest) ^ (rest.len() as u64) << 59);
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

impl CompiledFlag {
    /// Validates `config` against `segments` and compiles it. Errors name the place:
    /// `rules[2].clauses[0]: operator semver_lt needs a semver value, got "1.x"`.
    pub fn compile(
        config: &FlagConfig,
        segments: &Segments,
    ) -> Result<CompiledFlag, ValidationError> {
        check_key(&config.key).map_err(|message| ValidationError::new("key", message))?;
        check_variations(config.kind, &config.variations)?;
        compile_environment(
            &config.key,
            config.kind,
            &config.variations,
            &config.environment,
            segments,
        )
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn kind(&self) -> FlagKind {
        self.kind
    }

    /// The value of the variation `name`.
    pub fn variation(&self, name: &str) -> Option<&Value> {
        self.variations
            .iter()
            .find(|(variation, _)| **variation == *name)
            .map(|(_, value)| value)
    }

    /// The answer for `context` (see the module documentation for the order).
    pub fn evaluate(&self, context: &EvaluationContext) -> EvaluationRef<'_> {
        if self.killed || !self.enabled {
            return self.answer(self.off_variation, Reason::Disabled, None, None);
        }
        let mut view = ContextView::new(&self.attributes, context);
        for (index, rule) in self.rules.iter().enumerate() {
            if rule
                .clauses
                .iter()
                .all(|clause| clause.matches(&mut view, &self.segments))
            {
                return self.serve(&rule.serve, &mut view, Reason::TargetingMatch, Some(index));
            }
        }
        let reason = match (&self.default_serve, self.rules.is_empty()) {
            (CompiledServe::Rollout(_), _) => Reason::Split,
            (CompiledServe::Variation(_), true) => Reason::Static,
            (CompiledServe::Variation(_), false) => Reason::Default,
        };
        self.serve(&self.default_serve, &mut view, reason, None)
    }

    /// [`evaluate`](Self::evaluate) for a caller that expects a `kind` of flag: another
    /// kind answers `TYPE_MISMATCH` (as an OpenFeature SDK's typed getters need).
    pub fn evaluate_as(&self, context: &EvaluationContext, kind: FlagKind) -> EvaluationRef<'_> {
        if kind != self.kind {
            return EvaluationRef::error(
                ErrorCode::TypeMismatch,
                "the flag is not of the kind asked for",
            );
        }
        self.evaluate(context)
    }

    #[inline]
    fn answer(
        &self,
        variation: usize,
        reason: Reason,
        rule_index: Option<usize>,
        bucket: Option<u8>,
    ) -> EvaluationRef<'_> {
        match self.variations.get(variation) {
            Some((name, value)) => EvaluationRef {
                value,
                variant: name,
                reason,
                error_code: None,
                error_details: None,
                rule_index,
                bucket,
            },
            // Compilation only stores indices of existing variations.
            None => EvaluationRef::error(ErrorCode::General, "variation index out of range"),
        }
    }

    #[inline]
    fn serve(
        &self,
        serve: &CompiledServe,
        view: &mut ContextView<'_, '_>,
        reason: Reason,
        rule_index: Option<usize>,
    ) -> EvaluationRef<'_> {
        match serve {
            CompiledServe::Variation(variation) => {
                self.answer(*variation, reason, rule_index, None)
            }
            CompiledServe::Rollout(rollout) => match rollout.bucket_of(view) {
                Ok(bucket) => self.answer(
                    rollout.variation_of(bucket),
                    reason,
                    rule_index,
                    Some(bucket),
                ),
                Err((code, details)) => EvaluationRef::error(code, details),
            },
        }
    }
}

impl CompiledRollout {
    #[inline]
    fn bucket_of(&self, view: &mut ContextView<'_, '_>) -> Result<u8, (ErrorCode, &'static str)> {
        match self.bucket_by {
            Attribute::TargetingKey => match view.targeting_key() {
                Some(key) if !key.is_empty() => Ok(self.bucket(key.as_bytes())),
                _ => Err((
                    ErrorCode::TargetingKeyMissing,
                    "the flag's rollout buckets by the targeting key, which the context lacks",
                )),
            },
            Attribute::Named(slot) => {
                const INVALID: &str = "the flag's rollout buckets by an attribute that the \
                                       context lacks or that is not a non-empty string or an integer";
                match view.get(slot) {
                    Some(Value::String(key)) if !key.is_empty() => Ok(self.bucket(key.as_bytes())),
                    Some(Value::Number(number)) => {
                        let mut digits = [0u8; 20];
                        match integer_digits(number, &mut digits) {
                            Some(key) => Ok(self.bucket(key)),
                            None => Err((ErrorCode::InvalidContext, INVALID)),
                        }
                    }
                    _ => Err((ErrorCode::InvalidContext, INVALID)),
                }
            }
        }
    }

    /// `bucket(group, key)`, from the hash state after the group.
    #[inline]
    fn bucket(&self, key: &[u8]) -> u8 {
        let mut hasher = self.group_prefix;
        hasher.write(key);
        normalize(hasher.finish())
    }

    #[inline]
    fn variation_of(&self, bucket: u8) -> usize {
        self.bounds
            .iter()
            .find(|(last, _)| bucket <= *last)
            .or(self.bounds.last())
            .map_or(0, |(_, variation)| *variation)
    }
}

/// An integer's decimal digits, written into `buffer`; `None` for a non-integer.
fn integer_digits<'b>(number: &Number, buffer: &'b mut [u8; 20]) -> Option<&'b [u8]> {
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

impl CompiledSegment {
    fn contains(&self, view: &mut ContextView<'_, '_>) -> bool {
        if let Some(key) = view.targeting_key() {
            if self.included.contains(key) {
                return true;
            }
            if self.excluded.contains(key) {
                return false;
            }
        }
        self.rules
            .iter()
            .any(|clauses| clauses.iter().all(|clause| clause.matches(view, &[])))
    }
}

/// An attribute's value, seen as one scalar.
#[derive(Clone, Copy)]
enum Scalar<'c> {
    Str(&'c str),
    Num(f64),
    Bool(bool),
    /// An object, a nested array or `null`: matches nothing.
    Other,
}

#[inline]
fn scalar(value: &Value) -> Scalar<'_> {
    match value {
        Value::String(text) => Scalar::Str(text),
        Value::Number(number) => number.as_f64().map_or(Scalar::Other, Scalar::Num),
        Value::Bool(flag) => Scalar::Bool(*flag),
        _ => Scalar::Other,
    }
}

impl CompiledClause {
    #[inline(always)]
    fn matches(&self, view: &mut ContextView<'_, '_>, segments: &[CompiledSegment]) -> bool {
        if let Test::Segment(indices) = &self.test {
            let inside = indices.iter().any(|&i| {
                segments
                    .get(i)
                    .is_some_and(|segment| segment.contains(view))
            });
            return inside != self.negate;
        }
        let positive = match self.attribute {
            Attribute::TargetingKey => match view.targeting_key() {
                Some(key) => self.test.holds(Scalar::Str(key)),
                None => return false,
            },
            Attribute::Named(slot) => match view.get(slot) {
                None | Some(Value::Null) => return false,
                Some(Value::Array(items)) => items.iter().any(|item| self.test.holds(scalar(item))),
                Some(value) => self.test.holds(scalar(value)),
            },
        };
        positive != self.negate
    }
}

impl Test {
    #[inline(always)]
    fn holds(&self, value: Scalar<'_>) -> bool {
        match self {
            Test::Segment(_) => false,
            Test::OneOf {
                set,
                case_insensitive,
            } => match value {
                Scalar::Str(text) if *case_insensitive => {
                    with_lowercase(text, |text| set.strings.contains(text))
                }
                Scalar::Str(text) => set.strings.contains(text),
                Scalar::Num(number) => set.numbers.contains(&number),
                Scalar::Bool(flag) => set.booleans[usize::from(flag)],
                Scalar::Other => false,
            },
            Test::Text {
                op,
                needles,
                case_insensitive,
            } => match value {
                Scalar::Str(text) if *case_insensitive => op.any_lowercase(text, needles),
                Scalar::Str(text) => op.any(text, needles),
                _ => false,
            },
            Test::Number {
                comparison,
                value: bound,
            } => {
                let number = match value {
                    Scalar::Num(number) => number,
                    Scalar::Str(text) => match text.parse::<f64>() {
                        Ok(number) if number.is_finite() => number,
                        _ => return false,
                    },
                    _ => return false,
                };
                number
                    .partial_cmp(bound)
                    .is_some_and(|ordering| comparison.holds(ordering))
            }
            Test::Semver {
                comparison,
                value: bound,
            } => match value {
                Scalar::Str(text) => SemverRef::parse(text).is_some_and(|(version, _)| {
                    comparison.holds(version.precedence(&bound.borrowed()))
                }),
                _ => false,
            },
        }
    }
}

impl TextOp {
    #[inline]
    fn any(self, text: &str, needles: &[Box<str>]) -> bool {
        needles.iter().any(|needle| match self {
            TextOp::Contains => text.contains(&**needle),
            TextOp::StartsWith => text.starts_with(&**needle),
            TextOp::EndsWith => text.ends_with(&**needle),
        })
    }

    /// `any` of `text` lowercased, with `needles` already lowercase. An ASCII text's
    /// prefix or suffix is compared in place, ignoring ASCII case (an ASCII text
    /// lowercases to ASCII, so a non-ASCII needle fails either way).
    #[inline]
    fn any_lowercase(self, text: &str, needles: &[Box<str>]) -> bool {
        let bytes = text.as_bytes();
        match self {
            TextOp::StartsWith if text.is_ascii() => needles.iter().any(|needle| {
                bytes
                    .get(..needle.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(needle.as_bytes()))
            }),
            TextOp::EndsWith if text.is_ascii() => needles.iter().any(|needle| {
                bytes
                    .len()
                    .checked_sub(needle.len())
                    .and_then(|start| bytes.get(start..))
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(needle.as_bytes()))
            }),
            _ => with_lowercase(text, |text| self.any(text, needles)),
        }
    }
}

/// Calls `f` with `text` lowercased: on the stack for ASCII up to 128 bytes, else in a
/// `String`.
#[inline]
fn with_lowercase<R>(text: &str, f: impl FnOnce(&str) -> R) -> R {
    if !text
        .bytes()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii())
    {
        return f(text);
    }
    if text.len() <= 128 && text.is_ascii() {
        let mut buffer = [0u8; 128];
        let lower = &mut buffer[..text.len()];
        lower.copy_from_slice(text.as_bytes());
        lower.make_ascii_lowercase();
        // ASCII stays valid UTF-8 when lowercased.
        if let Ok(lower) = std::str::from_utf8(lower) {
            return f(lower);
        }
    }
    f(&text.to_lowercase())
}

// ---------------------------------------------------------------------------------------
// Validation and compilation
// ---------------------------------------------------------------------------------------

/// Checks a flag key, segment key or environment name.
fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a key is not empty".to_owned());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!(
            "a key is at most {MAX_KEY_LEN} bytes, this one is {}",
            key.len()
        ));
    }
    let bytes = key.as_bytes();
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if !bytes[0].is_ascii_alphanumeric() || !bytes.iter().all(|&b| allowed(b)) {
        return Err(format!(
            "a key is made of letters, digits, '.', '_' and '-', and starts with a letter \
             or digit; got {key:?}"
        ));
    }
    Ok(())
}

fn check_variations(kind: FlagKind, variations: &[Variation]) -> Result<(), ValidationError> {
    if variations.is_empty() {
        return Err(ValidationError::new(
            "variations",
            "a flag needs at least one variation",
        ));
    }
    for (i, variation) in variations.iter().enumerate() {
        if variation.name.is_empty() {
            return Err(ValidationError::new(
                format!("variations[{i}].name"),
                "a variation needs a name",
            ));
        }
        if variations[..i].iter().any(|v| v.name == variation.name) {
            return Err(ValidationError::new(
                format!("variations[{i}].name"),
                format!("duplicate variation name {:?}", variation.name),
            ));
        }
        if !kind.accepts(&variation.value) {
            return Err(ValidationError::new(
                format!("variations[{i}].value"),
                format!(
                    "a {kind} flag's variations are {}, got {}",
                    kind.values_noun(),
                    variation.value
                ),
            ));
        }
    }
    Ok(())
}

/// Compiles one environment of a flag whose key and variations are already checked.
fn compile_environment(
    key: &str,
    kind: FlagKind,
    variations: &[Variation],
    config: &FlagEnvironmentConfig,
    segments: &Segments,
) -> Result<CompiledFlag, ValidationError> {
    let mut compiler = Compiler {
        flag_key: key,
        variations,
        segments: Some(segments),
        compiled_segments: Vec::new(),
        attributes: AttributeTable::default(),
    };
    let off_variation = compiler.variation(&config.off_variation, "off_variation")?;
    let default_serve = compiler.serve(&config.default_serve, "default_serve")?;
    let mut rules = Vec::with_capacity(config.rules.len());
    for (i, rule) in config.rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        if rule.clauses.is_empty() {
            return Err(ValidationError::new(
                path,
                "a rule needs at least one clause (default_serve serves everyone else)",
            ));
        }
        rules.push(CompiledRule {
            clauses: compiler.clauses(&rule.clauses, &path)?,
            serve: compiler.serve(&rule.serve, &format!("{path}.serve"))?,
        });
    }
    Ok(CompiledFlag {
        key: key.into(),
        kind,
        variations: variations
            .iter()
            .map(|v| (Box::from(v.name.as_str()), v.value.clone()))
            .collect(),
        enabled: config.enabled,
        killed: config.killed,
        off_variation,
        rules: rules.into_boxed_slice(),
        default_serve,
        segments: compiler.compiled_segments.into_boxed_slice(),
        attributes: compiler.attributes,
    })
}

/// Compiles a segment with `compiler`, whose attribute table its clauses join. Its
/// clauses cannot name segments.
fn compile_segment(
    segment: &Segment,
    compiler: &mut Compiler<'_>,
) -> Result<CompiledSegment, ValidationError> {
    let segments = compiler.segments.take();
    let compiled = compile_segment_parts(segment, compiler);
    compiler.segments = segments;
    compiled
}

fn compile_segment_parts(
    segment: &Segment,
    compiler: &mut Compiler<'_>,
) -> Result<CompiledSegment, ValidationError> {
    check_key(&segment.key).map_err(|message| ValidationError::new("key", message))?;
    let mut rules = Vec::with_capacity(segment.rules.len());
    for (i, rule) in segment.rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        if rule.clauses.is_empty() {
            return Err(ValidationError::new(
                path,
                "a rule needs at least one clause (list keys in included instead)",
            ));
        }
        rules.push(compiler.clauses(&rule.clauses, &path)?);
    }
    let keys =
        |keys: &[String]| StringSet::new(keys.iter().map(|k| Box::from(k.as_str())).collect());
    Ok(CompiledSegment {
        key: segment.key.as_str().into(),
        included: keys(&segment.included),
        excluded: keys(&segment.excluded),
        rules: rules.into_boxed_slice(),
    })
}

struct Compiler<'a> {
    flag_key: &'a str,
    variations: &'a [Variation],
    /// `None` inside a segment: segments cannot name segments.
    segments: Option<&'a Segments>,
    compiled_segments: Vec<CompiledSegment>,
    attributes: AttributeTable,
}

impl Compiler<'_> {
    fn variation(&self, name: &str, path: &str) -> Result<usize, ValidationError> {
        self.variations
            .iter()
            .position(|v| v.name == name)
            .ok_or_else(|| ValidationError::new(path, format!("unknown variation {name:?}")))
    }

    fn serve(&mut self, serve: &Serve, path: &str) -> Result<CompiledServe, ValidationError> {
        match serve {
            Serve::Variation(name) => self.variation(name, path).map(CompiledServe::Variation),
            Serve::Rollout(rollout) => self
                .rollout(rollout, &format!("{path}.rollout"))
                .map(CompiledServe::Rollout),
        }
    }

    fn rollout(
        &mut self,
        rollout: &Rollout,
        path: &str,
    ) -> Result<CompiledRollout, ValidationError> {
        if rollout.variations.is_empty() {
            return Err(ValidationError::new(
                format!("{path}.variations"),
                "a rollout needs at least one variation",
            ));
        }
        let mut bounds: Vec<(u8, usize)> = Vec::with_capacity(rollout.variations.len());
        let mut total: u64 = 0;
        for (i, weighted) in rollout.variations.iter().enumerate() {
            let entry = format!("{path}.variations[{i}]");
            let variation = self.variation(&weighted.variation, &entry)?;
            if bounds.iter().any(|&(_, seen)| seen == variation) {
                return Err(ValidationError::new(
                    entry,
                    format!("variation {:?} appears twice", weighted.variation),
                ));
            }
            total += u64::from(weighted.weight);
            bounds.push((total.min(u64::from(TOTAL_WEIGHT)) as u8, variation));
        }
        if total != u64::from(TOTAL_WEIGHT) {
            return Err(ValidationError::new(
                format!("{path}.variations"),
                format!("rollout weights sum to {total}, not {TOTAL_WEIGHT}"),
            ));
        }
        let bucket_by = match rollout.bucket_by.as_deref() {
            None | Some(TARGETING_KEY) => Attribute::TargetingKey,
            Some("") => {
                return Err(ValidationError::new(
                    format!("{path}.bucket_by"),
                    "bucket_by names an attribute (leave it out for the targeting key)",
                ))
            }
            Some(name) => Attribute::Named(self.attributes.slot(name)),
        };
        let group = match rollout.group.as_deref() {
            None => self.flag_key,
            Some("") => {
                return Err(ValidationError::new(
                    format!("{path}.group"),
                    "group is not empty (leave it out for the flag's key)",
                ))
            }
            Some(group) => group,
        };
        Ok(CompiledRollout {
            bounds: bounds.into_boxed_slice(),
            bucket_by,
            group_prefix: group_prefix(group),
        })
    }

    fn clauses(
        &mut self,
        clauses: &[Clause],
        rule_path: &str,
    ) -> Result<Box<[CompiledClause]>, ValidationError> {
        clauses
            .iter()
            .enumerate()
            .map(|(j, clause)| self.clause(clause, &format!("{rule_path}.clauses[{j}]")))
            .collect()
    }

    fn clause(&mut self, clause: &Clause, path: &str) -> Result<CompiledClause, ValidationError> {
        let op = clause.operator;
        let error = |message: String| ValidationError::new(path, message);
        if clause.case_insensitive && !op.compares_strings() {
            return Err(error(format!(
                "case_insensitive applies to string operators, not {op}"
            )));
        }
        if matches!(op, Operator::InSegment | Operator::NotInSegment) {
            return self.segment_clause(clause, path);
        }
        if clause.attribute.is_empty() {
            return Err(error(format!("operator {op} needs an attribute")));
        }
        let values = &clause.values;
        let exactly_one = || match values.as_slice() {
            [value] => Ok(value),
            _ => Err(error(format!(
                "operator {op} needs exactly one value, got {}",
                values.len()
            ))),
        };
        let at_least_one = || {
            if values.is_empty() {
                Err(error(format!("operator {op} needs at least one value")))
            } else {
                Ok(values.as_slice())
            }
        };
        let case_insensitive = clause.case_insensitive;
        let fold = |text: &str| -> Box<str> {
            if case_insensitive {
                text.to_lowercase().into()
            } else {
                text.into()
            }
        };
        let (test, negate) = match op {
            Operator::Equals | Operator::NotEquals | Operator::In | Operator::NotIn => {
                let list = if matches!(op, Operator::Equals | Operator::NotEquals) {
                    std::slice::from_ref(exactly_one()?)
                } else {
                    at_least_one()?
                };
                let mut strings = Vec::new();
                let mut numbers = Vec::new();
                let mut booleans = [false; 2];
                for value in list {
                    match value {
                        Value::String(text) => strings.push(fold(text)),
                        Value::Number(number) => match number.as_f64() {
                            Some(number) if number.is_finite() => numbers.push(number),
                            _ => {
                                return Err(error(format!(
                                    "operator {op}: {number} is not a usable number"
                                )))
                            }
                        },
                        Value::Bool(flag) => booleans[usize::from(*flag)] = true,
                        other => {
                            return Err(error(format!(
                                "operator {op} compares strings, numbers or booleans, got {other}"
                            )))
                        }
                    }
                }
                let set = ValueSet {
                    strings: StringSet::new(strings),
                    numbers: numbers.into_boxed_slice(),
                    booleans,
                };
                (
                    Test::OneOf {
                        set,
                        case_insensitive,
                    },
                    matches!(op, Operator::NotEquals | Operator::NotIn),
                )
            }
            Operator::Contains | Operator::StartsWith | Operator::EndsWith => {
                let mut needles = Vec::new();
                for value in at_least_one()? {
                    match value {
                        Value::String(text) => needles.push(fold(text)),
                        other => {
                            return Err(error(format!(
                                "operator {op} needs string values, got {other}"
                            )))
                        }
                    }
                }
                let op = match op {
                    Operator::Contains => TextOp::Contains,
                    Operator::StartsWith => TextOp::StartsWith,
                    _ => TextOp::EndsWith,
                };
                (
                    Test::Text {
                        op,
                        needles: needles.into_boxed_slice(),
                        case_insensitive,
                    },
                    false,
                )
            }
            Operator::Lt | Operator::Lte | Operator::Gt | Operator::Gte => {
                let value = exactly_one()?;
                let number = value
                    .as_f64()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| error(format!("operator {op} needs a number, got {value}")))?;
                let comparison = match op {
                    Operator::Lt => Comparison::Lt,
                    Operator::Lte => Comparison::Lte,
                    Operator::Gt => Comparison::Gt,
                    _ => Comparison::Gte,
                };
                (
                    Test::Number {
                        comparison,
                        value: number,
                    },
                    false,
                )
            }
            Operator::SemverEq
            | Operator::SemverLt
            | Operator::SemverLte
            | Operator::SemverGt
            | Operator::SemverGte => {
                let value = exactly_one()?;
                let version = value.as_str().and_then(Semver::parse).ok_or_else(|| {
                    error(format!("operator {op} needs a semver value, got {value}"))
                })?;
                let comparison = match op {
                    Operator::SemverEq => Comparison::Eq,
                    Operator::SemverLt => Comparison::Lt,
                    Operator::SemverLte => Comparison::Lte,
                    Operator::SemverGt => Comparison::Gt,
                    _ => Comparison::Gte,
                };
                (
                    Test::Semver {
                        comparison,
                        value: version,
                    },
                    false,
                )
            }
            Operator::InSegment | Operator::NotInSegment => unreachable!("handled above"),
        };
        let attribute = if clause.attribute == TARGETING_KEY {
            Attribute::TargetingKey
        } else {
            Attribute::Named(self.attributes.slot(&clause.attribute))
        };
        Ok(CompiledClause {
            attribute,
            test,
            negate,
        })
    }

    fn segment_clause(
        &mut self,
        clause: &Clause,
        path: &str,
    ) -> Result<CompiledClause, ValidationError> {
        let op = clause.operator;
        let error = |message: String| ValidationError::new(path, message);
        let Some(segments) = self.segments else {
            return Err(error("a segment cannot refer to segments".to_owned()));
        };
        if clause.values.is_empty() {
            return Err(error(format!(
                "operator {op} needs at least one segment key"
            )));
        }
        let mut indices = Vec::with_capacity(clause.values.len());
        for value in &clause.values {
            let Some(key) = value.as_str() else {
                return Err(error(format!(
                    "operator {op} needs segment keys, got {value}"
                )));
            };
            let index = match self
                .compiled_segments
                .iter()
                .position(|segment| &*segment.key == key)
            {
                Some(index) => index,
                None => {
                    let segment = segments
                        .get(key)
                        .ok_or_else(|| error(format!("unknown segment {key:?}")))?;
                    let compiled = compile_segment(segment, self)
                        .map_err(|inner| error(format!("segment {key:?} is invalid: {inner}")))?;
                    self.compiled_segments.push(compiled);
                    self.compiled_segments.len() - 1
                }
            };
            indices.push(index);
        }
        Ok(CompiledClause {
            attribute: Attribute::TargetingKey,
            test: Test::Segment(indices.into_boxed_slice()),
            negate: op == Operator::NotInSegment,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Semantic versions
// ---------------------------------------------------------------------------------------

/// A semantic version, semver.org 2.0.0: `MAJOR.MINOR.PATCH[-PRE.RELEASE][+BUILD]`.
/// Numbers without leading zeros (each at most `u64::MAX`), identifiers of
/// `[0-9A-Za-z-]`, numeric pre-release identifiers without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Semver {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// Dot-separated identifiers; empty for a release.
    pub pre_release: String,
    /// Dot-separated identifiers; empty when absent. Precedence ignores it.
    pub build: String,
}

impl Semver {
    /// Parses strictly: `1.2`, `v1.2.3` and `1.2.3-01` are not versions.
    pub fn parse(text: &str) -> Option<Semver> {
        let (version, build) = SemverRef::parse(text)?;
        Some(Semver {
            major: version.major,
            minor: version.minor,
            patch: version.patch,
            pre_release: version.pre_release.to_owned(),
            build: build.to_owned(),
        })
    }

    /// Orders by precedence (semver.org §11): build metadata does not count, so two
    /// versions can be unequal and of equal precedence.
    pub fn precedence(&self, other: &Semver) -> Ordering {
        self.borrowed().precedence(&other.borrowed())
    }

    fn borrowed(&self) -> SemverRef<'_> {
        SemverRef {
            major: self.major,
            minor: self.minor,
            patch: self.patch,
            pre_release: &self.pre_release,
        }
    }
}

impl fmt::Display for Semver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre_release.is_empty() {
            write!(f, "-{}", self.pre_release)?;
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build)?;
        }
        Ok(())
    }
}

/// A version borrowed from its text: what evaluation parses attributes into.
#[derive(Debug, Clone, Copy)]
struct SemverRef<'a> {
    major: u64,
    minor: u64,
    patch: u64,
    pre_release: &'a str,
}

impl<'a> SemverRef<'a> {
    /// The version and its build metadata.
    /// One pass over the bytes (evaluation parses attributes on the hot path).
    fn parse(text: &'a str) -> Option<(SemverRef<'a>, &'a str)> {
        let bytes = text.as_bytes();
        let mut at = 0;
        let major = version_number(bytes, &mut at)?;
        expect_byte(bytes, &mut at, b'.')?;
        let minor = version_number(bytes, &mut at)?;
        expect_byte(bytes, &mut at, b'.')?;
        let patch = version_number(bytes, &mut at)?;
        let mut pre_release = "";
        if bytes.get(at) == Some(&b'-') {
            let start = at + 1;
            let end = bytes[start..]
                .iter()
                .position(|&b| b == b'+')
                .map_or(bytes.len(), |offset| start + offset);
            pre_release = text.get(start..end)?;
            if !identifiers_valid(pre_release, true) {
                return None;
            }
            at = end;
        }
        let mut build = "";
        if bytes.get(at) == Some(&b'+') {
            build = text.get(at + 1..)?;
            if !identifiers_valid(build, false) {
                return None;
            }
            at = bytes.len();
        }
        if at != bytes.len() {
            return None;
        }
        let version = SemverRef {
            major,
            minor,
            patch,
            pre_release,
        };
        Some((version, build))
    }

    fn precedence(&self, other: &SemverRef<'_>) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| pre_release_precedence(self.pre_release, other.pre_release))
    }
}

/// A MAJOR, MINOR or PATCH number at `at`: digits, no leading zero, at most `u64::MAX`.
fn version_number(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let start = *at;
    let mut value: u64 = 0;
    while let Some(&digit) = bytes.get(*at).filter(|b| b.is_ascii_digit()) {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
        *at += 1;
    }
    let len = *at - start;
    if len == 0 || (len > 1 && bytes[start] == b'0') {
        return None;
    }
    Some(value)
}

fn expect_byte(bytes: &[u8], at: &mut usize, expected: u8) -> Option<()> {
    if bytes.get(*at) == Some(&expected) {
        *at += 1;
        Some(())
    } else {
        None
    }
}

fn is_numeric(identifier: &str) -> bool {
    identifier.bytes().all(|b| b.is_ascii_digit())
}

/// Dot-separated, non-empty identifiers of `[0-9A-Za-z-]`; pre-release numeric ones
/// without leading zeros.
fn identifiers_valid(text: &str, pre_release: bool) -> bool {
    let bytes = text.as_bytes();
    let mut start = 0;
    loop {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'.')
            .map_or(bytes.len(), |offset| start + offset);
        let identifier = &bytes[start..end];
        let valid = !identifier.is_empty()
            && identifier
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && !(pre_release
                && identifier.len() > 1
                && identifier[0] == b'0'
                && identifier.iter().all(u8::is_ascii_digit));
        if !valid {
            return false;
        }
        if end == bytes.len() {
            return true;
        }
        start = end + 1;
    }
}

/// semver.org §11: a release outranks its pre-releases; identifiers compare left to
/// right, numeric ones numerically and below alphanumeric ones, which compare in ASCII
/// order; a longer list of equal identifiers ranks higher.
fn pre_release_precedence(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        (false, false) => {}
    }
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        let ordering = match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match (is_numeric(x), is_numeric(y)) {
                // No leading zeros: the longer number is the larger.
                (true, true) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                (false, false) => x.cmp(y),
            },
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
}

// ---------------------------------------------------------------------------------------
// MurmurHash3 and buckets
// ---------------------------------------------------------------------------------------

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
        self.h1 ^= Self::scramble(k1);
        self.h1 = self
            .h1
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
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
        let mut h1 = self.h1;
        if self.tail_len != 0 {
            h1 ^= Self::scramble(self.tail);
        }
        // The reference takes the length as a 32-bit int.
        h1 ^= self.len as u32;
        h1 ^= h1 >> 16;
        h1 = h1.wrapping_mul(0x85eb_ca6b);
        h1 ^= h1 >> 13;
        h1 = h1.wrapping_mul(0xc2b2_ae35);
        h1 ^ (h1 >> 16)
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
fn group_prefix(group: &str) -> Murmur3 {
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
fn normalize(hash: u32) -> u8 {
    (hash % TOTAL_WEIGHT + 1) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn config(value: Value) -> FlagConfig {
        serde_json::from_value(value).expect("a FlagConfig")
    }

    fn compile(value: Value) -> CompiledFlag {
        CompiledFlag::compile(&config(value), &Segments::new()).expect("a valid flag")
    }

    fn context(value: Value) -> EvaluationContext {
        serde_json::from_value(value).expect("a context")
    }

    fn compile_error(value: Value, segments: &Segments) -> String {
        CompiledFlag::compile(&config(value), segments)
            .expect_err("an invalid flag")
            .to_string()
    }

    /// A boolean flag: rule 0 has `clauses` and serves `on`; everyone else gets `off`.
    fn rule_flag(clauses: Value) -> Value {
        json!({
            "key": "f", "kind": "boolean",
            "variations": [{"name": "on", "value": true}, {"name": "off", "value": false}],
            "enabled": true, "off_variation": "off",
            "default_serve": {"variation": "off"},
            "rules": [{"clauses": clauses, "serve": {"variation": "on"}}],
        })
    }

    fn clause_matches(clause: &Value, ctx: &Value) -> bool {
        let flag = compile(rule_flag(json!([clause])));
        let answer = flag.evaluate(&context(ctx.clone()));
        assert!(!answer.is_error(), "{clause} {ctx}: {answer:?}");
        answer.reason == Reason::TargetingMatch
    }

    fn clause(attribute: &str, operator: &str, values: Value) -> Value {
        json!({"attribute": attribute, "operator": operator, "values": values})
    }

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

    #[test]
    fn every_operator() {
        let many: Vec<String> = (0..40).map(|i| format!("country-{i}")).collect();
        let cases: Vec<(Value, Value, bool)> = vec![
            (clause("a", "equals", json!(["x"])), json!("x"), true),
            (clause("a", "equals", json!(["x"])), json!("X"), false),
            (clause("a", "equals", json!([1])), json!(1.0), true),
            (clause("a", "equals", json!([1])), json!("1"), false),
            (clause("a", "equals", json!([true])), json!(true), true),
            (clause("a", "equals", json!([true])), json!(false), false),
            (clause("a", "equals", json!(["x"])), json!(["y", "x"]), true),
            (clause("a", "equals", json!(["x"])), json!({"x": 1}), false),
            (clause("a", "not_equals", json!(["x"])), json!("y"), true),
            (clause("a", "not_equals", json!(["x"])), json!("x"), false),
            (clause("a", "not_equals", json!([1])), json!(2), true),
            (
                clause("a", "not_equals", json!(["x"])),
                json!(["y", "x"]),
                false,
            ),
            (clause("a", "in", json!(["a", "b", "c"])), json!("b"), true),
            (clause("a", "in", json!(["a", "b", "c"])), json!("d"), false),
            (clause("a", "in", json!([1, 2, 3])), json!(3), true),
            (
                clause("a", "in", json!(["1", 2, false])),
                json!(false),
                true,
            ),
            (clause("a", "in", json!(many)), json!("country-17"), true),
            (clause("a", "in", json!(many)), json!("country-40"), false),
            (clause("a", "not_in", json!(["a", "b"])), json!("d"), true),
            (clause("a", "not_in", json!(["a", "b"])), json!("a"), false),
            (
                clause("a", "not_in", json!(many)),
                json!("country-3"),
                false,
            ),
            (
                clause("a", "contains", json!(["lo w"])),
                json!("hello world"),
                true,
            ),
            (
                clause("a", "contains", json!(["xyz", "ell"])),
                json!("hello"),
                true,
            ),
            (clause("a", "contains", json!(["2"])), json!(123), false),
            (
                clause("a", "starts_with", json!(["alice"])),
                json!("alice@x.dev"),
                true,
            ),
            (
                clause("a", "starts_with", json!(["bob"])),
                json!("alice@x.dev"),
                false,
            ),
            (
                clause("a", "ends_with", json!(["@a.com", "@b.com"])),
                json!("x@b.com"),
                true,
            ),
            (
                clause("a", "ends_with", json!(["@a.com"])),
                json!("x@a.co"),
                false,
            ),
            (clause("a", "lt", json!([10])), json!(5), true),
            (clause("a", "lt", json!([10])), json!(10), false),
            (clause("a", "lte", json!([10])), json!(10), true),
            (clause("a", "lte", json!([10])), json!(10.5), false),
            (clause("a", "gt", json!([10])), json!(11), true),
            (clause("a", "gt", json!([10])), json!(10), false),
            (clause("a", "gte", json!([10])), json!(10), true),
            (clause("a", "gte", json!([-1.5])), json!(-2), false),
            (clause("a", "lt", json!([10])), json!("7"), true),
            (clause("a", "lt", json!([10])), json!("seven"), false),
            (clause("a", "lt", json!([10])), json!("NaN"), false),
            (clause("a", "lt", json!([10])), json!(true), false),
            (
                clause("a", "semver_eq", json!(["1.2.3"])),
                json!("1.2.3+build.5"),
                true,
            ),
            (
                clause("a", "semver_eq", json!(["1.2.3"])),
                json!("1.2.3-rc.1"),
                false,
            ),
            (
                clause("a", "semver_lt", json!(["1.0.0"])),
                json!("1.0.0-alpha"),
                true,
            ),
            (
                clause("a", "semver_lt", json!(["2.0.0"])),
                json!("10.0.0"),
                false,
            ),
            (
                clause("a", "semver_lte", json!(["1.0.0-beta"])),
                json!("1.0.0-beta"),
                true,
            ),
            (
                clause("a", "semver_lte", json!(["1.0.0-beta"])),
                json!("1.0.0-beta.2"),
                false,
            ),
            (
                clause("a", "semver_gt", json!(["1.9.0"])),
                json!("1.10.0"),
                true,
            ),
            (
                clause("a", "semver_gt", json!(["1.0.0-alpha.beta"])),
                json!("1.0.0-alpha.1"),
                false,
            ),
            (
                clause("a", "semver_gte", json!(["1.0.0-rc.1"])),
                json!("1.0.0"),
                true,
            ),
            (
                clause("a", "semver_gte", json!(["1.0.0"])),
                json!("1.2"),
                false,
            ),
            (clause("a", "semver_gte", json!(["1.0.0"])), json!(2), false),
            (
                clause("targetingKey", "equals", json!(["k"])),
                json!("ignored"),
                true,
            ),
            (
                clause("targetingKey", "starts_with", json!(["x"])),
                json!("ignored"),
                false,
            ),
        ];
        for (clause, attribute, expected) in &cases {
            let ctx = json!({"targetingKey": "k", "a": attribute});
            assert_eq!(
                clause_matches(clause, &ctx),
                *expected,
                "{clause} with a = {attribute}"
            );
        }
    }

    #[test]
    fn case_insensitive_string_operators() {
        let ci = |operator: &str, values: Value| json!({"attribute": "a", "operator": operator, "values": values, "case_insensitive": true});
        let cases = [
            (ci("equals", json!(["Alice"])), json!("aLICE"), true),
            (ci("not_equals", json!(["Alice"])), json!("ALICE"), false),
            (ci("in", json!(["DE", "Fr"])), json!("fr"), true),
            (
                ci("ends_with", json!(["@Meridian.DEV"])),
                json!("X@MERIDIAN.dev"),
                true,
            ),
            (ci("contains", json!(["ÉTÉ"])), json!("un été chaud"), true),
            (
                ci("starts_with", json!(["straße"])),
                json!("STRASSE"),
                false,
            ),
            (
                ci("equals", json!(["x".repeat(200)])),
                json!("X".repeat(200)),
                true,
            ),
        ];
        for (clause, attribute, expected) in &cases {
            let ctx = json!({"a": attribute});
            assert_eq!(
                clause_matches(clause, &ctx),
                *expected,
                "{clause} with {attribute}"
            );
        }
    }

    #[test]
    fn a_missing_attribute_fails_every_clause() {
        let segments: Segments = [Segment {
            key: "s".into(),
            name: "S".into(),
            description: String::new(),
            included: vec![],
            excluded: vec![],
            rules: vec![SegmentRule {
                description: String::new(),
                clauses: vec![serde_json::from_value(clause("a", "equals", json!(["x"]))).unwrap()],
            }],
        }]
        .into_iter()
        .collect();
        let clauses = [
            clause("a", "equals", json!(["x"])),
            clause("a", "not_equals", json!(["x"])),
            clause("a", "in", json!(["x"])),
            clause("a", "not_in", json!(["x"])),
            clause("a", "contains", json!(["x"])),
            clause("a", "starts_with", json!(["x"])),
            clause("a", "ends_with", json!(["x"])),
            clause("a", "lt", json!([1])),
            clause("a", "lte", json!([1])),
            clause("a", "gt", json!([1])),
            clause("a", "gte", json!([1])),
            clause("a", "semver_eq", json!(["1.0.0"])),
            clause("a", "semver_lt", json!(["1.0.0"])),
            clause("a", "semver_lte", json!(["1.0.0"])),
            clause("a", "semver_gt", json!(["1.0.0"])),
            clause("a", "semver_gte", json!(["1.0.0"])),
            clause("targetingKey", "not_equals", json!(["x"])),
            json!({"operator": "in_segment", "values": ["s"]}),
        ];
        for clause in &clauses {
            let flag =
                CompiledFlag::compile(&config(rule_flag(json!([clause]))), &segments).unwrap();
            for ctx in [json!({}), json!({"a": null}), json!({"b": "x"})] {
                let answer = flag.evaluate(&context(ctx.clone()));
                assert_eq!(answer.reason, Reason::Default, "{clause} with {ctx}");
                assert_eq!(answer.variant, "off");
            }
        }
    }

    #[test]
    fn semver_precedence_follows_semver_org() {
        // semver.org §11's own example, in increasing order.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
            "10.0.0",
        ];
        let versions: Vec<Semver> = chain.iter().map(|t| Semver::parse(t).unwrap()).collect();
        for (i, a) in versions.iter().enumerate() {
            for (j, b) in versions.iter().enumerate() {
                assert_eq!(a.precedence(b), i.cmp(&j), "{a} vs {b}");
            }
        }
        let with_build = Semver::parse("1.0.0+20130313144700").unwrap();
        assert_eq!(with_build.precedence(&versions[7]), Ordering::Equal);
        assert_eq!(with_build.build, "20130313144700");
        assert_eq!(with_build.to_string(), "1.0.0+20130313144700");
        // Numeric identifiers beyond u64 still compare numerically.
        let huge = Semver::parse("1.0.0-18446744073709551616").unwrap();
        assert_eq!(
            huge.precedence(&Semver::parse("1.0.0-9").unwrap()),
            Ordering::Greater
        );
        assert_eq!(
            huge.precedence(&Semver::parse("1.0.0-a").unwrap()),
            Ordering::Less
        );
        for valid in [
            "0.0.0",
            "1.2.3-0",
            "1.2.3-0a",
            "1.2.3--",
            "1.2.3-x-y.z",
            "1.0.0+001",
            "1.0.0-a+b.c",
        ] {
            assert!(Semver::parse(valid).is_some(), "{valid}");
        }
        for invalid in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.02.3",
            "1.2.03",
            "1.2.3-01",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-a..b",
            "1.2.3+a..b",
            "v1.2.3",
            "1.2.3-α",
            " 1.2.3",
            "1.2.3 ",
            "-1.2.3",
            "1.2.3-beta!",
            "1.2.3+a+b",
            "1.x",
            "1.2.-3",
            "18446744073709551616.0.0",
        ] {
            assert!(Semver::parse(invalid).is_none(), "{invalid:?}");
        }
    }

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

    fn two_way() -> Value {
        json!([{"name": "on", "value": true}, {"name": "off", "value": false}])
    }

    #[test]
    fn the_kill_switch_overrides_everything() {
        let mut flag = json!({
            "key": "checkout", "kind": "boolean", "variations": two_way(),
            "enabled": true, "killed": true, "off_variation": "off",
            "default_serve": {"variation": "on"},
            "rules": [{"clauses": [clause("targetingKey", "equals", json!(["vip"]))],
                       "serve": {"variation": "on"}}],
        });
        for ctx in [
            json!({"targetingKey": "vip"}),
            json!({"targetingKey": "other"}),
            json!({}),
        ] {
            let compiled = compile(flag.clone());
            let answer = compiled.evaluate(&context(ctx));
            assert_eq!((answer.variant, answer.reason), ("off", Reason::Disabled));
            assert_eq!(answer.value, &json!(false));
            assert_eq!(answer.rule_index, None);
        }
        // Killed and disabled: still off; enabled and not killed: the rule serves again.
        flag["enabled"] = json!(false);
        let compiled = compile(flag.clone());
        let answer = compiled.evaluate(&EvaluationContext::new("vip"));
        assert_eq!((answer.variant, answer.reason), ("off", Reason::Disabled));
        flag["enabled"] = json!(true);
        flag["killed"] = json!(false);
        let compiled = compile(flag);
        let answer = compiled.evaluate(&EvaluationContext::new("vip"));
        assert_eq!(
            (answer.variant, answer.reason, answer.rule_index),
            ("on", Reason::TargetingMatch, Some(0))
        );
    }

    #[test]
    fn reasons_follow_the_evaluation_order() {
        let mut flag = json!({
            "key": "banner", "kind": "string",
            "variations": [{"name": "a", "value": "A"}, {"name": "b", "value": "B"}, {"name": "c", "value": "C"}],
            "enabled": true, "off_variation": "c",
            "default_serve": {"variation": "a"},
        });
        let anyone = EvaluationContext::new("u1");
        assert_eq!(
            compile(flag.clone()).evaluate(&anyone).reason,
            Reason::Static
        );
        flag["rules"] = json!([
            {"clauses": [clause("plan", "equals", json!(["pro"]))], "serve": {"variation": "b"}},
            {"clauses": [clause("plan", "in", json!(["pro", "team"]))], "serve": {"variation": "c"}},
        ]);
        let compiled = compile(flag.clone());
        assert_eq!(compiled.evaluate(&anyone).reason, Reason::Default);
        let pro = compiled.evaluate(&anyone.clone().with("plan", "pro"));
        assert_eq!((pro.variant, pro.rule_index), ("b", Some(0)));
        let team = compiled.evaluate(&anyone.clone().with("plan", "team"));
        assert_eq!(
            (team.variant, team.rule_index, team.reason),
            ("c", Some(1), Reason::TargetingMatch)
        );
        flag["default_serve"] = json!({"rollout": {"variations": [{"variation": "a", "weight": 50}, {"variation": "b", "weight": 50}]}});
        let compiled = compile(flag);
        let split = compiled.evaluate(&anyone);
        assert_eq!(split.reason, Reason::Split);
        assert_eq!(split.bucket, Some(bucket("banner", "u1")));
    }

    #[test]
    fn segments_include_exclude_and_match_rules() {
        let segments: Segments = [serde_json::from_value::<Segment>(json!({
            "key": "beta", "name": "Beta testers",
            "included": ["alice"], "excluded": ["mallory", "alice-2"],
            "rules": [{"clauses": [clause("email", "ends_with", json!(["@meridian.dev"]))]}],
        }))
        .unwrap()]
        .into_iter()
        .collect();
        let flag = |operator: &str| {
            let mut flag = rule_flag(json!([{"operator": operator, "values": ["beta"]}]));
            flag["key"] = json!("seg");
            CompiledFlag::compile(&config(flag), &segments).unwrap()
        };
        let (inside, outside) = (flag("in_segment"), flag("not_in_segment"));
        let cases = [
            (json!({"targetingKey": "alice"}), true),
            (json!({"targetingKey": "bob"}), false),
            (
                json!({"targetingKey": "bob", "email": "bob@meridian.dev"}),
                true,
            ),
            (
                json!({"targetingKey": "mallory", "email": "m@meridian.dev"}),
                false,
            ),
            (json!({"email": "anonymous@meridian.dev"}), true),
            (json!({}), false),
        ];
        for (ctx, expected) in cases {
            let ctx = context(ctx);
            assert_eq!(inside.evaluate(&ctx).variant == "on", expected, "{ctx:?}");
            assert_eq!(outside.evaluate(&ctx).variant == "on", !expected, "{ctx:?}");
        }
    }

    /// A string flag `v0..vn` whose default serve is a rollout with these weights.
    fn rollout_flag(key: &str, weights: &[u32]) -> CompiledFlag {
        let variations: Vec<Value> = (0..weights.len())
            .map(|i| json!({"name": format!("v{i}"), "value": format!("V{i}")}))
            .collect();
        let shares: Vec<Value> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| json!({"variation": format!("v{i}"), "weight": w}))
            .collect();
        compile(json!({
            "key": key, "kind": "string", "variations": variations,
            "enabled": true, "off_variation": "v0",
            "default_serve": {"rollout": {"variations": shares}},
        }))
    }

    #[test]
    fn rollouts_split_within_one_point_at_100k_keys() {
        const KEYS: usize = 100_000;
        for weights in [&[30, 70][..], &[10, 20, 70][..], &[1, 49, 50][..]] {
            let flag = rollout_flag("split-test", weights);
            let mut counts = vec![0usize; weights.len()];
            for i in 0..KEYS {
                let answer = flag.evaluate(&EvaluationContext::new(format!("user-{i}")));
                assert_eq!(answer.reason, Reason::Split);
                let index: usize = answer.variant[1..].parse().unwrap();
                counts[index] += 1;
            }
            for (weight, count) in weights.iter().zip(&counts) {
                let percent = *count as f64 * 100.0 / KEYS as f64;
                assert!(
                    (percent - f64::from(*weight)).abs() <= 1.0,
                    "{weights:?}: {counts:?} ({percent:.2}% for {weight}%)"
                );
            }
        }
    }

    #[test]
    fn raising_a_rollout_keeps_everyone_who_was_in() {
        let before = rollout_flag("new-checkout", &[10, 90]);
        let after = rollout_flag("new-checkout", &[20, 80]);
        let (mut was_in, mut now_in) = (0, 0);
        for i in 0..100_000 {
            let ctx = EvaluationContext::new(format!("user-{i}"));
            let (old, new) = (before.evaluate(&ctx), after.evaluate(&ctx));
            assert_eq!(
                old.bucket, new.bucket,
                "the bucket does not depend on weights"
            );
            if old.variant == "v0" {
                was_in += 1;
                assert_eq!(new.variant, "v0", "user-{i} left the rollout");
            }
            now_in += usize::from(new.variant == "v0");
        }
        assert!(was_in > 9_000 && now_in > 19_000, "{was_in} then {now_in}");
    }

    #[test]
    fn rollouts_bucket_by_group_and_attribute() {
        let mut flag = json!({
            "key": "f1", "kind": "boolean", "variations": two_way(),
            "enabled": true, "off_variation": "off",
            "default_serve": {"rollout": {"variations": [{"variation": "on", "weight": 50}, {"variation": "off", "weight": 50}],
                                          "group": "shared", "bucket_by": "company"}},
        });
        let compiled = compile(flag.clone());
        let answer = compiled.evaluate(&context(json!({"targetingKey": "u", "company": "acme"})));
        assert_eq!(answer.bucket, Some(bucket("shared", "acme")));
        let by_number = compiled.evaluate(&context(json!({"company": 4242})));
        assert_eq!(by_number.bucket, Some(bucket("shared", "4242")));
        for bad in [
            json!({"targetingKey": "u"}),
            json!({"company": ""}),
            json!({"company": 1.5}),
            json!({"company": [1]}),
        ] {
            let answer = compiled.evaluate(&context(bad.clone()));
            assert_eq!(answer.error_code, Some(ErrorCode::InvalidContext), "{bad}");
            assert_eq!(
                (answer.reason, answer.value, answer.variant),
                (Reason::Error, &Value::Null, "")
            );
        }
        flag["default_serve"]["rollout"]
            .as_object_mut()
            .unwrap()
            .retain(|k, _| k == "variations");
        let by_key = compile(flag);
        assert_eq!(
            by_key.evaluate(&EvaluationContext::new("u")).bucket,
            Some(bucket("f1", "u"))
        );
        for anonymous in [json!({}), json!({"targetingKey": ""})] {
            let answer = by_key.evaluate(&context(anonymous));
            assert_eq!(answer.error_code, Some(ErrorCode::TargetingKeyMissing));
            let ofrep = serde_json::to_value(answer.to_ofrep("f1")).unwrap();
            assert_eq!(ofrep["errorCode"], "TARGETING_KEY_MISSING");
        }
    }

    #[test]
    fn validation_names_the_place() {
        let segments = Segments::new();
        let base = |rules: Value| {
            json!({
                "key": "f", "kind": "boolean", "variations": two_way(),
                "enabled": true, "off_variation": "off",
                "default_serve": {"variation": "off"}, "rules": rules,
            })
        };
        let rule = |clause: Value| json!({"clauses": [clause], "serve": {"variation": "on"}});
        let ok = rule(clause("a", "equals", json!(["x"])));
        let cases = [
            (
                base(json!([
                    ok.clone(),
                    ok,
                    rule(clause("app", "semver_lt", json!(["1.x"])))
                ])),
                r#"rules[2].clauses[0]: operator semver_lt needs a semver value, got "1.x""#,
            ),
            (
                base(json!([rule(clause("a", "lt", json!(["ten"])))])),
                r#"rules[0].clauses[0]: operator lt needs a number, got "ten""#,
            ),
            (
                base(json!([rule(clause("a", "equals", json!(["x", "y"])))])),
                "rules[0].clauses[0]: operator equals needs exactly one value, got 2",
            ),
            (
                base(json!([rule(clause("a", "in", json!([])))])),
                "rules[0].clauses[0]: operator in needs at least one value",
            ),
            (
                base(json!([rule(clause("", "in", json!(["x"])))])),
                "rules[0].clauses[0]: operator in needs an attribute",
            ),
            (
                base(json!([rule(clause("a", "contains", json!([1])))])),
                "rules[0].clauses[0]: operator contains needs string values, got 1",
            ),
            (
                base(json!([rule(
                    json!({"attribute": "a", "operator": "gt", "values": [1], "case_insensitive": true})
                )])),
                "rules[0].clauses[0]: case_insensitive applies to string operators, not gt",
            ),
            (
                base(json!([rule(
                    json!({"operator": "in_segment", "values": ["beta"]})
                )])),
                r#"rules[0].clauses[0]: unknown segment "beta""#,
            ),
            (
                base(json!([{"clauses": [], "serve": {"variation": "on"}}])),
                "rules[0]: a rule needs at least one clause (default_serve serves everyone else)",
            ),
            (
                base(
                    json!([{"clauses": [clause("a", "equals", json!(["x"]))], "serve": {"variation": "maybe"}}]),
                ),
                r#"rules[0].serve: unknown variation "maybe""#,
            ),
            (
                json!({"key": "f", "kind": "boolean", "variations": two_way(), "enabled": true,
                       "off_variation": "nope", "default_serve": {"variation": "on"}}),
                r#"off_variation: unknown variation "nope""#,
            ),
            (
                json!({"key": "f", "kind": "boolean", "variations": two_way(), "enabled": true, "off_variation": "off",
                       "default_serve": {"rollout": {"variations": [{"variation": "on", "weight": 30}, {"variation": "off", "weight": 60}]}}}),
                "default_serve.rollout.variations: rollout weights sum to 90, not 100",
            ),
            (
                json!({"key": "f", "kind": "boolean", "variations": two_way(), "enabled": true, "off_variation": "off",
                       "default_serve": {"rollout": {"variations": [{"variation": "on", "weight": 30}, {"variation": "of", "weight": 70}]}}}),
                r#"default_serve.rollout.variations[1]: unknown variation "of""#,
            ),
            (
                json!({"key": "f", "kind": "boolean", "variations": two_way(), "enabled": true, "off_variation": "off",
                       "default_serve": {"rollout": {"variations": [{"variation": "on", "weight": 30}, {"variation": "on", "weight": 70}]}}}),
                r#"default_serve.rollout.variations[1]: variation "on" appears twice"#,
            ),
            (
                json!({"key": "f", "kind": "boolean", "variations": [{"name": "on", "value": true}, {"name": "on", "value": false}],
                       "enabled": true, "off_variation": "on", "default_serve": {"variation": "on"}}),
                r#"variations[1].name: duplicate variation name "on""#,
            ),
            (
                json!({"key": "f", "kind": "boolean", "variations": [{"name": "on", "value": true}, {"name": "off", "value": "no"}],
                       "enabled": true, "off_variation": "off", "default_serve": {"variation": "on"}}),
                r#"variations[1].value: a boolean flag's variations are booleans, got "no""#,
            ),
            (
                json!({"key": "f", "kind": "json", "variations": [{"name": "a", "value": 3}],
                       "enabled": true, "off_variation": "a", "default_serve": {"variation": "a"}}),
                "variations[0].value: a json flag's variations are JSON objects or arrays, got 3",
            ),
            (
                json!({"key": "my flag", "kind": "boolean", "variations": two_way(),
                       "enabled": true, "off_variation": "off", "default_serve": {"variation": "on"}}),
                r#"key: a key is made of letters, digits, '.', '_' and '-', and starts with a letter or digit; got "my flag""#,
            ),
        ];
        for (flag, expected) in cases {
            assert_eq!(compile_error(flag, &segments), expected);
        }
    }

    #[test]
    fn segment_errors_are_reported_where_they_are_used() {
        let segments: Segments = [
            serde_json::from_value::<Segment>(json!({
                "key": "nested", "rules": [{"clauses": [{"operator": "in_segment", "values": ["other"]}]}],
            }))
            .unwrap(),
            serde_json::from_value::<Segment>(json!({
                "key": "bad-version", "rules": [{"clauses": [clause("v", "semver_gt", json!(["2"]))]}],
            }))
            .unwrap(),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            segments
                .get("nested")
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string(),
            "rules[0].clauses[0]: a segment cannot refer to segments"
        );
        let flag = rule_flag(json!([{"operator": "in_segment", "values": ["bad-version"]}]));
        assert_eq!(
            compile_error(flag, &segments),
            r#"rules[0].clauses[0]: segment "bad-version" is invalid: rules[0].clauses[0]: operator semver_gt needs a semver value, got "2""#
        );
    }

    fn full_flag() -> Flag {
        serde_json::from_value(json!({
            "key": "new-checkout", "name": "New checkout", "description": "The one-page checkout.",
            "kind": "boolean", "variations": two_way(),
            "environments": {
                "development": {"enabled": true, "off_variation": "off", "default_serve": {"variation": "on"}},
                "production": {
                    "enabled": true, "off_variation": "off",
                    "default_serve": {"rollout": {"variations": [{"variation": "on", "weight": 10}, {"variation": "off", "weight": 90}]}},
                    "rules": [{"description": "staff", "clauses": [
                        {"attribute": "email", "operator": "ends_with", "values": ["@meridian.dev"], "case_insensitive": true}
                    ], "serve": {"variation": "on"}}],
                },
            },
            "tags": ["checkout"], "created_at_ms": 1, "updated_at_ms": 2,
        }))
        .unwrap()
    }

    #[test]
    fn flags_validate_every_environment() {
        let mut flag = full_flag();
        flag.validate(&Segments::new()).unwrap();
        let production = flag.config("production").unwrap();
        assert_eq!(production.key, "new-checkout");
        let staff = EvaluationContext::new("u1").with("email", "Ana@Meridian.dev");
        let answer = evaluate(&production, &Segments::new(), &staff);
        assert_eq!(
            (answer.value, answer.reason),
            (json!(true), Reason::TargetingMatch)
        );
        assert_eq!(
            evaluate(
                &flag.config("development").unwrap(),
                &Segments::new(),
                &staff
            )
            .reason,
            Reason::Static
        );
        assert!(flag.config("staging").is_none());
        flag.environments.get_mut("production").unwrap().rules[0].clauses[0].values =
            vec![json!(5)];
        assert_eq!(
            flag.validate(&Segments::new()).unwrap_err().to_string(),
            "environments.production.rules[0].clauses[0]: operator ends_with needs string values, got 5"
        );
        // An invalid configuration evaluates to PARSE_ERROR, never a panic.
        let broken = evaluate(
            &flag.config("production").unwrap(),
            &Segments::new(),
            &staff,
        );
        assert_eq!(broken.error_code, Some(ErrorCode::ParseError));
        assert!(broken
            .error_details
            .unwrap()
            .starts_with("rules[0].clauses[0]"));
    }

    #[test]
    fn typed_evaluation_reports_type_mismatch() {
        let flag = CompiledFlag::compile(
            &full_flag().config("development").unwrap(),
            &Segments::new(),
        )
        .unwrap();
        let ctx = EvaluationContext::new("u");
        assert_eq!(
            flag.evaluate_as(&ctx, FlagKind::Boolean).value,
            &json!(true)
        );
        let mismatch = flag.evaluate_as(&ctx, FlagKind::String);
        assert_eq!(mismatch.error_code, Some(ErrorCode::TypeMismatch));
        assert_eq!(flag.variation("off"), Some(&json!(false)));
        assert_eq!(
            (flag.key(), flag.kind()),
            ("new-checkout", FlagKind::Boolean)
        );
    }

    #[test]
    fn wire_names() {
        let flag = full_flag();
        let json = serde_json::to_value(&flag).unwrap();
        assert_eq!(serde_json::from_value::<Flag>(json.clone()).unwrap(), flag);
        assert_eq!(
            json["environments"]["production"]["default_serve"]["rollout"]["variations"][0]
                ["weight"],
            10
        );
        assert_eq!(
            json["environments"]["production"]["rules"][0]["clauses"][0]["operator"],
            "ends_with"
        );
        let config = serde_json::to_value(flag.config("development").unwrap()).unwrap();
        assert_eq!(config["key"], "new-checkout");
        assert_eq!(config["off_variation"], "off");
        assert_eq!(config["killed"], false);

        let request: OfrepEvaluationRequest = serde_json::from_value(
            json!({"context": {"targetingKey": "u1", "plan": "pro", "n": 3}}),
        )
        .unwrap();
        assert_eq!(request.context.targeting_key.as_deref(), Some("u1"));
        assert_eq!(request.context.attributes.len(), 2);
        assert_eq!(
            serde_json::to_value(&request.context).unwrap(),
            json!({"targetingKey": "u1", "plan": "pro", "n": 3})
        );
        let empty: OfrepEvaluationRequest = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty.context, EvaluationContext::default());

        let compiled =
            CompiledFlag::compile(&flag.config("production").unwrap(), &Segments::new()).unwrap();
        let success = compiled
            .evaluate(&EvaluationContext::new("u1"))
            .to_ofrep("new-checkout");
        let value = serde_json::to_value(&success).unwrap();
        assert_eq!(value["key"], "new-checkout");
        assert_eq!(value["reason"], "SPLIT");
        assert!(value["variant"] == "on" || value["variant"] == "off");
        assert_eq!(value["metadata"], json!({}));
        let failure = OfrepFlagResult::Failure(OfrepEvaluationFailure {
            key: "nope".into(),
            error_code: ErrorCode::FlagNotFound,
            error_details: Some("no flag nope".into()),
        });
        assert_eq!(
            serde_json::to_value(&failure).unwrap(),
            json!({"key": "nope", "errorCode": "FLAG_NOT_FOUND", "errorDetails": "no flag nope"})
        );
        let bulk = OfrepBulkEvaluationSuccess {
            flags: vec![success, failure],
        };
        let text = serde_json::to_string(&bulk).unwrap();
        assert_eq!(
            serde_json::from_str::<OfrepBulkEvaluationSuccess>(&text).unwrap(),
            bulk
        );
        let mut with_metadata: OfrepEvaluationSuccess = serde_json::from_value(json!({
            "key": "k", "value": {"a": 1}, "reason": "TARGETING_MATCH", "variant": "v",
            "metadata": {"team": "growth", "version": 3, "beta": true},
        }))
        .unwrap();
        assert_eq!(
            with_metadata.metadata["beta"],
            FlagMetadataValue::Bool(true)
        );
        with_metadata.metadata.clear();
        assert_eq!(
            serde_json::to_value(&with_metadata).unwrap()["metadata"],
            json!({})
        );
        assert_eq!(
            serde_json::to_value(OfrepBulkEvaluationFailure {
                error_code: ErrorCode::InvalidContext,
                error_details: None
            })
            .unwrap(),
            json!({"errorCode": "INVALID_CONTEXT"})
        );
        for code in [
            ErrorCode::FlagNotFound,
            ErrorCode::ParseError,
            ErrorCode::TargetingKeyMissing,
            ErrorCode::InvalidContext,
            ErrorCode::TypeMismatch,
            ErrorCode::General,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
        for reason in [
            Reason::Static,
            Reason::TargetingMatch,
            Reason::Split,
            Reason::Disabled,
            Reason::Default,
            Reason::Error,
            Reason::Cached,
            Reason::Stale,
            Reason::Unknown,
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
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
        fn buckets_are_1_to_100_and_match_the_hash(group in ".{0,12}", key in ".{0,24}") {
            let value = bucket(&group, &key);
            prop_assert!((1..=100).contains(&value));
            let joined = format!("{group}:{key}");
            prop_assert_eq!(bucket_hash(&group, &key), murmur3_x86_32(joined.as_bytes(), 0));
            prop_assert_eq!(u32::from(value), murmur3_x86_32(joined.as_bytes(), 0) % 100 + 1);
        }

        #[test]
        fn semver_precedence_is_a_total_order(a in "[0-2]\\.[0-2]\\.[0-2](-(alpha|beta|[0-9]|1[0-9])(\\.(rc|[0-9])){0,2})?", b in "[0-2]\\.[0-2]\\.[0-2](-(alpha|beta|[0-9]|1[0-9])(\\.(rc|[0-9])){0,2})?") {
            let (x, y) = (Semver::parse(&a).unwrap(), Semver::parse(&b).unwrap());
            prop_assert_eq!(x.precedence(&y), y.precedence(&x).reverse());
            prop_assert_eq!(x.precedence(&y) == Ordering::Equal, a == b);
        }
    }
}
