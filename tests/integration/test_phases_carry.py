"""--resume of a run with training.phases carries each worker's local
optimizer from a local_sgd or easgd phase, through the phases after it
without one, into the next local_sgd or easgd phase, as the uninterrupted
run does (paramd/ckpt.h: a worker state's local optimizer bytes, in a phase
without one, are the last local phase's).

- [local_sgd, sync, local_sgd], adam (its moments and its step count, the
  worker's local steps, are local state), W = 2: two local_sgd phases back
  to back are one local_sgd run bit for bit (the carry within one job), and
  resumed from a checkpoint of the sync phase the run ends with the
  uninterrupted run's params_sha256.
- [easgd, sync, easgd], momentum, W = 1 (one worker: easgd's order of
  models is fixed, so the run is bit-reproducible): resumed from a
  checkpoint of the sync phase, the uninterrupted params_sha256.

Before the fix the resumed runs' later local phase started its workers'
local optimizers fresh, and both params_sha256 checks failed."""
import os
import struct

import pdtest as t

CONF = "tests/conf/softmax.yaml"


def phase_of(d, u):
    """The phase index in the record of checkpoint u (paramd/phase.h)."""
    with open(os.path.join(d, "checkpoints", "ckpt-%012d.phase" % u), "rb") as f:
        b = f.read()
    t.check(b[:8] == b"PDPHASE\n", "ckpt-%d.phase: magic %r" % (u, b[:8]))
    return struct.unpack_from("<I", b, 12)[0]


def resume_copy(src, upto, sets, ranks):
    """src's run directory as a job killed after its checkpoint at update
    `upto` leaves it, resumed in place."""
    d = t.killed_after(src, upto)
    t.run(CONF, sets, ranks=ranks, out=d, args=["--resume"])
    return d


def resumed_in_sync(name, sets, ranks, u):
    ref, _ = t.run(CONF, sets, ranks=ranks)
    s = t.summary(ref)
    t.check(u in t.checkpoint_sets(ref) and phase_of(ref, u) == 1,
            "%s: checkpoint %d is in the sync phase (checkpoints %s)"
            % (name, u, t.checkpoint_sets(ref)))
    d = resume_copy(ref, u, sets, ranks)
    r = t.summary(d)
    t.check(r["params_sha256"] == s["params_sha256"] and r["updates"] == s["updates"],
            "%s resumed at update %d (sync phase): params_sha256 %s == uninterrupted %s, "
            "updates %s == %s" % (name, u, r["params_sha256"][:12], s["params_sha256"][:12],
                                  r["updates"], s["updates"]))
    return s


ADAM = ["optimizer.name=adam", "optimizer.lr=default", "checkpoint.every_updates=10",
        "checkpoint.keep=40", "training.eval_every=1000"]
LOCAL = ADAM + ["training.phases=[{mode: local_sgd, max_updates: 20, local_steps: 4}, "
                "{mode: sync, max_updates: 20}, {mode: local_sgd, max_updates: 20, "
                "local_steps: 4}]"]

# Within one job: the carry is real (two local_sgd phases are one run).
one, _ = t.run(CONF, ADAM + ["training.mode=local_sgd", "training.local_steps=4",
                             "training.max_updates=40"], ranks=3)
two, _ = t.run(CONF, ADAM + ["training.phases=[{mode: local_sgd, max_updates: 20, "
                             "local_steps: 4}, {mode: local_sgd, max_updates: 20, "
                             "local_steps: 4}]"], ranks=3)
t.check(t.summary(one)["params_sha256"] == t.summary(two)["params_sha256"],
        "[local_sgd 20, local_sgd 20] == local_sgd 40 updates (adam, W = 2): params_sha256 "
        "%s == %s" % (t.summary(two)["params_sha256"][:12], t.summary(one)["params_sha256"][:12]))

s = resumed_in_sync("[local_sgd, sync, local_sgd] adam W=2", LOCAL, 3, 30)
t.check([(p["mode"], p["first_update"], p["last_update"]) for p in s["phases"]] ==
        [("local_sgd", 0, 20), ("sync", 20, 40), ("local_sgd", 40, 60)],
        "[local_sgd, sync, local_sgd]: phases %s" % s["phases"])

EASGD = ["optimizer.name=momentum", "optimizer.lr=default", "checkpoint.every_updates=10",
         "checkpoint.keep=40", "training.eval_every=1000",
         "training.phases=[{mode: easgd, max_updates: 40, local_steps: 2}, "
         "{mode: sync, max_updates: 20}, {mode: easgd, max_updates: 40, local_steps: 2}]"]
resumed_in_sync("[easgd, sync, easgd] momentum W=1", EASGD, 2, 50)
t.done()
