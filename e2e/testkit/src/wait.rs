//! Waiting on a condition with a deadline, never a bare sleep: the only way tests wait. A timeout names
//! what never happened and, where the check says it, what was seen last.
//!
//! One loop, [`within`], which gives the timeout back as an `Err` (for a caller that reports rather than
//! panics); [`until_ok`] panics on it; [`until_some`] and [`until`] are the same wait for a check that
//! yields an `Option` or a `bool`.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is polled: often enough that a test waits little past the moment it holds, seldom
/// enough that polling the API server or a service does not load the machine the test measures.
const POLL: Duration = Duration::from_millis(100);

/// Polls `check` until it yields `Ok`, and returns that value; after `timeout`, the last `Err` of `check`
/// (what it saw instead).
pub async fn within<T, F, Fut>(timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Polls `check` until it yields `Ok`, and returns that value.
///
/// # Panics
/// After `timeout`, naming `what` and the last `Err` of `check` (what it saw instead).
pub async fn until_ok<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    within(timeout, check)
        .await
        .unwrap_or_else(|last| panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}"))
}

/// Polls `check` until it yields `Some`, and returns that value.
///
/// # Panics
/// After `timeout`, naming `what`.
pub async fn until_some<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    until_ok(what, timeout, || {
        let checked = check();
        async move { checked.await.ok_or_else(|| "nothing yet".to_string()) }
    })
    .await
}

/// Polls `condition` until it holds.
///
/// # Panics
/// After `timeout`, naming `what`.
pub async fn until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    until_some(what, timeout, || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await;
}
