//! Validation and compilation: checks a configuration (keys, variations, rules, clauses,
//! rollouts, segment references) and turns it into a [`CompiledFlag`]. Every refusal is a
//! [`ValidationError`] that names the place in the JSON (`rules[2].clauses[0]`).

use std::fmt;

use super::bucketing::group_prefix;
use super::clause::{Comparison, CompiledClause, StringSet, Test, TextOp, ValueSet};
use super::compiled::{CompiledRollout, CompiledRule, CompiledSegment, CompiledServe};
use super::context::{Attribute, AttributeTable};
use super::{
    Clause, CompiledFlag, Flag, FlagConfig, FlagEnvironmentConfig, FlagKind, Operator, Rollout,
    Segment, Segments, Semver, Serve, Variation, MAX_KEY_LEN, TARGETING_KEY, TOTAL_WEIGHT,
};
use serde_json::Value;

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

/// Checks a flag key, segment key or environment name.
pub(super) fn check_key(key: &str) -> Result<(), String> {
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

pub(super) fn check_variations(
    kind: FlagKind,
    variations: &[Variation],
) -> Result<(), ValidationError> {
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
pub(super) fn compile_environment(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::test_support::*;
    use crate::flags::{evaluate, ErrorCode, EvaluationContext, Reason};
    use serde_json::json;

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
}
