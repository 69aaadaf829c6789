"""Helpers for paramd's integration tests: run paramd (under mpirun when
ranks > 1) on a config with overrides, read the run directory, compare
parameter files. Standard library only; used by tests/mpi/test_*.py."""
import array
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("PARAMD_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
EXE = os.environ.get("PARAMD_EXE", os.path.join(SRC, "build", "src", "paramd"))
MCA = os.environ.get("PARAMD_MCA", "")   # e.g. "btl self,tcp"
FAILURES = []
SKIPPED = []


def run(conf, sets=(), ranks=1, out=None, expect=0, timeout=600, args=()):
    """Run paramd (with extra command-line args); return (run_dir, completed_process)."""
    out = out or tempfile.mkdtemp(prefix="paramd-it-")
    cmd = [EXE, os.path.join(SRC, conf) if not os.path.isabs(conf) else conf, "--out", out, "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    cmd += list(args)
    if ranks > 1:
        mpi = ["mpirun", "-n", str(ranks), "--oversubscribe", "--allow-run-as-root",
               "-x", "OPENBLAS_NUM_THREADS=1"]
        if MCA:
            key, val = MCA.split(" ", 1)
            mpi += ["--mca", key, val]
        cmd = mpi + cmd
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != expect:
        print("command:", " ".join(cmd))
        print("stdout:", p.stdout[-3000:])
        print("stderr:", p.stderr[-3000:])
        fail("exit status %d, expected %d" % (p.returncode, expect))
    return out, p


def start(conf, sets=(), ranks=2, out=None, args=()):
    """Start paramd under mpirun without waiting; return (Popen, run_dir).
    Signal only this Popen's pid or its ranks (ranks_of)."""
    out = out or tempfile.mkdtemp(prefix="paramd-it-")
    cmd = ["mpirun", "-n", str(ranks), "--oversubscribe", "--allow-run-as-root",
           "-x", "OPENBLAS_NUM_THREADS=1"]
    if MCA:
        key, val = MCA.split(" ", 1)
        cmd += ["--mca", key, val]
    cmd += [EXE, os.path.join(SRC, conf) if not os.path.isabs(conf) else conf, "--out", out,
            "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    cmd += list(args)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env), out


def ranks_of(mpirun):
    """{rank: pid} of mpirun's children (the ranks, started by mpirun itself)."""
    found = {}
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % pid) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != mpirun:
                continue
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            found[int(env[b"OMPI_COMM_WORLD_RANK"])] = int(pid)
        except (OSError, ValueError, IndexError, KeyError):
            continue
    return found


def summary(d):
    with open(os.path.join(d, "summary.json")) as f:
        return json.load(f)


def metrics(d):
    with open(os.path.join(d, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def params(d):
    a = array.array("f")
    with open(os.path.join(d, "params.bin"), "rb") as f:
        a.frombytes(f.read())
    if sys.byteorder != "little":
        a.byteswap()
    return a


def max_rel_diff(a, b):
    """max |a-b| / max(max|a|, max|b|): relative to the parameters' scale."""
    if len(a) != len(b):
        return float("inf")
    scale = max(max(abs(x) for x in a), max(abs(x) for x in b), 1e-30)
    return max(abs(x - y) for x, y in zip(a, b)) / scale


def check_accounting(s, name):
    """Every gradient a worker sent is applied, dropped (stale, late or at
    the stop) or bad, exactly once; dropped is the sum of its kinds."""
    kinds = s["dropped_stale"] + s["dropped_late"] + s["dropped_at_stop"]
    check(s["dropped"] == kinds, "%s: dropped %s == stale %s + late %s + at_stop %s"
          % (name, s["dropped"], s["dropped_stale"], s["dropped_late"], s["dropped_at_stop"]))
    check(s["gradients_sent"] == s["gradients_applied"] + s["dropped"] + s["gradients_bad"],
          "%s accounting: %s sent == %s applied + %s dropped + %s bad"
          % (name, s["gradients_sent"], s["gradients_applied"], s["dropped"], s["gradients_bad"]))


def check_phases_accounting(phases):
    """Within each entry of summary.json's "phases", every gradient sent is
    applied, dropped or bad."""
    for p in phases:
        check(p["gradients_sent"] == p["gradients_applied"] + p["dropped"] + p["gradients_bad"],
              "phase %d (%s): sent %d == applied %d + dropped %d + bad %d" % (
                  p["index"], p["mode"], p["gradients_sent"], p["gradients_applied"],
                  p["dropped"], p["gradients_bad"]))


def wait_until(what, cond, proc=None, deadline=300):
    """Poll cond() until it returns something true, and return that. The
    process proc ending first, or deadline seconds (a bound on a wait that
    should take one, never a verdict), fails the test and returns None."""
    end = time.monotonic() + deadline
    while True:
        v = cond()
        if v:
            return v
        if (proc is not None and proc.poll() is not None) or time.monotonic() > end:
            fail("waiting for %s: %s" % (what, "the process exited %s" % proc.returncode
                                          if proc is not None and proc.returncode is not None
                                          else "%d s passed" % deadline))
            return None
        time.sleep(0.05)


def rows_so_far(d):
    """The "update" of each whole row of d/metrics.jsonl so far ([] before
    the file has one), for waiting on a running paramd."""
    try:
        with open(os.path.join(d, "metrics.jsonl")) as f:
            return [json.loads(l)["update"] for l in f if l.endswith("\n")]
    except (OSError, ValueError):
        return []


def checkpoint_sets(d):
    """The updates of d/checkpoints' sets that have a manifest, oldest first."""
    c = os.path.join(d, "checkpoints")
    names = os.listdir(c) if os.path.isdir(c) else []
    return sorted(int(n[5:17]) for n in names if n.startswith("ckpt-") and n.endswith(".manifest"))


def ckpts(d):
    """The names in d/checkpoints, sorted."""
    return sorted(os.listdir(os.path.join(d, "checkpoints")))


def killed_after(run, t_keep):
    """A copy of a finished run as if its job had been killed right after
    the checkpoint at t_keep was written: newer checkpoints, params.bin and
    summary.json gone (metrics.jsonl keeps its later rows, as a killed run's
    would)."""
    d = tempfile.mkdtemp(prefix="paramd-it-")
    shutil.rmtree(d)
    shutil.copytree(run, d)
    for name in ("summary.json", "params.bin", "status.json"):
        if os.path.exists(os.path.join(d, name)):   # a run resumed from such a copy may lack them
            os.remove(os.path.join(d, name))
    for f in ckpts(d):
        if int(f[5:17]) > t_keep:
            os.remove(os.path.join(d, "checkpoints", f))
    return d


def rank_pids(job):
    """{rank: pid} of the MPI ranks that the mpirun this test started (the
    Popen job) runs: its descendants (by /proc/PID/stat's parent), each
    named for certain by the OMPI_COMM_WORLD_RANK of its own environment.
    Never a process found by name: only children of our own job."""
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    stat = f.read()
                parent[int(name)] = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    mine, grew = {job.pid}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in mine} - mine
        grew = bool(more)
        mine |= more
    found = {}
    for p in mine - {job.pid}:
        try:
            with open("/proc/%d/environ" % p, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        for kv in env:
            if kv.startswith(b"OMPI_COMM_WORLD_RANK="):
                found[int(kv.split(b"=", 1)[1])] = p
    return found


def check_lost_worker(out, name, worker, rank, epochs):
    """A run that went on without worker WORKER (rank RANK), killed: its
    summary.json, status.json and last metrics.jsonl row name it and when,
    metrics rows before its loss do not, its shard is untrained from then
    on while every other worker did its EPOCHS, training went on after its
    last gradient, every gradient is accounted for. Returns the summary
    and its workers_lost entry (None if there is not exactly one)."""
    s, rows = summary(out), metrics(out)
    with open(os.path.join(out, "status.json")) as f:
        status = json.load(f)
    lost = s.get("workers_lost", [])
    one = lost[0] if len(lost) == 1 else None
    check(one is not None and one["worker"] == worker and one["rank"] == rank and
          0 < one["last_update"] <= one["update"] <= s["updates"] and one["wall_s"] > 0,
          "%s: summary.json names the lost worker (worker %d, rank %d) and when: %s"
          % (name, worker, rank, lost))
    check(status.get("workers_lost") == lost and rows[-1].get("workers_lost") == lost,
          "%s: status.json and the last metrics row name it too" % name)
    check(one is not None and not any("workers_lost" in r for r in rows if r["wall_s"] < one["wall_s"]),
          "%s: metrics rows before its loss do not" % name)
    per = {w["rank"]: w for w in s["per_worker"]}
    others = [r for r in per if r != rank]
    check(one is not None and per[rank]["lost_at_update"] == one["update"] and
          per[rank]["epochs"] < epochs and
          all(per[r]["epochs"] == epochs and per[r]["lost_at_update"] is None for r in others),
          "%s: its shard is untrained from then on (epochs %s of %d), the others finished theirs"
          % (name, per[rank]["epochs"], epochs))
    check(one is not None and s["exit"] == "done" and s["updates"] > one["last_update"],
          "%s: training went on after its last gradient (%d updates)" % (name, s["updates"]))
    check_accounting(s, name + " with a lost worker")
    return s, one


def mpirun_cmd(ranks, conf, out, sets=(), args=(), recovery=False):
    """The mpirun command line run() uses, for a test that starts it itself."""
    cmd = ["mpirun", "-n", str(ranks), "--oversubscribe", "--allow-run-as-root",
           "-x", "OPENBLAS_NUM_THREADS=1"] + (["--enable-recovery"] if recovery else [])
    if MCA:
        key, val = MCA.split(" ", 1)
        cmd += ["--mca", key, val]
    cmd += [EXE, os.path.join(SRC, conf) if not os.path.isabs(conf) else conf, "--out", out, "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    return cmd + list(args)


def fail(msg):
    print("FAIL:", msg)
    FAILURES.append(msg)


def check(cond, msg):
    print(("ok:   " if cond else "FAIL: ") + msg)
    if not cond:
        FAILURES.append(msg)


def skip(msg):
    """A check that cannot run here: said, counted, and the test exits 77
    (meson test's "skipped") unless something else failed."""
    print("SKIP: " + msg)
    SKIPPED.append(msg)


def done():
    print("%d failed, %d skipped" % (len(FAILURES), len(SKIPPED)))
    sys.exit(1 if FAILURES else 77 if SKIPPED else 0)


def ckpt_section(d, u, part, tag):
    """(bytes, offset of its payload) of section TAG (b"CNTR", b"RUNS", ...)
    of checkpoint part PART at update U in run D (paramd/ckpt.h: a 40-byte
    header, then tagged sections); None if the part has no such section."""
    with open(os.path.join(d, "checkpoints", "ckpt-%012d.%d.pdck" % (u, part)), "rb") as f:
        b = f.read()
    nsec, off = struct.unpack_from("<I", b, 12)[0], 40
    for _ in range(nsec):
        t, _, n = struct.unpack_from("<4sIQ", b, off)
        if t == tag:
            return b, off + 16
        off += 16 + n
    return None


def ckpt_counters(d, u, part=0):
    """(sent, applied, dropped, bad) of a checkpoint part's CNTR section."""
    s = ckpt_section(d, u, part, b"CNTR")
    return struct.unpack_from("<4q", s[0], s[1]) if s else None


def check_resumed_async(d, m, name, servers, exact=True):
    """summary.json of a resumed async/hogwild run that finished at m
    updates: every gradient accounted for, on every server alike, per
    worker too; metrics.jsonl has one row per 40 updates after the first
    (where every HELLO was in): at each multiple of 40 (not exact: hogwild
    threads may step past one before the evaluation, so one row in each
    stretch of 40) and at m. Returns the summary."""
    s = summary(d)
    check(s["updates"] == m and s["gradients_applied"] == m and s["exit"] == "max_updates",
          "%s: finished at %s updates, %s applied, exit %s" % (name, s["updates"],
                                                               s["gradients_applied"], s["exit"]))
    check_accounting(s, name)
    pw = s["per_worker"]
    check(sum(w["applied"] for w in pw) == s["gradients_applied"] and
          sum(w["dropped"] for w in pw) == s["dropped"],
          "%s: per-worker applied and dropped add up: %s" % (name, pw))
    ps = s["per_server"]
    check(len(ps) == servers and
          all((p["applied"], p["bad"], p["dropped"], p["applied_set"]) ==
              (ps[0]["applied"], ps[0]["bad"], ps[0]["dropped"], ps[0]["applied_set"])
              for p in ps),
          "%s: every server applied the same gradients and dropped the same: %s" % (name, ps))
    u = [r["update"] for r in metrics(d)]
    steps = list(range(40, m + 1, 40))
    check(u == sorted(set(u)) and (u[1:] == steps if exact else
                                   [r // 40 for r in u[1:]] == [x // 40 for x in steps] and
                                   u[-1] == m),
          "%s: metrics.jsonl continues, no row twice or missing: %s" % (name, u))
    return s
