"""Checkpoints and --resume of a run with training.phases: each checkpoint
of such a run has a record (checkpoints/ckpt-<t>.phase) of the phase it was
taken in and where that phase began; --resume continues in that phase, in
its mode, and then runs the phases after it.

- sync for 300 updates then local_sgd (momentum, W = 2): stopped by SIGTERM
  to our own mpirun during the second phase, or to its server 0 during the
  first (every rank ends there), resumed: the uninterrupted run's
  params_sha256, summary.json's phases and metrics.jsonl's rows.
- the same run resumed from a checkpoint of the first phase, through the
  second: the same params_sha256, phases and rows.
- async for 600 updates then sync, resumed from a checkpoint in the async
  phase: every gradient accounted for in each phase and in the whole run
  (sent = applied + dropped + bad, the phases adding up to the run).
- sync, hogwild (2 threads), sync, resumed in the first phase without
  checkpoint.every_*: a checkpoint at each phase's end (the hogwild one's
  too), every gradient accounted for per phase, and the checkpoint at the
  hogwild phase's end resumes into the last phase.

Every wait is for a state of the run directory, not for a time."""
import os
import signal
import struct
import subprocess
import tempfile

import pdtest as t

CONF = "tests/conf/softmax.yaml"
PHASES = ["optimizer.name=momentum", "optimizer.lr=default",
          "training.phases=[{mode: sync, max_updates: 300}, "
          "{mode: local_sgd, epochs: 4, local_steps: 4}]",
          "checkpoint.every_updates=50", "checkpoint.keep=40", "training.eval_every=100",
          "training.eval_wait=true"]


def record(d, u):
    """(phase index, phases, workers, the phase's first update) of the
    record of checkpoint u (paramd/phase.h's layout)."""
    with open(os.path.join(d, "checkpoints", "ckpt-%012d.phase" % u), "rb") as f:
        b = f.read()
    t.check(b[:8] == b"PDPHASE\n", "ckpt-%d.phase: magic %r" % (u, b[:8]))
    index, count, workers = struct.unpack_from("<III", b, 12)
    return index, count, workers, struct.unpack_from("<q", b, 24)[0]


def phases_of(s):
    return [(p["index"], p["mode"], p["exit"], p["first_update"], p["last_update"],
             p["gradients_sent"], p["gradients_applied"], p["dropped"]) for p in s["phases"]]


def rows_of(d):
    """metrics.jsonl's rows: where, in which phase, and the evaluation (the
    epoch of the row at update 0 depends on which HELLO came first)."""
    return [(r["update"], r.get("phase_index"), r.get("phase_mode"),
             r["epoch"] if r["update"] else None, r["test_loss"], r["test_acc"])
            for r in t.metrics(d)]


def resume_copy(src, upto, sets):
    """src's run directory with the checkpoints after update `upto` (and the
    run's end) removed, as a job killed after that checkpoint leaves it,
    resumed in place."""
    d = t.killed_after(src, upto)
    t.run(CONF, sets, ranks=3, out=d, args=["--resume"])
    return d


def same_run(ref, d, name):
    s, r = t.summary(ref), t.summary(d)
    t.check(r["params_sha256"] == s["params_sha256"], "%s: params_sha256 %s == uninterrupted %s"
            % (name, r["params_sha256"][:12], s["params_sha256"][:12]))
    t.check(phases_of(r) == phases_of(s), "%s: summary.json phases %s == %s"
            % (name, phases_of(r), phases_of(s)))
    t.check(r["updates"] == s["updates"] and r["gradients_sent"] == s["gradients_sent"],
            "%s: updates %s, sent %s as uninterrupted" % (name, r["updates"], r["gradients_sent"]))
    diff = [(a, b) for a, b in zip(rows_of(d), rows_of(ref)) if a != b]
    t.check(rows_of(d) == rows_of(ref), "%s: metrics.jsonl rows as uninterrupted (%d, %d rows; "
            "first differences %s)" % (name, len(rows_of(d)), len(rows_of(ref)), diff[:2]))


# The uninterrupted run.
ref, _ = t.run(CONF, PHASES, ranks=3)
sref = t.summary(ref)
t.check([p[:5] for p in phases_of(sref)][0] == (0, "sync", "max_updates", 0, 300),
        "reference: sync phase of 300 updates: %s" % phases_of(sref))
last = sref["updates"]
t.check([record(ref, u)[0] for u in t.checkpoint_sets(ref)] ==
        [0 if u <= 300 else 1 for u in t.checkpoint_sets(ref)],
        "each checkpoint's record names its phase: %s" %
        [(u, record(ref, u)) for u in t.checkpoint_sets(ref)])
t.check(record(ref, 350)[1:] == (2, 2, 300), "phase 1 began at update 300: %s"
        % (record(ref, 350),))

# SIGTERM to our own mpirun during the second phase (once a checkpoint of
# that phase exists): mpirun passes it on to the ranks a second later, server
# 0 stops at the next round with a checkpoint (or mpirun's SIGKILL a second
# after that leaves the newest periodic one), and --resume finishes the run.
d = tempfile.mkdtemp(prefix="paramd-it-")
env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
job = subprocess.Popen(t.mpirun_cmd(3, CONF, d, PHASES), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=env)
if t.wait_until("a checkpoint of the second phase", proc=job,
                cond=lambda: [u for u in t.checkpoint_sets(d) if u > 300]):
    job.send_signal(signal.SIGTERM)
out, err = job.communicate(timeout=300)
sets = t.checkpoint_sets(d)
s = t.summary(d) if os.path.exists(os.path.join(d, "summary.json")) else {}
if s.get("exit") == "done":
    # The run ended before the signal reached its ranks (a fast machine):
    # continue from its newest checkpoint in the second phase before the end
    # instead, as a job killed after it would.
    print("note: the run finished before SIGTERM reached it (checkpoints %s); resuming "
          "from the newest one before its end" % sets)
    u = max(u for u in sets if 300 < u < last)
    d = resume_copy(d, u, PHASES)
else:
    u = sets[-1]
    t.check(job.returncode != 0 and s.get("exit", "signal") == "signal",
            "SIGTERM: the run stopped (mpirun exit %s, summary exit %s): %s"
            % (job.returncode, s.get("exit"), err[-400:]))
    t.check(300 < u < last and record(d, u)[0] == 1,
            "the newest checkpoint, %d, is in the second phase before its end (%d): %s"
            % (u, last, sets))
    t.run(CONF, PHASES, ranks=3, out=d, args=["--resume"])
same_run(ref, d, "SIGTERM at update %d (phase 1), resumed" % u)

# SIGTERM to server 0 (a rank of our own mpirun) during the first phase:
# the run ends there on every rank (exit 143, one checkpoint), and --resume
# runs the rest of that phase and the next.
d = tempfile.mkdtemp(prefix="paramd-it-")
job = subprocess.Popen(t.mpirun_cmd(3, CONF, d, PHASES), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=env)
ranks = t.wait_until("a checkpoint and 3 ranks", proc=job,
                     cond=lambda: t.checkpoint_sets(d) and len(t.rank_pids(job)) == 3 and
                     t.rank_pids(job))
if ranks:
    os.kill(ranks[0], signal.SIGTERM)
out, err = job.communicate(timeout=300)
u = t.checkpoint_sets(d)[-1]
s = t.summary(d)
t.check(job.returncode != 0 and s["exit"] == "signal" and s["updates"] == u,
        "SIGTERM to server 0: every rank ends (mpirun exit %s), summary exit %s at update %s, "
        "checkpoint %s: %s" % (job.returncode, s["exit"], s["updates"], u, err[-300:]))
if u < 300:
    t.check(record(d, u)[0] == 0 and [p["index"] for p in s["phases"]] == [0],
            "stopped in the first phase: record %s, summary phases %s"
            % (record(d, u), phases_of(s)))
else:
    print("note: the stop came after the first phase (update %d)" % u)
t.run(CONF, PHASES, ranks=3, out=d, args=["--resume"])
same_run(ref, d, "SIGTERM to server 0 at update %d, resumed" % u)

# A checkpoint of the first phase (update 200), resumed through the second.
d = resume_copy(ref, 200, PHASES)
same_run(ref, d, "checkpoint 200 (phase 0), resumed")

# The checkpoint at the run's end (a job killed after it): nothing more to
# do. Before the fix, a worker resumed at the end of its last epoch began
# another one (without phases too: local_sgd, 1 epoch, 235 -> 470 updates).
d = resume_copy(ref, last, PHASES)
same_run(ref, d, "the end's checkpoint, resumed")
LOCAL = ["training.mode=local_sgd", "training.local_steps=4", "checkpoint.every_updates=100"]
e, _ = t.run(CONF, LOCAL, ranks=3)
se = t.summary(e)
t.run(CONF, LOCAL, ranks=3, out=e, args=["--resume"])
t.check((t.summary(e)["updates"], t.summary(e)["params_sha256"]) ==
        (se["updates"], se["params_sha256"]) == (235, se["params_sha256"]),
        "local_sgd without phases resumed from its end: %s updates (235)"
        % t.summary(e)["updates"])

# async then sync, resumed from a checkpoint in the async phase (update
# 400): whatever the arrival order, every gradient is accounted for.
ASYNC = ["training.phases=[{mode: async, max_updates: 600}, {mode: sync, epochs: 1}]",
         "checkpoint.every_updates=200", "checkpoint.keep=20", "training.eval_every=200",
         "training.eval_wait=true"]
a, _ = t.run(CONF, ASYNC, ranks=3)
t.check(record(a, 400)[:2] == (0, 2), "async checkpoint 400 in phase 0: %s" % (record(a, 400),))
d = resume_copy(a, 400, ASYNC)
s = t.summary(d)
t.check_accounting(s, "[async, sync] resumed in the async phase")
ph = s["phases"]
t.check([p["mode"] for p in ph] == ["async", "sync"] and ph[0]["last_update"] == 600 ==
        ph[1]["first_update"] and ph[1]["last_update"] == s["updates"],
        "resumed [async, sync]: one entry per phase over the whole run: %s" % phases_of(s))
t.check_phases_accounting(ph)
t.check(sum(p["gradients_sent"] for p in ph) == s["gradients_sent"] and
        sum(p["gradients_applied"] for p in ph) == s["gradients_applied"] and
        sum(p["dropped"] for p in ph) == s["dropped"],
        "the phases add up to the run: sent %s, applied %s, dropped %s"
        % (s["gradients_sent"], s["gradients_applied"], s["dropped"]))
t.check(abs(s["epochs"] - 1) < 1e-9, "the sync phase ends the first epoch: %s" % s["epochs"])

# sync, hogwild, sync, with checkpoints every 50 updates, resumed from the
# first one without checkpoint.every_*: the resumed run writes one at each
# phase's end, the hogwild phase's included (before the fix only after a
# phase of rounds or of untraced one-server async or easgd: 100 and the
# end's, 350, not 300).
HOG = ["training.phases=[{mode: sync, max_updates: 100}, {mode: hogwild, max_updates: 200}, "
       "{mode: sync, max_updates: 50}]", "training.server_threads=2", "checkpoint.keep=20"]
h, _ = t.run(CONF, HOG + ["checkpoint.every_updates=50"], ranks=3)
d = resume_copy(h, 50, HOG)
s = t.summary(d)
t.check(t.checkpoint_sets(d) == [50, 100, 300, 350],
        "[sync, hogwild, sync] resumed at 50 without checkpoint.every_*: a checkpoint at each "
        "phase's end (50 kept, 100, 300, 350): %s" % t.checkpoint_sets(d))
t.check([record(d, u)[0] if u in t.checkpoint_sets(d) else None for u in (100, 300, 350)] ==
        [0, 1, 2],
        "the records name the phases ended: %s"
        % [(u, record(d, u)) for u in (100, 300, 350) if u in t.checkpoint_sets(d)])
ph = s["phases"]
t.check([(p["mode"], p["first_update"], p["last_update"]) for p in ph] ==
        [("sync", 0, 100), ("hogwild", 100, 300), ("sync", 300, 350)],
        "resumed [sync, hogwild, sync]: %s" % phases_of(s))
t.check_phases_accounting(ph)
t.check_accounting(s, "[sync, hogwild, sync] resumed in the first phase")
# The hogwild phase's end, resumed (a job killed after it): the hogwild
# phase is at its max_updates, so a gradient its workers send before they
# learn so is dropped at the stop (202 sent = 200 applied + 2 dropped where
# the run resumed had 201 = 200 + 1), then the last phase.
e = resume_copy(d, 300, HOG)
se = t.summary(e)
hw = [(p["mode"], p["first_update"], p["last_update"], p["gradients_applied"])
      for p in se["phases"]]
t.check(phases_of(se)[0] == phases_of(s)[0] and hw[1:] == [("hogwild", 100, 300, 200),
        ("sync", 300, 350, 100)] and se["updates"] == 350 and t.checkpoint_sets(e)[-1] == 350,
        "resumed from the hogwild phase's end (300): phases %s, %s updates, checkpoints %s"
        % (phases_of(se), se["updates"], t.checkpoint_sets(e)))
t.check_phases_accounting(se["phases"])
t.check_accounting(se, "[sync, hogwild, sync] resumed at the hogwild phase's end")
t.done()
