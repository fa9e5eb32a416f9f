# Retention (issue 19): a history of snapshots of a changing data set, then
# forget all but the last 7 and prune, in nestguard and restic. Sourced, not
# run.

PRUNE_TOOLS=(nestguard restic)
# PRUNE_SNAPSHOTS snapshots, about 5% of the files changed between two.
PRUNE_SNAPSHOTS=${PRUNE_SNAPSHOTS:-30}
PRUNE_KEEP=7

prune_section() {
	local data tool round
	data=$(data_ensure pgdata)
	record prune pgdata - bytes "$(bytes_of "$data")"
	record prune pgdata - snapshots "$PRUNE_SNAPSHOTS"
	for round in $(seq "$ROUNDS"); do
		[ "$ROUNDS" = 1 ] || log "prune: round $round of $ROUNDS"
		for tool in "${PRUNE_TOOLS[@]}"; do
			run_step prune_tool "$tool"
		done
	done
}

# prune_tool TOOL: PRUNE_SNAPSHOTS backups of a working copy of the pgdata
# set, each after a different 5% change (untimed), then the timed forget
# and prune, the repository size before and after, a full check of what is
# left, and a restore of the newest snapshot compared with the source.
prune_tool() {
	local tool=$1 src="$WORK/src/prune" repo="$WORK/repos/prune-$tool" dst="$WORK/restore/prune-$tool" i
	if [ "$tool" = nestguard ] && [ "$NG_STATUS" != ok ]; then
		record prune pgdata "$tool" status "TODO: $NG_STATUS"
		return 0
	fi
	log "prune: $tool"
	record prune pgdata "$tool" status "incomplete, see the logs"
	rm -rf "$src" "$repo" "$dst"
	mkdir -p "$(dirname "$src")" "$(dirname "$repo")" "$dst"
	register dir "$src"
	register dir "$repo"
	register dir "$dst"
	cp -a "$DATA/pgdata" "$src"
	tool_cmd "$tool" init "$repo"
	"${CMD[@]}" >"$LOGS/prune-$tool-init.log" 2>&1
	for i in $(seq "$PRUNE_SNAPSHOTS"); do
		[ "$i" = 1 ] || mutate_step "$src" "$i" >>"$LOGS/prune-$tool-mutate.log"
		tool_cmd "$tool" backup "$repo" "$src" "b$i"
		"${CMD[@]}" >>"$LOGS/prune-$tool-backups.log" 2>&1
	done
	record prune pgdata "$tool" before_bytes "$(bytes_of "$repo")"
	case $tool in
	nestguard) CMD=("$NG" --repo "$repo" --no-progress forget --keep-last "$PRUNE_KEEP" --prune --grace 0) ;;
	restic) CMD=(restic -r "$repo" forget --keep-last "$PRUNE_KEEP" --prune) ;;
	esac
	measure prune pgdata "$tool" prune "${CMD[@]}"
	record prune pgdata "$tool" after_bytes "$(bytes_of "$repo")"
	case $tool in
	nestguard) CMD=("$NG" --repo "$repo" --no-progress verify --read-data) ;;
	restic) CMD=(restic -r "$repo" check --read-data) ;;
	esac
	if "${CMD[@]}" >"$LOGS/prune-$tool-check.log" 2>&1; then
		tool_cmd "$tool" restore "$repo" "$dst" "b$PRUNE_SNAPSHOTS"
		"${CMD[@]}" >"$LOGS/prune-$tool-restore.log" 2>&1
		if diff -rq --no-dereference "$src" "$dst$src" >>"$LOGS/prune-$tool-check.log" 2>&1; then
			record prune pgdata "$tool" check ok
		else
			record prune pgdata "$tool" check DIFFERS
		fi
	else
		record prune pgdata "$tool" check "CHECK FAILED"
		warn "$tool: the repository does not check clean after prune, see $LOGS/prune-$tool-check.log"
	fi
	rm -rf "$src" "$repo" "$dst"
	record prune pgdata "$tool" status ok
}

# mutate_step DIR K changes every 20th file (starting at a different one
# for each K) in the middle, with bytes of its own for each K, so that no
# two snapshots share their changes.
mutate_step() {
	python3 - "$1" "$2" <<'PY'
import os, random, sys

root, k = sys.argv[1], int(sys.argv[2])
files = []
for d, dirs, names in os.walk(root):
    dirs.sort()
    for name in sorted(names):
        p = os.path.join(d, name)
        if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) > 0:
            files.append(p)
rng = random.Random(1000 + k)
changed = 0
for p in files[k % 20::20]:
    size = os.path.getsize(p)
    n = min(size, 64 << 10)
    with open(p, "r+b") as f:
        f.seek(rng.randrange(size - n + 1))
        f.write(rng.randbytes(n))
    changed += n
print("step %d: %d of %d files, %.1f MiB" % (k, len(files[k % 20::20]), len(files), changed / 2**20))
PY
}
