"""Checkpoints and --resume of the modes test_resume_mpi.py leaves out.

Sync with a backup worker (1 server + 3 workers, one of them 4x
slow, so its gradients come late): stopped at max_updates and resumed,
killed right after a checkpoint and resumed, stopped by SIGUSR2 to mpirun
(forwarded to every rank) and resumed. The rounds are not reproducible
(which worker is late depends on timing); what is checked is that every
gradient is accounted for over the whole resumed run, the late ones in
flight at a checkpoint as dropped (server 0 waits for them before it
writes, so they are in the checkpoint's counters and behind the late
worker's state), and that metrics.jsonl continues.

easgd (1 server + 2 workers): a checkpoint snapshots the centre before the
model that finds it due, and that model and the other worker's next one
are dropped in it (each worker's state, its own model included, is taken
at that exchange's reply, before the elastic move). Checked exactly: the
checkpoint's counters (sent = applied + dropped + bad, dropped = W), and
with one worker (arrival order is then fixed) a run stopped at max_updates
and resumed ends with the uninterrupted run's params_sha256 (momentum: the
worker's own model and local optimizer come back; the STOP that answers
its last model carries the elastic difference, so the end's checkpoint
holds the centre and the worker's model as a pair). Not exact with two
workers: easgd applies models in arrival order, so a resumed run is not
the uninterrupted one bit for bit; its test accuracy is checked to be
within 0.05 of an uninterrupted run's (both well above chance).

Sync without server ranks (training.servers 0, 3 ranks, nesterov: the
point is a lookahead of theta, so a resumed rank rebuilds its range of it
and the ranks exchange theirs): each rank writes its range's part, part 0
every iterator; stopped at max_updates, killed after a checkpoint, and
stopped by SIGTERM to every rank (exit 143, one checkpoint), each resumed
run ends with the uninterrupted run's params_sha256 and metrics rows.

Signals are sent once the run is training (a metrics.jsonl row exists);
each wait is for a state of the run directory, not for a time."""
import os
import signal
import subprocess
import tempfile

import pdtest as t

CONF = "tests/conf/softmax.yaml"
EVAL = ["training.eval_every=20", "training.eval_wait=true"]
BACKUP = ["training.mode=sync", "training.backup_workers=1",
          "faults.slow_workers=[{rank: 3, factor: 4}]"]


def whole_run(s, name, updates):
    t.check(s["updates"] == updates, "%s: %d updates (got %s)" % (name, updates, s["updates"]))
    t.check_accounting(s, name)
    t.check(sum(w["applied"] for w in s["per_worker"]) == s["gradients_applied"] and
            sum(w["dropped"] for w in s["per_worker"]) == s["dropped"],
            "%s: per-worker applied and dropped add up: %s" % (name, s["per_worker"]))


def start(sets, ranks):
    out = tempfile.mkdtemp(prefix="paramd-it-")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return subprocess.Popen(t.mpirun_cmd(ranks, CONF, out, sets), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env), out


# ---- sync with a backup worker ----------------------------------------------
name = "sync b=1"
sets = EVAL + BACKUP + ["checkpoint.every_updates=20", "checkpoint.keep=3"]
a, _ = t.run(CONF, sets + ["training.max_updates=60"], ranks=4)
sa = t.summary(a)
t.check(t.ckpts(a) == ["ckpt-%012d.%s" % (u, x) for u in (20, 40, 60) for x in ("0.pdck", "manifest")],
        "%s: checkpoints at 20, 40, 60: %s" % (name, t.ckpts(a)))
t.check(sa["dropped_late"] > 0, "%s: the slow worker's gradients come late: %d dropped late"
        % (name, sa["dropped_late"]))
whole_run(sa, name + ", to 60", 60)
k = t.killed_after(a, 40)
a, _ = t.run(CONF, sets + ["training.max_updates=120"], ranks=4, out=a, args=["--resume"])
whole_run(t.summary(a), name + ", stopped at 60 and resumed to 120", 120)
# (the first row is where every HELLO was in: 0, or a round or two on,
# since rounds close without the slow worker's)
t.check([r["update"] for r in t.metrics(a)][1:] == list(range(20, 121, 20)),
        "%s: metrics.jsonl continues: %s" % (name, [r["update"] for r in t.metrics(a)]))
k, _ = t.run(CONF, sets + ["training.max_updates=120"], ranks=4, out=k, args=["--resume"])
whole_run(t.summary(k), name + ", killed after the checkpoint at 40 and resumed", 120)
t.check([r["update"] for r in t.metrics(k)][1:] == list(range(20, 121, 20)),
        "%s, killed: the rows after 40 are replaced: %s" % (name, [r["update"] for r in t.metrics(k)]))

# SIGUSR2 to mpirun: the round closes, server 0 waits for the late
# gradient, one checkpoint, exit 143; resumed for 40 more updates.
long_ = EVAL + BACKUP + ["training.epochs=1000"]
p, d = start(long_, 4)
if t.wait_until("a metrics row at 40", proc=p, cond=lambda: max(t.rows_so_far(d) or [0]) >= 40):
    p.send_signal(signal.SIGUSR2)
_, err = p.communicate(timeout=300)
t.check(p.returncode == 143, "%s, SIGUSR2: mpirun exits 143 (got %s): %r"
        % (name, p.returncode, err[-600:]))
s = t.summary(d) if os.path.exists(os.path.join(d, "summary.json")) else {"updates": None}
u = s["updates"]
t.check(s.get("exit") == "signal" and t.checkpoint_sets(d)[-1:] == [u],
        "%s, SIGUSR2: summary.json exit %s, a checkpoint at the stop %s: %s"
        % (name, s.get("exit"), u, t.checkpoint_sets(d)))
if u is not None:
    whole_run(s, name + ", stopped by SIGUSR2", u)
    t.run(CONF, long_ + ["training.max_updates=%d" % (u + 40)], ranks=4, out=d, args=["--resume"])
    whole_run(t.summary(d), name + ", stopped by SIGUSR2 and resumed", u + 40)

# ---- easgd --------------------------------------------------------------------
name = "easgd, 1 worker, momentum"
sets = EVAL + ["training.mode=easgd", "training.local_steps=4", "optimizer.name=momentum",
               "optimizer.lr=0.05", "checkpoint.every_updates=20"]
r, _ = t.run(CONF, sets + ["training.max_updates=80"], ranks=2)
b, _ = t.run(CONF, sets + ["training.max_updates=40"], ranks=2)
b, _ = t.run(CONF, sets + ["training.max_updates=80"], ranks=2, out=b, args=["--resume"])
t.check(t.summary(b)["params_sha256"] == t.summary(r)["params_sha256"],
        "%s: stopped at 40 and resumed: params_sha256 %s == uninterrupted %s"
        % (name, t.summary(b)["params_sha256"][:16], t.summary(r)["params_sha256"][:16]))
whole_run(t.summary(b), name + ", resumed", 80)

name = "easgd"
sets = EVAL + ["training.mode=easgd", "training.local_steps=4", "checkpoint.every_updates=20",
               "checkpoint.keep=3"]
r, _ = t.run(CONF, sets + ["training.max_updates=200"], ranks=3)
sr = t.summary(r)
whole_run(sr, name + ", uninterrupted", 200)
b, _ = t.run(CONF, sets + ["training.max_updates=100"], ranks=3)
t.check(t.checkpoint_sets(b) == [60, 80, 100], "%s: checkpoints at 60, 80, 100: %s"
        % (name, t.checkpoint_sets(b)))
c = t.ckpt_counters(b, 60)
t.check(c is not None and c[1] == 60 and c[2] == 2 and c[0] == c[1] + c[2] + c[3],
        "%s: the checkpoint at 60 counts the two models after its snapshot dropped: "
        "sent, applied, dropped, bad = %s" % (name, c))
k = t.killed_after(b, 60)
b, _ = t.run(CONF, sets + ["training.max_updates=200"], ranks=3, out=b, args=["--resume"])
k, _ = t.run(CONF, sets + ["training.max_updates=200"], ranks=3, out=k, args=["--resume"])
for d, how in ((b, "stopped at 100"), (k, "killed after the checkpoint at 60")):
    s = t.summary(d)
    whole_run(s, "%s, %s and resumed" % (name, how), 200)
    # (the first row is where every HELLO was in: 0, or an exchange on)
    t.check([x["update"] for x in t.metrics(d)][1:] == list(range(20, 201, 20)),
            "%s, %s: metrics.jsonl continues: %s" % (name, how, [x["update"] for x in t.metrics(d)]))
    t.check(s["test_acc"] > 0.6 and abs(s["test_acc"] - sr["test_acc"]) <= 0.05,
            "%s, %s and resumed: test accuracy %.4f within 0.05 of the uninterrupted run's %.4f"
            % (name, how, s["test_acc"], sr["test_acc"]))

# ---- sync without server ranks -------------------------------------------------
name = "servers 0, 3 ranks, nesterov"
sets = ["training.eval_every=40", "training.eval_wait=true", "training.mode=sync",
        "training.servers=0", "optimizer.name=nesterov", "optimizer.lr=0.05",
        "checkpoint.every_updates=40", "checkpoint.keep=3"]
a, _ = t.run(CONF, sets + ["training.max_updates=120"], ranks=3)
sa = t.summary(a)
ua = [r["update"] for r in t.metrics(a)]
t.check(t.ckpts(a) == ["ckpt-%012d.%s" % (u, x) for u in (40, 80, 120)
                     for x in ("0.pdck", "1.pdck", "2.pdck", "manifest")],
        "%s: checkpoints at 40, 80, 120, a part per rank: %s" % (name, t.ckpts(a)))
b, _ = t.run(CONF, sets + ["training.max_updates=60"], ranks=3)
b, _ = t.run(CONF, sets + ["training.max_updates=120"], ranks=3, out=b, args=["--resume"])
k = t.killed_after(a, 40)
k, _ = t.run(CONF, sets + ["training.max_updates=120"], ranks=3, out=k, args=["--resume"])
for d, how in ((b, "stopped at 60"), (k, "killed after the checkpoint at 40")):
    s = t.summary(d)
    t.check(s["params_sha256"] == sa["params_sha256"],
            "%s, %s and resumed: params_sha256 %s == uninterrupted %s"
            % (name, how, s["params_sha256"][:16], sa["params_sha256"][:16]))
    t.check([r["update"] for r in t.metrics(d)] == ua,
            "%s, %s: metrics.jsonl continues: %s" % (name, how, [r["update"] for r in t.metrics(d)]))
    t.check(s["gradients_sent"] == sa["gradients_sent"] == 360 and
            s["gradients_applied"] == sa["gradients_applied"],
            "%s, %s: summary.json counts the whole run: %s sent, %s applied"
            % (name, how, s["gradients_sent"], s["gradients_applied"]))
    whole_run(s, "%s, %s and resumed" % (name, how), 120)
t.check(all(w["lost_at_update"] is None for w in sa["per_worker"]),
        "%s: no rank is reported lost: %s" % (name, [w["lost_at_update"] for w in sa["per_worker"]]))

# SIGTERM to every rank (as Slurm sends it): rank 0 flags the round, every
# rank writes its part after it, exit 143; resumed for 40 more updates.
long_ = sets + ["training.epochs=1000"]
p, d = start(long_, 3)
if t.wait_until("a metrics row at 40 and 3 ranks", proc=p,
                cond=lambda: max(t.rows_so_far(d) or [0]) >= 40 and len(t.rank_pids(p)) == 3):
    for pid in t.rank_pids(p).values():
        os.kill(pid, signal.SIGTERM)
_, err = p.communicate(timeout=300)
t.check(p.returncode == 143, "%s, SIGTERM: mpirun exits 143 (got %s): %r"
        % (name, p.returncode, err[-600:]))
s = t.summary(d) if os.path.exists(os.path.join(d, "summary.json")) else {"updates": None}
u = s["updates"]
line = ("paramd: stopped by SIGTERM after update %s; checkpoint %s/checkpoints/"
        "ckpt-%012d.manifest written (continue with --resume)" % (u, d, u or 0))
t.check(s.get("exit") == "signal" and t.checkpoint_sets(d)[-1:] == [u] and line in err.splitlines(),
        "%s, SIGTERM: summary.json exit %s, a checkpoint at the stop %s (%s), one line says so: %r"
        % (name, s.get("exit"), u, t.checkpoint_sets(d), err[-400:]))
if u is not None:
    M = u + 40
    r, _ = t.run(CONF, long_ + ["training.max_updates=%d" % M], ranks=3)
    t.run(CONF, long_ + ["training.max_updates=%d" % M], ranks=3, out=d, args=["--resume"])
    s, sr = t.summary(d), t.summary(r)
    t.check(s["params_sha256"] == sr["params_sha256"] and s["updates"] == M,
            "%s: stopped by SIGTERM at %d, resumed to %d: params_sha256 %s == uninterrupted %s"
            % (name, u, M, s["params_sha256"][:16], sr["params_sha256"][:16]))
    t.check([x["update"] for x in t.metrics(d)] == [x["update"] for x in t.metrics(r)],
            "%s, SIGTERM: metrics.jsonl has the uninterrupted run's rows: %s"
            % (name, [x["update"] for x in t.metrics(d)]))
    whole_run(s, name + ", stopped by SIGTERM and resumed", M)
t.done()
