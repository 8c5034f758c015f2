//! The editor panel of one flag in one environment (on/off, off variation, rules, the
//! default serve with its rollout slider, a time to apply at, delete), over the
//! [`EditorState`] reducer. Without `flags:write` it shows the configuration read-only.

use std::rc::Rc;

use meridian_shared::flags::admin::{ChangeStatus, EnvironmentChange};
use meridian_shared::flags::{Flag, Operator, Serve};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::api;
use super::dom::{checkbox, input_text, local_date_time, parse_local_time, select_text};
use super::rules::{
    operator_named, EditorAction, EditorState, ServeChoice, ServeTarget, OPERATORS,
};
use super::values::percent_of;
use super::view::outcome_text;

#[derive(Properties, PartialEq)]
pub(super) struct ServeEditorProps {
    pub target: ServeTarget,
    pub serve: Serve,
    pub variations: Vec<String>,
    pub boolean: Option<(String, String)>,
    pub dispatch: Callback<EditorAction>,
    /// The `data-testid`s of the select and of the slider.
    pub select_testid: AttrValue,
    pub slider_testid: AttrValue,
}

#[component]
pub(super) fn ServeEditor(props: &ServeEditorProps) -> Html {
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
pub(super) struct EditorProps {
    pub flag: Rc<Flag>,
    pub environment: String,
    /// The kill switch as the page last saw it (saving keeps it).
    pub killed: bool,
    pub require_approval: bool,
    pub segments: Vec<String>,
    /// The account may not change flags: the configuration is shown, nothing is offered.
    #[prop_or_default]
    pub read_only: bool,
    pub on_changed: Callback<()>,
    pub on_deleted: Callback<String>,
}

#[component]
pub(super) fn EditorPanel(props: &EditorProps) -> Html {
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
                match api::change_flag_environment(&key, &environment, &change).await {
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
                match api::delete_flag(&key).await {
                    Ok(()) => on_deleted.emit(key),
                    Err(failure) => error.set(Some(failure.message())),
                }
            });
        })
    };

    if editor.key != props.flag.key {
        return html! {};
    }
    let read_only = props.read_only;
    let stale = !read_only && editor.is_stale(current.as_ref());
    let variations = editor.variations.clone();
    let segment_list_id = "flags-segment-keys";

    html! {
        <section class="card panel flags-editor" data-testid="flag-editor" data-read-only={read_only.to_string()} aria-labelledby="flags-editor-title">
            <header class="panel-header">
                <h2 id="flags-editor-title">
                    { if read_only { "View " } else { "Edit " } }<span class="mono">{ editor.key.clone() }</span>{ format!(" in {}", editor.environment) }
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
                <fieldset class="flags-fieldset" disabled={read_only}>
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
                </fieldset>

                if !read_only {
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
                }
                if props.require_approval && !read_only {
                    <p class="small muted">{ format!("Changes in {} wait for a second person's approval.", editor.environment) }</p>
                }
                if let Some(error) = &*error {
                    <p class="form-error" role="alert" data-testid="flag-error">{ error.clone() }</p>
                }
                if let Some(status) = &*status {
                    <p class="notice small" role="status" data-testid="editor-status">{ status.clone() }</p>
                }
            </form>
            if !read_only {
                <div class="flags-danger">
                    <button type="button" class={classes!("button", if *confirm_delete { "button-danger" } else { "button-danger-ghost" })} onclick={on_delete}>
                        { if *confirm_delete { "Really delete this flag everywhere?" } else { "Delete flag" } }
                    </button>
                </div>
            }
        </section>
    }
}
