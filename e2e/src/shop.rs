//! A client of a running shop: places orders through the order service's JSON API and its HTML form, as
//! a person or a program would, and reads what invoicing and shipping stored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::wait;

/// One service's base URL, e.g. `http://127.7.0.3:8080`.
#[derive(Debug, Clone)]
pub struct Service {
    base: String,
    http: reqwest::Client,
    /// Whatever must live as long as the URL answers (a `kubectl proxy` in kind mode).
    keep: Option<Arc<dyn std::fmt::Debug + Send + Sync>>,
}

impl Service {
    pub fn new(base: impl Into<String>) -> Service {
        Service {
            base: base.into(),
            http: reqwest::Client::new(),
            keep: None,
        }
    }

    /// A new connection for every request, as from many separate clients: a roll of the pods behind a
    /// Service then shows in the requests themselves, not in connections a pool held to a stopped pod.
    pub fn without_keep_alive(mut self) -> Service {
        self.http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client");
        self
    }

    /// Keeps `resource` alive as long as this client (or a clone) is.
    pub fn holding(mut self, resource: Arc<dyn std::fmt::Debug + Send + Sync>) -> Service {
        self.keep = Some(resource);
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /api/orders` of a valid order; returns the order id.
    pub async fn place_order(&self, n: u32) -> Result<i64, String> {
        let response = self
            .http
            .post(self.url("/api/orders"))
            .json(&order_body(n))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let created: Value = response.json().await.map_err(|e| e.to_string())?;
        if status != 201 {
            return Err(format!("POST /api/orders answered {status}: {created}"));
        }
        created["id"]
            .as_i64()
            .ok_or_else(|| format!("no id in {created}"))
    }

    /// [`Service::place_order`], a 503 ("busy, please retry": the shared machine is loaded) or a request
    /// that could not be sent (the Service's address not routed to a ready pod yet) retried once a second
    /// up to 30 times, as a client should; any other refusal fails the test. An order sent twice is two
    /// orders, each checked on its own by the exactly-once checks.
    pub async fn place_order_retrying(&self, n: u32) -> i64 {
        let mut attempts = 0;
        loop {
            match self.place_order(n).await {
                Ok(id) => return id,
                Err(error)
                    if (error.contains("503") || error.contains("error sending request"))
                        && attempts < 30 =>
                {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => panic!("order {n} refused: {error}"),
            }
        }
    }

    /// Submits the HTML order form as a browser does; returns the new order's id from the order page
    /// the form redirects to (Post/Redirect/Get).
    pub async fn place_order_by_form(&self) -> Result<i64, String> {
        let fields = [
            ("customer", "1"),
            ("shippingAddress.street", "Ohlauer Str. 43"),
            ("shippingAddress.zip", "10999"),
            ("shippingAddress.city", "Berlin"),
            ("billingAddress.street", "Krischerstr. 100"),
            ("billingAddress.zip", "40789"),
            ("billingAddress.city", "Monheim am Rhein"),
            ("orderLine[0].count", "2"),
            ("orderLine[0].item", "1"),
            ("submit", ""),
        ];
        let response = self
            .http
            .post(self.url("/"))
            .form(&fields)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let (status, shown) = (response.status(), response.url().clone());
        let page = response.text().await.map_err(|e| e.to_string())?;
        if status != 200 || !page.contains("id=\"placed\"") {
            return Err(format!("the form answered {status} at {shown}: {page}"));
        }
        shown
            .path_segments()
            .and_then(|mut segments| segments.next_back())
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| format!("the form redirected to {shown}, not to an order's page"))
    }

    /// The order ids of `GET <path>` (a JSON list of objects with `orderId`), e.g. `/api/invoices`, every
    /// page of it: the `Link` header's `rel="next"` is followed to the end.
    pub async fn order_ids(&self, path: &str) -> Result<Vec<i64>, String> {
        let mut ids = Vec::new();
        let mut next = Some(path.to_string());
        while let Some(page) = next.take() {
            let response = self
                .http
                .get(self.url(&page))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            next = next_page(response.headers());
            let list: Vec<Value> = response.json().await.map_err(|e| e.to_string())?;
            for entry in &list {
                ids.push(
                    entry["orderId"]
                        .as_i64()
                        .ok_or_else(|| format!("no orderId in {entry}"))?,
                );
            }
        }
        Ok(ids)
    }

    /// The body of `GET /metrics`.
    pub async fn metrics(&self) -> Result<String, String> {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())
    }
}

/// The target of a `Link: <target>; rel="next"` header (RFC 8288), the next page of a list.
pub fn next_page(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            params
                .split(';')
                .any(|param| param.trim().replace(' ', "") == "rel=\"next\"")
                .then(|| {
                    target
                        .trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                })
        })
}

/// The JSON of a valid order, the `n`th of a test (its street and quantities vary with `n`).
pub fn order_body(n: u32) -> Value {
    json!({
        "customerId": 1 + i64::from(n % 2),
        "shippingAddress": {"street": format!("Ohlauer Str. {n}"), "zip": "10999", "city": "Berlin"},
        "billingAddress": {"street": "Krischerstr. 100", "zip": "40789", "city": "Monheim am Rhein"},
        "orderLine": [{"count": 1 + i64::from(n % 5), "itemId": 1 + i64::from(n % 4)}]
    })
}

/// Checks that `stored` holds each of `placed` exactly once (nothing lost, nothing twice).
pub fn exactly_once(placed: &BTreeSet<i64>, stored: &[i64]) -> Result<(), String> {
    let unique: BTreeSet<i64> = stored.iter().copied().collect();
    if unique.len() != stored.len() {
        return Err(format!(
            "{} entries for {} distinct orders: duplicates",
            stored.len(),
            unique.len()
        ));
    }
    let missing: Vec<&i64> = placed.difference(&unique).collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} of {} orders missing, e.g. {:?}",
            missing.len(),
            placed.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    Ok(())
}

/// Places orders `range` (ten at a time) through `order`; their ids.
pub async fn place_orders(order: &Service, range: std::ops::Range<u32>) -> BTreeSet<i64> {
    let mut placed = BTreeSet::new();
    for chunk in range.collect::<Vec<_>>().chunks(10) {
        let results = futures::future::join_all(chunk.iter().map(|n| order.place_order(*n))).await;
        for result in results {
            placed.insert(result.expect("order accepted"));
        }
    }
    placed
}

/// Waits until `service` lists every order of `placed` exactly once at `path`.
pub async fn all_stored_once(service: &Service, path: &str, placed: &BTreeSet<i64>) {
    wait::until_ok(
        &format!("every order exactly once in {path}"),
        Duration::from_secs(120),
        || async {
            let stored = service.order_ids(path).await?;
            let ours: Vec<i64> = stored.into_iter().filter(|id| placed.contains(id)).collect();
            exactly_once(placed, &ours)
        },
    )
    .await;
}

/// A steady load: orders `from`, `from + 1`, … placed one every 50 ms through a client, on a task of their
/// own, while the test changes the shop underneath; no request is retried, so a failed one shows.
pub struct SteadyLoad {
    running: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Answer>>,
}

/// The `n`th order's answer: its id and when it was accepted, or why it was refused.
type Answer = (u32, Result<(i64, SystemTime), String>);

impl SteadyLoad {
    /// Starts the load on `front`. On a client [`Service::without_keep_alive`] of the order Service every
    /// request goes to the pods that are there at that moment, so a roll shows in the answers.
    pub fn start(front: Service, from: u32) -> SteadyLoad {
        let running = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn({
            let running = running.clone();
            async move {
                let mut answers = Vec::new();
                let mut n = from;
                while running.load(Ordering::Relaxed) {
                    let answer = front.place_order(n).await.map(|id| (id, SystemTime::now()));
                    answers.push((n, answer));
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                answers
            }
        });
        SteadyLoad { running, task }
    }

    /// Stops the load and checks it ran `during` something (more than `at_least` requests) without a
    /// single failed request; the ids of the orders it placed.
    pub async fn stop(self, during: &str, at_least: usize) -> BTreeSet<i64> {
        self.stop_timed(during, at_least).await.into_keys().collect()
    }

    /// The same as [`stop`](Self::stop), with when each order was accepted.
    pub async fn stop_timed(self, during: &str, at_least: usize) -> BTreeMap<i64, SystemTime> {
        self.running.store(false, Ordering::Relaxed);
        let answers = self.task.await.expect("the load task");
        let failed: Vec<String> = answers
            .iter()
            .filter_map(|(n, answer)| answer.as_ref().err().map(|e| format!("order {n}: {e}")))
            .collect();
        eprintln!(
            "during {during}: {} requests, {} failed",
            answers.len(),
            failed.len()
        );
        assert!(
            failed.is_empty(),
            "{} of {} requests failed during {during}: {failed:?}",
            failed.len(),
            answers.len()
        );
        assert!(
            answers.len() > at_least,
            "the load ran through {during}: {} requests",
            answers.len()
        );
        answers.into_iter().filter_map(|(_, a)| a.ok()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_once_finds_duplicates_and_missing_orders() {
        let placed: BTreeSet<i64> = [1, 2, 3].into();
        assert!(exactly_once(&placed, &[1, 2, 3]).is_ok());
        assert!(
            exactly_once(&placed, &[1, 2, 3, 3])
                .unwrap_err()
                .contains("duplicates")
        );
        assert!(
            exactly_once(&placed, &[1, 2])
                .unwrap_err()
                .contains("1 of 3 orders missing")
        );
    }
}
