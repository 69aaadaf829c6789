"""The run directory under disk trouble: a status.json that cannot be
rewritten only warns; a metrics.jsonl row that cannot be written stops the
run cleanly (exit 3, one line naming the file and errno) with params.bin
and summary.json written when there is room for them; a full disk (a small
tmpfs this test mounts, as root) stops the run with exit 3 and leaves only
whole files behind. A run directory that cannot be created or written, or
that holds an earlier run's results, is refused at start with exit 2.
Checks that need a mount print SKIP when mount fails
and are counted as skipped, never as passed."""
import json
import os
import resource
import signal
import subprocess
import tempfile

import pdtest as t

CONF = os.path.join(t.SRC, "tests/conf/softmax.yaml")
SKIPPED = []


def paramd(out, sets=(), ranks=1, fsize=None):
    """Run paramd; fsize limits the size of any file it writes (bytes)."""
    cmd = [t.EXE, CONF, "--out", out, "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    if ranks > 1:
        cmd = ["mpirun", "-n", str(ranks), "--oversubscribe", "--allow-run-as-root",
               "-x", "OPENBLAS_NUM_THREADS=1"] + cmd
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")

    def limit():
        # write(2) past the limit then fails with EFBIG instead of a signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env,
                          preexec_fn=limit if fsize else None, restore_signals=not fsize)


def error_lines(p):
    """paramd's error lines (its warnings left out)."""
    return [l for l in p.stderr.splitlines()
            if l.startswith("paramd:") and not l.startswith("paramd: warning:")]


def whole_rows(out):
    """metrics.jsonl holds only whole JSON rows (None if one is torn)."""
    with open(os.path.join(out, "metrics.jsonl")) as f:
        text = f.read()
    if text and not text.endswith("\n"):
        return None
    try:
        return [json.loads(l) for l in text.splitlines()]
    except ValueError:
        return None


def leftovers(out):
    return sorted(n for n in os.listdir(out) if ".tmp." in n)


def mount_tmpfs(opts):
    d = tempfile.mkdtemp(prefix="paramd-tmpfs-")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", d],
                       capture_output=True, text=True)
    if p.returncode != 0:
        print("SKIP: cannot mount a tmpfs (%s): %s" % (opts, p.stderr.strip()))
        os.rmdir(d)
        return None
    return d


def umount(d):
    subprocess.run(["umount", d], check=False)
    os.rmdir(d)


# -- status.json cannot be replaced (a non-empty directory in its place):
# one warning, the run goes on and finishes with its results.
out = tempfile.mkdtemp(prefix="paramd-disk-")
os.makedirs(os.path.join(out, "status.json", "blocked"))
p = paramd(out, ["training.max_updates=200", "training.eval_every=50"])
warn = [l for l in p.stderr.splitlines() if "warning" in l]
t.check(p.returncode == 0, "a status.json that cannot be written does not stop the run (%d): %s"
        % (p.returncode, p.stderr[-300:]))
t.check(len(warn) == 1 and "status.json" in warn[0], "one warning naming status.json: %r" % warn)
t.check(os.path.exists(os.path.join(out, "summary.json")) and
        t.summary(out)["exit"] == "max_updates", "summary.json written, exit max_updates")
t.check(len(t.metrics(out)) == 5, "every evaluation has its metrics row")

# -- metrics.jsonl cannot grow (RLIMIT_FSIZE: EFBIG on its write), while
# params.bin (31400 bytes) still fits: exit 3, one line, results written.
# (Serial only: mpirun gives its ranks SIGXFSZ back, which kills them.)
for ranks, mode in ((1, "serial"),):
    out = tempfile.mkdtemp(prefix="paramd-disk-")
    p = paramd(out, ["training.mode=" + mode, "training.max_updates=400", "training.eval_every=1"],
               ranks=ranks, fsize=40000)
    lines = error_lines(p)
    t.check(p.returncode == 3, "%s: a metrics row that cannot be written: exit 3 (%d)"
            % (mode, p.returncode))
    t.check(len(lines) == 1 and "metrics.jsonl" in lines[0] and "File too large" in lines[0] and
            "params.bin and summary.json written" in lines[0],
            "%s: one line naming the file, errno and the results: %r" % (mode, lines))
    rows = whole_rows(out)
    t.check(rows is not None and 0 < len(rows) < 400, "%s: metrics.jsonl holds whole rows only (%s)"
            % (mode, None if rows is None else len(rows)))
    s = t.summary(out) if os.path.exists(os.path.join(out, "summary.json")) else {}
    t.check(s.get("exit") == "io_error" and os.path.getsize(os.path.join(out, "params.bin")) == 31400,
            "%s: params.bin and summary.json (exit io_error) written: %s" % (mode, s.get("exit")))
    t.check(rows is not None and s.get("updates", -1) >= rows[-1]["update"],
            "%s: the run stopped after its last row" % mode)
    t.check(leftovers(out) == [], "%s: no temporary files left: %s" % (mode, leftovers(out)))

# -- a full disk: a 64 KiB tmpfs fills with metrics rows; params.bin does
# not fit either. Exit 3, one line naming metrics.jsonl and ENOSPC.
d = mount_tmpfs("size=64k")
if d is None:
    SKIPPED.append("full disk")
else:
    try:
        for ranks, mode in ((1, "serial"), (3, "async")):
            out = os.path.join(d, mode)
            # eval_wait: every due evaluation writes its row (async would
            # skip those due while one runs, and might not fill the disk)
            p = paramd(out, ["training.mode=" + mode, "training.max_updates=1000",
                             "training.eval_every=1", "training.eval_wait=true"], ranks=ranks)
            lines = error_lines(p)
            t.check(p.returncode == 3, "%s, a full disk: exit 3 (%d)" % (mode, p.returncode))
            t.check(len(lines) == 1 and "metrics.jsonl" in lines[0] and
                    "No space left on device" in lines[0],
                    "%s: one line naming the file and errno: %r" % (mode, lines))
            rows = whole_rows(out)
            t.check(rows is not None and len(rows) > 10, "%s: metrics.jsonl holds whole rows only "
                    "(%s)" % (mode, None if rows is None else len(rows)))
            t.check(leftovers(out) == [], "%s: no temporary files left: %s" % (mode, leftovers(out)))
            t.check(not os.path.exists(os.path.join(out, "summary.json")),
                    "%s: no summary.json that does not fit" % mode)
            subprocess.run(["rm", "-rf", out], check=True)
    finally:
        umount(d)

# -- a run directory paramd cannot create or write is refused at start
# with exit 2 (every rank under mpirun, one message), before any training.
f = tempfile.mkstemp(prefix="paramd-file-")[1]
for ranks, mode in ((1, "serial"), (3, "sync")):
    p = paramd(os.path.join(f, "run"), ["training.mode=" + mode], ranks=ranks)
    lines = error_lines(p)
    t.check(p.returncode == 2, "%s: an out_dir under a regular file exits 2 (%d)"
            % (mode, p.returncode))
    t.check(len(lines) == 1 and f in lines[0] and "Not a directory" in lines[0] and
            "--out" in lines[0], "%s: one line naming the path and errno: %r" % (mode, lines))
os.unlink(f)
d = mount_tmpfs("size=1m,ro")
if d is None:
    SKIPPED.append("read-only out_dir")
else:
    try:
        for out in (d, os.path.join(d, "sub")):
            p = paramd(out)
            lines = error_lines(p)
            t.check(p.returncode == 2, "a read-only out_dir %s exits 2 (%d)" % (out, p.returncode))
            t.check(len(lines) == 1 and "Read-only file system" in lines[0] and out in lines[0],
                    "one line naming the path and errno: %r" % lines)
            t.check(p.stdout == "" and "epoch" not in p.stderr, "nothing trained")
    finally:
        umount(d)

# -- a directory that holds a run's results is never overwritten: a second
# run into it is refused (exit 2, saying how to go on) and leaves it as it was.
out = tempfile.mkdtemp(prefix="paramd-disk-")
p = paramd(out, ["training.max_updates=20"])
t.check(p.returncode == 0, "a first run (%d): %s" % (p.returncode, p.stderr[-300:]))
before = {n: open(os.path.join(out, n), "rb").read() for n in sorted(os.listdir(out))}
for ranks, mode in ((1, "serial"), (3, "async")):
    p = paramd(out, ["training.mode=" + mode, "training.max_updates=30"], ranks=ranks)
    lines = error_lines(p)
    t.check(p.returncode == 2, "%s: a second run into the same out_dir exits 2 (%d)"
            % (mode, p.returncode))
    t.check(len(lines) == 1 and "already holds a run's results" in lines[0] and
            "another --out" in lines[0] and "remove" in lines[0],
            "%s: one line saying how to proceed: %r" % (mode, lines))
    after = {n: open(os.path.join(out, n), "rb").read() for n in sorted(os.listdir(out))}
    t.check(after == before, "%s: the first run's files are untouched" % mode)

# -- fsync fails (a disk that takes the writes and cannot flush them; an
# LD_PRELOAD shim fails fsync(2) on one file, and at exit reports a failed
# descriptor still open, i.e. leaked). A result file that cannot be flushed
# stops the run with exit 3 and one line naming it and errno, leaves no
# temporary file and no look-alike behind; status.json only warns.
FSYNC_SHIM = os.environ.get("PARAMD_FSYNC_SHIM", os.path.join(t.SRC, "build", "tests", "libfsync_shim.so"))
for name, want_rc in (("summary.json", 3), ("params.bin", 3), ("status.json", 0)):
    out = tempfile.mkdtemp(prefix="paramd-disk-")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", LD_PRELOAD=FSYNC_SHIM, PARAMD_FSYNC_FAIL=name)
    p = subprocess.run([t.EXE, CONF, "--out", out, "--quiet", "--set", "training.max_updates=40",
                        "--set", "training.eval_every=20"], capture_output=True, text=True,
                       timeout=600, env=env)
    lines, left = error_lines(p), sorted(os.listdir(out))
    t.check(p.returncode == want_rc, "fsync of %s fails: exit %d (%d)" % (name, want_rc, p.returncode))
    t.check("fsync shim: leaked" not in p.stderr, "fsync of %s fails: its descriptor is closed: %r"
            % (name, [l for l in p.stderr.splitlines() if "shim" in l]))
    t.check(not [n for n in left if ".tmp" in n], "fsync of %s fails: no temporary file left: %s"
            % (name, left))
    if want_rc:
        t.check(lines == ["paramd: %s/%s: cannot flush: Input/output error" % (out, name)],
                "fsync of %s fails: one line naming it and errno: %r" % (name, lines))
        t.check(name not in left and "summary.json" not in left,
                "fsync of %s fails: neither it nor summary.json claims a result: %s" % (name, left))
    else:
        warn = [l for l in p.stderr.splitlines() if "warning" in l]
        t.check(len(warn) == 1 and "status.json: cannot flush: Input/output error" in warn[0] and
                not lines and "summary.json" in left,
                "fsync of status.json fails: one warning, the run finishes: %r %s" % (warn, left))

if SKIPPED:
    print("skipped: %s" % ", ".join(SKIPPED))
t.done()
