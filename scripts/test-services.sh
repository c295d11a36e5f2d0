#!/usr/bin/env bash
# Brings up the real services the e2e tests run against: a Docker engine, a CNCF distribution
# registry with htpasswd auth on 127.0.0.1:5000, and a local busybox base image (no image can be
# pulled from Docker Hub on CI/dev machines, so every test image builds FROM it or FROM scratch).
# Idempotent: anything already answering is left alone. Debian, run as root.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${DEPLOYBOT_TEST_STATE_DIR:-$REPO_ROOT/.state}"
REGISTRY_ADDR="127.0.0.1:5000"
REGISTRY_USER="deploybot"
REGISTRY_PASSWORD="deploybot-test-pw"
BASE_IMAGE="deploybot-test/busybox:latest"
DOCKER_SOCK="/var/run/docker.sock"

fail() { echo "test-services: ERROR: $*" >&2; exit 1; }
say() { echo "test-services: $*" >&2; }

[ "$(id -u)" = 0 ] || fail "must run as root (it installs packages and starts dockerd)"
mkdir -p "$STATE_DIR"

# --- packages ---------------------------------------------------------------------------------
# curl: this script's own probes and install-agent.sh; python3: the archive tests write zips with it.
PACKAGES=(docker.io docker-registry busybox-static apache2-utils git curl python3)
# Each scripts/test-services.d/*.sh may add to EXTRA_PACKAGES before the install and starts its
# own service afterwards (one file per service keeps them independent).
EXTRA_PACKAGES=()
PHASE=packages
for f in "$REPO_ROOT"/scripts/test-services.d/*.sh; do
  # shellcheck disable=SC1090
  [ -f "$f" ] && . "$f"
done
PACKAGES+=("${EXTRA_PACKAGES[@]}")
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  command -v apt-get >/dev/null || fail "apt-get not found: install ${missing[*]} by hand"
  apt-get update -qq || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]} failed"
fi

# --- dockerd ----------------------------------------------------------------------------------
docker_answers() { curl -fsS --max-time 2 --unix-socket "$DOCKER_SOCK" http://localhost/_ping >/dev/null 2>&1; }
if ! docker_answers; then
  say "starting dockerd (log: $STATE_DIR/dockerd.log)"
  # setsid + nohup: the engine must outlive this script and the shell that ran it.
  setsid nohup dockerd >"$STATE_DIR/dockerd.log" 2>&1 </dev/null &
  echo $! >"$STATE_DIR/dockerd.pid"
  for _ in $(seq 1 60); do
    docker_answers && break
    sleep 1
  done
  docker_answers || fail "dockerd did not answer on $DOCKER_SOCK within 60 s; see $STATE_DIR/dockerd.log"
fi
say "docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"

# --- registry ---------------------------------------------------------------------------------
registry_answers() {
  # /v2/ answers 401 without credentials and 200 with them: both prove it is up, 200 proves auth.
  curl -fsS --max-time 2 -u "$REGISTRY_USER:$REGISTRY_PASSWORD" "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1
}
if ! registry_answers; then
  if curl -sS --max-time 2 -o /dev/null "http://$REGISTRY_ADDR/v2/" 2>/dev/null; then
    fail "something answers on $REGISTRY_ADDR but refuses the test credentials; stop it first"
  fi
  mkdir -p "$STATE_DIR/registry/data"
  htpasswd -Bbn "$REGISTRY_USER" "$REGISTRY_PASSWORD" >"$STATE_DIR/registry/htpasswd" \
    || fail "htpasswd failed"
  cat >"$STATE_DIR/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE_DIR/registry/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
auth:
  htpasswd:
    realm: deploybot-test
    path: $STATE_DIR/registry/htpasswd
EOF
  say "starting docker-registry on $REGISTRY_ADDR (log: $STATE_DIR/registry.log)"
  setsid nohup docker-registry serve "$STATE_DIR/registry/config.yml" >"$STATE_DIR/registry.log" 2>&1 </dev/null &
  echo $! >"$STATE_DIR/registry.pid"
  for _ in $(seq 1 30); do
    registry_answers && break
    sleep 0.5
  done
  registry_answers || fail "registry did not answer on $REGISTRY_ADDR; see $STATE_DIR/registry.log"
fi
say "registry answers on $REGISTRY_ADDR with auth"

# --- base image -------------------------------------------------------------------------------
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  BUSYBOX="$(command -v busybox)" || fail "busybox not found"
  file -L "$BUSYBOX" 2>/dev/null | grep -q "statically linked" \
    || ldd "$BUSYBOX" 2>&1 | grep -q "not a dynamic executable" \
    || fail "$BUSYBOX is not static; install busybox-static"
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' EXIT
  mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/tmp" "$ctx/rootfs/www"
  cp "$BUSYBOX" "$ctx/rootfs/bin/busybox"
  # One symlink per applet, so `sh`, `sleep`, `cat` ... work in RUN and CMD.
  for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$ctx/rootfs/bin/$applet"
  done
  cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
CMD ["sh"]
EOF
  say "building $BASE_IMAGE"
  docker build -q -t "$BASE_IMAGE" "$ctx" >/dev/null || fail "building $BASE_IMAGE failed"
fi
docker run --rm "$BASE_IMAGE" sh -c 'busybox httpd --help >/dev/null 2>&1; echo ok' | grep -q ok \
  || fail "$BASE_IMAGE does not run sh"

# --- environment for the tests ----------------------------------------------------------------
ENV_FILE="$STATE_DIR/test-services.env"
cat >"$ENV_FILE" <<EOF
DEPLOYBOT_TEST_REGISTRY=$REGISTRY_ADDR
DEPLOYBOT_TEST_REGISTRY_USERNAME=$REGISTRY_USER
DEPLOYBOT_TEST_REGISTRY_PASSWORD=$REGISTRY_PASSWORD
EOF

# --- extra services (scripts/test-services.d) -------------------------------------------------
# Each file's services phase starts what it needs and appends its own lines to $ENV_FILE.
PHASE=services
for f in "$REPO_ROOT"/scripts/test-services.d/*.sh; do
  # shellcheck disable=SC1090
  [ -f "$f" ] && . "$f"
done
cat "$ENV_FILE"
say "ready (written to $ENV_FILE)"
