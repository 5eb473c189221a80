#!/usr/bin/env bash
# gateway-api-crds.sh: the Gateway API's standard CRDs (GatewayClass, Gateway, HTTPRoute, ReferenceGrant), as
# its Go module sigs.k8s.io/gateway-api publishes them (config/crd/standard at GATEWAY_API_VERSION), applied
# to the test bed's API server, so the HTTPRoutes an OrderSystem's spec.expose asks for are validated and
# stored for real. No Gateway controller runs here: nothing routes traffic by them.
# Usage: gateway-api-crds.sh [apply|dir]   (default apply; dir prints the directory holding the CRDs)
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" gateway-api-crds
MODULE=sigs.k8s.io/gateway-api

crd_dir() { echo "$(go_module_dir "$MODULE" "$GATEWAY_API_VERSION")/config/crd/standard"; }

case ${1:-apply} in
  dir) crd_dir ;;
  apply)
    dir=$(crd_dir)
    apply_crds "Gateway API $GATEWAY_API_VERSION" \
      "$dir"/gateway.networking.k8s.io_{gatewayclasses,gateways,httproutes,referencegrants}.yaml
    ;;
  *) die "usage: gateway-api-crds.sh [apply|dir]" ;;
esac
