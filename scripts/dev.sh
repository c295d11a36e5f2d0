#!/usr/bin/env bash
# Starts a controller on the embedded SQLite database and, when a Docker engine answers, an
# agent beside it called "local". Everything lives under ./data; tokens are generated once.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v pnpm >/dev/null || npm install -g pnpm@10
{ [ -d node_modules ] && [ -d apps/dashboard/node_modules ]; } || pnpm install --frozen-lockfile
# The web dashboard at / is served from its build (a second or two; done every start so it
# matches the checkout).
pnpm --silent --filter @deploybot/dashboard build

mkdir -p data
if [ ! -f data/dev.env ]; then
  umask 077
  {
    echo "DEPLOYBOT_JOIN_TOKEN=$(node -e 'console.log(require("crypto").randomBytes(24).toString("base64url"))')"
    echo "DEPLOYBOT_ADMIN_TOKEN=$(node -e 'console.log(require("crypto").randomBytes(24).toString("base64url"))')"
    echo "DEPLOYBOT_WEBHOOK_SECRET=$(node -e 'console.log(require("crypto").randomBytes(24).toString("base64url"))')"
  } > data/dev.env
fi
set -a
# shellcheck disable=SC1091
. data/dev.env
set +a
export DEPLOYBOT_PORT="${DEPLOYBOT_PORT:-8080}"
export DEPLOYBOT_URL="http://127.0.0.1:${DEPLOYBOT_PORT}"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

pnpm --silent controller &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "${DEPLOYBOT_URL}/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done

if docker version >/dev/null 2>&1 || [ -S "${DOCKER_HOST#unix://}" ] || [ -S /var/run/docker.sock ]; then
  DEPLOYBOT_HOSTNAME="${DEPLOYBOT_HOSTNAME:-local}" DEPLOYBOT_STATE_DIR="${DEPLOYBOT_STATE_DIR:-$PWD/data/agent}" \
    pnpm --silent agent &
  pids+=($!)
  agent_note="agent 'local' is running against the local Docker engine"
else
  agent_note="NO Docker engine found: the agent was not started (start dockerd, then run this again)"
fi

cat <<MSG

  deploybot controller: ${DEPLOYBOT_URL}
  dashboard:            ${DEPLOYBOT_URL}/   (sign in with the admin token)
  ${agent_note}
  admin token:          ${DEPLOYBOT_ADMIN_TOKEN}   (also in data/dev.env)

  try:  curl -H "Authorization: Bearer \$DEPLOYBOT_ADMIN_TOKEN" ${DEPLOYBOT_URL}/v1/hosts

MSG
wait -n
