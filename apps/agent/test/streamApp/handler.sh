#!/bin/sh
# A long-connection test app (one connection per run, under busybox nc -ll -e): GET / answers the
# release, /health "ok", /events an SSE stream and /ws a WebSocket (RFC 6455 handshake, one text
# frame every 100 ms, client frames ignored). Both streams number their messages, so a gap shows.
rel=$(cat /release)
read -r method target proto
key=""
while read -r line; do
  line=$(printf '%s' "$line" | tr -d '\r')
  [ -z "$line" ] && break
  case "$line" in
    [Ss]ec-[Ww]eb[Ss]ocket-[Kk]ey:*) key=$(printf '%s' "${line#*:}" | tr -d ' ') ;;
  esac
done
case "$target" in
  /health) printf 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n' ;;
  /events)
    printf 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n'
    i=0
    while printf 'data: %s %s\n\n' "$rel" "$i"; do i=$((i + 1)); sleep 0.1; done ;;
  /ws)
    hex=$(printf '%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11' "$key" | sha1sum | cut -c1-40)
    esc=""
    while [ -n "$hex" ]; do b=${hex%"${hex#??}"}; hex=${hex#??}; esc="$esc\\$(printf %03o "0x$b")"; done
    accept=$(printf "$esc" | base64)
    printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n' "$accept"
    i=0
    while :; do
      msg="$rel $i"
      printf "\\201\\$(printf %03o ${#msg})%s" "$msg" || exit 0
      i=$((i + 1)); sleep 0.1
    done ;;
  *) printf 'HTTP/1.1 200 OK\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s\n' "$((${#rel} + 1))" "$rel" ;;
esac
