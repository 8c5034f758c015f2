//! The editor of one flag's configuration in one environment: a pure reducer
//! ([`EditorState`], [`EditorAction`]) over drafts of its rules and serves, and the
//! configuration it sends. Tested natively.

use std::rc::Rc;

use meridian_shared::flags::{
    Clause, Flag, FlagEnvironmentConfig, FlagKind, Operator, Rule, Serve, TOTAL_WEIGHT,
};
use yew::Reducible;

use super::values::{boolean_variations, format_values, parse_values, split_evenly, with_percent};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::boolean_flag;
    use crate::flags::values::serve_summary;
    use meridian_shared::flags::{
        CompiledFlag, EvaluationContext, FlagConfig, Segments, Variation,
    };
    use serde_json::json;

    fn reduce(state: EditorState, action: EditorAction) -> EditorState {
        (*Rc::new(state).reduce(action)).clone()
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
    fn operators_round_trip_through_the_select() {
        for operator in OPERATORS {
            assert_eq!(operator_named(operator.as_str()), Some(operator));
        }
        assert_eq!(operator_named("nope"), None);
    }
}
