//! The feature flags page (`/flags`): the flags of one environment (development or
//! production) with their state, a form to create a flag, an editor of one flag's
//! environment (on/off, off variation, default serve with a rollout slider, targeting
//! rules), the kill switch with how far it reached the connected clients, approvals,
//! the audit log, and a preview of what a context gets — evaluated here, by the shared
//! evaluator over the live configuration, and by the server, side by side.
//!
//! The live configuration comes from the stream (`/api/flags/stream`, through
//! [`FlagStream`]) and needs no account; everything that manages flags needs a signed-in
//! user (a guest is asked to sign in). A "live flag demo" evaluates one flag for the
//! preview's context from the stream alone, so it changes as soon as someone anywhere
//! changes or kills the flag. The page also runs the evaluator's test vectors
//! (`shared/tests/flag_vectors.json`, compiled in) in the browser's wasm and shows the
//! result.
//!
//! Test contract (`data-testid`s): `flags-page`; `stream-state` (`data-state` = `live` |
//! `connecting` | `offline`, `data-version`); `env-{name}` (the environment switcher);
//! `vector-check` (`data-passed`, `data-total`, `data-state` = `pass` | `fail`);
//! `flag-row-{key}` (`data-killed` = `true` | `false`, `data-enabled`) holding
//! `kill-{key}` then `kill-confirm-{key}` and `kill-result-{key}`; `create-flag` (the
//! form) with `create-error`; `flag-editor` with `editor-enabled`, `serve-default` and
//! `rollout-slider` (the default serve), `add-rule`, `rule-{i}` holding
//! `clause-{i}-{j}-attribute|operator|values`, `serve-rule-{i}` and
//! `rule-{i}-rollout-slider`, `editor-save`, `flag-error` (the server's refusal, which
//! names the rule) and `editor-status`;
//! `flag-demo` holding `flag-demo-value` (text: the variant's name) and
//! `flag-demo-select`; `preview` with `context-key`, `context-attributes`,
//! `preview-local`, `preview-server`, `preview-agree`; `approvals` with
//! `approval-error`; `audit-log` with `audit-entry` children.
//!
//! Invariants: the demo and the local preview evaluate only with
//! `meridian_shared::flags` over the stream's snapshot (never a server answer); saving
//! an environment never changes its kill switch (the config sent carries the kill state
//! the page last saw); only the latest request of a panel may set what it shows.

use std::collections::BTreeMap;
use std::rc::Rc;

use meridian_shared::flags::admin::{
    Approval, AuditEntry, ChangeOutcome, ChangeStatus, Delivery, EnvironmentChange,
    EnvironmentSettings, FlagList, KillOutcome, KillRequest, Preview, PreviewRequest, Schedule,
};
use meridian_shared::flags::vectors::check_vectors;
use meridian_shared::flags::{
    Clause, ErrorCode, Evaluation, EvaluationContext, Flag, FlagEnvironmentConfig, FlagKind,
    Operator, Reason, Rollout, Rule, Serve, Variation, WeightedVariation, ENVIRONMENTS,
    TARGETING_KEY, TOTAL_WEIGHT,
};
use serde_json::{Map, Value};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::spawn_local;
use web_sys::{HtmlInputElement, HtmlSelectElement, HtmlTextAreaElement};
use yew::prelude::*;
use yew_router::prelude::Link;

use crate::app::Route;
use crate::components::Spinner;
use crate::net::http::{self, HttpError, NewFlag};
use crate::session::SessionState;
use crate::store::flags::{FlagStream, LiveConfig, LiveView, StreamState};

/// The environment the page opens on (and the one Meridian's own features read).
pub const DEFAULT_ENVIRONMENT: &str = "production";
/// How many audit entries one page asks for.
pub const AUDIT_PAGE: u32 = 30;
/// The evaluator's test vectors, as `shared/tests/flag_vectors.rs` reads them.
pub const FLAG_VECTORS: &str = include_str!("../../../shared/tests/flag_vectors.json");

// ---------------------------------------------------------------------------------------
// The evaluator's test vectors, run here (in the browser: under wasm)

// ---------------------------------------------------------------------------------------
// Clause values: comma-separated in one text field

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

fn number_value(piece: &str) -> Option<Value> {
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

// ---------------------------------------------------------------------------------------
// The editor of one environment

/// One condition of a rule, as edited.
#[derive(Debug, Clone, PartialEq)]
pub struct ClauseDraft {
    pub attribute: String,
    pub operator: Operator,
    /// Comma-separated ([`parse_values`]).
    pub values: String,
    pub case_insensitive: bool,
}

impl ClauseDraft {
    fn new() -> ClauseDraft {
        ClauseDraft {
            attribute: String::new(),
            operator: Operator::In,
            values: String::new(),
            case_insensitive: false,
        }
    }

    fn from_clause(clause: &Clause) -> ClauseDraft {
        ClauseDraft {
            attribute: clause.attribute.clone(),
            operator: clause.operator,
            values: format_values(&clause.values),
            case_insensitive: clause.case_insensitive,
        }
    }

    fn to_clause(&self) -> Result<Clause, String> {
        let segment = matches!(self.operator, Operator::InSegment | Operator::NotInSegment);
        Ok(Clause {
            attribute: if segment {
                String::new()
            } else {
                self.attribute.trim().to_owned()
            },
            operator: self.operator,
            values: parse_values(self.operator, &self.values)?,
            case_insensitive: self.case_insensitive && self.operator.compares_strings(),
        })
    }
}

/// A rule, as edited.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDraft {
    pub description: String,
    pub clauses: Vec<ClauseDraft>,
    pub serve: Serve,
}

/// Which serve an action is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeTarget {
    Default,
    Rule(usize),
}

/// What a serve select chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeChoice {
    Variation(String),
    Rollout,
}

/// Every operator, in the order the select lists them.
pub const OPERATORS: [Operator; 18] = [
    Operator::In,
    Operator::NotIn,
    Operator::Equals,
    Operator::NotEquals,
    Operator::Contains,
    Operator::StartsWith,
    Operator::EndsWith,
    Operator::Lt,
    Operator::Lte,
    Operator::Gt,
    Operator::Gte,
    Operator::SemverEq,
    Operator::SemverLt,
    Operator::SemverLte,
    Operator::SemverGt,
    Operator::SemverGte,
    Operator::InSegment,
    Operator::NotInSegment,
];

/// The operator named `name` (`as_str`).
pub fn operator_named(name: &str) -> Option<Operator> {
    OPERATORS
        .into_iter()
        .find(|operator| operator.as_str() == name)
}

/// The editor's state: one flag's configuration in one environment, as edited.
#[derive(Debug, Clone, PartialEq)]
pub struct EditorState {
    pub key: String,
    pub environment: String,
    pub kind: FlagKind,
    pub variations: Vec<String>,
    /// A boolean flag's (on, off) variations: the slider's two ends.
    pub boolean: Option<(String, String)>,
    pub enabled: bool,
    pub off_variation: String,
    pub default_serve: Serve,
    pub rules: Vec<RuleDraft>,
    /// The configuration as loaded (`None`: the flag has none in this environment).
    pub base: Option<FlagEnvironmentConfig>,
    /// Changed since loaded or saved.
    pub dirty: bool,
}

impl Default for EditorState {
    fn default() -> EditorState {
        EditorState {
            key: String::new(),
            environment: String::new(),
            kind: FlagKind::Boolean,
            variations: Vec::new(),
            boolean: None,
            enabled: false,
            off_variation: String::new(),
            default_serve: Serve::Variation(String::new()),
            rules: Vec::new(),
            base: None,
            dirty: false,
        }
    }
}

/// A change to the [`EditorState`].
#[derive(Debug, Clone, PartialEq)]
pub enum EditorAction {
    /// Edit `flag` in `environment`, dropping any edits.
    Load {
        flag: Rc<Flag>,
        environment: String,
    },
    SetEnabled(bool),
    SetOffVariation(String),
    SetServe(ServeTarget, ServeChoice),
    /// The slider of a boolean flag: the percentage that gets `on`.
    SetPercent(ServeTarget, u32),
    /// The weight of one variation of a rollout (other kinds).
    SetWeight(ServeTarget, usize, u32),
    AddRule,
    RemoveRule(usize),
    AddClause(usize),
    RemoveClause(usize, usize),
    SetAttribute(usize, usize, String),
    SetOperator(usize, usize, Operator),
    SetValues(usize, usize, String),
    SetCaseInsensitive(usize, usize, bool),
    /// The server took the edits.
    Saved,
}

impl EditorState {
    /// The editor of `flag` in `environment`.
    pub fn load(flag: &Flag, environment: &str) -> EditorState {
        let variations: Vec<String> = flag.variations.iter().map(|v| v.name.clone()).collect();
        let first = variations.first().cloned().unwrap_or_default();
        let boolean = boolean_variations(flag.kind, &flag.variations);
        let base = flag.environments.get(environment).cloned();
        let (enabled, off_variation, default_serve, rules) = match &base {
            Some(config) => (
                config.enabled,
                config.off_variation.clone(),
                config.default_serve.clone(),
                config
                    .rules
                    .iter()
                    .map(|rule| RuleDraft {
                        description: rule.description.clone(),
                        clauses: rule.clauses.iter().map(ClauseDraft::from_clause).collect(),
                        serve: rule.serve.clone(),
                    })
                    .collect(),
            ),
            None => {
                let off = boolean
                    .as_ref()
                    .map_or(first.clone(), |(_, off)| off.clone());
                let on = boolean.as_ref().map_or(first, |(on, _)| on.clone());
                (false, off, Serve::Variation(on), Vec::new())
            }
        };
        EditorState {
            key: flag.key.clone(),
            environment: environment.to_owned(),
            kind: flag.kind,
            variations,
            boolean,
            enabled,
            off_variation,
            default_serve,
            rules,
            base,
            dirty: false,
        }
    }

    /// The serve a new rule starts with: the boolean's `on`, else the first variation.
    fn first_serve(&self) -> Serve {
        let name = match &self.boolean {
            Some((on, _)) => on.clone(),
            None => self.variations.first().cloned().unwrap_or_default(),
        };
        Serve::Variation(name)
    }

    fn serve_mut(&mut self, target: ServeTarget) -> Option<&mut Serve> {
        match target {
            ServeTarget::Default => Some(&mut self.default_serve),
            ServeTarget::Rule(i) => self.rules.get_mut(i).map(|rule| &mut rule.serve),
        }
    }

    pub fn serve(&self, target: ServeTarget) -> Option<&Serve> {
        match target {
            ServeTarget::Default => Some(&self.default_serve),
            ServeTarget::Rule(i) => self.rules.get(i).map(|rule| &rule.serve),
        }
    }

    fn clause_mut(&mut self, rule: usize, clause: usize) -> Option<&mut ClauseDraft> {
        self.rules.get_mut(rule)?.clauses.get_mut(clause)
    }

    /// Applies `action`; any change but a load or a save makes the state dirty.
    pub fn apply(&mut self, action: EditorAction) {
        let before = self.clone();
        match action {
            EditorAction::Load { flag, environment } => {
                *self = EditorState::load(&flag, &environment);
                return;
            }
            EditorAction::Saved => {
                self.dirty = false;
                return;
            }
            EditorAction::SetEnabled(enabled) => self.enabled = enabled,
            EditorAction::SetOffVariation(name) => self.off_variation = name,
            EditorAction::SetServe(target, choice) => {
                let serve = match choice {
                    ServeChoice::Variation(name) => Serve::Variation(name),
                    ServeChoice::Rollout => match self.serve(target) {
                        Some(Serve::Rollout(rollout)) => Serve::Rollout(rollout.clone()),
                        _ => Serve::Rollout(match &self.boolean {
                            Some((on, off)) => with_percent(&split_evenly(&[]), on, off, 50),
                            None => split_evenly(&self.variations),
                        }),
                    },
                };
                if let Some(slot) = self.serve_mut(target) {
                    *slot = serve;
                }
            }
            EditorAction::SetPercent(target, percent) => {
                if let Some((on, off)) = self.boolean.clone() {
                    if let Some(Serve::Rollout(rollout)) = self.serve_mut(target) {
                        *rollout = with_percent(rollout, &on, &off, percent);
                    }
                }
            }
            EditorAction::SetWeight(target, index, weight) => {
                if let Some(Serve::Rollout(rollout)) = self.serve_mut(target) {
                    if let Some(weighted) = rollout.variations.get_mut(index) {
                        weighted.weight = weight.min(TOTAL_WEIGHT);
                    }
                }
            }
            EditorAction::AddRule => {
                let serve = self.first_serve();
                self.rules.push(RuleDraft {
                    description: String::new(),
                    clauses: vec![ClauseDraft::new()],
                    serve,
                });
            }
            EditorAction::RemoveRule(i) => {
                if i < self.rules.len() {
                    self.rules.remove(i);
                }
            }
            EditorAction::AddClause(rule) => {
                if let Some(rule) = self.rules.get_mut(rule) {
                    rule.clauses.push(ClauseDraft::new());
                }
            }
            EditorAction::RemoveClause(rule, clause) => {
                if let Some(rule) = self.rules.get_mut(rule) {
                    if clause < rule.clauses.len() {
                        rule.clauses.remove(clause);
                    }
                }
            }
            EditorAction::SetAttribute(rule, clause, attribute) => {
                if let Some(draft) = self.clause_mut(rule, clause) {
                    draft.attribute = attribute;
                }
            }
            EditorAction::SetOperator(rule, clause, operator) => {
                if let Some(draft) = self.clause_mut(rule, clause) {
                    draft.operator = operator;
                    if !operator.compares_strings() {
                        draft.case_insensitive = false;
                    }
                }
            }
            EditorAction::SetValues(rule, clause, values) => {
                if let Some(draft) = self.clause_mut(rule, clause) {
                    draft.values = values;
                }
            }
            EditorAction::SetCaseInsensitive(rule, clause, on) => {
                if let Some(draft) = self.clause_mut(rule, clause) {
                    draft.case_insensitive = on && draft.operator.compares_strings();
                }
            }
        }
        if *self != before {
            self.dirty = true;
        }
    }

    /// The configuration to send. `killed` is the kill switch as the page last saw it:
    /// the editor never changes it. Values that do not parse are refused here, naming
    /// the rule and the condition (1-based, as the page numbers them); everything else is
    /// the server's to check.
    pub fn to_config(&self, killed: bool) -> Result<FlagEnvironmentConfig, String> {
        let rules = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let clauses = rule
                    .clauses
                    .iter()
                    .enumerate()
                    .map(|(j, clause)| {
                        clause
                            .to_clause()
                            .map_err(|why| format!("Rule {}, condition {}: {why}", i + 1, j + 1))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Rule {
                    description: rule.description.clone(),
                    clauses,
                    serve: rule.serve.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(FlagEnvironmentConfig {
            enabled: self.enabled,
            killed,
            off_variation: self.off_variation.clone(),
            default_serve: self.default_serve.clone(),
            rules,
        })
    }

    /// The edits were made against a configuration that has changed since (other than
    /// by the kill switch, which saving keeps as it is).
    pub fn is_stale(&self, current: Option<&FlagEnvironmentConfig>) -> bool {
        let unkilled = |config: Option<&FlagEnvironmentConfig>| {
            config.map(|config| FlagEnvironmentConfig {
                killed: false,
                ..config.clone()
            })
        };
        self.dirty && unkilled(self.base.as_ref()) != unkilled(current)
    }
}

impl Reducible for EditorState {
    type Action = EditorAction;

    fn reduce(self: Rc<Self>, action: EditorAction) -> Rc<Self> {
        let mut next = (*self).clone();
        next.apply(action);
        if next == *self {
            self
        } else {
            Rc::new(next)
        }
    }
}

// ---------------------------------------------------------------------------------------
// The create form

/// One variation of the create form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariationDraft {
    pub name: String,
    /// Text for a string flag, a number, or JSON (an object or an array).
    pub value: String,
}

/// The create form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFlagForm {
    pub key: String,
    pub name: String,
    pub description: String,
    pub kind: FlagKind,
    /// Ignored for a boolean flag, which always has `on` (true) and `off` (false).
    pub variations: Vec<VariationDraft>,
    /// Comma-separated.
    pub tags: String,
}

impl Default for NewFlagForm {
    fn default() -> NewFlagForm {
        NewFlagForm {
            key: String::new(),
            name: String::new(),
            description: String::new(),
            kind: FlagKind::Boolean,
            variations: starter_variations(FlagKind::Boolean),
            tags: String::new(),
        }
    }
}

/// The variations a form of `kind` starts with.
pub fn starter_variations(kind: FlagKind) -> Vec<VariationDraft> {
    let pairs: [(&str, &str); 2] = match kind {
        FlagKind::Boolean => [("on", "true"), ("off", "false")],
        FlagKind::String => [("control", "control"), ("treatment", "treatment")],
        FlagKind::Number => [("low", "10"), ("high", "100")],
        FlagKind::Json => [("default", "{}"), ("custom", "{\"limit\": 5}")],
    };
    pairs
        .into_iter()
        .map(|(name, value)| VariationDraft {
            name: name.to_owned(),
            value: value.to_owned(),
        })
        .collect()
}

/// A variation's value of `kind`, from the form's text.
pub fn parse_variation_value(kind: FlagKind, text: &str) -> Result<Value, String> {
    match kind {
        FlagKind::Boolean => match text.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            other => Err(format!("{other:?} is not true or false")),
        },
        FlagKind::String => Ok(Value::String(text.to_owned())),
        FlagKind::Number => {
            number_value(text.trim()).ok_or_else(|| format!("{:?} is not a number", text.trim()))
        }
        FlagKind::Json => match serde_json::from_str::<Value>(text) {
            Ok(value) if value.is_object() || value.is_array() => Ok(value),
            Ok(_) => Err("a JSON flag's values are objects or arrays".to_owned()),
            Err(error) => Err(format!("not JSON: {error}")),
        },
    }
}

impl NewFlagForm {
    /// The request body. A boolean flag starts off in every environment, serving `on`
    /// once turned on and `off` while off; other kinds take the server's default (off,
    /// the first variation).
    pub fn to_new_flag(&self) -> Result<NewFlag, String> {
        let key = self.key.trim().to_owned();
        if key.is_empty() {
            return Err("A flag needs a key.".to_owned());
        }
        let name = match self.name.trim() {
            "" => key.clone(),
            name => name.to_owned(),
        };
        let drafts = if self.kind == FlagKind::Boolean {
            starter_variations(FlagKind::Boolean)
        } else {
            self.variations.clone()
        };
        let variations = drafts
            .iter()
            .enumerate()
            .map(|(i, draft)| {
                let value = parse_variation_value(self.kind, &draft.value)
                    .map_err(|why| format!("Variation {}: {why}", i + 1))?;
                Ok(Variation {
                    name: draft.name.trim().to_owned(),
                    value,
                    description: String::new(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let environments = match boolean_variations(self.kind, &variations) {
            Some((on, off)) => ENVIRONMENTS
                .iter()
                .map(|environment| {
                    (
                        (*environment).to_owned(),
                        FlagEnvironmentConfig {
                            enabled: false,
                            killed: false,
                            off_variation: off.clone(),
                            default_serve: Serve::Variation(on.clone()),
                            rules: Vec::new(),
                        },
                    )
                })
                .collect(),
            None => BTreeMap::new(),
        };
        Ok(NewFlag {
            key,
            name,
            description: self.description.trim().to_owned(),
            kind: self.kind,
            variations,
            environments,
            tags: self
                .tags
                .split(',')
                .map(str::trim)
                .filter(|tag| !tag.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// What the page shows

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

fn local_date_time(at_ms: i64) -> String {
    let date = js_sys::Date::new(&JsValue::from_f64(at_ms as f64));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        date.get_full_year(),
        date.get_month() + 1,
        date.get_date(),
        date.get_hours(),
        date.get_minutes(),
        date.get_seconds()
    )
}

/// A `datetime-local` input's value as Unix ms (local time); `None` when blank or
/// invalid.
fn parse_local_time(text: &str) -> Option<i64> {
    if text.trim().is_empty() {
        return None;
    }
    let time = js_sys::Date::new(&JsValue::from_str(text)).get_time();
    time.is_finite().then_some(time as i64)
}

fn input_text(event: &InputEvent) -> String {
    event.target_unchecked_into::<HtmlInputElement>().value()
}

fn textarea_text(event: &InputEvent) -> String {
    event.target_unchecked_into::<HtmlTextAreaElement>().value()
}

fn select_text(event: &Event) -> String {
    event.target_unchecked_into::<HtmlSelectElement>().value()
}

fn checkbox(event: &Event) -> bool {
    event.target_unchecked_into::<HtmlInputElement>().checked()
}

fn is_sign_in_required(error: &HttpError) -> bool {
    matches!(error, HttpError::Api { status: 401, .. })
}

// ---------------------------------------------------------------------------------------
// Components

#[component]
fn SignInPrompt() -> Html {
    html! {
        <div class="callout callout-warning flags-sign-in" data-testid="flags-sign-in">
            <strong>{ "Sign in to manage flags." }</strong>
            { " Creating, changing, killing and approving flags needs an account; the live configuration below needs none. " }
            <Link<Route> to={Route::SignIn}>{ "Sign in" }</Link<Route>>
            { " or " }
            <Link<Route> to={Route::SignUp}>{ "create an account" }</Link<Route>>
            { "." }
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct StreamPillProps {
    view: LiveView,
}

#[component]
fn StreamPill(props: &StreamPillProps) -> Html {
    let view = &props.view;
    let state = view.state;
    let pill = match state {
        StreamState::Live => "pill-online",
        StreamState::Connecting => "pill-connecting",
        StreamState::Offline => "pill-offline",
    };
    let version = view.version();
    let mut detail = match state {
        StreamState::Live => "Changes arrive as they are made.".to_owned(),
        StreamState::Connecting => "Connecting to the configuration stream…".to_owned(),
        StreamState::Offline => view
            .error
            .clone()
            .unwrap_or_else(|| "Not connected.".to_owned()),
    };
    if let Some(delay) = view.retry_in_ms {
        detail.push_str(&format!(" Retrying in {:.1} s.", f64::from(delay) / 1000.0));
    }
    html! {
        <span
            class={classes!("pill", pill)}
            data-testid="stream-state"
            data-state={state.as_str()}
            data-version={version.to_string()}
            title={detail}
            role="status"
        >
            <span class="pill-dot" aria-hidden="true"></span>
            { state.label() }
            if version > 0 {
                <span class="flags-version">{ format!("v{version}") }</span>
            }
        </span>
    }
}

#[component]
fn VectorCheck() -> Html {
    let report = use_memo((), |_| check_vectors(FLAG_VECTORS));
    let pass = report.all_pass();
    html! {
        <div class={classes!("flags-vectors", if pass { "flags-vectors-pass" } else { "flags-vectors-fail" })}>
            <span
                data-testid="vector-check"
                data-state={if pass { "pass" } else { "fail" }}
                data-passed={report.passed.to_string()}
                data-total={report.total.to_string()}
                title="MurmurHash3, Unleash-compatible buckets and whole-flag evaluations from shared/tests/flag_vectors.json, checked by this page's WebAssembly."
            >
                { report.summary() }
            </span>
            if !report.failures.is_empty() {
                <ul class="flags-vector-failures small">
                    { for report.failures.iter().take(5).map(|failure| html! { <li>{ failure.clone() }</li> }) }
                </ul>
            }
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct EnvironmentSwitchProps {
    environments: Vec<EnvironmentSettings>,
    current: String,
    on_select: Callback<String>,
    /// Offer the approval toggle (signed in).
    manage: bool,
    on_require_approval: Callback<(String, bool)>,
}

#[component]
fn EnvironmentSwitch(props: &EnvironmentSwitchProps) -> Html {
    let current = props
        .environments
        .iter()
        .find(|environment| environment.name == props.current);
    html! {
        <div class="flags-envs">
            <div class="chips" role="group" aria-label="Environment">
                { for props.environments.iter().map(|environment| {
                    let name = environment.name.clone();
                    let pressed = name == props.current;
                    let on_select = props.on_select.reform(move |_: MouseEvent| name.clone());
                    html! {
                        <button
                            type="button"
                            class={classes!("chip", pressed.then_some("chip-active"))}
                            aria-pressed={pressed.to_string()}
                            data-testid={format!("env-{}", environment.name)}
                            onclick={on_select}
                        >
                            { environment.name.clone() }
                        </button>
                    }
                }) }
            </div>
            if let (true, Some(environment)) = (props.manage, current) {
                <label class="flags-approval-toggle small">
                    <input
                        type="checkbox"
                        data-testid="require-approval"
                        checked={environment.require_approval}
                        onchange={{
                            let name = environment.name.clone();
                            props.on_require_approval.reform(move |event: Event| (name.clone(), checkbox(&event)))
                        }}
                    />
                    { " Changes here need a second person's approval" }
                </label>
            }
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct FlagRowProps {
    row: FlagRow,
    environment: String,
    selected: bool,
    manage: bool,
    on_select: Callback<String>,
    on_changed: Callback<()>,
}

#[component]
fn FlagRowView(props: &FlagRowProps) -> Html {
    let row = &props.row;
    let confirming = use_state(|| false);
    let busy = use_state(|| false);
    let result = use_state(|| None::<Result<String, String>>);
    let key = row.key.clone();
    // A kill asked for one environment is not confirmed for another.
    {
        let confirming = confirming.clone();
        let result = result.clone();
        use_effect_with(props.environment.clone(), move |_| {
            confirming.set(false);
            result.set(None);
        });
    }

    let kill = !row.killed;
    let on_ask = {
        let confirming = confirming.clone();
        Callback::from(move |_: MouseEvent| confirming.set(true))
    };
    let on_cancel = {
        let confirming = confirming.clone();
        Callback::from(move |_: MouseEvent| confirming.set(false))
    };
    let on_confirm = {
        let confirming = confirming.clone();
        let busy = busy.clone();
        let result = result.clone();
        let key = key.clone();
        let environment = props.environment.clone();
        let on_changed = props.on_changed.clone();
        Callback::from(move |_: MouseEvent| {
            if *busy {
                return;
            }
            busy.set(true);
            confirming.set(false);
            let busy = busy.clone();
            let result = result.clone();
            let key = key.clone();
            let request = KillRequest {
                environment: environment.clone(),
                killed: kill,
            };
            let on_changed = on_changed.clone();
            spawn_local(async move {
                let answer = http::kill_flag(&key, &request).await;
                result.set(Some(match answer {
                    Ok(outcome) => Ok(kill_result_text(&outcome, kill)),
                    Err(error) => Err(error.message()),
                }));
                busy.set(false);
                on_changed.emit(());
            });
        })
    };
    let on_select = {
        let key = key.clone();
        props.on_select.reform(move |_: MouseEvent| key.clone())
    };

    html! {
        <li
            class={classes!("flag-row", props.selected.then_some("flag-row-selected"), row.killed.then_some("flag-row-killed"))}
            data-testid={format!("flag-row-{}", row.key)}
            data-killed={row.killed.to_string()}
            data-enabled={row.enabled.to_string()}
        >
            <button type="button" class="flag-row-main" onclick={on_select} aria-pressed={props.selected.to_string()}>
                <span class="flag-row-title">
                    <span class="flag-key mono">{ row.key.clone() }</span>
                    if row.name != row.key {
                        <span class="flag-name">{ row.name.clone() }</span>
                    }
                </span>
                <span class="flag-row-meta small muted">
                    <span class="flag-kind">{ row.kind.as_str() }</span>
                    { " · " }
                    { row.serving.clone() }
                </span>
            </button>
            <div class="flag-row-badges">
                if row.killed {
                    <span class="flag-badge flag-badge-killed" data-testid={format!("killed-{}", row.key)}>{ "killed" }</span>
                } else if row.enabled {
                    <span class="flag-badge flag-badge-on">{ "on" }</span>
                } else {
                    <span class="flag-badge flag-badge-off">{ "off" }</span>
                }
                { for row.environments.iter().filter(|(name, _)| *name != props.environment).map(|(name, state)| html! {
                    <span class={classes!("flag-env", format!("flag-env-{state}"))} title={format!("{name}: {state}")}>
                        { format!("{name}: {state}") }
                    </span>
                }) }
            </div>
            if props.manage && row.present {
                <div class="flag-row-actions">
                    if *confirming {
                        <span class="small">{ format!("{} {} in {}?", if kill { "Kill" } else { "Revive" }, row.key, props.environment) }</span>
                        <button
                            type="button"
                            class={classes!("button", if kill { "button-danger" } else { "button-primary" })}
                            data-testid={format!("kill-confirm-{}", row.key)}
                            onclick={on_confirm}
                        >
                            { if kill { "Kill now" } else { "Revive now" } }
                        </button>
                        <button type="button" class="button button-ghost" onclick={on_cancel}>{ "Cancel" }</button>
                    } else {
                        <button
                            type="button"
                            class={classes!("button", if kill { "button-danger-ghost" } else { "button-ghost" })}
                            data-testid={format!("kill-{}", row.key)}
                            disabled={*busy}
                            title={if kill { "Serve the off variation to everyone, now, whatever the rules say" } else { "Lift the kill switch" }}
                            onclick={on_ask}
                        >
                            { if *busy { "Sending…" } else if kill { "Kill switch" } else { "Revive" } }
                        </button>
                    }
                </div>
            }
            if let Some(result) = &*result {
                <p
                    class={classes!("flag-row-result", "small", if result.is_ok() { "flag-result-ok" } else { "flag-result-error" })}
                    data-testid={format!("kill-result-{}", row.key)}
                    role="status"
                >
                    { match result { Ok(text) | Err(text) => text.clone() } }
                </p>
            }
        </li>
    }
}

#[derive(Properties, PartialEq)]
struct FlagListProps {
    rows: Vec<FlagRow>,
    environment: String,
    selected: Option<String>,
    manage: bool,
    loading: bool,
    error: Option<String>,
    on_select: Callback<String>,
    on_changed: Callback<()>,
}

#[component]
fn FlagListPanel(props: &FlagListProps) -> Html {
    html! {
        <section class="card panel flags-list" aria-labelledby="flags-list-title">
            <header class="panel-header">
                <h2 id="flags-list-title">{ format!("Flags in {}", props.environment) }</h2>
                if props.loading {
                    <span class="panel-meta muted">{ "Refreshing…" }</span>
                }
            </header>
            if let Some(error) = &props.error {
                <p class="callout callout-warning small" role="alert">{ format!("The flags could not be loaded: {error}") }</p>
            }
            if props.rows.is_empty() {
                if props.loading {
                    <Spinner label="Loading the flags…" />
                } else {
                    <p class="empty muted">{ "No flags yet." }</p>
                }
            } else {
                <ul class="flag-rows">
                    { for props.rows.iter().map(|row| html! {
                        <FlagRowView
                            key={row.key.clone()}
                            row={row.clone()}
                            environment={props.environment.clone()}
                            selected={props.selected.as_deref() == Some(row.key.as_str())}
                            manage={props.manage}
                            on_select={props.on_select.clone()}
                            on_changed={props.on_changed.clone()}
                        />
                    }) }
                </ul>
            }
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct CreateFlagProps {
    on_created: Callback<String>,
}

#[component]
fn CreateFlagPanel(props: &CreateFlagProps) -> Html {
    let form = use_state(NewFlagForm::default);
    let busy = use_state(|| false);
    let error = use_state(|| None::<String>);

    let set_text = |apply: fn(&mut NewFlagForm, String)| {
        let form = form.clone();
        Callback::from(move |event: InputEvent| {
            let mut next = (*form).clone();
            apply(&mut next, input_text(&event));
            form.set(next);
        })
    };
    let on_kind = {
        let form = form.clone();
        Callback::from(move |event: Event| {
            let kind = match select_text(&event).as_str() {
                "string" => FlagKind::String,
                "number" => FlagKind::Number,
                "json" => FlagKind::Json,
                _ => FlagKind::Boolean,
            };
            let mut next = (*form).clone();
            if next.kind != kind {
                next.kind = kind;
                next.variations = starter_variations(kind);
            }
            form.set(next);
        })
    };
    let on_variation = |index: usize, value: bool| {
        let form = form.clone();
        Callback::from(move |event: InputEvent| {
            let mut next = (*form).clone();
            if let Some(draft) = next.variations.get_mut(index) {
                if value {
                    draft.value = input_text(&event);
                } else {
                    draft.name = input_text(&event);
                }
            }
            form.set(next);
        })
    };
    let on_add_variation = {
        let form = form.clone();
        Callback::from(move |_: MouseEvent| {
            let mut next = (*form).clone();
            let n = next.variations.len() + 1;
            let value = match next.kind {
                FlagKind::Number => n.to_string(),
                FlagKind::Json => "{}".to_owned(),
                _ => format!("variant-{n}"),
            };
            next.variations.push(VariationDraft {
                name: format!("variant-{n}"),
                value,
            });
            form.set(next);
        })
    };
    let on_remove_variation = |index: usize| {
        let form = form.clone();
        Callback::from(move |_: MouseEvent| {
            let mut next = (*form).clone();
            if next.variations.len() > 1 && index < next.variations.len() {
                next.variations.remove(index);
            }
            form.set(next);
        })
    };
    let on_submit = {
        let form = form.clone();
        let busy = busy.clone();
        let error = error.clone();
        let on_created = props.on_created.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if *busy {
                return;
            }
            let body = match form.to_new_flag() {
                Ok(body) => body,
                Err(why) => {
                    error.set(Some(why));
                    return;
                }
            };
            busy.set(true);
            error.set(None);
            let form = form.clone();
            let busy = busy.clone();
            let error = error.clone();
            let on_created = on_created.clone();
            spawn_local(async move {
                match http::create_flag(&body).await {
                    Ok(flag) => {
                        form.set(NewFlagForm::default());
                        on_created.emit(flag.key);
                    }
                    Err(failure) => error.set(Some(failure.message())),
                }
                busy.set(false);
            });
        })
    };

    let kind = form.kind;
    html! {
        <section class="card panel flags-create" aria-labelledby="flags-create-title">
            <header class="panel-header">
                <h2 id="flags-create-title">{ "New flag" }</h2>
            </header>
            <form class="flags-form" data-testid="create-flag" onsubmit={on_submit}>
                <div class="flags-form-row">
                    <label class="field">
                        <span class="field-label">{ "Key" }</span>
                        <input type="text" name="key" required={true} placeholder="new-checkout" value={form.key.clone()}
                            oninput={set_text(|form, text| form.key = text)} />
                    </label>
                    <label class="field">
                        <span class="field-label">{ "Name" }</span>
                        <input type="text" name="name" placeholder="New checkout" value={form.name.clone()}
                            oninput={set_text(|form, text| form.name = text)} />
                    </label>
                    <label class="field flags-kind">
                        <span class="field-label">{ "Kind" }</span>
                        <select name="kind" onchange={on_kind}>
                            { for [FlagKind::Boolean, FlagKind::String, FlagKind::Number, FlagKind::Json].into_iter().map(|option| html! {
                                <option value={option.as_str()} selected={option == kind}>{ option.as_str() }</option>
                            }) }
                        </select>
                    </label>
                </div>
                <label class="field">
                    <span class="field-label">{ "Description" }</span>
                    <input type="text" name="description" value={form.description.clone()}
                        oninput={set_text(|form, text| form.description = text)} />
                </label>
                if kind == FlagKind::Boolean {
                    <p class="small muted">{ "Variations: on (true) and off (false). It starts off everywhere and serves on once turned on." }</p>
                } else {
                    <fieldset class="flags-variations">
                        <legend class="field-label">{ "Variations" }</legend>
                        { for form.variations.iter().enumerate().map(|(i, draft)| html! {
                            <div class="flags-variation" key={i}>
                                <input type="text" aria-label={format!("Variation {} name", i + 1)} value={draft.name.clone()} oninput={on_variation(i, false)} />
                                <input type="text" class="mono" aria-label={format!("Variation {} value", i + 1)} value={draft.value.clone()} oninput={on_variation(i, true)} />
                                <button type="button" class="link-button" onclick={on_remove_variation(i)} disabled={form.variations.len() <= 1}>{ "Remove" }</button>
                            </div>
                        }) }
                        <button type="button" class="link-button" onclick={on_add_variation}>{ "Add a variation" }</button>
                    </fieldset>
                }
                <label class="field">
                    <span class="field-label">{ "Tags" }</span>
                    <input type="text" name="tags" placeholder="checkout, experiment" value={form.tags.clone()}
                        oninput={set_text(|form, text| form.tags = text)} />
                </label>
                if let Some(error) = &*error {
                    <p class="form-error" role="alert" data-testid="create-error">{ error.clone() }</p>
                }
                <div>
                    <button type="submit" class="button button-primary" disabled={*busy}>
                        { if *busy { "Creating…" } else { "Create flag" } }
                    </button>
                </div>
            </form>
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct ServeEditorProps {
    target: ServeTarget,
    serve: Serve,
    variations: Vec<String>,
    boolean: Option<(String, String)>,
    dispatch: Callback<EditorAction>,
    /// The `data-testid`s of the select and of the slider.
    select_testid: AttrValue,
    slider_testid: AttrValue,
}

#[component]
fn ServeEditor(props: &ServeEditorProps) -> Html {
    let target = props.target;
    let rollout = match &props.serve {
        Serve::Rollout(rollout) => Some(rollout.clone()),
        Serve::Variation(_) => None,
    };
    let on_choice = props.dispatch.reform(move |event: Event| {
        let value = select_text(&event);
        let choice = match value.strip_prefix("variation:") {
            Some(name) => ServeChoice::Variation(name.to_owned()),
            None => ServeChoice::Rollout,
        };
        EditorAction::SetServe(target, choice)
    });
    let rollout_label = if props.boolean.is_some() {
        "percentage rollout"
    } else {
        "rollout by weight"
    };
    html! {
        <div class="flags-serve">
            <select aria-label="Serve" data-testid={props.select_testid.clone()} onchange={on_choice}>
                { for props.variations.iter().map(|name| {
                    let selected = matches!(&props.serve, Serve::Variation(v) if v == name);
                    html! { <option value={format!("variation:{name}")} {selected}>{ name.clone() }</option> }
                }) }
                <option value="rollout" selected={rollout.is_some()}>{ rollout_label }</option>
            </select>
            if let Some(rollout) = rollout {
                if let Some((on, off)) = props.boolean.clone() {
                    <div class="flags-slider">
                        <input
                            type="range"
                            min="0"
                            max="100"
                            step="1"
                            aria-label={format!("Percentage that gets {on}")}
                            data-testid={props.slider_testid.clone()}
                            value={percent_of(&rollout, &on).to_string()}
                            oninput={props.dispatch.reform(move |event: InputEvent| {
                                let percent = input_text(&event).parse::<u32>().unwrap_or(0);
                                EditorAction::SetPercent(target, percent)
                            })}
                        />
                        <span class="small mono">{ format!("{on} {}% · {off} {}%", percent_of(&rollout, &on), percent_of(&rollout, &off)) }</span>
                    </div>
                } else {
                    <div class="flags-weights">
                        { for rollout.variations.iter().enumerate().map(|(i, weighted)| html! {
                            <label class="small" key={i}>
                                { format!("{} ", weighted.variation) }
                                <input
                                    type="number"
                                    min="0"
                                    max="100"
                                    value={weighted.weight.to_string()}
                                    oninput={props.dispatch.reform(move |event: InputEvent| {
                                        let weight = input_text(&event).parse::<u32>().unwrap_or(0);
                                        EditorAction::SetWeight(target, i, weight)
                                    })}
                                />
                                { "%" }
                            </label>
                        }) }
                        <span class="small muted">{ format!("total {}%", rollout.variations.iter().map(|w| w.weight).sum::<u32>()) }</span>
                    </div>
                }
            }
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct EditorProps {
    flag: Rc<Flag>,
    environment: String,
    /// The kill switch as the page last saw it (saving keeps it).
    killed: bool,
    require_approval: bool,
    segments: Vec<String>,
    on_changed: Callback<()>,
    on_deleted: Callback<String>,
}

#[component]
fn EditorPanel(props: &EditorProps) -> Html {
    let editor = use_reducer_eq(EditorState::default);
    let busy = use_state(|| false);
    let error = use_state(|| None::<String>);
    let status = use_state(|| None::<String>);
    let at = use_state(String::new);
    let confirm_delete = use_state(|| false);

    let current = props.flag.environments.get(&props.environment).cloned();
    {
        // A new flag or environment is loaded at once; a change of the same one replaces
        // the form unless it holds edits (then the form says the flag changed).
        let editor = editor.clone();
        let error = error.clone();
        let status = status.clone();
        use_effect_with(
            (props.flag.clone(), props.environment.clone()),
            move |(flag, environment)| {
                let other = editor.key != flag.key || editor.environment != *environment;
                if other {
                    error.set(None);
                    status.set(None);
                }
                if other || !editor.dirty {
                    editor.dispatch(EditorAction::Load {
                        flag: flag.clone(),
                        environment: environment.clone(),
                    });
                }
            },
        );
    }

    let dispatch = {
        let editor = editor.clone();
        Callback::from(move |action: EditorAction| editor.dispatch(action))
    };
    let on_save = {
        let editor = editor.clone();
        let busy = busy.clone();
        let error = error.clone();
        let status = status.clone();
        let at = at.clone();
        let killed = props.killed;
        let on_changed = props.on_changed.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if *busy {
                return;
            }
            let config = match editor.to_config(killed) {
                Ok(config) => config,
                Err(why) => {
                    error.set(Some(why));
                    return;
                }
            };
            let change = EnvironmentChange {
                config,
                at_ms: parse_local_time(&at),
            };
            let (key, environment) = (editor.key.clone(), editor.environment.clone());
            busy.set(true);
            error.set(None);
            status.set(None);
            let editor = editor.clone();
            let busy = busy.clone();
            let error = error.clone();
            let status = status.clone();
            let at = at.clone();
            let on_changed = on_changed.clone();
            spawn_local(async move {
                match http::change_flag_environment(&key, &environment, &change).await {
                    Ok(outcome) => {
                        status.set(Some(outcome_text(&outcome, local_date_time)));
                        if outcome.status == ChangeStatus::Applied {
                            editor.dispatch(EditorAction::Saved);
                        }
                        at.set(String::new());
                        on_changed.emit(());
                    }
                    Err(failure) => error.set(Some(failure.message())),
                }
                busy.set(false);
            });
        })
    };
    let on_discard = {
        let editor = editor.clone();
        let flag = props.flag.clone();
        let environment = props.environment.clone();
        Callback::from(move |_: MouseEvent| {
            editor.dispatch(EditorAction::Load {
                flag: flag.clone(),
                environment: environment.clone(),
            })
        })
    };
    let on_delete = {
        let confirm_delete = confirm_delete.clone();
        let error = error.clone();
        let key = props.flag.key.clone();
        let on_deleted = props.on_deleted.clone();
        Callback::from(move |_: MouseEvent| {
            if !*confirm_delete {
                confirm_delete.set(true);
                return;
            }
            confirm_delete.set(false);
            let error = error.clone();
            let key = key.clone();
            let on_deleted = on_deleted.clone();
            spawn_local(async move {
                match http::delete_flag(&key).await {
                    Ok(()) => on_deleted.emit(key),
                    Err(failure) => error.set(Some(failure.message())),
                }
            });
        })
    };

    if editor.key != props.flag.key {
        return html! {};
    }
    let stale = editor.is_stale(current.as_ref());
    let variations = editor.variations.clone();
    let segment_list_id = "flags-segment-keys";

    html! {
        <section class="card panel flags-editor" data-testid="flag-editor" aria-labelledby="flags-editor-title">
            <header class="panel-header">
                <h2 id="flags-editor-title">
                    { "Edit " }<span class="mono">{ editor.key.clone() }</span>{ format!(" in {}", editor.environment) }
                </h2>
                if props.killed {
                    <span class="flag-badge flag-badge-killed">{ "killed: serving the off variation" }</span>
                }
            </header>
            if stale {
                <p class="callout callout-warning small" role="status">
                    { "This flag changed since you began editing. Saving replaces that change. " }
                    <button type="button" class="link-button" onclick={on_discard.clone()}>{ "Discard my edits" }</button>
                </p>
            }
            <form class="flags-form" onsubmit={on_save}>
                <div class="flags-form-row">
                    <label class="flags-toggle">
                        <input
                            type="checkbox"
                            data-testid="editor-enabled"
                            checked={editor.enabled}
                            onchange={dispatch.reform(|event: Event| EditorAction::SetEnabled(checkbox(&event)))}
                        />
                        { " Enabled" }
                    </label>
                    <label class="field flags-inline-field">
                        <span class="field-label">{ "When off, serve" }</span>
                        <select onchange={dispatch.reform(|event: Event| EditorAction::SetOffVariation(select_text(&event)))}>
                            { for variations.iter().map(|name| html! {
                                <option value={name.clone()} selected={*name == editor.off_variation}>{ name.clone() }</option>
                            }) }
                        </select>
                    </label>
                </div>

                <div class="flags-rules">
                    <h3>{ "Rules" }</h3>
                    if editor.rules.is_empty() {
                        <p class="small muted">{ "No rules: every context gets the default." }</p>
                    }
                    <datalist id={segment_list_id}>
                        { for props.segments.iter().map(|key| html! { <option value={key.clone()} /> }) }
                    </datalist>
                    { for editor.rules.iter().enumerate().map(|(i, rule)| html! {
                        <fieldset class="flags-rule" key={i} data-testid={format!("rule-{i}")}>
                            <legend>{ format!("Rule {}", i + 1) }</legend>
                            { for rule.clauses.iter().enumerate().map(|(j, clause)| {
                                let segment = matches!(clause.operator, Operator::InSegment | Operator::NotInSegment);
                                html! {
                                    <div class="flags-clause" key={j}>
                                        if j > 0 { <span class="small muted">{ "and" }</span> }
                                        if !segment {
                                            <input
                                                type="text"
                                                class="flags-attribute"
                                                placeholder="attribute (email, plan, targetingKey)"
                                                aria-label="Attribute"
                                                data-testid={format!("clause-{i}-{j}-attribute")}
                                                value={clause.attribute.clone()}
                                                oninput={dispatch.reform(move |event: InputEvent| EditorAction::SetAttribute(i, j, input_text(&event)))}
                                            />
                                        }
                                        <select
                                            aria-label="Operator"
                                            data-testid={format!("clause-{i}-{j}-operator")}
                                            onchange={dispatch.reform(move |event: Event| {
                                                let operator = operator_named(&select_text(&event)).unwrap_or(Operator::In);
                                                EditorAction::SetOperator(i, j, operator)
                                            })}
                                        >
                                            { for OPERATORS.iter().map(|operator| html! {
                                                <option value={operator.as_str()} selected={*operator == clause.operator}>{ operator.as_str() }</option>
                                            }) }
                                        </select>
                                        <input
                                            type="text"
                                            class="flags-values"
                                            placeholder={if segment { "segment keys, comma-separated" } else { "values, comma-separated" }}
                                            aria-label="Values"
                                            data-testid={format!("clause-{i}-{j}-values")}
                                            list={segment.then_some(segment_list_id)}
                                            value={clause.values.clone()}
                                            oninput={dispatch.reform(move |event: InputEvent| EditorAction::SetValues(i, j, input_text(&event)))}
                                        />
                                        if clause.operator.compares_strings() {
                                            <label class="small">
                                                <input
                                                    type="checkbox"
                                                    checked={clause.case_insensitive}
                                                    onchange={dispatch.reform(move |event: Event| EditorAction::SetCaseInsensitive(i, j, checkbox(&event)))}
                                                />
                                                { " ignore case" }
                                            </label>
                                        }
                                        <button type="button" class="link-button" aria-label="Remove this condition"
                                            disabled={rule.clauses.len() <= 1}
                                            onclick={dispatch.reform(move |_: MouseEvent| EditorAction::RemoveClause(i, j))}>
                                            { "×" }
                                        </button>
                                    </div>
                                }
                            }) }
                            <div class="flags-rule-footer">
                                <button type="button" class="link-button" onclick={dispatch.reform(move |_: MouseEvent| EditorAction::AddClause(i))}>
                                    { "And…" }
                                </button>
                                <span class="small">{ "then serve" }</span>
                                <ServeEditor
                                    target={ServeTarget::Rule(i)}
                                    serve={rule.serve.clone()}
                                    variations={variations.clone()}
                                    boolean={editor.boolean.clone()}
                                    dispatch={dispatch.clone()}
                                    select_testid={AttrValue::from(format!("serve-rule-{i}"))}
                                    slider_testid={AttrValue::from(format!("rule-{i}-rollout-slider"))}
                                />
                                <button type="button" class="link-button flags-remove-rule" onclick={dispatch.reform(move |_: MouseEvent| EditorAction::RemoveRule(i))}>
                                    { "Remove rule" }
                                </button>
                            </div>
                        </fieldset>
                    }) }
                    <button type="button" class="button button-ghost" data-testid="add-rule" onclick={dispatch.reform(|_: MouseEvent| EditorAction::AddRule)}>
                        { "Add rule" }
                    </button>
                </div>

                <div class="flags-default">
                    <h3>{ "Everyone else" }</h3>
                    <ServeEditor
                        target={ServeTarget::Default}
                        serve={editor.default_serve.clone()}
                        variations={variations.clone()}
                        boolean={editor.boolean.clone()}
                        dispatch={dispatch.clone()}
                        select_testid={AttrValue::from("serve-default")}
                        slider_testid={AttrValue::from("rollout-slider")}
                    />
                </div>

                <div class="flags-save-row">
                    <label class="field flags-inline-field">
                        <span class="field-label">{ "Apply at (optional)" }</span>
                        <input type="datetime-local" value={(*at).clone()}
                            oninput={{ let at = at.clone(); Callback::from(move |event: InputEvent| at.set(input_text(&event))) }} />
                    </label>
                    <button type="submit" class="button button-primary" data-testid="editor-save" disabled={*busy}>
                        { if *busy { "Saving…" } else if props.require_approval { "Propose change" } else { "Save" } }
                    </button>
                    if editor.dirty {
                        <button type="button" class="button button-ghost" onclick={on_discard}>{ "Discard" }</button>
                    }
                </div>
                if props.require_approval {
                    <p class="small muted">{ format!("Changes in {} wait for a second person's approval.", editor.environment) }</p>
                }
                if let Some(error) = &*error {
                    <p class="form-error" role="alert" data-testid="flag-error">{ error.clone() }</p>
                }
                if let Some(status) = &*status {
                    <p class="notice small" role="status" data-testid="editor-status">{ status.clone() }</p>
                }
            </form>
            <div class="flags-danger">
                <button type="button" class={classes!("button", if *confirm_delete { "button-danger" } else { "button-danger-ghost" })} onclick={on_delete}>
                    { if *confirm_delete { "Really delete this flag everywhere?" } else { "Delete flag" } }
                </button>
            </div>
        </section>
    }
}

/// One evaluation, as a definition list.
fn evaluation_facts(
    testid: &'static str,
    variant: &str,
    value: &Value,
    reason: Reason,
    rule_index: Option<usize>,
    bucket: Option<u8>,
    error_code: Option<ErrorCode>,
) -> Html {
    html! {
        <dl class="facts flags-facts" data-testid={testid} data-variant={variant.to_owned()}>
            <div><dt>{ "Variant" }</dt><dd class="mono">{ if variant.is_empty() { "—".to_owned() } else { variant.to_owned() } }</dd></div>
            <div><dt>{ "Value" }</dt><dd class="mono">{ value.to_string() }</dd></div>
            <div class="wide"><dt>{ "Reason" }</dt><dd>{ reason.as_str() }</dd></div>
            <div><dt>{ "Rule" }</dt><dd>{ rule_index.map_or("—".to_owned(), |i| format!("#{} (index {i})", i + 1)) }</dd></div>
            <div><dt>{ "Bucket" }</dt><dd>{ bucket.map_or("—".to_owned(), |b| b.to_string()) }</dd></div>
            if let Some(code) = error_code {
                <div><dt>{ "Error" }</dt><dd>{ code.as_str() }</dd></div>
            }
        </dl>
    }
}

#[derive(Properties, PartialEq)]
struct PreviewProps {
    live: LiveView,
    flag_key: Option<String>,
    environment: String,
    signed_in: bool,
    context_key: String,
    context_attributes: String,
    on_context_key: Callback<String>,
    on_context_attributes: Callback<String>,
}

#[component]
fn PreviewPanel(props: &PreviewProps) -> Html {
    let server = use_state(|| None::<Result<Preview, String>>);
    let request = use_mut_ref(|| 0u64);
    let context = parse_context(&props.context_key, &props.context_attributes);
    let version = props.live.version();
    {
        let server = server.clone();
        let request = request.clone();
        use_effect_with(
            (
                props.flag_key.clone(),
                props.environment.clone(),
                context.clone().ok(),
                version,
                props.signed_in,
            ),
            move |(key, environment, context, _, signed_in)| {
                *request.borrow_mut() += 1;
                let mine = *request.borrow();
                match (key, context, signed_in) {
                    (Some(key), Some(context), true) => {
                        let key = key.clone();
                        let body = PreviewRequest {
                            environment: environment.clone(),
                            context: context.clone(),
                        };
                        spawn_local(async move {
                            let answer = http::preview_flag(&key, &body).await;
                            if *request.borrow() == mine {
                                server.set(Some(answer.map_err(|error| error.message())));
                            }
                        });
                    }
                    _ => server.set(None),
                }
            },
        );
    }

    let local = match (&props.flag_key, &context, &props.live.config) {
        (Some(key), Ok(context), Some(config)) => config.evaluate(key, context),
        _ => None,
    };
    let agree = match (&local, &*server) {
        (Some(local), Some(Ok(server))) => Some(preview_agrees(local, server)),
        _ => None,
    };

    html! {
        <section class="card panel flags-preview" data-testid="preview" aria-labelledby="flags-preview-title">
            <header class="panel-header">
                <h2 id="flags-preview-title">{ "Preview a context" }</h2>
                if let Some(key) = &props.flag_key {
                    <span class="panel-meta mono">{ key.clone() }</span>
                }
            </header>
            <label class="field">
                <span class="field-label">{ "targetingKey" }</span>
                <input
                    type="text"
                    data-testid="context-key"
                    value={props.context_key.clone()}
                    oninput={props.on_context_key.reform(|event: InputEvent| input_text(&event))}
                />
            </label>
            <label class="field">
                <span class="field-label">{ "Attributes (JSON)" }</span>
                <textarea
                    class="mono flags-json-input"
                    rows="4"
                    data-testid="context-attributes"
                    value={props.context_attributes.clone()}
                    oninput={props.on_context_attributes.reform(|event: InputEvent| textarea_text(&event))}
                />
            </label>
            if let Err(why) = &context {
                <p class="form-error small" role="alert">{ why.clone() }</p>
            }
            if props.flag_key.is_none() {
                <p class="empty muted">{ "Pick a flag in the list to preview it." }</p>
            } else {
                <div class="flags-preview-grid">
                    <div>
                        <h3>{ "In this browser" }</h3>
                        <p class="small muted">{ format!("Shared evaluator (wasm), configuration version {version}") }</p>
                        { match &local {
                            Some(evaluation) => evaluation_facts("preview-local", &evaluation.variant, &evaluation.value, evaluation.reason, evaluation.rule_index, evaluation.bucket, evaluation.error_code),
                            None => html! { <p class="small muted" data-testid="preview-local">{ "Not in the live configuration (yet)." }</p> },
                        } }
                    </div>
                    <div>
                        <h3>{ "On the server" }</h3>
                        <p class="small muted">{ "POST /api/flags/{key}/preview" }</p>
                        { match &*server {
                            Some(Ok(preview)) => evaluation_facts("preview-server", &preview.variant, &preview.value, preview.reason, preview.rule_index, preview.bucket, preview.error_code),
                            Some(Err(error)) => html! { <p class="small callout callout-warning" data-testid="preview-server">{ error.clone() }</p> },
                            None if !props.signed_in => html! { <p class="small muted" data-testid="preview-server">{ "Sign in to ask the server." }</p> },
                            None => html! { <p class="small muted" data-testid="preview-server">{ "Asking…" }</p> },
                        } }
                    </div>
                </div>
                if let Some(agree) = agree {
                    <p
                        class={classes!("flags-agree", if agree { "flags-agree-yes" } else { "flags-agree-no" })}
                        data-testid="preview-agree"
                        data-agree={agree.to_string()}
                    >
                        { if agree { "The browser and the server agree." } else { "The browser and the server differ (is one of them on an older version?)." } }
                    </p>
                }
            }
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct DemoProps {
    live: LiveView,
    context: EvaluationContext,
    /// The attributes could not be read: only the targeting key is used.
    context_note: Option<String>,
}

/// A stand-in for an application that reads a flag: it evaluates locally from the
/// stream, so it changes without a reload when the flag changes anywhere.
#[component]
fn FlagDemo(props: &DemoProps) -> Html {
    let chosen = use_state(|| None::<String>);
    let config = props.live.config.clone();
    let keys: Vec<String> = config
        .as_ref()
        .map(|config| config.keys().map(str::to_owned).collect())
        .unwrap_or_default();
    let key = chosen
        .as_ref()
        .filter(|key| keys.contains(key))
        .cloned()
        .or_else(|| keys.first().cloned());
    let evaluation = match (&key, &config) {
        (Some(key), Some(config)) => config.evaluate(key, &props.context),
        _ => None,
    };
    let on_choose = {
        let chosen = chosen.clone();
        Callback::from(move |event: Event| chosen.set(Some(select_text(&event))))
    };
    let shown = evaluation.as_ref().map_or_else(
        || "—".to_owned(),
        |evaluation| {
            if evaluation.variant.is_empty() {
                evaluation
                    .error_code
                    .map_or("error".to_owned(), |code| code.as_str().to_owned())
            } else {
                evaluation.variant.clone()
            }
        },
    );
    let truthy = evaluation
        .as_ref()
        .is_some_and(|evaluation| evaluation.value == Value::Bool(true));

    html! {
        <section class="card panel flags-demo" data-testid="flag-demo" aria-labelledby="flags-demo-title">
            <header class="panel-header">
                <h2 id="flags-demo-title">{ "Live flag demo" }</h2>
                <span class="panel-meta muted">{ format!("v{}", props.live.version()) }</span>
            </header>
            if keys.is_empty() {
                <p class="empty muted">{ "No flag in this environment yet." }</p>
            } else {
                <select aria-label="Flag" data-testid="flag-demo-select" onchange={on_choose}>
                    { for keys.iter().map(|name| html! {
                        <option value={name.clone()} selected={key.as_deref() == Some(name.as_str())}>{ name.clone() }</option>
                    }) }
                </select>
            }
            <div class={classes!("flags-demo-screen", truthy.then_some("flags-demo-on"))}>
                <span class="small muted">{ format!("{} for {}", key.clone().unwrap_or_default(), props.context.targeting_key.clone().unwrap_or_else(|| "(no targeting key)".to_owned())) }</span>
                <span class="flags-demo-value" data-testid="flag-demo-value" aria-live="polite">{ shown }</span>
                if let Some(evaluation) = &evaluation {
                    <span class="small mono">{ format!("{} · {}", evaluation.value, evaluation.reason) }</span>
                }
            </div>
            if let Some(note) = &props.context_note {
                <p class="small muted">{ note.clone() }</p>
            }
            if config.is_some() && !props.live.confirmed {
                <p class="small callout callout-warning" data-testid="last-known-config">
                    { format!("Last known configuration (version {}), kept in this browser: the stream has not answered yet.", props.live.version()) }
                </p>
            }
            <p class="small muted">{ "Evaluated in this tab by the shared evaluator from the stream: kill or change the flag anywhere and this changes without a reload." }</p>
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct ApprovalsProps {
    version: u64,
    refresh: u64,
    on_changed: Callback<()>,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct PendingChanges {
    approvals: Vec<Approval>,
    schedules: Vec<Schedule>,
    loaded: bool,
}

#[component]
fn ApprovalsPanel(props: &ApprovalsProps) -> Html {
    let pending = use_state(PendingChanges::default);
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);
    let request = use_mut_ref(|| 0u64);
    {
        let pending = pending.clone();
        let error = error.clone();
        let request = request.clone();
        use_effect_with((props.version, props.refresh), move |_| {
            *request.borrow_mut() += 1;
            let mine = *request.borrow();
            spawn_local(async move {
                let approvals = http::pending_approvals().await;
                let schedules = http::flag_schedules().await;
                if *request.borrow() != mine {
                    return;
                }
                match (approvals, schedules) {
                    (Ok(approvals), Ok(schedules)) => pending.set(PendingChanges {
                        approvals: approvals.approvals,
                        schedules: schedules
                            .schedules
                            .into_iter()
                            .filter(|schedule| schedule.status == "pending")
                            .collect(),
                        loaded: true,
                    }),
                    (Err(failure), _) | (_, Err(failure)) => error.set(Some(failure.message())),
                }
            });
        });
    }
    let decide = |id: String, approve: bool| {
        let error = error.clone();
        let busy = busy.clone();
        let on_changed = props.on_changed.clone();
        Callback::from(move |_: MouseEvent| {
            if *busy {
                return;
            }
            busy.set(true);
            error.set(None);
            let id = id.clone();
            let error = error.clone();
            let busy = busy.clone();
            let on_changed = on_changed.clone();
            spawn_local(async move {
                if let Err(failure) = http::decide_approval(&id, approve).await {
                    error.set(Some(failure.message()));
                }
                busy.set(false);
                on_changed.emit(());
            });
        })
    };

    html! {
        <section class="card panel flags-approvals" data-testid="approvals" aria-labelledby="flags-approvals-title">
            <header class="panel-header">
                <h2 id="flags-approvals-title">{ "Waiting changes" }</h2>
            </header>
            if let Some(error) = &*error {
                <p class="form-error small" role="alert" data-testid="approval-error">{ error.clone() }</p>
            }
            if !pending.loaded {
                <Spinner label="Loading…" />
            } else if pending.approvals.is_empty() && pending.schedules.is_empty() {
                <p class="empty muted">{ "Nothing waits for approval or for its time." }</p>
            }
            <ul class="flags-pending">
                { for pending.approvals.iter().map(|approval| html! {
                    <li key={approval.id.clone()} class="flags-pending-item" data-testid={format!("approval-{}", approval.id)}>
                        <div>
                            <strong class="mono">{ approval.flag_key.clone() }</strong>
                            { format!(" in {}: proposed by {} at {}", approval.environment, approval.requested_name, local_date_time(approval.requested_at_ms)) }
                            <div class="small muted">{ serving_summary(&approval.proposed) }</div>
                            <details class="small">
                                <summary>{ "Proposed configuration" }</summary>
                                <pre class="flags-json">{ pretty_json(&serde_json::to_value(&approval.proposed).unwrap_or_default()) }</pre>
                            </details>
                        </div>
                        <div class="flags-pending-actions">
                            <button type="button" class="button button-primary" disabled={*busy}
                                data-testid={format!("approve-{}", approval.id)}
                                onclick={decide(approval.id.clone(), true)}>{ "Approve" }</button>
                            <button type="button" class="button button-ghost" disabled={*busy}
                                data-testid={format!("reject-{}", approval.id)}
                                onclick={decide(approval.id.clone(), false)}>{ "Reject" }</button>
                        </div>
                    </li>
                }) }
                { for pending.schedules.iter().map(|schedule| html! {
                    <li key={schedule.id.clone()} class="flags-pending-item">
                        <div>
                            <strong class="mono">{ schedule.flag_key.clone() }</strong>
                            { format!(" in {}: scheduled by {} for {}", schedule.environment, schedule.requested_name, local_date_time(schedule.run_at_ms)) }
                            <div class="small muted">{ serving_summary(&schedule.proposed) }</div>
                        </div>
                    </li>
                }) }
            </ul>
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct AuditProps {
    version: u64,
    flag_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct AuditState {
    entries: Vec<AuditEntry>,
    next_before: Option<u64>,
    loading: bool,
    error: Option<String>,
}

#[component]
fn AuditPanel(props: &AuditProps) -> Html {
    let only_flag = use_state(|| false);
    let state = use_state(AuditState::default);
    let request = use_mut_ref(|| 0u64);
    let filter = if *only_flag {
        props.flag_key.clone()
    } else {
        None
    };
    {
        let state = state.clone();
        let request = request.clone();
        use_effect_with((filter.clone(), props.version), move |(filter, _)| {
            *request.borrow_mut() += 1;
            let mine = *request.borrow();
            state.set(AuditState {
                loading: true,
                ..(*state).clone()
            });
            let filter = filter.clone();
            spawn_local(async move {
                let answer = http::flag_audit(filter.as_deref(), None, AUDIT_PAGE).await;
                if *request.borrow() != mine {
                    return;
                }
                state.set(match answer {
                    Ok(log) => AuditState {
                        entries: log.entries,
                        next_before: log.next_before,
                        loading: false,
                        error: None,
                    },
                    Err(failure) => AuditState {
                        loading: false,
                        error: Some(failure.message()),
                        ..(*state).clone()
                    },
                });
            });
        });
    }
    let on_older = {
        let state = state.clone();
        let request = request.clone();
        let filter = filter.clone();
        Callback::from(move |_: MouseEvent| {
            let Some(before) = state.next_before else {
                return;
            };
            *request.borrow_mut() += 1;
            let mine = *request.borrow();
            let current = (*state).clone();
            state.set(AuditState {
                loading: true,
                ..current.clone()
            });
            let state = state.clone();
            let request = request.clone();
            let filter = filter.clone();
            spawn_local(async move {
                let answer = http::flag_audit(filter.as_deref(), Some(before), AUDIT_PAGE).await;
                if *request.borrow() != mine {
                    return;
                }
                state.set(match answer {
                    Ok(log) => {
                        let mut entries = current.entries;
                        entries.extend(log.entries);
                        AuditState {
                            entries,
                            next_before: log.next_before,
                            loading: false,
                            error: None,
                        }
                    }
                    Err(failure) => AuditState {
                        loading: false,
                        error: Some(failure.message()),
                        ..current
                    },
                });
            });
        })
    };
    let on_only = {
        let only_flag = only_flag.clone();
        Callback::from(move |event: Event| only_flag.set(checkbox(&event)))
    };

    html! {
        <section class="card panel flags-audit" aria-labelledby="flags-audit-title">
            <header class="panel-header">
                <h2 id="flags-audit-title">{ "Audit log" }</h2>
                if let Some(key) = &props.flag_key {
                    <label class="small">
                        <input type="checkbox" checked={*only_flag} onchange={on_only} />
                        { format!(" only {key}") }
                    </label>
                }
            </header>
            if let Some(error) = &state.error {
                <p class="callout callout-warning small" role="alert">{ format!("The audit log could not be loaded: {error}") }</p>
            }
            if state.entries.is_empty() && !state.loading {
                <p class="empty muted">{ "No changes yet." }</p>
            }
            <ol class="flags-audit-list" data-testid="audit-log">
                { for state.entries.iter().enumerate().map(|(i, entry)| html! {
                    <li class="flags-audit-entry" key={format!("{}-{i}", entry.version)} data-testid="audit-entry" data-action={entry.action.clone()}>
                        <div class="flags-audit-head">
                            <span class={classes!("history-badge", format!("flags-action-{}", entry.action))}>{ entry.action.replace('_', " ") }</span>
                            <span class="flags-audit-what">{ audit_summary(entry) }</span>
                            <span class="small muted">
                                { format!("by {}", entry.actor_name) }
                                if let Some(approver) = &entry.approved_by {
                                    { format!(", approved by {approver}") }
                                }
                                { format!(" · {} · v{}", local_date_time(entry.at_ms), entry.version) }
                            </span>
                        </div>
                        if entry.before.is_some() || entry.after.is_some() {
                            <details class="small">
                                <summary>{ "Before and after" }</summary>
                                <div class="flags-diff">
                                    <div>
                                        <h4>{ "Before" }</h4>
                                        <pre class="flags-json">{ entry.before.as_ref().map_or("—".to_owned(), pretty_json) }</pre>
                                    </div>
                                    <div>
                                        <h4>{ "After" }</h4>
                                        <pre class="flags-json">{ entry.after.as_ref().map_or("—".to_owned(), pretty_json) }</pre>
                                    </div>
                                </div>
                            </details>
                        }
                    </li>
                }) }
            </ol>
            if state.next_before.is_some() {
                <button type="button" class="button button-ghost" onclick={on_older} disabled={state.loading}>{ "Show older" }</button>
            }
        </section>
    }
}

/// What the page holds from the admin API.
#[derive(Debug, Clone, PartialEq, Default)]
struct AdminData {
    list: Option<FlagList>,
    environments: Vec<EnvironmentSettings>,
    loading: bool,
    error: Option<HttpError>,
}

/// The feature flags page.
#[component]
pub fn FlagsPage() -> Html {
    let session = use_context::<SessionState>().unwrap_or_default();
    let environment = use_state(|| DEFAULT_ENVIRONMENT.to_owned());
    let live = use_state(LiveView::default);
    let admin = use_state(AdminData::default);
    let refresh = use_state(|| 0u64);
    let selected = use_state(|| None::<String>);
    let context_key = use_state(|| "user-1".to_owned());
    let context_attributes = use_state(|| "{\n  \"plan\": \"pro\"\n}".to_owned());
    let admin_request = use_mut_ref(|| 0u64);

    {
        let set_live = live.setter();
        use_effect_with((*environment).clone(), move |environment| {
            set_live.set(LiveView::default());
            let stream = FlagStream::start(
                environment,
                Callback::from(move |view: LiveView| set_live.set(view)),
            );
            move || stream.stop()
        });
    }

    let user = session.username().map(str::to_owned);
    let version = live.version();
    {
        let admin = admin.clone();
        let request = admin_request.clone();
        use_effect_with((user.clone(), version, *refresh), move |(user, _, _)| {
            *request.borrow_mut() += 1;
            let mine = *request.borrow();
            if user.is_none() {
                admin.set(AdminData::default());
                return;
            }
            admin.set(AdminData {
                loading: true,
                ..(*admin).clone()
            });
            spawn_local(async move {
                let list = http::flags().await;
                let environments = http::flag_environments().await;
                if *request.borrow() != mine {
                    return;
                }
                let current = (*admin).clone();
                admin.set(match (list, environments) {
                    (Ok(list), environments) => AdminData {
                        list: Some(list),
                        environments: environments
                            .map(|list| list.environments)
                            .unwrap_or(current.environments),
                        loading: false,
                        error: None,
                    },
                    (Err(error), _) => AdminData {
                        loading: false,
                        error: Some(error),
                        ..current
                    },
                });
            });
        });
    }

    let signed_out = !session.is_loading()
        && (user.is_none() || admin.error.as_ref().is_some_and(is_sign_in_required));
    let manage = user.is_some() && !signed_out;
    let list = admin.list.as_ref().filter(|_| manage);
    let config = live
        .config
        .as_deref()
        .filter(|config| config.environment() == *environment);
    let rows = flag_rows(list, config, &environment);
    let selected_key = selected
        .as_ref()
        .filter(|key| rows.iter().any(|row| &row.key == *key))
        .cloned()
        .or_else(|| rows.first().map(|row| row.key.clone()));
    let selected_flag = selected_key
        .as_ref()
        .and_then(|key| list.and_then(|list| list.flags.iter().find(|flag| &flag.key == key)))
        .cloned()
        .map(Rc::new);
    let selected_killed = selected_key
        .as_ref()
        .and_then(|key| rows.iter().find(|row| &row.key == key))
        .is_some_and(|row| row.killed);
    let environments: Vec<EnvironmentSettings> = if admin.environments.is_empty() || !manage {
        ENVIRONMENTS
            .iter()
            .map(|name| EnvironmentSettings {
                name: (*name).to_owned(),
                require_approval: false,
            })
            .collect()
    } else {
        admin.environments.clone()
    };
    let require_approval = environments
        .iter()
        .any(|settings| settings.name == *environment && settings.require_approval);
    let segments: Vec<String> = config
        .map(|config| {
            config
                .snapshot
                .segments
                .iter()
                .map(|segment| segment.key.clone())
                .collect()
        })
        .unwrap_or_default();
    let parsed_context = parse_context(&context_key, &context_attributes);
    let (demo_context, context_note) = match &parsed_context {
        Ok(context) => (context.clone(), None),
        Err(_) => (
            parse_context(&context_key, "").unwrap_or_default(),
            Some("The attributes do not parse: the demo uses the targeting key alone.".to_owned()),
        ),
    };

    let bump = {
        let refresh = refresh.clone();
        Callback::from(move |_: ()| refresh.set(*refresh + 1))
    };
    let on_select = {
        let selected = selected.clone();
        Callback::from(move |key: String| selected.set(Some(key)))
    };
    let on_created = {
        let selected = selected.clone();
        let bump = bump.clone();
        Callback::from(move |key: String| {
            selected.set(Some(key));
            bump.emit(());
        })
    };
    let on_deleted = {
        let selected = selected.clone();
        let bump = bump.clone();
        Callback::from(move |_: String| {
            selected.set(None);
            bump.emit(());
        })
    };
    let on_environment = {
        let environment = environment.clone();
        Callback::from(move |name: String| environment.set(name))
    };
    let on_require_approval = {
        let admin = admin.clone();
        let bump = bump.clone();
        Callback::from(move |(name, require): (String, bool)| {
            let admin = admin.clone();
            let bump = bump.clone();
            spawn_local(async move {
                if let Err(error) = http::set_flag_environment(&name, require).await {
                    admin.set(AdminData {
                        error: Some(error),
                        ..(*admin).clone()
                    });
                }
                bump.emit(());
            });
        })
    };
    let on_context_key = {
        let context_key = context_key.clone();
        Callback::from(move |text: String| context_key.set(text))
    };
    let on_context_attributes = {
        let context_attributes = context_attributes.clone();
        Callback::from(move |text: String| context_attributes.set(text))
    };
    let admin_error = admin
        .error
        .as_ref()
        .filter(|error| !is_sign_in_required(error))
        .map(HttpError::message);

    html! {
        <section class="page flags" data-testid="flags-page">
            <div class="page-header flags-header">
                <div>
                    <h1>{ "Feature flags" }</h1>
                    <p class="lead">
                        { "Flags evaluate where they are read — here, in SDKs and on the server — with one evaluator. Changes and the kill switch reach every connected client over a live stream." }
                    </p>
                </div>
                <div class="flags-header-side">
                    <EnvironmentSwitch
                        environments={environments}
                        current={(*environment).clone()}
                        on_select={on_environment}
                        {manage}
                        {on_require_approval}
                    />
                    <StreamPill view={(*live).clone()} />
                </div>
            </div>
            <VectorCheck />
            if signed_out {
                <SignInPrompt />
            }
            <div class="flags-layout">
                <div class="flags-main">
                    <FlagListPanel
                        rows={rows}
                        environment={(*environment).clone()}
                        selected={selected_key.clone()}
                        {manage}
                        loading={admin.loading || (config.is_none() && live.state != StreamState::Offline)}
                        error={admin_error}
                        on_select={on_select}
                        on_changed={bump.clone()}
                    />
                    if let (true, Some(flag)) = (manage, selected_flag) {
                        <EditorPanel
                            {flag}
                            environment={(*environment).clone()}
                            killed={selected_killed}
                            {require_approval}
                            {segments}
                            on_changed={bump.clone()}
                            {on_deleted}
                        />
                    }
                    if manage {
                        <CreateFlagPanel {on_created} />
                        <ApprovalsPanel {version} refresh={*refresh} on_changed={bump.clone()} />
                        <AuditPanel {version} flag_key={selected_key.clone()} />
                    }
                </div>
                <aside class="flags-side">
                    <FlagDemo live={(*live).clone()} context={demo_context} {context_note} />
                    <PreviewPanel
                        live={(*live).clone()}
                        flag_key={selected_key}
                        environment={(*environment).clone()}
                        signed_in={manage}
                        context_key={(*context_key).clone()}
                        context_attributes={(*context_attributes).clone()}
                        {on_context_key}
                        {on_context_attributes}
                    />
                </aside>
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::flags::{CompiledFlag, FlagConfig, Segments};
    use serde_json::json;

    fn boolean_flag(key: &str) -> Flag {
        Flag {
            key: key.into(),
            name: format!("Flag {key}"),
            description: String::new(),
            kind: FlagKind::Boolean,
            variations: vec![
                Variation {
                    name: "on".into(),
                    value: json!(true),
                    description: String::new(),
                },
                Variation {
                    name: "off".into(),
                    value: json!(false),
                    description: String::new(),
                },
            ],
            environments: ENVIRONMENTS
                .iter()
                .map(|name| {
                    (
                        (*name).to_owned(),
                        FlagEnvironmentConfig {
                            enabled: *name == "production",
                            killed: false,
                            off_variation: "off".into(),
                            default_serve: Serve::Variation("on".into()),
                            rules: Vec::new(),
                        },
                    )
                })
                .collect(),
            tags: Vec::new(),
            created_at_ms: 1,
            updated_at_ms: 1,
        }
    }

    fn reduce(state: EditorState, action: EditorAction) -> EditorState {
        (*Rc::new(state).reduce(action)).clone()
    }

    #[test]
    fn every_vector_matches_here_too() {
        let report = check_vectors(FLAG_VECTORS);
        assert!(report.all_pass(), "{:?}", report.failures);
        let vectors: Value = serde_json::from_str(FLAG_VECTORS).unwrap();
        let in_file: usize = ["murmur3", "buckets", "evaluations"]
            .iter()
            .map(|part| vectors[part].as_array().unwrap().len())
            .sum();
        assert_eq!(report.total, in_file, "the file's vectors, each once");
        assert!(report.total >= 300, "{} vectors", report.total);
        assert_eq!(
            report.summary(),
            format!("Evaluator check: {0}/{0} vectors match", report.total)
        );
        assert!(
            FLAG_VECTORS.len() < 100_000,
            "{} bytes are compiled into the bundle",
            FLAG_VECTORS.len()
        );
    }

    #[test]
    fn a_wrong_vector_is_reported_by_name() {
        let mut vectors: Value = serde_json::from_str(FLAG_VECTORS).unwrap();
        vectors["murmur3"][0]["hash"] = json!(1);
        vectors["evaluations"][0]["expected"]["variant"] = json!("nope");
        let report = check_vectors(&vectors.to_string());
        assert_eq!(report.passed + 2, report.total);
        assert!(!report.all_pass());
        assert!(report.failures[0].contains("murmur3"));
        let name = vectors["evaluations"][0]["name"].as_str().unwrap();
        assert!(
            report.failures[1].starts_with(name),
            "{:?}",
            report.failures
        );
        let garbage = check_vectors("{");
        assert_eq!(garbage.total, 0);
        assert!(!garbage.all_pass());
    }

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

    #[test]
    fn the_editor_builds_the_config_it_shows() {
        let flag = Rc::new(boolean_flag("beta"));
        let state = reduce(
            EditorState::default(),
            EditorAction::Load {
                flag: flag.clone(),
                environment: "production".into(),
            },
        );
        assert!(state.enabled && !state.dirty);
        assert_eq!(state.boolean, Some(("on".into(), "off".into())));
        let state = reduce(
            state,
            EditorAction::SetServe(ServeTarget::Default, ServeChoice::Rollout),
        );
        assert!(state.dirty);
        let state = reduce(state, EditorAction::SetPercent(ServeTarget::Default, 20));
        let state = reduce(state, EditorAction::AddRule);
        let state = reduce(state, EditorAction::SetAttribute(0, 0, "email".into()));
        let state = reduce(state, EditorAction::SetOperator(0, 0, Operator::EndsWith));
        let state = reduce(
            state,
            EditorAction::SetValues(0, 0, "@acme.com, @acme.org".into()),
        );
        let state = reduce(state, EditorAction::SetCaseInsensitive(0, 0, true));
        let state = reduce(state, EditorAction::AddClause(0));
        let state = reduce(state, EditorAction::SetAttribute(0, 1, "age".into()));
        let state = reduce(state, EditorAction::SetOperator(0, 1, Operator::Gte));
        let state = reduce(state, EditorAction::SetValues(0, 1, "18".into()));
        let config = state.to_config(false).unwrap();
        assert_eq!(
            serde_json::to_value(&config).unwrap(),
            json!({
                "enabled": true,
                "killed": false,
                "off_variation": "off",
                "default_serve": {"rollout": {"variations": [
                    {"variation": "on", "weight": 20},
                    {"variation": "off", "weight": 80}
                ]}},
                "rules": [{
                    "clauses": [
                        {"attribute": "email", "operator": "ends_with", "values": ["@acme.com", "@acme.org"], "case_insensitive": true},
                        {"attribute": "age", "operator": "gte", "values": [18]}
                    ],
                    "serve": {"variation": "on"}
                }]
            })
        );
        // It compiles with the shared evaluator, and answers as the editor says.
        let compiled = CompiledFlag::compile(
            &FlagConfig {
                key: "beta".into(),
                kind: FlagKind::Boolean,
                variations: flag.variations.clone(),
                environment: config.clone(),
            },
            &Segments::new(),
        )
        .unwrap();
        let context = EvaluationContext::new("u1")
            .with("email", "Ann@ACME.com")
            .with("age", 30);
        let answer = compiled.evaluate(&context);
        assert_eq!((answer.variant, answer.rule_index), ("on", Some(0)));
        // The kill switch is the page's, not the editor's.
        assert!(state.to_config(true).unwrap().killed);
        // Loaded back, the form shows the same.
        let mut saved = (*flag).clone();
        saved.environments.insert("production".into(), config);
        let reloaded = EditorState::load(&saved, "production");
        assert_eq!(reloaded.rules, state.rules);
        assert_eq!(reloaded.default_serve, state.default_serve);
    }

    #[test]
    fn bad_values_name_the_rule_and_condition() {
        let flag = Rc::new(boolean_flag("beta"));
        let mut state = EditorState::load(&flag, "production");
        state.apply(EditorAction::AddRule);
        state.apply(EditorAction::AddRule);
        state.apply(EditorAction::SetOperator(1, 0, Operator::Lt));
        state.apply(EditorAction::SetValues(1, 0, "soon".into()));
        let error = state.to_config(false).unwrap_err();
        assert!(error.starts_with("Rule 2, condition 1:"), "{error}");
        state.apply(EditorAction::RemoveRule(1));
        assert_eq!(state.rules.len(), 1);
        state.apply(EditorAction::SetAttribute(0, 0, " plan ".into()));
        assert_eq!(
            state.to_config(false).unwrap().rules[0].clauses[0].attribute,
            "plan"
        );
        // Segment clauses carry no attribute; removing the last rule empties the list.
        state.apply(EditorAction::SetAttribute(0, 0, "ignored".into()));
        state.apply(EditorAction::SetOperator(0, 0, Operator::InSegment));
        state.apply(EditorAction::SetValues(0, 0, "beta-testers".into()));
        let config = state.to_config(false).unwrap();
        assert_eq!(config.rules[0].clauses[0].attribute, "");
        state.apply(EditorAction::RemoveRule(0));
        assert!(state.rules.is_empty());
    }

    #[test]
    fn edits_made_against_an_older_config_are_stale() {
        let flag = boolean_flag("beta");
        let mut state = EditorState::load(&flag, "production");
        let current = flag.environments.get("production").cloned();
        assert!(!state.is_stale(current.as_ref()));
        state.apply(EditorAction::SetEnabled(false));
        assert!(!state.is_stale(current.as_ref()));
        let mut killed = current.clone().unwrap();
        killed.killed = true;
        assert!(
            !state.is_stale(Some(&killed)),
            "the kill switch is kept, not replaced"
        );
        let mut changed = current.clone().unwrap();
        changed.off_variation = "on".into();
        assert!(state.is_stale(Some(&changed)));
        state.apply(EditorAction::Saved);
        assert!(!state.is_stale(Some(&changed)));
    }

    #[test]
    fn a_flag_without_the_environment_starts_off() {
        let mut flag = boolean_flag("beta");
        flag.environments.remove("development");
        let state = EditorState::load(&flag, "development");
        assert!(!state.enabled);
        assert_eq!(state.off_variation, "off");
        assert_eq!(state.default_serve, Serve::Variation("on".into()));
        assert!(state.base.is_none());
    }

    #[test]
    fn a_non_boolean_rollout_is_edited_by_weight() {
        let mut flag = boolean_flag("colour");
        flag.kind = FlagKind::String;
        flag.variations = ["red", "green", "blue"]
            .iter()
            .map(|name| Variation {
                name: (*name).into(),
                value: json!(name),
                description: String::new(),
            })
            .collect();
        let mut state = EditorState::load(&flag, "production");
        assert_eq!(state.boolean, None);
        state.apply(EditorAction::SetServe(
            ServeTarget::Default,
            ServeChoice::Rollout,
        ));
        state.apply(EditorAction::SetWeight(ServeTarget::Default, 0, 50));
        state.apply(EditorAction::SetWeight(ServeTarget::Default, 1, 17));
        // The slider does nothing to a non-boolean flag.
        state.apply(EditorAction::SetPercent(ServeTarget::Default, 90));
        assert_eq!(
            serve_summary(&state.default_serve),
            "red 50% · green 17% · blue 33%"
        );
        state.apply(EditorAction::SetServe(
            ServeTarget::Default,
            ServeChoice::Variation("blue".into()),
        ));
        assert_eq!(state.default_serve, Serve::Variation("blue".into()));
    }

    #[test]
    fn the_create_form_makes_a_boolean_flag_that_starts_off() {
        let form = NewFlagForm {
            key: " new-checkout ".into(),
            tags: "checkout, , beta".into(),
            ..NewFlagForm::default()
        };
        let flag = form.to_new_flag().unwrap();
        assert_eq!(flag.key, "new-checkout");
        assert_eq!(flag.name, "new-checkout");
        assert_eq!(flag.tags, vec!["checkout", "beta"]);
        assert_eq!(flag.variations.len(), 2);
        let production = &flag.environments["production"];
        assert!(!production.enabled);
        assert_eq!(production.off_variation, "off");
        assert_eq!(production.default_serve, Serve::Variation("on".into()));
        assert_eq!(flag.environments.len(), ENVIRONMENTS.len());
        assert!(NewFlagForm::default().to_new_flag().is_err());
    }

    #[test]
    fn the_create_form_reads_values_of_its_kind() {
        let mut form = NewFlagForm {
            key: "limits".into(),
            kind: FlagKind::Number,
            variations: starter_variations(FlagKind::Number),
            ..NewFlagForm::default()
        };
        let flag = form.to_new_flag().unwrap();
        assert_eq!(flag.variations[1].value, json!(100));
        assert!(flag.environments.is_empty());
        form.variations[0].value = "many".into();
        assert_eq!(
            form.to_new_flag().unwrap_err(),
            "Variation 1: \"many\" is not a number"
        );
        assert_eq!(
            parse_variation_value(FlagKind::Json, r#"{"a": 1}"#).unwrap(),
            json!({"a": 1})
        );
        assert!(parse_variation_value(FlagKind::Json, "3").is_err());
        assert_eq!(
            parse_variation_value(FlagKind::String, " spaced ").unwrap(),
            json!(" spaced ")
        );
    }

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

    #[test]
    fn operators_round_trip_through_the_select() {
        for operator in OPERATORS {
            assert_eq!(operator_named(operator.as_str()), Some(operator));
        }
        assert_eq!(operator_named("nope"), None);
    }
}
