//! reuse: the admin connections a look leaves behind, kept for the next look of any resource that reaches
//! the same server with the same settings. Each look checks every schema and role of its resource (the
//! database step) and each service's alternate login (the rotation's step), and each of the two opened a
//! connection of its own: two full SCRAM logins (4096 rounds of PBKDF2 on both sides) every 30 s per
//! resource at rest, most of a look's time.
//!
//! A connection is kept under a hash of everything it was opened with: host, port, database, user,
//! password, TLS mode and CA. A changed admin Secret (a rotated password, another CA or host) hashes
//! differently, so it never gets a connection opened with the earlier one; those are closed once they
//! have idled [`MAX_IDLE`]. Only a look that succeeded gives its connection back (a failed statement or
//! transaction drops it), and a kept one must answer a ping before it is used again: a server restarted
//! meanwhile costs one ping, then a new login, and its errors are those of a new connection.
//!
//! Not an `sqlx::PgPool` per key, though a pool keeps, tests and expires connections much like this: a
//! pool retries a refused connection inside `acquire` until its acquire timeout and then reports only
//! `PoolTimedOut`. Here a login goes through `postgres::connect`, so a stopped server is a refused
//! connection at once, and `DatabaseReady` names the cause (refused, timed out, TLS, password).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use super::{AdminConnection, Error};
use crate::controller::validate::ValidSpec;

/// How long a connection may wait unused before it is closed.
pub const MAX_IDLE: Duration = Duration::from_secs(60);
/// Connections kept per set of settings; a look finding none opens its own.
const KEPT: usize = 4;
/// How long a kept connection may take to answer its ping.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

struct Kept {
    conn: PgConnection,
    since: Instant,
}

/// The kept connections, by [`key`]; in the controller's context.
#[derive(Default)]
pub struct Reuse(Mutex<HashMap<u64, Vec<Kept>>>);

/// The key of the connections opened with `admin` and the spec's TLS mode; in memory only.
fn key(admin: &AdminConnection, spec: &ValidSpec) -> u64 {
    let mut hasher = DefaultHasher::new();
    (
        &admin.host,
        admin.port,
        &admin.dbname,
        &admin.username,
        &admin.password,
        &admin.ca_pem,
        spec.ssl_mode.as_libpq(),
    )
        .hash(&mut hasher);
    hasher.finish()
}

/// Takes the connections idle for [`MAX_IDLE`] or longer out of `idle` (the caller closes them).
fn expired(idle: &mut HashMap<u64, Vec<Kept>>, now: Instant) -> Vec<PgConnection> {
    let mut gone = Vec::new();
    for kept in idle.values_mut() {
        let (old, fresh): (Vec<Kept>, Vec<Kept>) = kept
            .drain(..)
            .partition(|k| now.duration_since(k.since) >= MAX_IDLE);
        *kept = fresh;
        gone.extend(old.into_iter().map(|k| k.conn));
    }
    idle.retain(|_, kept| !kept.is_empty());
    gone
}

async fn close_all(conns: Vec<PgConnection>) {
    for conn in conns {
        let _ = conn.close().await;
    }
}

impl Reuse {
    fn idle(&self) -> MutexGuard<'_, HashMap<u64, Vec<Kept>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection for `admin`: a kept one that answers its ping, or a new one.
    pub async fn take(&self, admin: &AdminConnection, spec: &ValidSpec) -> Result<PgConnection, Error> {
        let key = key(admin, spec);
        loop {
            let (candidate, gone) = {
                let mut idle = self.idle();
                let gone = expired(&mut idle, Instant::now());
                (idle.get_mut(&key).and_then(Vec::pop), gone)
            };
            close_all(gone).await;
            let Some(mut kept) = candidate else {
                return super::connect(admin, spec).await;
            };
            if let Ok(Ok(())) = tokio::time::timeout(PING_TIMEOUT, kept.conn.ping()).await {
                return Ok(kept.conn);
            }
        }
    }

    /// Keeps `conn` (opened for `admin`) for a later look, or closes it when enough are kept.
    pub async fn give_back(&self, admin: &AdminConnection, spec: &ValidSpec, conn: PgConnection) {
        let key = key(admin, spec);
        let surplus = {
            let mut idle = self.idle();
            let kept = idle.entry(key).or_default();
            if kept.len() < KEPT {
                kept.push(Kept {
                    conn,
                    since: Instant::now(),
                });
                None
            } else {
                Some(conn)
            }
        };
        if let Some(conn) = surplus {
            let _ = conn.close().await;
        }
    }

    /// Closes the connections idle for [`MAX_IDLE`] or longer; `run` calls it periodically, so none
    /// outlives its idle time by much when no look comes (a database can then be dropped).
    pub async fn close_expired(&self) {
        let gone = expired(&mut self.idle(), Instant::now());
        close_all(gone).await;
    }

    /// How many connections are kept now, over all settings.
    pub fn kept(&self) -> usize {
        self.idle().values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::validate::tests::{MINIMAL, os_from_yaml};
    use crate::controller::validate::validate;
    use crate::crd::SslMode;

    fn admin() -> AdminConnection {
        AdminConnection {
            host: "db".into(),
            port: 5432,
            dbname: "app".into(),
            username: "admin".into(),
            password: "one".into(),
            ca_pem: None,
        }
    }

    #[test]
    fn a_connection_is_reused_only_with_every_setting_it_was_opened_with() {
        let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
        let same = key(&admin(), &spec);
        assert_eq!(key(&admin(), &spec), same);
        type Change = Box<dyn Fn(&mut AdminConnection)>;
        let changed: [(&str, Change); 6] = [
            ("rotated password", Box::new(|a| a.password = "two".into())),
            ("another CA", Box::new(|a| a.ca_pem = Some(b"pem".to_vec()))),
            ("another host", Box::new(|a| a.host = "db2".into())),
            ("another port", Box::new(|a| a.port = 5433)),
            ("another database", Box::new(|a| a.dbname = "other".into())),
            ("another user", Box::new(|a| a.username = "root".into())),
        ];
        for (why, change) in changed {
            let mut other = admin();
            change(&mut other);
            assert_ne!(key(&other, &spec), same, "{why}");
        }
        let mut verify = spec.clone();
        verify.ssl_mode = SslMode::VerifyFull;
        assert_ne!(key(&admin(), &verify), same, "another TLS mode");
    }
}
