//! The chart's monitoring bundle against a real Prometheus (Debian's, started here on loopback, never as a
//! system daemon) and the running shop on the real node.
//!
//! No Prometheus Operator runs here, so this test does its part: it reads the PodMonitor, the ServiceMonitor
//! and the PrometheusRule the chart installed (the API server validated them against the Prometheus
//! Operator's own CRDs) and turns them into Prometheus' configuration the way that operator does for the
//! fields they use: the pods the monitors select by their label selectors, namespaces and port names, their
//! relabelings and `honorLabels` (written for Prometheus' file discovery, since Debian builds Prometheus
//! without Kubernetes discovery), and the rule's groups as a rule file. Then:
//! - every service pod and the operator are scraped, and the operator's samples keep the OrderSystem's
//!   `namespace` and `name`;
//! - every query of the chart's Grafana dashboard is valid PromQL, and each finds the shop's data (but those
//!   of trouble it has not had: resources not ready, failed reconciles);
//! - a poison event makes `OrderSystemDeadLetters` fire for invoicing and shipping;
//! - invoicing stopped while orders flow makes `OrderSystemConsumerLagGrowing` fire for it.
//!
//! The rule's `for:` and thresholds are set short for the test; the chart's defaults are unit-tested by
//! `promtool test rules` (e2e/check-chart.sh).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use ordersystem_api::names::{Service as ShopService, child_name};
use ordersystem_e2e::cluster::READY_WITHIN;
use ordersystem_e2e::node_shop::NodeShop;
use ordersystem_e2e::{env, kafka, names, wait};
use serde_json::{Value, json};

const SYSTEM: &str = "shop";
const SCRAPE_INTERVAL: &str = "2s";

/// A Prometheus server of this test's own, stopped (and its data removed) when dropped.
struct Prometheus {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Debian's `prometheus` with `config` and `rules`, listening on a free loopback port only.
    fn start(config: &Value, rules: &Value) -> Prometheus {
        let dir = std::env::temp_dir().join(names::unique("prometheus"));
        std::fs::create_dir_all(dir.join("data")).expect("prometheus directory");
        std::fs::write(
            dir.join("rules.yaml"),
            serde_yaml::to_string(rules).expect("rules yaml"),
        )
        .expect("write rules");
        let mut config = config.clone();
        config["rule_files"] = json!([dir.join("rules.yaml")]);
        std::fs::write(
            dir.join("prometheus.yaml"),
            serde_yaml::to_string(&config).expect("config yaml"),
        )
        .expect("write config");
        let port = ordersystem_testkit::process::free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yaml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus runs (Debian's package, e2e/infra/install-packages.sh installs it)");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>`'s `data`, or the error Prometheus gave.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/{path}", self.url), query)
            .map_err(|e| e.to_string())?;
        let answer: Value = reqwest::get(url)
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if answer["status"] == "success" {
            Ok(answer["data"].clone())
        } else {
            Err(format!("{path} {query:?}: {answer}"))
        }
    }

    /// The samples of an instant query.
    async fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let data = self.api("query", &[("query", promql)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until alert `name` fires with all of `labels`.
    async fn wait_firing(&self, name: &str, labels: &[(&str, &str)]) -> Value {
        wait::until_ok(
            &format!("{name} firing with {labels:?}"),
            READY_WITHIN,
            || async {
                let data = self.api("alerts", &[]).await?;
                let alerts = data["alerts"].as_array().cloned().unwrap_or_default();
                alerts
                    .iter()
                    .find(|a| {
                        a["labels"]["alertname"] == name
                            && a["state"] == "firing"
                            && labels.iter().all(|(k, v)| a["labels"][*k] == *v)
                    })
                    .cloned()
                    .ok_or(format!(
                        "alerts: {:?}",
                        alerts
                            .iter()
                            .map(|a| (a["labels"]["alertname"].clone(), a["state"].clone()))
                            .collect::<Vec<_>>()
                    ))
            },
        )
        .await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("prometheus log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Kubernetes label name as Prometheus' service discovery writes it in a meta label.
fn sanitized(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A monitor's first endpoint and what it selects, as a Prometheus Operator reads them.
struct Monitor {
    /// The scrape job's name and its file of targets.
    job: String,
    pod_monitor: bool,
    namespaces: Vec<String>,
    selector: String,
    port: String,
    path: String,
    honor_labels: bool,
    /// `(source meta labels, target label)` of its relabelings (all `replace`, joined by `;`).
    relabelings: Vec<(Vec<String>, String)>,
}

impl Monitor {
    fn read(object: &DynamicObject, pod_monitor: bool, own_namespace: &str) -> Monitor {
        let spec = &object.data["spec"];
        let endpoint = if pod_monitor {
            &spec["podMetricsEndpoints"][0]
        } else {
            &spec["endpoints"][0]
        };
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        };
        let namespaces = match spec["namespaceSelector"]["matchNames"].as_array() {
            Some(_) => strings(&spec["namespaceSelector"]["matchNames"]),
            None => vec![own_namespace.to_string()],
        };
        let selector = spec["selector"]["matchLabels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(",");
        Monitor {
            job: object.metadata.name.clone().expect("a name"),
            pod_monitor,
            namespaces,
            selector,
            port: endpoint["port"].as_str().expect("a port name").to_string(),
            path: endpoint["path"].as_str().unwrap_or("/metrics").to_string(),
            honor_labels: endpoint["honorLabels"] == true,
            relabelings: endpoint["relabelings"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    (
                        strings(&r["sourceLabels"]),
                        r["targetLabel"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
        }
    }

    /// Its scrape job: the targets come from `targets/<job>.json`, which [`Monitor::discover`] writes.
    fn scrape_job(&self, dir: &Path) -> Value {
        json!({
            "job_name": self.job,
            "honor_labels": self.honor_labels,
            "metrics_path": self.path,
            "file_sd_configs": [{"files": [dir.join(format!("{}.json", self.job))], "refresh_interval": "2s"}],
        })
    }

    /// The pods it selects, with the port it names, as file_sd targets: `namespace`, `pod` and its
    /// relabelings' labels, computed from the pod's meta labels as Kubernetes service discovery has them.
    async fn discover(&self, client: &kube::Client) -> Vec<Value> {
        let mut targets = vec![];
        for ns in &self.namespaces {
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            let selected: Vec<Pod> = if self.pod_monitor {
                pods.list(&ListParams::default().labels(&self.selector))
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
            } else {
                // A ServiceMonitor selects Services; their pods are the ones the Services select.
                let services: Api<Service> = Api::namespaced(client.clone(), ns);
                let mut selected = vec![];
                for service in services
                    .list(&ListParams::default().labels(&self.selector))
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
                {
                    let has_port =
                        service
                            .spec
                            .as_ref()
                            .and_then(|s| s.ports.as_ref())
                            .is_some_and(|ports| {
                                ports
                                    .iter()
                                    .any(|p| p.name.as_deref() == Some(self.port.as_str()))
                            });
                    let pod_selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
                    if !has_port || pod_selector.is_empty() {
                        continue;
                    }
                    let labels = pod_selector
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",");
                    selected.extend(
                        pods.list(&ListParams::default().labels(&labels))
                            .await
                            .map(|l| l.items)
                            .unwrap_or_default(),
                    );
                }
                selected
            };
            for pod in selected {
                let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
                    continue;
                };
                let port = pod.spec.as_ref().and_then(|s| {
                    s.containers
                        .iter()
                        .flat_map(|c| c.ports.iter().flatten())
                        .find(|p| p.name.as_deref() == Some(self.port.as_str()))
                        .map(|p| p.container_port)
                });
                let Some(port) = port else { continue };
                let mut meta = std::collections::BTreeMap::new();
                meta.insert("__meta_kubernetes_namespace".to_string(), ns.clone());
                meta.insert(
                    "__meta_kubernetes_pod_name".to_string(),
                    pod.metadata.name.clone().unwrap_or_default(),
                );
                for (k, v) in pod.metadata.labels.clone().unwrap_or_default() {
                    meta.insert(format!("__meta_kubernetes_pod_label_{}", sanitized(&k)), v);
                }
                let mut labels = json!({"namespace": ns, "pod": meta["__meta_kubernetes_pod_name"]});
                for (sources, target) in &self.relabelings {
                    let value: Vec<String> = sources
                        .iter()
                        .map(|s| meta.get(s).cloned().unwrap_or_default())
                        .collect();
                    labels[target.as_str()] = json!(value.join(";"));
                }
                targets.push(json!({"targets": [format!("{ip}:{port}")], "labels": labels}));
            }
        }
        targets
    }
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", kind),
        plural,
    )
}

/// The one object of `kind` the release installed in `ns`.
async fn installed(client: &kube::Client, ns: &str, kind: &str, plural: &str) -> DynamicObject {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource(kind, plural));
    let mut list = api
        .list(&ListParams::default())
        .await
        .expect("list monitoring objects")
        .items;
    assert_eq!(list.len(), 1, "the chart installs one {kind}");
    list.remove(0)
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_shop_by_the_charts_monitors_and_fires_the_charts_alerts() {
    let shop = NodeShop::namespaces("mon").await;
    let (client, mode) = (&shop.client, &shop.mode);
    let (operator_ns, shop_ns) = (shop.operator_ns.clone(), shop.shop_ns.clone());
    shop.install_operator(&[
        "serviceMonitor.enabled=true",
        &format!("serviceMonitor.interval={SCRAPE_INTERVAL}"),
        "monitoring.podMonitor.enabled=true",
        &format!("monitoring.podMonitor.interval={SCRAPE_INTERVAL}"),
        "monitoring.prometheusRule.enabled=true",
        "monitoring.prometheusRule.for.deadLetters=0s",
        "monitoring.prometheusRule.for.lagGrowing=0s",
        "monitoring.prometheusRule.lagThreshold=5",
        "monitoring.dashboard.enabled=true",
    ]);

    // What a Prometheus Operator would make of the installed objects. Debian's Prometheus is built without
    // Kubernetes service discovery, so this test discovers the monitors' targets itself (their selectors,
    // namespaces, port names and relabelings) every second, into the files Prometheus' file discovery reads.
    let pod_monitor = installed(client, &operator_ns, "PodMonitor", "podmonitors").await;
    let service_monitor = installed(client, &operator_ns, "ServiceMonitor", "servicemonitors").await;
    let rule = installed(client, &operator_ns, "PrometheusRule", "prometheusrules").await;
    let monitors = vec![
        Monitor::read(&pod_monitor, true, &operator_ns),
        Monitor::read(&service_monitor, false, &operator_ns),
    ];
    assert_eq!(
        monitors[0].namespaces,
        std::slice::from_ref(&shop_ns),
        "the PodMonitor looks where the operator watches"
    );
    let targets_dir = std::env::temp_dir().join(names::unique("prometheus-targets"));
    std::fs::create_dir_all(&targets_dir).expect("targets directory");
    let config = json!({
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "1s"},
        "scrape_configs": monitors.iter().map(|m| m.scrape_job(&targets_dir)).collect::<Vec<_>>(),
    });
    let discovery = tokio::spawn({
        let (client, dir) = (client.clone(), targets_dir.clone());
        async move {
            loop {
                for monitor in &monitors {
                    let targets = monitor.discover(&client).await;
                    let file = dir.join(format!("{}.json", monitor.job));
                    let _ = std::fs::write(file.with_extension("tmp"), Value::from(targets).to_string());
                    let _ = std::fs::rename(file.with_extension("tmp"), &file);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let rules = json!({"groups": rule.data["spec"]["groups"]});
    let prometheus = Prometheus::start(&config, &rules);

    // The shop, with lag looked at every 5 s.
    let topic = shop
        .create_system(SYSTEM, 2, json!({"consumerLag": {"intervalSeconds": 5}}))
        .await;
    let systems = shop.systems();
    shop.ready(SYSTEM).await;

    // Every service pod and the operator are scraped, by the monitors' selectors and port names.
    wait::until_ok("four targets up", READY_WITHIN, || async {
        let data = prometheus.api("targets", &[]).await?;
        let active = data["activeTargets"].as_array().cloned().unwrap_or_default();
        let up: Vec<String> = active
            .iter()
            .filter(|t| t["health"] == "up")
            .map(|t| t["labels"]["service"].as_str().unwrap_or("operator").to_string())
            .collect();
        let mut services = up.clone();
        services.sort();
        (services == ["invoicing", "operator", "order", "shipping"])
            .then_some(())
            .ok_or(format!(
                "up: {up:?}; all: {:?}",
                active
                    .iter()
                    .map(|t| (&t["labels"], &t["health"], &t["lastError"]))
                    .collect::<Vec<_>>()
            ))
    })
    .await;
    let ready = format!(
        r#"ordersystem_operator_condition{{namespace="{shop_ns}",name="{SYSTEM}",type="Ready",status="True"}}"#
    );
    wait::until_ok(
        "the Ready condition scraped with the OrderSystem's labels",
        READY_WITHIN,
        || async {
            let samples = prometheus.query(&ready).await?;
            (samples.len() == 1).then_some(()).ok_or(format!("{samples:?}"))
        },
    )
    .await;
    let builds = prometheus
        .query(&format!(
            r#"ordersystem_build_info{{namespace="{shop_ns}",ordersystem="{SYSTEM}"}}"#
        ))
        .await
        .expect("build_info");
    assert_eq!(builds.len(), 3, "one build_info per service pod: {builds:?}");

    // The dashboard's queries are valid and find the shop (the ones over rates need orders first).
    let order = mode
        .service_of(client, &shop_ns, &child_name(SYSTEM, ShopService::Order))
        .await;
    ordersystem_e2e::shop::place_orders(&order, 0..20).await;
    let dashboard: Value = serde_json::from_str(include_str!(
        "../../charts/ordersystem-operator/files/dashboard.json"
    ))
    .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("an expr")
                .replace("$namespace", &shop_ns)
        })
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    for expr in &exprs {
        let samples = prometheus
            .query(expr)
            .await
            .unwrap_or_else(|e| panic!("{expr}: {e}"));
        eprintln!("dashboard: {} series for {expr}", samples.len());
    }
    // A poison event: both consumers set it aside, and the dead-letter alert fires for each.
    kafka::produce(
        &env::kafka_bootstrap(),
        &topic,
        "poison",
        b"this is not an order event",
    )
    .await;
    for service in ["invoicing", "shipping"] {
        let alert = prometheus
            .wait_firing(
                "OrderSystemDeadLetters",
                &[
                    ("namespace", &shop_ns),
                    ("ordersystem", SYSTEM),
                    ("service", service),
                    ("reason", "Undecodable"),
                ],
            )
            .await;
        eprintln!("firing: {}", alert["annotations"]["summary"]);
    }

    // Every panel finds the shop now, except those that show trouble this shop has not had.
    let quiet = |e: &str| e.contains(r#"status="False""#) || e.contains("reconcile_failures");
    wait::until_ok("every dashboard panel finds the shop", READY_WITHIN, || async {
        for expr in exprs.iter().filter(|e| !quiet(e)) {
            if prometheus.query(expr).await?.is_empty() {
                return Err(format!("no data yet for {expr}"));
            }
        }
        Ok(())
    })
    .await;

    // Invoicing stopped while orders flow: its lag grows past the threshold and the lag alert fires.
    systems
        .patch(
            SYSTEM,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"invoicing": {"replicas": 0}}})),
        )
        .await
        .expect("stop invoicing");
    let flowing = tokio::spawn(async move {
        for n in 100.. {
            let _ = order.place_order(n).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let alert = prometheus
        .wait_firing(
            "OrderSystemConsumerLagGrowing",
            &[
                ("namespace", &shop_ns),
                ("name", SYSTEM),
                ("service", "invoicing"),
            ],
        )
        .await;
    flowing.abort();
    eprintln!("firing: {}", alert["annotations"]["summary"]);
    let shipping_lag = prometheus
        .query(&format!(
            r#"ordersystem_operator_consumer_lag{{namespace="{shop_ns}",name="{SYSTEM}",service="shipping"}}"#
        ))
        .await
        .expect("shipping lag");
    assert_eq!(shipping_lag.len(), 1, "{shipping_lag:?}");

    discovery.abort();
    let _ = std::fs::remove_dir_all(&targets_dir);
    shop.delete_and_uninstall(SYSTEM).await;
}
