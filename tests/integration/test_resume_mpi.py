"""Distributed checkpoints and --resume: sync (one and two servers) and
local_sgd runs stopped after a checkpoint and resumed end with the same
params_sha256 as an uninterrupted run, with metrics.jsonl continued and
summary.json counting the whole run; async runs resumed account for every
gradient (those in flight at the checkpoint as dropped at the stop); a
damaged newest checkpoint (a missing part) is skipped with one warning;
another number of workers is refused (exit 2, one line naming the file)."""
import os

import pdtest as t

CONF = "tests/conf/softmax.yaml"
BASE = ["training.eval_every=40", "training.eval_wait=true", "checkpoint.every_updates=40",
        "checkpoint.keep=3"]


CASES = [
    ("sync, 1 server + 2 workers", 3, ["training.mode=sync"]),
    ("sync, 2 servers + 2 workers, momentum", 4,
     ["training.mode=sync", "training.servers=2", "optimizer.name=momentum", "optimizer.lr=0.05"]),
    ("local_sgd, 1 server + 2 workers, 4 local momentum steps", 3,
     ["training.mode=local_sgd", "training.local_steps=4", "optimizer.name=momentum",
      "optimizer.lr=0.05"]),
]

for name, ranks, sets in CASES:
    a, _ = t.run(CONF, BASE + sets + ["training.max_updates=120"], ranks=ranks)
    sa = t.summary(a)
    t.check(t.ckpts(a) == ["ckpt-%012d.%s" % (u, x) for u in (40, 80, 120)
                         for x in (["%d.pdck" % s for s in range(ranks - 2 if "servers=2" in " ".join(sets) else 1)] + ["manifest"])],
            "%s: checkpoints at 40, 80, 120, one part per server: %s" % (name, t.ckpts(a)))
    ua = [r["update"] for r in t.metrics(a)]

    # Stopped at its max_updates (60: a checkpoint at 40 and one at the end), resumed to 120.
    b, _ = t.run(CONF, BASE + sets + ["training.max_updates=60"], ranks=ranks)
    b, _ = t.run(CONF, BASE + sets + ["training.max_updates=120"], ranks=ranks, out=b,
                 args=["--resume"])
    sb = t.summary(b)
    t.check(sb["params_sha256"] == sa["params_sha256"],
            "%s: stopped at 60 and resumed: params_sha256 %s == uninterrupted %s"
            % (name, sb["params_sha256"], sa["params_sha256"]))
    t.check([r["update"] for r in t.metrics(b)] == ua,
            "%s: metrics.jsonl continues, no row duplicated or missing: %s"
            % (name, [r["update"] for r in t.metrics(b)]))
    t.check(sb["updates"] == 120 and sb["gradients_sent"] == sa["gradients_sent"] and
            sb["gradients_applied"] == sa["gradients_applied"],
            "%s: summary.json counts the whole run: %s updates, %s sent, %s applied (uninterrupted "
            "%s, %s)" % (name, sb["updates"], sb["gradients_sent"], sb["gradients_applied"],
                         sa["gradients_sent"], sa["gradients_applied"]))
    t.check_accounting(sb, name + " resumed")
    t.check(sb["checkpoint_pause_s"]["count"] == 3 and sa["checkpoint_pause_s"]["count"] == 3,
            "%s: checkpoint_pause_s counts the checkpoints: %s" % (name, sb["checkpoint_pause_s"]))

    # Killed right after the checkpoint at 40 (the copy of the finished run).
    k = t.killed_after(a, 40)
    k, _ = t.run(CONF, BASE + sets + ["training.max_updates=120"], ranks=ranks, out=k,
                 args=["--resume"])
    t.check(t.summary(k)["params_sha256"] == sa["params_sha256"],
            "%s: killed after the checkpoint at 40 and resumed: same params_sha256" % name)
    t.check([r["update"] for r in t.metrics(k)] == ua,
            "%s: the killed run's rows after 40 are replaced: %s" % (name, [r["update"] for r in t.metrics(k)]))

# Async (one server, SSP wait and drop): every gradient accounted for over
# the whole run, stopped at 60 and resumed, then killed after the checkpoint
# at 80 and resumed again.
for pol in (["training.max_staleness=2", "training.staleness_policy=wait"],
            ["training.max_staleness=1", "training.staleness_policy=drop"]):
    sets = ["training.mode=async"] + pol
    name = "async " + pol[1].split("=")[1]
    b, _ = t.run(CONF, BASE + sets + ["training.max_updates=60"], ranks=4)
    t.check("ckpt-000000000040.manifest" in t.ckpts(b) and "ckpt-000000000060.manifest" in t.ckpts(b),
            "%s: checkpoints at 40 and at the end: %s" % (name, t.ckpts(b)))
    b, _ = t.run(CONF, BASE + sets + ["training.max_updates=120"], ranks=4, out=b,
                 args=["--resume"])
    sb = t.summary(b)
    t.check(sb["updates"] == 120 and sb["gradients_applied"] == 120,
            "%s resumed at 60: 120 updates, %s gradients applied" % (name, sb["gradients_applied"]))
    t.check_accounting(sb, name + " resumed at 60")
    t.check(sum(w["applied"] for w in sb["per_worker"]) == 120,
            "%s: per-worker applied counts add up to 120: %s" % (name, sb["per_worker"]))
    k = t.killed_after(b, 80)
    k, _ = t.run(CONF, BASE + sets + ["training.max_updates=120"], ranks=4, out=k,
                 args=["--resume"])
    sk = t.summary(k)
    t.check(sk["updates"] == 120, "%s killed after 80, resumed: 120 updates" % name)
    t.check_accounting(sk, name + " killed after 80 and resumed")
    # A run's first row, and a resumed run's first, is where every HELLO was
    # in: its start (0, or 80 after the kill) or a few updates on, as a
    # worker still loading its shard lets the others' gradients be applied
    # first (ci4 saw 81 on an idle machine); no row twice, none missing.
    u = [r["update"] for r in t.metrics(k)]
    t.check(len(u) == 4 and u[1] == 40 and 80 <= u[2] < 100 and u[3] == 120,
            "%s: metrics.jsonl continues: %s" % (name, u))

# Two servers: the newest checkpoint without part 1 is skipped with one
# warning line; the one at 80 is used, with the same result.
name, ranks, sets = CASES[1]
a, _ = t.run(CONF, BASE + sets + ["training.max_updates=120"], ranks=ranks)
d = t.killed_after(a, 120)
os.remove(os.path.join(d, "checkpoints", "ckpt-000000000120.1.pdck"))
d, p = t.run(CONF, BASE + sets + ["training.max_updates=160"], ranks=ranks, out=d, args=["--resume"])
warn = [l for l in p.stderr.splitlines() if "warning" in l]
t.check(len(warn) == 1 and warn[0].startswith("paramd: warning: skipping damaged checkpoint: ") and
        "ckpt-000000000120.1.pdck: No such file or directory" in warn[0],
        "a missing part: one warning line names it: %r" % p.stderr)
r, _ = t.run(CONF, BASE + sets + ["training.max_updates=160"], ranks=ranks)
t.check(t.summary(d)["params_sha256"] == t.summary(r)["params_sha256"],
        "resumed from 80 past the damaged 120: the same params_sha256 as an uninterrupted 160")

# Another number of workers: refused, exit 2, one line naming the file.
with open(os.path.join(d, "metrics.jsonl")) as f:
    before = f.read()
_, p = t.run(CONF, BASE + sets + ["training.max_updates=200"], ranks=ranks + 1, out=d,
             args=["--resume"], expect=2)
lines = [l for l in p.stderr.splitlines() if l.startswith("paramd")]
t.check(len(lines) == 1 and "ckpt-000000000160.0.pdck: header: config hash" in lines[0] and
        "number of workers" in lines[0], "another world size is refused in one line: %r" % p.stderr)
with open(os.path.join(d, "metrics.jsonl")) as f:
    t.check(f.read() == before, "a refused resume leaves metrics.jsonl as it was")
t.done()
