# The data sets, generated once per size and cached under $DATA, and the
# deterministic "5% changed" mutation. Sourced, not run.

# data_ensure SET prints the directory of a ready data set.
data_ensure() {
	local set=$1 dir="$DATA/$1"
	if [ ! -f "$dir.done" ]; then
		log "generating data set $set in $dir (cached for later runs)"
		rm -rf "$dir"
		"gen_$set" "$dir" >&2
		touch "$dir.done"
	fi
	printf '%s\n' "$dir"
}

# gen_pgdata: a real PostgreSQL data directory after pgbench -i and a
# pgbench run, with the server stopped cleanly, as file-level tools see it.
gen_pgdata() {
	local dir=$1
	pg_make_cluster "$dir" "$PGDATA_SCALE"
	as_pg "$PGBIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -n -c 2 -j 2 \
		-t "$PGDATA_TXNS" --random-seed=42 postgres >"$LOGS/gen-pgdata-run.log" 2>&1
	pg_stop "$dir"
}

# gen_random: incompressible data in four large files, from AES-CTR
# keystreams (deterministic, and far faster than /dev/urandom).
gen_random() {
	local dir=$1 i
	mkdir -p "$dir"
	for i in 1 2 3 4; do
		dd if=/dev/zero bs=1M count="$RANDOM_FILE_MIB" status=none |
			openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass "pass:nestguard-bench-$i" >"$dir/random-$i.bin"
	done
}

# gen_large: one incompressible file of LARGE_FILE_MIB (issue 21: a large
# single file, which the peers read serially), an AES-CTR keystream as the
# random set's, written at the cipher's speed rather than /dev/urandom's.
gen_large() {
	local dir=$1
	mkdir -p "$dir"
	head -c "$((LARGE_FILE_MIB << 20))" /dev/zero |
		openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass pass:nestguard-bench-large >"$dir/large.bin"
	[ "$(stat -c %s "$dir/large.bin")" = "$((LARGE_FILE_MIB << 20))" ] || die "gen_large: $dir/large.bin is short"
}

# gen_small: many small text-like files (1-16 KiB) in a tree about six deep.
# Each file is a slice of a generated word corpus behind a unique header, so
# files compress like text but do not deduplicate against each other.
gen_small() {
	python3 - "$1" "$SMALL_FILES" <<'PY'
import os, random, sys

root, count = sys.argv[1], int(sys.argv[2])
rng = random.Random(20240601)
letters = "etaoinshrdlcumwfgypbvkjxqz"
words = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(5000)]
lines, size = [], 0
while size < 8 << 20:
    line = " ".join(rng.choices(words, k=rng.randint(4, 14))) + "\n"
    lines.append(line)
    size += len(line)
corpus = "".join(lines).encode()
exts = [".txt", ".log", ".md", ".csv", ".json", ".conf"]
for i in range(count):
    parts = ["d%d" % rng.randrange(4) for _ in range(rng.randint(3, 6))]
    d = os.path.join(root, *parts)
    os.makedirs(d, exist_ok=True)
    n = rng.randint(1024, 16384)
    header = b"file %d\n" % i
    off = rng.randrange(len(corpus) - n)
    with open(os.path.join(d, "f%06d%s" % (i, exts[i % len(exts)])), "wb") as f:
        f.write(header + corpus[off:off + n - len(header)])
PY
}

# gen_tiny: many tiny files (100-400 bytes) in flat directories of 1,000
# files each (TINY_DIRS of them), where the cost per file, not per byte,
# decides. Text-like and unique, as gen_small's, so that they compress but
# do not deduplicate.
gen_tiny() {
	python3 - "$1" "$TINY_DIRS" <<'PY'
import os, random, sys

root, dirs = sys.argv[1], int(sys.argv[2])
rng = random.Random(20261205)
letters = "etaoinshrdlcumwfgypbvkjxqz"
words = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(5000)]
corpus = " ".join(rng.choices(words, k=400000)).encode()
for d in range(dirs):
    path = os.path.join(root, "d%04d" % d)
    os.makedirs(path)
    for i in range(1000):
        n = rng.randint(100, 400)
        header = b"file %d/%d\n" % (d, i)
        off = rng.randrange(len(corpus) - n)
        with open(os.path.join(path, "f%04d.txt" % i), "wb") as f:
            f.write(header + corpus[off:off + n - len(header)])
PY
}

# mutate SET DIR changes 5% of a working copy in place, the same way for
# every tool, and records what it changed.
mutate() {
	local set=$1 dir=$2
	case $set in
	random) mutate_range "$dir" ;;
	*) mutate_files "$dir" ;;
	esac
}

# mutate_files overwrites part of every 20th non-empty file (in path order):
# up to 64 KiB in the middle of it, size unchanged, so a tool must notice the
# new mtime and find the changed chunk.
mutate_files() {
	python3 - "$1" <<'PY'
import os, random, sys

root = sys.argv[1]
files = []
for d, dirs, names in os.walk(root):
    dirs.sort()
    for name in sorted(names):
        p = os.path.join(d, name)
        if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) > 0:
            files.append(p)
rng = random.Random(5)
changed = 0
for p in files[19::20]:
    size = os.path.getsize(p)
    n = min(size, 64 << 10)
    with open(p, "r+b") as f:
        f.seek((size - n) // 2)
        f.write(rng.randbytes(n))
    changed += n
print("%d of %d files, %.1f MiB" % (len(files[19::20]), len(files), changed / 2**20))
PY
}

# mutate_range: the random set has only four files, so 5% of its bytes
# change as one range in the middle of the second file.
mutate_range() {
	local f="$1/random-2.bin" len=$((RANDOM_FILE_MIB * 4 / 20)) off=$((RANDOM_FILE_MIB / 4))
	dd if=/dev/zero bs=1M count="$len" status=none |
		openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass pass:nestguard-bench-change |
		dd of="$f" bs=1M seek="$off" conv=notrunc iflag=fullblock status=none
	echo "1 of 4 files, $len.0 MiB"
}
