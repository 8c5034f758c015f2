//! The straightforward interpreter (tests only): evaluates a [`FlagConfig`] as the module
//! documentation of [`crate::flags`] states it, reading the configuration as it is sent
//! (names looked up in the context's map for every clause, strings lowercased into new
//! `String`s, versions parsed into [`Semver`]s, `"{group}:{key}"` built and hashed in one
//! piece). It shares no evaluation code with [`CompiledFlag`]; the property test below
//! checks that the two answer alike on random flags and contexts.
//!
//! The configuration must be valid ([`CompiledFlag::compile`] accepts it): the
//! interpreter does not validate.

use serde_json::Value;

use super::{
    murmur3_x86_32, Clause, Evaluation, EvaluationContext, FlagConfig, Operator, Reason, Rollout,
    Segment, Segments, Semver, Serve, TARGETING_KEY,
};
use super::{CompiledFlag, ErrorCode, PreparedContext};

/// The answer for `context`; where the compiled evaluator answers an error, so does this,
/// with the same code (the details are the evaluator's wording, not compared).
pub(super) fn interpret(
    flag: &FlagConfig,
    segments: &Segments,
    context: &EvaluationContext,
) -> Evaluation {
    let config = &flag.environment;
    if config.killed || !config.enabled {
        return answer(flag, &config.off_variation, Reason::Disabled, None, None);
    }
    for (index, rule) in config.rules.iter().enumerate() {
        if rule
            .clauses
            .iter()
            .all(|clause| clause_matches(clause, segments, context))
        {
            return serve(
                flag,
                &rule.serve,
                context,
                Reason::TargetingMatch,
                Some(index),
            );
        }
    }
    let reason = match (&config.default_serve, config.rules.is_empty()) {
        (Serve::Rollout(_), _) => Reason::Split,
        (Serve::Variation(_), true) => Reason::Static,
        (Serve::Variation(_), false) => Reason::Default,
    };
    serve(flag, &config.default_serve, context, reason, None)
}

fn answer(
    flag: &FlagConfig,
    variation: &str,
    reason: Reason,
    rule_index: Option<usize>,
    bucket: Option<u8>,
) -> Evaluation {
    let value = flag
        .variations
        .iter()
        .find(|v| v.name == variation)
        .map(|v| v.value.clone())
        .expect("a valid flag names its variations");
    Evaluation {
        value,
        variant: variation.to_owned(),
        reason,
        error_code: None,
        error_details: None,
        rule_index,
        bucket,
    }
}

fn serve(
    flag: &FlagConfig,
    serve: &Serve,
    context: &EvaluationContext,
    reason: Reason,
    rule_index: Option<usize>,
) -> Evaluation {
    match serve {
        Serve::Variation(name) => answer(flag, name, reason, rule_index, None),
        Serve::Rollout(rollout) => match rollout_key(rollout, context) {
            Ok(key) => {
                let group = rollout.group.as_deref().unwrap_or(&flag.key);
                let hash = murmur3_x86_32(format!("{group}:{key}").as_bytes(), 0);
                let bucket = (hash % 100 + 1) as u8;
                let mut end = 0;
                let share = rollout
                    .variations
                    .iter()
                    .find(|share| {
                        end += share.weight;
                        u32::from(bucket) <= end
                    })
                    .expect("weights sum to 100");
                answer(flag, &share.variation, reason, rule_index, Some(bucket))
            }
            Err(code) => Evaluation::error(code, "(the interpreter's)"),
        },
    }
}

/// The text a rollout hashes: the targeting key, or the `bucket_by` attribute (a
/// non-empty string, or an integer as its decimal digits).
fn rollout_key(rollout: &Rollout, context: &EvaluationContext) -> Result<String, ErrorCode> {
    match rollout.bucket_by.as_deref() {
        None | Some(TARGETING_KEY) => match context.targeting_key.as_deref() {
            Some(key) if !key.is_empty() => Ok(key.to_owned()),
            _ => Err(ErrorCode::TargetingKeyMissing),
        },
        Some(name) => match context.attributes.get(name) {
            Some(Value::String(key)) if !key.is_empty() => Ok(key.clone()),
            Some(Value::Number(number)) => number
                .as_i64()
                .map(|n| n.to_string())
                .or_else(|| number.as_u64().map(|n| n.to_string()))
                .ok_or(ErrorCode::InvalidContext),
            _ => Err(ErrorCode::InvalidContext),
        },
    }
}

fn clause_matches(clause: &Clause, segments: &Segments, context: &EvaluationContext) -> bool {
    let op = clause.operator;
    if matches!(op, Operator::InSegment | Operator::NotInSegment) {
        let inside = clause.values.iter().any(|key| {
            let segment = segments
                .get(key.as_str().expect("segment keys are strings"))
                .expect("a valid flag names known segments");
            segment_contains(segment, context)
        });
        return inside != (op == Operator::NotInSegment);
    }
    let value = if clause.attribute == TARGETING_KEY {
        match &context.targeting_key {
            Some(key) => Value::String(key.clone()),
            None => return false,
        }
    } else {
        match context.attributes.get(&clause.attribute) {
            None | Some(Value::Null) => return false,
            Some(value) => value.clone(),
        }
    };
    let positive = match &value {
        Value::Array(items) => items.iter().any(|item| holds(clause, item)),
        scalar => holds(clause, scalar),
    };
    let negative = matches!(op, Operator::NotEquals | Operator::NotIn);
    positive != negative
}

fn segment_contains(segment: &Segment, context: &EvaluationContext) -> bool {
    if let Some(key) = &context.targeting_key {
        if segment.included.contains(key) {
            return true;
        }
        if segment.excluded.contains(key) {
            return false;
        }
    }
    segment.rules.iter().any(|rule| {
        rule.clauses
            .iter()
            .all(|clause| clause_matches(clause, &Segments::new(), context))
    })
}

/// Whether one scalar (an array's element, or the attribute) passes the positive form of
/// the clause's operator.
fn holds(clause: &Clause, value: &Value) -> bool {
    let fold = |text: &str| {
        if clause.case_insensitive {
            text.to_lowercase()
        } else {
            text.to_owned()
        }
    };
    let strings = || clause.values.iter().filter_map(Value::as_str).map(fold);
    match clause.operator {
        Operator::Equals | Operator::NotEquals | Operator::In | Operator::NotIn => match value {
            Value::String(text) => strings().any(|s| s == fold(text)),
            Value::Number(number) => {
                let number = number.as_f64();
                clause
                    .values
                    .iter()
                    .any(|v| v.is_number() && v.as_f64() == number)
            }
            Value::Bool(flag) => clause.values.contains(&Value::Bool(*flag)),
            _ => false,
        },
        Operator::Contains | Operator::StartsWith | Operator::EndsWith => match value {
            Value::String(text) => {
                let text = fold(text);
                strings().any(|needle| match clause.operator {
                    Operator::Contains => text.contains(&needle),
                    Operator::StartsWith => text.starts_with(&needle),
                    _ => text.ends_with(&needle),
                })
            }
            _ => false,
        },
        Operator::Lt | Operator::Lte | Operator::Gt | Operator::Gte => {
            let number = match value {
                Value::Number(number) => number.as_f64(),
                Value::String(text) => text.parse::<f64>().ok().filter(|n| n.is_finite()),
                _ => None,
            };
            let bound = clause.values[0].as_f64().expect("a number");
            match number {
                Some(n) => match clause.operator {
                    Operator::Lt => n < bound,
                    Operator::Lte => n <= bound,
                    Operator::Gt => n > bound,
                    _ => n >= bound,
                },
                None => false,
            }
        }
        Operator::SemverEq
        | Operator::SemverLt
        | Operator::SemverLte
        | Operator::SemverGt
        | Operator::SemverGte => {
            let Some(version) = value.as_str().and_then(Semver::parse) else {
                return false;
            };
            let bound = clause.values[0]
                .as_str()
                .and_then(Semver::parse)
                .expect("a version");
            let ordering = version.precedence(&bound);
            match clause.operator {
                Operator::SemverEq => ordering.is_eq(),
                Operator::SemverLt => ordering.is_lt(),
                Operator::SemverLte => ordering.is_le(),
                Operator::SemverGt => ordering.is_gt(),
                _ => ordering.is_ge(),
            }
        }
        Operator::InSegment | Operator::NotInSegment => unreachable!("handled by the caller"),
    }
}

/// The compiled evaluator's answer in the interpreter's terms (error details dropped),
/// after checking that it answers the same for the context prepared.
pub(super) fn compiled_answer(flag: &CompiledFlag, context: &EvaluationContext) -> Evaluation {
    let answer = flag.evaluate(context);
    let prepared = PreparedContext::new(context);
    assert_eq!(
        flag.evaluate_prepared(&prepared),
        answer,
        "prepared {context:?}"
    );
    let mut answer = answer.into_owned();
    if answer.error_details.is_some() {
        answer.error_details = Some("(the interpreter's)".to_owned());
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config as ProptestConfig, RngSeed};
    use serde_json::{json, Map};

    /// Attribute names: some of one length and first byte, two that share their length
    /// and first and last 8 bytes, the targeting key, and 20 more for flags that read
    /// more attributes than the evaluator has slots for.
    fn attribute_name() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => prop::sample::select(vec![
                "email", "plan", "age", "app_version", "x", "attribute_one_long_name",
                "attribute_two_long_name", "targetingKey",
            ])
            .prop_map(str::to_owned),
            1 => prop::sample::select(vec!["", "é", "beta", "country"]).prop_map(str::to_owned),
            1 => (0..20u8).prop_map(|i| format!("attr-{i}")),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "alice",
            "ALICE",
            "Alice@Meridian.DEV",
            "bob@meridian.dev",
            "x@meridian.de",
            "US",
            "us",
            "C17",
            "été",
            "ÉTÉ",
            "STRASSE",
            "straße",
            "",
            "2.3.1",
            "2.0.0-rc.1",
            "1.10.0",
            "1.0.0-alpha.1",
            "1.2",
            "v1.2.3",
            "42",
            "-1.5",
            "1e2",
            "NaN",
            "inf",
            "enterprise",
            "user-00000001",
            "ǅ",
            "K",
        ])
        .prop_map(str::to_owned)
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => text().prop_map(Value::from),
            2 => prop::sample::select(vec![-3i64, 0, 1, 42, 64, 65, 66, 100]).prop_map(Value::from),
            1 => prop::sample::select(vec![-1.5f64, 1.5, -0.0, 65.0, 1e300]).prop_map(Value::from),
            1 => any::<bool>().prop_map(Value::from),
            1 => Just(Value::Null),
        ]
    }

    fn attribute_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            6 => scalar(),
            1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::from),
            1 => Just(json!({"a": 1})),
            1 => Just(json!([[1], "x"])),
            1 => Just(Value::from(u64::MAX)),
        ]
    }

    fn context() -> impl Strategy<Value = EvaluationContext> {
        (
            prop::option::weighted(0.8, prop_oneof![context_key(), text()]),
            prop::collection::vec((attribute_name(), attribute_value()), 0..10),
            // Decoys, sometimes past the size the evaluator scans in one pass.
            prop_oneof![4 => Just(0usize), 1 => 1..40usize],
        )
            .prop_map(|(targeting_key, attributes, decoys)| {
                let mut map = Map::new();
                for i in 0..decoys {
                    map.insert(format!("decoy-{i}"), Value::from(i));
                }
                for (name, value) in attributes {
                    map.insert(name, value);
                }
                EvaluationContext {
                    targeting_key,
                    attributes: map,
                }
            })
    }

    const OPERATORS: [&str; 16] = [
        "equals",
        "not_equals",
        "in",
        "not_in",
        "contains",
        "starts_with",
        "ends_with",
        "lt",
        "lte",
        "gt",
        "gte",
        "semver_eq",
        "semver_lt",
        "semver_lte",
        "semver_gt",
        "semver_gte",
    ];

    /// A clause that reads an attribute (values of the operator's type, mostly valid).
    fn attribute_clause() -> impl Strategy<Value = Value> {
        (
            attribute_name(),
            prop::sample::select(OPERATORS.to_vec()),
            prop::collection::vec(scalar(), 1..12),
            any::<bool>(),
            prop::sample::select(vec!["1.0.0", "2.0.0-rc.1", "1.10.0", "2.3.1", "0.0.1-a.b"]),
            prop::sample::select(vec![-1.5f64, 0.0, 42.0, 65.0]),
        )
            .prop_map(
                |(attribute, operator, values, case_insensitive, version, number)| {
                    let values: Vec<Value> = match operator {
                        "equals" | "not_equals" => values[..1].to_vec(),
                        "in" | "not_in" => values,
                        "contains" | "starts_with" | "ends_with" => values
                            .into_iter()
                            .map(|v| v.as_str().map_or_else(|| Value::from("e"), Value::from))
                            .collect(),
                        "lt" | "lte" | "gt" | "gte" => vec![Value::from(number)],
                        _ => vec![Value::from(version)],
                    };
                    let strings = !(operator.starts_with('l')
                        || operator.starts_with('g')
                        || operator.starts_with("semver"));
                    json!({"attribute": attribute, "operator": operator, "values": values,
                       "case_insensitive": case_insensitive && strings})
                },
            )
    }

    fn flag_clause() -> impl Strategy<Value = Value> {
        prop_oneof![
            5 => attribute_clause(),
            1 => (any::<bool>(), prop::sample::subsequence(vec!["s1", "s2"], 1..=2)).prop_map(
                |(negate, keys)| {
                    let operator = if negate { "not_in_segment" } else { "in_segment" };
                    json!({"operator": operator, "values": keys})
                }
            ),
        ]
    }

    fn serve(variations: usize) -> impl Strategy<Value = Value> {
        prop_oneof![
            2 => (0..variations).prop_map(|i| json!({"variation": format!("v{i}")})),
            1 => (
                prop::collection::vec(0u32..=100, variations),
                prop::option::of(prop_oneof![Just("targetingKey".to_owned()), attribute_name()
                    .prop_filter("bucket_by names an attribute", |n| !n.is_empty())]),
                prop::option::of(prop::sample::select(vec!["g1", "new-checkout", "é"])),
            )
                .prop_map(move |(raw, bucket_by, group)| {
                    // Weights that sum to 100, zeros included.
                    let mut weights: Vec<u32> = raw.iter().map(|w| w % 60).collect();
                    let sum: u32 = weights.iter().sum();
                    match weights.last_mut() {
                        Some(last) if sum <= 100 => *last += 100 - sum,
                        _ => {
                            weights = vec![0; variations];
                            weights[0] = 100;
                        }
                    }
                    let shares: Vec<Value> = weights
                        .iter()
                        .enumerate()
                        .map(|(i, w)| json!({"variation": format!("v{i}"), "weight": w}))
                        .collect();
                    let mut rollout = json!({"variations": shares});
                    if let Some(bucket_by) = bucket_by {
                        rollout["bucket_by"] = json!(bucket_by);
                    }
                    if let Some(group) = group {
                        rollout["group"] = json!(group);
                    }
                    json!({"rollout": rollout})
                }),
        ]
    }

    fn flag() -> impl Strategy<Value = FlagConfig> {
        (2..4usize).prop_flat_map(|variations| {
            (
                prop::sample::select(vec!["f", "new-checkout", "a.b_c-d"]),
                prop::bool::weighted(0.9),
                prop::bool::weighted(0.05),
                prop::collection::vec(
                    (
                        prop::collection::vec(flag_clause(), 1..4),
                        serve(variations),
                    ),
                    0..5,
                ),
                serve(variations),
            )
                .prop_map(move |(key, enabled, killed, rules, default_serve)| {
                    let variations: Vec<Value> = (0..variations)
                        .map(|i| json!({"name": format!("v{i}"), "value": format!("V{i}")}))
                        .collect();
                    let rules: Vec<Value> = rules
                        .into_iter()
                        .map(|(clauses, serve)| json!({"clauses": clauses, "serve": serve}))
                        .collect();
                    serde_json::from_value(json!({
                        "key": key, "kind": "string", "variations": variations,
                        "enabled": enabled, "killed": killed, "off_variation": "v0",
                        "rules": rules, "default_serve": default_serve,
                    }))
                    .expect("a FlagConfig")
                })
        })
    }

    /// A targeting key, or a segment's included or excluded key.
    fn context_key() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["alice", "bob", "US", "", "user-00000001", "ALICE"])
            .prop_map(str::to_owned)
    }

    fn segment(key: &'static str) -> impl Strategy<Value = Segment> {
        // A clause that any context with a targeting key matches.
        let anyone = json!({"attribute": "targetingKey", "operator": "contains", "values": [""]});
        let clause = prop_oneof![3 => attribute_clause(), 1 => Just(anyone)];
        (
            prop::collection::vec(context_key(), 0..3),
            prop::collection::vec(context_key(), 0..3),
            prop::collection::vec(prop::collection::vec(clause, 1..3), 0..3),
        )
            .prop_map(move |(included, excluded, rules)| {
                let rules: Vec<Value> = rules
                    .into_iter()
                    .map(|clauses| json!({"clauses": clauses}))
                    .collect();
                serde_json::from_value(json!({
                    "key": key, "included": included, "excluded": excluded, "rules": rules,
                }))
                .expect("a Segment")
            })
    }

    /// A proptest config with a printed seed: `FLAGS_PROPTEST_SEED=<seed>` replays a run.
    fn seeded(cases: u32) -> ProptestConfig {
        let seed = std::env::var("FLAGS_PROPTEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("flag evaluation property: seed={seed} (FLAGS_PROPTEST_SEED={seed} replays it)");
        ProptestConfig {
            cases,
            rng_seed: RngSeed::Fixed(seed),
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(seeded(2000))]

        /// The compiled evaluator answers as the interpreter does, for every context.
        #[test]
        fn the_compiled_flag_answers_as_the_interpreter(
            flag in flag(),
            s1 in segment("s1"),
            s2 in segment("s2"),
            contexts in prop::collection::vec(context(), 1..12),
        ) {
            let segments: Segments = [s1, s2].into_iter().collect();
            let compiled = match CompiledFlag::compile(&flag, &segments) {
                Ok(compiled) => compiled,
                // The generator makes some invalid flags (an empty attribute name, a
                // case-insensitive clause on a non-string operator...).
                Err(_) => return Ok(()),
            };
            for context in &contexts {
                let expected = interpret(&flag, &segments, context);
                prop_assert_eq!(
                    compiled_answer(&compiled, context),
                    expected,
                    "flag {} context {:?}",
                    serde_json::to_string(&flag).unwrap(),
                    context
                );
            }
        }
    }

    /// The generator makes valid flags most of the time (else the property tests little).
    #[test]
    fn most_generated_flags_compile() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut valid, total) = (0, 500);
        for _ in 0..total {
            let flag = flag().new_tree(&mut runner).unwrap().current();
            let segments: Segments = [
                segment("s1").new_tree(&mut runner).unwrap().current(),
                segment("s2").new_tree(&mut runner).unwrap().current(),
            ]
            .into_iter()
            .collect();
            valid += usize::from(CompiledFlag::compile(&flag, &segments).is_ok());
        }
        assert!(
            valid * 2 > total,
            "{valid} of {total} generated flags compile"
        );
    }
}
