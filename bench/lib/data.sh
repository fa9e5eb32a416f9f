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

# gen_mixed: a mixed tree of MIXED_MIB MiB (issue 21), as a user's
# estate holds: ~40% compressible CSV (per half two large tables and 16
# medium ones), ~35% incompressible binaries of several sizes (AES-CTR
# keystreams, 1-64 MiB at full size), ~25% small files of 1-64 KiB (two
# in three text-like, one in three random bytes) in directories two
# deep. The tree is two halves, part1 and part2, of the same
# composition, so that bench/limits' sample (the first 256 MiB in path
# order) has the mix of the whole. Sizes scale with MIXED_MIB (--quick:
# a tenth, the small files' sizes unchanged, fewer of them).
gen_mixed() {
	python3 - "$1" "$MIXED_MIB" <<'PY'
import os, random, subprocess, sys

root, total_mib = sys.argv[1], int(sys.argv[2])
MiB = 1 << 20
half = total_mib * MiB // 2
scale = total_mib / 512
letters = "etaoinshrdlcumwfgypbvkjxqz"
wrng = random.Random(20261205)
words = ["".join(wrng.choices(letters, k=wrng.randint(2, 10))) for _ in range(5000)]
countries = ["DE", "FR", "US", "GB", "NL", "SE", "PL", "ES", "IT", "JP", "BR", "IN", "CA", "AU", "CH", "AT"]
statuses = ["paid", "paid", "paid", "shipped", "shipped", "pending", "refunded", "cancelled"]
hosts = ["web-%02d" % i for i in range(24)]
levels = ["INFO"] * 8 + ["WARN", "WARN", "ERROR", "DEBUG"]
paths = ["/api/v1/" + "/".join(wrng.choices(words[:300], k=wrng.randint(1, 3))) for _ in range(400)]

def orders(f, size, rng):
    # A sales table: sequential ids, rising timestamps, skewed keys,
    # prices, a free-text note on some rows.
    f.write(b"order_id,created_at,customer_id,country,sku,quantity,unit_price,status,note\n")
    n, oid, t = 0, rng.randrange(10**6), 1700000000 + rng.randrange(10**7)
    skus = ["SKU-%05d" % rng.randrange(100000) for _ in range(2000)]
    out = []
    while n < size:
        oid += 1
        t += rng.randrange(1, 40)
        note = " ".join(rng.choices(words, k=rng.randint(1, 8))) if rng.random() < 0.3 else ""
        line = "%d,%d,%d,%s,%s,%d,%d.%02d,%s,%s\n" % (
            oid, t, int(rng.paretovariate(1.2) * 1000) % 500000, rng.choice(countries), rng.choice(skus),
            rng.randint(1, 12), rng.randrange(1, 2000), rng.randrange(100), rng.choice(statuses), note)
        out.append(line)
        n += len(line)
        if len(out) == 4096:
            f.write("".join(out).encode())
            out = []
    f.write("".join(out).encode())

def events(f, size, rng):
    # A request log exported as CSV: timestamp, host, level, latency,
    # path, status code, message.
    f.write(b"ts_ms,host,level,latency_ms,path,code,message\n")
    n, t = 0, 1700000000000 + rng.randrange(10**10)
    out = []
    while n < size:
        t += rng.randrange(0, 250)
        line = "%d,%s,%s,%.3f,%s,%d,%s\n" % (
            t, rng.choice(hosts), rng.choice(levels), rng.expovariate(1 / 40), rng.choice(paths),
            rng.choice((200, 200, 200, 200, 201, 204, 304, 400, 404, 500)),
            " ".join(rng.choices(words, k=rng.randint(2, 9))))
        out.append(line)
        n += len(line)
        if len(out) == 4096:
            f.write("".join(out).encode())
            out = []
    f.write("".join(out).encode())

def binary(path, size, tag):
    subprocess.run("head -c %d /dev/zero | openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass pass:nestguard-bench-mixed-%s >'%s'"
                   % (size, tag, path), shell=True, check=True)
    if os.path.getsize(path) != size:
        sys.exit("gen_mixed: %s is short" % path)

crng = random.Random(7)
corpus = " ".join(crng.choices(words, k=3 << 20)).encode()
# Binaries of each half in MiB at full size, 89 of 256: ~35%.
binsizes = {1: [64, 16, 4, 2, 1, 1, 1], 2: [32, 32, 12, 8, 2, 2, 1]}
for h in (1, 2):
    rng = random.Random(1000 + h)
    base = os.path.join(root, "part%d" % h)
    for d in ("bin", "csv", "small"):
        os.makedirs(os.path.join(base, d))
    # ~40% CSV: two large tables of 12.5% of the half each, 16 medium
    # ones sharing 15%, of random sizes.
    for i in range(2):
        with open(os.path.join(base, "csv", "orders-large-%d.csv" % i), "wb") as f:
            orders(f, half // 8, rng)
    weights = [rng.uniform(0.5, 1.5) for _ in range(16)]
    for i, w in enumerate(weights):
        size = int(half * 0.15 * w / sum(weights))
        with open(os.path.join(base, "csv", "%s-%02d.csv" % ("events" if i % 2 else "orders", i)), "wb") as f:
            (events if i % 2 else orders)(f, size, rng)
    for i, m in enumerate(binsizes[h]):
        binary(os.path.join(base, "bin", "blob-%02d.bin" % i), int(m * MiB * scale), "%d-%d" % (h, i))
    # ~25% small files of 1-64 KiB in directories two deep.
    ndirs = max(2, round(150 * scale))
    dirs = [os.path.join(base, "small", "d%02d" % (i // 10), "e%d" % (i % 10)) for i in range(ndirs)]
    target, done, i = half // 4, 0, 0
    while done < target:
        n = rng.randint(1 << 10, 64 << 10)
        d = dirs[rng.randrange(ndirs)]
        os.makedirs(d, exist_ok=True)
        if i % 3 == 2:
            data = rng.randbytes(n)
            name = "f%05d.dat" % i
        else:
            header = b"part %d file %d\n" % (h, i)
            off = rng.randrange(len(corpus) - n)
            data = header + corpus[off:off + n - len(header)]
            name = "f%05d.txt" % i
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        done += n
        i += 1
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
