"""Sync without server ranks (training.servers: 0, src/ps/colocated.c):
every rank is a worker that also sums and steps one range. It must be the
same training as one dedicated server, bit for bit: the same sums in the
same order, the same element-wise steps; evaluations of one version;
accounting exact; refused outside sync mode."""
import pdtest as t

# Rows are compared: every due evaluation waits for the previous one
# (training.eval_wait), so none is skipped on a loaded machine.
base = ["training.mode=sync", "training.max_updates=150", "training.eval_every=50",
        "training.eval_wait=true"]


def same(a, b, what):
    sa, sb = t.summary(a), t.summary(b)
    t.check(sa["params_sha256"] == sb["params_sha256"], "%s: params_sha256 %s == %s"
            % (what, sa["params_sha256"][:12], sb["params_sha256"][:12]))
    ra = [(r["update"], r["test_loss"], r.get("train_loss"), r.get("grad_norm")) for r in t.metrics(a)]
    rb = [(r["update"], r["test_loss"], r.get("train_loss"), r.get("grad_norm")) for r in t.metrics(b)]
    t.check(ra == rb, "%s: the same metrics rows (update, test/train loss, grad norms): %s vs %s"
            % (what, ra[-1:], rb[-1:]))
    return sb


# W=2 and W=3 (uneven ranges), momentum and nesterov (the lookahead point):
# the same bits as 1 server + W workers, and the same again on a second run.
for opt, W in (("momentum", 2), ("nesterov", 2), ("adam", 3)):
    sets = base + ["optimizer.name=" + opt, "optimizer.lr=default"]
    ded, _ = t.run("tests/conf/softmax.yaml", sets, ranks=W + 1)
    col, _ = t.run("tests/conf/softmax.yaml", sets + ["training.servers=0"], ranks=W)
    s = same(ded, col, "%s W=%d servers=0 vs 1 server" % (opt, W))
    t.check(s["servers"] == 0 and s["workers"] == W, "summary: servers %s == 0, workers %s == %d"
            % (s["servers"], s["workers"], W))
    t.check(s["updates"] == 150 and s["gradients_applied"] == 150 * W,
            "150 rounds of %d gradients: updates %s, applied %s" % (W, s["updates"], s["gradients_applied"]))
    t.check_accounting(s, "servers=0 %s W=%d" % (opt, W))
again, _ = t.run("tests/conf/softmax.yaml", sets + ["training.servers=0"], ranks=3)
t.check(t.summary(again)["params_sha256"] == t.summary(col)["params_sha256"],
        "servers=0 W=3 twice: the same params_sha256")

# A whole epoch (W=3, batch 700: each shard's last batch is short, so the
# weights of the last round differ from the others'): every gradient applied.
ep = ["training.mode=sync", "training.epochs=1", "training.batch_size=700", "training.eval_wait=true"]
ded, _ = t.run("tests/conf/softmax.yaml", ep, ranks=4)
col, _ = t.run("tests/conf/softmax.yaml", ep + ["training.servers=0"], ranks=3)
s = same(ded, col, "one epoch W=3 servers=0 vs 1 server")
t.check(s["gradients_sent"] == s["gradients_applied"] == t.summary(ded)["gradients_applied"],
        "every gradient applied: sent %s, applied %s" % (s["gradients_sent"], s["gradients_applied"]))
t.check_accounting(s, "servers=0 one epoch")

# Time-triggered evaluations are of one version: each row's test loss is
# the one a run evaluating every update has at that update.
ref, _ = t.run("tests/conf/softmax.yaml", ["training.mode=sync", "training.max_updates=120",
                                           "training.eval_every=1", "training.servers=0",
                                           "training.eval_wait=true"], ranks=2)
by_update = {r["update"]: r["test_loss"] for r in t.metrics(ref)}
timed, _ = t.run("tests/conf/softmax.yaml", ["training.mode=sync", "training.max_updates=120",
                                             "training.servers=0", "training.eval_every=1000000",
                                             "training.eval_every_seconds=0.001",
                                             "training.eval_wait=true"], ranks=2)
rows = t.metrics(timed)
bad = [(r["update"], r["test_loss"], by_update[r["update"]]) for r in rows
       if r["test_loss"] != by_update[r["update"]]]
t.check(len(rows) >= 5 and not bad, "servers=0 time-triggered evaluations are of one version: "
        "%d rows, mismatches %s" % (len(rows), bad[:3]))

# Evaluation never stalls the ranks: evaluating every update (10000 test
# images against two minibatches of 32), evaluations due while the previous
# one runs are skipped and counted; each due one has a row or a count.
d, _ = t.run("tests/conf/softmax.yaml", ["training.mode=sync", "training.servers=0",
                                         "training.eval_every=1", "training.max_updates=100"], ranks=2)
s, ups = t.summary(d), [r["update"] for r in t.metrics(d)]
sk = s.get("evals_skipped")
t.check(ups[0] == 0 and sk is not None and sk > 0 and len(ups) + sk == 101 and sorted(set(ups)) == ups,
        "servers=0 eval_every=1: %s skipped + %d rows == 101 due" % (sk, len(ups)))

# Clipping by the global norm: the norm is summed from per-range parts
# (as with 2 servers), so it agrees closely, not bit for bit.
clip = base + ["optimizer.clip_norm=0.5"]
one, _ = t.run("tests/conf/softmax.yaml", clip, ranks=3)
col, _ = t.run("tests/conf/softmax.yaml", clip + ["training.servers=0"], ranks=2)
r = t.max_rel_diff(t.params(one), t.params(col))
t.check(r < 1e-5, "clip_norm servers=0 vs 1 server: max rel diff %.3g < 1e-5" % r)

# Only sync mode runs without server ranks; backup workers need them.
# (Checkpoints and --resume: test_resume_rounds.py.)
for sets, key in ((["training.mode=async", "training.servers=0"], "training.servers"),
                  (["training.mode=sync", "training.servers=0", "training.backup_workers=1"],
                   "training.backup_workers")):
    _, p = t.run("tests/conf/softmax.yaml", sets, ranks=2, expect=2)
    t.check(key in p.stderr, "%s refused naming %s: %s" % (sets, key, p.stderr.strip()[:160]))
t.done()
