//! The real node's guard (`node.sh guard-ruleset`) keeps the test bed's traffic on the machine. Proven without
//! sending anything off it: three network namespaces of this test play the host (with the guard, a bridge
//! and forwarding on), a pod on the bridge, and the world behind the host's "uplink", a veth. First, without
//! the guard, each path is shown to leak (so the checks below can fail); then, with the guard the node uses,
//! the same packets are dropped, counted by the guard, and never seen by the world. Beside it, `node.sh`
//! refuses what it does not own: a bridge it did not make, a port another process holds.

use std::process::{Child, Command};

const NODE_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/infra/node.sh");

/// The test's namespaces, deleted (with every link in them) on drop, and the listener it runs in one.
struct Netns {
    host: String,
    pod: String,
    world: String,
    listener: Option<Child>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = listener.kill();
            let _ = listener.wait();
        }
        for ns in [&self.host, &self.pod, &self.world]
            .into_iter()
            .filter(|n| !n.is_empty())
        {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `script` with bash; true when it exits 0.
fn run(script: &str) -> bool {
    let out = Command::new("bash").args(["-c", script]).output().expect("bash");
    out.status.success()
}

fn must(script: &str) -> String {
    let out = Command::new("bash")
        .args(["-eu", "-o", "pipefail", "-c", script])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{script}\nfailed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Packets an nftables named counter has seen in namespace `ns`.
fn counter(ns: &str, table: &str, name: &str) -> u64 {
    let listing = must(&format!("ip netns exec {ns} nft list counter {table} {name}"));
    listing
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {listing}"))
}

fn ping(ns: &str, address: &str, count: u32) -> bool {
    run(&format!(
        "ip netns exec {ns} busybox ping -c {count} -W 1 {address} >/dev/null 2>&1"
    ))
}

#[test]
fn the_guard_drops_and_counts_whatever_would_leave_through_the_uplink() {
    let id = std::process::id();
    let mut ns = Netns {
        host: format!("og-host-{id}"),
        pod: format!("og-pod-{id}"),
        world: format!("og-world-{id}"),
        listener: None,
    };
    let (host, pod, world) = (ns.host.clone(), ns.pod.clone(), ns.world.clone());
    let (host, pod, world) = (&host, &pod, &world);
    // Every link is created inside the test's namespaces; none ever exists in the machine's own.
    must(&format!(
        "for n in {host} {pod} {world}; do ip netns add $n; ip -n $n link set lo up; \
           ip netns exec $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; done
         ip link add uplink0 netns {host} type veth peer name eth0 netns {world}
         ip link add eth0 netns {pod} type veth peer name vpod netns {host}
         ip -n {host} link add osbr0 type bridge
         ip -n {host} link set vpod master osbr0
         ip -n {host} addr add 198.51.100.2/24 dev uplink0
         ip -n {host} addr add 10.244.0.1/24 dev osbr0
         ip -n {world} addr add 198.51.100.1/24 dev eth0
         ip -n {pod} addr add 10.244.0.5/24 dev eth0
         for l in uplink0 osbr0 vpod; do ip -n {host} link set $l up; done
         ip -n {world} link set eth0 up; ip -n {pod} link set eth0 up
         ip -n {host} route add default via 198.51.100.1
         ip netns exec {host} sysctl -qw net.ipv4.ip_forward=1
         # the pod is given a way out on purpose: the guard, not a missing route, must stop it
         ip -n {pod} route add default via 10.244.0.1
         ip -n {world} route add 10.244.0.0/24 via 198.51.100.2
         # the host sends the service range out of its uplink on purpose, for the output rule
         ip -n {host} route add 10.0.0.0/24 via 198.51.100.1
         ip netns exec {world} nft -f - <<'NFT'
table inet seen {{
  counter from_pods {{}}
  counter to_services {{}}
  chain prerouting {{
    type filter hook prerouting priority -300; policy accept;
    ip saddr 10.244.0.0/24 counter name from_pods
    ip daddr 10.0.0.0/24 counter name to_services
  }}
}}
NFT"
    ));

    // The host's "API server": a listener on every address, as a careless one would be.
    ns.listener = Some(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                host,
                "busybox",
                "nc",
                "-ll",
                "-p",
                "6443",
                "-e",
                "/bin/true",
            ])
            .spawn()
            .expect("listener"),
    );
    let api_from_world = format!("ip netns exec {world} busybox nc -w 1 198.51.100.2 6443 </dev/null");

    // Without the guard every path leaks: the checks below could fail.
    assert!(
        ping(pod, "198.51.100.1", 1),
        "without the guard a pod reaches the world (test set-up)"
    );
    assert!(
        (0..20).any(|_| run(&api_from_world) || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            false
        }),
        "without the guard the world reaches the host's port 6443 on its uplink address"
    );
    assert!(
        ping(world, "10.244.0.1", 1),
        "without the guard the world reaches the bridge address"
    );
    run(&format!(
        "ip netns exec {host} busybox ping -c 1 -W 1 10.0.0.7 >/dev/null 2>&1"
    ));
    let pods_seen = counter(world, "inet seen", "from_pods");
    let services_seen = counter(world, "inet seen", "to_services");
    assert!(
        pods_seen >= 1,
        "without the guard the world sees the pod's packets"
    );
    assert_eq!(
        services_seen, 1,
        "without the guard the host sends the service range out of its uplink"
    );

    must(&format!(
        "{NODE_SH} guard-ruleset uplink0 osbr0 | ip netns exec {host} nft -f -"
    ));

    // A pod toward the world: forwarded to the uplink, dropped and counted.
    assert!(
        !ping(pod, "198.51.100.1", 3),
        "with the guard a pod does not reach the world"
    );
    assert_eq!(counter(host, "inet ordersystem_guard", "forwarded_to_uplink"), 3);
    // The host itself sending a pod or service address out of its uplink (ping stops at the refused send).
    assert!(!run(&format!(
        "ip netns exec {host} busybox ping -c 1 -W 1 10.0.0.7 >/dev/null 2>&1"
    )));
    assert_eq!(
        counter(host, "inet ordersystem_guard", "test_ranges_off_bridge"),
        1
    );
    // The world toward the test bed: dropped on the way in, both to its addresses and to its ports.
    assert!(
        !ping(world, "10.244.0.1", 2),
        "with the guard the world does not reach the bridge address"
    );
    assert!(
        !run(&api_from_world),
        "with the guard the world does not reach the API server's port on the uplink address"
    );
    assert!(counter(host, "inet ordersystem_guard", "uplink_to_test_bed") >= 3);

    assert_eq!(
        counter(world, "inet seen", "from_pods"),
        pods_seen,
        "the world saw no packet from a pod once the guard was in place"
    );
    assert_eq!(
        counter(world, "inet seen", "to_services"),
        services_seen,
        "the world saw no packet for the service range once the guard was in place"
    );
    // Inside the bridge, everything still flows.
    must(&format!(
        "ip netns exec {pod} busybox ping -c 1 -W 1 10.244.0.1 >/dev/null"
    ));
}

#[test]
fn net_up_refuses_a_bridge_it_did_not_make() {
    // In a namespace of its own, with a state directory of its own: the machine's node is not touched.
    let ns = format!("og-taken-{}", std::process::id());
    let state = std::env::temp_dir().join(&ns);
    let _cleanup = Netns {
        host: ns.clone(),
        pod: String::new(),
        world: String::new(),
        listener: None,
    };
    must(&format!(
        "ip netns add {ns} && ip -n {ns} link add osbr0 type bridge"
    ));
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, NODE_SH, "net-up"])
        .env("ORDERSYSTEM_STATE", &state)
        .output()
        .expect("node.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "net-up must fail on a bridge it did not make"
    );
    assert!(
        stderr.contains("[node] ERROR: the bridge osbr0 exists but was not made by node.sh"),
        "the message names the component and the bridge: {stderr}"
    );
    let guard = Command::new("ip")
        .args(["netns", "exec", &ns, "nft", "list", "tables"])
        .output()
        .expect("nft");
    assert!(
        !String::from_utf8_lossy(&guard.stdout).contains("ordersystem_guard"),
        "nothing was set up before the refusal"
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// `node.sh start` refuses a port that another process holds, naming the component that needs it.
#[test]
fn start_refuses_a_port_another_process_holds_and_names_the_component() {
    // In a namespace of its own, where none of the machine's node's ports are bound: this test's listener
    // holds kube-proxy's health port there, and `node.sh check-ports` (the check start makes for each
    // component it starts) runs in it.
    let ns = format!("og-port-{}", std::process::id());
    let mut cleanup = Netns {
        host: ns.clone(),
        pod: String::new(),
        world: String::new(),
        listener: None,
    };
    must(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
    let check_ports = || {
        Command::new("ip")
            .args(["netns", "exec", &ns, NODE_SH, "check-ports"])
            .output()
            .expect("node.sh")
    };
    let free = check_ports();
    assert!(
        free.status.success(),
        "with nothing listening every port is free: {}",
        String::from_utf8_lossy(&free.stderr)
    );

    cleanup.listener = Some(
        Command::new("ip")
            .args(["netns", "exec", &ns, "busybox", "nc", "-ll", "-p", "10256"])
            .args(["-e", "/bin/true"])
            .spawn()
            .expect("listener"),
    );
    let listening = format!("ip netns exec {ns} bash -c 'exec 3<>/dev/tcp/127.0.0.1/10256'");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !run(&listening) {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener on 127.0.0.1:10256 never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let taken = check_ports();
    let stderr = String::from_utf8_lossy(&taken.stderr);
    assert!(!taken.status.success(), "a taken port fails the check");
    assert!(
        stderr.contains("[node] ERROR: port 127.0.0.1:10256, which the kube-proxy needs, is already in use"),
        "the message names the component and the port: {stderr}"
    );
}
