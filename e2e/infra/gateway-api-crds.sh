#!/usr/bin/env bash
# gateway-api-crds.sh: the Gateway API's standard CRDs (GatewayClass, Gateway, HTTPRoute, ReferenceGrant), as
# its Go module sigs.k8s.io/gateway-api publishes them (config/crd/standard at GATEWAY_API_VERSION), applied
# to the test bed's API server, so the HTTPRoutes an OrderSystem's spec.expose asks for are validated and
# stored for real. No Gateway controller runs here: nothing routes traffic by them.
# Usage: gateway-api-crds.sh [apply|dir]   (default apply; dir prints the directory holding the CRDs)
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" gateway-api-crds
module_crds "Gateway API" sigs.k8s.io/gateway-api "$GATEWAY_API_VERSION" config/crd/standard "${1:-apply}" \
  gateway.networking.k8s.io_{gatewayclasses,gateways,httproutes,referencegrants}.yaml
