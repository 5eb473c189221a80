//! Leader election over a `coordination.k8s.io/v1` Lease, with client-go's rules: a candidate takes the
//! lease only when its record (holder and renew time) has not changed for `lease_duration` by the
//! candidate's own clock, so clocks of different machines never have to agree; every write carries the
//! `resourceVersion` it read, so of two candidates the API server lets one win; the leader counts itself
//! leading only until `renew_deadline` after the start of its last successful renewal, which is shorter
//! than `lease_duration`: it has stopped before anyone else may start.
//!
//! `Leadership::is_leading` reads that deadline against the monotonic clock, which keeps running while the
//! process is stopped (SIGSTOP): a leader stopped past its lease finds itself no longer leading the moment
//! it runs again, before it renews anything.
//!
//! A check of `is_leading` before a step still leaves a gap: a request prepared before the deadline (or
//! a process stopped between the check and the send) would reach the API server afterwards. So the
//! controller's client refuses, in its own tower stack, every request that is not a GET once leadership
//! has ended ([`gated_client`]); the election loop keeps a client of its own without that gate, since
//! taking the lease is a write. PostgreSQL is fenced by the same deadline: the reconcile runs inside
//! [`fence`], and the one executor of the operator's SQL asks [`may_write_here`] before each statement.
//! (Kafka's writers look at `Context::may_write` once, right before their admin calls.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

// axum's re-export of `http`, the crate kube's requests are made of.
use axum::http::{HeaderValue, Method, Request, header};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tracing::{info, warn};

/// How a replica takes part in the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica, as the lease records it (the pod name, made unique per process).
    pub identity: String,
    /// How long a record must stay unchanged before another candidate may take the lease.
    pub lease_duration: Duration,
    /// How long after the start of its last successful renewal the leader still counts itself leading.
    pub renew_deadline: Duration,
    /// Time between two attempts to take or renew the lease.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s, 10 s and 2 s.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Whether this replica leads, as the election loop last found it.
#[derive(Clone)]
pub struct Leadership {
    until: watch::Receiver<Option<Instant>>,
}

impl Leadership {
    /// True while the last successful renewal is recent enough.
    pub fn is_leading(&self) -> bool {
        matches!(*self.until.borrow(), Some(until) if Instant::now() < until)
    }

    /// Waits until this replica leads.
    pub async fn acquired(&mut self) {
        while !self.is_leading() {
            if self.until.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until this replica no longer leads: a renewal failed for longer than the deadline, or the
    /// election loop ended.
    pub async fn lost(&mut self) {
        loop {
            let until = *self.until.borrow_and_update();
            let Some(until) = until.filter(|until| Instant::now() < *until) else {
                return;
            };
            tokio::select! {
                changed = self.until.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }
}

/// Whether a request with `method` may go to the API server while this replica leads (`leading`) or
/// not: reads always, anything else (POST, PUT, PATCH, DELETE) only while leading.
pub fn admits(method: &Method, leading: bool) -> bool {
    leading || method == Method::GET
}

/// The refusal of a write by a replica whose leadership has ended. kube reports it as
/// `kube::Error::Service` with this as its source.
#[derive(Debug, thiserror::Error)]
#[error("this replica no longer holds the leader lease, so it sends no {method} {path} to the API server")]
pub struct NotLeading {
    pub method: Method,
    pub path: String,
}

/// The `User-Agent` of this replica's requests, so the API server's audit log tells the replicas apart:
/// `ordersystem-operator/<version>`, with the lease identity in parentheses under election.
pub fn user_agent(identity: Option<&str>) -> String {
    let product = concat!("ordersystem-operator/", env!("CARGO_PKG_VERSION"));
    match identity {
        Some(identity) => format!("{product} ({identity})"),
        None => product.to_string(),
    }
}

/// `client` with every request marked with `user_agent` and, with `leadership`, writes refused once it
/// has ended ([`WriteGate`]); without election (`None`) the gate is always open. The election loop
/// itself must use a client without the gate.
pub fn gated_client(client: kube::Client, leadership: Option<Leadership>, user_agent: &str) -> kube::Client {
    let namespace = client.default_namespace().to_string();
    let service = ServiceBuilder::new()
        .layer(WriteGate { leadership })
        .service(identified(client, user_agent));
    kube::Client::new(service, namespace)
}

/// `client` with every request marked with `user_agent`, as the election loop uses it.
pub fn identified_client(client: kube::Client, user_agent: &str) -> kube::Client {
    let namespace = client.default_namespace().to_string();
    kube::Client::new(identified(client, user_agent), namespace)
}

type ClientService =
    tower::util::BoxService<Request<kube::client::Body>, axum::http::Response<kube::client::Body>, BoxError>;

/// `client` as a tower service whose requests carry `user_agent`. A `kube::Client` is itself the
/// configured stack (address, TLS, credentials, impersonation), so the layers here go in front of it.
fn identified(client: kube::Client, user_agent: &str) -> ClientService {
    let value = HeaderValue::from_str(user_agent)
        .unwrap_or_else(|_| HeaderValue::from_static("ordersystem-operator"));
    tower::service_fn(move |mut request: Request<kube::client::Body>| {
        let client = client.clone();
        request.headers_mut().insert(header::USER_AGENT, value.clone());
        async move { client.send(request).await.map_err(BoxError::from) }
    })
    .boxed()
}

/// A tower layer that refuses every request but a GET once `leadership` has ended ([`admits`]): the
/// fence for a write already prepared when the lease ran out. Each request is judged when it is sent,
/// by the monotonic clock, as `Leadership::is_leading` is.
#[derive(Clone)]
pub struct WriteGate {
    leadership: Option<Leadership>,
}

impl<S> Layer<S> for WriteGate {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gated {
            inner,
            leadership: self.leadership.clone(),
        }
    }
}

/// The service [`WriteGate`] makes.
#[derive(Clone)]
pub struct Gated<S> {
    inner: S,
    leadership: Option<Leadership>,
}

impl<S, B> Service<Request<B>> for Gated<S>
where
    S: Service<Request<B>>,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let leading = self.leadership.as_ref().is_none_or(Leadership::is_leading);
        if !admits(request.method(), leading) {
            let refused = NotLeading {
                method: request.method().clone(),
                path: request.uri().path().to_string(),
            };
            warn!(%refused, "write refused");
            return Box::pin(std::future::ready(Err(refused.into())));
        }
        let response = self.inner.call(request);
        Box::pin(async move { response.await.map_err(Into::into) })
    }
}

tokio::task_local! {
    /// The leadership of the reconcile running on this task, for PostgreSQL's statement executor, which
    /// holds a connection rather than the `Context`.
    static FENCE: Leadership;
}

/// Runs `work` (a reconcile) so that [`may_write_here`] inside it answers for `leadership`.
pub async fn fence<F: Future>(leadership: Option<Leadership>, work: F) -> F::Output {
    match leadership {
        Some(leadership) => FENCE.scope(leadership, work).await,
        None => work.await,
    }
}

/// Whether the reconcile running here may write now: true outside [`fence`] (no election) or while its
/// leadership holds. PostgreSQL's statement executor asks it before each statement.
pub fn may_write_here() -> bool {
    FENCE.try_with(Leadership::is_leading).unwrap_or(true)
}

/// What a candidate does with the lease as it found it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// No lease yet: create it, holding it.
    Create,
    /// Held by this candidate: renew it.
    Renew,
    /// Held by another whose record has not changed for the lease duration, or by nobody: take it.
    TakeOver,
    /// Held by another, recently renewed.
    Follow,
}

/// The record of a lease a candidate watches for change: holder and renew time.
type Record = (Option<String>, Option<String>);

fn record(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    let renewed = spec.renew_time.map(|t| t.0.to_string());
    (spec.holder_identity, renewed)
}

/// The step for `lease`, given when (by this candidate's clock) its record was last seen to change.
fn step(lease: Option<&Lease>, identity: &str, unchanged_for: Duration, lease_duration: Duration) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    match record(lease).0.filter(|holder| !holder.is_empty()) {
        Some(holder) if holder == identity => Step::Renew,
        Some(_) if unchanged_for < lease_duration => Step::Follow,
        _ => Step::TakeOver,
    }
}

/// Starts the election loop for `config`; it runs until the process ends or the returned handle aborts it
/// (then no renewal is sent again, as when the process is killed).
pub fn elect(client: kube::Client, config: LeaseConfig) -> (Leadership, tokio::task::AbortHandle) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(run(client, config, tx));
    (Leadership { until: rx }, task.abort_handle())
}

async fn run(client: kube::Client, config: LeaseConfig, leading: watch::Sender<Option<Instant>>) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    // The record last seen and when it was first seen, by this process's clock.
    let mut seen: Option<(Record, Instant)> = None;
    loop {
        let attempt = Instant::now();
        let found = match api.get_opt(&config.name).await {
            Ok(found) => Some(found),
            Err(error) => {
                warn!(%error, lease = %config.name, "reading the lease failed");
                None
            }
        };
        let renewed = match found {
            Some(lease) => {
                if let Some(lease) = &lease {
                    let now_record = record(lease);
                    if seen.as_ref().map(|(r, _)| r) != Some(&now_record) {
                        seen = Some((now_record, attempt));
                    }
                }
                let unchanged_for = seen.as_ref().map_or(Duration::ZERO, |(_, at)| attempt - *at);
                let step = step(
                    lease.as_ref(),
                    &config.identity,
                    unchanged_for,
                    config.lease_duration,
                );
                write(&api, &config, lease, &step).await
            }
            None => false,
        };
        let was_leading = leading.borrow().is_some_and(|until| Instant::now() < until);
        if renewed {
            if !was_leading {
                info!(lease = %config.name, identity = %config.identity, "leading");
            }
            leading.send_replace(Some(attempt + config.renew_deadline));
        } else if was_leading && Instant::now() >= leading.borrow().unwrap_or(attempt) {
            warn!(lease = %config.name, "lost the lease");
            leading.send_replace(None);
        }
        tokio::time::sleep_until(attempt + config.retry_period).await;
    }
}

/// Writes the lease for `step`; true when this candidate holds it now.
async fn write(api: &Api<Lease>, config: &LeaseConfig, found: Option<Lease>, step: &Step) -> bool {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let duration = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let result = match (step, found) {
        (Step::Follow, _) => return false,
        (Step::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(config.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await
        }
        (Step::Renew | Step::TakeOver, Some(mut lease)) => {
            let mut spec = lease.spec.take().unwrap_or_default();
            if *step == Step::TakeOver {
                spec.holder_identity = Some(config.identity.clone());
                spec.acquire_time = Some(now.clone());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(duration);
            spec.renew_time = Some(now);
            lease.spec = Some(spec);
            // `replace` sends the resourceVersion read: a lease changed meanwhile is refused (409).
            api.replace(&config.name, &PostParams::default(), &lease).await
        }
        (Step::Renew | Step::TakeOver, None) => return false,
    };
    match result {
        Ok(_) => true,
        Err(kube::Error::Api(answer)) if answer.code == 409 => false,
        Err(error) => {
            warn!(%error, lease = %config.name, "writing the lease failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    const DURATION: Duration = Duration::from_secs(15);

    #[test]
    fn a_candidate_creates_a_missing_lease_and_renews_its_own() {
        assert_eq!(step(None, "a", Duration::ZERO, DURATION), Step::Create);
        assert_eq!(
            step(Some(&held_by("a")), "a", DURATION * 10, DURATION),
            Step::Renew
        );
    }

    #[test]
    fn another_holders_lease_is_taken_only_after_its_record_stood_still_for_the_duration() {
        let lease = held_by("b");
        assert_eq!(
            step(Some(&lease), "a", DURATION - Duration::from_millis(1), DURATION),
            Step::Follow
        );
        assert_eq!(step(Some(&lease), "a", DURATION, DURATION), Step::TakeOver);
        assert_eq!(
            step(Some(&held_by("")), "a", Duration::ZERO, DURATION),
            Step::TakeOver
        );
    }

    #[test]
    fn once_leadership_has_ended_only_gets_are_admitted() {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(admits(&method, true), "{method} while leading");
            assert!(!admits(&method, false), "{method} after the lease");
        }
        assert!(admits(&Method::GET, true));
        assert!(admits(&Method::GET, false));
    }

    /// A service that records the methods it is called with.
    type Recorder = Gated<tower::util::BoxService<Request<()>, (), BoxError>>;
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<Method>>>;

    /// The gate for `leadership` in front of a service that records what reaches it.
    fn behind_gate(leadership: Option<Leadership>) -> (Recorder, Seen) {
        let seen = Seen::default();
        let record = seen.clone();
        let inner = tower::service_fn(move |request: Request<()>| {
            record.lock().expect("lock").push(request.method().clone());
            std::future::ready(Ok::<(), BoxError>(()))
        })
        .boxed();
        (WriteGate { leadership }.layer(inner), seen)
    }

    fn request(method: Method) -> Request<()> {
        Request::builder()
            .method(method)
            .uri("/api/v1/namespaces/x/configmaps")
            .body(())
            .expect("request")
    }

    #[tokio::test]
    async fn the_gate_passes_writes_while_leading_and_refuses_them_from_the_deadline_on() {
        let (tx, rx) = watch::channel(Some(Instant::now() + Duration::from_secs(60)));
        let (mut gated, seen) = behind_gate(Some(Leadership { until: rx }));
        gated
            .ready()
            .await
            .expect("ready")
            .call(request(Method::POST))
            .await
            .expect("a write while leading");
        tx.send_replace(Some(Instant::now()));
        let refused = gated
            .ready()
            .await
            .expect("ready")
            .call(request(Method::PATCH))
            .await
            .expect_err("a write after the deadline");
        assert!(refused.is::<NotLeading>(), "{refused}");
        assert!(
            refused.to_string().contains("no longer holds the leader lease"),
            "{refused}"
        );
        gated
            .ready()
            .await
            .expect("ready")
            .call(request(Method::GET))
            .await
            .expect("a read after it");
        assert_eq!(*seen.lock().expect("lock"), [Method::POST, Method::GET]);
    }

    #[tokio::test]
    async fn without_election_the_gate_is_always_open() {
        let (mut gated, seen) = behind_gate(None);
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            gated
                .ready()
                .await
                .expect("ready")
                .call(request(method))
                .await
                .expect("passes");
        }
        assert_eq!(seen.lock().expect("lock").len(), 4);
    }

    #[tokio::test]
    async fn inside_the_fence_writers_see_the_deadline_and_outside_it_no_election() {
        assert!(may_write_here(), "no fence: no election");
        let (tx, rx) = watch::channel(Some(Instant::now() + Duration::from_secs(60)));
        fence(Some(Leadership { until: rx }), async {
            assert!(may_write_here());
            tx.send_replace(None);
            assert!(!may_write_here());
        })
        .await;
    }

    #[tokio::test]
    async fn leadership_ends_at_its_deadline_without_any_news() {
        let (tx, rx) = watch::channel(None);
        let mut leadership = Leadership { until: rx };
        assert!(!leadership.is_leading());
        let deadline = Duration::from_millis(300);
        tx.send_replace(Some(Instant::now() + deadline));
        leadership.acquired().await;
        assert!(leadership.is_leading());
        let start = Instant::now();
        leadership.lost().await;
        assert!(Instant::now() - start >= deadline - Duration::from_millis(50));
        assert!(!leadership.is_leading());
    }
}
