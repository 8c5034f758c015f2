//! Password policy and hashing (argon2id with the crate's recommended parameters).
//!
//! Invariant: a password is stored only as a PHC-format argon2id hash with its own random
//! salt; verifying an unknown account still runs one hash, so that timing does not tell
//! which usernames exist.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_BYTES: usize = 256;

/// Why a username or password was refused at sign-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("a username has 3 to 32 characters: letters, digits, `_`, `-` and `.`")]
    InvalidUsername,
    #[error("a password has at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("a password has at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("the password must not contain the username")]
    ContainsUsername,
    #[error("the password is too easy to guess: use at least 5 different characters")]
    TooSimple,
}

/// The canonical form of a username for uniqueness: case-insensitive.
pub fn username_key(username: &str) -> String {
    username.to_ascii_lowercase()
}

pub fn check_username(username: &str) -> Result<(), CredentialError> {
    let ok = (3..=32).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(CredentialError::InvalidUsername)
    }
}

pub fn check_password_strength(username: &str, password: &str) -> Result<(), CredentialError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(CredentialError::TooLong);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(CredentialError::TooShort);
    }
    if password
        .to_lowercase()
        .contains(&username.to_ascii_lowercase())
    {
        return Err(CredentialError::ContainsUsername);
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 5 {
        return Err(CredentialError::TooSimple);
    }
    Ok(())
}

/// Hashes a password into a PHC string. CPU-heavy: call from a blocking task.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks a password against a stored hash, or against a dummy hash when the account
/// does not exist (`None`), which always fails. CPU-heavy: call from a blocking task.
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    const DUMMY: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$8Wc6l9mGyHDpCKjkhpM1xYeoqKhmyQYJH1TmY7RH2Ts";
    let Ok(hash) = PasswordHash::new(stored.unwrap_or(DUMMY)) else {
        return false;
    };
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok();
    matches && stored.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", Some(&a)));
        assert!(!verify_password("wrong horse battery", Some(&a)));
        assert!(!verify_password("correct horse battery", None));
        assert!(!verify_password("x", Some("not a hash")));
    }

    #[test]
    fn policy_names_the_problem() {
        assert_eq!(check_username("al"), Err(CredentialError::InvalidUsername));
        assert_eq!(
            check_username("al ice"),
            Err(CredentialError::InvalidUsername)
        );
        assert_eq!(check_username("alice_01"), Ok(()));
        assert_eq!(
            check_password_strength("alice", "short"),
            Err(CredentialError::TooShort)
        );
        assert_eq!(
            check_password_strength("alice", "xxALICExx99"),
            Err(CredentialError::ContainsUsername)
        );
        assert_eq!(
            check_password_strength("alice", "aaaaabbbbbb"),
            Err(CredentialError::TooSimple)
        );
        assert_eq!(
            check_password_strength("alice", &"ab1!x".repeat(60)),
            Err(CredentialError::TooLong)
        );
        assert_eq!(check_password_strength("alice", "tr0ub4dor&3"), Ok(()));
    }
}
