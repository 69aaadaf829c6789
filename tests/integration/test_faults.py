"""Straggler and delay injection: a worker slowed by factor F sends
gradients at 1/F of the others' rate (summary.json's gradients_per_s, a
ratio from one run) on a communication-bound model (softmax) and on the
MLP, and its staleness in async mode grows with F; a 6x slow worker's
gradients grow stale in async mode; in sync mode with a backup worker, its
gradients are the ones dropped; a message delay bounds the rate at which
each worker's gradients arrive."""
import pdtest as t


def rates(d, slow_rank):
    """The slowed worker's gradients per second, the others' mean, its staleness."""
    s = t.summary(d)
    t.check_accounting(s, d)
    slow = [w for w in s["per_worker"] if w["rank"] == slow_rank][0]
    others = [w["gradients_per_s"] for w in s["per_worker"] if w["rank"] != slow_rank]
    return slow["gradients_per_s"], sum(others) / len(others), slow["staleness_mean"]


# Softmax with 3 workers: the servers, not compute, set the pace (the case
# where multiplying compute time changed nothing). Then the MLP, 2 workers.
soft = ["training.mode=async", "training.epochs=0", "training.max_updates=2400"]
stale = {}
for f in (1, 4, 16):
    d, _ = t.run("tests/conf/softmax.yaml", soft + ["faults.slow_workers=[{rank: 3, factor: %d}]" % f],
                 ranks=4)
    r, others, stale[f] = rates(d, 3)
    if f > 1:
        t.check(0.75 * others / f <= r <= 1.25 * others / f,
                "softmax, factor %d: the slowed worker's rate %.0f/s is 1/%d of the others' "
                "%.0f/s within 25%% (ratio %.2f)" % (f, r, f, others, others / r))
t.check(stale[1] < stale[4] < stale[16], "softmax: the slowed worker's mean staleness grows with "
        "the factor: %s" % stale)
mlp2 = ["training.mode=async", "optimizer.lr=0.02", "model.hidden=[128]", "training.epochs=0",
        "training.max_updates=800"]
d, _ = t.run("conf/fmnist-mlp-serial.yaml", mlp2 + ["faults.slow_workers=[{rank: 2, factor: 4}]"],
             ranks=3)
r, others, _ = rates(d, 2)
t.check(0.75 * others / 4 <= r <= 1.25 * others / 4,
        "mlp, factor 4: the slowed worker's rate %.0f/s is 1/4 of the other's %.0f/s within 25%% "
        "(ratio %.2f)" % (r, others, others / r))

mlp = ["training.mode=async", "optimizer.lr=0.02", "model.hidden=[128]", "training.max_updates=300"]
base, _ = t.run("conf/fmnist-mlp-serial.yaml", mlp, ranks=3)
slow, _ = t.run("conf/fmnist-mlp-serial.yaml", mlp + ["faults.slow_workers=[{rank: 2, factor: 6}]"],
                ranks=3)
b, s = t.summary(base), t.summary(slow)
sb = [w for w in b["per_worker"] if w["rank"] == 2][0]
ss = [w for w in s["per_worker"] if w["rank"] == 2][0]
t.check(ss["staleness_mean"] > 2 and ss["staleness_mean"] > 1.5 * sb["staleness_mean"],
        "async: the 6x slow worker's staleness grows: %.2f vs %.2f without the fault"
        % (ss["staleness_mean"], sb["staleness_mean"]))
t.check(ss["applied"] < sb["applied"], "the slow worker sends fewer gradients: %d < %d"
        % (ss["applied"], sb["applied"]))

d, _ = t.run("conf/fmnist-mlp-serial.yaml",
             ["training.mode=sync", "training.backup_workers=1", "model.hidden=[128]",
              "training.max_updates=150", "faults.slow_workers=[{rank: 3, factor: 8}]"], ranks=4)
s = t.summary(d)
late = [w for w in s["per_worker"] if w["rank"] == 3][0]
fast = [w for w in s["per_worker"] if w["rank"] != 3]
t.check(late["dropped"] > late["applied"], "sync + backup: the slow worker's gradients are dropped: "
        "%d dropped, %d applied" % (late["dropped"], late["applied"]))
t.check(all(w["dropped"] < late["dropped"] for w in fast), "the fast workers lose fewer: %s"
        % [(w["rank"], w["dropped"]) for w in fast])

# Each worker sleeps 5 ms before every gradient it sends, so each sends at
# most one gradient per 5 ms: between two evaluations du updates apart the
# two workers need at least ((du - 2) / 2 - 1) * 5 ms (up to one gradient
# each may already be on its way). A lower bound that load cannot break;
# without the delay these 100 updates take about 0.1 s.
delayed, _ = t.run("tests/conf/softmax.yaml", ["training.mode=async", "training.max_updates=100",
                                               "training.eval_every=20",
                                               "faults.delay.distribution=constant",
                                               "faults.delay.mean_ms=5"],
                   ranks=3)
rows = t.metrics(delayed)
du = rows[-1]["update"] - rows[0]["update"]
span = rows[-1]["wall_s"] - rows[0]["wall_s"]
need = ((du - 2) / 2 - 1) * 0.005
t.check(du >= 98 and span >= need, "a 5 ms delay before each gradient of 2 workers: %d updates "
        "took %.3f s >= %.3f s" % (du, span, need))
t.done()
