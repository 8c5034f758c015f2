//! What the flags page shows, computed from the admin API's list and the stream's
//! snapshot: the rows of the list, sentences about deliveries and outcomes, the
//! preview's context and its comparison with the server. Pure, tested natively.

use meridian_shared::flags::admin::{
    AuditEntry, ChangeOutcome, ChangeStatus, Delivery, FlagList, KillOutcome, Preview,
};
use meridian_shared::flags::{
    Evaluation, EvaluationContext, FlagEnvironmentConfig, FlagKind, TARGETING_KEY,
};
use serde_json::{Map, Value};

use super::stream::LiveConfig;
use super::values::serve_summary;

/// One flag in the list.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagRow {
    pub key: String,
    pub name: String,
    pub kind: FlagKind,
    /// In the shown environment.
    pub enabled: bool,
    pub killed: bool,
    /// Has a configuration in the shown environment.
    pub present: bool,
    /// What it serves in the shown environment.
    pub serving: String,
    /// Every environment the flag has, with `on`, `off` or `killed`.
    pub environments: Vec<(String, &'static str)>,
}

/// `on`, `off` or `killed`.
pub fn environment_state(config: &FlagEnvironmentConfig) -> &'static str {
    if config.killed {
        "killed"
    } else if config.enabled {
        "on"
    } else {
        "off"
    }
}

/// What a configuration serves, in a few words.
pub fn serving_summary(config: &FlagEnvironmentConfig) -> String {
    if config.killed {
        return format!("killed: everyone gets {}", config.off_variation);
    }
    if !config.enabled {
        return format!("off: everyone gets {}", config.off_variation);
    }
    match config.rules.len() {
        0 => serve_summary(&config.default_serve),
        1 => format!("1 rule, then {}", serve_summary(&config.default_serve)),
        n => format!("{n} rules, then {}", serve_summary(&config.default_serve)),
    }
}

/// The rows of the list: the admin list's flags when there is one (with the shown
/// environment's state from the stream when the stream is at least as new), else the
/// stream's flags (named by key).
pub fn flag_rows(
    list: Option<&FlagList>,
    live: Option<&LiveConfig>,
    environment: &str,
) -> Vec<FlagRow> {
    let live = live.filter(|live| live.environment() == environment);
    let live_config = |key: &str, at_least: u64| {
        live.filter(|live| live.version() >= at_least)
            .and_then(|live| live.flag(key))
            .map(|flag| flag.environment.clone())
    };
    match list {
        Some(list) => list
            .flags
            .iter()
            .map(|flag| {
                let shown = live_config(&flag.key, list.version)
                    .or_else(|| flag.environments.get(environment).cloned());
                let environments = flag
                    .environments
                    .iter()
                    .map(|(name, config)| {
                        let config = if name == environment {
                            shown.as_ref().unwrap_or(config)
                        } else {
                            config
                        };
                        (name.clone(), environment_state(config))
                    })
                    .collect();
                row(
                    &flag.key,
                    &flag.name,
                    flag.kind,
                    shown.as_ref(),
                    environments,
                )
            })
            .collect(),
        None => live
            .map(|live| {
                live.snapshot
                    .flags
                    .iter()
                    .map(|flag| {
                        let environments =
                            vec![(environment.to_owned(), environment_state(&flag.environment))];
                        row(
                            &flag.key,
                            &flag.key,
                            flag.kind,
                            Some(&flag.environment),
                            environments,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn row(
    key: &str,
    name: &str,
    kind: FlagKind,
    config: Option<&FlagEnvironmentConfig>,
    environments: Vec<(String, &'static str)>,
) -> FlagRow {
    FlagRow {
        key: key.to_owned(),
        name: name.to_owned(),
        kind,
        enabled: config.is_some_and(|config| config.enabled),
        killed: config.is_some_and(|config| config.killed),
        present: config.is_some(),
        serving: config.map_or_else(
            || "not configured in this environment".to_owned(),
            serving_summary,
        ),
        environments,
    }
}

/// "delivered to 3 of 3 connected clients".
pub fn delivery_text(delivery: &Delivery) -> String {
    match delivery.subscribers {
        0 => "no client is connected to the stream".to_owned(),
        1 => format!("delivered to {} of 1 connected client", delivery.delivered),
        n => format!(
            "delivered to {} of {n} connected clients",
            delivery.delivered
        ),
    }
}

/// The kill switch's answer, in a sentence.
pub fn kill_result_text(outcome: &KillOutcome, killed: bool) -> String {
    let what = if killed { "Killed" } else { "Revived" };
    let mut text = format!(
        "{what} in {} (version {}): {}.",
        outcome.delivery.environment,
        outcome.version,
        delivery_text(&outcome.delivery)
    );
    if !outcome.delivery.complete {
        text.push_str(" The others get it when they reconnect.");
    }
    text
}

/// What became of a save, in a sentence; `time` formats a Unix time in ms.
pub fn outcome_text(outcome: &ChangeOutcome, time: impl Fn(i64) -> String) -> String {
    match outcome.status {
        ChangeStatus::Applied => format!("Saved: live as version {}.", outcome.version),
        ChangeStatus::PendingApproval => {
            "Proposed: the change waits for another user's approval.".to_owned()
        }
        ChangeStatus::Scheduled => match &outcome.schedule {
            Some(schedule) => format!("Scheduled for {}.", time(schedule.run_at_ms)),
            None => "Scheduled.".to_owned(),
        },
    }
}

/// The preview's context: `targeting_key` (none when blank) and the attributes, a JSON
/// object (blank for none).
pub fn parse_context(targeting_key: &str, attributes: &str) -> Result<EvaluationContext, String> {
    let attributes = if attributes.trim().is_empty() {
        Map::new()
    } else {
        match serde_json::from_str::<Value>(attributes) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err("The attributes are a JSON object: {\"plan\": \"pro\"}.".to_owned())
            }
            Err(error) => return Err(format!("The attributes are not JSON: {error}.")),
        }
    };
    if attributes.contains_key(TARGETING_KEY) {
        return Err(format!(
            "Put the targeting key in its own field, not in the attributes ({TARGETING_KEY})."
        ));
    }
    let key = targeting_key.trim();
    Ok(EvaluationContext {
        targeting_key: (!key.is_empty()).then(|| key.to_owned()),
        attributes,
    })
}

/// Whether the browser's evaluation and the server's preview say the same.
pub fn preview_agrees(local: &Evaluation, server: &Preview) -> bool {
    local.variant == server.variant
        && local.value == server.value
        && local.reason == server.reason
        && local.rule_index == server.rule_index
        && local.bucket == server.bucket
        && local.error_code == server.error_code
}

/// JSON, indented, for people.
pub fn pretty_json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// An audit entry's one-line summary: "kill production", "create".
pub fn audit_summary(entry: &AuditEntry) -> String {
    let mut text = entry.action.replace('_', " ");
    if let Some(key) = &entry.flag_key {
        text.push_str(&format!(" {key}"));
    }
    if let Some(environment) = &entry.environment {
        text.push_str(&format!(" in {environment}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::boolean_flag;
    use meridian_shared::flags::admin::Schedule;
    use meridian_shared::flags::Reason;
    use serde_json::json;

    #[test]
    fn contexts_come_from_the_key_and_a_json_object() {
        let context = parse_context(" user-1 ", r#"{"plan": "pro", "age": 30}"#).unwrap();
        assert_eq!(context.targeting_key.as_deref(), Some("user-1"));
        assert_eq!(context.attributes["age"], json!(30));
        assert_eq!(parse_context("", "").unwrap().targeting_key, None);
        assert!(parse_context("u", "[1]").unwrap_err().contains("object"));
        assert!(parse_context("u", "{").unwrap_err().contains("not JSON"));
        assert!(parse_context("u", r#"{"targetingKey": "x"}"#).is_err());
    }

    #[test]
    fn rows_prefer_the_newest_state_of_the_shown_environment() {
        let flag = boolean_flag("beta");
        let list = FlagList {
            flags: vec![flag.clone()],
            version: 4,
        };
        let rows = flag_rows(Some(&list), None, "production");
        assert_eq!(rows.len(), 1);
        assert!(rows[0].enabled && !rows[0].killed);
        assert_eq!(rows[0].serving, "on");
        assert_eq!(
            rows[0].environments,
            vec![
                ("development".to_owned(), "off"),
                ("production".to_owned(), "on")
            ]
        );
        // The stream at version 5 has it killed: the row says so before the list catches up.
        let mut killed = flag.config("production").unwrap();
        killed.environment.killed = true;
        let live = LiveConfig::new(meridian_shared::flags::admin::FlagSnapshot {
            version: 5,
            environment: "production".into(),
            flags: vec![killed.clone()],
            segments: Vec::new(),
        });
        let rows = flag_rows(Some(&list), Some(&live), "production");
        assert!(rows[0].killed);
        assert_eq!(rows[0].environments[1], ("production".to_owned(), "killed"));
        assert_eq!(rows[0].serving, "killed: everyone gets off");
        // An older stream does not override the list; another environment's never does.
        let newer = FlagList {
            flags: vec![flag],
            version: 6,
        };
        assert!(!flag_rows(Some(&newer), Some(&live), "production")[0].killed);
        assert!(!flag_rows(Some(&list), Some(&live), "development")[0].killed);
        // Without the admin list (a guest), the stream's flags are listed by key.
        let guest = flag_rows(None, Some(&live), "production");
        assert_eq!((guest[0].name.as_str(), guest[0].killed), ("beta", true));
        assert!(flag_rows(None, None, "production").is_empty());
    }

    #[test]
    fn deliveries_and_outcomes_read_plainly() {
        let delivery = |subscribers, delivered| Delivery {
            environment: "production".into(),
            version: 9,
            subscribers,
            delivered,
            complete: subscribers == delivered,
        };
        assert_eq!(
            delivery_text(&delivery(3, 3)),
            "delivered to 3 of 3 connected clients"
        );
        assert_eq!(
            delivery_text(&delivery(1, 1)),
            "delivered to 1 of 1 connected client"
        );
        assert_eq!(
            delivery_text(&delivery(0, 0)),
            "no client is connected to the stream"
        );
        let flag = boolean_flag("beta");
        let outcome = KillOutcome {
            flag: flag.clone(),
            version: 9,
            delivery: delivery(3, 2),
        };
        assert_eq!(
            kill_result_text(&outcome, true),
            "Killed in production (version 9): delivered to 2 of 3 connected clients. The others get it when they reconnect."
        );
        let change = |status| ChangeOutcome {
            status,
            flag: flag.clone(),
            version: 10,
            approval: None,
            schedule: None,
        };
        let time = |ms: i64| format!("t{ms}");
        assert_eq!(
            outcome_text(&change(ChangeStatus::Applied), time),
            "Saved: live as version 10."
        );
        assert!(outcome_text(&change(ChangeStatus::PendingApproval), time).contains("approval"));
        let mut scheduled = change(ChangeStatus::Scheduled);
        scheduled.schedule = Some(Schedule {
            id: "s1".into(),
            flag_key: "beta".into(),
            environment: "production".into(),
            proposed: flag.environments["production"].clone(),
            run_at_ms: 5,
            requested_name: "ann".into(),
            status: "pending".into(),
        });
        assert_eq!(outcome_text(&scheduled, time), "Scheduled for t5.");
    }

    #[test]
    fn the_preview_compares_every_field() {
        let local = Evaluation {
            value: json!(true),
            variant: "on".into(),
            reason: Reason::Split,
            error_code: None,
            error_details: None,
            rule_index: None,
            bucket: Some(42),
        };
        let mut server = Preview {
            key: "beta".into(),
            environment: "production".into(),
            value: json!(true),
            variant: "on".into(),
            reason: Reason::Split,
            error_code: None,
            rule_index: None,
            bucket: Some(42),
        };
        assert!(preview_agrees(&local, &server));
        server.bucket = Some(43);
        assert!(!preview_agrees(&local, &server));
    }
}
