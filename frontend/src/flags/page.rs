//! The flags page itself: its header (the environment switch with the approval
//! setting, the stream's state), the evaluator check, the notes about what the account
//! may do, and the panels, fed by the [`FlagsPageState`] reducer.

use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;
use yew_router::prelude::Link;

use meridian_shared::flags::admin::EnvironmentSettings;
use meridian_shared::flags::vectors::check_vectors;

use super::api;
use super::create::CreateFlagPanel;
use super::dom::checkbox;
use super::editor::EditorPanel;
use super::history::{ApprovalsPanel, AuditPanel};
use super::keys::KeysPanel;
use super::list::FlagListPanel;
use super::preview::{FlagDemo, PreviewPanel};
use super::state::{stream_access, FlagAccess, FlagsAction, FlagsPageState, StreamAccess};
use super::stream::{FlagStream, LiveView, StreamState};
use super::FLAG_VECTORS;
use crate::app::Route;
use crate::session::SessionState;

#[component]
fn SignInPrompt() -> Html {
    html! {
        <div class="callout callout-warning flags-sign-in" data-testid="flags-sign-in">
            <strong>{ "Sign in to manage flags." }</strong>
            { " Reading flags and following their live configuration needs an account; creating, changing, killing and approving them needs the editor role. " }
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
struct ReadOnlyNoteProps {
    /// The account's role, as `/api/auth/me` names it.
    role: Option<AttrValue>,
}

/// Tells an account that reads flags but may not change them why the controls are
/// missing.
#[component]
fn ReadOnlyNote(props: &ReadOnlyNoteProps) -> Html {
    let role = props
        .role
        .clone()
        .unwrap_or_else(|| AttrValue::from("unknown"));
    html! {
        <div class="callout flags-read-only" data-testid="flags-read-only" data-role={role.clone()} role="status">
            <strong>{ format!("Read-only: your role is {role}.") }</strong>
            { " You can follow the flags, the audit log and the previews; creating, changing, killing and approving flags needs the editor role, which an admin can grant." }
        </div>
    }
}

/// The feature flags page.
#[component]
pub fn FlagsPage() -> Html {
    let session = use_context::<SessionState>().unwrap_or_default();
    let access = FlagAccess::of(&session);
    let state = use_reducer_eq(FlagsPageState::default);
    let admin_requests = use_mut_ref(|| 0u64);
    let dispatch = {
        let state = state.clone();
        Callback::from(move |action: FlagsAction| state.dispatch(action))
    };

    // The stream of the environment shown, for an account that may read flags (the
    // server refuses anyone else), started over for another account.
    let user_id = session.user_id().map(str::to_owned);
    let follow = stream_access(session.is_loading(), &access);
    {
        let dispatch = dispatch.clone();
        use_effect_with(
            (state.environment.clone(), user_id.clone(), follow),
            move |(environment, _, follow)| {
                let stream = match follow {
                    StreamAccess::Follow => Some(FlagStream::start(
                        environment,
                        dispatch.reform(FlagsAction::Live),
                    )),
                    StreamAccess::Waiting => {
                        dispatch.emit(FlagsAction::Live(LiveView::default()));
                        None
                    }
                    StreamAccess::Refused(why) => {
                        dispatch.emit(FlagsAction::Live(LiveView {
                            environment: environment.clone(),
                            state: StreamState::Offline,
                            error: Some((*why).to_owned()),
                            ..LiveView::default()
                        }));
                        None
                    }
                };
                move || {
                    if let Some(stream) = stream {
                        stream.stop();
                    }
                }
            },
        );
    }

    // The admin list, again after every change seen on the stream or made here.
    let version = state.live.version();
    {
        let dispatch = dispatch.clone();
        let requests = admin_requests.clone();
        use_effect_with(
            (user_id.clone(), access, version, state.refresh),
            move |(user, access, _, _)| {
                *requests.borrow_mut() += 1;
                let request = *requests.borrow();
                if user.is_none() || !access.read {
                    dispatch.emit(FlagsAction::AdminCleared(request));
                    return;
                }
                dispatch.emit(FlagsAction::AdminRequested(request));
                spawn_local(async move {
                    let list = api::flags().await;
                    let environments = api::flag_environments().await;
                    dispatch.emit(FlagsAction::AdminAnswered {
                        request,
                        list,
                        environments,
                    });
                });
            },
        );
    }

    let view = state.view(&access, session.is_loading());
    let environment = state.environment.clone();
    let changed = dispatch.reform(|_: ()| FlagsAction::Changed);
    let on_require_approval = {
        let dispatch = dispatch.clone();
        Callback::from(move |(name, require): (String, bool)| {
            let dispatch = dispatch.clone();
            spawn_local(async move {
                if let Err(error) = api::set_flag_environment(&name, require).await {
                    dispatch.emit(FlagsAction::AdminFailed(error));
                }
                dispatch.emit(FlagsAction::Changed);
            });
        })
    };
    let role = access.role.map(|role| AttrValue::from(role.as_str()));

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
                        environments={view.environments.clone()}
                        current={environment.clone()}
                        on_select={dispatch.reform(FlagsAction::SelectEnvironment)}
                        manage={view.write}
                        {on_require_approval}
                    />
                    <StreamPill view={state.live.clone()} />
                </div>
            </div>
            <VectorCheck />
            if view.signed_out {
                <SignInPrompt />
            }
            if view.read_only {
                <ReadOnlyNote role={role.clone()} />
            }
            if view.cannot_read {
                <div class="callout callout-warning" data-testid="flags-no-access" role="status">
                    { format!("Your role ({}) cannot read flags.", role.clone().unwrap_or_else(|| AttrValue::from("unknown"))) }
                </div>
            }
            <div class="flags-layout">
                <div class="flags-main">
                    <FlagListPanel
                        rows={view.rows.clone()}
                        environment={environment.clone()}
                        selected={view.selected_key.clone()}
                        manage={view.write}
                        loading={view.list_loading}
                        error={view.admin_error.clone()}
                        on_select={dispatch.reform(FlagsAction::Select)}
                        on_changed={changed.clone()}
                    />
                    if let (true, Some(flag)) = (view.manage, view.selected_flag.clone()) {
                        <EditorPanel
                            {flag}
                            environment={environment.clone()}
                            killed={view.selected_killed}
                            require_approval={view.require_approval}
                            segments={view.segments.clone()}
                            read_only={!view.write}
                            on_changed={changed.clone()}
                            on_deleted={dispatch.reform(|_: String| FlagsAction::Deleted)}
                        />
                    }
                    if view.write {
                        <CreateFlagPanel on_created={dispatch.reform(FlagsAction::Created)} />
                    }
                    if view.keys {
                        <KeysPanel environment={environment.clone()} />
                    }
                    if view.manage {
                        <ApprovalsPanel {version} refresh={state.refresh} decide={view.write} on_changed={changed.clone()} />
                        <AuditPanel {version} flag_key={view.selected_key.clone()} />
                    }
                </div>
                <aside class="flags-side">
                    <FlagDemo live={state.live.clone()} context={view.demo_context.clone()} context_note={view.context_note.clone()} />
                    <PreviewPanel
                        live={state.live.clone()}
                        flag_key={view.selected_key.clone()}
                        environment={environment.clone()}
                        signed_in={view.manage}
                        context_key={state.context_key.clone()}
                        context_attributes={state.context_attributes.clone()}
                        on_context_key={dispatch.reform(FlagsAction::ContextKey)}
                        on_context_attributes={dispatch.reform(FlagsAction::ContextAttributes)}
                    />
                </aside>
            </div>
        </section>
    }
}
