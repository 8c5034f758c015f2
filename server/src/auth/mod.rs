//! Accounts and sessions: sign up, sign in, sign out, who am I, and the list of one's own
//! sessions (each revocable).
//!
//! Invariants:
//! - Passwords are checked with argon2id on a blocking thread, never on the async
//!   workers.
//! - Sign-in attempts are limited per account (failures) and per client address (all
//!   attempts); the limits answer 429 with `Retry-After`.
//! - A session created by signing in records the guest session it came from
//!   (`guest_session_id`), so that systems can merge guest state into the account.

pub mod access;
pub mod admin;
pub mod known;
pub mod password;
pub mod rate_limit;
pub mod session;
pub mod store;

use std::net::{IpAddr, SocketAddr};

use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts, State};
use axum::http::header::{SET_COOKIE, USER_AGENT};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use meridian_shared::api::{ApiErrorBody, Credentials, Me, Role, SessionList};
use meridian_shared::realtime::close_code;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::password::CredentialError;
use self::rate_limit::RateLimiter;
pub use self::session::Session;
use crate::clock::Entropy;
use crate::error::{ApiError, ApiResult, Json, Path};
use crate::ids::Ids;
use crate::platform::{Platform, SignInHook};
use crate::realtime::hub::Hub;
use crate::{Clock, Config, Db};

/// What accounts and sessions need of the instance: narrow handles, no system. One
/// shared [`AuthParts`]: the session middleware clones it for every request.
#[derive(Clone)]
pub struct Auth(Arc<AuthParts>);

impl Auth {
    pub fn new(parts: AuthParts) -> Auth {
        Auth(Arc::new(parts))
    }
}

impl std::ops::Deref for Auth {
    type Target = AuthParts;

    fn deref(&self) -> &AuthParts {
        &self.0
    }
}

/// What [`Auth`] shares.
pub struct AuthParts {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    /// Session tokens and session ids.
    pub entropy: Arc<dyn Entropy>,
    pub config: Arc<Config>,
    /// To close the realtime connections of a revoked session.
    pub hub: Hub,
    /// The sessions this instance has read.
    pub sessions: Arc<known::KnownSessions>,
    pub ids: Ids,
    pub limits: Arc<AuthLimits>,
    /// The permissions the systems declare.
    pub platform: Arc<Platform>,
    /// What the systems do when a guest signs in.
    pub on_sign_in: Arc<dyn SignInHook>,
}

/// The sign-in rate limiters of one server instance.
#[derive(Debug)]
pub struct AuthLimits {
    per_account: RateLimiter,
    per_address: RateLimiter,
}

impl AuthLimits {
    pub fn new(config: &crate::Config) -> AuthLimits {
        let window_ms = config.signin_window.as_millis() as i64;
        AuthLimits {
            per_account: RateLimiter::new(config.signin_failures_per_account, window_ms),
            per_address: RateLimiter::new(config.signin_attempts_per_address, window_ms),
        }
    }
}

pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Auth: FromRef<S>,
{
    crate::openapi::with_platform_errors(
        OpenApiRouter::new()
            .routes(routes!(signup))
            .routes(routes!(signin))
            .routes(routes!(signout))
            .routes(routes!(me))
            .routes(routes!(list_sessions))
            .routes(routes!(revoke_session))
            .merge(admin::routes()),
    )
}

/// The client's address, when the server knows it.
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientAddr, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

impl From<CredentialError> for ApiError {
    fn from(err: CredentialError) -> ApiError {
        let code = match err {
            CredentialError::InvalidUsername => "invalid_username",
            _ => "weak_password",
        };
        ApiError::unprocessable(code, err.to_string())
    }
}

fn limit_address(state: &Auth, addr: &ClientAddr) -> ApiResult<()> {
    let key = match addr.0 {
        Some(ip) => format!("ip:{ip}"),
        None => "ip:unknown".to_owned(),
    };
    state
        .limits
        .per_address
        .attempt(&key, state.clock.now_ms())
        .map_err(|secs| {
            ApiError::too_many(
                "too many sign-in attempts from this address; wait and retry",
                secs,
            )
        })
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect())
}

/// Replaces the request's session with a new one for `user` (or a fresh guest), revokes
/// the old one, disconnects its realtime connections and answers with the new cookie.
async fn switch_session(
    state: &Auth,
    old: &Session,
    user: Option<(meridian_shared::api::UserInfo, Role)>,
    headers: &HeaderMap,
    status: StatusCode,
) -> ApiResult<Response> {
    let guest_session_id = match (&user, &old.user) {
        (None, _) => None,
        (Some(_), None) => Some(old.id.clone()),
        (Some(_), Some(_)) => old.guest_session_id.clone(),
    };
    if let (Some((user, _)), None) = (&user, &old.user) {
        // Before the new session exists: a failed merge fails the sign-in, and the guest
        // cart stays as it was for the retry.
        state.on_sign_in.on_sign_in(&old.id, &user.id).await?;
    }
    let (new, token) = session::create_session(
        state,
        user,
        guest_session_id,
        user_agent(headers).as_deref(),
    )
    .await?;
    store::replace_session(&state.db.pool, &old.id, &new.id, state.clock.now_ms()).await?;
    state
        .hub
        .close_session(&old.id, close_code::SESSION_REVOKED, "session replaced")
        .await;
    let mut response =
        (status, Json(new.me(state.platform.declared_permissions()))).into_response();
    response.headers_mut().append(
        SET_COOKIE,
        session::session_cookie(&token, state.config.secure_cookies),
    );
    Ok(response)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)
}

/// Create an account and sign in to it.
#[utoipa::path(
    post,
    path = "/api/auth/signup",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 201, description = "Signed up and signed in; sets the session cookie", body = Me),
        (status = 409, description = "`username_taken`", body = ApiErrorBody),
        (status = 422, description = "`invalid_username` or `weak_password`", body = ApiErrorBody),
        (status = 429, description = "`too_many_attempts`", body = ApiErrorBody),
    )
)]
async fn signup(
    State(state): State<Auth>,
    session: Session,
    addr: ClientAddr,
    headers: HeaderMap,
    Json(creds): Json<Credentials>,
) -> ApiResult<Response> {
    password::check_username(&creds.username)?;
    password::check_password_strength(&creds.username, &creds.password)?;
    limit_address(&state, &addr)?;
    let key = password::username_key(&creds.username);
    if store::user_by_username_key(&state.db.pool, &key)
        .await?
        .is_some()
    {
        return Err(username_taken(&creds.username));
    }
    let plain = creds.password.clone();
    let hash = blocking(move || password::hash_password(&plain))
        .await?
        .map_err(ApiError::internal)?;
    let user = meridian_shared::api::UserInfo {
        id: state.ids.next_id()?,
        username: creds.username.clone(),
    };
    let inserted = store::insert_user(
        &state.db.pool,
        state.db.backend,
        &state.ids.next_id()?,
        store::NewUser {
            id: &user.id,
            username: &user.username,
            username_key: &key,
            password_hash: &hash,
            now_ms: state.clock.now_ms(),
        },
    )
    .await;
    let role = match inserted {
        Ok(role) => role,
        Err(err) if crate::db::is_unique_violation(&err) => {
            return Err(username_taken(&creds.username))
        }
        Err(err) => return Err(err.into()),
    };
    tracing::info!(user_id = %user.id, %role, "signed up");
    switch_session(
        &state,
        &session,
        Some((user, role)),
        &headers,
        StatusCode::CREATED,
    )
    .await
}

fn username_taken(username: &str) -> ApiError {
    ApiError::conflict(
        "username_taken",
        format!("the username {username:?} is taken"),
    )
}

/// Sign in to an account. The new session remembers the guest session it came from.
#[utoipa::path(
    post,
    path = "/api/auth/signin",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "Signed in; sets a new session cookie", body = Me),
        (status = 401, description = "`invalid_credentials`", body = ApiErrorBody),
        (status = 429, description = "`too_many_attempts`", body = ApiErrorBody),
    )
)]
async fn signin(
    State(state): State<Auth>,
    session: Session,
    addr: ClientAddr,
    headers: HeaderMap,
    Json(creds): Json<Credentials>,
) -> ApiResult<Response> {
    if creds.username.is_empty() || creds.password.is_empty() {
        return Err(ApiError::unprocessable(
            "missing_credentials",
            "both username and password are required",
        ));
    }
    if creds.password.len() > password::MAX_PASSWORD_BYTES || creds.username.len() > 64 {
        return Err(invalid_credentials());
    }
    limit_address(&state, &addr)?;
    let key = password::username_key(&creds.username);
    let account_key = format!("account:{key}");
    let now = state.clock.now_ms();
    state
        .limits
        .per_account
        .check(&account_key, now)
        .map_err(|secs| {
            ApiError::too_many(
                "too many failed sign-ins for this account; wait and retry",
                secs,
            )
        })?;
    let found = store::user_by_username_key(&state.db.pool, &key).await?;
    let stored = found.as_ref().map(|row| row.password_hash.clone());
    let plain = creds.password.clone();
    let ok = blocking(move || password::verify_password(&plain, stored.as_deref())).await?;
    let (user, role) = match found {
        Some(row) if ok => (row.user, row.role),
        _ => {
            state
                .limits
                .per_account
                .record(&account_key, state.clock.now_ms());
            return Err(invalid_credentials());
        }
    };
    state.limits.per_account.reset(&account_key);
    tracing::info!(user_id = %user.id, "signed in");
    switch_session(
        &state,
        &session,
        Some((user, role)),
        &headers,
        StatusCode::OK,
    )
    .await
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "wrong username or password")
}

/// Sign out: the session is revoked and the browser gets a fresh guest session.
#[utoipa::path(
    post,
    path = "/api/auth/signout",
    tag = "auth",
    responses((status = 200, description = "The new guest session; sets its cookie", body = Me))
)]
async fn signout(
    State(state): State<Auth>,
    session: Session,
    headers: HeaderMap,
) -> ApiResult<Response> {
    switch_session(&state, &session, None, &headers, StatusCode::OK).await
}

/// Who the request's session belongs to.
#[utoipa::path(
    get,
    path = "/api/auth/me",
    tag = "auth",
    responses((status = 200, body = Me))
)]
async fn me(State(state): State<Auth>, session: Session) -> Json<Me> {
    Json(session.me(state.platform.declared_permissions()))
}

/// The signed-in account's live sessions.
#[utoipa::path(
    get,
    path = "/api/auth/sessions",
    tag = "auth",
    responses(
        (status = 200, body = SessionList),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
    )
)]
async fn list_sessions(
    State(state): State<Auth>,
    session: Session,
) -> ApiResult<Json<SessionList>> {
    let user = session.signed_in()?;
    let mut sessions = store::sessions_of_user(&state.db.pool, &user.id).await?;
    for s in &mut sessions {
        s.current = s.id == session.id;
    }
    Ok(Json(SessionList { sessions }))
}

/// Revoke one of the signed-in account's sessions (sign out another device).
#[utoipa::path(
    delete,
    path = "/api/auth/sessions/{id}",
    tag = "auth",
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Revoked; its realtime connections are closed"),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 404, description = "`not_found`", body = ApiErrorBody),
    )
)]
async fn revoke_session(
    State(state): State<Auth>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let user = session.signed_in()?;
    if !store::session_belongs_to(&state.db.pool, &id, &user.id).await? {
        return Err(ApiError::not_found(format!(
            "no live session {id:?} of yours"
        )));
    }
    store::revoke_session(&state.db.pool, &id, state.clock.now_ms()).await?;
    state
        .hub
        .close_session(&id, close_code::SESSION_REVOKED, "session revoked")
        .await;
    Ok(StatusCode::NO_CONTENT)
}
