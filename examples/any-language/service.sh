#!/usr/bin/env bash
# any-language: a slugway service without the Go SDK. It registers itself through the
# plain Kubernetes REST API with curl, exactly as a Python, Node or Ruby service would:
#
#   1. who am I?            POST  selfsubjectreviews (authentication.k8s.io/v1)
#   2. claim the slug       POST  serviceaccounts.slugway.io (409: GET it and compare spec.owner)
#   3. register             POST  instances (409: PATCH it, application/merge-patch+json)
#   4. stay alive           PATCH instances/<name>/status {"status":{"lastHeartbeat":...}} every TTL/3
#   5. on SIGTERM/SIGINT    DELETE instances/<name>
#
# In a pod it uses the mounted service account token and CA. Out of cluster, point it at
# an apiserver with KUBE_API plus TOKEN_FILE, or CLIENT_CERT/CLIENT_KEY, and CA_FILE.
# It serves GET /<slug>/hello and /healthz with python3's http.server when python3 exists.
#
# Environment (all optional but SELF_URL):
#   SELF_URL       where this service is reachable, e.g. http://$(POD_IP):9312
#   SLUG           default any-language;  DISPLAY_NAME default "Any Language"
#   LISTEN_PORT    default 9312; "" serves nothing (registration only)
#   TTL_SECONDS    heartbeat TTL, default 30 (at least 1)
#   POD_NAME, POD_NAMESPACE, POD_UID   the downward API; POD_NAMESPACE falls back to the
#                  mounted namespace file, then "default"
#   KUBE_API       default https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
#   TOKEN_FILE     default /var/run/secrets/kubernetes.io/serviceaccount/token
#   CA_FILE        default /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
#   CLIENT_CERT, CLIENT_KEY   a client certificate instead of a token
set -euo pipefail

SA_DIR=/var/run/secrets/kubernetes.io/serviceaccount
SLUG=${SLUG:-any-language}
DISPLAY_NAME=${DISPLAY_NAME:-Any Language}
LISTEN_PORT=${LISTEN_PORT-9312}
TTL_SECONDS=${TTL_SECONDS:-30}
SELF_URL=${SELF_URL:?set SELF_URL to this service\'s URL, e.g. http://\$(POD_IP):9312 from the downward API}
NAMESPACE=${POD_NAMESPACE:-$(cat "$SA_DIR/namespace" 2>/dev/null || echo default)}
if [[ -z ${KUBE_API:-} ]]; then
  host=${KUBERNETES_SERVICE_HOST:?not in a pod: set KUBE_API to the apiserver URL, e.g. https://127.0.0.1:6443}
  [[ $host == *:* ]] && host="[$host]" # IPv6
  KUBE_API=https://$host:${KUBERNETES_SERVICE_PORT:-443}
fi
TOKEN_FILE=${TOKEN_FILE-$SA_DIR/token}
CA_FILE=${CA_FILE:-$SA_DIR/ca.crt}
CLIENT_CERT=${CLIENT_CERT:-}
CLIENT_KEY=${CLIENT_KEY:-}

log() { printf '%s any-language: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }

for v in "$SLUG" "$DISPLAY_NAME" "$SELF_URL" "${POD_NAME:-}" "${POD_UID:-}" "$NAMESPACE"; do
  case $v in *'"'* | *\\*) die "quotes and backslashes are not allowed in the settings: $v" ;; esac
done
if [[ -z $CLIENT_CERT && ! -r $TOKEN_FILE ]]; then
  die "no credentials: $TOKEN_FILE is not readable (mount the service account token) and CLIENT_CERT is not set"
fi
[[ $TTL_SECONDS =~ ^[1-9][0-9]*$ ]] || die "TTL_SECONDS must be a whole number of seconds, at least 1"

# api METHOD PATH [CONTENT_TYPE BODY]: one request. Sets $CODE (the HTTP status, 000 when
# no answer came) and $BODY. curl retries what is worth retrying (connection refused,
# timeouts, 429, 5xx) with backoff.
BODY_FILE=$(mktemp)
listener=""
cleanup() {
  if [[ -n $listener ]]; then kill "$listener" 2>/dev/null || true; fi
  rm -f "$BODY_FILE"
}
trap cleanup EXIT
api() {
  local method=$1 path=$2 ctype=${3:-} body=${4:-}
  local args=(-sS -X "$method" --cacert "$CA_FILE" -o "$BODY_FILE" -w '%{http_code}'
    --retry 6 --retry-connrefused --retry-max-time 60 --max-time 15 -A slugway-any-language/1)
  if [[ -n $CLIENT_CERT ]]; then
    args+=(--cert "$CLIENT_CERT" --key "$CLIENT_KEY")
  else
    # Read the token on every call: the kubelet rotates it.
    args+=(-H "Authorization: Bearer $(cat "$TOKEN_FILE")")
  fi
  if [[ -n $ctype ]]; then
    args+=(-H "Content-Type: $ctype" --data-binary "$body")
  fi
  : >"$BODY_FILE"
  CODE=$(curl "${args[@]}" "$KUBE_API$path") || CODE=000
  BODY=$(cat "$BODY_FILE")
}

# field NAME: the first "NAME": "value" in the JSON on stdin.
field() { sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" | head -n1; }

SLUGS=/apis/slugway.io/v1alpha1/serviceaccounts
INSTANCES=/apis/slugway.io/v1alpha1/namespaces/$NAMESPACE/instances

if [[ -n ${POD_NAME:-} ]]; then
  NAME=$SLUG-$POD_NAME
else
  NAME=$SLUG-$(printf '%s' "${SELF_URL%/}" | sha256sum | cut -c1-10)
fi
NAME=${NAME:0:63}

# 1. Who am I? The slug's owner must be exactly this username.
api POST /apis/authentication.k8s.io/v1/selfsubjectreviews application/json \
  '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}'
[[ $CODE == 201 ]] || die "SelfSubjectReview failed ($CODE): $BODY"
ME=$(field username <<<"$BODY")
[[ -n $ME ]] || die "SelfSubjectReview returned no username: $BODY"
log "I am $ME"

# 2. Claim the slug. spec.owner is left empty: the admission webhook fills it with the caller.
api POST "$SLUGS" application/json \
  "{\"apiVersion\":\"slugway.io/v1alpha1\",\"kind\":\"ServiceAccount\",\"metadata\":{\"name\":\"$SLUG\"},\"spec\":{\"displayName\":\"$DISPLAY_NAME\"}}"
case $CODE in
  201) log "claimed slug $SLUG" ;;
  409)
    api GET "$SLUGS/$SLUG"
    [[ $CODE == 200 ]] || die "reading slug $SLUG failed ($CODE): $BODY"
    owner=$(field owner <<<"$BODY")
    [[ $owner == "$ME" ]] || die "slug \"$SLUG\" is owned by \"$owner\", not by \"$ME\": pick another SLUG, or ask the owner or a slugway admin to transfer it"
    log "slug $SLUG is already mine" ;;
  *) die "claiming slug $SLUG failed ($CODE): $BODY" ;;
esac

owner_refs=""
if [[ -n ${POD_NAME:-} && -n ${POD_UID:-} ]]; then
  # The garbage collector deletes the Instance with its pod, even if we never deregister.
  owner_refs=",\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"name\":\"$POD_NAME\",\"uid\":\"$POD_UID\",\"blockOwnerDeletion\":false}]"
fi
meta="\"name\":\"$NAME\",\"labels\":{\"slugway.io/slug\":\"$SLUG\",\"app.kubernetes.io/managed-by\":\"any-language\"}$owner_refs"
spec="{\"slug\":\"$SLUG\",\"url\":\"$SELF_URL\",\"healthCheck\":{\"type\":\"heartbeat\",\"ttl\":\"${TTL_SECONDS}s\"}}"

# 3. Register: create the Instance, or patch the one a previous run left (same name).
register() {
  api POST "$INSTANCES" application/json \
    "{\"apiVersion\":\"slugway.io/v1alpha1\",\"kind\":\"Instance\",\"metadata\":{$meta},\"spec\":$spec}"
  case $CODE in
    201) log "created instance $NAMESPACE/$NAME" ;;
    409)
      api PATCH "$INSTANCES/$NAME" application/merge-patch+json "{\"metadata\":{$meta},\"spec\":$spec}"
      [[ $CODE == 200 ]] || { log "updating instance $NAME failed ($CODE): $BODY"; return 1; }
      log "updated instance $NAMESPACE/$NAME" ;;
    *) log "registering instance $NAME failed ($CODE): $BODY"; return 1 ;;
  esac
}

# 4. Heartbeat: one merge patch of the status subresource holding only lastHeartbeat.
beat() {
  api PATCH "$INSTANCES/$NAME/status" application/merge-patch+json \
    "{\"status\":{\"lastHeartbeat\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}}"
  case $CODE in
    200) ;;
    404) log "instance $NAME is gone; registering again"; register && beat ;;
    *) log "heartbeat failed ($CODE): $BODY; will retry" ;;
  esac
}

stopping=""
# 5. Deregister on the way out.
deregister() {
  stopping=1
  api DELETE "$INSTANCES/$NAME"
  case $CODE in
    200 | 202 | 404) log "deregistered $NAMESPACE/$NAME" ;;
    *) log "deregistering failed ($CODE): $BODY" ;;
  esac
  exit 0 # the EXIT trap stops the listener
}
trap deregister TERM INT

if [[ -n $LISTEN_PORT ]] && command -v python3 >/dev/null; then
  SLUG=$SLUG LISTEN_PORT=$LISTEN_PORT python3 -c '
import json, os, http.server
slug = os.environ["SLUG"]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/" + slug + "/hello":
            body, ctype = json.dumps({"hello": "world"}).encode(), "application/json"
        elif self.path == "/healthz":
            body, ctype = b"ok\n", "text/plain"
        else:
            self.send_error(404); return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("", int(os.environ["LISTEN_PORT"])), H).serve_forever()
' &
  listener=$!
  # Register only once we answer: the proxy may route here as soon as we are Healthy.
  for _ in $(seq 50); do
    curl -fsS -o /dev/null "http://127.0.0.1:$LISTEN_PORT/healthz" 2>/dev/null && break
    kill -0 "$listener" 2>/dev/null || die "the listener on :$LISTEN_PORT exited (port in use?)"
    sleep 0.1
  done
  log "listening on :$LISTEN_PORT"
fi

register || die "cannot register; giving up"
beat
log "registered $SELF_URL as $NAMESPACE/$NAME (slug $SLUG, heartbeat TTL ${TTL_SECONDS}s)"

# Renew every TTL/3, with ±10% jitter so that replicas do not beat in step.
period_ms=$((TTL_SECONDS * 1000 / 3))
while [[ -z $stopping ]]; do
  ms=$((period_ms * (90 + RANDOM % 21) / 100))
  sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))" &
  wait $! || true
  beat
done
