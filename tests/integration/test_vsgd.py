"""vsgd (no learning rate) through the shared optimizer interface in the
distributed modes, short runs of softmax regression on Fashion-MNIST:
sync and async with W = 2 (and sync with two servers, each holding its
range's vsgd state; and with no server ranks, training.servers 0),
hogwild, local_sgd and easgd. Each run must finish,
say optimizer vsgd, keep a finite test loss (below 1 and no weight blown
up in sync, local_sgd and easgd) and reach a test accuracy no short run of a broken rule reaches (a rule that
takes no step stays at 0.10; one that diverges ends with a non-finite
gradient, exit 3)."""
import math

import pdtest as t

BASE = ["optimizer.name=vsgd", "optimizer.lr=default", "training.epochs=0",
        "training.batch_size=64"]
# (name, ranks, sets, accuracy floor, loss bound). Sync (reproducible),
# local_sgd and easgd are held below 1; async and hogwild promise a finite
# loss (in the order gradients happen to arrive, or from racing states,
# one run in a few once showed a test loss of 36 or 48 at 0.79 accuracy).
# local_sgd and easgd run 300 and 600 local steps per worker with one step
# between exchanges: before the second moment of vsgd's step took this
# minibatch's v when it is above vb (optim.h), a confidently misclassified
# example on a rarely active pixel stepped its weights by hundreds to 10^4
# and the averaged models kept them: weight norm 1.75e6 and 6.0e5, test
# loss 4.24 and 2.05 (this test failed); with it 33 and 17, 0.60 and 0.61.
cases = [
    ("sync W=2", 3, ["training.mode=sync", "training.max_updates=150"], 0.75, 1.0),
    ("sync W=2 S=2", 4, ["training.mode=sync", "training.servers=2",
                         "training.max_updates=150"], 0.75, 1.0),
    # no server ranks: the ranks exchange g, h and v (refused before)
    ("sync W=2 S=0", 2, ["training.mode=sync", "training.servers=0",
                         "training.max_updates=150"], 0.75, 1.0),
    # the row curvature along the gradient, computed by the workers
    # (measured 0.7535, loss 0.696)
    ("sync W=2 rows", 3, ["training.mode=sync", "training.max_updates=150",
                          "optimizer.vsgd_row_layers=1", "optimizer.vsgd_slow=2"], 0.72, 1.0),
    # rows with tau bounded (optimizer.vsgd_memory; 20, so that it binds
    # from the slow start's end on), on one server and split over two
    # (serial measured 0.7480, loss 0.727; with the diagonal and C = 2 the
    # bound let the weights blow up: loss 5758, README)
    ("sync W=2 rows memory", 3, ["training.mode=sync", "training.max_updates=150",
                                 "optimizer.vsgd_row_layers=1", "optimizer.vsgd_slow=2",
                                 "optimizer.vsgd_memory=20"], 0.72, 1.0),
    ("sync W=2 S=2 rows memory", 4, ["training.mode=sync", "training.servers=2",
                                     "training.max_updates=150", "optimizer.vsgd_row_layers=1",
                                     "optimizer.vsgd_slow=2", "optimizer.vsgd_memory=20"],
     0.72, 1.0),
    ("async W=2", 3, ["training.mode=async", "training.max_updates=300"], 0.75, math.inf),
    ("hogwild W=2", 3, ["training.mode=hogwild", "training.max_updates=300"], 0.75, math.inf),
    ("local_sgd W=2", 3, ["training.mode=local_sgd", "training.local_steps=1",
                          "training.max_updates=300"], 0.75, 1.0),
    ("easgd W=2", 3, ["training.mode=easgd", "training.local_steps=1",
                      "training.max_updates=600"], 0.75, 1.0),
]
sha = {}
for name, ranks, sets, floor, bound in cases:
    d, _ = t.run("tests/conf/softmax.yaml", BASE + sets, ranks=ranks)
    s = t.summary(d)
    t.check(s["optimizer"] == "vsgd", "%s: summary optimizer %r" % (name, s["optimizer"]))
    t.check(math.isfinite(s["test_loss"]) and s["test_loss"] < bound,
            "%s: test_loss %.4f finite and < %g" % (name, s["test_loss"], bound))
    t.check(s["test_acc"] >= floor, "%s: test_acc %.4f >= %.2f" % (name, s["test_acc"], floor))
    if bound < math.inf:   # no weight blown up (the last evaluation's norm)
        wn = t.metrics(d)[-1]["param_norm"]["W"]
        t.check(wn < 1000, "%s: weight norm %.4g < 1000" % (name, wn))
    sha[name] = s["params_sha256"]

# Sync is bit-reproducible and splitting the range over two servers gives
# the same parameters bit for bit: each server's vsgd state covers its own range, and the
# slow start's C comes from the whole model's size, not the range's.
for other in ("sync W=2 S=2", "sync W=2 S=0"):
    t.check(sha["sync W=2"] == sha[other], "%s gives the parameters of S=1 (%s, %s)"
            % (other, sha[other][:12], sha["sync W=2"][:12]))
# The bound on tau is per coordinate, so two servers apply it as one does;
# and it changes the run.
t.check(sha["sync W=2 rows memory"] == sha["sync W=2 S=2 rows memory"],
        "rows, memory 20: S=2 gives the parameters of S=1 (%s, %s)"
        % (sha["sync W=2 S=2 rows memory"][:12], sha["sync W=2 rows memory"][:12]))
t.check(sha["sync W=2 rows memory"] != sha["sync W=2 rows"], "memory 20 changes the run")

# Checkpoints carry vsgd's state (gb, vb, hb, tau per coordinate, in the
# optimizer's saved state): stopped at 60 updates (after the slow start of
# 20) and resumed to 120 ends with the parameters of an uninterrupted run,
# serial and sync with W = 2 (the server's state). Without the state the
# resumed run would start a new slow start and end elsewhere.
CK = BASE + ["checkpoint.every_updates=30", "training.eval_every=30"]
for name, ranks, mode in [("serial", 1, ["training.mode=serial"]),
                          ("sync W=2", 3, ["training.mode=sync"]),
                          ("sync W=2 S=0", 2, ["training.mode=sync", "training.servers=0"])]:
    a, _ = t.run("tests/conf/softmax.yaml", CK + mode + ["training.max_updates=120"],
                 ranks=ranks)
    b, _ = t.run("tests/conf/softmax.yaml", CK + mode + ["training.max_updates=60"],
                 ranks=ranks)
    b, _ = t.run("tests/conf/softmax.yaml", CK + mode + ["training.max_updates=120"],
                 ranks=ranks, out=b, args=["--resume"])
    sa, sb = t.summary(a), t.summary(b)
    t.check(sa["params_sha256"] == sb["params_sha256"],
            "%s: resumed at 60 ends as the uninterrupted run (%s, %s)"
            % (name, sb["params_sha256"][:12], sa["params_sha256"][:12]))

# A learning rate is refused (exit 2, the key named).
_, p = t.run("tests/conf/softmax.yaml", ["optimizer.name=vsgd"], expect=2)
t.check("optimizer.lr: vsgd has no learning rate" in p.stderr, "lr refused: %s" % p.stderr.strip())
t.done()
