//! Sessions: every browser gets one on its first request, a guest session until it signs
//! in. The cookie holds a random 128-bit token; the database holds only its SHA-256, so a
//! leaked database does not leak live sessions.
//!
//! Invariants:
//! - The middleware attaches exactly one [`Session`] to every request that needs one
//!   (`/api/...` and the pages of the web UI; not static files).
//! - A revoked session's token never authenticates again, on any instance: a request is
//!   checked against every change to sessions committed before it arrived
//!   ([`super::known`]), though most requests no longer read their session.
//! - Signing in or out always issues a new token (no session fixation).
//! - A request still carrying the token a sign-in or sign-out just replaced never gets a
//!   new guest cookie (it would overwrite the new session's in the browser); for a minute
//!   it is answered 401 `session_replaced`.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{COOKIE, SET_COOKIE, USER_AGENT};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use meridian_shared::api::{Me, Role, SessionKind, UserInfo};
use sha2::{Digest, Sha256};

use super::store::{self, NewSession, SessionRow};
use super::Auth;
use crate::clock::Entropy;
use crate::error::ApiError;

pub const COOKIE_NAME: &str = "meridian_session";
/// How long the browser keeps the cookie (the server decides when a session ends).
const COOKIE_MAX_AGE_SECS: u64 = 400 * 24 * 3600;
/// How long a token replaced by a sign-in or sign-out is answered with 401
/// `session_replaced` instead of a new guest cookie.
const REPLACED_GRACE_MS: i64 = 60_000;
/// `last_seen_ms` is written at most this often per session.
const TOUCH_EVERY_MS: i64 = 60_000;

/// The session of the current request.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub user: Option<UserInfo>,
    /// For an account session: the guest session it was signed in from.
    pub guest_session_id: Option<String>,
    /// The account's role as of this request (`None` for a guest).
    pub role: Option<Role>,
}

impl Session {
    pub fn kind(&self) -> SessionKind {
        if self.user.is_some() {
            SessionKind::User
        } else {
            SessionKind::Guest
        }
    }

    /// Who this session is, with what its role allows out of `permissions` (every
    /// permission the systems declare).
    pub fn me(&self, permissions: &[super::access::Permission]) -> Me {
        Me {
            session_id: self.id.clone(),
            kind: self.kind(),
            user: self.user.clone(),
            guest_session_id: self.guest_session_id.clone(),
            access: self
                .user
                .as_ref()
                .map(|_| super::access::access(self.role.unwrap_or(Role::Viewer), permissions)),
        }
    }
}

/// `Option<Session>`: for the one route that does not create a guest session.
impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Session>, Self::Rejection> {
        Ok(parts.extensions.get::<Session>().cloned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Session, ApiError> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| ApiError::internal("session middleware did not run for this route"))
    }
}

/// A new random token, as it goes into the cookie (32 hex digits).
pub fn new_token(entropy: &dyn Entropy) -> String {
    entropy.hex::<16>()
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The `Set-Cookie` value that hands `token` to the browser.
pub fn session_cookie(token: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={COOKIE_MAX_AGE_SECS}{secure}"
    ))
    .expect("token is hex")
}

/// The session token in a request's `Cookie` headers, if any.
pub fn token_from_headers(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_owned())
        .filter(|value| value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Creates and stores a session; returns it with its token.
pub async fn create_session(
    state: &Auth,
    user: Option<(UserInfo, Role)>,
    guest_session_id: Option<String>,
    user_agent: Option<&str>,
) -> Result<(Session, String), ApiError> {
    let token = new_token(&*state.entropy);
    // Random, not from the ID generator: a guest session is minted on a browser's first
    // request and must not depend on this instance holding a node id lease.
    let id = state.entropy.hex::<16>();
    store::insert_session(
        &state.db.pool,
        NewSession {
            id: &id,
            token_hash: &hash_token(&token),
            user_id: user.as_ref().map(|(u, _)| u.id.as_str()),
            guest_session_id: guest_session_id.as_deref(),
            user_agent,
            now_ms: state.clock.now_ms(),
        },
    )
    .await?;
    let (user, role) = user.unzip();
    let session = Session {
        id,
        user,
        guest_session_id,
        role,
    };
    Ok((session, token))
}

/// Whether a path is served with a session: the API and the pages of the web UI, but not
/// static files (anything whose last segment has a dot, and the bundle under `/pkg/`).
fn needs_session(path: &str) -> bool {
    if path.starts_with("/api/") {
        return true;
    }
    if path.starts_with("/pkg/") {
        return false;
    }
    let last = path.rsplit('/').next().unwrap_or("");
    !last.contains('.')
}

/// Attaches the request's [`Session`], creating a guest session (and its cookie) when the
/// request has no valid one.
pub async fn session_middleware(
    State(state): State<Auth>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let mints_no_guest = state.platform.mints_no_guest_session(path);
    if !needs_session(path) && !mints_no_guest {
        return next.run(request).await;
    }
    let now = state.clock.now_ms();
    let mut new_token = None;
    let token_hash = token_from_headers(request.headers()).map(|token| hash_token(&token));
    let existing = match &token_hash {
        Some(hash) => match live_session(&state, hash).await {
            Ok(found) => found,
            Err(err) => return ApiError::from(err).into_response(),
        },
        None => None,
    };
    let session = match existing {
        Some(row) => {
            if now - row.last_seen_ms >= TOUCH_EVERY_MS {
                match store::touch_session(&state.db.pool, &row.id, now).await {
                    Ok(()) => state
                        .sessions
                        .touched(token_hash.as_deref().unwrap_or(""), now),
                    Err(err) => tracing::warn!(%err, "could not record session activity"),
                }
            }
            Session {
                id: row.id,
                user: row.user,
                guest_session_id: row.guest_session_id,
                role: row.role,
            }
        }
        // Sockets that need an existing session refuse a cookie-less upgrade themselves,
        // and SDK endpoints authenticate with keys: neither stores a session nobody uses.
        None if mints_no_guest => return next.run(request).await,
        None if recently_replaced(&state, token_hash.as_deref(), now).await => {
            // The browser signed in or out while this request was on its way and already
            // holds the new cookie: a guest cookie minted now would overwrite it.
            if path.starts_with("/api/") {
                return ApiError::unauthorized(
                    "session_replaced",
                    "this browser signed in or out while the request was on its way; send it again",
                )
                .into_response();
            }
            return next.run(request).await;
        }
        None => {
            let user_agent = request
                .headers()
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.chars().take(256).collect::<String>());
            match create_session(&state, None, None, user_agent.as_deref()).await {
                Ok((session, token)) => {
                    new_token = Some(token);
                    session
                }
                Err(err) => return err.into_response(),
            }
        }
    };
    request.extensions_mut().insert(session);
    let mut response = next.run(request).await;
    if let Some(token) = new_token {
        let already_set = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .any(|v| v.as_bytes().starts_with(COOKIE_NAME.as_bytes()));
        if !already_set {
            response.headers_mut().append(
                SET_COOKIE,
                session_cookie(&token, state.config.secure_cookies),
            );
        }
    }
    response
}

/// The live session with this token hash: as this instance knows it once every change
/// committed before this request is applied (see [`super::known`]), else as the database
/// has it.
async fn live_session(state: &Auth, token_hash: &str) -> Result<Option<SessionRow>, sqlx::Error> {
    let known = &state.sessions;
    let epoch = known.catch_up(&state.db.pool).await?;
    if let Some(row) = known.get(token_hash) {
        return Ok(Some(row));
    }
    let row = store::session_by_token(&state.db.pool, token_hash).await?;
    if let Some(row) = &row {
        known.keep(token_hash, row.clone(), epoch);
    }
    Ok(row)
}

/// Whether the token's session was replaced by a sign-in or sign-out in the last
/// [`REPLACED_GRACE_MS`]. Past that, a browser still sending it has lost the new cookie
/// and gets a fresh guest session as any cookie-less browser does.
async fn recently_replaced(state: &Auth, token_hash: Option<&str>, now_ms: i64) -> bool {
    let Some(hash) = token_hash else {
        return false;
    };
    match store::replaced_at_ms(&state.db.pool, hash).await {
        Ok(Some(at)) => now_ms - at < REPLACED_GRACE_MS,
        Ok(None) => false,
        Err(err) => {
            tracing::warn!(%err, "could not look up a replaced session");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OsEntropy;

    #[test]
    fn reads_the_session_cookie_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        let token = new_token(&OsEntropy);
        headers.append(COOKIE, HeaderValue::from_static("theme=dark; other=1"));
        headers.append(
            COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE_NAME}={token}")).unwrap(),
        );
        assert_eq!(token_from_headers(&headers), Some(token));
    }

    #[test]
    fn ignores_malformed_tokens() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&format!("{COOKIE_NAME}=not-hex")).unwrap(),
        );
        assert_eq!(token_from_headers(&headers), None);
    }

    #[test]
    fn cookie_is_http_only_and_lax() {
        let cookie = session_cookie(&new_token(&OsEntropy), false);
        let cookie = cookie.to_str().unwrap();
        assert!(cookie.contains("HttpOnly"));
        assert!(cookie.contains("SameSite=Lax"));
        assert!(!cookie.contains("Secure"));
        assert!(session_cookie(&new_token(&OsEntropy), true)
            .to_str()
            .unwrap()
            .ends_with("; Secure"));
    }

    #[test]
    fn tokens_are_128_bit_and_distinct() {
        let a = new_token(&OsEntropy);
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_token(&OsEntropy));
        assert_eq!(hash_token(&a).len(), 64);
    }

    #[test]
    fn static_files_need_no_session() {
        assert!(needs_session("/api/health"));
        assert!(needs_session("/"));
        assert!(needs_session("/status"));
        assert!(!needs_session("/pkg/meridian_web-abc.wasm"));
        assert!(!needs_session("/style.css"));
        assert!(!needs_session("/favicon.ico"));
    }
}
