//! Control-plane tests of the node agent: the real etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler of `e2e/infra/control-plane.sh` (found through `KUBECONFIG`), with the agent binary as
//! a child process on its own Node. Each test has its own Node and namespace and prints the agent's and
//! the pods' logs when it fails.

mod node;
mod pods;
mod restarts;
mod support;
