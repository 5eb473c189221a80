//! The chart's upgrade path, for real against the local API server: Helm installs the CRDs in `crds/` only
//! on `helm install` and never changes them on `helm upgrade`, so an upgrade is `kubectl apply
//! --server-side --force-conflicts -f crds/` first, then `helm upgrade` (charts/ordersystem-operator/README.md).
//!
//! The previous release is simulated with a copy of the chart whose `crds/` holds the current CRD minus
//! `spec.paused`; the next release is a copy with the current CRD and a bumped chart version. Both CRDs get a
//! group of their own (`<unique>.upgrade-test.ordersystem.io`), so the shared `ordersystems.ordersystem.io`
//! that other tests use is never touched. The operator's pod stays Pending (no node runs it): this test is
//! about what Helm and the API server do, not about the operator.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use ordersystem_e2e::cluster::create_namespace;
use ordersystem_e2e::{names, wait};
use serde_json::{Value, json};

/// The field the previous release's CRD lacks.
const NEW_FIELD: &str = "paused";
const MANAGER: &str = "ordersystem-chart-upgrade-test";
const TIMEOUT: Duration = Duration::from_secs(30);

/// A tool from `PATH` (`. /tmp/ordersystem/env` puts helm and kubectl there).
fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{name} is not on PATH; `. /tmp/ordersystem/env` adds the local control plane's tools")
        })
}

/// Runs `program args`, returns its stdout; panics with its stderr when it fails.
fn run(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{} {} failed ({}):\n{stdout}\n{}",
        program.display(),
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create chart copy directory");
    for entry in std::fs::read_dir(from).expect("read chart directory") {
        let entry = entry.expect("chart directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy chart file");
        }
    }
}

/// The operator's CRD under `group`; without [`NEW_FIELD`] in `spec` when `previous`.
fn test_crd(group: &str, previous: bool) -> Value {
    let mut crd = serde_json::to_value(ordersystem_api::crd::crd()).expect("CRD as JSON");
    let plural = crd["spec"]["names"]["plural"]
        .as_str()
        .expect("spec.names.plural")
        .to_owned();
    crd["metadata"] = json!({"name": format!("{plural}.{group}")});
    crd["spec"]["group"] = json!(group);
    for version in crd["spec"]["versions"].as_array_mut().expect("spec.versions") {
        let spec = &mut version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        assert!(
            spec.get(NEW_FIELD).is_some(),
            "the current CRD has spec.{NEW_FIELD}"
        );
        if previous {
            spec.as_object_mut().expect("spec properties").remove(NEW_FIELD);
        }
    }
    crd
}

/// A copy of the chart at `dir` with `crd` as its only CRD and `version` as its chart version.
fn chart_copy(dir: &Path, crd: &Value, version: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/ordersystem-operator");
    let chart = dir.join("ordersystem-operator");
    copy_dir(&source, &chart);
    let crds = chart.join("crds");
    std::fs::remove_dir_all(&crds).expect("remove the chart's CRDs");
    std::fs::create_dir(&crds).expect("create crds/");
    // JSON is YAML: both helm and kubectl read it from a .yaml file.
    let body = serde_json::to_string_pretty(crd).expect("CRD as JSON");
    std::fs::write(crds.join("crd.yaml"), body).expect("write the test CRD");
    let chart_yaml = chart.join("Chart.yaml");
    let meta = std::fs::read_to_string(&chart_yaml).expect("read Chart.yaml");
    let meta: String = meta
        .lines()
        .map(|line| {
            if line.starts_with("version:") {
                format!("version: {version}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(&chart_yaml, meta).expect("write Chart.yaml");
    chart
}

/// The chart's version and the next patch version.
fn chart_versions() -> (String, String) {
    let meta = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/ordersystem-operator/Chart.yaml"),
    )
    .expect("read Chart.yaml");
    let version = meta
        .lines()
        .find_map(|line| line.strip_prefix("version:"))
        .expect("Chart.yaml has a version")
        .trim()
        .trim_matches('"')
        .to_owned();
    let parts: Vec<u64> = version
        .split('.')
        .map(|p| p.parse().expect("chart version is major.minor.patch"))
        .collect();
    assert_eq!(parts.len(), 3, "chart version {version} is major.minor.patch");
    let next = format!("{}.{}.{}", parts[0], parts[1], parts[2] + 1);
    (version, next)
}

fn has_new_field(crd: &CustomResourceDefinition) -> bool {
    let crd = serde_json::to_value(crd).expect("CRD as JSON");
    crd["spec"]["versions"]
        .as_array()
        .expect("spec.versions")
        .iter()
        .all(|v| {
            v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
                .get(NEW_FIELD)
                .is_some()
        })
}

fn established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
}

/// `(revision, status, chart)` of every revision of the release, oldest first.
fn history(helm: &Path, release: &str, ns: &str) -> Vec<(u64, String, String)> {
    let out = run(helm, &["history", release, "-n", ns, "-o", "json"]);
    let entries: Vec<Value> = serde_json::from_str(&out).expect("helm history -o json");
    entries
        .iter()
        .map(|e| {
            (
                e["revision"].as_u64().expect("revision"),
                e["status"].as_str().expect("status").to_owned(),
                e["chart"].as_str().expect("chart").to_owned(),
            )
        })
        .collect()
}

/// Removes the release, its namespace, the test CRD and the chart copies, also when the test fails.
struct Cleanup {
    helm: PathBuf,
    kubectl: PathBuf,
    release: String,
    ns: String,
    crd: String,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let quiet = |program: &Path, args: &[&str]| {
            let _ = Command::new(program).args(args).output();
        };
        // Without the chart's uninstall check: its Job's pod, like the operator's, would never leave
        // Pending in this namespace, which no node serves.
        quiet(
            &self.helm,
            &["uninstall", &self.release, "-n", &self.ns, "--no-hooks"],
        );
        quiet(
            &self.kubectl,
            &[
                "delete",
                "namespace",
                &self.ns,
                "--wait=false",
                "--ignore-not-found",
            ],
        );
        quiet(
            &self.kubectl,
            &["delete", "crd", &self.crd, "--wait=false", "--ignore-not-found"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn helm_upgrade_after_server_side_crd_apply_serves_the_new_schema_field() {
    let helm = tool("helm");
    let kubectl = tool("kubectl");
    ordersystem_e2e::env::require(ordersystem_e2e::kube::KUBECONFIG);
    let client = ordersystem_e2e::kube::client().await;

    let ns = names::unique("chart-upgrade");
    let release = names::unique("upgrade");
    let group = format!("{}.upgrade-test.ordersystem.io", names::unique("crd"));
    let old_crd = test_crd(&group, true);
    let new_crd = test_crd(&group, false);
    let crd_name = new_crd["metadata"]["name"].as_str().expect("CRD name").to_owned();
    let version = new_crd["spec"]["versions"][0]["name"]
        .as_str()
        .expect("served version")
        .to_owned();
    let kind = new_crd["spec"]["names"]["kind"]
        .as_str()
        .expect("kind")
        .to_owned();

    let dir = std::env::temp_dir().join(&ns);
    let _cleanup = Cleanup {
        helm: helm.clone(),
        kubectl: kubectl.clone(),
        release: release.clone(),
        ns: ns.clone(),
        crd: crd_name.clone(),
        dir: dir.clone(),
    };
    let (old_version, new_version) = chart_versions();
    let old_chart = chart_copy(&dir.join("previous"), &old_crd, &old_version);
    let new_chart = chart_copy(&dir.join("next"), &new_crd, &new_version);
    let old_chart = old_chart.to_str().expect("UTF-8 path");
    let new_chart = new_chart.to_str().expect("UTF-8 path");
    let watch = format!("watchNamespace={ns}");

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let read_crd = || async {
        let crd = crds.get(&crd_name).await.map_err(|e| e.to_string())?;
        if established(&crd) {
            Ok(crd)
        } else {
            Err(format!("not Established: {:?}", crd.status))
        }
    };

    // The namespace is made here, not by helm's --create-namespace, so that it is restricted like every
    // test namespace; without the node's annotations, the operator's pod never leaves Pending.
    create_namespace(&client, &ns, json!({})).await;
    // The previous release: helm install creates the CRD from crds/, without the field.
    run(
        &helm,
        &["install", &release, old_chart, "-n", &ns, "--set", &watch],
    );
    // The chart's pod is admitted there: the restricted profile allows it (the ReplicaSet could not create
    // it otherwise).
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait::until_ok(
        "the operator's pod in the restricted namespace",
        TIMEOUT,
        || async {
            let list = pods.list(&Default::default()).await.map_err(|e| e.to_string())?;
            (!list.items.is_empty()).then_some(()).ok_or("no pod".to_string())
        },
    )
    .await;
    let crd = wait::until_ok("the previous release's CRD to be Established", TIMEOUT, read_crd).await;
    assert!(
        !has_new_field(&crd),
        "the previous release's CRD lacks spec.{NEW_FIELD}"
    );

    let gvk = GroupVersionKind::gvk(&group, &version, &kind);
    let objects: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ApiResource::from_gvk(&gvk));
    let object = json!({
        "apiVersion": format!("{group}/{version}"),
        "kind": kind,
        "metadata": {"name": "shop"},
        "spec": {
            "kafka": {"bootstrapServers": "kafka.kafka.svc:9092", "topic": {"name": "orders", "partitions": 1}},
            "postgres": {"adminSecretRef": {"name": "pg-admin"}},
            NEW_FIELD: true,
        }
    });
    let strict = PatchParams::apply(MANAGER).validation_strict();
    let rejected = objects
        .patch("shop", &strict, &Patch::Apply(&object))
        .await
        .expect_err("the previous schema rejects an unknown field under strict validation");
    assert!(
        rejected.to_string().contains(NEW_FIELD),
        "rejected for the unknown field spec.{NEW_FIELD}: {rejected}"
    );

    // helm upgrade alone: the release moves on, the CRD does not.
    run(
        &helm,
        &["upgrade", &release, new_chart, "-n", &ns, "--set", &watch],
    );
    let crd = wait::until_ok("the CRD after a plain helm upgrade", TIMEOUT, read_crd).await;
    assert!(
        !has_new_field(&crd),
        "helm upgrade left the CRD alone: still without spec.{NEW_FIELD}"
    );

    // The documented upgrade: the CRDs server-side first, then helm upgrade. helm install created the CRD,
    // so helm owns `spec.versions`: without --force-conflicts the apply stops at that conflict.
    let new_crds = format!("{new_chart}/crds/");
    let plain = Command::new(&kubectl)
        .args(["apply", "--server-side", "-f", &new_crds])
        .output()
        .expect("run kubectl");
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(
        !plain.status.success() && stderr.contains(r#"conflict with "helm""#),
        "a server-side apply over helm's CRD without --force-conflicts conflicts: {stderr}"
    );
    run(
        &kubectl,
        &["apply", "--server-side", "--force-conflicts", "-f", &new_crds],
    );
    run(
        &helm,
        &["upgrade", &release, new_chart, "-n", &ns, "--set", &watch],
    );
    let crd = wait::until_ok("the upgraded CRD to be Established", TIMEOUT, read_crd).await;
    assert!(has_new_field(&crd), "the upgraded CRD has spec.{NEW_FIELD}");

    // The API server serves the new schema: the field is accepted under strict validation and kept.
    let stored = wait::until_ok("an object with the new field to be accepted", TIMEOUT, || async {
        let applied = objects
            .patch("shop", &strict, &Patch::Apply(&object))
            .await
            .map_err(|e| e.to_string())?;
        Ok(applied)
    })
    .await;
    assert_eq!(
        stored.data["spec"][NEW_FIELD],
        json!(true),
        "spec.{NEW_FIELD} is stored, not pruned: {:?}",
        stored.data
    );
    let read = objects.get("shop").await.expect("read the object back");
    assert_eq!(
        read.data["spec"][NEW_FIELD],
        json!(true),
        "spec.{NEW_FIELD} read back"
    );

    let chart = |v: &str| format!("ordersystem-operator-{v}");
    assert_eq!(
        history(&helm, &release, &ns),
        vec![
            (1, "superseded".to_owned(), chart(&old_version)),
            (2, "superseded".to_owned(), chart(&new_version)),
            (3, "deployed".to_owned(), chart(&new_version)),
        ],
        "install, plain upgrade, documented upgrade"
    );
}
