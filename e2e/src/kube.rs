//! A kube client for the local control plane, from `KUBECONFIG` (see `ordersystem_testkit::env`).

use ordersystem_testkit::env;

/// `KUBECONFIG` of the local control plane (admin credentials).
pub const KUBECONFIG: &str = "KUBECONFIG";

/// A kube client for the local control plane, from `KUBECONFIG`.
pub async fn client() -> kube::Client {
    let path = env::require(KUBECONFIG);
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("cannot read kubeconfig {path}: {e}"));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("invalid kubeconfig {path}: {e}"));
    kube::Client::try_from(config).unwrap_or_else(|e| panic!("cannot build a client from {path}: {e}"))
}
