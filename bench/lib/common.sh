# Shared helpers of bench/compare: logging, guarded steps, timing, results
# and the cleanup of servers. Sourced, not run.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	printf 'bench/compare: %s\n' "$*" >&2
	exit 1
}

# run_step FN ARGS...: runs one measurement function in a subshell with
# errexit on, so that a failing tool marks its own cells FAIL instead of
# ending the whole run. It must be called as a plain statement: bash ignores
# errexit inside anything called from an if, && or || context. Servers and
# directories the step registered are removed when it ends, whatever
# happened.
run_step() {
	local rc depth=${STEP_DEPTH:-0}
	set +e
	(
		STEP_DEPTH=$((depth + 1))
		set -e
		"$@"
	)
	rc=$?
	set -e
	# A nested step leaves the servers to the step around it.
	if [ "$depth" -eq 0 ]; then
		cleanup_registered
	fi
	if [ "$rc" -ne 0 ]; then
		warn "step '$*' failed (exit $rc); its cells show FAIL, logs in $LOGS"
	fi
	return 0
}

# record SECTION SET TOOL KEY VALUE appends one result; report.sh renders them.
record() {
	printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RESULTS_TSV"
}

# drop_caches makes every timed run read from disk, as a restore after a
# failure would. Without privileges the run is marked "warm cache".
# SKIP_DROP=1 is for a caller that dropped them itself before its timer.
drop_caches() {
	if [ "$DROP_CACHES" = 1 ] && [ "${SKIP_DROP:-0}" != 1 ]; then
		sync
		echo 3 >/proc/sys/vm/drop_caches
	fi
}

probe_drop_caches() {
	DROP_CACHES=0
	if sync && { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
		DROP_CACHES=1
	fi
}

# measure SECTION SET TOOL STEP CMD...: drops the page cache, runs CMD under
# GNU time and records STEP.s (wall seconds), STEP.rss (peak RSS in KiB,
# the largest single process), STEP.cpu (user + system seconds of all its
# processes) and STEP.load (the 1-minute load average before..after). A
# failure records STEP=FAIL and returns 1.
measure() {
	local section=$1 set=$2 tool=$3 step=$4
	shift 4
	local out="$LOGS/$section-$set-$tool-$step.log" tf="$RUN/time.out" secs rss user sys load0 load1
	drop_caches
	log "  $tool: $step"
	read -r load0 _ </proc/loadavg
	if ! /usr/bin/time -f '%e %M %U %S' -o "$tf" "$@" >"$out" 2>&1; then
		record "$section" "$set" "$tool" "$step" FAIL
		warn "$tool $step failed: $*"
		tail -n 15 "$out" >&2
		return 1
	fi
	read -r load1 _ </proc/loadavg
	read -r secs rss user sys < <(tail -n 1 "$tf")
	record "$section" "$set" "$tool" "$step.s" "$secs"
	record "$section" "$set" "$tool" "$step.rss" "$rss"
	record "$section" "$set" "$tool" "$step.cpu" "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')"
	record "$section" "$set" "$tool" "$step.load" "$load0..$load1"
}

# now_s prints the wall clock in seconds with microseconds, for phases
# that are not one command.
now_s() { printf '%s\n' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", b - a }'; }

bytes_of() { du -sb "$@" | awk '{ s += $1 } END { printf "%.0f\n", s }'; }

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The cleanup registry is a file because steps run in subshells, which
# neither share variables nor inherit traps.
register() { printf '%s\n' "$*" >>"$RUN/cleanup.list"; }

cleanup_registered() {
	local list="$RUN/cleanup.list" kind arg
	[ -s "$list" ] || return 0
	# Newest first: a server goes before the directory it lives in.
	tac "$list" | while read -r kind arg; do
		case $kind in
		pg)
			if [ -f "$arg/postmaster.pid" ]; then
				log "stopping PostgreSQL in $arg"
				as_pg "$PGBIN/pg_ctl" -D "$arg" -m immediate -w stop >/dev/null 2>&1 || true
			fi
			;;
		pid)
			if kill -0 "$arg" 2>/dev/null; then
				log "stopping process $arg"
				kill "$arg" 2>/dev/null || true
				for _ in $(seq 50); do kill -0 "$arg" 2>/dev/null || break; sleep 0.1; done
			fi
			;;
		dir) rm -rf "$arg" ;;
		esac
	done
	: >"$list"
}

# as_pg runs a command as the postgres user: PostgreSQL refuses to run as
# root, and archive_command runs as postgres, so everything that touches a
# cluster or its repositories does too.
# AS_PG is the same prefix as an array, for measure and GNU time, which
# cannot run shell functions.
as_pg() { "${AS_PG[@]}" "$@"; }

setup_as_pg() {
	if [ "$(id -u)" = 0 ]; then
		AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups env HOME="$PG_HOME")
	else
		AS_PG=(env HOME="$PG_HOME")
	fi
}
