//! Unique names, so tests can run side by side against one broker, database and API server.

use rand::RngExt;

/// `prefix-` followed by 8 random lowercase alphanumerics: valid as a topic, namespace, group and (with
/// `_` instead of `-`) a Postgres identifier.
pub fn unique(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}-{suffix}")
}
