//! The load generator: orders over loopback HTTP (`POST /api/orders`, or the reference implementation's
//! order form), either open-loop at a fixed rate (a request
//! is due every 1/rate seconds whether or not earlier ones have returned, up to `max_in_flight`) or
//! closed-loop at maximum rate (`concurrency` clients, each sending its next order when the last returned).
//! Bounded by a count and a time; every accepted order is recorded with the wall-clock time its clock
//! started, the end-to-end latency's starting point: in the open loop when the order was due, so the wait
//! of an order held back by the in-flight limit or a late timer counts (no coordinated omission: a service
//! that stalls is not measured only by the few requests it let through); in the closed loop when it was
//! sent, as no order is due before a client's last one returned.

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex, Semaphore};

/// How orders are sent.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Orders per second, open loop.
    Rate { per_second: f64, max_in_flight: usize },
    /// As fast as `concurrency` clients can.
    Max { concurrency: usize },
}

/// Which service answers, and so how an order is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// This system's order service: JSON to `POST /api/orders`, `201 Created` with the order's id.
    OrderSystem,
    /// The reference implementation's order service: its web form to `POST /`, `200` with an HTML page
    /// that does not name the order.
    Reference,
}

/// How a report names the pace.
pub fn describe(pace: Pace) -> String {
    match pace {
        Pace::Rate { per_second, .. } => format!("rate {per_second}/s"),
        Pace::Max { concurrency } => format!("max ({concurrency} clients)"),
    }
}

/// One accepted order.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    /// The id the service gave it, where its answer says.
    pub order_id: Option<i64>,
    /// Unix time in microseconds when its clock started: when it was due (open loop) or sent (closed loop).
    pub sent_us: i64,
    /// From then until `POST /api/orders` was answered.
    pub accept_us: i64,
    /// How long it waited after it was due before its request went out (open loop; 0 in the closed loop).
    pub queued_us: i64,
}

/// Counters the progress line reads while the load runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub failed: AtomicU64,
}

/// What came back.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub accepted: Vec<Accepted>,
    /// Non-201 answers and transport errors, with the first few messages.
    pub failures: u64,
    pub failure_examples: Vec<String>,
}

pub fn unix_micros(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The n-th order: both customers, all four items, one to five pieces (as `e2e::shop` places them).
fn json_body(n: u64) -> serde_json::Value {
    json!({
        "customerId": 1 + n % 2,
        "shippingAddress": {"street": format!("Ohlauer Str. {n}"), "zip": "10999", "city": "Berlin"},
        "billingAddress": {"street": "Krischerstr. 100", "zip": "40789", "city": "Monheim am Rhein"},
        "orderLine": [{"count": 1 + n % 5, "itemId": 1 + n % 4}]
    })
}

/// The same n-th order as the reference's form sends it (its customers and items are numbered 1… too).
fn form_body(n: u64) -> Vec<(&'static str, String)> {
    vec![
        ("customer", (1 + n % 2).to_string()),
        ("shippingAddress.street", format!("Ohlauer Str. {n}")),
        ("shippingAddress.zip", "10999".into()),
        ("shippingAddress.city", "Berlin".into()),
        ("billingAddress.street", "Krischerstr. 100".into()),
        ("billingAddress.zip", "40789".into()),
        ("billingAddress.city", "Monheim am Rhein".into()),
        ("orderLine[0].count", (1 + n % 5).to_string()),
        ("orderLine[0].item", (1 + n % 4).to_string()),
    ]
}

/// Start of the measured window, in unix µs: after the warm-up, or the whole run when it ended (bounded by
/// its count) within the warm-up.
pub fn window_start(start_us: i64, end_us: i64, warmup: Duration) -> i64 {
    let warmup_us = i64::try_from(warmup.as_micros()).unwrap_or(i64::MAX);
    if end_us - start_us > warmup_us {
        start_us + warmup_us
    } else {
        start_us
    }
}

struct Shared {
    http: reqwest::Client,
    api: Api,
    url: String,
    progress: Arc<Progress>,
    result: Mutex<LoadResult>,
}

/// When an order's clock starts, on the wall clock (for the end-to-end latency against the stored
/// times) and on the monotonic one (for the accept latency).
#[derive(Debug, Clone, Copy)]
struct Due {
    wall: SystemTime,
    at: Instant,
}

impl Due {
    fn now() -> Self {
        Self {
            wall: SystemTime::now(),
            at: Instant::now(),
        }
    }

    fn after(self, offset: Duration) -> Self {
        Self {
            wall: self.wall + offset,
            at: self.at + offset,
        }
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

impl Shared {
    /// Sends order `n`, its clock started at `due` (when it was due, or now).
    async fn place(&self, n: u64, due: Due) {
        self.progress.sent.fetch_add(1, Ordering::Relaxed);
        let queued_us = micros(due.at.elapsed());
        let outcome = async {
            let request = self.http.post(&self.url);
            let request = match self.api {
                Api::OrderSystem => request.json(&json_body(n)),
                Api::Reference => request.form(&form_body(n)),
            };
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            // Read the answer whole: the request is done when its answer is.
            let text = response.text().await.map_err(|e| e.to_string())?;
            let answered = |expected: u16| {
                let start: String = text.chars().take(200).collect();
                format!("{} answered {status}, not {expected}: {start}", self.url)
            };
            match self.api {
                Api::OrderSystem => {
                    if status != 201 {
                        return Err(answered(201));
                    }
                    let created: serde_json::Value =
                        serde_json::from_str(&text).map_err(|e| e.to_string())?;
                    let id = created["id"]
                        .as_i64()
                        .ok_or_else(|| format!("no id in {created}"))?;
                    Ok(Some(id))
                }
                // Its answer is an HTML page that does not name the order.
                Api::Reference if status != 200 => Err(answered(200)),
                Api::Reference => Ok(None),
            }
        }
        .await;
        let accept_us = micros(due.at.elapsed());
        let mut result = self.result.lock().await;
        match outcome {
            Ok(order_id) => {
                self.progress.accepted.fetch_add(1, Ordering::Relaxed);
                result.accepted.push(Accepted {
                    order_id,
                    sent_us: unix_micros(due.wall),
                    accept_us,
                    queued_us,
                });
            }
            Err(error) => {
                self.progress.failed.fetch_add(1, Ordering::Relaxed);
                result.failures += 1;
                if result.failure_examples.len() < 5 {
                    result.failure_examples.push(error);
                }
            }
        }
    }
}

/// Send up to `count` orders to `order_url` (its base URL) for at most `duration`, then wait for the
/// requests in flight.
pub async fn run(
    api: Api,
    order_url: &str,
    pace: Pace,
    count: u64,
    duration: Duration,
    progress: Arc<Progress>,
) -> LoadResult {
    let connections = match pace {
        Pace::Rate { max_in_flight, .. } => max_in_flight,
        Pace::Max { concurrency } => concurrency,
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default();
    let shared = Arc::new(Shared {
        http,
        api,
        url: match api {
            Api::OrderSystem => format!("{order_url}/api/orders"),
            Api::Reference => format!("{order_url}/"),
        },
        progress,
        result: Mutex::new(LoadResult::default()),
    });
    let deadline = tokio::time::Instant::now() + duration;
    match pace {
        Pace::Rate {
            per_second,
            max_in_flight,
        } => at_rate(&shared, per_second, max_in_flight, count, deadline).await,
        Pace::Max { concurrency } => at_most(&shared, concurrency, count, deadline).await,
    }
    let shared = Arc::into_inner(shared).map(|s| s.result.into_inner());
    shared.unwrap_or_default()
}

/// Sends order `n` when it is due at `per_second`, with at most `max_in_flight` unanswered, until `count`
/// orders or `deadline`; waits for those in flight.
async fn at_rate(
    shared: &Arc<Shared>,
    per_second: f64,
    max_in_flight: usize,
    count: u64,
    deadline: tokio::time::Instant,
) {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let mut tasks = Vec::new();
    let (start, clock) = (tokio::time::Instant::now(), Due::now());
    for n in 0..count {
        // Due times from the start, not from the previous send: a late tick does not lower the rate.
        let offset = Duration::from_secs_f64(n as f64 / per_second);
        let due = start + offset;
        if due >= deadline {
            break;
        }
        tokio::time::sleep_until(due).await;
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        // A service that cannot keep up holds every slot: the time bound still holds.
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let shared = shared.clone();
        let due = clock.after(offset);
        tasks.push(tokio::spawn(async move {
            shared.place(n, due).await;
            drop(slot);
        }));
    }
    futures::future::join_all(tasks).await;
}

/// `concurrency` workers each sending the next order as soon as their last was answered, until `count`
/// orders or `deadline`.
async fn at_most(shared: &Arc<Shared>, concurrency: usize, count: u64, deadline: tokio::time::Instant) {
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers = (0..concurrency).map(|_| {
        let (shared, next, stop) = (shared.clone(), next.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                shared.place(n, Due::now()).await;
            }
        })
    });
    futures::future::join_all(workers).await;
    stop.store(true, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_starts_after_the_warm_up_unless_the_run_ended_within_it() {
        let warmup = Duration::from_secs(10);
        assert_eq!(window_start(1_000_000, 71_000_000, warmup), 11_000_000);
        // Bounded by its count, the run ended after 4 s: all of it is measured.
        assert_eq!(window_start(1_000_000, 5_000_000, warmup), 1_000_000);
    }

    #[test]
    fn the_form_sends_the_same_order_as_the_json() {
        for n in [0, 1, 7, 1234] {
            let json = json_body(n);
            let form: std::collections::HashMap<_, _> = form_body(n).into_iter().collect();
            assert_eq!(form["customer"], json["customerId"].to_string());
            assert_eq!(
                form["orderLine[0].item"],
                json["orderLine"][0]["itemId"].to_string()
            );
            assert_eq!(
                form["orderLine[0].count"],
                json["orderLine"][0]["count"].to_string()
            );
            assert_eq!(
                form["shippingAddress.street"],
                json["shippingAddress"]["street"].as_str().unwrap_or_default()
            );
            assert_eq!(
                form["billingAddress.city"],
                json["billingAddress"]["city"].as_str().unwrap_or_default()
            );
        }
    }

    /// A loopback HTTP server that answers every request with `201 {"id": 1}` after `delay`, one connection
    /// at a time (as a service that cannot keep up); its base URL.
    async fn slow_server(delay: Duration) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                tokio::time::sleep(delay).await;
                let body = r#"{"id":1}"#;
                let answer = format!(
                    "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn an_order_held_back_by_a_slow_service_counts_its_wait_from_when_it_was_due() {
        // 100 orders/s for 0.3 s but one at a time, answered after 50 ms: order n is due at 10n ms and sent
        // at about 50n ms, so the last ones have waited some 100 ms before their request even went out.
        let url = slow_server(Duration::from_millis(50)).await;
        let pace = Pace::Rate {
            per_second: 100.0,
            max_in_flight: 1,
        };
        let result = run(
            Api::OrderSystem,
            &url,
            pace,
            30,
            Duration::from_millis(300),
            Arc::default(),
        )
        .await;
        assert!(result.accepted.len() >= 4, "{} accepted", result.accepted.len());
        let last = result
            .accepted
            .iter()
            .max_by_key(|a| a.sent_us)
            .expect("an order");
        assert!(
            last.queued_us >= 60_000,
            "the last order waited {} µs after it was due",
            last.queued_us
        );
        assert!(
            last.accept_us >= last.queued_us + 45_000,
            "its latency ({} µs) counts the wait and the 50 ms answer",
            last.accept_us
        );
        // Spaced by when they were due (10 ms), not by when they could be sent (50 ms).
        let mut due: Vec<i64> = result.accepted.iter().map(|a| a.sent_us).collect();
        due.sort_unstable();
        let spacing = (due[due.len() - 1] - due[0]) / (due.len() as i64 - 1);
        assert!(
            (9_000..=11_000).contains(&spacing),
            "orders due {spacing} µs apart"
        );
    }
}
