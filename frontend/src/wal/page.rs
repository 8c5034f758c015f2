//! The page `/wal`: the local cluster's nodes as cards, polled every second (role,
//! term, leader, commit and apply index, lag), a kill and a restart button per node, a
//! form that appends a key/value record, the newest records, and a slider over LSNs
//! (0 to the commit index) with the key-value state at that LSN.
//!
//! Test ids: `wal-node` (`data-node`, `data-running`, `data-role`), `wal-leader`,
//! `wal-kill-N`, `wal-restart-N`, `wal-key`, `wal-value`, `wal-append`, `wal-record`,
//! `wal-slider`, `wal-state-entry`.

use gloo_timers::callback::Interval;
use meridian_shared::wal::{WalLocalNode, WalRole};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::api;
use super::state::{WalAction, WalView};
use crate::browser::{clear_input, input_value};
use crate::components::Spinner;

/// How often the nodes are polled.
pub const REFRESH_MS: u32 = 1_000;
/// How many LSNs back from the commit index the records list reads.
const RECORDS_WINDOW: u64 = 200;

fn role_name(role: WalRole) -> &'static str {
    match role {
        WalRole::Leader => "leader",
        WalRole::Follower => "follower",
        WalRole::Candidate => "candidate",
        WalRole::Learner => "learner",
        WalRole::Shutdown => "shutdown",
    }
}

fn show(index: Option<u64>) -> String {
    index.map_or_else(|| "–".to_owned(), |i| i.to_string())
}

async fn refresh(dispatch: UseReducerDispatcher<WalView>) {
    match api::nodes().await {
        Ok(answer) => {
            let commit = answer
                .nodes
                .iter()
                .filter_map(|node| node.status.as_ref()?.commit_index)
                .max()
                .unwrap_or(0);
            dispatch.dispatch(WalAction::Nodes(answer.nodes));
            if let Ok(records) = api::records(commit.saturating_sub(RECORDS_WINDOW)).await {
                dispatch.dispatch(WalAction::Records(records.records));
            }
        }
        Err(err) if err.code() == Some("wal_off") => dispatch.dispatch(WalAction::Off),
        Err(err) => dispatch.dispatch(WalAction::RefreshFailed(err.message())),
    }
}

#[component]
pub fn WalPage() -> Html {
    let view = use_reducer_eq(WalView::default);
    {
        let dispatch = view.dispatcher();
        use_effect_with((), move |_| {
            let tick = move || spawn_local(refresh(dispatch.clone()));
            tick();
            let interval = Interval::new(REFRESH_MS, tick);
            move || drop(interval)
        });
    }
    let lsn = view.slider_lsn();
    let loaded = view.nodes.is_some();
    {
        let dispatch = view.dispatcher();
        use_effect_with((lsn, loaded), move |&(lsn, loaded)| {
            if loaded {
                spawn_local(async move {
                    match api::state_at(lsn).await {
                        Ok(state) => dispatch.dispatch(WalAction::State(state)),
                        Err(err) => dispatch.dispatch(WalAction::StateFailed(err.message())),
                    }
                });
            }
        });
    }

    let body = if view.off {
        html! {
            <p class="muted" data-testid="wal-off">
                { "This server runs no local WAL cluster (it was started with --wal-nodes 0)." }
            </p>
        }
    } else {
        match (&view.nodes, &view.error) {
            (None, None) => html! { <Spinner label="Loading the cluster…" /> },
            (None, Some(error)) => {
                html! { <p class="form-error" role="alert">{ error.clone() }</p> }
            }
            (Some(nodes), error) => html! {
                <>
                    if let Some(error) = error {
                        <p class="form-error" role="alert">{ format!("Showing the last answer: {error}") }</p>
                    }
                    if let Some(error) = &view.action_error {
                        <p class="form-error" role="alert" data-testid="wal-action-error">{ error.clone() }</p>
                    }
                    <p data-testid="wal-leader" class="wal-leader">
                        { match view.leader() {
                            Some(id) => format!("Leader: node {id}"),
                            None => "No leader: an election is under way".to_owned(),
                        } }
                    </p>
                    <div class="wal-nodes">
                        { for nodes.iter().map(|node| node_card(&view, node)) }
                    </div>
                    <div class="wal-grid">
                        <AppendPanel dispatch={view.dispatcher()} />
                        { records_panel(&view) }
                    </div>
                    { state_panel(&view) }
                </>
            },
        }
    };
    html! {
        <section class="page wal-page">
            <header class="page-header">
                <h1>{ "Write-ahead log" }</h1>
                <p class="lead">
                    { "A Raft-replicated log (openraft over our own CRC-checked segments): a write is answered once a majority holds it durably. Kill the leader and watch another take over; slide back through the log to see the key-value state at any LSN." }
                </p>
            </header>
            { body }
        </section>
    }
}

fn node_action(
    view: &UseReducerHandle<WalView>,
    id: u64,
    action: &'static str,
) -> Callback<MouseEvent> {
    let dispatch = view.dispatcher();
    Callback::from(move |_: MouseEvent| {
        let dispatch = dispatch.clone();
        dispatch.dispatch(WalAction::Busy(id));
        spawn_local(async move {
            let error = api::node_action(id, action)
                .await
                .err()
                .map(|err| err.message());
            dispatch.dispatch(WalAction::Done(id, error));
            refresh(dispatch).await;
        });
    })
}

fn node_card(view: &UseReducerHandle<WalView>, node: &WalLocalNode) -> Html {
    let busy = view.busy.contains(&node.id);
    let role = match (&node.status, node.running) {
        (Some(status), _) => role_name(status.role),
        (None, true) => "starting",
        (None, false) => "down",
    };
    let facts = match &node.status {
        Some(status) => html! {
            <dl class="wal-facts">
                <dt>{ "term" }</dt><dd>{ status.term }</dd>
                <dt>{ "leader" }</dt><dd>{ show(status.leader) }</dd>
                <dt>{ "commit" }</dt><dd data-testid="wal-commit">{ show(status.commit_index) }</dd>
                <dt>{ "applied" }</dt><dd>{ show(status.apply_index) }</dd>
                <dt>{ "lag" }</dt><dd>{ show(view.lag_of(node.id)) }</dd>
            </dl>
        },
        None if node.running => html! { <p class="muted">{ "Not answering yet…" }</p> },
        None => html! { <p class="muted">{ "Killed (SIGKILL). Restart it to rejoin." }</p> },
    };
    html! {
        <div
            class={classes!("card", "wal-node", format!("wal-node-{role}"))}
            data-testid="wal-node"
            data-node={node.id.to_string()}
            data-running={node.running.to_string()}
            data-role={role}
        >
            <h2>{ format!("Node {}", node.id) }<span class="wal-role">{ role }</span></h2>
            <p class="muted small">{ node.addr.clone() }</p>
            { facts }
            <div class="wal-node-actions">
                <button
                    type="button"
                    class="button button-danger"
                    data-testid={format!("wal-kill-{}", node.id)}
                    disabled={busy || !node.running}
                    onclick={node_action(view, node.id, "kill")}
                >{ "Kill" }</button>
                <button
                    type="button"
                    class="button button-ghost"
                    data-testid={format!("wal-restart-{}", node.id)}
                    disabled={busy}
                    onclick={node_action(view, node.id, "restart")}
                >{ "Restart" }</button>
            </div>
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct AppendPanelProps {
    dispatch: UseReducerDispatcher<WalView>,
}

#[component]
fn AppendPanel(props: &AppendPanelProps) -> Html {
    let key_ref = use_node_ref();
    let value_ref = use_node_ref();
    let busy = use_state(|| false);
    let answer = use_state(|| None::<String>);
    let onsubmit = {
        let (key_ref, value_ref, busy, answer) = (
            key_ref.clone(),
            value_ref.clone(),
            busy.clone(),
            answer.clone(),
        );
        let dispatch = props.dispatch.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let key = input_value(&key_ref).trim().to_owned();
            if key.is_empty() || *busy {
                return;
            }
            let value = input_value(&value_ref);
            busy.set(true);
            let (value_ref, busy, answer, dispatch) = (
                value_ref.clone(),
                busy.clone(),
                answer.clone(),
                dispatch.clone(),
            );
            spawn_local(async move {
                match api::append(key, value).await {
                    Ok(appended) => {
                        answer.set(Some(format!(
                            "Committed at LSN {} (term {}).",
                            appended.last_lsn, appended.term
                        )));
                        clear_input(&value_ref);
                    }
                    Err(err) => dispatch.dispatch(WalAction::ActionFailed(err.message())),
                }
                busy.set(false);
                refresh(dispatch).await;
            });
        })
    };
    html! {
        <form class="card panel wal-append" {onsubmit}>
            <h2>{ "Append a record" }</h2>
            <label>{ "Key" }<input ref={key_ref} name="key" data-testid="wal-key" required=true maxlength="1024" /></label>
            <label>{ "Value" }<input ref={value_ref} name="value" data-testid="wal-value" /></label>
            <button type="submit" class="button button-primary" data-testid="wal-append" disabled={*busy}>
                { if *busy { "Appending…" } else { "Append" } }
            </button>
            if let Some(answer) = &*answer {
                <p class="muted small" data-testid="wal-appended">{ answer.clone() }</p>
            }
        </form>
    }
}

fn records_panel(view: &WalView) -> Html {
    html! {
        <div class="card panel wal-records">
            <h2>{ "Newest records" }</h2>
            if view.records.is_empty() {
                <p class="muted">{ "No records yet." }</p>
            } else {
                <ol class="wal-record-list">
                    { for view.records.iter().rev().map(|record| html! {
                        <li data-testid="wal-record" data-lsn={record.lsn.to_string()}>
                            <span class="wal-lsn">{ format!("#{}", record.lsn) }</span>
                            <code>{ format!("{} = {}", record.write.key, record.write.value) }</code>
                            <span class="muted small">{ format!("term {}", record.term) }</span>
                        </li>
                    }) }
                </ol>
            }
        </div>
    }
}

fn state_panel(view: &UseReducerHandle<WalView>) -> Html {
    let commit = view.commit_index();
    let lsn = view.slider_lsn();
    let oninput = {
        let dispatch = view.dispatcher();
        Callback::from(move |event: InputEvent| {
            let input: web_sys::HtmlInputElement = event.target_unchecked_into();
            if let Ok(lsn) = input.value().parse::<u64>() {
                dispatch.dispatch(WalAction::Slide(lsn));
            }
        })
    };
    let follow = {
        let dispatch = view.dispatcher();
        Callback::from(move |_: MouseEvent| dispatch.dispatch(WalAction::Follow))
    };
    let entries = match (&view.state, &view.state_error) {
        (_, Some(error)) => html! { <p class="form-error" role="alert">{ error.clone() }</p> },
        (None, None) => html! { <Spinner label="Rebuilding the state…" /> },
        (Some(state), None) if state.entries.is_empty() => {
            html! { <p class="muted">{ "Empty at this point." }</p> }
        }
        (Some(state), None) => html! {
            <table class="wal-state">
                <thead><tr><th>{ "Key" }</th><th>{ "Value" }</th></tr></thead>
                <tbody>
                    { for state.entries.iter().map(|(key, value)| html! {
                        <tr data-testid="wal-state-entry"><td><code>{ key.clone() }</code></td><td>{ value.clone() }</td></tr>
                    }) }
                </tbody>
            </table>
        },
    };
    html! {
        <div class="card panel wal-time">
            <h2>{ "Point in time" }</h2>
            <label class="wal-slider">
                { format!("LSN {lsn} of {commit}") }
                <input
                    type="range"
                    min="0"
                    max={commit.to_string()}
                    value={lsn.to_string()}
                    data-testid="wal-slider"
                    {oninput}
                />
            </label>
            if view.pinned.is_some() {
                <button type="button" class="link-button" onclick={follow}>{ "Follow the latest" }</button>
            }
            { entries }
        </div>
    }
}
