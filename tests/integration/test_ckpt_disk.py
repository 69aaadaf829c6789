"""A disk that fails while a checkpoint is written: the run stops with
exit 3 and one line naming the checkpoint file and errno, leaves no
temporary file, and the checkpoint before it stays valid: --resume from
it (on a disk that works) ends with the params_sha256 of an uninterrupted
run. Two failures: fsync(2) of the checkpoint at 200 fails with EIO
(LD_PRELOAD fsync_shim.c), serial and sync; and a full disk (a 768 KiB
tmpfs this test mounts, as root: one checkpoint of 512 KiB fits, the
second does not), serial. A mount that fails prints SKIP and is counted
as skipped, never as passed."""
import os
import shutil
import subprocess
import tempfile

import pdtest as t

CONF = os.path.join(t.SRC, "tests/conf/softmax.yaml")
SETS = ["training.max_updates=1000", "training.eval_every=100", "training.eval_wait=true",
        "checkpoint.every_updates=100"]
SHIM = os.environ.get("PARAMD_FSYNC_SHIM", os.path.join(t.SRC, "build", "tests",
                                                        "libfsync_shim.so"))


def paramd(out, sets, ranks=1, env=None):
    cmd = [t.EXE, CONF, "--out", out, "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    e = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
             OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", **(env or {}))
    if ranks > 1:
        mpi = ["mpirun", "-n", str(ranks), "--oversubscribe", "--allow-run-as-root",
               "-x", "OPENBLAS_NUM_THREADS=1"]
        for k in env or {}:
            mpi += ["-x", k]
        cmd = mpi + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=e)


def errors(p):
    return [l for l in p.stderr.splitlines()
            if l.startswith("paramd:") and not l.startswith("paramd: warning:")]


def resumed_equal(name, d, ranks, mode):
    """d's checkpoint at 100 is the newest valid one; resumed to 300 it
    ends as the uninterrupted run does."""
    t.check(t.checkpoint_sets(d) == [100], "%s: the checkpoint at 100 is left: %s"
            % (name, sorted(os.listdir(os.path.join(d, "checkpoints")))))
    ref, _ = t.run(CONF, SETS[1:] + mode + ["training.max_updates=300"], ranks=ranks)
    _, p = t.run(CONF, SETS[1:] + mode + ["training.max_updates=300"], ranks=ranks, out=d,
                 args=["--resume"])
    a, b = t.summary(d), t.summary(ref)
    t.check(a["params_sha256"] == b["params_sha256"] and a["updates"] == 300,
            "%s: resumed from 100 to 300: params_sha256 %s == uninterrupted %s"
            % (name, a["params_sha256"][:16], b["params_sha256"][:16]))


# fsync of the checkpoint at 200 fails with EIO.
for ranks, mode in ((1, []), (3, ["training.mode=sync"])):
    name = "fsync of the checkpoint at 200 fails (%s)" % ("serial" if ranks == 1 else "sync")
    d = tempfile.mkdtemp(prefix="paramd-it-")
    p = paramd(d, SETS + mode, ranks, env={"LD_PRELOAD": SHIM,
                                          "PARAMD_FSYNC_FAIL": "ckpt-000000000200"})
    part = "%s/checkpoints/ckpt-000000000200.0.pdck" % d
    want = "paramd: %s%s: cannot flush: Input/output error" % ("" if ranks == 1 else "rank 0: ",
                                                              part)
    t.check(p.returncode == 3 and errors(p)[:1] == [want],
            "%s: exit 3 (%d), one line naming the file and errno: %r"
            % (name, p.returncode, errors(p)))
    left = sorted(os.listdir(os.path.join(d, "checkpoints")))
    t.check(not [n for n in left if ".tmp" in n], "%s: no temporary left: %s" % (name, left))
    resumed_equal(name, d, ranks, mode)

# A full disk: the second checkpoint does not fit.
mnt = tempfile.mkdtemp(prefix="paramd-tmpfs-")
m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=768k", "tmpfs", mnt],
                   capture_output=True, text=True)
if m.returncode != 0:
    t.skip("cannot mount a tmpfs: %s" % m.stderr.strip())
else:
    try:
        name = "a full disk at the checkpoint at 200 (serial)"
        d = os.path.join(mnt, "run")
        p = paramd(d, SETS)
        want = ("paramd: %s/checkpoints/ckpt-000000000200.0.pdck: write failed: "
                "No space left on device" % d)
        t.check(p.returncode == 3 and errors(p) == [want],
                "%s: exit 3 (%d), one line naming the file and errno: %r"
                % (name, p.returncode, errors(p)))
        left = sorted(os.listdir(os.path.join(d, "checkpoints")))
        t.check(not [n for n in left if ".tmp" in n], "%s: no temporary left: %s" % (name, left))
        moved = tempfile.mkdtemp(prefix="paramd-it-")
        shutil.rmtree(moved)
        shutil.copytree(d, moved)   # onto a disk with room
    finally:
        subprocess.run(["umount", mnt], check=False)
    resumed_equal(name, moved, 1, [])
t.done()
