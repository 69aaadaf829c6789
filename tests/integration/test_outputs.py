"""What a watcher sees while a run goes: status.json always parses (it is
replaced atomically), progress goes to stdout as one plain line per
evaluation when stdout is not a terminal, --quiet silences it, and the
contract keys are in every metrics row."""
import json
import os
import subprocess
import tempfile
import time

import pdtest as t

out = tempfile.mkdtemp(prefix="paramd-status-")
cmd = ["mpirun", "-n", "3", "--oversubscribe", "--allow-run-as-root", "-x", "OPENBLAS_NUM_THREADS=1",
       t.EXE, os.path.join(t.SRC, "tests/conf/softmax.yaml"), "--out", out,
       "--set", "training.mode=async", "--set", "training.epochs=3", "--set", "training.eval_every=500"]
job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
reads, bad, phases = 0, [], set()
status = os.path.join(out, "status.json")
while job.poll() is None:
    if os.path.exists(status):
        try:
            with open(status) as f:
                phases.add(json.load(f)["phase"])
            reads += 1
        except (ValueError, KeyError) as e:
            bad.append(repr(e))
    time.sleep(0.005)
stdout, stderr = job.communicate()
t.check(job.returncode == 0, "the run finishes (%d): %s" % (job.returncode, stderr[-300:]))
t.check(reads >= 20 and not bad, "status.json parsed %d times while running, %d failures %s"
        % (reads, len(bad), bad[:3]))
t.check("training" in phases, "status.json says the phase: %s" % sorted(phases))
with open(status) as f:
    t.check(json.load(f)["phase"] == "done", "the final status.json says done")
rows = t.metrics(out)
lines = [l for l in stdout.splitlines() if l.startswith("epoch ")]
t.check(len(lines) == len(rows), "one plain progress line per evaluation: %d lines, %d rows"
        % (len(lines), len(rows)))
t.check("\r" not in stdout and "\033" not in stdout, "no terminal control codes in a log")
t.check(stdout.splitlines()[-1].startswith("done (done)"), "a final line: " + stdout.splitlines()[-1])
for k in ("wall_s", "update", "epoch", "examples", "lr", "train_loss", "test_loss", "test_acc",
          "staleness_mean", "staleness_max", "dropped", "param_norm"):
    t.check(all(k in r for r in rows), "every metrics row has " + k)
# Per-layer gradient norms (exploding / vanishing gradients as they happen):
# the gradient server 0 applied just before each evaluation.
with_g = [r for r in rows if "grad_norm" in r]
t.check(len(with_g) >= len(rows) - 2 and all(set(r["grad_norm"]) == {"W", "b"} for r in with_g),
        "async: gradient norms per tensor in %d of %d rows" % (len(with_g), len(rows)))

# Sync with two servers: server 0 gathers each evaluation snapshot before
# the round's replies go out (so server 1 cannot have stepped further), and
# each server adds its part of the round's sums of squares: test loss and
# gradient norms are those of one server (softmax's W is split between
# them). Evaluating every 10 rounds gives the race many chances.
rows = {}
for servers in (1, 2):
    d, _ = t.run("tests/conf/softmax.yaml", ["training.mode=sync", "training.servers=%d" % servers,
                                             "training.max_updates=300", "training.eval_every=10",
                                             "training.eval_wait=true"],
                 ranks=2 + servers)
    rows[servers] = t.metrics(d)
t.check(len(rows[1]) == 31 and all("grad_norm" in r for r in rows[1][1:]),
        "sync S=1: gradient norms at every evaluation after the first of %d" % len(rows[1]))
close = lambda a, b, tol: abs(a - b) <= tol * abs(a)
diff = [r1["update"] for r1, r2 in zip(rows[1], rows[2])
        if r1["update"] != r2["update"] or not close(r1["test_loss"], r2["test_loss"], 1e-6) or
        ("grad_norm" in r1) != ("grad_norm" in r2) or
        any(not close(r1["grad_norm"][k], r2["grad_norm"][k], 1e-5) for k in r1.get("grad_norm", {}))]
t.check(len(rows[2]) == len(rows[1]) and not diff,
        "sync S=2 evaluations (test loss, gradient norms) equal S=1's; differing at updates %s" % diff)
# Hogwild threads and sparse gradients note them too.
os.chdir(t.SRC)   # tests/conf/sparse.yaml names its data relative to the source tree
for conf, mode, names in (("tests/conf/softmax.yaml", "hogwild", {"W", "b"}),
                          ("tests/conf/sparse.yaml", "async", {"w", "b"})):
    d, _ = t.run(conf, ["training.mode=" + mode, "training.eval_every=100", "training.max_updates=400"],
                 ranks=3)
    m = t.metrics(d)
    with_g = [r for r in m if "grad_norm" in r]
    t.check(len(with_g) >= len(m) - 2 and all(set(r["grad_norm"]) == names and
                                               all(v > 0 for v in r["grad_norm"].values())
                                               for r in with_g),
            "%s %s: gradient norms in %d of %d rows" % (os.path.basename(conf), mode, len(with_g), len(m)))

# Evaluation on a wall-clock cadence, serial and distributed: rows come
# about every 0.2 s (the last one is the final evaluation). Serial softmax
# takes about 0.1 s an epoch, async W=2 about 0.4 s.
for ranks, mode, epochs in ((1, "serial", 12), (3, "async", 3)):
    d, _ = t.run("tests/conf/softmax.yaml", ["training.mode=" + mode, "training.epochs=%d" % epochs,
                                             "training.eval_every=1000000",
                                             "training.eval_every_seconds=0.2"], ranks=ranks)
    w = [r["wall_s"] for r in t.metrics(d)]
    gaps = [b - a for a, b in zip(w, w[1:])][:-1]
    # An evaluation is due 0.2 s after the previous one was started; its row
    # records when it ran, which on a loaded machine (and on the server's
    # evaluation thread) comes late by a varying amount, so one gap can be
    # shorter or longer than 0.2 s without anything wrong. The cadence shows
    # in the count over the span the rows record: no more than one row per
    # 0.2 s (plus one for a late first row), and no fewer than one per 0.6 s
    # (an update's and an evaluation's time, or a stall, may stretch a gap).
    span = sum(gaps)
    t.check(len(gaps) >= 2, "%s: evaluations on the clock: %d gaps between rows >= 2" % (mode, len(gaps)))
    t.check(len(gaps) <= span / 0.2 + 1,
            "%s: no faster than every 0.2 s: %d gaps over %.2f s of rows <= %.1f (span / 0.2 s + 1); gaps %s"
            % (mode, len(gaps), span, span / 0.2 + 1, [round(g, 3) for g in gaps]))
    t.check(len(gaps) >= span / 0.6,
            "%s: none skipped: %d gaps over %.2f s of rows >= %.1f (span / 0.6 s)"
            % (mode, len(gaps), span, span / 0.6))

# Evaluation never stalls training: evaluating every update takes far
# longer than an update (the 10000 test images against two minibatches of
# 32), so evaluations come due while the previous one still runs; each is
# skipped and counted, not waited for. Every due evaluation (each update
# from the first one, when every HELLO is in: 0 in sync, maybe later in
# async; to 100, the last also the final one) either has its row or is
# counted in evals_skipped. With training.eval_wait each one has its row.
for mode, servers in (("sync", 1), ("sync", 2), ("async", 1)):
    sets = ["training.mode=" + mode, "training.servers=%d" % servers, "training.eval_every=1",
            "training.max_updates=100"]
    for wait in ("false", "true"):
        d, _ = t.run("tests/conf/softmax.yaml", sets + ["training.eval_wait=" + wait],
                     ranks=2 + servers)
        s, ups = t.summary(d), [r["update"] for r in t.metrics(d)]
        skipped = s.get("evals_skipped")
        name = "%s S=%d eval_wait=%s" % (mode, servers, wait)
        due = list(range(ups[0], 101))
        t.check(mode == "async" or ups[0] == 0, "%s: the first evaluation at update 0: %d" % (name, ups[0]))
        if wait == "true":
            t.check(skipped == 0 and ups == due, "%s: none skipped (%s), a row at every update "
                    "%d..100 (%d rows)" % (name, skipped, ups[0], len(ups)))
        else:
            t.check(skipped is not None and skipped > 0 and len(ups) + skipped == len(due) and
                    sorted(set(ups)) == ups and set(ups) <= set(due),
                    "%s: evaluations due while one runs are skipped, not waited for: %s skipped "
                    "+ %d rows == %d due" % (name, skipped, len(ups), len(due)))

d, p = t.run("tests/conf/softmax.yaml", ["training.max_updates=100"])
t.check(p.stdout == "", "--quiet prints nothing: %r" % p.stdout[:200])
t.done()
