"""A traced async run (training.trace: true) resumed from a checkpoint
still replays exactly: the checkpoint names the trace records written up
to its snapshot (their count and hash), --resume continues the run's
trace from there (trace.bin of a finished run, or the unfinished trace of
a killed one; records after the checkpoint are left out), with one
"dropped" record per gradient the checkpoint counts as dropped at the
stop, and paramd --replay of the resumed run reproduces its
params_sha256. Delay compensation (dc) resumed replays exactly too: the
server's stale points start again from each worker's HELLO reply, as
replay assumes. A traced run with sparse pulls resumes and replays exactly
too (the minibatch a worker had drawn for its pull is drawn again). A run
not traced cannot be resumed traced.

Signals are sent once the run is training (a checkpoint exists); each wait
is for a state of the run directory, not for a time."""
import os
import shutil
import signal
import subprocess

import pdtest as t

CONF = "tests/conf/softmax.yaml"
SPARSE = "tests/conf/sparse.yaml"
BASE = ["training.mode=async", "training.trace=true", "training.eval_every=40",
        "training.eval_wait=true", "checkpoint.every_updates=40", "checkpoint.keep=3"]
DC = ["optimizer.name=nesterov", "optimizer.staleness_compensation=dc", "optimizer.dc_lambda=2"]


def replays(d, name):
    """paramd --replay d exits 0 and its summary has d's params_sha256."""
    p = subprocess.run([t.EXE, "--replay", d, "--quiet"], capture_output=True, text=True,
                       timeout=600)
    s = t.summary(d)
    r = t.summary(os.path.join(d, "replay")) if p.returncode == 0 else {}
    t.check(p.returncode == 0 and r.get("params_sha256") == s["params_sha256"] and
            r.get("updates") == s["updates"],
            "%s: --replay of the resumed run reproduces params_sha256 %s after %s updates "
            "(exit %d: %s)" % (name, s["params_sha256"][:16], s["updates"], p.returncode,
                               p.stderr.strip()[-300:]))


def resumed(d, m, name):
    s = t.summary(d)
    t.check(s["updates"] == m and s["exit"] == "max_updates",
            "%s: finished at %s updates (exit %s)" % (name, s["updates"], s["exit"]))
    t.check_accounting(s, name)
    left = [f for f in os.listdir(d) if f.startswith("trace.bin.tmp.")]
    t.check(os.path.exists(os.path.join(d, "trace.bin")) and not left,
            "%s: one trace.bin, no unfinished trace left: %s" % (name, left))
    replays(d, name)


def killed_after(run, t_keep):
    """pdtest's, its replay directory left out too (its trace.bin holds the
    records after t_keep: they are left out on resume)."""
    d = t.killed_after(run, t_keep)
    shutil.rmtree(os.path.join(d, "replay"), ignore_errors=True)
    return d


# Stopped at max_updates 60 and resumed to 120; then killed after 80 (the
# finished trace.bin is longer than the checkpoint's records) and resumed.
name = "traced async W=2"
b, _ = t.run(CONF, BASE + ["training.max_updates=60"], ranks=3)
b, _ = t.run(CONF, BASE + ["training.max_updates=120"], ranks=3, out=b, args=["--resume"])
resumed(b, 120, name + ", stopped at 60 and resumed")
k = killed_after(b, 80)
k, _ = t.run(CONF, BASE + ["training.max_updates=120"], ranks=3, out=k, args=["--resume"])
resumed(k, 120, name + ", killed after 80 and resumed")

# dc (the server's stale points), W=3: the same, killed after 80.
name = "traced async dc W=3"
a, _ = t.run(CONF, BASE + DC + ["training.max_updates=120"], ranks=4)
k = killed_after(a, 80)
k, _ = t.run(CONF, BASE + DC + ["training.max_updates=160"], ranks=4, out=k, args=["--resume"])
resumed(k, 160, name + ", killed after 80 and resumed to 160")

# Sparse pulls (sparse logreg on sparse data): a worker draws its next
# minibatch before the exchange, for its pull; the checkpoint's iterator
# gives it back, so the resumed worker draws it again. Had it skipped it,
# the gradients after the resume would be of other minibatches than the
# replay's, and the replay would differ (it did before the fix).
name = "traced sparse async W=2 (pulls)"
os.chdir(t.SRC)   # the sparse config's data paths are the source tree's
SP = ["training.mode=async", "training.trace=true", "training.eval_every=40",
      "training.eval_wait=true", "checkpoint.every_updates=40", "checkpoint.keep=3"]
b, _ = t.run(SPARSE, SP + ["training.max_updates=60"], ranks=3)
b, _ = t.run(SPARSE, SP + ["training.max_updates=120"], ranks=3, out=b, args=["--resume"])
resumed(b, 120, name + ", stopped at 60 and resumed")
k = killed_after(b, 80)
k, _ = t.run(SPARSE, SP + ["training.max_updates=160"], ranks=3, out=k, args=["--resume"])
resumed(k, 160, name + ", killed after 80 and resumed to 160")

# SIGKILL of every rank of a long run after its second checkpoint: the
# trace is an unfinished temporary file, flushed up to the checkpoint.
name = "traced async W=2, SIGKILL"
p, d = t.start(CONF, BASE + ["training.epochs=1000"], ranks=3)
if t.wait_until("two checkpoints and 3 ranks", proc=p,
                cond=lambda: len(t.checkpoint_sets(d)) >= 2 and len(t.ranks_of(p.pid)) == 3):
    for pid in t.ranks_of(p.pid).values():
        os.kill(pid, signal.SIGKILL)
p.communicate(timeout=300)
t.check(p.returncode != 0 and any(f.startswith("trace.bin.tmp.") for f in os.listdir(d)),
        "%s: the job failed (exit %s), its trace unfinished: %s"
        % (name, p.returncode, sorted(os.listdir(d))))
m = t.checkpoint_sets(d)[-1] + 80
t.run(CONF, BASE + ["training.epochs=1000", "training.max_updates=%d" % m], ranks=3, out=d,
      args=["--resume"])
resumed(d, m, name + ", resumed to %d" % m)

# Not traced, then resumed traced: refused before anything is written.
d, _ = t.run(CONF, [s for s in BASE if s != "training.trace=true"] +
             ["training.max_updates=40"], ranks=3)
with open(os.path.join(d, "metrics.jsonl")) as f:
    before = f.read()
_, p = t.run(CONF, BASE + ["training.max_updates=80"], ranks=3, out=d, args=["--resume"],
             expect=2)
lines = [l for l in p.stderr.splitlines() if l.startswith("paramd")]
t.check(len(lines) == 1 and "ckpt-000000000040.0.pdck: TRCE: no trace position" in lines[0],
        "an untraced run resumed traced is refused in one line: %r" % p.stderr[-600:])
with open(os.path.join(d, "metrics.jsonl")) as f:
    t.check(f.read() == before, "the refused resume leaves metrics.jsonl as it was")
t.done()
