#!/usr/bin/env bash
# Installs (or removes) the deploybot agent as a systemd service on a Debian/Ubuntu host, from
# the controller alone: no checkout of deploybot is needed on the host. The controller prints a
# ready command (`deploybot agents install-command`), which runs this script as served by it:
#
#   curl -fsSL -H @<(printf 'Authorization: Bearer %s\n' "$DEPLOYBOT_JOIN_TOKEN") \
#     https://deploy.example.com/v1/agents/dist/install-agent.sh |
#     sudo --preserve-env=DEPLOYBOT_JOIN_TOKEN bash -s -- --url https://deploy.example.com --labels builder
#   sudo bash install-agent.sh --uninstall [--purge]
#
# What it does: checks Docker (CLI or /var/run/docker.sock answering /_ping), Node >= 20.19, git
# and curl; fetches manifest.json, the bundled agent (one .mjs, no node_modules) and the unit from
# the controller's /v1/agents/dist/ and checks each file's sha256 against the manifest; puts the
# agent in /var/lib/deploybot-agent/releases/VERSION/ with the link `current` pointing at it (the
# state dir is the one place the hardened unit may write, so the agent can update itself the
# same way); links /opt/deploybot-agent/bin/node to the node it checked; writes
# /etc/deploybot/agent.env (0600); creates the `deploybot` system user in the `docker` group;
# installs deploybot-agent.service and the host proxy's units; daemon-reload, enable --now.
#
# Re-running it is safe: files are only rewritten when their content changes, the env file keeps
# its values (and any lines you added, e.g. DEPLOYBOT_REGISTRY_*) unless flags replace them, and
# the service is restarted only when something changed.
#
# Testing: --root DIR (or DEPLOYBOT_INSTALL_ROOT=DIR) prefixes every path written. When DIR is
# not /, no user is created, systemctl is not called (what would run is printed) and a missing
# Docker engine is only a warning. The controller is still asked for the files.
#
# Routing (apps with `domains` in apps.yaml): the agent drives a host proxy, HAProxy >= 2.6
# (Debian's `haproxy` package: apt-get install haproxy). The agent's unit has no privilege to bind
# 80/443, and HAProxy must outlive agent restarts, so the proxy gets units of its own:
# deploybot-proxy.service (HAProxy as the deploybot user with CAP_NET_BIND_SERVICE,
# Restart=always) and deploybot-proxy.path (starts it once the agent has written its first
# config, and at boot when there is one). They are installed and the .path unit enabled, with
# DEPLOYBOT_PROXY=external in the env file. --no-proxy (a host that serves no domains) installs
# neither and writes DEPLOYBOT_PROXY=off; a DEPLOYBOT_PROXY you set in the env file is kept.
# DEPLOYBOT_PROXY_HTTP_PORT / _HTTPS_PORT move the proxy off 80/443. Certificates and the route
# table live in /var/lib/deploybot-agent/proxy.
set -euo pipefail
umask 022

readonly PROG="install-agent"
readonly UNIT_NAME="deploybot-agent.service"
readonly PROXY_SERVICE="deploybot-proxy.service"
readonly PROXY_PATH="deploybot-proxy.path"
readonly HAPROXY_BIN="/usr/sbin/haproxy"
readonly MIN_HAPROXY="2.6"
readonly SERVICE_USER="deploybot"
readonly MIN_NODE="20.19.0"

say() { printf '%s: %s\n' "$PROG" "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

usage() {
  cat <<'USAGE'
Usage: install-agent.sh --url URL --join-token TOKEN [--labels L1,L2] [--hostname NAME]
                        [--no-proxy] [--no-start] [--root DIR]
       install-agent.sh --uninstall [--purge] [--root DIR]

  --url URL[,URL]    controller base URL (http:// or https://); several controllers (one
                     PostgreSQL database) comma-separated: the agent fails over between them
  --join-token TOK   the controller's DEPLOYBOT_JOIN_TOKEN (or set DEPLOYBOT_JOIN_TOKEN in the
                     environment, which keeps it out of the process list)
  --labels LIST      comma-separated labels, e.g. builder,region=eu ('' clears them)
  --hostname NAME    host name jobs target (default: the OS hostname)
  --no-proxy         no host proxy (HAProxy units) on this host: apps with domains cannot run here
  --no-start         install and enable, but do not start (or restart) the service
  --uninstall        stop, disable and remove the service, /opt/deploybot-agent and the env file
  --purge            with --uninstall: also remove /var/lib/deploybot-agent and the user
  --root DIR         install under DIR instead of / (testing; no user, no systemctl)

Re-running with some flags keeps the other values already in /etc/deploybot/agent.env.
USAGE
}

# --- arguments -------------------------------------------------------------------------------

root="${DEPLOYBOT_INSTALL_ROOT:-/}"
url="" url_set=0
token="" token_set=0
labels="" labels_set=0
host_name="" host_set=0
no_start=0 uninstall=0 purge=0 no_proxy=0

need_value() { [ "$#" -ge 2 ] || die "$1 needs a value (see --help)"; }
while [ "$#" -gt 0 ]; do
  case "$1" in
    --url) need_value "$@"; url="$2"; url_set=1; shift 2 ;;
    --url=*) url="${1#*=}"; url_set=1; shift ;;
    --join-token) need_value "$@"; token="$2"; token_set=1; shift 2 ;;
    --join-token=*) token="${1#*=}"; token_set=1; shift ;;
    --labels) need_value "$@"; labels="$2"; labels_set=1; shift 2 ;;
    --labels=*) labels="${1#*=}"; labels_set=1; shift ;;
    --hostname) need_value "$@"; host_name="$2"; host_set=1; shift 2 ;;
    --hostname=*) host_name="${1#*=}"; host_set=1; shift ;;
    --root) need_value "$@"; root="$2"; shift 2 ;;
    --root=*) root="${1#*=}"; shift ;;
    --no-start) no_start=1; shift ;;
    --no-proxy) no_proxy=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

# --- validation (before anything is written) ---------------------------------------------------

if [ "$purge" = 1 ] && [ "$uninstall" = 0 ]; then die "--purge only goes with --uninstall"; fi
if [ "$uninstall" = 1 ] && [ "$((url_set + token_set + labels_set + host_set + no_start + no_proxy))" -gt 0 ]; then
  die "--uninstall takes no install flags"
fi
if [ "$token_set" = 0 ] && [ -n "${DEPLOYBOT_JOIN_TOKEN:-}" ] && [ "$uninstall" = 0 ]; then
  token="$DEPLOYBOT_JOIN_TOKEN"
  token_set=1
fi

case "$root" in
  /*) ;;
  *) die "--root must be an absolute path, got '$root'" ;;
esac
[ -d "$root" ] || die "--root '$root' is not a directory"
root="$(cd "$root" && pwd -P)"
live=0
[ "$root" = "/" ] && live=1
# P /etc/x -> the path under the install root.
P() { printf '%s%s' "${root%/}" "$1"; }

validate_url() {
  local re_host='([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])'
  local re="^https?://${re_host}(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$"
  if [ "${#1}" -gt 2048 ] || ! [[ "$1" =~ $re ]]; then
    die "--url must be an http:// or https:// URL without credentials, query or spaces (e.g. https://deploy.example.com:8080), got '$1'"
  fi
}
validate_token() {
  [[ "$1" =~ ^[A-Za-z0-9._~+/=-]{1,512}$ ]] ||
    die "--join-token must be 1-512 characters of letters, digits and . _ ~ + / = - (no spaces or quotes)"
}
validate_labels() {
  local rest="$1" item count=0
  [ -z "$rest" ] && return 0
  if [[ "$rest" == *,,* || "$rest" == ,* || "$rest" == *, ]]; then
    die "--labels must be comma-separated labels without empty items, got '$1'"
  fi
  # Split by hand (not `read`, which would stop at a newline and let the rest through).
  while :; do
    item="${rest%%,*}"
    count=$((count + 1))
    if [ "${#item}" -gt 128 ] || ! [[ "$item" =~ ^[A-Za-z0-9][A-Za-z0-9_.=:/-]*$ ]]; then
      die "label '$item' is invalid: labels are letters, digits and _ . = : / - (starting with a letter or digit), comma-separated, no spaces"
    fi
    [ "$item" = "$rest" ] && break
    rest="${rest#*,}"
  done
  if [ "$count" -gt 32 ]; then die "--labels: at most 32 labels"; fi
}
validate_hostname() {
  if [ "${#1}" -gt 63 ] || ! [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]]; then
    die "--hostname must be 1-63 letters, digits, '_', '.', '-' starting with a letter or digit, got '$1'"
  fi
}

# --url a,b: each controller URL checked on its own; no empty items.
validate_urls() {
  local u list
  case "$1" in "" | ,* | *, | *,,*) die "--url must be one URL or a comma-separated list of URLs without empty items, got '$1'" ;; esac
  IFS=',' read -r -a list <<<"$1"
  for u in "${list[@]}"; do validate_url "$u"; done
}
if [ "$url_set" = 1 ]; then validate_urls "$url"; fi
if [ "$token_set" = 1 ]; then validate_token "$token"; fi
if [ "$labels_set" = 1 ]; then validate_labels "$labels"; fi
if [ "$host_set" = 1 ]; then validate_hostname "$host_name"; fi

if [ "$live" = 1 ] && [ "$(id -u)" != 0 ]; then
  die "run me as root (sudo bash $0 ...)"
fi

OPT_DIR="$(P /opt/deploybot-agent)"
ETC_DIR="$(P /etc/deploybot)"
ENV_FILE="$(P /etc/deploybot/agent.env)"
UNIT_FILE="$(P "/etc/systemd/system/$UNIT_NAME")"
PROXY_SERVICE_FILE="$(P "/etc/systemd/system/$PROXY_SERVICE")"
PROXY_PATH_FILE="$(P "/etc/systemd/system/$PROXY_PATH")"
STATE_DIR="$(P /var/lib/deploybot-agent)"
readonly OPT_DIR ETC_DIR ENV_FILE UNIT_FILE PROXY_SERVICE_FILE PROXY_PATH_FILE STATE_DIR

if [ "$uninstall" = 0 ]; then
  # First install: the URL and the token are required; later runs keep what the file has.
  has_key() { [ -f "$ENV_FILE" ] && grep -q "^$1=." -- "$ENV_FILE"; }
  if [ "$url_set" = 0 ] && ! has_key DEPLOYBOT_URL; then die "--url is required (no DEPLOYBOT_URL in $ENV_FILE yet)"; fi
  if [ "$token_set" = 0 ] && ! has_key DEPLOYBOT_JOIN_TOKEN; then
    die "--join-token (or DEPLOYBOT_JOIN_TOKEN in the environment) is required (none in $ENV_FILE yet)"
  fi
fi

# run CMD...: runs it for real on /, prints it otherwise.
run() {
  if [ "$live" = 1 ]; then
    "$@"
  else
    local cmd
    cmd="$(printf '%q ' "$@")"
    say "would run: ${cmd% }"
  fi
}

systemd_running() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# --- uninstall -------------------------------------------------------------------------------

if [ "$uninstall" = 1 ]; then
  if [ "$live" = 1 ] && systemd_running; then
    say "stopping $UNIT_NAME (a running job may take up to the drain timeout to finish)"
    systemctl disable --now "$UNIT_NAME" 2>/dev/null || true
    systemctl disable --now "$PROXY_PATH" "$PROXY_SERVICE" 2>/dev/null || true
  else
    run systemctl disable --now "$UNIT_NAME"
    run systemctl disable --now "$PROXY_PATH" "$PROXY_SERVICE"
  fi
  rm -f -- "$UNIT_FILE" "$PROXY_SERVICE_FILE" "$PROXY_PATH_FILE"
  rm -rf -- "$OPT_DIR"
  rm -f -- "$ENV_FILE"
  rmdir -- "$ETC_DIR" 2>/dev/null || true
  if [ "$live" = 1 ] && systemd_running; then
    systemctl daemon-reload
    systemctl reset-failed "$UNIT_NAME" "$PROXY_SERVICE" 2>/dev/null || true
  else
    run systemctl daemon-reload
  fi
  if [ "$purge" = 1 ]; then
    rm -rf -- "$STATE_DIR"
    if [ "$live" = 1 ]; then
      if id -u "$SERVICE_USER" >/dev/null 2>&1; then userdel "$SERVICE_USER" || warn "could not remove user $SERVICE_USER"; fi
    else
      run userdel "$SERVICE_USER"
    fi
    say "removed the agent, its state directory and the $SERVICE_USER user"
  else
    say "removed the agent; kept its state in $STATE_DIR (--uninstall --purge removes it)"
  fi
  exit 0
fi

# --- prerequisites ---------------------------------------------------------------------------

command -v curl >/dev/null 2>&1 || die "curl is required to fetch the agent from the controller (apt-get install curl)"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is required (coreutils)"

docker_ok() {
  if command -v docker >/dev/null 2>&1 && docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    return 0
  fi
  local sock=/var/run/docker.sock
  [ -S "$sock" ] && command -v curl >/dev/null 2>&1 &&
    [ "$(curl -fsS --max-time 5 --unix-socket "$sock" http://localhost/_ping 2>/dev/null)" = "OK" ]
}
if ! docker_ok; then
  msg="no Docker engine answers: neither 'docker version' works nor does /var/run/docker.sock answer GET /_ping (install Docker Engine, e.g. apt-get install docker.io, and start it)"
  if [ "$live" = 1 ]; then die "$msg"; else warn "$msg"; fi
fi
if ! command -v git >/dev/null 2>&1; then
  if [ "$live" = 1 ]; then die "git is required to clone apps (apt-get install git)"; else warn "git not found"; fi
fi

node_bin="$(command -v node 2>/dev/null)" || die "node not found: install Node.js >= $MIN_NODE (e.g. from https://deb.nodesource.com)"
node_bin="$(readlink -f -- "$node_bin")"
node_version="$("$node_bin" -p 'process.versions.node')" || die "$node_bin does not run"
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
version_ge "$node_version" "$MIN_NODE" || die "node $node_version at $node_bin is too old: the agent needs Node >= $MIN_NODE"
case "$node_bin" in
  /home/* | /root/* | /run/user/*)
    die "node at $node_bin lives in a home directory, which the service cannot see (ProtectHome=yes): install a system Node.js >= $MIN_NODE (e.g. /usr/bin/node)" ;;
esac

# The host proxy: what the env file says, unless --no-proxy; external (its own units) by default.
env_value() { [ -f "$ENV_FILE" ] && sed -n "s/^$1=//p" -- "$ENV_FILE" | tail -n 1; }
proxy_mode="$(env_value DEPLOYBOT_PROXY || true)"
if [ "$no_proxy" = 1 ]; then proxy_mode=off; fi
[ -n "$proxy_mode" ] || proxy_mode=external
if [ "$proxy_mode" = external ]; then
  haproxy_problem=""
  if [ ! -x "$HAPROXY_BIN" ]; then
    haproxy_problem="no HAProxy at $HAPROXY_BIN"
  else
    haproxy_version="$("$HAPROXY_BIN" -v 2>/dev/null | sed -n 's/^HA-\{0,1\}Proxy version \([0-9][0-9.]*\).*/\1/p' | head -n 1)"
    if [ -z "$haproxy_version" ] || ! version_ge "$haproxy_version" "$MIN_HAPROXY"; then
      haproxy_problem="$HAPROXY_BIN is version '${haproxy_version:-unknown}', the host proxy needs >= $MIN_HAPROXY"
    fi
  fi
  if [ -n "$haproxy_problem" ]; then
    msg="$haproxy_problem: install it (apt-get install haproxy), or pass --no-proxy for a host that serves no domains"
    if [ "$live" = 1 ]; then die "$msg"; else warn "$msg"; fi
  fi
fi

if [ "$live" = 1 ] && ! systemd_running; then
  die "systemd is not running on this machine (no /run/systemd/system): this installer sets up a systemd service"
fi
if [ "$live" = 1 ] && ! getent group docker >/dev/null; then
  die "there is no 'docker' group: the agent reaches the Docker socket through it (is Docker Engine installed from the distribution or docker.com packages?)"
fi

# --- files -----------------------------------------------------------------------------------

changed=0
# put_file SRC DST MODE: installs SRC as DST unless DST already has that content and mode.
put_file() {
  local src="$1" dst="$2" mode="$3"
  if [ -f "$dst" ] && cmp -s -- "$src" "$dst" && [ "$(stat -c %a -- "$dst")" = "${mode#0}" ]; then
    return 0
  fi
  mkdir -p -- "$(dirname -- "$dst")"
  install -m "$mode" -- "$src" "$dst"
  changed=1
}
# The controller to fetch from, and the token to show it: the flags, else what the env file has.
fetch_url="$url"
[ "$url_set" = 1 ] || fetch_url="$(env_value DEPLOYBOT_URL)"
fetch_token="$token"
[ "$token_set" = 1 ] || fetch_token="$(env_value DEPLOYBOT_JOIN_TOKEN)"
download="$(mktemp -d)"
trap 'rm -rf -- "$download"' EXIT
# get NAME URL: GET URL/v1/agents/dist/NAME into the download dir. The token goes in a header
# read from a process substitution, so it never appears in curl's argument list.
get() {
  curl -fsS --max-time 300 --retry 3 --retry-delay 2 -H @<(printf 'Authorization: Bearer %s\n' "$fetch_token") \
    -o "$download/$1" "$2/v1/agents/dist/$1"
}
# With several controller URLs the files come from the first one that hands out the manifest.
IFS=',' read -r -a fetch_list <<<"$fetch_url"
fetch_url=""
for candidate in "${fetch_list[@]}"; do
  if get manifest.json "${candidate%/}"; then
    fetch_url="${candidate%/}"
    break
  fi
  [ "${#fetch_list[@]}" -gt 1 ] && say "could not fetch manifest.json from ${candidate%/}; trying the next controller"
done
[ -n "$fetch_url" ] || die "could not fetch manifest.json from ${fetch_list[*]} (is the URL right, and the join token?)"
fetch() {
  get "$1" "$fetch_url" || die "could not fetch $1 from $fetch_url (is the URL right, and the join token?)"
}
# manifest KEY [FILE]: the version, or a file's sha256, from the fetched manifest.
manifest() {
  "$node_bin" -e '
    const m = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const v = process.argv[2] === "version" ? m.version : m.files?.[process.argv[3]]?.sha256;
    if (typeof v !== "string") process.exit(1);
    process.stdout.write(v);' "$download/manifest.json" "$@"
}
version="$(manifest version)" || die "the controller's manifest.json has no version"
[[ "$version" =~ ^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$ ]] || die "the controller's manifest names an odd version '$version'"
for f in deploybot-agent.mjs deploybot-agent.service "$PROXY_SERVICE" "$PROXY_PATH"; do
  fetch "$f"
  want="$(manifest file "$f")" || die "the manifest lists no sha256 for $f"
  got="$(sha256sum -- "$download/$f" | cut -d' ' -f1)"
  [ "$got" = "$want" ] || die "$f from $fetch_url has sha256 $got, the manifest says $want: refusing it"
done
say "fetched agent $version from $fetch_url (checksums match)"

# The agent lives under the state dir: releases/VERSION/ and the link `current` the unit starts.
RELEASE_DIR="$STATE_DIR/releases/$version"
if [ ! -d "$STATE_DIR" ]; then
  mkdir -p -- "$(dirname -- "$STATE_DIR")"
  mkdir -m 0750 -- "$STATE_DIR"
fi
mkdir -p -- "$STATE_DIR/releases"
put_file "$download/deploybot-agent.mjs" "$RELEASE_DIR/deploybot-agent.mjs" 0644
put_file "$download/manifest.json" "$RELEASE_DIR/manifest.json" 0644
if [ "$(readlink -- "$STATE_DIR/current" 2>/dev/null)" != "releases/$version" ]; then
  # a new link renamed over the old one: the switch is atomic
  ln -sfn -- "releases/$version" "$STATE_DIR/.current.new"
  mv -Tf -- "$STATE_DIR/.current.new" "$STATE_DIR/current"
  changed=1
fi

mkdir -p -- "$OPT_DIR/bin"
if [ "$(readlink -- "$OPT_DIR/bin/node" 2>/dev/null)" != "$node_bin" ]; then
  ln -sfn -- "$node_bin" "$OPT_DIR/bin/node"
  changed=1
fi

# Env file: managed keys are replaced when their flag is given, everything else is kept.
mkdir -p -- "$ETC_DIR"
chmod 0755 -- "$ETC_DIR"
tmp_env="$(mktemp "$ETC_DIR/.agent.env.XXXXXX")"
trap 'rm -f -- "$tmp_env"; rm -rf -- "$download"' EXIT
chmod 0600 -- "$tmp_env"
declare -A new_value=()
if [ "$url_set" = 1 ]; then new_value[DEPLOYBOT_URL]="$url"; fi
if [ "$token_set" = 1 ]; then new_value[DEPLOYBOT_JOIN_TOKEN]="$token"; fi
if [ "$labels_set" = 1 ]; then new_value[DEPLOYBOT_LABELS]="$labels"; fi
if [ "$host_set" = 1 ]; then new_value[DEPLOYBOT_HOSTNAME]="$host_name"; fi
new_value[DEPLOYBOT_PROXY]="$proxy_mode"
declare -A seen=()
{
  if [ -f "$ENV_FILE" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
      key="${line%%=*}"
      if [ "$key" != "$line" ] && [ -n "${new_value[$key]+x}" ]; then
        printf '%s=%s\n' "$key" "${new_value[$key]}"
        seen[$key]=1
      else
        printf '%s\n' "$line"
        [ "$key" != "$line" ] && seen[$key]=1
      fi
    done <"$ENV_FILE"
  else
    printf '# deploybot agent settings (written by scripts/install-agent.sh; re-running it keeps\n'
    printf '# lines it does not manage). See the README for DOCKER_HOST, DEPLOYBOT_REGISTRY_*, ...\n'
  fi
  for key in DEPLOYBOT_URL DEPLOYBOT_JOIN_TOKEN DEPLOYBOT_LABELS DEPLOYBOT_HOSTNAME DEPLOYBOT_PROXY; do
    if [ -z "${seen[$key]+x}" ] && [ -n "${new_value[$key]+x}" ]; then
      printf '%s=%s\n' "$key" "${new_value[$key]}"
      seen[$key]=1
    fi
  done
} >"$tmp_env"
if [ -f "$ENV_FILE" ] && cmp -s -- "$tmp_env" "$ENV_FILE" && [ "$(stat -c %a -- "$ENV_FILE")" = 600 ]; then
  rm -f -- "$tmp_env"
  say "$ENV_FILE unchanged"
else
  mv -f -- "$tmp_env" "$ENV_FILE"
  changed=1
  say "wrote $ENV_FILE (mode 0600)"
fi
trap 'rm -rf -- "$download"' EXIT
if [ "$live" = 1 ]; then chown root:root -- "$ENV_FILE"; fi

put_file "$download/deploybot-agent.service" "$UNIT_FILE" 0644
proxy_units_changed=0
proxy_units_removed=0
if [ "$proxy_mode" = external ]; then
  before="$changed"
  changed=0
  put_file "$download/$PROXY_SERVICE" "$PROXY_SERVICE_FILE" 0644
  put_file "$download/$PROXY_PATH" "$PROXY_PATH_FILE" 0644
  proxy_units_changed="$changed"
  [ "$before" = 1 ] && changed=1
elif [ -e "$PROXY_SERVICE_FILE" ] || [ -e "$PROXY_PATH_FILE" ]; then
  # switched to --no-proxy (or another DEPLOYBOT_PROXY): the units go, after they are disabled below
  proxy_units_removed=1
  changed=1
fi

# --- user and service ------------------------------------------------------------------------

if [ "$live" = 1 ]; then
  if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    group_opt=(--user-group)
    getent group "$SERVICE_USER" >/dev/null && group_opt=(--gid "$SERVICE_USER")
    useradd --system "${group_opt[@]}" --groups docker --home-dir /var/lib/deploybot-agent \
      --no-create-home --shell /usr/sbin/nologin --comment "deploybot agent" "$SERVICE_USER"
    say "created system user $SERVICE_USER (groups: $SERVICE_USER, docker)"
    changed=1
  elif ! id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx docker; then
    usermod --append --groups docker "$SERVICE_USER"
    changed=1
  fi
  # the agent writes its own updates into releases/ and moves `current`
  chown -R -- "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"
  if [ "$proxy_units_removed" = 1 ]; then
    systemctl disable --now "$PROXY_PATH" "$PROXY_SERVICE" 2>/dev/null || true
    rm -f -- "$PROXY_SERVICE_FILE" "$PROXY_PATH_FILE"
    say "removed the host proxy's units (DEPLOYBOT_PROXY=$proxy_mode)"
  fi
  systemctl daemon-reload
  # The proxy first: the agent may write a config as soon as it starts.
  if [ "$proxy_mode" = external ]; then
    if [ "$no_start" = 1 ]; then systemctl enable "$PROXY_PATH"; else systemctl enable --now "$PROXY_PATH"; fi
    if [ "$proxy_units_changed" = 1 ] && systemctl is-active --quiet "$PROXY_SERVICE"; then
      # not restarted here: a restart cuts every open connection through it
      say "$PROXY_SERVICE runs its old unit until its next restart (systemctl restart $PROXY_SERVICE cuts open connections)"
    fi
  fi
  if [ "$no_start" = 1 ]; then
    systemctl enable "$UNIT_NAME"
    say "installed and enabled; start it with: systemctl start $UNIT_NAME"
  elif systemctl is-active --quiet "$UNIT_NAME"; then
    if [ "$changed" = 1 ]; then
      systemctl restart --no-block "$UNIT_NAME"
      say "restart queued (the agent finishes its current job first); follow it with: journalctl -fu $UNIT_NAME"
    else
      systemctl enable "$UNIT_NAME" >/dev/null 2>&1
      say "nothing changed; $UNIT_NAME is running"
    fi
  else
    systemctl enable --now "$UNIT_NAME"
    say "started; follow it with: journalctl -fu $UNIT_NAME"
  fi
else
  run useradd --system --user-group --groups docker --home-dir /var/lib/deploybot-agent \
    --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
  run chown -R "$SERVICE_USER:$SERVICE_USER" /var/lib/deploybot-agent
  if [ "$proxy_units_removed" = 1 ]; then
    run systemctl disable --now "$PROXY_PATH" "$PROXY_SERVICE"
    rm -f -- "$PROXY_SERVICE_FILE" "$PROXY_PATH_FILE"
  fi
  run systemctl daemon-reload
  if [ "$proxy_mode" = external ]; then
    if [ "$no_start" = 1 ]; then run systemctl enable "$PROXY_PATH"; else run systemctl enable --now "$PROXY_PATH"; fi
  fi
  if [ "$no_start" = 1 ]; then
    run systemctl enable "$UNIT_NAME"
  else
    run systemctl enable --now "$UNIT_NAME"
  fi
  say "installed under $root ($([ "$changed" = 1 ] && echo changed || echo unchanged))"
fi
