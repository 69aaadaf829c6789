"""Serial checkpoints and --resume: a run stopped after a checkpoint and
resumed ends with the same params_sha256 as an uninterrupted one, keeps
checkpoint.keep sets, skips a damaged newest checkpoint with a warning, and
refuses what it cannot resume (exit 2, run directory untouched)."""
import os
import tempfile

import pdtest as t

CONF = "tests/conf/softmax.yaml"
BASE = ["training.eval_every=40", "checkpoint.every_updates=40", "checkpoint.keep=2"]


# Uninterrupted: 120 updates, checkpoints at 40, 80, 120; keep 2.
a, _ = t.run(CONF, BASE + ["training.max_updates=120"])
sa = t.summary(a)
t.check(sa["updates"] == 120, "the reference run makes 120 updates: %s" % sa["updates"])
t.check(t.ckpts(a) == ["ckpt-000000000080.0.pdck", "ckpt-000000000080.manifest",
                     "ckpt-000000000120.0.pdck", "ckpt-000000000120.manifest"],
        "keep 2: the two newest checkpoints remain: %s" % t.ckpts(a))
ua = [r["update"] for r in t.metrics(a)]

# Stopped at 60 (a checkpoint at 40 and one at the end, 60), then resumed.
b, _ = t.run(CONF, BASE + ["training.max_updates=60"])
t.check(t.ckpts(b)[-1] == "ckpt-000000000060.manifest", "a checkpoint at the end: %s" % t.ckpts(b))
b, _ = t.run(CONF, BASE + ["training.max_updates=120"], out=b, args=["--resume"])
sb = t.summary(b)
t.check(sb["params_sha256"] == sa["params_sha256"],
        "resumed at 60: params_sha256 %s == uninterrupted %s" % (sb["params_sha256"], sa["params_sha256"]))
t.check(sb["updates"] == 120, "the resumed run counts every update: %s" % sb["updates"])
ub = [r["update"] for r in t.metrics(b)]
t.check(ub == ua, "metrics.jsonl continues without duplicated or missing rows (the row the "
        "stopped run wrote at its end, 60, after its last checkpoint's evaluation, is not kept): "
        "%s vs %s" % (ub, ua))
t.check(sb["checkpoint_pause_s"]["count"] == 3 and sb["checkpoint_pause_s"]["max"] > 0,
        "checkpoint_pause_s counts the checkpoints before the last one written (40, 80; 60 of "
        "the stopped run) and the last: %s" % sb["checkpoint_pause_s"])

# Optimizer state and the shuffle across epochs: adam, 60 updates an epoch
# (batch 1000 of 60000), stopped in the second epoch at 90 and resumed.
ADAM = ["optimizer.name=adam", "optimizer.lr=0.001", "training.batch_size=1000",
        "training.epochs=3", "training.eval_every=50", "checkpoint.every_updates=50"]
r, _ = t.run(CONF, ADAM)
sr = t.summary(r)
q, _ = t.run(CONF, ADAM + ["training.max_updates=90"])
q, _ = t.run(CONF, ADAM, out=q, args=["--resume"])
t.check(t.summary(q)["params_sha256"] == sr["params_sha256"] and t.summary(q)["updates"] == 180,
        "adam resumed in epoch 2 of 3: same params_sha256 after %s updates" % t.summary(q)["updates"])

# Early stopping: the best validation loss, its parameters and the count
# of evaluations since are in the checkpoint. Uninterrupted, this run stops
# at 140 (patience 3 after the best at 110); stopped at 130 (two evaluations
# past the best) and resumed, it stops at 140 too, with the best parameters
# of 110 in params.bin (fails if the count or the best are not restored).
ES = ["data.validation_fraction=0.1", "training.early_stopping.patience=3",
      "training.eval_every=10", "checkpoint.every_updates=10", "optimizer.lr=0.2"]
r, _ = t.run(CONF, ES + ["training.max_updates=400"])
sr = t.summary(r)
t.check(sr["exit"] == "early_stopped" and sr["updates"] == 140 and sr["best_update"] == 110,
        "early stopping, uninterrupted: stops at %s, best %s" % (sr["updates"], sr["best_update"]))
q, _ = t.run(CONF, ES + ["training.max_updates=130"])
q, _ = t.run(CONF, ES + ["training.max_updates=400"], out=q, args=["--resume"])
sq = t.summary(q)
t.check(sq["exit"] == "early_stopped" and sq["updates"] == 140 and sq["best_update"] == 110 and
        sq["params_sha256"] == sr["params_sha256"],
        "early stopping, stopped at 130 and resumed: stops at %s, best %s, same params_sha256: %s"
        % (sq["updates"], sq["best_update"], sq["params_sha256"] == sr["params_sha256"]))
t.check([m["update"] for m in t.metrics(q)] == [m["update"] for m in t.metrics(r)],
        "early stopping resumed: the same evaluations, each once")

# Resuming a run that already reached its limit trains no further.
b, _ = t.run(CONF, BASE + ["training.max_updates=120"], out=b, args=["--resume"])
t.check(t.summary(b)["updates"] == 120 and t.summary(b)["params_sha256"] == sa["params_sha256"],
        "resumed at max_updates: no update more (%s)" % t.summary(b)["updates"])
e, _ = t.run(CONF, ["training.epochs=1", "checkpoint.every_updates=1000"])
se = t.summary(e)
e, _ = t.run(CONF, ["training.epochs=1", "checkpoint.every_updates=1000"], out=e, args=["--resume"])
t.check(t.summary(e)["updates"] == se["updates"] and t.summary(e)["params_sha256"] == se["params_sha256"],
        "resumed after its last epoch: no update more (%s, %s)" % (t.summary(e)["updates"], se["updates"]))

# A damaged newest checkpoint (a flipped parameter byte) is skipped with a
# one-line warning; the one at 40 is used and the result is the same.
c, _ = t.run(CONF, BASE + ["training.max_updates=60"])
part = os.path.join(c, "checkpoints", "ckpt-000000000060.0.pdck")
with open(part, "r+b") as f:
    f.seek(40 + 16 + 56 + 16)
    byte = f.read(1)
    f.seek(40 + 16 + 56 + 16)
    f.write(bytes([byte[0] ^ 1]))
c, p = t.run(CONF, BASE + ["training.max_updates=120"], out=c, args=["--resume"])
warn = [l for l in p.stderr.splitlines() if "warning" in l]
t.check(len(warn) == 1 and warn[0].startswith("paramd: warning: skipping damaged checkpoint: ")
        and "ckpt-000000000060.0.pdck: PARM: crc32" in warn[0],
        "one warning line names the file and section: %r" % p.stderr)
t.check(t.summary(c)["params_sha256"] == sa["params_sha256"], "resumed from 40: same params_sha256")

# Refusals: exit 2, one line naming the file and reason, the run directory
# untouched.
with open(os.path.join(b, "metrics.jsonl")) as f:
    before = f.read()
_, p = t.run(CONF, BASE + ["training.max_updates=200", "optimizer.lr=0.2"], out=b,
             args=["--resume"], expect=2)
t.check("ckpt-000000000120.0.pdck: header: config hash" in p.stderr,
        "a changed key that matters is refused naming the file: %r" % p.stderr)
with open(os.path.join(b, "metrics.jsonl")) as f:
    t.check(f.read() == before, "a refused resume leaves metrics.jsonl as it was")
empty = tempfile.mkdtemp(prefix="paramd-it-")
os.mkdir(os.path.join(empty, "checkpoints"))
_, p = t.run(CONF, BASE, out=empty, args=["--resume"], expect=2)
t.check("checkpoints: no checkpoint to resume from" in p.stderr, "nothing to resume: %r" % p.stderr)
t.done()
