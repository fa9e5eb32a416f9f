#!/usr/bin/env bash
# Headless Chromium from Debian's packages, for the test that opens the
# HTML compliance report the way a reader would and keeps a screenshot
# (cmd/nestguard TestComplianceReportHTML, driven by chromedp through
# internal/chromiumtest). With CI=true a missing Chromium fails that test.
set -euo pipefail
if command -v chromium >/dev/null; then
	echo "Chromium present: $(chromium --version 2>/dev/null | sed -n 1p)"
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
chromium --version | sed -n 1p
