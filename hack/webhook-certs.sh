#!/usr/bin/env bash
# Gives the slugway admission webhook a TLS certificate when slugway was installed with
# `kubectl apply -k config/default` and without cert-manager (the Helm chart does this
# by itself). It creates a CA and a serving certificate for the webhook Service, stores
# them in the Secret the controller mounts, and puts the CA into the caBundle of both
# webhook configurations. Re-running it keeps an existing certificate (pass --renew to
# replace it) and re-applies the caBundle.
#
#   hack/webhook-certs.sh [--renew] [namespace]     (default namespace: slugway-system)
#
# Needs openssl and kubectl (KUBECTL overrides which one).
set -euo pipefail

renew=false
if [ "${1:-}" = "--renew" ]; then renew=true; shift; fi
ns="${1:-slugway-system}"
kubectl="${KUBECTL:-kubectl}"
prefix="${SLUGWAY_PREFIX:-slugway-}"
svc="${prefix}webhook-service"
secret="${prefix}webhook-server-cert"
configs=("mutatingwebhookconfiguration/${prefix}mutating-webhook-configuration"
         "validatingwebhookconfiguration/${prefix}validating-webhook-configuration")
days="${CERT_DAYS:-3650}"

command -v openssl >/dev/null || { echo "webhook-certs: openssl is needed; install it, or use cert-manager (config/certmanager)" >&2; exit 1; }
for c in "${configs[@]}"; do
  "$kubectl" get "$c" -o name >/dev/null || { echo "webhook-certs: $c not found: run 'kubectl apply -k config/default' first" >&2; exit 1; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if ! $renew && "$kubectl" -n "$ns" get secret "$secret" -o jsonpath='{.data.ca\.crt}' 2>/dev/null | base64 -d > "$tmp/ca.crt" 2>/dev/null && [ -s "$tmp/ca.crt" ]; then
  echo "webhook-certs: keeping the certificate in secret $ns/$secret (--renew replaces it)" >&2
else
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
    -subj "/CN=slugway-webhook-ca" -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$svc.$ns.svc" -keyout "$tmp/tls.key" -out "$tmp/tls.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s,DNS:%s.%s,DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
    "$svc" "$svc" "$ns" "$svc" "$ns" "$svc" "$ns" > "$tmp/ext.cnf"
  openssl x509 -req -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial \
    -days "$days" -extfile "$tmp/ext.cnf" -out "$tmp/tls.crt" 2>/dev/null
  "$kubectl" -n "$ns" create secret generic "$secret" --type=kubernetes.io/tls \
    --from-file=tls.crt="$tmp/tls.crt" --from-file=tls.key="$tmp/tls.key" --from-file=ca.crt="$tmp/ca.crt" \
    --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
  echo "webhook-certs: wrote secret $ns/$secret for $svc.$ns.svc" >&2
fi

bundle="$(base64 < "$tmp/ca.crt" | tr -d '\n')"
for c in "${configs[@]}"; do
  n="$("$kubectl" get "$c" -o jsonpath='{range .webhooks[*]}x{end}')"
  patch="["
  for ((i = 0; i < ${#n}; i++)); do
    [ "$i" -gt 0 ] && patch+=","
    patch+="{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$bundle\"}"
  done
  patch+="]"
  "$kubectl" patch "$c" --type=json -p "$patch" >/dev/null
  echo "webhook-certs: set caBundle of $c" >&2
done
