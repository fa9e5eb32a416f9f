# Installing the peers, building nestguard, and the one place that knows
# each tool's command line. Sourced, not run.

install_tools() {
	local missing=() cmd pkg
	for cmd in restic:restic borg:borgbackup pgbackrest:pgbackrest /usr/bin/time:time \
		python3:python3 openssl:openssl curl:curl setpriv:util-linux; do
		pkg=${cmd#*:}
		cmd=${cmd%%:*}
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" = 0 ] || die "missing ${missing[*]}: install them (apt-get install -y ${missing[*]}) or run as root"
	log "installing ${missing[*]} from Debian's packages"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -qq "${missing[@]}" >"$LOGS/apt.log" 2>&1; then
		apt-get update -qq >>"$LOGS/apt.log" 2>&1
		apt-get install -y -qq "${missing[@]}" >>"$LOGS/apt.log" 2>&1 ||
			die "apt-get install ${missing[*]} failed, see $LOGS/apt.log"
	fi
}

# build_nestguard sets NG_STATUS to "ok" or to why nestguard is missing from
# the tables: the other tools are still measured when the build fails.
build_nestguard() {
	NG="$WORK/nestguard"
	if [ -n "$NG_BIN" ]; then
		log "measuring the nestguard binary $NG_BIN"
		if cp "$NG_BIN" "$NG"; then NG_STATUS=ok; else NG_STATUS="not found: $NG_BIN"; fi
		return 0
	fi
	log "building nestguard into $NG"
	# make build: the binary users get (static, libzstd when cgo is on).
	if (cd "$ROOT" && make build && cp bin/nestguard "$NG") >"$LOGS/build.log" 2>&1; then
		NG_STATUS=ok
	else
		NG_STATUS="not built: $(grep -m1 -v '^#' "$LOGS/build.log" | cut -c1-100)"
		warn "nestguard did not build ($LOGS/build.log); its rows are marked TODO"
	fi
}

# ng_has_pg_command NAME: whether `nestguard pg NAME` exists yet.
ng_has_pg_command() {
	[ "$NG_STATUS" = ok ] && "$NG" pg --help 2>/dev/null | grep -qE "^[[:space:]]+$1([[:space:]]|\$)"
}

tool_version() {
	case $1 in
	nestguard) if [ "$NG_STATUS" = ok ]; then "$NG" --version 2>/dev/null | head -n1; else echo "nestguard ($NG_STATUS)"; fi ;;
	restic) restic version | cut -d' ' -f1-2 ;;
	borg) borg --version ;;
	pgbackrest) pgbackrest version ;;
	esac
}

# tool_cmd TOOL OP REPO [PATH NAME] sets CMD to the command line of one
# operation: init REPO; backup REPO SOURCE NAME; restore REPO TARGET NAME.
# Settings are equal where the tools allow: passphrase-based encryption
# (nestguard XAES-256-GCM, restic AES-256-CTR+Poly1305, borg repokey-blake2),
# zstd at its default level 3 (nestguard "default", restic auto = SpeedDefault,
# borg zstd,3),
# default chunker sizes, and the tools' own unchanged-file detection.
tool_cmd() {
	local tool=$1 op=$2 repo=$3 path=${4:-} name=${5:-}
	local ng=("$NG" --repo "$repo" --no-progress)
	case $repo in s3://*) ng+=(--insecure-http --s3-path-style) ;; esac
	case $tool:$op in
	nestguard:init) CMD=("${ng[@]}" init) ;;
	nestguard:backup) CMD=("${ng[@]}" backup "$path") ;;
	nestguard:restore) CMD=("${ng[@]}" restore latest --target "$path") ;;
	restic:init) CMD=(restic -r "$repo" init --repository-version 2) ;;
	restic:backup) CMD=(restic -r "$repo" --compression auto backup "$path") ;;
	restic:restore) CMD=(restic -r "$repo" restore latest --target "$path") ;;
	borg:init) CMD=(borg init --encryption=repokey-blake2 "$repo") ;;
	borg:backup) CMD=(borg create --compression "zstd,3" "$repo::$name" "$path") ;;
	# borg extracts into the working directory; env -C keeps it one process.
	borg:restore) CMD=(env -C "$path" borg extract "$repo::$name") ;;
	*) die "tool_cmd: unknown $tool $op" ;;
	esac
}

# tool_env exports what the tools read instead of flags: passphrases and
# caches kept under the work directory.
tool_env() {
	export NESTGUARD_PASSWORD="$PASSPHRASE"
	export RESTIC_PASSWORD="$PASSPHRASE" RESTIC_CACHE_DIR="$WORK/home/restic-cache"
	export BORG_PASSPHRASE="$PASSPHRASE" BORG_BASE_DIR="$WORK/home/borg" BORG_DISPLAY_PASSPHRASE=no
	export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
}
