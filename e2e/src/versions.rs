//! The pinned versions of `e2e/infra/versions.env`, and the Kubernetes minor the workspace's k8s-openapi
//! feature was compiled for. Tests compare them, so the control-plane build, k8s-openapi and the kind node
//! image cannot drift apart.

use std::collections::BTreeMap;

/// `e2e/infra/versions.env`, embedded at compile time.
pub const VERSIONS_ENV: &str = include_str!("../infra/versions.env");

/// The `KEY=value` pairs of `versions.env`.
pub fn pinned() -> BTreeMap<String, String> {
    VERSIONS_ENV
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The minor of a version string such as `v1.36.3` or `1.36`.
pub fn minor_of(version: &str) -> Option<u32> {
    version.trim_start_matches('v').split('.').nth(1)?.parse().ok()
}

/// The Kubernetes minor selected by the k8s-openapi feature this crate was built with.
pub fn compiled_kubernetes_minor() -> u32 {
    k8s_openapi::k8s_if_1_33! { return 33; }
    k8s_openapi::k8s_if_1_34! { return 34; }
    k8s_openapi::k8s_if_1_35! { return 35; }
    k8s_openapi::k8s_if_1_36! { return 36; }
    k8s_openapi::k8s_if_1_37! { return 37; }
    #[allow(unreachable_code)]
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_is_read_from_tags_and_plain_versions() {
        assert_eq!(minor_of("v1.36.3"), Some(36));
        assert_eq!(minor_of("1.37"), Some(37));
        assert_eq!(minor_of("garbage"), None);
    }
}
