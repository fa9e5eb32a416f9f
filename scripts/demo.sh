#!/usr/bin/env bash
# The main job on the embedded default: create a local repository in a
# temporary directory, back up a sample tree, change it, back up again,
# verify by reading every byte back, restore, and compare with the source.
set -euo pipefail
bin=${1:-bin/nestguard}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
work=$(mktemp -d "${TMPDIR:-/tmp}/nestguard-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
export NESTGUARD_REPO="$work/repo" NESTGUARD_PASSWORD="demo passphrase, use a real one"

src="$work/data"
mkdir -p "$src/ledger/2026" "$src/empty" "$src/config"
for m in 01 02 03 04 05 06 07 08 09 10 11 12; do
	for d in $(seq 1 28); do
		printf '2026-%s-%02d,txn-%s%02d,%d.%02d,EUR,settled\n' "$m" "$d" "$m" "$d" $((RANDOM * 7)) $((RANDOM % 100))
	done > "$src/ledger/2026/$m.csv"
done
head -c 20000000 /dev/urandom > "$src/blob.bin"
cp "$src/blob.bin" "$src/blob-copy.bin"          # deduplicated
ln "$src/ledger/2026/01.csv" "$src/config/hardlink.csv"
ln -s ../ledger/2026/02.csv "$src/config/symlink.csv"
truncate -s 64M "$src/sparse.img"; printf 'tail' >> "$src/sparse.img"
chmod 0640 "$src/ledger/2026/03.csv"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "nestguard init"
"$bin" init
step "nestguard backup (first)"
"$bin" backup "$src" --tag demo
step "change 1 file, back up again (unchanged files are not read)"
echo "2026-12-29,txn-late,42.00,EUR,settled" >> "$src/ledger/2026/12.csv"
"$bin" backup "$src" --tag demo
step "nestguard snapshots"
"$bin" snapshots
step "nestguard diff (first → second)"
"$bin" diff "$("$bin" snapshots --json | sed -n 's/.*"short_id": "\(.*\)".*/\1/p' | head -1)" latest
step "nestguard stats"
"$bin" stats
step "nestguard verify --read-data"
"$bin" verify --read-data
step "nestguard restore latest"
"$bin" restore latest --target "$work/restore"
diff -r --no-dereference "$src" "$work/restore$src"
echo "restored tree is identical to the source"
