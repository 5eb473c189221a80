//! Crash points for the reliability tests: places where a process can be parked and then killed with
//! SIGKILL, at moments timing cannot hit reliably (after the order's commit, between the broker's
//! acknowledgement and marking the outbox row sent). Only a build with the `failpoints` feature has them
//! (through the `fail` crate); in every other build `failpoint!` expands to nothing.

/// A named crash point. Without the `failpoints` feature it expands to nothing.
#[cfg(feature = "failpoints")]
#[macro_export]
macro_rules! failpoint {
    ($name:expr) => {
        $crate::failpoints::fail::fail_point!($name)
    };
}

/// A named crash point. Without the `failpoints` feature it expands to nothing.
#[cfg(not(feature = "failpoints"))]
#[macro_export]
macro_rules! failpoint {
    ($name:expr) => {};
}

/// After the order and its outbox row committed, before the request is answered or the relay woken.
pub const ORDER_COMMITTED: &str = "order-committed";
/// The relay locked a batch of unsent rows and has published none of them.
pub const RELAY_BEFORE_PUBLISH: &str = "relay-before-publish";
/// The broker acknowledged the batch; the rows are not yet marked sent.
pub const RELAY_ACKNOWLEDGED: &str = "relay-acknowledged";

#[cfg(feature = "failpoints")]
pub use fail;

/// Park the thread that reaches failpoint `name` for the `hit`-th time (1 = the first), for good: the log
/// line `failpoint parked` tells a test the process now stands exactly there, ready to be killed.
///
/// # Errors
/// When `name` cannot be configured (the `fail` crate's message).
#[cfg(feature = "failpoints")]
pub fn park_at(name: &'static str, hit: u64) -> Result<(), String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let hits = AtomicU64::new(0);
    fail::cfg_callback(name, move || {
        if hits.fetch_add(1, Ordering::SeqCst) + 1 == hit {
            tracing::warn!(failpoint = name, hit, "failpoint parked");
            loop {
                std::thread::park();
            }
        }
    })
}
