# Renders the recorded results (a TSV of section, set, tool, key, value) as
# markdown tables. Sourced, not run.

# render_report RESULTS_TSV prints the tables of every section that has
# results, with the ratios the issues' goals are stated in.
render_report() {
	python3 - "$1" <<'PY'
import os
import sys
from collections import defaultdict

vals = defaultdict(lambda: defaultdict(list))
order = []
for line in open(sys.argv[1]):
    section, set_, tool, key, value = line.rstrip("\n").split("\t", 4)
    if (section, set_) not in order:
        order.append((section, set_))
    vals[(section, set_, tool)][key].append(value)

def combine(key, vs):
    # Repeated rounds (--rounds) record a value each. Numbers give their
    # median; a failure in any round shows, so that no round hides another.
    try:
        xs = sorted(float(v) for v in vs)
        n = len(xs)
        m = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
        return str(int(m)) if m.is_integer() else repr(m)
    except ValueError:
        pass
    if "FAIL" in vs:
        return "FAIL"
    if key == "status":
        # Each round records "incomplete" first and "ok" once it is done.
        done = vs.count("ok")
        rest = [v for v in vs if v != "ok"]
        return "ok" if done * 2 >= len(vs) else rest[-1]
    return " / ".join(dict.fromkeys(vs))

res = defaultdict(dict)
for k, kv in vals.items():
    for key, vs in kv.items():
        res[k][key] = combine(key, vs)

def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None

def secs(r, k):
    # A failed step is recorded under its name without ".s".
    v = r.get(k, r.get(k[:-2]) if k.endswith(".s") else None)
    return "—" if v is None else v if num(v) is None else "%.2f s" % num(v)

def mib(v):
    return "—" if num(v) is None else "%.1f MiB" % (num(v) / 2**20)

def rss(r, *steps):
    vals = [num(r.get(s + ".rss")) for s in steps]
    vals = [v for v in vals if v is not None]
    return None if not vals else max(vals) * 1024

def rate(nbytes, r, k):
    s = num(r.get(k))
    return "—" if not s or nbytes is None else "%.0f MB/s" % (nbytes / s / 1e6)

def faster(peer, ours):
    # How many times faster ours is than peer (goal: >= 1.5 or 2).
    return "—" if not peer or not ours else "%.2fx" % (peer / ours)

def smaller(peer, ours):
    # Ours as a fraction of peer (goal: <= 1).
    return "—" if not peer or ours is None else "%.2fx" % (ours / peer)

def best(vals):
    vals = [v for v in vals if v is not None]
    return min(vals) if vals else None

def row(cells):
    print("| " + " | ".join(cells) + " |")

def header(cells):
    row(cells)
    row(["---"] * len(cells))

def status_row(tool, r, width):
    st = r.get("status", "not run")
    if st == "ok":
        return False
    if not st.startswith("incomplete"):
        row([tool, st] + [""] * (width - 2))
        return True
    return False

DESC = {
    "pgdata": "PostgreSQL data directory after pgbench -i and a pgbench run (server stopped)",
    "random": "incompressible random data in 4 large files",
    "small": "small text-like files (1-16 KiB) in a tree ~6 deep",
    "tiny": "tiny text-like files (100-400 bytes), 1,000 in each directory",
    "mixed": "a mixed tree: ~40% CSV tables, ~35% incompressible binaries (1-64 MiB), ~25% small files (1-64 KiB)",
}

def every_run(section, set_, steps):
    # Every run, in the order measured, not only the medians.
    lines = []
    rounds = max([len(vals.get((section, set_, t), {}).get(steps[0] + ".s", [])) for t in ("nestguard", "restic", "borg")] + [0])
    for i in range(rounds):
        for tool in ("nestguard", "restic", "borg"):
            kv = vals.get((section, set_, tool), {})
            for step in steps:
                xs = kv.get(step + ".s", [])
                if i >= len(xs):
                    continue
                v = xs[i]
                def at(k):
                    xs = kv.get(k, [])
                    return xs[i] if i < len(xs) else "?"
                lines.append("%-9s round %d %-9s %8s s  cpu %7s s  rss %6.0f MiB  load %s" % (
                    tool, i + 1, step, v, at(step + ".cpu"), (num(at(step + ".rss")) or 0) / 1024, at(step + ".load")))
                if step == "restore" and kv.get("durable.s"):
                    lines[-1] += "  on disk %s s" % at("durable.s")
    if lines:
        print("Every run:\n\n```\n" + "\n".join(lines) + "\n```\n")

def limit_share(section, set_, key, tools):
    # Each tool's rate on the set as a share of the machine's limit for a
    # sample of it (bench/limits, when it ran with the set).
    nbytes = num(res[(section, set_, "-")].get("bytes"))
    lim = res.get(("limits", "machine", "-"), {})
    bl, rl = num(lim.get("backup.limit." + key)), num(lim.get("restore.limit." + key))
    if not (nbytes and bl and rl):
        return
    shares = []
    for tool in tools:
        r = res.get((section, set_, tool), {})
        b, rs = num(r.get("first.s")), num(r.get("restore.s"))
        if b and rs:
            shares.append("%s %.0f%% / %.0f%% (%.0f / %.0f MB/s)" % (
                tool, 100 * nbytes / b / bl, 100 * nbytes / rs / rl, nbytes / b / 1e6, nbytes / rs / 1e6))
    print("The machine's limit on this set (bench/limits, a sample of it stored at %.1f%%): backup %.0f MB/s (%.2f s for the set), "
          "restore %.0f MB/s (%.2f s). Each tool's share of it, first backup / restore: %s.\n" % (
              100 * (num(lim.get("ratio." + key)) or 0), bl / 1e6, nbytes / bl, rl / 1e6, nbytes / rl, ", ".join(shares)))

# Issue 21's goals "toward the limit", checked round by round.
GOALS = {s: (("first backup vs restic", "first.s", ("restic",), 2.0),
             ("restore vs the faster peer", "restore.s", ("restic", "borg"), 1.5),
             ("restore on disk vs the faster peer", "durable.s", ("restic", "borg"), 1.5)) for s in ("mixed", "pgdata")}

def goals_by_round(section, set_):
    out = []
    for name, k, peers, goal in GOALS.get(set_, ()):
        ours = vals.get((section, set_, "nestguard"), {}).get(k, [])
        theirs = [vals.get((section, set_, p), {}).get(k, []) for p in peers]
        theirs = [t for t in theirs if t]
        if not ours or not theirs or any(len(t) != len(ours) for t in theirs):
            out.append("%s: not every round measured, see the logs" % name)
            continue
        xs = [min(float(t[i]) for t in theirs) / float(ours[i]) for i in range(len(ours))]
        held = sum(x >= goal for x in xs)
        out.append("%s (goal >= %.1fx): %s, %s" % (name, goal, ", ".join("%.2fx" % x for x in xs),
                                                   "held in every round" if held == len(xs) else
                                                   "held in none of %d rounds" % len(xs) if held == 0 else
                                                   "held in %d of %d rounds" % (held, len(xs))))
    if out:
        print("Issue 21's goals, round by round: " + "; ".join(out) + ".\n")

def files_table(set_):
    info = res[("files", set_, "-")]
    print("**%s**: %s; %s in %s files; 5%% change: %s.\n" % (
        set_, DESC.get(set_, set_), mib(info.get("bytes")), info.get("files", "?"), info.get("changed", "?")))
    cols = ["tool", "first backup", "unchanged re-backup", "after 5% change", "restore", "restore, on disk",
            "repository", "peak RSS backup", "peak RSS restore", "restore check"]
    header(cols)
    for tool in ("nestguard", "restic", "borg"):
        r = res.get(("files", set_, tool), {})
        if status_row(tool, r, len(cols)):
            continue
        row([tool, secs(r, "first.s"), secs(r, "unchanged.s"), secs(r, "changed.s"), secs(r, "restore.s"), secs(r, "durable.s"),
             mib(r.get("repo_bytes")), mib(rss(r, "first", "unchanged", "changed")), mib(rss(r, "restore")),
             r.get("check", "—")])
    ng = res.get(("files", set_, "nestguard"), {})
    peers = [res.get(("files", set_, t), {}) for t in ("restic", "borg")]
    def peer_best(f):
        return best([f(p) for p in peers])
    cells = ["**nestguard vs best peer**"]
    for k in ("first.s", "unchanged.s", "changed.s", "restore.s", "durable.s"):
        cells.append(faster(peer_best(lambda p: num(p.get(k))), num(ng.get(k))))
    cells.append(smaller(peer_best(lambda p: num(p.get("repo_bytes"))), num(ng.get("repo_bytes"))))
    cells.append(smaller(peer_best(lambda p: rss(p, "first", "unchanged", "changed")), rss(ng, "first", "unchanged", "changed")))
    cells.append(smaller(peer_best(lambda p: rss(p, "restore")), rss(ng, "restore")))
    cells.append("")
    row(cells)
    print("\nLast row: for times, the faster peer's time / nestguard's (goal: >= 1.5x first backup and restore, "
          ">= 2x unchanged); for size and memory, nestguard's / the smaller peer's (goal: <= 1.00x). "
          "\"restore\" is each tool's command as it is: nestguard syncs what it restored before it exits, restic and borg "
          "leave it to the kernel; \"restore, on disk\" adds the time of syncing the target's file system after the "
          "command (for nestguard, nothing is left), so that all are compared with their files on disk.\n")
    limit_share("files", set_, set_, ("nestguard", "restic", "borg"))
    goals_by_round("files", set_)
    every_run("files", set_, ("first", "unchanged", "changed", "restore"))

def pg_table(set_):
    info = res[("pg", set_, "-")]
    print("**pgbench scale %s**: database directory %s; processes: 2 for both.\n" % (info.get("scale", "?"), mib(info.get("bytes"))))
    cols = ["tool", "base backup", "2nd base backup", "stored by 2nd", "WAL archive", "archive call p50 / p95 / max",
            "restore files", "WAL replay", "restore to time (total)", "WAL replayed", "peak RSS backup", "check"]
    header(cols)
    for tool in ("nestguard", "pgbackrest"):
        r = res.get(("pg", set_, tool), {})
        if status_row(tool, r, len(cols)):
            continue
        lat = "—" if "wal_ms_p50" not in r else "%s / %s / %s ms" % (r["wal_ms_p50"], r["wal_ms_p95"], r["wal_ms_max"])
        stored = mib(r.get("base2_stored"))
        if "base2_info_delta" in r:
            stored += " (info: %s)" % mib(r["base2_info_delta"])
        row([tool, secs(r, "base1.s"), secs(r, "base2.s"), stored,
             "—" if "wal_seg_per_s" not in r else "%s seg/s (%s)" % (r["wal_seg_per_s"], r.get("wal_n", "?")),
             lat, secs(r, "restore.s"), secs(r, "replay.s"), secs(r, "pitr.s"), mib(r.get("replay_bytes")),
             mib(rss(r, "base1", "base2")), r.get("check", "—")])
    ng = res.get(("pg", set_, "nestguard"), {})
    br = res.get(("pg", set_, "pgbackrest"), {})
    g = lambda r, k: num(r.get(k))
    row(["**nestguard vs pgBackRest**", faster(g(br, "base1.s"), g(ng, "base1.s")),
         faster(g(br, "base2.s"), g(ng, "base2.s")),
         smaller(g(br, "base2_stored"), g(ng, "base2_stored")),
         faster(g(ng, "wal_seg_per_s"), g(br, "wal_seg_per_s")),
         "", faster(g(br, "restore.s"), g(ng, "restore.s")), faster(g(br, "replay.s"), g(ng, "replay.s")),
         faster(g(br, "pitr.s"), g(ng, "pitr.s")), "",
         smaller(rss(br, "base1", "base2"), rss(ng, "base1", "base2")), ""])
    print("\nLast row: for times, pgBackRest's / nestguard's (goal: >= 1.5x base backup and restore); stored bytes "
          "and memory, nestguard's / pgBackRest's (goal: stored <= 0.33x); WAL archive, nestguard's rate / pgBackRest's. "
          "Goal for the archive call: < 50 ms.\n")

def s3_table(set_):
    info = res[("s3", set_, "-")]
    nbytes = num(info.get("bytes"))
    print("**%s**: %s, %s; MinIO on loopback, on the same disk and cores.\n" % (set_, DESC.get(set_, set_), mib(nbytes)))
    cols = ["tool (backend)", "backup", "backup rate", "restore", "restore rate", "peak RSS backup", "peak RSS restore", "restore check"]
    header(cols)
    names = ("nestguard (local)", "nestguard (s3)", "restic (local)", "restic (s3)")
    for name in names:
        r = res.get(("s3", set_, name), {})
        if status_row(name, r, len(cols)):
            continue
        row([name, secs(r, "backup.s"), rate(nbytes, r, "backup.s"), secs(r, "restore.s"), rate(nbytes, r, "restore.s"),
             mib(rss(r, "backup")), mib(rss(r, "restore")), r.get("check", "—")])
    ngl, ngs, rs = (res.get(("s3", set_, n), {}) for n in (names[0], names[1], names[3]))
    g = lambda r, k: num(r.get(k))
    def pct(local, s3):
        return "—" if not local or not s3 else "%.0f%%" % (100 * local / s3)
    print()
    print("nestguard on S3 as a share of its local speed: backup %s, restore %s (goal >= 80%%). "
          "nestguard on S3 vs restic on S3: backup %s, restore %s faster (goal >= 1.5x).\n" % (
              pct(g(ngl, "backup.s"), g(ngs, "backup.s")), pct(g(ngl, "restore.s"), g(ngs, "restore.s")),
              faster(g(rs, "backup.s"), g(ngs, "backup.s")), faster(g(rs, "restore.s"), g(ngs, "restore.s"))))

def prune_table(set_):
    info = res[("prune", set_, "-")]
    print("**%s**: %s, %s; %s snapshots, each after a different 5%% change, then all but the last 7 forgotten and pruned "
          "(nestguard `forget --keep-last 7 --prune --grace 0`, restic `forget --keep-last 7 --prune`; both keep up to 5%% unused).\n" % (
              set_, DESC.get(set_, set_), mib(info.get("bytes")), info.get("snapshots", "?")))
    cols = ["tool", "forget + prune", "peak RSS", "repository before", "after", "check and restore"]
    header(cols)
    for tool in ("nestguard", "restic"):
        r = res.get(("prune", set_, tool), {})
        if status_row(tool, r, len(cols)):
            continue
        row([tool, secs(r, "prune.s"), mib(rss(r, "prune")), mib(r.get("before_bytes")), mib(r.get("after_bytes")), r.get("check", "—")])
    ng = res.get(("prune", set_, "nestguard"), {})
    rs = res.get(("prune", set_, "restic"), {})
    g = lambda r, k: num(r.get(k))
    row(["**nestguard vs restic**", faster(g(rs, "prune.s"), g(ng, "prune.s")), smaller(rss(rs, "prune"), rss(ng, "prune")),
         smaller(g(rs, "before_bytes"), g(ng, "before_bytes")), smaller(g(rs, "after_bytes"), g(ng, "after_bytes")), ""])
    print("\nLast row: restic's time / nestguard's (goal: >= 2x); memory and sizes, nestguard's / restic's "
          "(goal: memory <= 1.00x, space left after prune within 5%: <= 1.05x).\n")

def large_table(set_):
    info = res[("large", set_, "-")]
    nbytes = num(info.get("bytes"))
    lim = res.get(("limits", "machine", "-"), {})
    cores = num(lim.get("cores")) or os.cpu_count()
    print("**large**: one incompressible file of %s (AES-CTR keystream), backed up where it lies; "
          "restore checked by SHA-256 against the source. MB/s are 10^6 bytes of the file per wall-clock second; per core: over %d cores; "
          "CPU: user + system seconds.\n" % (mib(nbytes), cores))
    cols = ["tool", "first backup", "MB/s", "per core", "CPU", "unchanged re-backup", "restore", "MB/s", "per core", "CPU",
            "repository", "peak RSS backup", "peak RSS restore", "restore check"]
    header(cols)
    def rates(r, k):
        s = num(r.get(k))
        if not s or nbytes is None:
            return ["—", "—"]
        v = nbytes / s / 1e6
        return ["%.0f" % v, "%.0f" % (v / cores)]
    def cpu(r, k):
        v = num(r.get(k))
        return "—" if v is None else "%.1f s" % v
    for tool in ("nestguard", "restic", "borg"):
        r = res.get(("large", set_, tool), {})
        if status_row(tool, r, len(cols)):
            continue
        row([tool, secs(r, "first.s")] + rates(r, "first.s") + [cpu(r, "first.cpu"), secs(r, "unchanged.s"), secs(r, "restore.s")] +
            rates(r, "restore.s") + [cpu(r, "restore.cpu"), mib(r.get("repo_bytes")), mib(rss(r, "first", "unchanged")),
            mib(rss(r, "restore")), r.get("check", "—")])
    bl, rl = num(lim.get("backup.limit.random")), num(lim.get("restore.limit.random"))
    if bl and rl:
        row(["**machine limit** (bench/limits)", "%.2f s" % (nbytes / bl), "%.0f" % (bl / 1e6), "%.0f" % (bl / 1e6 / cores), "",
             "", "%.2f s" % (nbytes / rl), "%.0f" % (rl / 1e6), "%.0f" % (rl / 1e6 / cores), "", "", "", "", ""])
        print()
        shares = []
        for tool in ("nestguard", "restic", "borg"):
            r = res.get(("large", set_, tool), {})
            b, rs = num(r.get("first.s")), num(r.get("restore.s"))
            if b and rs:
                shares.append("%s %.0f%% / %.0f%%" % (tool, 100 * nbytes / b / bl, 100 * nbytes / rs / rl))
        print("Share of the machine's limit (first backup / restore): %s. Goal (issue 21): 1,000 MB/s per core.\n" % ", ".join(shares))
    else:
        print()
    # What a core does with the disk out of the way: the file's bytes over
    # the CPU time spent (user + system), and its inverse.
    per_cpu = []
    for tool in ("nestguard", "restic", "borg"):
        r = res.get(("large", set_, tool), {})
        b, rs = num(r.get("first.cpu")), num(r.get("restore.cpu"))
        if b and rs and nbytes:
            per_cpu.append("%s %.0f / %.0f MB/s (%.2f / %.2f ns a byte)" % (tool, nbytes / b / 1e6, nbytes / rs / 1e6, b * 1e9 / nbytes, rs * 1e9 / nbytes))
    if per_cpu:
        print("Per CPU second (first backup / restore; the bytes over user + system time: what one core does when the disk keeps up): %s.\n" % ", ".join(per_cpu))
    every_run("large", set_, ("first", "unchanged", "restore"))

titles = {"files": "### Files (issue 2)\n", "large": "### A large single file (issue 21)\n", "pg": "### PostgreSQL (issue 3)\n", "s3": "### S3 (issue 4)\n",
          "prune": "### Retention: forget and prune (issue 19)\n"}
seen = set()
for section, set_ in order:
    if set_ == "-" or (section, set_) in seen:
        continue
    seen.add((section, set_))
    if section in titles:
        print(titles.pop(section))
    {"files": files_table, "large": large_table, "pg": pg_table, "s3": s3_table, "prune": prune_table,
     "limits": lambda _: None}[section](set_)
PY
}
