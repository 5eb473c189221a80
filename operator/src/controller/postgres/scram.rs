//! SCRAM-SHA-256 password verifiers (RFC 5802/7677) in PostgreSQL's stored format, so `CREATE ROLE …
//! PASSWORD` carries a verifier and the plaintext never reaches the server or its logs.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sha2::{Digest, Sha256};

/// PostgreSQL's default iteration count (`scram_iterations`).
const ITERATIONS: u32 = 4096;

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` for a fresh random salt. The password is
/// ASCII (generated), for which SASLprep is the identity.
pub fn verifier(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill(&mut salt);
    verifier_with_salt(password, &salt, ITERATIONS)
}

fn verifier_with_salt(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_has_postgres_stored_format_with_the_given_salt_and_iterations() {
        // That Postgres accepts the verifier is proven by the roles logging in (tests/postgres_backend.rs).
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let verifier = verifier_with_salt("pencil", &salt, 4096);
        let (head, keys) = verifier
            .split_once('$')
            .and_then(|(_, rest)| rest.split_once('$'))
            .expect("two $");
        assert_eq!(head, "4096:W22ZaJ0SNY7soEsUEjb6gQ==");
        let (stored, server) = keys.split_once(':').expect("StoredKey:ServerKey");
        assert_eq!(STANDARD.decode(stored).expect("base64").len(), 32);
        assert_eq!(STANDARD.decode(server).expect("base64").len(), 32);
        assert!(verifier.starts_with("SCRAM-SHA-256$"));
    }

    #[test]
    fn fresh_salts_make_different_verifiers() {
        assert_ne!(verifier("same"), verifier("same"));
    }
}
