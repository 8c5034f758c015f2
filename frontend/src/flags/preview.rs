//! What a context gets: the preview (evaluated here by the shared evaluator over the
//! stream's snapshot, and by the server, side by side) and the live flag demo (a
//! stand-in for an application that reads a flag from the stream).

use meridian_shared::flags::admin::{Preview, PreviewRequest};
use meridian_shared::flags::{ErrorCode, EvaluationContext, Reason};
use serde_json::Value;
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::api;
use super::dom::{input_text, select_text, textarea_text};
use super::stream::LiveView;
use super::view::{parse_context, preview_agrees};

/// One evaluation, as a definition list.
pub(super) fn evaluation_facts(
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
pub(super) struct PreviewProps {
    pub live: LiveView,
    pub flag_key: Option<String>,
    pub environment: String,
    pub signed_in: bool,
    pub context_key: String,
    pub context_attributes: String,
    pub on_context_key: Callback<String>,
    pub on_context_attributes: Callback<String>,
}

#[component]
pub(super) fn PreviewPanel(props: &PreviewProps) -> Html {
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
                            let answer = api::preview_flag(&key, &body).await;
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
pub(super) struct DemoProps {
    pub live: LiveView,
    pub context: EvaluationContext,
    /// The attributes could not be read: only the targeting key is used.
    pub context_note: Option<String>,
}

/// A stand-in for an application that reads a flag: it evaluates locally from the
/// stream, so it changes without a reload when the flag changes anywhere.
#[component]
pub(super) fn FlagDemo(props: &DemoProps) -> Html {
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
