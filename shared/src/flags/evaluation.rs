//! Evaluation results: [`EvaluationRef`] borrows its answer from the compiled flag (the
//! hot path allocates nothing), [`Evaluation`] owns it; both convert to OFREP bodies.
//! [`evaluate`] compiles and evaluates in one call, answering `PARSE_ERROR` for an invalid
//! configuration.

use super::{
    CompiledFlag, ErrorCode, EvaluationContext, FlagConfig, OfrepEvaluationFailure,
    OfrepEvaluationSuccess, OfrepFlagResult, Reason, Segments,
};
use serde_json::Value;
use std::collections::BTreeMap;

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
