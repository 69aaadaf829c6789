"""Async checkpoints and --resume beyond one plain server: with two servers each
writes its part of every checkpoint at one cut of server 0's decisions;
the gradients in flight at a checkpoint count as dropped at the stop, so a
run stopped (at max_updates, by SIGTERM to every rank, or killed right
after a checkpoint) and resumed accounts for every gradient over the whole
run (gradients_sent = applied + dropped + bad, the same counts on both
servers), continues metrics.jsonl without a row twice or missing, and
finishes. Hogwild (server threads) does the same, its threads quiescing
for each snapshot.

Signals are sent once the run is training (a metrics.jsonl row exists);
each wait is for a state of the run directory, not for a time."""
import os
import signal

import pdtest as t

CONF = "tests/conf/softmax.yaml"
BASE = ["training.mode=async", "training.eval_every=40", "training.eval_wait=true",
        "checkpoint.every_updates=40", "checkpoint.keep=3"]
S2 = ["training.servers=2"]


# Stopped at max_updates 60 (checkpoints at 40 and the end), resumed to 120,
# then killed right after the checkpoint at 80 (mid-run: the gradients then
# in flight are dropped at the stop) and resumed to 120 again.
name = "async S=2 W=2"
b, _ = t.run(CONF, BASE + S2 + ["training.max_updates=60"], ranks=4)
t.check(t.checkpoint_sets(b) == [40, 60] and
        sorted(os.listdir(os.path.join(b, "checkpoints"))) ==
        ["ckpt-%012d.%s" % (u, x) for u in (40, 60) for x in ("0.pdck", "1.pdck", "manifest")],
        "%s: checkpoints at 40 and 60, a part per server: %s" % (name, t.checkpoint_sets(b)))
b, _ = t.run(CONF, BASE + S2 + ["training.max_updates=120"], ranks=4, out=b, args=["--resume"])
t.check_resumed_async(b, 120, name + ", stopped at 60 and resumed", 2)
k = t.killed_after(b, 80)
k, _ = t.run(CONF, BASE + S2 + ["training.max_updates=120"], ranks=4, out=k, args=["--resume"])
t.check_resumed_async(k, 120, name + ", killed after 80 and resumed", 2)

# A worker that sends nothing between a snapshot and its FINAL (300 times
# slower): the other's FINAL state came while the snapshot still waited and
# took the place of the state of its time (the checkpoint at 40 then held
# the states at 120: resumed from it, 200 sent for 160 applied + 1
# dropped). Resumed from the first checkpoint, every gradient accounted for.
name = "async W=2, one worker 300x slow"
SLOW = ["faults.slow_workers=[{rank: 2, factor: 300}]"]
a, _ = t.run(CONF, BASE + SLOW + ["training.max_updates=120"], ranks=3)
c = t.checkpoint_sets(a)
k = t.killed_after(a, c[0])
k, _ = t.run(CONF, BASE + SLOW + ["training.max_updates=160"], ranks=3, out=k, args=["--resume"])
s = t.summary(k)
t.check(s["updates"] == 160, "%s: resumed from %s to 160" % (name, c[0]))
t.check_accounting(s, name + ", resumed from its first checkpoint")

# Hogwild, 2 threads serving 2 workers: the threads quiesce for each
# snapshot (every decided gradient applied, none half); stopped at 60 and
# resumed to 120, then killed after 80 and resumed.
HOG = ["training.mode=hogwild", "training.server_threads=2"]
name = "hogwild T=2 W=2"
b, _ = t.run(CONF, BASE + HOG + ["training.max_updates=60"], ranks=3)
c = t.checkpoint_sets(b)   # (a thread may step past 40 before the snapshot)
t.check(len(c) == 2 and 40 <= c[0] < 60 and c[1] == 60, "%s: checkpoints at 40 and 60: %s"
        % (name, c))
b, _ = t.run(CONF, BASE + HOG + ["training.max_updates=120"], ranks=3, out=b, args=["--resume"])
t.check_resumed_async(b, 120, name + ", stopped at 60 and resumed", 1, exact=False)
k = t.killed_after(b, 80)
k, _ = t.run(CONF, BASE + HOG + ["training.max_updates=120"], ranks=3, out=k, args=["--resume"])
t.check_resumed_async(k, 120, name + ", killed after 80 and resumed", 1, exact=False)

# SIGTERM to every rank of a long run: the stop's checkpoint, exit 143;
# resumed 80 updates further.
p, d = t.start(CONF, BASE + S2 + ["training.epochs=1000"], ranks=4)
if t.wait_until("a metrics row at 80 and 4 ranks", proc=p,
                cond=lambda: max(t.rows_so_far(d) or [0]) >= 80 and len(t.ranks_of(p.pid)) == 4):
    for pid in t.ranks_of(p.pid).values():
        os.kill(pid, signal.SIGTERM)
_, err = p.communicate(timeout=300)
name = "async S=2 W=2, SIGTERM to every rank"
t.check(p.returncode == 143, "%s: mpirun exits 143 (got %s): %r" % (name, p.returncode, err[-600:]))
s = t.summary(d) if os.path.exists(os.path.join(d, "summary.json")) else {}
u = s.get("updates") or 0
t.check(s.get("exit") == "signal" and t.checkpoint_sets(d)[-1:] == [u],
        "%s: summary.json exit %s, the stop's checkpoint at %s: %s"
        % (name, s.get("exit"), u, t.checkpoint_sets(d)))
if s:
    t.check_accounting(s, name)
m = u + 80 - u % 40
t.run(CONF, BASE + S2 + ["training.epochs=1000", "training.max_updates=%d" % m], ranks=4, out=d,
      args=["--resume"])
t.check_resumed_async(d, m, name + ", resumed to %d" % m, 2)
t.done()
