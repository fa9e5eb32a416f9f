# The file-level comparison (issue 2): each data set through each tool.
# Sourced, not run.

FILE_TOOLS=(nestguard restic borg)

# files_section SET: describes the data set, then measures every tool on it.
files_section() {
	local set=$1 data tool
	data=$(data_ensure "$set")
	record files "$set" - bytes "$(bytes_of "$data")"
	record files "$set" - files "$(find "$data" -type f | wc -l)"
	# Rounds interleave the tools, so a machine that drifts slows them alike.
	local round
	for round in $(seq "$ROUNDS"); do
		[ "$ROUNDS" = 1 ] || log "$set: round $round of $ROUNDS"
		for tool in "${FILE_TOOLS[@]}"; do
			run_step files_tool "$set" "$tool"
		done
	done
}

# files_tool SET TOOL: on a fresh working copy of the data set, in this
# order: first backup, unchanged re-backup, 5% changed and backed up again,
# repository size, restore into an empty directory, and a check that the
# restored tree equals the source.
files_tool() {
	local set=$1 tool=$2
	local src="$WORK/src/$set" repo="$WORK/repos/$set-$tool" dst="$WORK/restore/$set-$tool" changed
	if [ "$tool" = nestguard ] && [ "$NG_STATUS" != ok ]; then
		record files "$set" "$tool" status "TODO: $NG_STATUS"
		return 0
	fi
	log "$set: $tool"
	record files "$set" "$tool" status "incomplete, see the logs"
	rm -rf "$src" "$repo" "$dst"
	mkdir -p "$(dirname "$src")" "$(dirname "$repo")" "$dst"
	register dir "$src"
	register dir "$repo"
	register dir "$dst"
	cp -a "$DATA/$set" "$src"

	tool_cmd "$tool" init "$repo"
	"${CMD[@]}" >"$LOGS/files-$set-$tool-init.log" 2>&1
	tool_cmd "$tool" backup "$repo" "$src" b1
	measure files "$set" "$tool" first "${CMD[@]}"
	tool_cmd "$tool" backup "$repo" "$src" b2
	measure files "$set" "$tool" unchanged "${CMD[@]}"
	changed=$(mutate "$set" "$src")
	record files "$set" - changed "$changed"
	tool_cmd "$tool" backup "$repo" "$src" b3
	measure files "$set" "$tool" changed "${CMD[@]}"
	record files "$set" "$tool" repo_bytes "$(bytes_of "$repo")"
	tool_cmd "$tool" restore "$repo" "$dst" b3
	measure files "$set" "$tool" restore "${CMD[@]}"
	# The restore until its files are on disk: nestguard syncs what it
	# restored before it exits, restic and borg leave it to the kernel's
	# flusher; so the target's file system is synced after every tool
	# (for nestguard nothing is left) and that time added: like for like.
	local t0 t1 rs
	rs=$(tail -n 1 "$RUN/time.out" | cut -d' ' -f1)
	t0=$(now_s)
	sync -f "$dst"
	t1=$(now_s)
	record files "$set" "$tool" durable.s "$(awk -v a="$rs" -v b="$(elapsed "$t0" "$t1")" 'BEGIN { printf "%.2f", a + b }')"
	# Restic, borg and nestguard all recreate the absolute source path below
	# the target.
	if diff -rq --no-dereference "$src" "$dst$src" >"$LOGS/files-$set-$tool-check.log" 2>&1; then
		record files "$set" "$tool" check ok
	else
		record files "$set" "$tool" check "DIFFERS"
		warn "$tool restored $set differently, see $LOGS/files-$set-$tool-check.log"
	fi
	rm -rf "$src" "$repo" "$dst"
	record files "$set" "$tool" status ok
}
