//! The sign-in and sign-up pages: one form, two modes.
//!
//! The form reads its inputs when submitted (so browser autofill is always seen), keeps
//! the button disabled while the request is in flight, and shows the server's error
//! `message` in `[data-testid=form-error]`. On success the session changes everywhere:
//! this tab's who-am-I, its socket, and the other tabs (through the realtime client),
//! and the page goes home.

use std::rc::Rc;

use meridian_shared::api::Credentials;
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;
use yew_router::prelude::*;

use crate::app::Route;
use crate::browser::input_value;
use crate::net::http;
use crate::net::realtime::Realtime;
use crate::session::SessionState;

/// Which form the page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    SignIn,
    SignUp,
}

impl AuthMode {
    pub fn title(self) -> &'static str {
        match self {
            AuthMode::SignIn => "Sign in",
            AuthMode::SignUp => "Create your account",
        }
    }

    pub fn submit_label(self) -> &'static str {
        match self {
            AuthMode::SignIn => "Sign in",
            AuthMode::SignUp => "Sign up",
        }
    }

    pub fn busy_label(self) -> &'static str {
        match self {
            AuthMode::SignIn => "Signing in…",
            AuthMode::SignUp => "Creating your account…",
        }
    }

    fn password_autocomplete(self) -> &'static str {
        match self {
            AuthMode::SignIn => "current-password",
            AuthMode::SignUp => "new-password",
        }
    }
}

/// The form's state apart from its inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthForm {
    /// A request is in flight: the submit button is disabled.
    pub submitting: bool,
    /// What went wrong with the last attempt, for people.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFormAction {
    /// The request was sent.
    Submit,
    /// The inputs were refused before sending.
    Invalid(String),
    /// The server (or the network) refused the request.
    Failed(String),
    Succeeded,
}

impl Reducible for AuthForm {
    type Action = AuthFormAction;

    fn reduce(self: Rc<Self>, action: AuthFormAction) -> Rc<Self> {
        match action {
            AuthFormAction::Submit => Rc::new(AuthForm {
                submitting: true,
                error: None,
            }),
            AuthFormAction::Invalid(error) | AuthFormAction::Failed(error) => Rc::new(AuthForm {
                submitting: false,
                error: Some(error),
            }),
            AuthFormAction::Succeeded => Rc::new(AuthForm::default()),
        }
    }
}

/// The request body from what was typed, or what is missing. The username is sent
/// without surrounding spaces; the password exactly as typed. Everything else (length,
/// characters, strength) is the server's to judge.
pub fn credentials_from(username: &str, password: &str) -> Result<Credentials, String> {
    let username = username.trim();
    if username.is_empty() {
        return Err("Enter a username.".to_owned());
    }
    if password.is_empty() {
        return Err("Enter a password.".to_owned());
    }
    Ok(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

#[derive(Properties, PartialEq)]
pub struct AuthPageProps {
    pub mode: AuthMode,
}

/// The sign-in or sign-up page.
#[component]
pub fn AuthPage(props: &AuthPageProps) -> Html {
    let mode = props.mode;
    let form = use_reducer_eq(AuthForm::default);
    let in_flight = use_mut_ref(|| false);
    let username_ref = use_node_ref();
    let password_ref = use_node_ref();
    let realtime = use_context::<Realtime>();
    let session = use_context::<SessionState>().unwrap_or_default();
    let navigator = use_navigator();

    let onsubmit = {
        let form = form.dispatcher();
        let username_ref = username_ref.clone();
        let password_ref = password_ref.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if *in_flight.borrow() {
                return;
            }
            let credentials =
                match credentials_from(&input_value(&username_ref), &input_value(&password_ref)) {
                    Ok(credentials) => credentials,
                    Err(error) => {
                        form.dispatch(AuthFormAction::Invalid(error));
                        return;
                    }
                };
            *in_flight.borrow_mut() = true;
            form.dispatch(AuthFormAction::Submit);
            let form = form.clone();
            let in_flight = in_flight.clone();
            let realtime = realtime.clone();
            let navigator = navigator.clone();
            spawn_local(async move {
                let result = match mode {
                    AuthMode::SignIn => http::sign_in(&credentials).await,
                    AuthMode::SignUp => http::sign_up(&credentials).await,
                };
                *in_flight.borrow_mut() = false;
                match result {
                    Ok(me) => {
                        form.dispatch(AuthFormAction::Succeeded);
                        if let Some(realtime) = &realtime {
                            realtime.session_changed(me);
                        }
                        if let Some(navigator) = &navigator {
                            navigator.push(&Route::Home);
                        }
                    }
                    Err(error) => form.dispatch(AuthFormAction::Failed(error.message())),
                }
            });
        })
    };

    let (other_prompt, other_route, other_label) = match mode {
        AuthMode::SignIn => ("No account yet?", Route::SignUp, "Sign up"),
        AuthMode::SignUp => ("Already have an account?", Route::SignIn, "Sign in"),
    };

    html! {
        <section class="page narrow">
            <div class="card form-card">
                <h1>{ mode.title() }</h1>
                if let Some(username) = session.username() {
                    <p class="notice">
                        { format!("You are signed in as {username}. ") }
                        { match mode {
                            AuthMode::SignIn => "Signing in switches to another account.",
                            AuthMode::SignUp => "Signing up switches to the new account.",
                        } }
                    </p>
                } else {
                    <p class="muted">
                        { match mode {
                            AuthMode::SignIn => "Welcome back. Sign in with your username and password.",
                            AuthMode::SignUp => "Pick a username and a password. The server tells you if it cannot accept either.",
                        } }
                    </p>
                }
                <form class="form" {onsubmit} novalidate=true aria-busy={form.submitting.to_string()}>
                    <label class="field">
                        <span class="field-label">{ "Username" }</span>
                        <input
                            ref={username_ref}
                            name="username"
                            type="text"
                            autocomplete="username"
                            autocapitalize="none"
                            spellcheck="false"
                            required=true
                        />
                    </label>
                    <label class="field">
                        <span class="field-label">{ "Password" }</span>
                        <input
                            ref={password_ref}
                            name="password"
                            type="password"
                            autocomplete={mode.password_autocomplete()}
                            required=true
                        />
                    </label>
                    if let Some(error) = &form.error {
                        <p class="form-error" role="alert" data-testid="form-error">{ error.clone() }</p>
                    }
                    <button
                        type="submit"
                        class="button button-primary button-block"
                        disabled={form.submitting}
                    >
                        { if form.submitting { mode.busy_label() } else { mode.submit_label() } }
                    </button>
                </form>
                <p class="form-footer muted">
                    { other_prompt }
                    { " " }
                    <Link<Route> to={other_route}>{ other_label }</Link<Route>>
                </p>
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reduce(state: AuthForm, action: AuthFormAction) -> AuthForm {
        (*Rc::new(state).reduce(action)).clone()
    }

    #[test]
    fn submitting_disables_and_clears_the_last_error() {
        let failed = reduce(
            AuthForm::default(),
            AuthFormAction::Failed("Wrong username or password.".into()),
        );
        assert_eq!(failed.error.as_deref(), Some("Wrong username or password."));
        assert!(!failed.submitting);
        let submitting = reduce(failed, AuthFormAction::Submit);
        assert!(submitting.submitting);
        assert_eq!(submitting.error, None);
        let done = reduce(submitting, AuthFormAction::Succeeded);
        assert_eq!(done, AuthForm::default());
    }

    #[test]
    fn invalid_input_is_reported_without_a_request() {
        let state = reduce(
            AuthForm::default(),
            AuthFormAction::Invalid("Enter a username.".into()),
        );
        assert!(!state.submitting);
        assert_eq!(state.error.as_deref(), Some("Enter a username."));
    }

    #[test]
    fn credentials_need_both_fields() {
        assert_eq!(
            credentials_from("  ", "secret"),
            Err("Enter a username.".into())
        );
        assert_eq!(
            credentials_from("alice", ""),
            Err("Enter a password.".into())
        );
        assert_eq!(
            credentials_from(" alice ", " pass word "),
            Ok(Credentials {
                username: "alice".into(),
                password: " pass word ".into()
            })
        );
    }

    #[test]
    fn modes_read_differently() {
        assert_eq!(AuthMode::SignIn.submit_label(), "Sign in");
        assert_eq!(AuthMode::SignUp.submit_label(), "Sign up");
        assert_ne!(AuthMode::SignIn.title(), AuthMode::SignUp.title());
        assert_eq!(AuthMode::SignUp.password_autocomplete(), "new-password");
    }
}
