//! The configuration's wire types, as the admin API sends them: a [`Flag`] with its
//! [`Variation`]s and one [`FlagEnvironmentConfig`] per environment, one environment's view
//! of it ([`FlagConfig`]), its [`Rule`]s and [`Clause`]s, what a rule serves ([`Serve`],
//! [`Rollout`]) and the [`Segment`]s clauses may name. Checking them is in
//! [`validation`](super::validation); evaluating them in [`compiled`](super::compiled).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

    pub(super) fn values_noun(self) -> &'static str {
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
