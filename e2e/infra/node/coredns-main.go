// A CoreDNS with only the plugins the test node's Corefile uses (node.sh). No `forward`: nothing is ever
// asked of a resolver outside the machine. Built by build-node-bins.sh in a throwaway module that requires
// github.com/coredns/coredns at the version in versions.env.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func init() {
	// The same relative order as CoreDNS's own plugin.cfg: a plugin sees the effect of those after it.
	dnsserver.Directives = []string{
		"reload", "ready", "health", "errors", "log", "loadbalance", "cache", "hosts", "kubernetes",
	}
}

func main() {
	coremain.Run()
}
