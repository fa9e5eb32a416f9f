# Throw-away PostgreSQL clusters for the data set and the pg section. The
# current cluster's port and socket directory are in PG_PORT and PG_SOCK.
# Sourced, not run.

# pg_make_cluster DIR SCALE [SETTING...]: initdb (with page checksums, as
# production clusters should have), the settings, then pgbench -i at SCALE.
# Leaves it running.
pg_make_cluster() {
	local dir=$1 scale=$2
	shift 2
	# initdb takes an empty directory the postgres user owns, wherever it is.
	mkdir -p "$dir"
	chown postgres: "$dir"
	chmod 700 "$dir"
	as_pg "$PGBIN/initdb" -k -U postgres --auth=trust -D "$dir" >"$LOGS/initdb-$(basename "$dir").log" 2>&1
	pg_conf "$dir" "# bench/compare" "listen_addresses = ''" "shared_buffers = 256MB" "max_wal_size = 2GB" "$@"
	pg_start "$dir"
	log "  pgbench -i -s $scale"
	as_pg "$PGBIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -i -q -s "$scale" postgres \
		>"$LOGS/pgbench-init-$(basename "$dir").log" 2>&1
}

# pg_conf DIR LINE...: appends settings; later lines win over earlier ones.
pg_conf() {
	local dir=$1
	shift
	printf '%s\n' "$@" >>"$dir/postgresql.conf"
}

# pg_listen DIR: a fresh port, and the socket in a new short directory
# (socket paths are limited to ~100 bytes); sets PG_PORT and PG_SOCK.
pg_listen() {
	PG_PORT=$(free_port)
	PG_SOCK=$(mktemp -d /tmp/ngbench-sock.XXXXXX)
	chown postgres: "$PG_SOCK"
	chmod 755 "$PG_SOCK"
	register dir "$PG_SOCK"
	pg_conf "$1" "port = $PG_PORT" "unix_socket_directories = '$PG_SOCK'"
}

pg_start() {
	pg_listen "$1"
	pg_start_as_is "$1"
}

# pg_start_as_is DIR: starts a cluster with the settings it has.
pg_start_as_is() {
	register pg "$1"
	as_pg "$PGBIN/pg_ctl" -D "$1" -l "$PG_HOME/$(basename "$1").log" -w -t 3600 start >/dev/null
}

pg_stop() {
	as_pg "$PGBIN/pg_ctl" -D "$1" -m fast -w -t 600 stop >/dev/null
}

pg_sql() {
	as_pg "$PGBIN/psql" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 -c "$1"
}

pgbench_run() { # SECONDS
	as_pg "$PGBIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -n -c 2 -j 2 -T "$1" postgres
}

# pgbench_tx runs TRANSACTIONS per client (2 clients): each updates one
# random account, so 2 x 8 x scale transactions touch about 1% of the
# ~1640 x scale pages of pgbench_accounts.
pgbench_tx() { # TRANSACTIONS
	as_pg "$PGBIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -n -c 2 -j 2 -t "$1" postgres
}

# pg_wait_promoted waits until recovery has ended (the target was reached
# and the server promoted) and connections work.
pg_wait_promoted() {
	for _ in $(seq 36000); do
		if [ "$(pg_sql 'select pg_is_in_recovery()' 2>/dev/null)" = f ]; then
			return 0
		fi
		sleep 0.1
	done
	die "PostgreSQL did not finish recovery within an hour"
}

# pg_archive_now ends the current WAL segment and waits until the archiver
# has stored it, so that everything written so far is recoverable.
pg_archive_now() {
	local seg
	seg=$(pg_sql 'select pg_walfile_name(pg_switch_wal())')
	for _ in $(seq 6000); do
		if [ "$(pg_sql "select coalesce(last_archived_wal, '') >= '$seg' from pg_stat_archiver")" = t ]; then
			return 0
		fi
		sleep 0.1
	done
	die "WAL segment $seg was not archived within 10 minutes: $(pg_sql 'select failed_count, last_failed_wal from pg_stat_archiver')"
}
