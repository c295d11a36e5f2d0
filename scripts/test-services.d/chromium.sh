# Debian's chromium for the dashboard's browser tests (playwright-core drives it by path;
# Playwright's own browser download cannot work on CI machines).
case "$PHASE" in
  packages) EXTRA_PACKAGES+=(chromium) ;;
  services)
    command -v chromium >/dev/null || fail "chromium is not installed"
    echo "DEPLOYBOT_TEST_CHROMIUM=$(command -v chromium)" >>"$ENV_FILE"
    ;;
esac
