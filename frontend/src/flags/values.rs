//! Clause values (comma-separated in one text field) and rollouts (the slider's two
//! ends, even splits), as the editor reads and writes them. Pure, tested natively.

use meridian_shared::flags::{
    FlagKind, Operator, Rollout, Serve, Variation, WeightedVariation, TOTAL_WEIGHT,
};
use serde_json::Value;

/// Splits `text` on the commas that are not inside double quotes; trims each piece and
/// drops empty ones. A quoted piece keeps its quotes (and its backslash escapes).
pub fn split_values(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        if quoted {
            current.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            }
            continue;
        }
        match c {
            ',' => pieces.push(std::mem::take(&mut current)),
            '"' => {
                quoted = true;
                current.push(c);
            }
            _ => current.push(c),
        }
    }
    pieces.push(current);
    pieces
        .into_iter()
        .map(|piece| piece.trim().to_owned())
        .filter(|piece| !piece.is_empty())
        .collect()
}

/// A quoted piece as its string; `None` if it is not one.
fn unquote(piece: &str) -> Option<Result<String, String>> {
    (piece.len() >= 2 && piece.starts_with('"') && piece.ends_with('"')).then(|| {
        serde_json::from_str::<String>(piece)
            .map_err(|_| format!("{piece} is not a valid quoted text"))
    })
}

pub fn number_value(piece: &str) -> Option<Value> {
    if let Ok(integer) = piece.parse::<i64>() {
        return Some(Value::from(integer));
    }
    piece
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

/// The values of a clause with `operator`, from the comma-separated `text`:
/// - `lt`/`lte`/`gt`/`gte`: numbers;
/// - `equals`/`not_equals`/`in`/`not_in`: a number, `true`/`false` or a quoted text
///   (`"42"`) as that JSON value, anything else as text;
/// - every other operator (text, semantic versions, segment keys): texts, quoted or not.
pub fn parse_values(operator: Operator, text: &str) -> Result<Vec<Value>, String> {
    split_values(text)
        .iter()
        .map(|piece| {
            if let Some(quoted) = unquote(piece) {
                return match operator {
                    Operator::Lt | Operator::Lte | Operator::Gt | Operator::Gte => {
                        Err(format!("{piece} is not a number"))
                    }
                    _ => quoted.map(Value::String),
                };
            }
            match operator {
                Operator::Lt | Operator::Lte | Operator::Gt | Operator::Gte => {
                    number_value(piece).ok_or_else(|| format!("{piece:?} is not a number"))
                }
                Operator::Equals | Operator::NotEquals | Operator::In | Operator::NotIn => {
                    Ok(match piece.as_str() {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        _ => number_value(piece).unwrap_or_else(|| Value::String(piece.clone())),
                    })
                }
                _ => Ok(Value::String(piece.clone())),
            }
        })
        .collect()
}

/// The text field of a clause's values: [`parse_values`] reads it back to the same
/// values. Texts that would read as something else (`42`, `true`, one with a comma or a
/// quote, or with spaces around it) are quoted.
pub fn format_values(values: &[Value]) -> String {
    values
        .iter()
        .map(|value| match value {
            Value::String(text) => {
                let plain = !text.is_empty()
                    && text.trim() == text
                    && !text.contains([',', '"'])
                    && text != "true"
                    && text != "false"
                    && number_value(text).is_none();
                if plain {
                    text.clone()
                } else {
                    Value::String(text.clone()).to_string()
                }
            }
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------
// Rollouts

/// A boolean flag's (on, off) variation names: the variations whose values are `true`
/// and `false`.
pub fn boolean_variations(kind: FlagKind, variations: &[Variation]) -> Option<(String, String)> {
    if kind != FlagKind::Boolean {
        return None;
    }
    let named = |wanted: bool| {
        variations
            .iter()
            .find(|variation| variation.value == Value::Bool(wanted))
            .map(|variation| variation.name.clone())
    };
    Some((named(true)?, named(false)?))
}

/// The percentage of a rollout that gets `variation`.
pub fn percent_of(rollout: &Rollout, variation: &str) -> u32 {
    rollout
        .variations
        .iter()
        .filter(|weighted| weighted.variation == variation)
        .map(|weighted| weighted.weight)
        .sum()
}

/// What the slider does: `percent` of contexts get `on`, the rest `off`. A rollout of
/// exactly those two variations keeps its order, `bucket_by` and `group` (so that moving
/// the slider moves only the contexts between the old and the new boundary); any other
/// becomes `[on, off]`.
pub fn with_percent(rollout: &Rollout, on: &str, off: &str, percent: u32) -> Rollout {
    let percent = percent.min(TOTAL_WEIGHT);
    let weight = |name: &str| {
        if name == on {
            percent
        } else {
            TOTAL_WEIGHT - percent
        }
    };
    let names: Vec<&str> = rollout
        .variations
        .iter()
        .map(|weighted| weighted.variation.as_str())
        .collect();
    let same_pair = names.len() == 2 && names.contains(&on) && names.contains(&off) && on != off;
    let order: Vec<&str> = if same_pair { names } else { vec![on, off] };
    Rollout {
        variations: order
            .into_iter()
            .map(|name| WeightedVariation {
                variation: name.to_owned(),
                weight: weight(name),
            })
            .collect(),
        bucket_by: rollout.bucket_by.clone(),
        group: rollout.group.clone(),
    }
}

/// A rollout that gives every variation an equal share (the first ones get the
/// remainder).
pub fn split_evenly(names: &[String]) -> Rollout {
    let count = names.len().max(1) as u32;
    let share = TOTAL_WEIGHT / count;
    let remainder = TOTAL_WEIGHT % count;
    Rollout {
        variations: names
            .iter()
            .enumerate()
            .map(|(i, name)| WeightedVariation {
                variation: name.clone(),
                weight: share + u32::from((i as u32) < remainder),
            })
            .collect(),
        bucket_by: None,
        group: None,
    }
}

/// How a serve reads: `on`, or `on 30% · off 70%`.
pub fn serve_summary(serve: &Serve) -> String {
    match serve {
        Serve::Variation(name) => name.clone(),
        Serve::Rollout(rollout) => rollout
            .variations
            .iter()
            .map(|weighted| format!("{} {}%", weighted.variation, weighted.weight))
            .collect::<Vec<_>>()
            .join(" · "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_split_on_commas_outside_quotes() {
        assert_eq!(
            split_values(r#" a@x.com, b , ,"c, d", "e\"f" "#),
            vec!["a@x.com", "b", r#""c, d""#, r#""e\"f""#]
        );
        assert!(split_values("  ").is_empty());
    }

    #[test]
    fn values_take_the_operators_types() {
        assert_eq!(
            parse_values(Operator::In, r#"pro, 42, true, "42", 1.5"#).unwrap(),
            vec![
                json!("pro"),
                json!(42),
                json!(true),
                json!("42"),
                json!(1.5)
            ]
        );
        assert_eq!(
            parse_values(Operator::Gte, "18, 2.5").unwrap(),
            vec![json!(18), json!(2.5)]
        );
        assert!(parse_values(Operator::Lt, "ten")
            .unwrap_err()
            .contains("not a number"));
        assert_eq!(
            parse_values(Operator::EndsWith, "@example.com, 42").unwrap(),
            vec![json!("@example.com"), json!("42")]
        );
        assert_eq!(
            parse_values(Operator::SemverGte, "1.2.3").unwrap(),
            vec![json!("1.2.3")]
        );
        assert_eq!(
            parse_values(Operator::InSegment, "beta-testers").unwrap(),
            vec![json!("beta-testers")]
        );
    }

    #[test]
    fn formatted_values_read_back_the_same() {
        let values = vec![
            json!("pro"),
            json!("42"),
            json!("a, b"),
            json!("say \"hi\""),
            json!(" padded "),
            json!("true"),
            json!(7),
            json!(false),
        ];
        let text = format_values(&values);
        assert_eq!(
            text,
            r#"pro, "42", "a, b", "say \"hi\"", " padded ", "true", 7, false"#
        );
        assert_eq!(parse_values(Operator::In, &text).unwrap(), values);
    }

    #[test]
    fn the_slider_sets_on_and_off_weights() {
        let rollout = with_percent(&split_evenly(&[]), "on", "off", 30);
        assert_eq!(
            rollout.variations,
            vec![
                WeightedVariation {
                    variation: "on".into(),
                    weight: 30
                },
                WeightedVariation {
                    variation: "off".into(),
                    weight: 70
                },
            ]
        );
        assert_eq!(percent_of(&rollout, "on"), 30);
        // An existing pair keeps its order, group and bucketing attribute.
        let existing = Rollout {
            variations: vec![
                WeightedVariation {
                    variation: "off".into(),
                    weight: 90,
                },
                WeightedVariation {
                    variation: "on".into(),
                    weight: 10,
                },
            ],
            bucket_by: Some("company".into()),
            group: Some("g".into()),
        };
        let moved = with_percent(&existing, "on", "off", 25);
        assert_eq!(moved.variations[0].variation, "off");
        assert_eq!(moved.variations[0].weight, 75);
        assert_eq!(moved.variations[1].weight, 25);
        assert_eq!(moved.bucket_by.as_deref(), Some("company"));
        assert_eq!(moved.group.as_deref(), Some("g"));
        assert_eq!(
            percent_of(&with_percent(&existing, "on", "off", 250), "on"),
            100
        );
        let even = split_evenly(&["a".into(), "b".into(), "c".into()]);
        let weights: Vec<u32> = even.variations.iter().map(|w| w.weight).collect();
        assert_eq!(weights, vec![34, 33, 33]);
        assert_eq!(serve_summary(&Serve::Rollout(rollout)), "on 30% · off 70%");
    }
}
