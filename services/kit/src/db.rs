//! The service's database: a pool whose every connection has `search_path` set to the service's own schema
//! (so a role owning only that schema is enough), migrations at start, and the readiness facts
//! (reachable, migrated).

use crate::config::DatabaseArgs;
use crate::shutdown::Shutdown;
use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{Connection, PgPool, Postgres};
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A short acquire timeout turns "database down" into a fast, retryable error instead of a 30 s stall.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// A pooled connection idle at least this long is checked with a round trip before it is handed out.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);
/// A connection put back into [`WarmConnections`] longer ago than this goes back to the pool instead.
const KEEP_WARM: Duration = CHECK_AFTER_IDLE;
/// Pause between migration attempts while the database is not reachable at start.
const MIGRATE_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid sslmode {value:?}")]
    SslMode {
        value: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database schema name {0:?} is empty")]
    EmptySchema(String),
}

/// The pool plus whether migrations have run; cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    pub pool: PgPool,
    migrated: Arc<AtomicBool>,
}

impl Database {
    /// A lazy pool: the service starts (and answers `/healthz`) while the database is still unreachable.
    pub fn connect_lazy(args: &DatabaseArgs) -> Result<Self, DbError> {
        if args.schema.trim().is_empty() {
            return Err(DbError::EmptySchema(args.schema.clone()));
        }
        let ssl_mode = PgSslMode::from_str(&args.sslmode).map_err(|source| DbError::SslMode {
            value: args.sslmode.clone(),
            source,
        })?;
        // search_path as a startup parameter: it holds for every connection the pool ever opens. The
        // schema is quoted so a name needing quotes (the operator always quotes) still resolves.
        let search_path = format!("\"{}\"", args.schema.replace('"', "\"\""));
        let mut options = PgConnectOptions::new()
            .host(&args.host)
            .port(args.port)
            .database(&args.name)
            .username(&args.user)
            .password(args.password.expose_secret())
            .ssl_mode(ssl_mode)
            .options([("search_path", search_path.as_str())]);
        if let Some(ca) = &args.sslrootcert {
            options = options.ssl_root_cert(ca);
        }
        let pool = PgPoolOptions::new()
            .max_connections(args.max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // sqlx pings every connection it hands out, by default: one more round trip for every
            // transaction, a quarter of the consumers' under load. A connection back in the pool for
            // less than a second was just working; only one that sat idle (the server may have restarted
            // since) is checked, and replaced if the check fails.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= CHECK_AFTER_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            migrated: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Run `migrators` in order (the service's own, then the kit's for the tables it runs: each keeps its
    /// own history table), retrying while the database is unreachable, until done or shut down. Returns
    /// whether they ran.
    pub async fn migrate(&self, migrators: &[&Migrator], shutdown: Shutdown) -> bool {
        self.migrate_and_prepare(migrators, shutdown, |_| async { Ok(()) })
            .await
    }

    /// Like `migrate`, then `prepare` (e.g. idempotent seed data), retried alike; the service reports
    /// ready only after both, so nobody sees the tables without their seed.
    pub async fn migrate_and_prepare<F, Fut>(
        &self,
        migrators: &[&Migrator],
        mut shutdown: Shutdown,
        prepare: F,
    ) -> bool
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<(), sqlx::Error>>,
    {
        loop {
            let attempt = async {
                for migrator in migrators {
                    self.run_migrator(migrator).await.map_err(|e| e.to_string())?;
                }
                prepare(self.pool.clone()).await.map_err(|e| e.to_string())
            };
            match attempt.await {
                Ok(()) => {
                    self.migrated.store(true, Ordering::SeqCst);
                    tracing::info!("database migrated");
                    return true;
                }
                Err(error) => tracing::warn!(%error, "migration failed, retrying"),
            }
            tokio::select! {
                () = shutdown.wait() => return false,
                () = tokio::time::sleep(MIGRATE_RETRY) => {}
            }
        }
    }

    /// Runs `migrator` on a connection of its own, closed afterwards. sqlx holds a session advisory lock,
    /// one per database, while it migrates, and does not release it when a migration fails: a connection
    /// of the service's pool would keep it, and every service migrating in the same database would wait
    /// on it until this process ended.
    async fn run_migrator(&self, migrator: &Migrator) -> Result<(), sqlx::migrate::MigrateError> {
        let own = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with((*self.pool.connect_options()).clone());
        let result = migrator.run(&own).await;
        own.close().await;
        result
    }

    /// Readiness: migrated and reachable now.
    pub async fn is_ready(&self) -> bool {
        self.migrated.load(Ordering::SeqCst) && sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// `migrations` as the services run them: expand only. Every migration only adds (tables, nullable
/// columns, indexes), so an earlier version's pods keep working on a schema a later version migrated
/// while a roll replaces them, and may even start there: this set runs when the history lists later
/// migrations it does not know (sqlx refuses that by default). What it does know is still checked
/// against its checksum.
pub fn expand_only(mut migrations: Migrator) -> Migrator {
    migrations.set_ignore_missing(true);
    migrations
}

/// `migrations` keeping their history in `history` instead of sqlx's `_sqlx_migrations`, expand only
/// ([`expand_only`]). The kit's tables are migrated in a service's schema beside the service's own tables:
/// with a history table each, the service's set and the kit's never see each other's versions.
pub fn with_own_history(mut migrations: Migrator, history: &'static str) -> Migrator {
    migrations.dangerous_set_table_name(history);
    expand_only(migrations)
}

/// Connections a busy worker keeps between one use and the next, instead of the pool. sqlx checks every
/// connection given back to its pool with a round trip (a `Sync`) on top of the statements that used it:
/// a consumer storing batch after batch, the order placer and the relay's rounds would pay one for every
/// batch. Here they pay it only when a connection leaves for the pool: after a failure (drop it instead of
/// putting it back: it may be broken or inside a transaction), or once it waited here [`KEEP_WARM`]
/// (a background task gives such connections back, so an idle worker does not hold what others of the
/// pool need; the pool checks one before handing it out again). Shared by the tasks of one worker; never
/// locked across an `.await`. Must be created within a Tokio runtime.
#[derive(Debug)]
pub struct WarmConnections {
    pool: PgPool,
    kept: Arc<Mutex<Kept>>,
}

type Kept = Vec<(PoolConnection<Postgres>, Instant)>;

impl WarmConnections {
    pub fn new(pool: PgPool) -> Self {
        let kept = Arc::new(Mutex::new(Kept::new()));
        let weak = Arc::downgrade(&kept);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(KEEP_WARM / 2).await;
                let Some(kept) = weak.upgrade() else { return };
                give_back_cold(&mut lock(&kept));
            }
        });
        Self { pool, kept }
    }

    /// The connection put back last if it is still warm, or one from the pool.
    pub async fn take(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        let warm = {
            let mut kept = lock(&self.kept);
            give_back_cold(&mut kept);
            kept.pop().map(|(conn, _)| conn)
        };
        match warm {
            Some(conn) => Ok(conn),
            None => self.pool.acquire().await,
        }
    }

    /// Keep `conn`, which just finished its work without an error and outside any transaction, for the
    /// next [`take`](Self::take).
    pub fn put_back(&self, conn: PoolConnection<Postgres>) {
        lock(&self.kept).push((conn, Instant::now()));
    }
}

fn lock(kept: &Mutex<Kept>) -> std::sync::MutexGuard<'_, Kept> {
    kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Drops (gives back to the pool) the connections kept [`KEEP_WARM`] or longer: the oldest, as they are
/// kept in the order they were put back.
fn give_back_cold(kept: &mut Kept) {
    let cold = kept
        .iter()
        .position(|(_, since)| since.elapsed() < KEEP_WARM)
        .unwrap_or(kept.len());
    kept.drain(..cold);
}
