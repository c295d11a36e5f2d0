# Debian's prometheus package: `promtool check metrics` lints GET /metrics of the controller and
# the agent, and a real Prometheus server scrapes a test controller (each test starts its own on
# a free loopback port and stops it; nothing runs between tests).
case "$PHASE" in
  packages) EXTRA_PACKAGES+=(prometheus) ;;
  services)
    command -v promtool >/dev/null || fail "promtool is not installed (Debian package prometheus)"
    command -v prometheus >/dev/null || fail "prometheus is not installed"
    ;;
esac
