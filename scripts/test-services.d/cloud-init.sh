# Debian's cloud-init: `cloud-init schema --config-file` checks the user-data that
# `deploybot agents cloud-init` and `deploybot hosts create` hand to new servers. Nothing runs.
case "$PHASE" in
  packages) EXTRA_PACKAGES+=(cloud-init) ;;
  services)
    command -v cloud-init >/dev/null || fail "cloud-init is not installed"
    ;;
esac
