"""Signals in the distributed modes: server 0 turns a stop signal into the
mode's own stop (sync, local_sgd: at the next round's close, with a
checkpoint), writes summary.json ("exit": "signal") and the job exits 143;
SIGUSR1 writes a checkpoint and training goes on. Whichever way the signal
comes: SIGUSR2 to mpirun (forwarded to every rank at once, as
scripts/slurm/paramd.sbatch sends it), SIGTERM to every rank (as Slurm's
scancel or time limit sends it), or SIGTERM to server 0 alone. Every
stopped sync and local_sgd run is resumed and ends with the params_sha256
of an uninterrupted run. async stops at once without a checkpoint, every
gradient accounted for.

Signals are sent once the run is training (a metrics.jsonl row exists);
each wait is for a state of the run directory, not for a time."""
import os
import signal

import pdtest as t

CONF = "tests/conf/softmax.yaml"
LONG = ["training.epochs=1000", "training.eval_every=100", "training.eval_wait=true"]
SYNC = ["training.mode=sync"]
SYNC2 = ["training.mode=sync", "training.servers=2", "optimizer.name=momentum",
         "optimizer.lr=0.05"]
LOCAL = ["training.mode=local_sgd", "training.local_steps=4"]


def start(sets, ranks):
    return t.start(CONF, LONG + list(sets), ranks)


def stopped(p, d, sig, name, ckpt=True):
    """mpirun exits 143; server 0's one line; summary.json says signal.
    Returns the update of the stop's checkpoint (None without one)."""
    _, err = p.communicate(timeout=300)
    t.check(p.returncode == 143, "%s: mpirun exits 143 (got %s)" % (name, p.returncode))
    s = t.summary(d) if os.path.exists(os.path.join(d, "summary.json")) else {}
    u = s.get("updates")
    t.check(s.get("exit") == "signal", "%s: summary.json exit %s" % (name, s.get("exit")))
    if ckpt:
        line = ("paramd: stopped by %s after update %s; checkpoint %s/checkpoints/"
                "ckpt-%012d.manifest written (continue with --resume)" % (sig, u, d, u or 0))
        t.check(line in err.splitlines() and t.checkpoint_sets(d)[-1:] == [u],
                "%s: a checkpoint at the stop, %s, and one line says so: %r"
                % (name, t.checkpoint_sets(d), err[-600:]))
    return u


stops = []   # (name, run dir, ranks, sets, update)

# sync, 1 server + 2 workers: SIGUSR2 to mpirun, which forwards it to every rank.
p, d = start(SYNC, 3)
if t.wait_until("a metrics row at 100", proc=p, cond=lambda: max(t.rows_so_far(d) or [0]) >= 100):
    p.send_signal(signal.SIGUSR2)
name = "sync, SIGUSR2 to mpirun"
stops.append((name, d, 3, SYNC, stopped(p, d, "SIGUSR2", name)))

# sync, 2 servers + 2 workers: SIGTERM to every rank, twice.
p, d = start(SYNC2, 4)
if t.wait_until("a metrics row at 100 and 4 ranks", proc=p,
                cond=lambda: max(t.rows_so_far(d) or [0]) >= 100 and len(t.ranks_of(p.pid)) == 4):
    for _ in range(2):
        for pid in t.ranks_of(p.pid).values():
            os.kill(pid, signal.SIGTERM)
name = "sync S=2, SIGTERM to every rank twice"
stops.append((name, d, 4, SYNC2, stopped(p, d, "SIGTERM", name)))

# local_sgd: SIGTERM to server 0 alone; the others follow it.
p, d = start(LOCAL, 3)
if t.wait_until("a metrics row at 100 and 3 ranks", proc=p,
                cond=lambda: max(t.rows_so_far(d) or [0]) >= 100 and len(t.ranks_of(p.pid)) == 3):
    os.kill(t.ranks_of(p.pid)[0], signal.SIGTERM)
name = "local_sgd, SIGTERM to server 0 alone"
stops.append((name, d, 3, LOCAL, stopped(p, d, "SIGTERM", name)))

# sync: SIGUSR1 to mpirun: a checkpoint, training goes on past it; then SIGUSR2.
p, d = start(SYNC, 3)
if t.wait_until("a metrics row at 100", proc=p, cond=lambda: max(t.rows_so_far(d) or [0]) >= 100):
    p.send_signal(signal.SIGUSR1)
    if t.wait_until("the SIGUSR1 checkpoint", proc=p, cond=lambda: t.checkpoint_sets(d)):
        u1 = t.checkpoint_sets(d)[0]
        if t.wait_until("a row after update %d" % u1, proc=p,
                        cond=lambda: max(t.rows_so_far(d)) > u1):
            p.send_signal(signal.SIGUSR2)
name = "sync, SIGUSR1 then SIGUSR2"
u2 = stopped(p, d, "SIGUSR2", name)
s = t.checkpoint_sets(d)
t.check(len(s) == 2 and s[0] < s[1], "%s: the SIGUSR1 checkpoint, then the stop's: %s" % (name, s))
if len(s) == 2:
    # Resume from the SIGUSR1 checkpoint: the stop's set removed.
    for n in os.listdir(os.path.join(d, "checkpoints")):
        if n.startswith("ckpt-%012d." % s[1]):
            os.remove(os.path.join(d, "checkpoints", n))
    stops.append(("sync, SIGUSR1's checkpoint", d, 3, SYNC, s[0]))

# async: stops at server 0's next message; no checkpoint in this mode.
p, d = start(["training.mode=async"], 3)
if t.wait_until("a metrics row at 100", proc=p, cond=lambda: max(t.rows_so_far(d) or [0]) >= 100):
    p.send_signal(signal.SIGUSR2)
name = "async, SIGUSR2 to mpirun"
stopped(p, d, "SIGUSR2", name, ckpt=False)
t.check(not t.checkpoint_sets(d), "%s: no checkpoint (%s)" % (name, t.checkpoint_sets(d)))
if os.path.exists(os.path.join(d, "summary.json")):
    t.check_accounting(t.summary(d), name)

# Each stopped run resumed to M; the uninterrupted run of its config to M.
refs = {}
for name, d, ranks, sets_, u in stops:
    if u is None:
        continue
    M = max(x[4] or 0 for x in stops if x[3] is sets_) + 100
    key = (ranks, tuple(sets_))
    if key not in refs:
        r, _ = t.run(CONF, LONG + sets_ + ["training.max_updates=%d" % M], ranks=ranks)
        refs[key] = (M, t.summary(r), [x["update"] for x in t.metrics(r)])
    M, sr, ur = refs[key]
    _, p = t.run(CONF, LONG + sets_ + ["training.max_updates=%d" % M], ranks=ranks, out=d,
                 args=["--resume"])
    s = t.summary(d)
    t.check(s["params_sha256"] == sr["params_sha256"] and s["updates"] == M,
            "%s: stopped at %d, resumed to %d: params_sha256 %s == uninterrupted %s"
            % (name, u, M, s["params_sha256"][:16], sr["params_sha256"][:16]))
    t.check_accounting(s, name + ", resumed")
    ud = [x["update"] for x in t.metrics(d)]
    t.check(ud == ur, "%s: metrics.jsonl has the uninterrupted run's rows: %s vs %s"
            % (name, ud, ur))
t.done()
