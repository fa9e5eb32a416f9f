#!/usr/bin/env bash
# PostgreSQL from Debian's packages: the server binaries (initdb, pg_ctl,
# postgres, pgbench), the client tools (psql, pg_dump, pg_amcheck) and the
# postgres user the test harness runs clusters as. Nothing is started here:
# the tests initdb their own throw-away clusters.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && id postgres >/dev/null 2>&1; then
	echo "PostgreSQL present: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql postgresql-contrib >/dev/null
ls -d /usr/lib/postgresql/*/bin
