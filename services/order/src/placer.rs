//! placer: stores the orders of concurrent requests together. A request hands its order to a worker; a
//! worker that becomes free takes every order waiting (up to `MAX_BATCH`) and stores them with
//! `store::place_all`: two round trips and one commit for all of them instead of for each. Idle, a batch is
//! one order and costs what placing it alone did; under load the waiting orders share the round trips that
//! would otherwise queue for the CPU. The workers keep their connections from one batch to the next in one
//! `WarmConnections`. A request is answered only after its order committed. When a batch
//! fails as a whole (nothing of it stored), its orders are placed again one by one, concurrently, so one
//! order's failure stays its own.

use crate::domain::NewOrder;
use crate::store::{self, StoreError, ToPlace};
use ordersystem_contract::OrderPlaced;
use ordersystem_service_kit::db::WarmConnections;
use ordersystem_service_kit::metrics::Metrics;
use ordersystem_service_kit::telemetry::TraceContext;
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};

/// Most orders stored in one transaction.
pub const MAX_BATCH: usize = 64;
/// Batches in flight at once: each holds one database connection while it is stored.
pub const WORKERS: usize = 4;

struct Request {
    order: ToPlace,
    reply: oneshot::Sender<Result<OrderPlaced, StoreError>>,
}

/// The handle requests place orders through. Clones share the workers, which stop when the last clone is
/// dropped.
#[derive(Clone)]
pub struct Placer {
    requests: mpsc::Sender<Request>,
}

impl Placer {
    /// Starts `WORKERS` workers storing into `pool`; must be called within a Tokio runtime.
    pub fn start(pool: PgPool, metrics: Metrics) -> Self {
        let (requests, waiting) = mpsc::channel(MAX_BATCH * WORKERS);
        let waiting = Arc::new(Mutex::new(waiting));
        // Shared: the workers keep only as many connections as were busy at once lately.
        let warm = Arc::new(WarmConnections::new(pool.clone()));
        for _ in 0..WORKERS {
            tokio::spawn(work(
                pool.clone(),
                Arc::clone(&warm),
                metrics.clone(),
                Arc::clone(&waiting),
            ));
        }
        Self { requests }
    }

    /// Stores `order` with its outbox row, which keeps the current span's trace context for the relay;
    /// returns once it committed, or why it was not stored.
    pub async fn place(&self, order: NewOrder) -> Result<OrderPlaced, StoreError> {
        let order = ToPlace {
            order,
            trace: TraceContext::current(),
        };
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { order, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }
}

async fn work(
    pool: PgPool,
    warm: Arc<WarmConnections>,
    metrics: Metrics,
    waiting: Arc<Mutex<mpsc::Receiver<Request>>>,
) {
    loop {
        let batch = {
            let mut waiting = waiting.lock().await;
            let Some(first) = waiting.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match waiting.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            batch
        };
        metrics.batch_records.observe(batch.len() as f64);
        place_batch(&pool, &warm, batch).await;
    }
}

async fn place_batch(pool: &PgPool, warm: &WarmConnections, batch: Vec<Request>) {
    let (orders, replies): (Vec<ToPlace>, Vec<_>) = batch.into_iter().map(|r| (r.order, r.reply)).unzip();
    let placed = match warm.take().await {
        Ok(mut conn) => {
            let placed = store::place_all(&mut conn, &orders, chrono::Utc::now()).await;
            if placed.is_ok() {
                warm.put_back(conn);
            }
            placed
        }
        Err(error) => Err(error.into()),
    };
    match placed {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // The requester may have gone (client disconnected); the order is stored regardless.
                let _ = reply.send(outcome);
            }
        }
        Err(error) if orders.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(error));
            }
        }
        Err(error) => {
            tracing::warn!(%error, orders = orders.len(), "storing a batch of orders failed, storing them one by one");
            let mut alone = tokio::task::JoinSet::new();
            for (order, reply) in orders.into_iter().zip(replies) {
                let pool = pool.clone();
                alone.spawn(async move {
                    let _ = reply.send(store::place(&pool, &order, chrono::Utc::now()).await);
                });
            }
            alone.join_all().await;
        }
    }
}
