"""Every gradient accounted for (gradients_sent = applied + dropped + bad)
when some are not finite, in every mode; a sync round steps with its finite
gradients; hogwild never applies past max_updates."""
import os
import tempfile
import pdtest as t

# Linear regression, 64 rows, 4 features; row 5 (worker 1's third row on
# strided shards of W=2, no shuffling) has features near FLT_MAX: its
# squared error overflows, so every minibatch holding it has a non-finite
# loss and gradient.
tmp = tempfile.mkdtemp(prefix="paramd-acct-")
train = os.path.join(tmp, "train.csv")
with open(train, "w") as f:
    for i in range(64):
        x = [((i * 7 + j * 3) % 11) / 10.0 for j in range(4)]
        if i == 5:
            x = [3e38, 3e38, 3e38, 3e38]
        f.write("%d,%s\n" % (i % 2, ",".join("%g" % v for v in x)))
test = os.path.join(tmp, "test.csv")
with open(test, "w") as f:
    for i in range(16):
        f.write("%d,%s\n" % (i % 2, ",".join("%g" % (((i * 5 + j) % 7) / 7.0) for j in range(4))))
conf = os.path.join(tmp, "bad.yaml")
with open(conf, "w") as f:
    f.write("""run: {seed: 1}
data: {format: csv, train: %s, test: %s, label_column: "0", normalize: none, shuffle: none,
       shard: strided}
model: {type: linreg, init: glorot}
training: {mode: serial, epochs: 2, batch_size: 8, max_bad_updates: 1000}
optimizer: {name: sgd, lr: 0.1}
""" % (train, test))

# Sync W=2: 4 rounds an epoch, 8 in all; worker 1's first batch of each
# epoch holds row 5: 2 bad gradients, the other 14 applied, and every
# round steps (with worker 0's gradient alone in the 2 bad ones).
d, _ = t.run(conf, ["training.mode=sync"], ranks=3)
s = t.summary(d)
t.check_accounting(s, "sync with bad gradients")
t.check((s["gradients_sent"], s["gradients_bad"], s["gradients_applied"], s["updates"]) == (16, 2, 14, 8),
        "sync counts each gradient: sent, bad, applied, updates = %s == (16, 2, 14, 8)"
        % ((s["gradients_sent"], s["gradients_bad"], s["gradients_applied"], s["updates"]),))

# The same with two servers: each decides alike from the header.
d, _ = t.run(conf, ["training.mode=sync", "training.servers=2"], ranks=4)
s = t.summary(d)
t.check((s["gradients_sent"], s["gradients_bad"], s["gradients_applied"], s["updates"]) == (16, 2, 14, 8),
        "sync S=2 counts each gradient: %s == (16, 2, 14, 8)"
        % ((s["gradients_sent"], s["gradients_bad"], s["gradients_applied"], s["updates"]),))

# max_bad_updates counts gradients (2 here), in sync as in async.
t.run(conf, ["training.mode=sync", "training.max_bad_updates=1"], ranks=3, expect=3)

# Async: 16 gradients, 2 bad, the rest applied.
d, _ = t.run(conf, ["training.mode=async"], ranks=3)
s = t.summary(d)
t.check_accounting(s, "async with bad gradients")
t.check((s["gradients_bad"], s["gradients_applied"]) == (2, 14),
        "async: bad, applied = %s == (2, 14)" % ((s["gradients_bad"], s["gradients_applied"]),))

# local_sgd / easgd with local_steps 2: worker 1's local step on row 5's
# batch is skipped, its model stays finite and the exchange counts as
# applied; exchanges are 2 per epoch per worker.
for mode in ("local_sgd", "easgd"):
    d, _ = t.run(conf, ["training.mode=" + mode, "training.local_steps=2"], ranks=3)
    s = t.summary(d)
    t.check_accounting(s, mode + " with bad local gradients")
    t.check(s["gradients_sent"] == 8 and s["gradients_bad"] == 0,
            "%s: 8 exchanges, none bad (a skipped local step leaves the model finite): %s, %s"
            % (mode, s["gradients_sent"], s["gradients_bad"]))

# A model that is not finite (lr so large the parameters overflow) is
# counted bad and never averaged into the centre.
for mode in ("local_sgd", "easgd"):
    d, p = t.run("tests/conf/softmax.yaml", ["training.mode=" + mode, "optimizer.lr=1e38",
                                             "training.max_bad_updates=100000",
                                             "training.max_updates=20"], ranks=3)
    s = t.summary(d)
    t.check_accounting(s, mode + " with overflowing models")
    t.check(s["gradients_bad"] > 0, "%s: overflowing models are counted bad: %s" % (mode, s["gradients_bad"]))
    ok = all(x == x and abs(x) != float("inf") for x in t.params(d))
    t.check(ok, "%s: the centre stays finite" % mode)

# Hogwild never runs past max_updates: 4 threads race for the last
# versions.
for i in range(3):
    d, _ = t.run("tests/conf/softmax.yaml", ["training.mode=hogwild", "training.server_threads=4",
                                             "training.max_updates=40"], ranks=5)
    s = t.summary(d)
    t.check(s["updates"] == 40 and s["gradients_applied"] == 40,
            "hogwild T=4 stops at max_updates: updates %s, applied %s == 40"
            % (s["updates"], s["gradients_applied"]))
    t.check_accounting(s, "hogwild max_updates")
# Two servers agree on each gradient: server 0 decides (apply with one
# step number and staleness, drop, bad, stop) and server 1 follows, so
# their counts are the same in the drop policy (where each server's own
# staleness would differ), with inverse staleness scaling, at max_updates,
# in hogwild and in easgd.
def per_server_agree(s, name):
    ps = s["per_server"]
    t.check(len(ps) == 2 and ps[0]["applied"] == ps[1]["applied"] and ps[0]["bad"] == ps[1]["bad"]
            and ps[0]["dropped"] == ps[1]["dropped"] and ps[0]["applied_set"] == ps[1]["applied_set"],
            "%s: both servers did the same: %s" % (name, ps))
    t.check(ps[0]["applied"] == s["gradients_applied"], "%s: server 0's applied %s in the summary"
            % (name, ps[0]["applied"]))
    t.check_accounting(s, name)


for name, sets, ranks in (
        ("async S=2 drop", ["training.mode=async", "training.max_staleness=0",
                            "training.staleness_policy=drop", "training.max_updates=300",
                            "optimizer.staleness_compensation=inverse"], 5),
        ("async S=2 wait", ["training.mode=async", "training.max_staleness=1",
                            "training.max_updates=200"], 5),
        ("hogwild S=2", ["training.mode=hogwild", "training.server_threads=2",
                         "training.max_staleness=1", "training.staleness_policy=drop",
                         "training.max_updates=200"], 6),
        ("easgd S=2", ["training.mode=easgd", "training.max_updates=50"], 5)):
    d, _ = t.run("tests/conf/softmax.yaml", sets + ["training.servers=2"], ranks=ranks)
    s = t.summary(d)
    per_server_agree(s, name)
    if "drop" in name:
        t.check(s["dropped_stale"] > 0, "%s drops stale gradients: %s" % (name, s["dropped_stale"]))
    t.check(s["updates"] == s["gradients_applied"] <= int([x for x in sets if "max_updates" in x][0]
                                                           .split("=")[1]),
            "%s: updates == applied <= max_updates: %s, %s" % (name, s["updates"], s["gradients_applied"]))

# Bad gradients with two servers in async mode: both count the same 2.
d, _ = t.run(conf, ["training.mode=async", "training.servers=2"], ranks=4)
s = t.summary(d)
per_server_agree(s, "async S=2 bad")
t.check(s["gradients_bad"] == 2, "async S=2: 2 bad: %s" % s["gradients_bad"])
t.done()
