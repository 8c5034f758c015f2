//! The evaluation's wire types: the [`EvaluationContext`] a flag is evaluated for, the
//! [`Reason`] and [`ErrorCode`] of an answer, and the bodies of the OpenFeature Remote
//! Evaluation Protocol (single and bulk, success and failure).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::test_support::*;
    use crate::flags::{CompiledFlag, Flag, Segments};
    use serde_json::json;

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
}
