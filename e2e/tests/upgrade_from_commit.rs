//! The whole system upgraded on the real node from an earlier commit to this checkout, operator and services,
//! under a steady order load. The earlier version is built by `e2e/images/build-commit.sh COMMIT` (its own
//! worktree, release build and images tagged with the commit's 12-character hash, its chart and CRDs in the
//! worktree); `UPGRADE_FROM_COMMIT` names it. `e2e/extended.sh --upgrade [COMMIT]` builds it and runs this
//! test, which only the nextest profile `extended` lists (the first build of a commit is a full release
//! build, outside CI's budget).
//!
//! In order, while the load places an order every 50 ms and not one request may fail:
//! 1. the earlier CRDs and chart, its operator and an `OrderSystem` on its service images;
//! 2. this checkout's CRDs and chart (`helm upgrade`): the new operator takes over the running shop;
//! 3. invoicing rolled to this build alone: a batch of orders written by the earlier order service is
//!    stored by the new invoicing and the earlier shipping (new consumers read old events);
//! 4. order rolled: a batch written by the new order service is stored by the earlier shipping (old
//!    consumers read new events, which now carry trace headers from a new outbox column);
//! 5. `spec.imageTag` names this build: shipping rolls too, a last batch goes through the new system;
//! 6. on the topic, the records of the earlier order service have no `traceparent` header and those of the
//!    current one all have it: the two formats the consumers of each version were given.
//!
//! Each batch is placed while every pod of every service runs one known build (the `build_info` revision each
//! pod reports) and the same pods are still there when the batch has been stored, so "stored by the earlier
//! shipping" means exactly that. Then every order of the load and the batches is invoiced and shipped exactly
//! once, and the three schemas were only expanded: every column of the earlier schema is still there with its
//! type and nullability, and every new column is nullable or has a default, which is what lets the earlier
//! pods still running in a roll keep writing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use ordersystem_api::names::{Service as ShopService, child_name, pg_identifier};
use ordersystem_e2e::cluster::{self, READY_WITHIN, is_ready, pods};
use ordersystem_e2e::mode::Mode;
use ordersystem_e2e::node_shop::NodeShop;
use ordersystem_e2e::shop::{Service, SteadyLoad, all_stored_once, place_orders};
use ordersystem_e2e::upgrade::{operator_pod, revision, uid};
use ordersystem_e2e::{env, kafka, wait};
use serde_json::json;
use sqlx::Connection;

const SYSTEM: &str = "shop";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const SERVICES: [ShopService; 3] = ShopService::ALL;
/// Orders per batch placed while the builds stand still.
const BATCH: u32 = 20;
/// How long a roll may take: new pods started and Ready, the old ones terminated.
const ROLL_WITHIN: Duration = Duration::from_secs(240);

/// When the test began: each step's log line says how far in it is.
static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);

fn at() -> String {
    format!("[{:5.1} s]", STARTED.elapsed().as_secs_f64())
}

/// The earlier version, as `build-commit.sh` left it.
struct Earlier {
    commit: String,
    tag: String,
    chart: String,
    crds: String,
}

/// `UPGRADE_FROM_COMMIT` resolved to the build in the cache; a missing build fails with what to run.
fn earlier() -> Earlier {
    let commit = std::env::var("UPGRADE_FROM_COMMIT").unwrap_or_else(|_| {
        panic!(
            "UPGRADE_FROM_COMMIT names the earlier commit to upgrade from: run `e2e/extended.sh --upgrade \
             [COMMIT]`, which builds it with e2e/images/build-commit.sh and sets it"
        )
    });
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let hash = cluster::run(
        "git",
        &[
            "-C",
            root,
            "rev-parse",
            "--verify",
            &format!("{commit}^{{commit}}"),
        ],
    )
    .trim()
    .to_string();
    let cache = std::env::var_os("ORDERSYSTEM_CACHE").map_or_else(
        || PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/ordersystem"),
        PathBuf::from,
    );
    let file = cache.join("commits").join(&hash).join("images.env");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "{} ({e}): the images of {hash} are not built; run e2e/images/build-commit.sh {hash} \
             (e2e/extended.sh --upgrade does)",
            file.display()
        )
    });
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{} has no {key}", file.display()))
            .to_string()
    };
    assert_eq!(value("commit"), hash, "{} is of another commit", file.display());
    Earlier {
        commit: hash,
        tag: value("tag"),
        chart: value("chart"),
        crds: value("crds"),
    }
}

/// Which build each service is to run in a phase of the upgrade.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Build {
    Earlier,
    Current,
}

/// The replicas of each service in this shop.
fn replicas(service: ShopService) -> usize {
    match service {
        ShopService::Shipping => 1,
        _ => 2,
    }
}

/// Waits until every service runs only `builds`' build (each pod Ready, none terminating, as many as its
/// replicas, each reporting the build's revision); the pods' uids per service.
async fn settled(
    client: &kube::Client,
    mode: &Mode,
    ns: &str,
    revisions: &BTreeMap<&str, String>,
    builds: [(ShopService, Build); 3],
) -> BTreeMap<ShopService, BTreeSet<String>> {
    let wanted = |build: Build| match build {
        Build::Earlier => revisions["earlier"].clone(),
        Build::Current => revisions["current"].clone(),
    };
    wait::until_ok(&format!("the services on {builds:?}"), ROLL_WITHIN, || async {
        let mut uids = BTreeMap::new();
        for (service, build) in builds {
            let now = pods(client, ns, SYSTEM, service.as_str()).await;
            let name = service.as_str();
            if now.len() != replicas(service) || !now.iter().all(is_ready) {
                return Err(format!(
                    "{name}: {} pods, {} Ready and not terminating",
                    now.len(),
                    now.iter().filter(|p| is_ready(p)).count()
                ));
            }
            for pod in &now {
                let found = revision(mode, pod).await?;
                if found != wanted(build) {
                    return Err(format!("{name}: a pod reports revision {found}"));
                }
            }
            uids.insert(service, now.iter().map(uid).collect());
        }
        Ok(uids)
    })
    .await
}

/// A batch of orders placed through `order` while `builds` run, then stored exactly once by invoicing and
/// shipping, with the same pods running throughout; its ids.
#[allow(clippy::too_many_arguments)]
async fn batch_across(
    shop: &NodeShop,
    revisions: &BTreeMap<&str, String>,
    builds: [(ShopService, Build); 3],
    from: u32,
    what: &str,
    order: &Service,
    invoicing: &Service,
    shipping: &Service,
) -> BTreeSet<i64> {
    let (client, mode, ns) = (&shop.client, &shop.mode, &shop.shop_ns);
    let before = settled(client, mode, ns, revisions, builds).await;
    let placed = place_orders(order, from..from + BATCH).await;
    all_stored_once(invoicing, "/api/invoices", &placed).await;
    all_stored_once(shipping, "/api/shipments", &placed).await;
    let after = settled(client, mode, ns, revisions, builds).await;
    assert_eq!(
        after, before,
        "the same pods ran while the batch was placed and stored ({what})"
    );
    eprintln!(
        "{} {what}: {} orders, each invoiced and shipped once",
        at(),
        placed.len()
    );
    placed
}

/// One column of a service's schema: its table, name, type, whether it is NOT NULL and has a default.
type Columns = BTreeMap<(String, String), (String, bool, bool)>;

async fn columns(db: &mut sqlx::PgConnection, schema: &str) -> Columns {
    let rows: Vec<(String, String, String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(schema)
    .fetch_all(db)
    .await
    .expect("the schema's columns");
    rows.into_iter()
        .map(|(t, c, ty, not_null, default)| ((t, c), (ty, not_null, default)))
        .collect()
}

async fn schemas(ns: &str) -> BTreeMap<ShopService, Columns> {
    let mut db = sqlx::PgConnection::connect(&env::database_url())
        .await
        .expect("the test PostgreSQL");
    let mut all = BTreeMap::new();
    for service in SERVICES {
        let schema = pg_identifier(ns, SYSTEM, service);
        all.insert(service, columns(&mut db, &schema).await);
    }
    all
}

/// What the upgrade changed in a schema that an earlier pod could trip over: a column gone or changed, or a
/// new one it would have to fill.
fn not_expand_only(before: &Columns, after: &Columns) -> Vec<String> {
    let mut problems = Vec::new();
    for (column, was) in before {
        match after.get(column) {
            None => problems.push(format!("{column:?} was dropped")),
            Some(now) if now.0 != was.0 || (now.1 && !was.1) => {
                problems.push(format!("{column:?} changed from {was:?} to {now:?}"));
            }
            Some(_) => {}
        }
    }
    for (column, now) in after {
        if !before.contains_key(column) && now.1 && !now.2 {
            problems.push(format!("{column:?} is new, NOT NULL and without a default"));
        }
    }
    problems
}

fn patch(spec: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Merge(json!({ "spec": spec }))
}

fn image_of(service: ShopService) -> String {
    format!("ghcr.io/ordersystem/{}:{VERSION}", service.as_str())
}

#[tokio::test]
async fn the_system_upgrades_from_an_earlier_commit_under_load_with_no_failed_request_and_every_order_once() {
    use Build::{Current, Earlier};
    use ShopService::{Invoicing as I, Order as O, Shipping as S};
    let from = earlier();
    eprintln!(
        "{} upgrading from {} (images :{}, chart {}) to this checkout (images :{VERSION})",
        at(),
        from.commit,
        from.tag,
        from.chart
    );
    let shop = NodeShop::namespaces("upgrade-from").await;
    let (client, mode) = (&shop.client, &shop.mode);
    let (operator_ns, shop_ns) = (&shop.operator_ns, &shop.shop_ns);
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), operator_ns);

    // 1. The earlier version, as it was installed then: its CRDs, its chart, its operator and service images.
    cluster::run(
        "kubectl",
        &["apply", "--server-side", "--force-conflicts", "-f", &from.crds],
    );
    let watch = format!("watchNamespace={shop_ns}");
    let earlier_tag = format!("image.tag={}", from.tag);
    let earlier_default = format!("serviceImages.defaultTag={}", from.tag);
    cluster::run(
        "helm",
        &[
            "install",
            operator_ns,
            &from.chart,
            "--namespace",
            operator_ns,
            "--set",
            &watch,
            "--set",
            &earlier_tag,
            "--set",
            &earlier_default,
        ],
    );
    let earlier_operator = wait::until_ok("the earlier operator Ready", READY_WITHIN, || {
        operator_pod(&operator_pods, &from.tag)
    })
    .await;
    assert_eq!(
        revision(mode, &earlier_operator).await.as_deref(),
        Ok(from.commit.as_str()),
        "the earlier operator reports the earlier commit"
    );
    let topic = shop
        .create_system(
            SYSTEM,
            2,
            json!({"order": {"replicas": 1}, "invoicing": {"replicas": 2}, "shipping": {"replicas": 1}}),
        )
        .await;
    shop.ready(SYSTEM).await;
    // Order's second replica only once the first has seeded the catalog: two order pods seeding an empty
    // schema at once can give the customers and items other ids than 1, 2, … (ON CONFLICT DO NOTHING still
    // draws from the sequence), and the orders below name those ids.
    shop.systems()
        .patch(
            SYSTEM,
            &PatchParams::default(),
            &patch(json!({"order": {"replicas": 2}})),
        )
        .await
        .expect("order to 2 replicas");
    let mut revisions = BTreeMap::from([("earlier", from.commit.clone())]);
    let schemas_before = schemas(shop_ns).await;

    let service = async |s: ShopService| mode.service_of(client, shop_ns, &child_name(SYSTEM, s)).await;
    let order = service(O).await.without_keep_alive();
    let invoicing = service(I).await;
    let shipping = service(S).await;
    eprintln!("{} the earlier system Ready; the load starts", at());
    let load = SteadyLoad::start(order.clone(), 0);
    // The batches written by the earlier order service and by the current one.
    let (mut by_earlier_order, mut by_current_order) = (BTreeSet::new(), BTreeSet::new());

    // 2. This checkout's CRDs and chart, with its operator; the services keep the earlier images.
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/");
    cluster::run(
        "kubectl",
        &["apply", "--server-side", "--force-conflicts", "-f", crds],
    );
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/ordersystem-operator");
    let current_tag = format!("image.tag={VERSION}");
    let current_default = format!("serviceImages.defaultTag={VERSION}");
    cluster::run(
        "helm",
        &[
            "upgrade",
            operator_ns,
            chart,
            "--namespace",
            operator_ns,
            "--set",
            &watch,
            "--set",
            &current_tag,
            "--set",
            &current_default,
        ],
    );
    let current_operator = wait::until_ok("the current operator Ready", READY_WITHIN, || {
        operator_pod(&operator_pods, VERSION)
    })
    .await;
    let current = revision(mode, &current_operator)
        .await
        .expect("the current operator's revision");
    eprintln!("{} the current operator Ready: revision {current}", at());
    assert_ne!(current, from.commit, "the current build is another revision");
    revisions.insert("current", current);
    // The shop stays Ready under the new operator, the services still on the earlier build, and orders of
    // the earlier services go through.
    shop.ready(SYSTEM).await;
    by_earlier_order.extend(
        batch_across(
            &shop,
            &revisions,
            [(O, Earlier), (I, Earlier), (S, Earlier)],
            100_000,
            "the earlier services under the current operator",
            &order,
            &invoicing,
            &shipping,
        )
        .await,
    );

    // 3. Invoicing alone on this build: the earlier order service's events, read by the new consumers.
    let systems = shop.systems();
    let params = PatchParams::default();
    systems
        .patch(
            SYSTEM,
            &params,
            &patch(json!({"invoicing": {"image": image_of(I)}})),
        )
        .await
        .expect("roll invoicing");
    by_earlier_order.extend(
        batch_across(
            &shop,
            &revisions,
            [(O, Earlier), (I, Current), (S, Earlier)],
            200_000,
            "events of the earlier order service, stored by the current invoicing",
            &order,
            &invoicing,
            &shipping,
        )
        .await,
    );

    // 4. Order on this build: its events (with trace headers) read by the earlier shipping.
    systems
        .patch(SYSTEM, &params, &patch(json!({"order": {"image": image_of(O)}})))
        .await
        .expect("roll order");
    by_current_order.extend(
        batch_across(
            &shop,
            &revisions,
            [(O, Current), (I, Current), (S, Earlier)],
            300_000,
            "events of the current order service, stored by the earlier shipping",
            &order,
            &invoicing,
            &shipping,
        )
        .await,
    );

    // 5. The spec names this build for every service, as a user finishing the upgrade would.
    systems
        .patch(
            SYSTEM,
            &params,
            &patch(json!({"imageTag": VERSION, "order": {"image": null}, "invoicing": {"image": null}})),
        )
        .await
        .expect("set imageTag");
    by_current_order.extend(
        batch_across(
            &shop,
            &revisions,
            [(O, Current), (I, Current), (S, Current)],
            400_000,
            "the current system",
            &order,
            &invoicing,
            &shipping,
        )
        .await,
    );
    let status = shop.ready(SYSTEM).await;
    for s in SERVICES {
        let recorded = status.services.as_ref().map(|x| x.of(s).image.clone());
        assert_eq!(recorded, Some(image_of(s)), "status names the current build");
    }

    // Not one failed request, nothing lost, nothing twice.
    let mut placed = load.stop("the upgrade from the earlier commit", 200).await;
    placed.extend(by_earlier_order.iter().chain(&by_current_order));
    all_stored_once(&invoicing, "/api/invoices", &placed).await;
    all_stored_once(&shipping, "/api/shipments", &placed).await;
    eprintln!(
        "{} orders in all, each invoiced and shipped exactly once",
        placed.len()
    );

    // Expand only: what the earlier pods read and write is all still there.
    let schemas_after = schemas(shop_ns).await;
    for service in SERVICES {
        let (before, after) = (&schemas_before[&service], &schemas_after[&service]);
        assert!(!before.is_empty(), "{} had a schema", service.as_str());
        let added: Vec<_> = after.keys().filter(|c| !before.contains_key(*c)).collect();
        eprintln!("{}: columns added by the upgrade: {added:?}", service.as_str());
        let problems = not_expand_only(before, after);
        assert!(
            problems.is_empty(),
            "{}'s migrations contracted the schema: {problems:?}",
            service.as_str()
        );
    }

    // The two formats on the topic: the earlier order service's records have no trace headers, the
    // current one's have them; the batches above show each version's consumers storing the other's.
    let traced = traced_records(&topic, &by_earlier_order, &by_current_order).await;
    let count = |ids: &BTreeSet<i64>| ids.iter().filter(|id| traced[id]).count();
    eprintln!(
        "records with a traceparent header: {} of {} by the earlier order service, {} of {} by the current",
        count(&by_earlier_order),
        by_earlier_order.len(),
        count(&by_current_order),
        by_current_order.len()
    );
    assert_eq!(
        count(&by_earlier_order),
        0,
        "the earlier order service sends no trace headers"
    );
    assert_eq!(
        count(&by_current_order),
        by_current_order.len(),
        "the current order service sends trace headers with every record"
    );

    shop.delete_and_uninstall(SYSTEM).await;
}

/// Per order id of `earlier` and `current`: whether its record on `topic` has a `traceparent` header.
async fn traced_records(
    topic: &str,
    earlier: &BTreeSet<i64>,
    current: &BTreeSet<i64>,
) -> BTreeMap<i64, bool> {
    use rdkafka::Message;
    use rdkafka::message::Headers;
    let consumer = kafka::read_from_start(&env::kafka_bootstrap(), topic);
    let mut traced = BTreeMap::new();
    let wanted = |id: &i64| earlier.contains(id) || current.contains(id);
    while traced.len() < earlier.len() + current.len() {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of the batches' records on {topic}", traced.len()))
            .expect("a record");
        let id = message
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.parse::<i64>().ok())
            .expect("an order id as the key");
        if wanted(&id) {
            let header = message
                .headers()
                .is_some_and(|h| h.iter().any(|h| h.key == "traceparent"));
            traced.insert(id, header);
        }
    }
    traced
}

#[test]
fn a_dropped_changed_or_required_new_column_is_not_an_expansion() {
    let col = |t: &str, c: &str| (t.to_string(), c.to_string());
    let before: Columns = [(col("outbox", "id"), ("bigint".to_string(), true, true))].into();
    let mut nullable = before.clone();
    nullable.insert(col("outbox", "traceparent"), ("text".to_string(), false, false));
    assert!(not_expand_only(&before, &nullable).is_empty());
    let mut required = before.clone();
    required.insert(col("outbox", "tenant"), ("text".to_string(), true, false));
    assert_eq!(not_expand_only(&before, &required).len(), 1);
    let mut retyped = before.clone();
    retyped.insert(col("outbox", "id"), ("integer".to_string(), true, true));
    assert_eq!(not_expand_only(&before, &retyped).len(), 1);
    assert_eq!(not_expand_only(&before, &Columns::new()).len(), 1);
}
