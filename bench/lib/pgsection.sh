# The PostgreSQL comparison (issue 3): nestguard pg against pgBackRest on a
# pgbench database with WAL archiving. Sourced, not run.

PG_TOOLS=(nestguard pgbackrest)

# gen_pgbench: the cluster every tool starts from, stopped, plus real WAL
# segments (archived by cp) for the archive throughput test: those of
# pgbench -i, then of updates of every tenth account until there are enough.
gen_pgbench() {
	local dir=$1 i
	mkdir -p "$dir/stage"
	chown -R postgres: "$dir"
	pg_make_cluster "$dir/data" "$PG_SCALE" "archive_mode = on" \
		"archive_command = 'test ! -f $dir/stage/%f && cp %p $dir/stage/%f'"
	for i in $(seq 0 99); do
		[ "$(find "$dir/stage" -name '0*' ! -name '*.*' | wc -l)" -ge "$WAL_N" ] && break
		pg_sql "update pgbench_accounts set abalance = abalance + 1 where aid % 10 = $((i % 10))"
		pg_sql checkpoint
	done
	pg_sql checkpoint
	pg_stop "$dir/data"
}

pg_section() {
	local tmpl tool
	tmpl=$(data_ensure pgbench)
	record pg pgbench - bytes "$(bytes_of "$tmpl/data")"
	record pg pgbench - scale "$PG_SCALE"
	for tool in "${PG_TOOLS[@]}"; do
		run_step pg_tool "$tool" "$tmpl"
	done
}

# pg_missing TOOL prints why TOOL cannot run the pg comparison yet.
pg_missing() {
	local c
	[ "$1" = nestguard ] || return 0
	if [ "$NG_STATUS" != ok ]; then
		echo "$NG_STATUS"
		return 0
	fi
	for c in backup archive-wal restore-wal restore; do
		if ! ng_has_pg_command "$c"; then
			echo "nestguard pg $c does not exist yet"
			return 0
		fi
	done
}

# pg_tool TOOL TEMPLATE: on a copy of the template cluster archiving through
# TOOL: base backup; pgbench; second base backup (time and stored bytes);
# pgbench; a target time; WAL archive throughput; restore to the target time
# with WAL replay until the server is promoted; check the restored data.
pg_tool() {
	local tool=$1 tmpl=$2 missing
	missing=$(pg_missing "$tool")
	if [ -n "$missing" ]; then
		record pg pgbench "$tool" status "TODO: $missing"
		warn "pg: $tool skipped: $missing"
		return 0
	fi
	log "pg: $tool"
	record pg pgbench "$tool" status "incomplete, see the logs"
	local base="$WORK/pg/$tool"
	local data="$base/data" repo="$base/repo" rdir="$base/restored" pw="$base/passphrase"
	rm -rf "$base"
	mkdir -p "$base" "$repo"
	# PG_KEEP=1 keeps the repository for bench/pitr, which times the
	# restore again and again on it.
	[ "${PG_KEEP:-0}" = 1 ] || register dir "$base"
	cp -a "$tmpl/data" "$data"
	printf '%s\n' "$PASSPHRASE" >"$pw"
	chmod 600 "$pw"
	chown -R postgres: "$base"

	pg_listen "$data"
	"pg_${tool}_setup" "$base"
	pg_start_as_is "$data"
	"pg_${tool}_ready" "$base"

	# A steady state first: the template's bulk updates leave dead tuples
	# and unset hint bits on every page, which autovacuum and first reads
	# would rewrite during the run below, changing every block for both
	# tools. Then about 1% of pages change between the two base backups
	# (the issue's case for the incremental goal).
	pg_sql "vacuum" >/dev/null
	pg_sql checkpoint >/dev/null
	"pg_${tool}_cmd" backup "$base" full
	measure pg pgbench "$tool" base1 "${CMD[@]}"
	local tx=$((8 * PG_SCALE))
	log "  pgbench -t $tx (2 clients: about 1% of pages)"
	pgbench_tx "$tx" >"$LOGS/pg-$tool-pgbench1.log" 2>&1
	local before after
	before=$("pg_${tool}_backup_bytes" "$base")
	"pg_${tool}_cmd" backup "$base" incr
	measure pg pgbench "$tool" base2 "${CMD[@]}"
	after=$("pg_${tool}_backup_bytes" "$base")
	record pg pgbench "$tool" base2_stored $((after - before))
	if [ "$tool" = pgbackrest ]; then
		record pg pgbench "$tool" base2_info_delta "$(pgbackrest_last_delta "$base")"
	fi

	# WAL to replay: a second pgbench run after the last base backup; the
	# target is its end. A commit after the target lets recovery stop there.
	local lsn0 rows target
	lsn0=$(pg_sql 'select pg_current_wal_lsn()')
	log "  pgbench -T $PGBENCH_SECONDS"
	pgbench_run "$PGBENCH_SECONDS" >"$LOGS/pg-$tool-pgbench2.log" 2>&1
	rows=$(pg_sql 'select count(*) from pgbench_history')
	target=$(pg_sql "select to_char(clock_timestamp() at time zone 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
	sleep 0.2
	pg_sql 'create table bench_after_target as select clock_timestamp() as t'
	record pg pgbench "$tool" replay_bytes "$(pg_sql "select pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0')")"
	pg_archive_now
	printf 'target=%s\nrows=%s\n' "$target" "$rows" >"$base/pitr.env"
	# PG_WAL_RATE=0 leaves out the archive throughput (bench/pitr --setup).
	[ "${PG_WAL_RATE:-1}" = 0 ] || pg_wal_throughput "$tool" "$base" "$tmpl/stage"
	pg_stop "$data"

	mkdir -m 700 "$rdir"
	chown postgres: "$rdir"
	drop_caches
	local t0 t1 t2
	t0=$(now_s)
	"pg_${tool}_cmd" restore "$base" "$target"
	local ngstart=0 step=restore
	if [ "$tool" = nestguard ] && pg_ng_start; then
		# The command includes the replay: restore.s is its own split.
		ngstart=1 step=restore_start
	fi
	SKIP_DROP=1 measure pg pgbench "$tool" "$step" "${CMD[@]}"
	t1=$(now_s)
	# Both restored clusters keep the source's port and socket (the source
	# is stopped). nestguard starts its own (--start) unless pg_ng_start
	# says no.
	if [ "${PG_KEEP:-0}" = 1 ]; then
		# The kept repository must not get the promoted server's timeline.
		pg_conf "$rdir" "archive_mode = off"
	fi
	if [ "$ngstart" = 1 ]; then
		register pg "$rdir"
	else
		pg_start_as_is "$rdir"
	fi
	pg_wait_promoted
	t2=$(now_s)
	if [ "$ngstart" = 1 ]; then
		# The restore's own split ("time: restore 3.1s, WAL replay 3.4s,
		# total ..."); the bench's wait for the promotion counts as replay.
		local split
		split=$(pg_ng_split "$LOGS/pg-pgbench-$tool-$step.log")
		record pg pgbench "$tool" restore.s "${split% *}"
		record pg pgbench "$tool" replay.s "$(awk -v r="${split#* }" -v a="$t1" -v b="$t2" 'BEGIN { printf "%.2f\n", r + b - a }')"
	else
		record pg pgbench "$tool" replay.s "$(elapsed "$t1" "$t2")"
	fi
	record pg pgbench "$tool" pitr.s "$(elapsed "$t0" "$t2")"
	if [ "$(pg_sql 'select count(*) from pgbench_history')" = "$rows" ] &&
		[ "$(pg_sql "select to_regclass('bench_after_target') is null")" = t ]; then
		record pg pgbench "$tool" check ok
	else
		record pg pgbench "$tool" check "WRONG POINT"
		warn "pg: $tool restored to the wrong point in time"
	fi
	pg_stop "$rdir"
	if [ "${PG_KEEP:-0}" = 1 ]; then
		# What bench/pitr needs is the repository and pitr.env.
		rm -rf "$data" "$rdir" "$base"/walrepo*
	fi
	record pg pgbench "$tool" status ok
}

# pg_wal_throughput TOOL BASE STAGE pushes WAL_N real segments, one call each
# from the data directory as PostgreSQL does, into a separate archive, and
# records segments per second and the per-call latency. Each segment is
# read once before its call, untimed: PostgreSQL archives a segment it has
# just written, whose pages are in the page cache (a read from the disk
# would time the disk, 16 MiB at 0.4-0.5 GB/s here, not the tool).
#
# Each call is timed as PostgreSQL's archiver makes it: by the postgres
# user, through /bin/sh -c. The loop runs as postgres (one as_pg for all
# the calls), so the wrapper the bench needs as root to become postgres
# (setpriv --init-groups, then env: 11 ms a call here, for either tool) is
# not timed; until 2026-12-06 it was (docs/benchmarks.md).
pg_wal_throughput() {
	local tool=$1 base=$2 stage=$3 n=0
	local times="$base/wal-times" loop="$base/wal-loop.sh" segs
	"pg_${tool}_cmd" walinit "$base"
	"${CMD[@]}" >"$LOGS/pg-$tool-walinit.log" 2>&1
	"pg_${tool}_cmd" archive "$base"
	# The call as archive_command would name it: CMD without the as_pg
	# prefix, the segment's path appended.
	local call
	call=$(printf '%q ' "${CMD[@]:${#AS_PG[@]}}")
	# awk, not head: head leaves before sort has written every name when
	# the run wrote more than a pipe's buffer of them, and sort's SIGPIPE
	# fails the step under pipefail (exit 141, seen on a fast machine).
	segs=$(find "$stage" -name '0*' ! -name '*.*' -printf '%f\n' | sort | awk -v n="$WAL_N" 'NR <= n')
	cat >"$loop" <<-LOOP
		cd $(printf '%q' "$base/data") || exit 1
		for seg in $(echo $segs); do
			cat $(printf '%q' "$stage")/\$seg >/dev/null
			t0=\$EPOCHREALTIME
			/bin/sh -c $(printf '%q' "$call")$(printf '%q' "$stage")/\$seg >&3 2>&3 || echo "archive of \$seg failed" >&2
			t1=\$EPOCHREALTIME
			echo "\${t0/,/.} \${t1/,/.}"
		done
	LOOP
	log "  $tool: archive $WAL_N WAL segments"
	drop_caches
	# The calls' output goes to fd 3: the log, which root opens.
	as_pg bash "$loop" >"$times" 3>>"$LOGS/pg-$tool-archive.log"
	n=$(wc -l <"$times")
	record pg pgbench "$tool" wal_n "$n"
	awk '{ printf "%.3f\n", ($2 - $1) * 1000 }' "$times" | sort -n |
		awk '{ ms[NR] = $1; sum += $1 }
		END {
			printf "wal_seg_per_s\t%.1f\n", NR / (sum / 1000)
			printf "wal_ms_p50\t%.0f\n", ms[int((NR + 1) / 2)]
			printf "wal_ms_p95\t%.0f\n", ms[int(NR * 0.95 + 0.999)]
			printf "wal_ms_max\t%.0f\n", ms[NR]
		}' | while IFS=$'\t' read -r k v; do
		record pg pgbench "$tool" "$k" "$v"
	done
}

# --- nestguard ---------------------------------------------------------

# pg_nestguard_setup: a repository opened by a generated key file, as
# 'nestguard pg archive-wal --help' says archive_command should be (a
# passphrase costs an Argon2id derivation per call). pgBackRest's cipher
# passphrase in its configuration file plays the same part.
pg_nestguard_setup() {
	local base=$1
	pg_nestguard_repo "$base" repo
	pg_conf "$base/data" "archive_mode = on" \
		"archive_command = '$NG --repo $base/repo --key-file $base/repo.key --no-progress pg archive-wal %p'"
}

# pg_nestguard_repo BASE NAME: init BASE/NAME and write its key file,
# BASE/NAME.key.
pg_nestguard_repo() {
	local base=$1 name=$2
	as_pg "$NG" --repo "$base/$name" --password-file "$base/passphrase" init --compression fastest >>"$LOGS/pg-nestguard-init.log" 2>&1
	as_pg "$NG" --repo "$base/$name" --password-file "$base/passphrase" key add \
		--generate-key-file "$base/$name.key" --label archive_command >>"$LOGS/pg-nestguard-init.log" 2>&1
}

pg_nestguard_ready() { :; }

# pg_ng_start says whether nestguard restores with its own --start, as a
# user does to get the measured recovery time: by default yes (NG_PG_START=0
# starts its server with pg_ctl like pgBackRest's), never for bench/pitr's
# kept repositories (PG_KEEP=1), whose restored servers must not archive.
pg_ng_start() { [ "${PG_KEEP:-0}" != 1 ] && [ "${NG_PG_START:-1}" = 1 ]; }

# pg_ng_split LOG prints the restore's and the replay's seconds from the
# last line of 'pg restore --start' (Go durations: 850ms, 3.2s, 1m2.5s).
pg_ng_split() {
	sed -n 's/^time: restore \([^,]*\), WAL replay \([^,]*\),.*/\1 \2/p' "$1" | tail -n 1 |
		awk 'function s(d,   t, n) {
			t = 0
			while (match(d, /^[0-9.]+(ms|µs|us|h|m|s)/)) {
				n = substr(d, 1, RLENGTH); d = substr(d, RLENGTH + 1)
				if (n ~ /ms$/) t += n / 1000; else if (n ~ /(µs|us)$/) t += n / 1e6
				else if (n ~ /h$/) t += n * 3600; else if (n ~ /m$/) t += n * 60; else t += n
			}
			return t
		} { printf "%.2f %.2f\n", s($1), s($2) }'
}

# pg_nestguard_cmd OP BASE [ARG] sets CMD. GOMAXPROCS=2 matches
# pgBackRest's --process-max=2 whatever the machine has. The restored server
# is started by nestguard's own --start (see pg_ng_start), pgBackRest's with
# pg_ctl; both are timed from the restore's start to the promoted server.
pg_nestguard_cmd() {
	local op=$1 base=$2 arg=${3:-}
	local ng=("${AS_PG[@]}" GOMAXPROCS=2 "$NG" --no-progress)
	local main=("${ng[@]}" --repo "$base/repo" --key-file "$base/repo.key")
	case $op in
	backup) CMD=("${main[@]}" pg backup --pgdata "$base/data" --dsn "host=$PG_SOCK port=$PG_PORT user=postgres dbname=postgres") ;;
	restore)
		CMD=("${main[@]}" pg restore --target "$base/restored" --to-time "$arg" --target-action promote)
		if pg_ng_start; then CMD+=(--start); fi
		;;
	walinit) CMD=(pg_nestguard_repo "$base" walrepo) ;;
	archive) CMD=("${ng[@]}" --repo "$base/walrepo" --key-file "$base/walrepo.key" pg archive-wal) ;;
	esac
}

# Stored bytes of base backups: everything but the WAL archive.
pg_nestguard_backup_bytes() { du -sb --exclude=wal "$1/repo" | cut -f1; }

# --- pgBackRest ----------------------------------------------------------

# pg_pgbackrest_setup writes a configuration equal to nestguard's settings:
# zstd level 1, passphrase-based AES-256 encryption, 2 processes, a fast
# checkpoint at backup start (which nestguard's backup also asks for).
pg_pgbackrest_setup() {
	local base=$1
	mkdir -p "$base/lock" "$base/spool"
	cat >"$base/pgbackrest.conf" <<-CONF
		[global]
		repo1-path=$base/repo
		repo1-cipher-type=aes-256-cbc
		repo1-cipher-pass=$PASSPHRASE
		repo1-retention-full=99
		compress-type=zst
		compress-level=1
		process-max=2
		start-fast=y
		lock-path=$base/lock
		spool-path=$base/spool
		log-path=$base
		log-level-console=warn
		log-level-file=off

		[bench]
		pg1-path=$base/data
		pg1-port=$PG_PORT
		pg1-socket-path=$PG_SOCK

		[walbench]
		pg1-path=$base/data
		pg1-port=$PG_PORT
		pg1-socket-path=$PG_SOCK
	CONF
	chown -R postgres: "$base"
	pg_conf "$base/data" "archive_mode = on" \
		"archive_command = 'pgbackrest --config=$base/pgbackrest.conf --stanza=bench archive-push %p'"
}

pg_pgbackrest_ready() {
	as_pg pgbackrest --config="$1/pgbackrest.conf" --stanza=bench stanza-create >"$LOGS/pg-pgbackrest-stanza.log" 2>&1
}

pg_pgbackrest_cmd() {
	local op=$1 base=$2 arg=${3:-}
	local br=("${AS_PG[@]}" pgbackrest --config="$base/pgbackrest.conf")
	case $op in
	backup) CMD=("${br[@]}" --stanza=bench --type="$arg" backup) ;;
	# The target in PostgreSQL's own format: 2006-01-02 15:04:05.999999+00.
	restore)
		arg=${arg/T/ }
		CMD=("${br[@]}" --stanza=bench --pg1-path="$base/restored" --type=time "--target=${arg%Z}+00" --target-action=promote restore)
		;;
	walinit) CMD=("${br[@]}" --stanza=walbench stanza-create) ;;
	archive) CMD=("${br[@]}" --stanza=walbench archive-push) ;;
	esac
}

pg_pgbackrest_backup_bytes() { du -sb "$1/repo/backup" | cut -f1; }

# pgbackrest_last_delta: what pgBackRest itself says the newest backup
# added to the repository.
pgbackrest_last_delta() {
	as_pg pgbackrest --config="$1/pgbackrest.conf" --stanza=bench info --output=json |
		python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["backup"][-1]["info"]["repository"]["delta"])'
}
