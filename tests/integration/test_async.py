"""Async and hogwild: train softmax to >= 0.80 in one epoch with W=2,
record staleness, drop and count too-stale gradients, bound staleness by
waiting, account for every gradient; local SGD and EASGD train."""
import os
import subprocess
import tempfile

import pdtest as t

# One epoch of W=2 workers with batch 32 is 1876 updates; the cosine decay
# over them keeps the final accuracy from hanging on the last steps' noise.
for mode in ("async", "hogwild"):
    d, _ = t.run("tests/conf/softmax.yaml", ["training.mode=" + mode, "optimizer.schedule.type=cosine",
                                             "optimizer.schedule.step_size=1876"], ranks=3)
    s = t.summary(d)
    t.check(s["test_acc"] >= 0.80, "%s W=2 one epoch: test_acc %.4f >= 0.80" % (mode, s["test_acc"]))
    t.check_accounting(s, mode)
    t.check(s["staleness_max"] >= 1, "%s records staleness: max %s >= 1" % (mode, s["staleness_max"]))
    m = t.metrics(d)
    t.check(all("staleness_mean" in r for r in m), "%s: staleness in every metrics row" % mode)

# Drop policy: with max_staleness 0 and two workers, stale gradients are
# dropped and counted.
d, _ = t.run("tests/conf/softmax.yaml", ["training.mode=async", "training.max_staleness=0",
                                         "training.staleness_policy=drop",
                                         "training.max_updates=300"], ranks=3)
s = t.summary(d)
t.check(s["dropped"] > 0, "drop policy drops: %s > 0" % s["dropped"])
t.check(s["staleness_max"] == 0, "drop policy keeps applied staleness <= 0: %s" % s["staleness_max"])
t.check_accounting(s, "async drop")
t.check(s["dropped_stale"] > 0, "the drop policy's drops are stale ones: %s" % s["dropped_stale"])

# Wait policy (stale synchronous parallel): nothing dropped, staleness bounded.
d, _ = t.run("tests/conf/softmax.yaml", ["training.mode=async", "training.max_staleness=1",
                                         "training.staleness_policy=wait",
                                         "training.max_updates=300"], ranks=4)
s = t.summary(d)
W, k = 3, 1
# Only the gradients in flight when max_updates is reached are dropped: the
# one that reaches it is applied, the other W-1 workers' are not.
t.check(s["dropped"] <= W - 1, "wait policy drops at most the %d in flight at the end: %s"
        % (W - 1, s["dropped"]))
# The bound the wait policy guarantees. Each worker has one gradient out at a
# time; its clock c counts the gradients the server received from it, and
# the server replies to it (hands it parameters) only while c - min <= k,
# min the slowest active worker's clock. Take worker w replied to at clock c
# and version V: then every other worker u has c_u >= c - k. Until w's next
# gradient arrives, w's clock stays c, so min <= c and u is replied to only
# at c_u <= c + k: its clock ends at most c + k + 1. So u's gradients applied
# meanwhile are at most (c + k + 1) - (c - k) = 2k + 1, w's own none (the
# server applies before it replies), and the staleness of w's gradient, the
# updates since V, is at most (W - 1)(2k + 1): 6 here.
bound = (W - 1) * (2 * k + 1)
t.check(s["staleness_max"] <= bound, "wait policy (SSP, k=%d, W=%d) keeps staleness <= (W-1)(2k+1) = %d: %s"
        % (k, W, bound, s["staleness_max"]))
t.check_accounting(s, "async wait")
t.check(s["dropped_stale"] == 0 and s["dropped"] == s["dropped_at_stop"],
        "wait policy drops only at the stop: %s of %s" % (s["dropped_at_stop"], s["dropped"]))

# Two servers in async mode.
d, _ = t.run("tests/conf/softmax.yaml", ["training.mode=async", "training.servers=2",
                                         "optimizer.schedule.type=cosine",
                                         "optimizer.schedule.step_size=1876"], ranks=4)
s = t.summary(d)
t.check(s["test_acc"] >= 0.80, "async S=2 W=2: test_acc %.4f >= 0.80" % s["test_acc"])
t.check_accounting(s, "async S=2")

for mode in ("local_sgd", "easgd"):
    d, _ = t.run("tests/conf/softmax.yaml", ["training.mode=" + mode, "training.local_steps=4"], ranks=3)
    s = t.summary(d)
    t.check(s["test_acc"] >= 0.80, "%s W=2 one epoch: test_acc %.4f >= 0.80" % (mode, s["test_acc"]))
    t.check_accounting(s, mode)
    if mode == "local_sgd":
        d2, _ = t.run("tests/conf/softmax.yaml", ["training.mode=" + mode, "training.local_steps=4"], ranks=3)
        t.check(t.summary(d2)["params_sha256"] == s["params_sha256"], "local_sgd is bit-reproducible")

# Sparse models push (index, value) pairs. In async and hogwild modes each
# reply carries only the coordinates the worker's next minibatch touches
# (about 160 of the 1001 here: batch 16, ~10 features a row); sync replies
# carry the whole vector, one per gradient plus the first (HELLO).
import os
os.chdir(t.SRC)
N = 1001
for mode, servers in (("sync", 1), ("async", 1), ("hogwild", 1), ("async", 2)):
    d, _ = t.run("tests/conf/sparse.yaml", ["training.mode=" + mode, "training.servers=%d" % servers],
                 ranks=2 + servers)
    s = t.summary(d)
    name = "%s S=%d" % (mode, servers)
    t.check_accounting(s, "sparse " + name)
    t.check(s["test_acc"] >= 0.85, "%s logreg on sparse data: test_acc %.4f >= 0.85" % (name, s["test_acc"]))
    replies = s["gradients_sent"] + 2
    per = s["params_sent_floats"] / replies
    if mode == "sync":
        t.check(s["params_sent_floats"] == replies * N,
                "%s sends whole vectors: %d == %d * %d" % (name, s["params_sent_floats"], replies, N))
    else:
        # server 0 holds [0, 500) when S = 2 (the bias is on server 1)
        own = N if servers == 1 else N // 2
        t.check(per < 0.25 * own, "%s pulls sparse: %.1f floats per reply < 0.25 * %d"
                % (name, per, own))
        t.check(per > 0.10 * own, "%s pulls what the batch touches: %.1f floats per reply > 0.10 * %d"
                % (name, per, own))
# Hogwild has no leader thread: with worker 0 (served by thread 0) 30x
# slow, evaluations still come every 25 updates, driven by whichever
# thread is free (before: only when thread 0 got a message, at 38, 53, 68,
# ...: two rows in one stretch of 25 and none in others). One row in each
# stretch of 25, not at its start: the other thread keeps applying while
# the thread that evaluates waits for the previous evaluation to finish
# (training.eval_wait), so a row can come late (ci8, an idle machine: 258
# for the one due at 250; the check allowed 2 updates then).
d, _ = t.run("tests/conf/softmax.yaml", ["training.mode=hogwild", "training.server_threads=2",
                                         "training.eval_every=25", "training.max_updates=300",
                                         "training.eval_wait=true",
                                         "faults.slow_workers=[{rank: 1, factor: 30}]"], ranks=3)
ups = [r["update"] for r in t.metrics(d)]
t.check(len(ups) == 13 and ups == sorted(set(ups)) and
        [u // 25 for u in ups[:-1]] == list(range(12)) and ups[-1] == 300,
        "hogwild with thread 0's worker slow evaluates once in every 25 updates: %s" % ups)

# A hogwild serving thread that fails ends the others: worker 1 (served by
# thread 1) diverges at once (lr 1e38), and thread 1 fails with "training
# diverged" while thread 0 waits for worker 0, a straggler whose first
# gradient takes 1e7 times its compute time (an hour or more). Thread 0
# leaves its wait on the failure flag, is joined, and the job exits 3 in
# seconds; a thread 0 that kept waiting would hold it past the timeout.
try:
    p = subprocess.run(["mpirun", "-n", "3", "--oversubscribe", "--allow-run-as-root",
                        "-x", "OPENBLAS_NUM_THREADS=1", t.EXE,
                        os.path.join(t.SRC, "tests/conf/softmax.yaml"), "--quiet",
                        "--out", tempfile.mkdtemp(prefix="paramd-hogfail-"),
                        "--set", "training.mode=hogwild", "--set", "training.server_threads=2",
                        "--set", "optimizer.lr=1e38",
                        "--set", "faults.slow_workers=[{rank: 1, factor: 10000000}]"],
                       capture_output=True, text=True, timeout=90,
                       env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    lines = [l for l in p.stderr.splitlines() if l.startswith("paramd:")]
    rc = p.returncode
except subprocess.TimeoutExpired:
    rc, lines = None, ["still running after 90 s"]
t.check(rc == 3 and len(lines) == 1 and "rank 0: training diverged" in lines[0],
        "hogwild: one failing serving thread ends the server (exit 3, one line): %s %r"
        % (rc, lines))
t.done()
