# Debian's postgresql: a throwaway cluster of its own for the controller's PostgreSQL tests and
# bench (the several-controllers mode, DEPLOYBOT_DATABASE_URL=postgres://...). It listens on
# 127.0.0.1 only, on a port chosen once per state dir, with its data, socket and log under one
# directory; Debian's own "main" cluster is never touched. Each test creates its own database in
# it and drops it afterwards.
# fsync is off: the data is thrown away, and tests must not wait on the disk of a shared machine.
case "$PHASE" in
  packages) EXTRA_PACKAGES+=(postgresql) ;;
  services)
    PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || fail "PostgreSQL server binaries not found under /usr/lib/postgresql (Debian package postgresql)"
    id postgres >/dev/null 2>&1 || fail "the postgres user is missing (Debian package postgresql creates it)"
    # The server refuses to run as root: it runs as Debian's postgres user, which must reach its
    # directory. The state dir may sit below a directory it cannot enter: then /var/tmp.
    PG_DIR="$STATE_DIR/postgresql"
    if ! runuser -u postgres -- test -x "$STATE_DIR"; then
      PG_DIR="/var/tmp/deploybot-test-postgresql-$(printf '%s' "$STATE_DIR" | cksum | cut -d ' ' -f 1)"
    fi
    mkdir -p "$PG_DIR"
    chown postgres:postgres "$PG_DIR"
    chmod 700 "$PG_DIR"
    PG_USER=deploybot
    PG_PASSWORD=deploybot-test-pg
    if [ ! -f "$PG_DIR/port" ]; then
      # a free port, asked of the kernel once; kept so restarts and other scripts find it
      node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})' >"$PG_DIR/port"
    fi
    PG_PORT="$(cat "$PG_DIR/port")"
    pg_answers() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2; }
    if ! pg_answers; then
      if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
        say "creating a PostgreSQL test cluster in $PG_DIR"
        printf '%s\n' "$PG_PASSWORD" >"$PG_DIR/pwfile"
        chown postgres:postgres "$PG_DIR/pwfile"
        runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_USER" --pwfile="$PG_DIR/pwfile" \
          --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
          || fail "initdb failed; see $PG_DIR/initdb.log"
        rm -f "$PG_DIR/pwfile"
        mkdir -p "$PG_DIR/socket"
        chown postgres:postgres "$PG_DIR/socket"
        cat >>"$PG_DIR/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR/socket'
max_connections = 300
shared_buffers = 64MB
fsync = off
full_page_writes = off
EOF
      fi
      say "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_DIR/server.log)"
      runuser -u postgres -- setsid "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start >/dev/null \
        || fail "PostgreSQL did not start; see $PG_DIR/server.log"
      pg_answers || fail "PostgreSQL does not answer on 127.0.0.1:$PG_PORT; see $PG_DIR/server.log"
    fi
    say "PostgreSQL answers on 127.0.0.1:$PG_PORT"
    echo "DEPLOYBOT_TEST_POSTGRES_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres" >>"$ENV_FILE"
    ;;
esac
