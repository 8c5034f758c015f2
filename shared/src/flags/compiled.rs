//! The compiled form: a [`CompiledFlag`] holds one environment's configuration
//! pre-parsed (variation indices, rules, rollouts as bucket bounds with the hash state
//! after the group, the segments it names) and evaluates it in the order the module
//! documentation of [`crate::flags`] gives, without allocating.

use super::bucketing::{integer_digits, normalize};
use super::clause::{CompiledClause, StringSet};
use super::context::{Attribute, AttributeTable, ContextView, PreparedContext};
use super::validation::{check_key, check_variations, compile_environment};
use super::{
    ErrorCode, EvaluationContext, EvaluationRef, FlagConfig, FlagKind, Murmur3, Reason, Segments,
    ValidationError,
};
use serde_json::Value;

/// A validated flag in one environment, ready to evaluate many times without allocating.
#[derive(Debug, Clone)]
pub struct CompiledFlag {
    pub(super) key: Box<str>,
    pub(super) kind: FlagKind,
    pub(super) variations: Box<[(Box<str>, Value)]>,
    pub(super) enabled: bool,
    pub(super) killed: bool,
    pub(super) off_variation: usize,
    pub(super) rules: Box<[CompiledRule]>,
    pub(super) default_serve: CompiledServe,
    /// The segments the clauses name, by index.
    pub(super) segments: Box<[CompiledSegment]>,
    /// The attributes that the clauses, the segments' clauses and the rollouts read.
    pub(super) attributes: AttributeTable,
}

#[derive(Debug, Clone)]
pub(super) struct CompiledRule {
    pub(super) clauses: Box<[CompiledClause]>,
    pub(super) serve: CompiledServe,
}

#[derive(Debug, Clone)]
pub(super) enum CompiledServe {
    Variation(usize),
    Rollout(CompiledRollout),
}

#[derive(Debug, Clone)]
pub(super) struct CompiledRollout {
    /// (last bucket, variation index), in bucket order; the last bound is 100.
    pub(super) bounds: Box<[(u8, usize)]>,
    pub(super) bucket_by: Attribute,
    /// The hash state after `"{group}:"`: each evaluation hashes only the key.
    pub(super) group_prefix: Murmur3,
}

#[derive(Debug, Clone)]
pub(super) struct CompiledSegment {
    pub(super) key: Box<str>,
    pub(super) included: StringSet,
    pub(super) excluded: StringSet,
    pub(super) rules: Box<[Box<[CompiledClause]>]>,
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
        self.evaluate_in(context, None)
    }

    /// [`evaluate`](Self::evaluate) for a context prepared once for many flags.
    pub fn evaluate_prepared(&self, context: &PreparedContext<'_>) -> EvaluationRef<'_> {
        self.evaluate_in(context.context(), Some(context))
    }

    /// One copy of the evaluation for both entry points (two would each be inlined less).
    #[inline(never)]
    fn evaluate_in<'c>(
        &self,
        context: &'c EvaluationContext,
        prepared: Option<&PreparedContext<'c>>,
    ) -> EvaluationRef<'_> {
        if self.killed || !self.enabled {
            return self.answer(self.off_variation, Reason::Disabled, None, None);
        }
        let mut view = ContextView::new(&self.attributes, context, prepared);
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
        normalize(self.group_prefix.finish_with(key))
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

impl CompiledSegment {
    pub(super) fn contains(&self, view: &mut ContextView<'_, '_>) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::test_support::*;
    use crate::flags::{bucket, Segment};
    use serde_json::json;

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
}
