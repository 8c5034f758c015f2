//! The admin page (`/admin`): the accounts with a role select per row, what each role
//! may do, and the log of role changes; a guest or an account without `admin:roles` is
//! told what it needs instead.

use meridian_shared::api::{AdminUser, Role};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;
use yew_router::prelude::Link;

use super::api;
use super::state::{ago, role_matrix, AdminAction, AdminState, Gate};
use crate::app::Route;
use crate::browser;
use crate::components::Spinner;
use crate::session::SessionState;

/// The admin page.
#[component]
pub fn AdminPage() -> Html {
    let session = use_context::<SessionState>().unwrap_or_default();
    let gate = Gate::of(&session);
    html! {
        <section class="page admin" data-testid="admin-page">
            <div class="page-header">
                <h1>{ "Accounts and roles" }</h1>
                <p class="lead">
                    { "Every account has a role: viewers read, editors also change what systems let them (flags, …), admins also manage roles and delivery keys. The first account of an installation is its admin." }
                </p>
            </div>
            { match gate {
                Gate::Loading => html! { <Spinner label="Checking your session…" /> },
                Gate::SignIn => html! {
                    <div class="callout callout-warning" data-testid="admin-sign-in">
                        <strong>{ "This page needs the admin role." }</strong>
                        { " " }
                        <Link<Route> to={Route::SignIn}>{ "Sign in" }</Link<Route>>
                        { " with an admin account." }
                    </div>
                },
                Gate::Forbidden(role) => html! {
                    <div class="callout callout-warning" data-testid="admin-forbidden" role="status">
                        <strong>{ "This page needs the admin role." }</strong>
                        { format!(" Your role is {}; an admin can grant you more.", role.map_or("unknown", Role::as_str)) }
                    </div>
                },
                Gate::Admin => html! { <AdminConsole key={session.user_id().unwrap_or_default().to_owned()} /> },
            } }
        </section>
    }
}

/// The console itself, shown to admins only (so that nothing is asked of the API
/// otherwise).
#[component]
fn AdminConsole() -> Html {
    let state = use_reducer(AdminState::default);
    let requests = use_mut_ref(|| 0u64);
    let reload = {
        let state = state.clone();
        Callback::from(move |_: ()| {
            *requests.borrow_mut() += 1;
            let request = *requests.borrow();
            state.dispatch(AdminAction::Requested(request));
            let state = state.clone();
            spawn_local(async move {
                let answer = api::users().await;
                state.dispatch(AdminAction::Loaded { request, answer });
            });
        })
    };
    {
        let reload = reload.clone();
        use_effect_with((), move |_| reload.emit(()));
    }
    let on_role = {
        let state = state.clone();
        let reload = reload.clone();
        Callback::from(move |(user_id, role): (String, Role)| {
            state.dispatch(AdminAction::RoleRequested {
                user_id: user_id.clone(),
                role,
            });
            let state = state.clone();
            let reload = reload.clone();
            spawn_local(async move {
                let answer = api::set_role(&user_id, role).await;
                let changed = answer.is_ok();
                state.dispatch(AdminAction::RoleAnswered { user_id, answer });
                if changed {
                    // The audit log has a new entry.
                    reload.emit(());
                }
            });
        })
    };

    let Some(list) = &state.list else {
        return html! {
            if let Some(error) = &state.error {
                <div class="callout callout-warning" role="alert" data-testid="admin-error">
                    { format!("The accounts could not be loaded: {}", error.message()) }
                    { " " }
                    <button type="button" class="link-button" onclick={reload.reform(|_: MouseEvent| ())}>{ "Try again" }</button>
                </div>
            } else {
                <div data-testid="admin-loading"><Spinner label="Loading the accounts…" /></div>
            }
        };
    };
    let now = browser::now_ms();
    let counts = state.role_counts();

    html! {
        <>
            if let Some(error) = &state.error {
                <p class="callout callout-warning small" role="alert" data-testid="admin-error">
                    { format!("The list could not be refreshed: {}", error.message()) }
                </p>
            }
            <section class="card panel admin-users" aria-labelledby="admin-users-title">
                <header class="panel-header">
                    <h2 id="admin-users-title">{ "Accounts" }</h2>
                    <span class="panel-meta muted">
                        { Role::ALL.iter().rev().map(|role| format!("{} {}", counts.get(role).copied().unwrap_or(0), role)).collect::<Vec<_>>().join(" · ") }
                        if state.loading { { " · refreshing…" } }
                    </span>
                </header>
                if list.users.is_empty() {
                    <p class="empty muted" data-testid="admin-empty">{ "No accounts yet." }</p>
                } else {
                    <table class="table admin-table" data-testid="admin-users">
                        <thead>
                            <tr>
                                <th scope="col">{ "Account" }</th>
                                <th scope="col">{ "Role" }</th>
                                <th scope="col">{ "Sessions" }</th>
                                <th scope="col">{ "Last seen" }</th>
                                <th scope="col">{ "Since" }</th>
                            </tr>
                        </thead>
                        <tbody>
                            { for list.users.iter().map(|user| user_row(user, &state, now, &on_role)) }
                        </tbody>
                    </table>
                }
            </section>
            <section class="card panel admin-permissions" aria-labelledby="admin-permissions-title">
                <header class="panel-header">
                    <h2 id="admin-permissions-title">{ "What each role may do" }</h2>
                </header>
                if list.permissions.is_empty() {
                    <p class="empty muted">{ "No system declares permissions." }</p>
                } else {
                    <table class="table admin-table" data-testid="admin-permissions">
                        <thead>
                            <tr>
                                <th scope="col">{ "Permission" }</th>
                                { for Role::ALL.iter().map(|role| html! { <th scope="col">{ role.as_str() }</th> }) }
                            </tr>
                        </thead>
                        <tbody>
                            { for role_matrix(&list.permissions).into_iter().map(|(permission, held)| html! {
                                <tr key={permission.name.clone()} data-testid={format!("permission-{}", permission.name)}>
                                    <td>
                                        <span class="mono">{ permission.name.clone() }</span>
                                        <div class="small muted">{ permission.description.clone() }</div>
                                    </td>
                                    { for held.iter().zip(Role::ALL).map(|(held, role)| html! {
                                        <td class={classes!("admin-held", held.then_some("admin-held-yes"))} title={format!("{role}: {}", if *held { "yes" } else { "no" })}>
                                            { if *held { "✓" } else { "—" } }
                                        </td>
                                    }) }
                                </tr>
                            }) }
                        </tbody>
                    </table>
                }
            </section>
            <section class="card panel admin-audit" aria-labelledby="admin-audit-title">
                <header class="panel-header">
                    <h2 id="admin-audit-title">{ "Role changes" }</h2>
                </header>
                if list.audit.is_empty() {
                    <p class="empty muted">{ "No role has changed yet." }</p>
                } else {
                    <ol class="admin-audit-list" data-testid="admin-audit">
                        { for list.audit.iter().map(|entry| html! {
                            <li
                                key={entry.id.clone()}
                                class="admin-audit-entry"
                                data-testid="role-audit-entry"
                                data-username={entry.username.clone()}
                                data-before={entry.before.map_or("", Role::as_str)}
                                data-after={entry.after.as_str()}
                            >
                                <strong>{ entry.username.clone() }</strong>
                                { format!(": {} → {}", entry.before.map_or("(new account)", Role::as_str), entry.after) }
                                <span class="small muted">
                                    { format!(" · by {} · {} ({})", entry.actor_name, browser::local_time_hh_mm(entry.at_ms), ago(now, entry.at_ms)) }
                                </span>
                            </li>
                        }) }
                    </ol>
                }
            </section>
        </>
    }
}

/// One account's row: its role select (disabled while a change is in flight), its
/// sessions and last activity, and the last refusal of a change.
fn user_row(
    user: &AdminUser,
    state: &AdminState,
    now: i64,
    on_role: &Callback<(String, Role)>,
) -> Html {
    let shown = state.shown_role(user);
    let busy = state.pending.contains_key(&user.id);
    let onchange = {
        let user_id = user.id.clone();
        let current = user.role;
        let on_role = on_role.clone();
        Callback::from(move |event: Event| {
            let value = event
                .target_unchecked_into::<web_sys::HtmlSelectElement>()
                .value();
            if let Some(role) = Role::parse(&value).filter(|role| *role != current) {
                on_role.emit((user_id.clone(), role));
            }
        })
    };
    html! {
        <tr
            key={user.id.clone()}
            data-testid={format!("admin-user-{}", user.username)}
            data-user-id={user.id.clone()}
            data-role={user.role.as_str()}
        >
            <th scope="row">{ user.username.clone() }</th>
            <td>
                // Keyed by the role shown, so that a refused change puts the select back.
                <select
                    key={format!("{}-{shown}", user.id)}
                    aria-label={format!("Role of {}", user.username)}
                    data-testid={format!("role-{}", user.username)}
                    disabled={busy}
                    {onchange}
                >
                    { for Role::ALL.iter().map(|role| html! {
                        <option value={role.as_str()} selected={*role == shown}>{ role.as_str() }</option>
                    }) }
                </select>
                if busy {
                    <span class="small muted">{ " saving…" }</span>
                }
                if let Some(refusal) = state.refusals.get(&user.id) {
                    <div class="form-error small" role="alert" data-testid={format!("role-error-{}", user.username)}>
                        { refusal.clone() }
                    </div>
                }
            </td>
            <td data-testid={format!("sessions-{}", user.username)}>{ user.sessions.to_string() }</td>
            <td>{ user.last_seen_ms.map_or("never".to_owned(), |at| ago(now, at)) }</td>
            <td class="small muted">{ ago(now, user.created_at_ms) }</td>
        </tr>
    }
}
