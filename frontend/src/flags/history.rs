//! What happened and what waits: changes waiting for an approval or for their time
//! (approve and reject for accounts with `flags:write`), and the audit log, newest
//! first, paged.

use std::rc::Rc;

use meridian_shared::flags::admin::{Approval, AuditEntry, AuditLog, Schedule};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::api;
use super::dom::{checkbox, local_date_time};
use super::view::{audit_summary, pretty_json, serving_summary};
use super::AUDIT_PAGE;
use crate::components::Spinner;

#[derive(Properties, PartialEq)]
pub(super) struct ApprovalsProps {
    pub version: u64,
    pub refresh: u64,
    /// The account may approve and reject (`flags:write`).
    #[prop_or_default]
    pub decide: bool,
    pub on_changed: Callback<()>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct PendingChanges {
    approvals: Vec<Approval>,
    schedules: Vec<Schedule>,
    loaded: bool,
}

#[component]
pub(super) fn ApprovalsPanel(props: &ApprovalsProps) -> Html {
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
                let approvals = api::pending_approvals().await;
                let schedules = api::flag_schedules().await;
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
                if let Err(failure) = api::decide_approval(&id, approve).await {
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
                        if props.decide {
                            <div class="flags-pending-actions">
                                <button type="button" class="button button-primary" disabled={*busy}
                                    data-testid={format!("approve-{}", approval.id)}
                                    onclick={decide(approval.id.clone(), true)}>{ "Approve" }</button>
                                <button type="button" class="button button-ghost" disabled={*busy}
                                    data-testid={format!("reject-{}", approval.id)}
                                    onclick={decide(approval.id.clone(), false)}>{ "Reject" }</button>
                            </div>
                        }
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
pub(super) struct AuditProps {
    pub version: u64,
    pub flag_key: Option<String>,
}

/// The audit log as the panel holds it: a pure reducer over its pages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditState {
    pub entries: Vec<AuditEntry>,
    /// The cursor of the next older page, if there is one.
    pub next_before: Option<u64>,
    pub loading: bool,
    pub error: Option<String>,
    /// The request whose answer is awaited.
    request: u64,
}

/// A change to the [`AuditState`].
#[derive(Debug, Clone, PartialEq)]
pub enum AuditAction {
    /// Request number `request` went out: the newest page (`older: false`, which then
    /// replaces the entries) or the next older one (appended).
    Requested { request: u64, older: bool },
    /// Its answer, or why it failed.
    Answered {
        request: u64,
        older: bool,
        answer: Result<AuditLog, String>,
    },
}

impl AuditState {
    pub fn apply(&mut self, action: AuditAction) {
        match action {
            AuditAction::Requested { request, .. } => {
                self.request = request;
                self.loading = true;
            }
            AuditAction::Answered {
                request,
                older,
                answer,
            } => {
                if request != self.request {
                    return;
                }
                self.loading = false;
                match answer {
                    Ok(log) => {
                        if older {
                            self.entries.extend(log.entries);
                        } else {
                            self.entries = log.entries;
                        }
                        self.next_before = log.next_before;
                        self.error = None;
                    }
                    Err(error) => self.error = Some(error),
                }
            }
        }
    }
}

impl Reducible for AuditState {
    type Action = AuditAction;

    fn reduce(self: Rc<Self>, action: AuditAction) -> Rc<Self> {
        let mut next = (*self).clone();
        next.apply(action);
        Rc::new(next)
    }
}

#[component]
pub(super) fn AuditPanel(props: &AuditProps) -> Html {
    let only_flag = use_state(|| false);
    let state = use_reducer(AuditState::default);
    let requests = use_mut_ref(|| 0u64);
    let filter = if *only_flag {
        props.flag_key.clone()
    } else {
        None
    };
    // Asks for the newest page (`before: None`) or an older one, numbering the request.
    let load = {
        let state = state.clone();
        let requests = requests.clone();
        Callback::from(move |(filter, before): (Option<String>, Option<u64>)| {
            *requests.borrow_mut() += 1;
            let request = *requests.borrow();
            let older = before.is_some();
            state.dispatch(AuditAction::Requested { request, older });
            let state = state.clone();
            spawn_local(async move {
                let answer = api::flag_audit(filter.as_deref(), before, AUDIT_PAGE)
                    .await
                    .map_err(|failure| failure.message());
                state.dispatch(AuditAction::Answered {
                    request,
                    older,
                    answer,
                });
            });
        })
    };
    {
        let load = load.clone();
        use_effect_with((filter.clone(), props.version), move |(filter, _)| {
            load.emit((filter.clone(), None));
        });
    }
    let on_older = {
        let next_before = state.next_before;
        let filter = filter.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(before) = next_before {
                load.emit((filter.clone(), Some(before)));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: u64) -> AuditEntry {
        serde_json::from_value(serde_json::json!({
            "version": version,
            "at_ms": 1,
            "actor_id": "u1",
            "actor_name": "ann",
            "action": "kill",
            "flag_key": "beta",
            "environment": "production",
        }))
        .expect("an audit entry")
    }

    fn log(versions: &[u64], next_before: Option<u64>) -> AuditLog {
        AuditLog {
            entries: versions.iter().copied().map(entry).collect(),
            next_before,
        }
    }

    #[test]
    fn pages_append_and_only_the_latest_answer_counts() {
        let mut state = AuditState::default();
        state.apply(AuditAction::Requested {
            request: 1,
            older: false,
        });
        assert!(state.loading);
        state.apply(AuditAction::Answered {
            request: 1,
            older: false,
            answer: Ok(log(&[9, 8], Some(8))),
        });
        assert_eq!(state.entries.len(), 2);
        assert_eq!(state.next_before, Some(8));
        state.apply(AuditAction::Requested {
            request: 2,
            older: true,
        });
        state.apply(AuditAction::Answered {
            request: 2,
            older: true,
            answer: Ok(log(&[7], None)),
        });
        let versions: Vec<u64> = state.entries.iter().map(|e| e.version).collect();
        assert_eq!(versions, vec![9, 8, 7]);
        assert_eq!(state.next_before, None);
        // A newer request wins over a late answer; a failure keeps the entries.
        state.apply(AuditAction::Requested {
            request: 3,
            older: false,
        });
        state.apply(AuditAction::Requested {
            request: 4,
            older: false,
        });
        state.apply(AuditAction::Answered {
            request: 3,
            older: false,
            answer: Ok(log(&[1], None)),
        });
        assert_eq!(state.entries.len(), 3);
        assert!(state.loading);
        state.apply(AuditAction::Answered {
            request: 4,
            older: false,
            answer: Err("down".into()),
        });
        assert_eq!(state.entries.len(), 3);
        assert_eq!(state.error.as_deref(), Some("down"));
        assert!(!state.loading);
    }
}
