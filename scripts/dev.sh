#!/usr/bin/env bash
# Starts a controller on the embedded SQLite database and, when a Docker engine answers, an
# agent beside it called "local". Everything lives under ./data (DEPLOYBOT_DEV_DIR); tokens are
# generated once.
#
# The controller and the agent run in one process group of their own. Ctrl-C, SIGTERM, or
# either of them exiting stops the whole group, and this script returns only once every
# process of it is gone (a straggler gets SIGKILL after 15 s): nothing keeps a port or the
# agent's state dir. A port that is taken stops the start with a message and exit code 1.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

command -v pnpm >/dev/null || npm install -g pnpm@10
{ [ -d node_modules ] && [ -d apps/dashboard/node_modules ]; } || pnpm install --frozen-lockfile

dev_dir="${DEPLOYBOT_DEV_DIR:-$root/data}"
mkdir -p "$dev_dir"
dev_dir="$(cd "$dev_dir" && pwd)"
export DEPLOYBOT_PORT="${DEPLOYBOT_PORT:-8080}"
export DEPLOYBOT_HOST="${DEPLOYBOT_HOST:-0.0.0.0}"
export DEPLOYBOT_URL="http://127.0.0.1:${DEPLOYBOT_PORT}"
# absolute: the controller resolves relative paths from where pnpm was started
export DEPLOYBOT_DB="${DEPLOYBOT_DB:-$dev_dir/deploybot.db}"
export DEPLOYBOT_CONFIG="${DEPLOYBOT_CONFIG:-$root/config/apps.yaml}"

# Before anything slow: a taken port means another controller (an earlier start of this
# script?) or another server. Its health answer must not be mistaken for ours.
if ! node -e '
  const s = require("net").createServer();
  s.once("error", (e) => { console.error(e.code); process.exit(1); });
  s.listen(Number(process.argv[1]), process.argv[2], () => s.close());
' "$DEPLOYBOT_PORT" "$DEPLOYBOT_HOST" 2>/dev/null; then
  echo "deploybot: port ${DEPLOYBOT_PORT} is already in use on ${DEPLOYBOT_HOST} (another deploybot controller, an earlier dev.sh, or another server)." >&2
  echo "  stop that, or start on another port: DEPLOYBOT_PORT=$((DEPLOYBOT_PORT + 1)) bash scripts/dev.sh" >&2
  exit 1
fi

# The web dashboard at / is served from its build (a second or two; done every start so it
# matches the checkout).
pnpm --silent --filter @deploybot/dashboard build

if [ ! -f "$dev_dir/dev.env" ]; then
  umask 077
  {
    echo "DEPLOYBOT_JOIN_TOKEN=$(node -e 'console.log(require("crypto").randomBytes(24).toString("base64url"))')"
    echo "DEPLOYBOT_ADMIN_TOKEN=$(node -e 'console.log(require("crypto").randomBytes(24).toString("base64url"))')"
    echo "DEPLOYBOT_WEBHOOK_SECRET=$(node -e 'console.log(require("crypto").randomBytes(24).toString("base64url"))')"
  } > "$dev_dir/dev.env"
  umask 022
fi
set -a
# shellcheck disable=SC1090
. "$dev_dir/dev.env"
set +a

with_agent=0
if docker version >/dev/null 2>&1 || [ -S "${DOCKER_HOST#unix://}" ] || [ -S /var/run/docker.sock ]; then with_agent=1; fi
pid_of_controller="$dev_dir/.dev-controller.pid"
rm -f "$pid_of_controller"

# `set -m` gives the background subshell a process group of its own (its pid); everything it
# starts stays in that group. Node runs directly (no pnpm/tsx wrapper processes to orphan).
set -m
(
  set +m
  # A stop signal to the group reaches every member; one sent to this subshell alone (it is the
  # second dev.sh in `pgrep -f dev.sh`) is passed on to the controller and the agent. Then wait
  # for (and reap) both, and go.
  trap 'kill -TERM $(jobs -p) 2>/dev/null; wait; exit 143' TERM
  trap 'kill -INT $(jobs -p) 2>/dev/null; wait; exit 130' INT
  (cd "$root/apps/controller" && exec node --import tsx src/main.ts </dev/null) &
  controller=$!
  echo "$controller" > "$pid_of_controller"
  if [ "$with_agent" = 1 ]; then
    # the agent registers at once when the controller already listens (no retry warnings)
    for _ in $(seq 1 600); do
      kill -0 "$controller" 2>/dev/null || break
      [ "$(cat "$dev_dir/controller.pid" 2>/dev/null)" = "$controller" ] && break
      sleep 0.2
    done
    (
      cd "$root/apps/agent"
      # the controller's own settings and this script's are not the agent's: it would warn that
      # each is unknown, "misspelt?" (test/e2e/devScript.test.ts keeps this list complete)
      unset DEPLOYBOT_DEV_DIR DEPLOYBOT_ACME_CA DEPLOYBOT_ACME_EMAIL DEPLOYBOT_ADMIN_TOKEN \
        DEPLOYBOT_AGENT_DIST DEPLOYBOT_AGENT_UPDATE_CONCURRENCY DEPLOYBOT_APP_LOG_LINES \
        DEPLOYBOT_BACKUP_DIR DEPLOYBOT_BACKUP_INTERVAL DEPLOYBOT_BACKUP_KEEP \
        DEPLOYBOT_BUILD_BODY_LIMIT DEPLOYBOT_CONFIG DEPLOYBOT_DASHBOARD_DIR DEPLOYBOT_DATABASE_URL \
        DEPLOYBOT_DB DEPLOYBOT_EVENTS_RETENTION_HOURS DEPLOYBOT_GITHUB_API_URL \
        DEPLOYBOT_GITHUB_TOKEN DEPLOYBOT_GROUP_COMMIT DEPLOYBOT_HEARTBEAT_INTERVAL_SECONDS \
        DEPLOYBOT_HOST DEPLOYBOT_JOB_TIMEOUT_SECONDS DEPLOYBOT_KEEP_IMAGES DEPLOYBOT_LOG_MAX_BYTES \
        DEPLOYBOT_MAX_ATTEMPTS DEPLOYBOT_METRICS_ALLOW DEPLOYBOT_PORT DEPLOYBOT_PUBLIC_URL \
        DEPLOYBOT_QUEUE_TIMEOUT_SECONDS DEPLOYBOT_SECRET_KEY DEPLOYBOT_WEBHOOK_MAX_IN_FLIGHT \
        DEPLOYBOT_WEBHOOK_SECRET
      export DEPLOYBOT_HOSTNAME="${DEPLOYBOT_HOSTNAME:-local}" DEPLOYBOT_STATE_DIR="${DEPLOYBOT_STATE_DIR:-$dev_dir/agent}"
      # a job still running when you stop dev.sh is cancelled after this long
      export DEPLOYBOT_DRAIN_TIMEOUT_SECONDS="${DEPLOYBOT_DRAIN_TIMEOUT_SECONDS:-10}"
      exec node --import tsx src/main.ts </dev/null
    ) &
  fi
  # the first child to end ends the group
  status=0
  wait -n || status=$?
  kill -TERM $(jobs -p) 2>/dev/null || true
  wait
  exit "$status"
) &
group=$!
set +m

stopped=0
stop_group() {
  [ "$stopped" = 1 ] && return 0
  stopped=1
  trap '' INT TERM
  kill -TERM -- "-$group" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 -- "-$group" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "deploybot: still running after 15 s; killing the rest" >&2
  kill -KILL -- "-$group" 2>/dev/null || true
  wait "$group" 2>/dev/null || true
}
trap 'stop_group; exit 130' INT
trap 'stop_group; exit 143' TERM
trap stop_group EXIT

# Ready when OUR controller wrote its pid file, which it does only once it listens (a server
# already on the port cannot satisfy this), or not at all when it exited.
ready=0
for _ in $(seq 1 600); do
  kill -0 "$group" 2>/dev/null || break
  if [ -s "$pid_of_controller" ] && [ -f "$dev_dir/controller.pid" ] && [ "$(cat "$dev_dir/controller.pid")" = "$(cat "$pid_of_controller")" ]; then
    ready=1
    break
  fi
  sleep 0.2
done
if [ "$ready" != 1 ]; then
  echo "deploybot: the controller did not start (its output is above); nothing is left running." >&2
  exit 1
fi

if [ "$with_agent" = 1 ]; then
  agent_note="agent '${DEPLOYBOT_HOSTNAME:-local}' is running against the local Docker engine"
else
  agent_note="NO Docker engine found: the agent was not started (start dockerd, then run this again)"
fi
env_file="${dev_dir#"$root"/}/dev.env"
cat <<MSG

  deploybot controller: ${DEPLOYBOT_URL}
  dashboard:            ${DEPLOYBOT_URL}/   (sign in with the admin token)
  ${agent_note}
  admin token:          ${DEPLOYBOT_ADMIN_TOKEN}   (also in ${env_file})

  CLI:  pnpm -s deploybot login --url ${DEPLOYBOT_URL} --token ${DEPLOYBOT_ADMIN_TOKEN}
  curl: set -a; . ${env_file}; set +a; curl -H "Authorization: Bearer \$DEPLOYBOT_ADMIN_TOKEN" ${DEPLOYBOT_URL}/v1/hosts
  stop: Ctrl-C (stops the controller and the agent; deployed apps keep running)

MSG
status=0
wait "$group" || status=$?
exit "$status"
