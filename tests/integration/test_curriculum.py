"""Curriculum learning end to end (data.curriculum): each worker scores its
shard by a warmed-up model's loss, then epoch e trains on the easiest
ceil(f(e) n) examples, f(e) = min(1, start + (1 - start) e / epochs); the
examples and updates per epoch follow that schedule, serial and sync.
With type column the scores come from a column of the CSV training file."""
import math
import os
import random
import tempfile

import pdtest as t

N = 60000        # Fashion-MNIST training images
BATCH = 32       # tests/conf/softmax.yaml
START, GROW, EPOCHS = 0.25, 2, 3
SETS = ["data.curriculum.type=loss", "data.curriculum.start=%g" % START,
        "data.curriculum.epochs=%d" % GROW, "training.epochs=%d" % EPOCHS,
        "training.eval_every=0"]


def admitted(n, e):
    f = min(1.0, START + (1.0 - START) * e / GROW)
    return n if e >= GROW else max(1, min(n, math.ceil(f * n - 1e-9)))


def diffs(v):
    return [b - a for a, b in zip(v, v[1:])]


# Serial: one metrics row per epoch; examples per epoch 0.25n, 0.625n, n.
d, _ = t.run("tests/conf/softmax.yaml", SETS)
s, m = t.summary(d), t.metrics(d)
want_ex = [admitted(N, e) for e in range(EPOCHS)]
want_up = [math.ceil(x / BATCH) for x in want_ex]
t.check(want_ex == [15000, 37500, 60000], "the schedule itself: %s" % want_ex)
t.check(len(m) == EPOCHS + 1, "one row at 0 and one per epoch: %d rows" % len(m))
t.check(diffs([r["examples"] for r in m]) == want_ex,
        "serial examples per epoch %s == %s" % (diffs([r["examples"] for r in m]), want_ex))
t.check(diffs([r["update"] for r in m]) == want_up,
        "serial updates per epoch %s == %s" % (diffs([r["update"] for r in m]), want_up))
t.check(s["exit"] == "done" and s["updates"] == sum(want_up),
        "serial runs all epochs: exit %s, %s updates" % (s["exit"], s["updates"]))
t.check(s["test_acc"] >= 0.80, "serial with a curriculum: test_acc %.4f >= 0.80" % s["test_acc"])

# Same seed, same curriculum, same bits.
d2, _ = t.run("tests/conf/softmax.yaml", SETS)
t.check(t.summary(d2)["params_sha256"] == s["params_sha256"], "a curriculum run is reproducible")

# Sync with 2 workers: each scores its own shard of N/2; a step per round of
# the workers' batches, so updates per epoch follow one shard's schedule.
d, _ = t.run("tests/conf/softmax.yaml", SETS + ["training.mode=sync"], ranks=3)
s, m = t.summary(d), t.metrics(d)
shard_up = [math.ceil(admitted(N // 2, e) / BATCH) for e in range(EPOCHS)]
t.check(s["exit"] == "done" and s["updates"] == sum(shard_up),
        "sync updates %s == %s (per epoch %s)" % (s["updates"], sum(shard_up), shard_up))
t.check(m[-1]["examples"] == sum(want_ex),
        "sync examples %s == %s" % (m[-1]["examples"], sum(want_ex)))
t.check(s["test_acc"] >= 0.80, "sync with a curriculum: test_acc %.4f >= 0.80" % s["test_acc"])

# Stochastic mixing trains too, with the same counts.
d, _ = t.run("tests/conf/softmax.yaml", SETS + ["data.curriculum.stochastic=true"])
m = t.metrics(d)
t.check(diffs([r["examples"] for r in m]) == want_ex,
        "stochastic examples per epoch %s == %s" % (diffs([r["examples"] for r in m]), want_ex))

# Scores from a CSV column: a 2-class problem (class = sign of x0 + x1), its
# score column "hard" (distance to the boundary, negated) not a feature.
tmp = tempfile.mkdtemp(prefix="paramd-it-csv-")
csv = os.path.join(tmp, "train.csv")
rng = random.Random(7)
NC = 400
with open(csv, "w") as f:
    f.write("y,x0,hard,x1\n")
    for _ in range(NC):
        a, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
        f.write("%d,%.6f,%.6f,%.6f\n" % (int(a + b > 0), a, -abs(a + b), b))
d, _ = t.run("tests/conf/softmax.yaml",
             ["data.format=csv", "data.train=" + csv, "data.header=true",
              "data.label_column=y", "data.normalize=none", "model.type=softmax",
              "data.curriculum.type=column", "data.curriculum.column=hard",
              "data.curriculum.start=0.5", "data.curriculum.epochs=1",
              "training.epochs=2", "training.eval_every=0"])
s, m = t.summary(d), t.metrics(d)
ex = diffs([r["examples"] for r in m])
t.check(s["exit"] == "done", "csv column curriculum runs all epochs: exit %s" % s["exit"])
t.check(ex == [NC // 2, NC], "csv column curriculum examples per epoch %s == %s"
        % (ex, [NC // 2, NC]))
t.done()
