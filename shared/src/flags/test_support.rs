//! Helpers the flags' unit tests share: configurations and contexts from JSON, a one-rule
//! flag, and a flag with every part filled in.

use serde_json::{json, Value};

use super::{CompiledFlag, EvaluationContext, Flag, FlagConfig, Reason, Segments};

pub(super) fn config(value: Value) -> FlagConfig {
    serde_json::from_value(value).expect("a FlagConfig")
}

pub(super) fn compile(value: Value) -> CompiledFlag {
    CompiledFlag::compile(&config(value), &Segments::new()).expect("a valid flag")
}

pub(super) fn context(value: Value) -> EvaluationContext {
    serde_json::from_value(value).expect("a context")
}

pub(super) fn compile_error(value: Value, segments: &Segments) -> String {
    CompiledFlag::compile(&config(value), segments)
        .expect_err("an invalid flag")
        .to_string()
}

/// A boolean flag: rule 0 has `clauses` and serves `on`; everyone else gets `off`.
pub(super) fn rule_flag(clauses: Value) -> Value {
    json!({
        "key": "f", "kind": "boolean",
        "variations": [{"name": "on", "value": true}, {"name": "off", "value": false}],
        "enabled": true, "off_variation": "off",
        "default_serve": {"variation": "off"},
        "rules": [{"clauses": clauses, "serve": {"variation": "on"}}],
    })
}

pub(super) fn clause_matches(clause: &Value, ctx: &Value) -> bool {
    let flag = compile(rule_flag(json!([clause])));
    let answer = flag.evaluate(&context(ctx.clone()));
    assert!(!answer.is_error(), "{clause} {ctx}: {answer:?}");
    answer.reason == Reason::TargetingMatch
}

pub(super) fn clause(attribute: &str, operator: &str, values: Value) -> Value {
    json!({"attribute": attribute, "operator": operator, "values": values})
}

/// A flag with two environments, rules, a rollout and tags: every part filled in.
pub(super) fn full_flag() -> Flag {
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

/// The variations of a boolean flag: `on` (true) and `off` (false).
pub(super) fn two_way() -> Value {
    json!([{"name": "on", "value": true}, {"name": "off", "value": false}])
}
