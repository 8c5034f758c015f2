//! The list of flags in one environment, each row with its state and, for accounts
//! with `flags:write`, the kill switch (with its confirm step and how far it reached).

use meridian_shared::flags::admin::KillRequest;
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::api;
use super::view::{kill_result_text, FlagRow};
use crate::components::Spinner;

#[derive(Properties, PartialEq)]
pub(super) struct FlagRowProps {
    pub row: FlagRow,
    pub environment: String,
    pub selected: bool,
    pub manage: bool,
    pub on_select: Callback<String>,
    pub on_changed: Callback<()>,
}

#[component]
pub(super) fn FlagRowView(props: &FlagRowProps) -> Html {
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
                let answer = api::kill_flag(&key, &request).await;
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
pub(super) struct FlagListProps {
    pub rows: Vec<FlagRow>,
    pub environment: String,
    pub selected: Option<String>,
    pub manage: bool,
    pub loading: bool,
    pub error: Option<String>,
    pub on_select: Callback<String>,
    pub on_changed: Callback<()>,
}

#[component]
pub(super) fn FlagListPanel(props: &FlagListProps) -> Html {
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
