# Host proxy and ACME test server for routing tests (issue 10): HAProxy (Debian 2.6; the agent
# starts one instance per test on its own ports and sockets, so nothing is started here) and
# Pebble, Let's Encrypt's ACME test server, with challenge validation skipped.
case "$PHASE" in
packages)
  EXTRA_PACKAGES+=(haproxy pebble openssl)
  ;;
services)
  # One Pebble per machine (fixed ports), so its files live outside any one checkout.
  PEBBLE_DIR="${DEPLOYBOT_TEST_PEBBLE_DIR:-/var/tmp/deploybot-test-pebble}"
  PEBBLE_PORT=14000
  PEBBLE_MGMT_PORT=15000
  pebble_answers() { curl -fsS --max-time 2 --cacert "$PEBBLE_DIR/tls-ca.pem" "https://127.0.0.1:$PEBBLE_PORT/dir" >/dev/null 2>&1; }
  if ! pebble_answers; then
    mkdir -p "$PEBBLE_DIR"
    # Pebble's own https listener needs a certificate; the Debian package ships none.
    if [ ! -f "$PEBBLE_DIR/tls-cert.pem" ]; then
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=pebble test CA" \
        -keyout "$PEBBLE_DIR/tls-ca.key" -out "$PEBBLE_DIR/tls-ca.pem" 2>/dev/null || fail "openssl (pebble CA) failed"
      openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$PEBBLE_DIR/tls-key.pem" -out "$PEBBLE_DIR/tls.csr" 2>/dev/null || fail "openssl (pebble csr) failed"
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$PEBBLE_DIR/san.ext"
      openssl x509 -req -in "$PEBBLE_DIR/tls.csr" -CA "$PEBBLE_DIR/tls-ca.pem" -CAkey "$PEBBLE_DIR/tls-ca.key" \
        -CAcreateserial -days 3650 -extfile "$PEBBLE_DIR/san.ext" -out "$PEBBLE_DIR/tls-cert.pem" 2>/dev/null \
        || fail "openssl (pebble cert) failed"
    fi
    cat >"$PEBBLE_DIR/pebble-config.json" <<JSON
{
  "pebble": {
    "listenAddress": "127.0.0.1:$PEBBLE_PORT",
    "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
    "certificate": "$PEBBLE_DIR/tls-cert.pem",
    "privateKey": "$PEBBLE_DIR/tls-key.pem",
    "httpPort": 5002,
    "tlsPort": 5001,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
JSON
    say "starting pebble on 127.0.0.1:$PEBBLE_PORT (log: $PEBBLE_DIR/pebble.log)"
    # PEBBLE_VA_ALWAYS_VALID: test domains do not resolve to this host; PEBBLE_WFE_NONCEREJECT=0:
    # no random bad-nonce answers (they test clients' retries, not ours).
    PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_WFE_NONCEREJECT=0 \
      setsid nohup pebble -config "$PEBBLE_DIR/pebble-config.json" >"$PEBBLE_DIR/pebble.log" 2>&1 </dev/null &
    echo $! >"$PEBBLE_DIR/pebble.pid"
    for _ in $(seq 1 30); do
      pebble_answers && break
      sleep 0.5
    done
    pebble_answers || fail "pebble did not answer on 127.0.0.1:$PEBBLE_PORT; see $PEBBLE_DIR/pebble.log"
  fi
  say "pebble answers on 127.0.0.1:$PEBBLE_PORT"
  command -v haproxy >/dev/null || fail "haproxy not installed"
  cat >>"$ENV_FILE" <<ENV
DEPLOYBOT_TEST_ACME_DIRECTORY=https://127.0.0.1:$PEBBLE_PORT/dir
DEPLOYBOT_TEST_ACME_TLS_CA=$PEBBLE_DIR/tls-ca.pem
DEPLOYBOT_TEST_ACME_ROOTS=https://127.0.0.1:$PEBBLE_MGMT_PORT/roots/0
ENV
  ;;
esac
