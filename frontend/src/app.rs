//! The app shell: routes, the header, and the contexts every page reads.
//!
//! Contexts provided below [`App`]:
//! - [`Realtime`]: the tab's realtime client (one per tab, created once);
//! - [`RealtimeStatus`]: its latest status, re-rendering what shows it;
//! - [`SessionState`]: who the session belongs to.
//!
//! Invariants: the header always shows the connection indicator
//! (`[data-testid=connection]`, `data-state` = `online` | `connecting` | `offline`) and
//! who-am-I (`[data-testid=whoami]`: the username, or "Guest"); a signed-in account's
//! role beside it (`[data-testid=role]`, `data-role`) and, when it holds `admin:roles`,
//! an "Admin" link (`[data-testid=nav-admin]`); guests get Sign in and Sign up links,
//! users a Sign out button. The role shown is the one `/api/auth/me` last told, which
//! the realtime client refetches when the server says the role changed and when the
//! window regains the focus.

use meridian_shared::api::Me;
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;
use yew_router::prelude::*;

use crate::admin::{AdminPage, ROLES_PERMISSION};
use crate::cart::CartPage;
use crate::components::StatePill;
use crate::docs::pages::document::DocPage;
use crate::docs::pages::DocsPage;
use crate::drive::DrivePage;
use crate::eta::EtaPage;
use crate::feed::FeedPage;
use crate::flags::FlagsPage;
use crate::ids::IdsPage;
use crate::net::http::{self, HttpError};
use crate::net::realtime::{ConnectionState, Realtime, RealtimeConfig, RealtimeStatus};
use crate::pages::auth::{AuthMode, AuthPage};
use crate::pages::home::HomePage;
use crate::pages::not_found::NotFoundPage;
use crate::pages::status::{describe_rtt, StatusPage};
use crate::sales::SalePage;
use crate::session::{SessionAction, SessionState};
use crate::traces::{TracePage, TracingPage};
use crate::wal::WalPage;

/// Every page of the app.
#[derive(Debug, Clone, PartialEq, Eq, Routable)]
pub enum Route {
    #[at("/")]
    Home,
    #[at("/signin")]
    SignIn,
    #[at("/signup")]
    SignUp,
    #[at("/ids")]
    Ids,
    #[at("/cart")]
    Cart,
    #[at("/flags")]
    Flags,
    #[at("/docs")]
    Docs,
    #[at("/docs/:id")]
    Doc { id: String },
    #[at("/drive")]
    Drive,
    #[at("/eta")]
    Eta,
    #[at("/status")]
    Status,
    #[at("/admin")]
    Admin,
    #[at("/feed")]
    Feed,
    #[at("/sale")]
    Sale,
    #[at("/tracing")]
    Tracing,
    #[at("/tracing/:trace_id")]
    Trace { trace_id: String },
    #[at("/wal")]
    Wal,
    #[not_found]
    #[at("/404")]
    NotFound,
}

fn switch(route: Route) -> Html {
    match route {
        Route::Home => html! { <HomePage /> },
        Route::SignIn => html! { <AuthPage key="signin" mode={AuthMode::SignIn} /> },
        Route::SignUp => html! { <AuthPage key="signup" mode={AuthMode::SignUp} /> },
        Route::Ids => html! { <IdsPage /> },
        Route::Cart => html! { <CartPage /> },
        Route::Flags => html! { <FlagsPage /> },
        Route::Docs => html! { <DocsPage /> },
        Route::Doc { id } => html! { <DocPage {id} /> },
        Route::Drive => html! { <DrivePage /> },
        Route::Eta => html! { <EtaPage /> },
        Route::Status => html! { <StatusPage /> },
        Route::Admin => html! { <AdminPage /> },
        Route::Feed => html! { <FeedPage /> },
        Route::Sale => html! { <SalePage /> },
        Route::Tracing => html! { <TracingPage /> },
        Route::Trace { trace_id } => html! { <TracePage {trace_id} /> },
        Route::Wal => html! { <WalPage /> },
        Route::NotFound => html! { <NotFoundPage /> },
    }
}

/// The performance mark set when the app's first page is on screen and answers input,
/// for the first-load measurement (and anyone's real-user monitoring).
pub const INTERACTIVE_MARK: &str = "meridian:interactive";

fn mark_interactive() {
    if let Some(performance) = web_sys::window().and_then(|window| window.performance()) {
        // A browser without User Timing only loses the measurement.
        let _ = performance.mark(INTERACTIVE_MARK);
    }
}

/// The root component.
#[component]
pub fn App() -> Html {
    let session = use_reducer_eq(SessionState::default);
    let status = use_state_eq(RealtimeStatus::default);
    let realtime = {
        let dispatch_session = session.dispatcher();
        let set_status = status.setter();
        use_memo((), move |_| {
            Realtime::new(RealtimeConfig {
                on_status: Callback::from(move |status: RealtimeStatus| set_status.set(status)),
                on_session: Callback::from(move |result: Result<Me, HttpError>| {
                    dispatch_session.dispatch(SessionAction::from(result))
                }),
            })
        })
    };
    {
        let realtime = realtime.clone();
        use_effect_with((), move |_| {
            mark_interactive();
            realtime.start()
        });
    }

    html! {
        <BrowserRouter>
            <ContextProvider<Realtime> context={(*realtime).clone()}>
                <ContextProvider<RealtimeStatus> context={(*status).clone()}>
                    <ContextProvider<SessionState> context={(*session).clone()}>
                        <div class="shell">
                            <Header />
                            <main class="main" id="main">
                                <Switch<Route> render={switch} />
                            </main>
                            <footer class="footer">
                                <span>{ "Meridian" }</span>
                                <span class="muted">{ concat!("web ", env!("CARGO_PKG_VERSION")) }</span>
                            </footer>
                        </div>
                    </ContextProvider<SessionState>>
                </ContextProvider<RealtimeStatus>>
            </ContextProvider<Realtime>>
        </BrowserRouter>
    }
}

/// A sentence for the connection indicator's tooltip.
fn connection_detail(status: &RealtimeStatus) -> String {
    match status.state {
        ConnectionState::Online => match status.rtt_ms {
            Some(rtt) => format!(
                "Live updates are on ({} round trip).",
                describe_rtt(Some(rtt))
            ),
            None => "Live updates are on.".to_owned(),
        },
        ConnectionState::Connecting => "Connecting to the server…".to_owned(),
        ConnectionState::Offline => {
            let mut detail = status
                .last_error
                .clone()
                .unwrap_or_else(|| "Not connected.".to_owned());
            if let Some(delay) = status.retry_in_ms {
                detail.push_str(&format!(" Retrying in {:.1} s.", delay as f64 / 1000.0));
            }
            if status.pending > 0 {
                detail.push_str(&format!(
                    " {} unsent {} will go out on reconnect.",
                    status.pending,
                    if status.pending == 1 {
                        "change"
                    } else {
                        "changes"
                    }
                ));
            }
            detail
        }
    }
}

#[component]
fn Header() -> Html {
    let session = use_context::<SessionState>().unwrap_or_default();
    let status = use_context::<RealtimeStatus>().unwrap_or_default();
    let realtime = use_context::<Realtime>();
    let route = use_route::<Route>();
    let signing_out = use_state(|| false);
    let sign_out_error = use_state(|| None::<String>);

    let on_sign_out = {
        let signing_out = signing_out.clone();
        let sign_out_error = sign_out_error.clone();
        Callback::from(move |_: MouseEvent| {
            if *signing_out {
                return;
            }
            signing_out.set(true);
            sign_out_error.set(None);
            let signing_out = signing_out.clone();
            let sign_out_error = sign_out_error.clone();
            let realtime = realtime.clone();
            spawn_local(async move {
                match http::sign_out().await {
                    Ok(me) => {
                        if let Some(realtime) = &realtime {
                            realtime.session_changed(me);
                        }
                    }
                    Err(error) => {
                        sign_out_error.set(Some(format!("Could not sign out: {}", error.message())))
                    }
                }
                signing_out.set(false);
            });
        })
    };
    let dismiss_error = {
        let sign_out_error = sign_out_error.clone();
        Callback::from(move |_: MouseEvent| sign_out_error.set(None))
    };

    let nav_link = |target: Route, label: &'static str| {
        let current = route.as_ref() == Some(&target);
        html! {
            <Link<Route> to={target} classes={classes!("nav-link", current.then_some("active"))}>
                { label }
            </Link<Route>>
        }
    };

    let account = if session.is_loading() {
        html! {}
    } else if session.is_user() {
        html! {
            <button
                type="button"
                class="button button-ghost"
                data-testid="signout"
                disabled={*signing_out}
                onclick={on_sign_out}
            >
                { if *signing_out { "Signing out…" } else { "Sign out" } }
            </button>
        }
    } else {
        html! {
            <>
                <Link<Route> to={Route::SignIn} classes="button button-ghost">{ "Sign in" }</Link<Route>>
                <Link<Route> to={Route::SignUp} classes="button button-primary">{ "Sign up" }</Link<Route>>
            </>
        }
    };

    let whoami = if session.is_loading() {
        html! { <span class="whoami muted" data-testid="whoami" aria-busy="true">{ "…" }</span> }
    } else {
        let title = match &session {
            SessionState::Unknown { error } => {
                Some(format!("Could not confirm your session: {error}"))
            }
            _ => None,
        };
        html! {
            <>
                <span class={classes!("whoami", session.is_user().then_some("whoami-user"))} data-testid="whoami" {title}>
                    { session.display_name().to_owned() }
                </span>
                if let Some(role) = session.role() {
                    <span
                        class={classes!("role-badge", format!("role-{}", role.as_str()))}
                        data-testid="role"
                        data-role={role.as_str()}
                        title={format!("Your role: {role}")}
                    >
                        { role.as_str() }
                    </span>
                }
            </>
        }
    };

    html! {
        <header class="topbar">
            <div class="topbar-inner">
                <Link<Route> to={Route::Home} classes="brand">
                    <span class="brand-mark" aria-hidden="true"></span>
                    { "Meridian" }
                </Link<Route>>
                <nav class="nav" aria-label="Main">
                    { nav_link(Route::Home, "Home") }
                    { nav_link(Route::Ids, "IDs") }
                    { nav_link(Route::Cart, "Shop") }
                    { nav_link(Route::Flags, "Flags") }
                    { nav_link(Route::Docs, "Docs") }
                    { nav_link(Route::Feed, "Feed") }
                    { nav_link(Route::Sale, "Sale") }
                    { nav_link(Route::Drive, "Drive") }
                    { nav_link(Route::Tracing, "Tracing") }
                    { nav_link(Route::Eta, "ETA") }
                    { nav_link(Route::Wal, "WAL") }
                    { nav_link(Route::Status, "Status") }
                    if session.allows(ROLES_PERMISSION) {
                        <span data-testid="nav-admin">{ nav_link(Route::Admin, "Admin") }</span>
                    }
                </nav>
                <div class="account">
                    <StatePill
                        testid="connection"
                        state={status.state}
                        detail={Some(AttrValue::from(connection_detail(&status)))}
                    />
                    { whoami }
                    { account }
                </div>
            </div>
            if let Some(error) = &*sign_out_error {
                <div class="banner banner-error" role="alert">
                    <span>{ error.clone() }</span>
                    <button type="button" class="link-button" onclick={dismiss_error}>{ "Dismiss" }</button>
                </div>
            }
        </header>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_have_the_documented_paths() {
        assert_eq!(Route::Home.to_path(), "/");
        assert_eq!(Route::SignIn.to_path(), "/signin");
        assert_eq!(Route::SignUp.to_path(), "/signup");
        assert_eq!(Route::Status.to_path(), "/status");
        assert_eq!(Route::Cart.to_path(), "/cart");
        assert_eq!(Route::Flags.to_path(), "/flags");
        assert_eq!(Route::recognize("/flags"), Some(Route::Flags));
        assert_eq!(Route::recognize("/docs"), Some(Route::Docs));
        assert_eq!(Route::recognize("/drive"), Some(Route::Drive));
        assert_eq!(
            Route::recognize("/docs/d1"),
            Some(Route::Doc { id: "d1".into() })
        );
        assert_eq!(Route::recognize("/status"), Some(Route::Status));
        assert_eq!(Route::Admin.to_path(), "/admin");
        assert_eq!(Route::recognize("/admin"), Some(Route::Admin));
        assert_eq!(Route::recognize("/wal"), Some(Route::Wal));
        assert_eq!(Route::recognize("/no/such/page"), Some(Route::NotFound));
    }

    #[test]
    fn the_offline_tooltip_says_when_and_what() {
        let status = RealtimeStatus {
            state: ConnectionState::Offline,
            retry_in_ms: Some(1_500),
            pending: 2,
            last_error: Some("Could not connect to the server.".into()),
            ..RealtimeStatus::default()
        };
        assert_eq!(
            connection_detail(&status),
            "Could not connect to the server. Retrying in 1.5 s. 2 unsent changes will go out on reconnect."
        );
        let online = RealtimeStatus {
            state: ConnectionState::Online,
            rtt_ms: Some(12.4),
            ..RealtimeStatus::default()
        };
        assert_eq!(
            connection_detail(&online),
            "Live updates are on (12 ms round trip)."
        );
    }
}
