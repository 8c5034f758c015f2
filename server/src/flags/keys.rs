//! Delivery keys, and who may read what on the SDK endpoints (the configuration stream,
//! the evaluated stream, OFREP).
//!
//! A key is `mk_srv_` (server) or `mk_cli_` (client) and 32 hex digits from the
//! instance's injected entropy (in production a CSPRNG seeded by the operating system). It is shown once, when it is created;
//! the database keeps its SHA-256 and its first characters. It travels as
//! `Authorization: Bearer KEY`.
//!
//! Invariants:
//! - A server key of an environment reads that environment's whole configuration (rules
//!   and segments, for local evaluation); a client key only evaluated answers (OFREP,
//!   the evaluated stream), never rules or segment members. A key reads only its own
//!   environment.
//! - A key is checked against the database on every request (nothing is cached past
//!   one request), so a revocation refuses it at once on every instance; an open stream
//!   ends when the snapshot of the revocation's version arrives.
//! - Without a key, a signed-in session with `flags:read` (the page) may read; anyone
//!   else gets 401 `key_required`.

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use meridian_shared::flags::admin::{KeyInfo, KeyKind};
use sha2::{Digest, Sha256};

use super::{access, store, OWN_ENVIRONMENT};
use crate::auth::Session;
use crate::clock::Entropy;
use crate::error::ApiError;
use crate::AppState;

pub const SERVER_KEY_PREFIX: &str = "mk_srv_";
pub const CLIENT_KEY_PREFIX: &str = "mk_cli_";
/// Random bytes in a key (32 hex digits).
const SECRET_BYTES: usize = 16;
/// Hex digits of the secret kept in the listed prefix, to tell keys apart.
const SHOWN_DIGITS: usize = 4;

fn prefix_of(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Server => SERVER_KEY_PREFIX,
        KeyKind::Client => CLIENT_KEY_PREFIX,
    }
}

/// A new secret key of `kind`.
pub fn generate(kind: KeyKind, entropy: &dyn Entropy) -> String {
    format!("{}{}", prefix_of(kind), entropy.hex::<SECRET_BYTES>())
}

/// What the database keeps of a key: its SHA-256, in hex.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The characters of a key shown in lists (`mk_srv_3f9a`).
pub fn shown_prefix(key: &str) -> String {
    // Both prefixes have the same length.
    key.chars()
        .take(SERVER_KEY_PREFIX.len() + SHOWN_DIGITS)
        .collect()
}

/// The kind a key's text claims, if it is well formed: checked before any database read,
/// so that garbage costs nothing.
pub fn parse(key: &str) -> Option<KeyKind> {
    let (kind, secret) = if let Some(secret) = key.strip_prefix(SERVER_KEY_PREFIX) {
        (KeyKind::Server, secret)
    } else {
        (KeyKind::Client, key.strip_prefix(CLIENT_KEY_PREFIX)?)
    };
    let well_formed = secret.len() == 2 * SECRET_BYTES
        && secret
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    well_formed.then_some(kind)
}

/// The credential of a request, as its `Authorization` header gives it.
#[derive(Debug, PartialEq, Eq)]
enum Credential<'a> {
    None,
    Bearer(&'a str),
    Malformed,
}

fn credential(headers: &HeaderMap) -> Credential<'_> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Credential::None;
    };
    let Ok(text) = value.to_str() else {
        return Credential::Malformed;
    };
    match text.trim().split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => {
            Credential::Bearer(key.trim())
        }
        _ => Credential::Malformed,
    }
}

fn key_required(message: &str) -> ApiError {
    ApiError::unauthorized("key_required", message)
}

/// Who calls an SDK endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// A delivery key, live as of this request.
    Key(KeyInfo),
    /// A signed-in session with `flags:read` (the page).
    Reader,
}

/// What a caller was granted: an environment, and the key to watch for revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub environment: String,
    pub key_id: Option<String>,
}

/// Who is calling: the request's key (checked against the database now), else its
/// signed-in session. 401 `key_required` for a missing, malformed, unknown or revoked
/// key; 403 `forbidden` for an account without `flags:read`.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    session: Option<&Session>,
) -> Result<Caller, ApiError> {
    match credential(headers) {
        Credential::Bearer(key) => {
            let Some(kind) = parse(key) else {
                return Err(key_required("this is not a Meridian delivery key"));
            };
            match store::key_by_hash(&state.db.pool, &hash(key)).await? {
                Some(found) if found.kind == kind && found.revoked_at_ms.is_none() => {
                    Ok(Caller::Key(found))
                }
                Some(found) if found.revoked_at_ms.is_some() => {
                    Err(key_required("this key was revoked"))
                }
                _ => Err(key_required("this key is unknown")),
            }
        }
        Credential::Malformed => Err(key_required(
            "the Authorization header must be `Bearer KEY`",
        )),
        Credential::None => match session {
            Some(session) if session.user.is_some() => {
                session.require(&access::READ)?;
                Ok(Caller::Reader)
            }
            _ => Err(key_required(
                "send a delivery key as `Authorization: Bearer KEY`, or sign in",
            )),
        },
    }
}

impl Caller {
    /// The environment's whole configuration (the stream SDKs evaluate from): a server
    /// key of that environment, or a reader. `requested` defaults to the key's
    /// environment (a reader's: production).
    pub fn configuration(&self, requested: Option<&str>) -> Result<Grant, ApiError> {
        if let Caller::Key(key) = self {
            if key.kind == KeyKind::Client {
                return Err(ApiError::forbidden(
                    "forbidden",
                    "a client key reads evaluated values only (OFREP, \
                     /api/flags/stream/evaluated); the configuration needs a server key",
                ));
            }
        }
        self.evaluations(requested)
    }

    /// Evaluated answers in an environment: any key of that environment, or a reader.
    pub fn evaluations(&self, requested: Option<&str>) -> Result<Grant, ApiError> {
        match self {
            Caller::Key(key) => match requested {
                Some(env) if env != key.environment => Err(ApiError::forbidden(
                    "forbidden",
                    format!(
                        "this key is for the environment {:?}, not {env:?}",
                        key.environment
                    ),
                )),
                _ => Ok(Grant {
                    environment: key.environment.clone(),
                    key_id: Some(key.id.clone()),
                }),
            },
            Caller::Reader => Ok(Grant {
                environment: requested.unwrap_or(OWN_ENVIRONMENT).to_owned(),
                key_id: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn key(kind: KeyKind, environment: &str) -> Caller {
        Caller::Key(KeyInfo {
            id: "7".into(),
            kind,
            environment: environment.into(),
            prefix: "mk_srv_0000".into(),
            created_at_ms: 0,
            created_by: "alice".into(),
            revoked_at_ms: None,
        })
    }

    #[test]
    fn keys_are_prefixed_hex_and_parse_back_to_their_kind() {
        let entropy = crate::clock::OsEntropy;
        let server = generate(KeyKind::Server, &entropy);
        let client = generate(KeyKind::Client, &entropy);
        assert!(
            server.starts_with("mk_srv_") && server.len() == 7 + 32,
            "{server}"
        );
        assert!(
            client.starts_with("mk_cli_") && client.len() == 7 + 32,
            "{client}"
        );
        assert_ne!(generate(KeyKind::Server, &entropy), server, "random");
        let seeded = |seed| generate(KeyKind::Client, &crate::clock::SeededEntropy::new(seed));
        assert_eq!(seeded(7), seeded(7), "injected: a seeded test replays");
        assert_ne!(seeded(7), seeded(8));
        assert_eq!(parse(&server), Some(KeyKind::Server));
        assert_eq!(parse(&client), Some(KeyKind::Client));
        for garbage in [
            "",
            "mk_srv_",
            "mk_srv_xyz",
            "mk_abc_0123456789abcdef0123456789abcdef",
            "mk_srv_0123456789ABCDEF0123456789ABCDEF",
            "mk_srv_0123456789abcdef0123456789abcdef0",
        ] {
            assert_eq!(parse(garbage), None, "{garbage:?}");
        }
        assert_eq!(shown_prefix(&server), server[..11]);
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_credential_is_a_bearer_token() {
        let mut headers = HeaderMap::new();
        assert_eq!(credential(&headers), Credential::None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer mk_cli_1"));
        assert_eq!(credential(&headers), Credential::Bearer("mk_cli_1"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer  mk_cli_1 "));
        assert_eq!(credential(&headers), Credential::Bearer("mk_cli_1"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic YTpi"));
        assert_eq!(credential(&headers), Credential::Malformed);
    }

    #[test]
    fn a_server_key_reads_the_configuration_of_its_own_environment_only() {
        let server = key(KeyKind::Server, "production");
        let grant = server.configuration(None).unwrap();
        assert_eq!(
            grant,
            Grant {
                environment: "production".into(),
                key_id: Some("7".into())
            }
        );
        assert_eq!(server.configuration(Some("production")).unwrap(), grant);
        let err = server.configuration(Some("development")).unwrap_err();
        assert_eq!((err.status.as_u16(), err.code), (403, "forbidden"));
        assert!(server.evaluations(None).is_ok());
    }

    #[test]
    fn a_client_key_reads_evaluations_never_the_configuration() {
        let client = key(KeyKind::Client, "development");
        let err = client.configuration(None).unwrap_err();
        assert_eq!((err.status.as_u16(), err.code), (403, "forbidden"));
        assert_eq!(
            client.evaluations(None).unwrap().environment,
            "development",
            "the key's environment is the one evaluated"
        );
        let err = client.evaluations(Some("production")).unwrap_err();
        assert_eq!((err.status.as_u16(), err.code), (403, "forbidden"));
    }

    #[test]
    fn a_reader_reads_any_environment_production_by_default() {
        assert_eq!(
            Caller::Reader.configuration(None).unwrap(),
            Grant {
                environment: "production".into(),
                key_id: None
            }
        );
        assert_eq!(
            Caller::Reader
                .evaluations(Some("development"))
                .unwrap()
                .environment,
            "development"
        );
    }
}
