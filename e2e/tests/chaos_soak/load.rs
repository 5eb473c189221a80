//! The soak's steady order rate: one order at a time to the order Service's ClusterIP (a new connection
//! each, so a killed, rolled or drained pod shows in the answers), paced to a rate, on a task of its own.
//! Unlike `SteadyLoad`, which proves that a roll refuses nothing, this load runs through faults that refuse
//! orders by design (PostgreSQL down: 503; the drain: no pod behind the Service), so it counts the refusals
//! by kind and the soak checks the kinds; every accepted order must then be stored, invoiced and shipped
//! once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ordersystem_e2e::shop::Service;

/// How long one request may take before it counts as refused (`timeout`): an order answered later may
/// still be stored, which the exactly-once check covers, since it reads the order service's own table.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the load saw so far.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub sent: u64,
    pub accepted: BTreeSet<i64>,
    /// Refusals by kind: `503`, `connection` (nothing listening or the connection cut), `timeout`, or the
    /// answer itself.
    pub refused: BTreeMap<String, u64>,
}

impl Tally {
    pub fn refusals(&self) -> u64 {
        self.refused.values().sum()
    }

    /// Refusals no fault of the soak explains: any answer but a 503 (a 4xx or a 500 would be a bug).
    pub fn unexplained(&self) -> BTreeMap<String, u64> {
        self.refused
            .iter()
            .filter(|(kind, _)| !["503", "connection", "timeout"].contains(&kind.as_str()))
            .map(|(kind, n)| (kind.clone(), *n))
            .collect()
    }
}

/// The kind of a refusal, from [`Service::place_order`]'s error.
fn kind(error: &str) -> String {
    if error.contains("answered 503") {
        "503".to_string()
    } else if error.contains("answered") {
        error.chars().take(160).collect()
    } else {
        // reqwest: "error sending request for url …", a reset connection, a body cut off.
        "connection".to_string()
    }
}

pub struct Load {
    running: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Starts placing `rate` orders a second (at most: one waits for the answer to the last) on `front`.
    pub fn start(front: Service, rate: u32) -> Load {
        let running = Arc::new(AtomicBool::new(true));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let task = tokio::spawn({
            let (running, tally) = (running.clone(), tally.clone());
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n = 0u32;
                while running.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let answer = tokio::time::timeout(REQUEST_TIMEOUT, front.place_order(n)).await;
                    let mut tally = tally.lock().expect("the tally");
                    tally.sent += 1;
                    match answer {
                        Ok(Ok(id)) => {
                            tally.accepted.insert(id);
                        }
                        Ok(Err(error)) => *tally.refused.entry(kind(&error)).or_default() += 1,
                        Err(_) => *tally.refused.entry("timeout".to_string()).or_default() += 1,
                    }
                    n = n.wrapping_add(1);
                }
            }
        });
        Load { running, tally, task }
    }

    /// What it saw so far.
    pub fn tally(&self) -> Tally {
        self.tally.lock().expect("the tally").clone()
    }

    /// Stops it; what it saw.
    pub async fn stop(self) -> Tally {
        self.running.store(false, Ordering::Relaxed);
        let Load { tally, task, .. } = self;
        task.await.expect("the load task");
        tally.lock().expect("the tally").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_apart_and_only_faults_explain_them() {
        assert_eq!(
            kind("POST /api/orders answered 503 Service Unavailable: {}"),
            "503"
        );
        assert_eq!(
            kind("error sending request for url (http://10.0.0.7:8080/api/orders)"),
            "connection"
        );
        let mut tally = Tally::default();
        for error in [
            "x answered 503 y",
            "error sending request",
            "POST /api/orders answered 422 z",
        ] {
            *tally.refused.entry(kind(error)).or_default() += 1;
        }
        *tally.refused.entry("timeout".into()).or_default() += 1;
        assert_eq!(tally.refusals(), 4);
        assert_eq!(
            tally.unexplained().into_keys().collect::<Vec<_>>(),
            vec!["POST /api/orders answered 422 z".to_string()]
        );
    }
}
