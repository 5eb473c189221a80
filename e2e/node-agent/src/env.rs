//! A container's environment, resolved the way the kubelet does it.
//!
//! Order (later wins): the service variables (`KUBERNETES_SERVICE_HOST`/`_PORT`, pointing at the real API
//! server on the host because ClusterIPs do not route here), `envFrom`, then `env` in list order. `$(VAR)`
//! in `env[].value`, `command` and `args` expands to a variable defined *earlier*; `$$` is a literal `$`;
//! an unknown `$(VAR)` stays as written. Secrets and ConfigMaps are read from the pod's namespace; a
//! missing one is an error unless the reference is `optional`. This module reads, never writes.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, ObjectFieldSelector, Pod, Secret};
use kube::api::Api;
use tracing::warn;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read {kind} {name}")]
    Read {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{kind} {name} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("key {key} not found in {kind} {name}")]
    KeyNotFound {
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("unsupported fieldRef {path} in env var {var}")]
    UnsupportedField { var: String, path: String },
}

/// The pod facts that `fieldRef` can name.
#[derive(Debug, Clone)]
pub struct PodFacts {
    pub pod_ip: String,
    pub host_ip: String,
    pub service_host: String,
    pub service_port: u16,
}

/// Secrets and ConfigMaps of one namespace, each read at most once per resolution.
pub struct Sources {
    client: kube::Client,
    namespace: String,
    cache: HashMap<(&'static str, String), Option<BTreeMap<String, String>>>,
}

impl Sources {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_string(),
            cache: HashMap::new(),
        }
    }

    /// The string data of a Secret (`kind = "Secret"`) or ConfigMap, `None` if it does not exist.
    pub async fn data(
        &mut self,
        kind: &'static str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, Error> {
        let key = (kind, name.to_string());
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit.clone());
        }
        let err = |source| Error::Read {
            kind,
            name: name.to_string(),
            source,
        };
        let data = if kind == "Secret" {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            api.get_opt(name).await.map_err(err)?.map(|s| {
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect()
            })
        } else {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            api.get_opt(name)
                .await
                .map_err(err)?
                .map(|c| c.data.unwrap_or_default())
        };
        self.cache.insert(key, data.clone());
        Ok(data)
    }

    /// One key; `Ok(None)` when absent and `optional`.
    async fn key(
        &mut self,
        kind: &'static str,
        name: &str,
        key: &str,
        optional: bool,
    ) -> Result<Option<String>, Error> {
        match self.data(kind, name).await? {
            Some(data) => match data.get(key) {
                Some(value) => Ok(Some(value.clone())),
                None if optional => Ok(None),
                None => Err(Error::KeyNotFound {
                    kind,
                    name: name.into(),
                    key: key.into(),
                }),
            },
            None if optional => Ok(None),
            None => Err(Error::NotFound {
                kind,
                name: name.into(),
            }),
        }
    }
}

/// The environment of `container`, in definition order.
pub async fn resolve(
    sources: &mut Sources,
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
) -> Result<Vec<(String, String)>, Error> {
    let mut env = Env::default();
    env.set("KUBERNETES_SERVICE_HOST", facts.service_host.clone());
    env.set("KUBERNETES_SERVICE_PORT", facts.service_port.to_string());
    env.set("KUBERNETES_SERVICE_PORT_HTTPS", facts.service_port.to_string());
    let url = format!("tcp://{}:{}", facts.service_host, facts.service_port);
    env.set("KUBERNETES_PORT", url.clone());
    env.set("KUBERNETES_PORT_443_TCP", url);
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (kind, name, optional) = match (&from.secret_ref, &from.config_map_ref) {
            (Some(s), _) => ("Secret", s.name.clone(), s.optional.unwrap_or(false)),
            (None, Some(c)) => ("ConfigMap", c.name.clone(), c.optional.unwrap_or(false)),
            (None, None) => continue,
        };
        match sources.data(kind, &name).await? {
            Some(data) => data
                .into_iter()
                .for_each(|(k, v)| env.set(&format!("{prefix}{k}"), v)),
            None if optional => {}
            None => return Err(Error::NotFound { kind, name }),
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = value_of(sources, pod, var, facts, &env).await? {
            env.set(&var.name, value);
        }
    }
    Ok(env.vars)
}

/// Pods here share the host's network namespace, so a wildcard listen address (`0.0.0.0:<port>`) in an
/// env value would make every replica fight over one port: such values are rebound to the pod's own IP.
/// Returns the names of the variables that were rewritten, for the override log.
pub fn bind_wildcards_to_pod_ip(vars: &mut [(String, String)], pod_ip: &str) -> Vec<String> {
    let mut rewritten = Vec::new();
    for (name, value) in vars.iter_mut() {
        if let Some(port) = value.strip_prefix("0.0.0.0:")
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
        {
            *value = format!("{pod_ip}:{port}");
            rewritten.push(name.clone());
        }
    }
    rewritten
}

async fn value_of(
    sources: &mut Sources,
    pod: &Pod,
    var: &EnvVar,
    facts: &PodFacts,
    env: &Env,
) -> Result<Option<String>, Error> {
    let Some(from) = &var.value_from else {
        return Ok(Some(expand(var.value.as_deref().unwrap_or(""), &|name| {
            env.get(name)
        })));
    };
    if let Some(r) = &from.secret_key_ref {
        return sources
            .key("Secret", &r.name, &r.key, r.optional.unwrap_or(false))
            .await;
    }
    if let Some(r) = &from.config_map_key_ref {
        return sources
            .key("ConfigMap", &r.name, &r.key, r.optional.unwrap_or(false))
            .await;
    }
    if let Some(field) = &from.field_ref {
        return field_value(pod, field, facts)
            .map(Some)
            .ok_or_else(|| Error::UnsupportedField {
                var: var.name.clone(),
                path: field.field_path.clone(),
            });
    }
    // resourceFieldRef and fileKeyRef have no meaning for a host process.
    warn!(var = %var.name, "override: env var source not supported in local mode, variable left unset");
    Ok(None)
}

/// The downward-API value of `field`, `None` if the path is not supported.
pub fn field_value(pod: &Pod, field: &ObjectFieldSelector, facts: &PodFacts) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = field.field_path.as_str();
    let from_map = |map: &Option<BTreeMap<String, String>>, prefix: &str| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.podIPs" => Some(facts.pod_ip.clone()),
        "status.hostIP" | "status.hostIPs" => Some(facts.host_ip.clone()),
        _ => from_map(&meta.labels, "metadata.labels['")
            .or_else(|| from_map(&meta.annotations, "metadata.annotations['")),
    }
}

/// `$(VAR)` expansion with the kubelet's rules: `$$` → `$`, unknown references stay verbatim.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(reference) = after.strip_prefix('(')
            && let Some(close) = reference.find(')')
        {
            let name = &reference[..close];
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &reference[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// An ordered environment where setting an existing name replaces its value in place.
#[derive(Debug, Default)]
struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_string(), value)),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        (name == "POD_IP").then(|| "127.0.0.5".to_string())
    }

    #[test]
    fn wildcard_listen_addresses_are_rebound_to_the_pod_ip_and_nothing_else() {
        let mut vars = vec![
            ("LISTEN_ADDR".to_string(), "0.0.0.0:8080".to_string()),
            ("HTTP_ADDR".to_string(), "127.0.0.9:8080".to_string()),
            ("NOTE".to_string(), "0.0.0.0:port".to_string()),
        ];
        let rewritten = bind_wildcards_to_pod_ip(&mut vars, "127.66.0.4");
        assert_eq!(rewritten, vec!["LISTEN_ADDR".to_string()]);
        assert_eq!(vars[0].1, "127.66.0.4:8080");
        assert_eq!(vars[1].1, "127.0.0.9:8080");
        assert_eq!(vars[2].1, "0.0.0.0:port");
    }

    #[test]
    fn expand_replaces_known_references() {
        assert_eq!(expand("$(POD_IP):8080", &lookup), "127.0.0.5:8080");
    }

    #[test]
    fn expand_keeps_unknown_references_and_unescapes_double_dollar() {
        assert_eq!(
            expand("$(NOPE)-$$(POD_IP)-$x-$", &lookup),
            "$(NOPE)-$(POD_IP)-$x-$"
        );
    }

    #[test]
    fn field_refs_read_pod_metadata_and_labels() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "a"}},
            "spec": {"containers": [], "nodeName": "n1"},
        }))
        .expect("valid pod");
        let facts = PodFacts {
            pod_ip: "127.0.0.7".into(),
            host_ip: "127.0.0.1".into(),
            service_host: "127.0.0.1".into(),
            service_port: 6443,
        };
        let field = |path: &str| ObjectFieldSelector {
            field_path: path.into(),
            api_version: None,
        };
        assert_eq!(
            field_value(&pod, &field("metadata.name"), &facts).as_deref(),
            Some("p")
        );
        assert_eq!(
            field_value(&pod, &field("metadata.namespace"), &facts).as_deref(),
            Some("ns")
        );
        assert_eq!(
            field_value(&pod, &field("status.podIP"), &facts).as_deref(),
            Some("127.0.0.7")
        );
        assert_eq!(
            field_value(&pod, &field("spec.nodeName"), &facts).as_deref(),
            Some("n1")
        );
        assert_eq!(
            field_value(&pod, &field("metadata.labels['app']"), &facts).as_deref(),
            Some("a")
        );
        assert_eq!(field_value(&pod, &field("status.phase"), &facts), None);
    }
}
