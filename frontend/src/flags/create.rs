//! Creating a flag: the form's model ([`NewFlagForm`], pure and tested natively) and
//! its panel ([`CreateFlagPanel`]), offered to accounts with `flags:write`.

use std::collections::BTreeMap;

use meridian_shared::flags::{FlagEnvironmentConfig, FlagKind, Serve, Variation, ENVIRONMENTS};
use serde_json::Value;
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::api::{self, NewFlag};
use super::dom::{input_text, select_text};
use super::values::{boolean_variations, number_value};

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

#[derive(Properties, PartialEq)]
pub(super) struct CreateFlagProps {
    pub on_created: Callback<String>,
}

#[component]
pub(super) fn CreateFlagPanel(props: &CreateFlagProps) -> Html {
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
                match api::create_flag(&body).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
