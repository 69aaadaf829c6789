"""Sync mode: bit-reproducible, equal to serial on the same examples,
S=2 servers equal S=1, W=1 equal to serial bit for bit (so Nesterov's
lookahead point is the one the server sends), accounting."""
import pdtest as t

base = ["training.max_updates=150", "training.eval_every=50"]

# Two sync runs, W=2: the same parameters to the bit.
a, _ = t.run("tests/conf/softmax.yaml", base + ["training.mode=sync"], ranks=3)
b, _ = t.run("tests/conf/softmax.yaml", base + ["training.mode=sync"], ranks=3)
sa, sb = t.summary(a), t.summary(b)
t.check(sa["params_sha256"] == sb["params_sha256"],
        "sync W=2 twice: %s == %s" % (sa["params_sha256"][:12], sb["params_sha256"][:12]))
t.check(sa["updates"] == 150, "sync stops at max_updates: %s == 150" % sa["updates"])
t.check(sa["staleness_max"] == 0, "sync staleness is 0: %s" % sa["staleness_max"])
t.check_accounting(sa, "sync W=2")

# Backup workers: with W=3 and b=1 each round closes on the first two
# gradients; the late one is dropped and counted.
d, _ = t.run("tests/conf/softmax.yaml", ["training.mode=sync", "training.backup_workers=1",
                                         "training.max_updates=200"], ranks=4)
s = t.summary(d)
t.check(s["dropped"] > 0, "backup_workers=1 drops late gradients: %s" % s["dropped"])
t.check(s["gradients_applied"] == 2 * s["updates"], "each round applies W-b=2 gradients: %s == 2 x %s"
        % (s["gradients_applied"], s["updates"]))
t.check_accounting(s, "sync backup_workers=1")
t.check(s["dropped_late"] > 0 and s["dropped_stale"] == 0,
        "backup workers drop late, never stale: late %s, stale %s" % (s["dropped_late"], s["dropped_stale"]))

# Sync W=2 with batch b on strided shards without shuffling equals serial
# with batch 2b: the same examples in every step.
same = ["training.max_updates=100", "data.shuffle=none", "data.shard=strided"]
s, _ = t.run("tests/conf/softmax.yaml", same + ["training.batch_size=64"])
d, _ = t.run("tests/conf/softmax.yaml", same + ["training.mode=sync", "training.batch_size=32"],
             ranks=3)
r = t.max_rel_diff(t.params(s), t.params(d))
t.check(r < 1e-4, "sync W=2 batch 32 vs serial batch 64: max rel diff %.3g < 1e-4" % r)

# Two servers give the same result as one (element-wise optimizer).
for opt in ("sgd", "adam"):
    one, _ = t.run("tests/conf/softmax.yaml", base + ["training.mode=sync", "optimizer.name=" + opt,
                                                    "optimizer.lr=default"], ranks=3)
    two, _ = t.run("tests/conf/softmax.yaml", base + ["training.mode=sync", "training.servers=2",
                                                    "optimizer.name=" + opt, "optimizer.lr=default"],
                   ranks=4)
    r = t.max_rel_diff(t.params(one), t.params(two))
    t.check(r < 1e-5, "%s: S=2 vs S=1 max rel diff %.3g < 1e-5" % (opt, r))
    t.check_accounting(t.summary(two), "sync S=2 " + opt)

# With one worker, sync and async replay the serial run exactly; with
# Nesterov this holds only if workers get the lookahead point.
for mode in ("sync", "async"):
    nest = ["optimizer.name=nesterov", "training.max_updates=120"]
    ser, _ = t.run("tests/conf/softmax.yaml", nest)
    dist, _ = t.run("tests/conf/softmax.yaml", nest + ["training.mode=" + mode], ranks=2)
    t.check(t.summary(ser)["params_sha256"] == t.summary(dist)["params_sha256"],
            "nesterov %s W=1 equals serial bit for bit" % mode)

# Time-triggered evaluations with S=2 are taken at round boundaries: each
# row's test loss is the one an S=1 run evaluating every update has at that
# update (a snapshot mixing versions t and t+1 would differ).
ref, _ = t.run("tests/conf/softmax.yaml", ["training.mode=sync", "training.max_updates=120",
                                           "training.eval_every=1", "training.eval_wait=true"],
               ranks=3)
by_update = {r["update"]: r["test_loss"] for r in t.metrics(ref)}
two, _ = t.run("tests/conf/softmax.yaml", ["training.mode=sync", "training.max_updates=120",
                                           "training.servers=2", "training.eval_every=1000000",
                                           "training.eval_every_seconds=0.001",
                                           "training.eval_wait=true"], ranks=4)
rows = t.metrics(two)
bad = [(r["update"], r["test_loss"], by_update[r["update"]]) for r in rows
       if abs(r["test_loss"] - by_update[r["update"]]) > 1e-5 * abs(by_update[r["update"]])]
t.check(len(rows) >= 5 and not bad, "sync S=2 time-triggered evaluations are of one version: "
        "%d rows, mismatches %s" % (len(rows), bad[:3]))

# Clipping by global norm stays correct with S=2.
clip = base + ["training.mode=sync", "optimizer.clip_norm=0.5"]
one, _ = t.run("tests/conf/softmax.yaml", clip, ranks=3)
two, _ = t.run("tests/conf/softmax.yaml", clip + ["training.servers=2"], ranks=4)
r = t.max_rel_diff(t.params(one), t.params(two))
t.check(r < 1e-5, "clip_norm with S=2 vs S=1: max rel diff %.3g < 1e-5" % r)

# Backup workers with S=2 (rounds.c): server 0 names each round's workers
# and each late gradient to server 1, so both step on the same gradients
# (each server alone would close its rounds on the first gradients it
# received, in its own arrival order).
d, _ = t.run("tests/conf/softmax.yaml", ["training.mode=sync", "training.backup_workers=1",
                                         "training.servers=2", "training.max_updates=300",
                                         "optimizer.clip_norm=1"], ranks=5)
s = t.summary(d)
ps = s["per_server"]
t.check(s["updates"] == 300 and s["dropped_late"] > 0 and len(ps) == 2 and
        ps[0]["applied"] == ps[1]["applied"] == s["gradients_applied"] and
        ps[0]["dropped"] == ps[1]["dropped"] == s["dropped"] and
        ps[0]["applied_set"] == ps[1]["applied_set"],
        "sync b=1 S=2: 300 rounds, late gradients dropped (%d), both servers applied and dropped "
        "the same gradients: %s" % (s["dropped_late"], ps))
t.check_accounting(s, "sync b=1 S=2")
t.done()
