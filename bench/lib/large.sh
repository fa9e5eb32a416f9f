# One large incompressible file (issue 21): first backup, unchanged
# re-backup and restore by each file tool, with the machine's limit
# (bench/limits) beside them. Sourced, not run.

# large_section: the data set is backed up where it was generated (a copy
# would need another 10 GiB), and only one tool's repository and restore
# exist at a time: the disk needs room for the file, a repository and a
# restore, three times LARGE_FILE_MIB, or twice with the file deleted for
# the restore and generated again after it (large_tool).
large_section() {
	local data round tool
	data=$(data_ensure large)
	if [ ! -s "$DATA/large.sha256" ]; then
		sha256sum <"$data/large.bin" | cut -d' ' -f1 >"$DATA/large.sha256"
	fi
	record large large - bytes "$(bytes_of "$data")"
	record large large - files 1
	for round in $(seq "$ROUNDS"); do
		[ "$ROUNDS" = 1 ] || log "large: round $round of $ROUNDS"
		for tool in "${FILE_TOOLS[@]}"; do
			data=$(data_ensure large) # generated again if a restore needed its room
			run_step large_tool "$data" "$tool"
		done
	done
}

# large_tool DATA TOOL: a new repository, first backup, unchanged
# re-backup, restore into an empty directory, and a check of the restored
# file's SHA-256 against the source's; then the repository and the restore
# go. Without room for the restore beside the file (and 1 GiB to spare),
# the file is deleted first and generated again for the next tool.
large_tool() {
	local data=$1 tool=$2
	local repo="$WORK/repos/large-$tool" dst="$WORK/restore/large-$tool"
	if [ "$tool" = nestguard ] && [ "$NG_STATUS" != ok ]; then
		record large large "$tool" status "TODO: $NG_STATUS"
		return 0
	fi
	log "large: $tool"
	record large large "$tool" status "incomplete, see the logs"
	rm -rf "$repo" "$dst"
	mkdir -p "$(dirname "$repo")" "$dst"
	register dir "$repo"
	register dir "$dst"
	tool_cmd "$tool" init "$repo"
	"${CMD[@]}" >"$LOGS/large-$tool-init.log" 2>&1
	tool_cmd "$tool" backup "$repo" "$data" b1
	measure large large "$tool" first "${CMD[@]}"
	tool_cmd "$tool" backup "$repo" "$data" b2
	measure large large "$tool" unchanged "${CMD[@]}"
	record large large "$tool" repo_bytes "$(bytes_of "$repo")"
	local size avail
	size=$(stat -c %s "$data/large.bin")
	avail=$(df --output=avail -B1 "$WORK" | tail -n 1)
	if [ "$avail" -lt $((size + (1 << 30))) ]; then
		log "  no room for a restore beside the source: deleting it, to be generated again"
		rm -f "$DATA/large.done" "$data/large.bin"
	fi
	tool_cmd "$tool" restore "$repo" "$dst" b2
	measure large large "$tool" restore "${CMD[@]}"
	local want got
	want=$(cat "$DATA/large.sha256")
	got=$(sha256sum <"$dst$data/large.bin" | cut -d' ' -f1) || got="unreadable"
	if [ "$got" = "$want" ]; then
		record large large "$tool" check ok
	else
		record large large "$tool" check DIFFERS
		warn "$tool restored the large file differently: SHA-256 $got, the source's $want"
	fi
	rm -rf "$repo" "$dst"
	record large large "$tool" status ok
}

# limits_section: this machine's per-core rates of every per-byte step of
# nestguard and its disk's, for incompressible and text-like data and for
# a sample of each file data set selected (bench/limits); the report
# prints them after the tables, and the large table each tool's share of
# the limit.
limits_section() {
	local set args=() mib=256 disk=2048
	if [ "$QUICK" = 1 ]; then mib=64 disk=512; fi
	for set in pgdata small tiny mixed; do
		if selected "$set"; then args+=(-data "$set=$(data_ensure "$set")"); fi
	done
	log "limits: building bench/limits and measuring (CPU: $mib MiB a step, disk: $disk MiB)"
	(cd "$ROOT" && go build -o "$WORK/limits" ./bench/limits) >"$LOGS/limits-build.log" 2>&1
	local load0 load1
	read -r load0 _ </proc/loadavg
	"$WORK/limits" -dir "$WORK" -mib "$mib" -disk-mib "$disk" -cores "$(nproc)" -tsv "$RUN/limits.tsv" "${args[@]}" \
		>"$RUN/limits.md" 2>"$LOGS/limits.log"
	read -r load1 _ </proc/loadavg
	echo "load average (1 min) $load0..$load1" >"$RUN/limits.load"
	local key value
	while IFS=$'\t' read -r key value; do
		record limits machine - "$key" "$value"
	done <"$RUN/limits.tsv"
}
