"""Batch methods (cg, bfgs, lbfgs, cd): sync with W workers equals serial
bit for bit (the server adds the workers' block rows in block order); every
function and gradient evaluation is counted in metrics.jsonl and
summary.json; softmax regression on Fashion-MNIST reaches a test accuracy
threshold; on scripts/gen-data's least-squares problem every method reaches
the normal equations' solution (optimality gap < 1e-4) and every linreg run
reports its gap; model.init_from and SIGTERM are obeyed; the refusals are
exit 2 at the key."""
import os
import signal
import struct
import subprocess
import tempfile
import time

import pdtest as t

os.chdir(t.SRC)   # tests/conf/sparse.yaml names its data relative to the source tree
SPARSE = "tests/conf/sparse.yaml"
SOFTMAX = "tests/conf/softmax.yaml"


def batch(name, iters, extra=()):
    return ["optimizer.name=" + name, "optimizer.lr=default",
            "training.max_iterations=%d" % iters] + list(extra)


# sync == serial, bit for bit, for each method and two job sizes; logreg on
# the sparse problem (1001 parameters, 4000 examples: 4 blocks of 1000).
for name in ("cg", "bfgs", "lbfgs"):
    sets = batch(name, 15)
    ser, _ = t.run(SPARSE, sets)
    s = t.summary(ser)
    for ranks in (3, 4):
        d, _ = t.run(SPARSE, sets + ["training.mode=sync"], ranks=ranks)
        y = t.summary(d)
        t.check(y["params_sha256"] == s["params_sha256"],
                "%s sync W=%d equals serial bit for bit: %s == %s"
                % (name, ranks - 1, y["params_sha256"][:12], s["params_sha256"][:12]))
        t.check(y["evaluations"] == s["evaluations"] and y["iterations"] == s["iterations"],
                "%s sync W=%d: %s iterations, %s evaluations, as serial"
                % (name, ranks - 1, y["iterations"], y["evaluations"]))
    # Counting: one row per iteration (eval_every 0), the start with one
    # evaluation, each row's line-search steps adding up to the total.
    rows = t.metrics(ser)
    t.check([r["update"] for r in rows] == list(range(s["iterations"] + 1)),
            "%s: one metrics row per iteration 0..%d" % (name, s["iterations"]))
    steps = sum(r["line_search_steps"] for r in rows)
    t.check(rows[0]["evaluations"] == 1 and rows[-1]["evaluations"] == s["evaluations"] == steps,
            "%s: evaluations %s == the rows' line-search steps summed (%s)"
            % (name, s["evaluations"], steps))
    t.check(s["stop_reason"] in ("max_iterations", "relative_decrease", "gradient_norm"),
            "%s: stop_reason %s" % (name, s["stop_reason"]))
    losses = [r["train_loss"] for r in rows]
    t.check(all(b <= a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.25,
            "%s: the training loss never rises, %.4f -> %.4f < 0.25 in 15 iterations (test acc "
            "%.4f)" % (name, losses[0], losses[-1], s["test_acc"]))

# Softmax regression on 5000 Fashion-MNIST examples: 30 lbfgs iterations.
d, _ = t.run(SOFTMAX, batch("lbfgs", 30, ["optimizer.batch_examples=5000"]))
s = t.summary(d)
rows = t.metrics(d)
t.check(s["test_acc"] >= 0.80, "lbfgs softmax, 5000 examples, 30 iterations: test acc %.4f "
        ">= 0.80 (%d evaluations, train loss %.4f)"
        % (s["test_acc"], s["evaluations"], rows[-1]["train_loss"]))
t.check(rows[-1]["train_loss"] < 0.45, "lbfgs softmax: train loss %.4f < 0.45"
        % rows[-1]["train_loss"])
t.check(rows[-1]["examples"] == 5000 * s["evaluations"],
        "examples count the objective's 5000 per evaluation: %d" % rows[-1]["examples"])

# lbfgs against sgd and momentum for the same number of gradient
# evaluations on softmax over 6000 Fashion-MNIST examples (validation
# fraction 0.9): each of their updates is one full-batch gradient
# (batch_size 6000); one more update than lbfgs's evaluations, so that the
# last row's loss (taken before its step) is the one after as many steps.
small = ["data.validation_fraction=0.9"]
d, _ = t.run(SOFTMAX, batch("lbfgs", 20, small))
e, lb = t.summary(d)["evaluations"], t.metrics(d)[-1]["train_loss"]
for name, lr in (("sgd", "default"), ("momentum", "default"), ("momentum", "0.1")):
    g, _ = t.run(SOFTMAX, small + ["optimizer.name=" + name, "optimizer.lr=" + lr,
                                   "training.batch_size=6000", "training.epochs=0",
                                   "training.max_updates=%d" % (e + 1), "training.eval_every=1",
                                   "data.shuffle=none"])
    lg = t.metrics(g)[-1]["train_loss"]
    t.check(lb < lg, "%d gradient evaluations: lbfgs's training loss %.4f < %s (lr %s) %.4f"
            % (e, lb, name, lr, lg))

# A loss tolerance stops the run and says so (l2 makes the minimum
# positive, so the loss stops falling).
d, _ = t.run(SPARSE, batch("lbfgs", 500, ["optimizer.loss_tol=1e-4", "optimizer.grad_tol=0",
                                          "model.l2=0.01"]))
s = t.summary(d)
rows = t.metrics(d)
a, b = rows[-2]["train_loss"], rows[-1]["train_loss"]
t.check(s["stop_reason"] == "relative_decrease" and s["iterations"] < 500,
        "loss_tol 1e-4 stops lbfgs after %d iterations: %s" % (s["iterations"], s["stop_reason"]))
t.check(a - b <= 1.01e-4 * a and all((r["train_loss"] - q["train_loss"]) > 1e-4 * r["train_loss"]
                                     for r, q in zip(rows[:-2], rows[1:-1])),
        "only the last iteration lowered the loss by at most 1e-4 of it (%.7g -> %.7g)" % (a, b))

# Least squares with a known answer: scripts/gen-data's seeded linreg
# problem (3000 examples, 8 features, planted weights, noise 0.1); its
# minimizer and minimum from the normal equations, solved here in double
# precision on the same float32 values paramd reads.
D, N, L2 = 8, 3000, 0.001
csv = os.path.join(tempfile.mkdtemp(prefix="paramd-linreg-"), "train.csv")
subprocess.run([os.path.join(t.SRC, "scripts", "gen-data"), "linreg", csv], check=True)
f32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]
X, Y = [], []
with open(csv) as f:
    next(f)
    for line in f:
        v = [f32(float(a)) for a in line.split(",")]
        X.append(v[:D])
        Y.append(v[D])
t.check(len(X) == N, "scripts/gen-data wrote %d examples of %d features" % (len(X), D))
P = D + 1
G = [[0.0] * P for _ in range(P)]
c = [0.0] * P
for x, y in zip(X, Y):
    z = x + [1.0]
    for i in range(P):
        c[i] += z[i] * y
        for j in range(P):
            G[i][j] += z[i] * z[j]
A = [[G[i][j] / N + (L2 if i == j and i < D else 0) for j in range(P)] + [c[i] / N]
     for i in range(P)]
for i in range(P):   # Gauss-Jordan with partial pivoting
    k = max(range(i, P), key=lambda r: abs(A[r][i]))
    A[i], A[k] = A[k], A[i]
    for r in range(P):
        if r != i:
            q = A[r][i] / A[i][i]
            A[r] = [a - q * b for a, b in zip(A[r], A[i])]
best = [A[i][P] / A[i][i] for i in range(P)]


def loss(w):
    se = sum((sum(a * b for a, b in zip(w, x)) + w[D] - y) ** 2 for x, y in zip(X, Y))
    return 0.5 * se / N + 0.5 * L2 * sum(v * v for v in w[:D])


fstar = loss(best)
LINREG = ["data.format=csv", "data.train=" + csv, "data.header=true", "data.label_column=y",
          "data.test=", "data.normalize=none", "model.type=linreg", "model.l2=%g" % L2,
          "training.batch_size=100"]
for name, extra in (("cd", []), ("cd", ["optimizer.block_size=3", "optimizer.block_order=random"]),
                    ("lbfgs", []), ("cg", []), ("bfgs", [])):
    sets = LINREG + batch(name, 200, extra + ["optimizer.grad_tol=1e-7"])
    ser, _ = t.run(SOFTMAX, sets)
    dist, _ = t.run(SOFTMAX, sets + ["training.mode=sync"], ranks=3)
    s, y = t.summary(ser), t.summary(dist)
    label = " ".join([name] + [e.split(".")[1] for e in extra])
    t.check(y["params_sha256"] == s["params_sha256"], "linreg %s: sync W=2 equals serial bit for "
            "bit (%s iterations, %s evaluations)" % (label, s["iterations"], s["evaluations"]))
    w = list(t.params(dist))
    final = loss(w)
    gap = (final - fstar) / fstar
    t.check(gap < 1e-4, "linreg %s: optimality gap %.2e < 1e-4 (loss %.9f, optimum %.9f; %s)"
            % (label, gap, final, fstar, s["stop_reason"]))
    r = t.max_rel_diff(w, best)
    t.check(r < 1e-4, "linreg %s: parameters within %.2e of the normal equations' solution"
            % (label, r))
    t.check(abs(y["optimality_gap"] - gap) < 1e-9 and y["optimality_gap"] < 1e-4,
            "linreg %s: summary.json's optimality_gap %.3g (test's %.3g)"
            % (label, y["optimality_gap"], gap))

# conf/linreg-sync.yaml, on that data.
d, _ = t.run("conf/linreg-sync.yaml", ["data.train=" + csv], ranks=3)
s = t.summary(d)
t.check(s["optimality_gap"] < 1e-4 and s["mode"] == "sync" and s["optimizer"] == "lbfgs",
        "conf/linreg-sync.yaml: lbfgs sync W=2, optimality_gap %.3g < 1e-4 after %d iterations"
        % (s["optimality_gap"], s["iterations"]))

# Every linreg run reports its optimality gap, whatever the optimizer.
for mode, ranks in (("serial", 1), ("async", 3)):
    d, _ = t.run(SOFTMAX, LINREG + ["optimizer.name=sgd", "optimizer.lr=0.01",
                                    "training.epochs=1", "training.mode=" + mode], ranks=ranks)
    s = t.summary(d)
    gap = (loss(list(t.params(d))) - fstar) / fstar
    t.check(gap > 1e-6 and abs(s["optimality_gap"] - gap) <= 1e-6 * gap,
            "linreg sgd %s, 1 epoch: optimality_gap %.6g == the test's %.6g" % (mode, s["optimality_gap"], gap))

# model.init_from: a batch run starts from a finished run's parameters
# (its first row's loss is the other run's last one, the same objective).
subset = ["optimizer.batch_examples=1500"]
a, _ = t.run(SOFTMAX, batch("lbfgs", 5, subset))
b, _ = t.run(SOFTMAX, batch("lbfgs", 1, subset + ["model.init_from=" + a]))
la, lb = t.metrics(a)[-1]["train_loss"], t.metrics(b)[0]["train_loss"]
t.check(la == lb, "lbfgs from model.init_from starts at that run's loss: %.9g == %.9g" % (la, lb))

# SIGTERM (serial) ends a batch run after its iteration: exit 143, with the
# results of that iteration written (there is no checkpoint to resume).
out = tempfile.mkdtemp(prefix="paramd-it-")
cmd = [t.EXE, os.path.join(t.SRC, SOFTMAX), "--out", out, "--quiet"]
for v in batch("lbfgs", 1000000, ["optimizer.batch_examples=3000", "optimizer.grad_tol=0",
                                  "optimizer.loss_tol=0"]):
    cmd += ["--set", v]
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                     env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
end = time.monotonic() + 300   # a bound on a wait, never a verdict


def rows_in(d):
    try:
        with open(os.path.join(d, "metrics.jsonl")) as f:
            return sum(1 for line in f if line.endswith("\n"))
    except OSError:
        return 0


while rows_in(out) < 3 and p.poll() is None and time.monotonic() < end:
    time.sleep(0.05)
p.send_signal(signal.SIGTERM)
_, err = p.communicate(timeout=300)
t.check(p.returncode == 143, "SIGTERM stops a serial lbfgs run: exit %s == 143 (%s)"
        % (p.returncode, err.strip()[:120]))
if p.returncode == 143:
    s = t.summary(out)
    t.check(s["exit"] == "signal" and s["stop_reason"] == "signal" and
            t.metrics(out)[-1]["update"] == s["iterations"],
            "its summary says signal after iteration %s, its last row" % s["iterations"])

# Refusals: exit 2, at the key.
_, p = t.run(SOFTMAX, batch("lbfgs", 5, ["training.mode=async"]), ranks=2, expect=2)
t.check("optimizer.name: lbfgs is a batch method: it runs in serial or sync mode, not async"
        in p.stderr, "lbfgs with async is refused at optimizer.name: %s" % p.stderr.strip()[:160])
_, p = t.run(SPARSE, batch("cd", 5), expect=2)
t.check("optimizer.name: cd minimizes least squares: it needs model.type linreg (model.type is "
        "logreg)" in p.stderr, "cd on logreg is refused: %s" % p.stderr.strip()[:160])
_, p = t.run(SPARSE, batch("bfgs", 5, ["optimizer.bfgs_max_params=1000"]), expect=2)
t.check("optimizer.name: bfgs keeps an n x n inverse Hessian; this model has 1001 parameters, "
        "more than optimizer.bfgs_max_params (1000): use lbfgs" in p.stderr,
        "bfgs over bfgs_max_params is refused: %s" % p.stderr.strip()[:160])
_, p = t.run(SPARSE, batch("bfgs", 5, ["optimizer.bfgs_max_params=1000", "training.mode=sync"]),
             ranks=3, expect=2)
t.check("more than optimizer.bfgs_max_params (1000): use lbfgs" in p.stderr,
        "and in sync mode, by one rank: %s" % p.stderr.strip()[:160])
t.done()
