"""Lost workers and checkpoints together: an async run under mpirun
--enable-recovery with training.worker_timeout and checkpoint.every_*
loses a worker (SIGKILL) and keeps checkpointing with the others (a
checkpoint never waits for the lost worker's state), each checkpoint taken
after the loss records it (the LOST section of part 0: worker, rank,
when, its gradients sent), and --resume brings its rank back: it rejoins
from its iterator as of its loss, so over the whole resumed run every
minibatch of its shard is sent exactly once, every gradient is accounted
for, and summary.json still names it as lost during the earlier part
(rejoined_at_update).

1. Killed after the first checkpoint: the run finishes, checkpoints go on.
2. That run as if its job had been killed right after a checkpoint taken
   while the worker was lost (pdtest.killed_after), resumed.
3. Killed before the first checkpoint (only the end's: checkpoint.every_updates
   larger than the run): the writer had no state of the lost worker at all
   and failed ("no state of worker 1": no summary.json); now the end's
   checkpoint records it with no saved state (a fresh iterator), and
   --resume of the finished run lets it train the rest of its shard. The
   run is traced: paramd --replay of it, and of the resumed run, gives its
   params_sha256 (the rejoined worker's minibatches are those the replay
   numbers by its requests).

4. Lost again: a run killed after the first checkpoint is resumed from the
   first checkpoint after the loss, and the rejoined worker is killed again
   in the resumed run: that run's summary.json accounts for every gradient
   of the whole run (server 0 counted only the lost worker's requests
   since the resume: sent came short by those before it) and names both
   losses; resumed once more from a checkpoint after the second, the
   worker rejoins again and each shard's minibatches are sent once.

Each gradient is delayed (faults.delay uniform: one draw from the worker's
fault RNG per request), and in each checkpoint of the resumed runs after the
rejoin every worker's fault RNG is its stream after as many draws as it sent
requests: the rejoining worker skips one draw per skipped minibatch (before
the fix its stream stayed where its saved state had it).

Run with the argument "after" (1 and 2), "before" (3) or "again" (4): three
CI tests.
The killed rank is found among the processes of the mpirun this test
started (pdtest.rank_pids), never by name; each wait is for a state of the
run directory."""
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile

import pdtest as t

CONF = "tests/conf/softmax.yaml"
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
BASE = ["training.mode=async", "training.eval_every=400", "training.worker_timeout=2",
        "checkpoint.keep=100"]
WORKER, RANK = 1, 2   # W = 3 workers on ranks 1..3, one server


def job(out, sets, args=()):
    return subprocess.Popen(t.mpirun_cmd(4, CONF, out, BASE + sets, args=args, recovery=True),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def status_update(out):
    try:
        with open(os.path.join(out, "status.json")) as f:
            return json.load(f)["update"]
    except (OSError, ValueError, KeyError):
        return -1


def finished(p, name):
    """The job's end: mpirun --enable-recovery exits 0 whatever the ranks
    do, so a finished run is one with summary.json."""
    try:
        _, err = p.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        t.fail("%s: still running 300 s later" % name)
    return err


def kill_worker(p, out, what, cond):
    if not t.wait_until(what, cond, p, deadline=120):
        return False
    pids = t.rank_pids(p)
    if RANK not in pids:
        t.fail("rank %d not found among the job's ranks (%s)" % (RANK, pids))
        return False
    os.kill(pids[RANK], signal.SIGKILL)
    return True


def sections(path):
    """{tag: payload} of a checkpoint part (paramd/ckpt.h)."""
    with open(path, "rb") as f:
        b = f.read()
    out, at = {}, 40
    for _ in range(struct.unpack_from("<I", b, 12)[0]):
        tag, n = b[at:at + 4].decode(), struct.unpack_from("<Q", b, at + 8)[0]
        out[tag] = b[at + 16:at + 16 + n]
        at += 16 + n
    return out


def lost_of(d, u):
    """Part 0 of checkpoint u of run d: its LOST entries, and the length of
    each worker's iterator state (ITER)."""
    s = sections(os.path.join(d, "checkpoints", "ckpt-%012d.0.pdck" % u))
    lost = []
    if "LOST" in s:
        n = struct.unpack_from("<Q", s["LOST"])[0]
        for i in range(n):
            w, r, lu, up, ws, sent, rej = struct.unpack_from("<IIqqdqq", s["LOST"], 8 + 48 * i)
            lost.append({"worker": w, "rank": r, "last_update": lu, "update": up, "wall_s": ws,
                         "sent": sent, "rejoined": rej})
    it, at, lens = s["ITER"], 8, []
    for _ in range(struct.unpack_from("<I", it)[0]):
        n = struct.unpack_from("<Q", it, at)[0]
        lens.append(n)
        at += 8 + n
    return lost, lens


M64 = (1 << 64) - 1


def hash64(x):
    """paramd/rng.h's pd_hash64 (splitmix64's finalizer)."""
    x = (x + 0x9e3779b97f4a7c15) & M64
    x = ((x ^ (x >> 30)) * 0xbf58476d1ce4e5b9) & M64
    x = ((x ^ (x >> 27)) * 0x94d049bb133111eb) & M64
    return x ^ (x >> 31)


def fault_rng(rank, draws, seed=3):
    """The state of rank's fault-injection stream (pd_rng_make(run.seed,
    PD_STREAM_FAULTS = 5, rank): softmax.yaml's seed 3) after `draws` draws
    of xoshiro256**: src/rng.c in Python."""
    x = hash64(hash64(seed) ^ hash64((5 * 0x632be59bd9b4e019) & M64) ^
               ((rank * 0xd1b54a32d192ed03) & M64))
    s = []
    for i in range(4):
        x = hash64((x + i) & M64)
        s.append(x)
    for _ in range(draws):
        t_ = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t_
        s[3] = ((s[3] << 45) | (s[3] >> 19)) & M64
    return tuple(s)


def worker_states(d, u):
    """Part 0 of checkpoint u of run d: each worker's (requests sent, fault
    RNG state) from RUNS (paramd/ckpt.h)."""
    r = sections(os.path.join(d, "checkpoints", "ckpt-%012d.0.pdck" % u))["RUNS"]
    at = 120 + 4 * struct.unpack_from("<Q", r, 112)[0]
    out = []
    for _ in range(struct.unpack_from("<Q", r, at)[0]):
        seq = struct.unpack_from("<q", r, at + 8)[0]
        out.append((seq, struct.unpack_from("<4Q", r, at + 40)))
        at += 72 + struct.unpack_from("<Q", r, at + 72)[0]
    return out


def fault_rng_follows(d, sets, name):
    """With faults.delay uniform every request draws once from its worker's
    fault RNG: in each checkpoint of `sets`, each worker's RNG state is its
    stream after as many draws as its requests sent."""
    bad = []
    for u in sets:
        for w, (seq, rng) in enumerate(worker_states(d, u)):
            if rng != fault_rng(w + 1, seq):
                bad.append((u, w, seq))
    t.check(sets and not bad, "%s: in the checkpoints %s each worker's fault RNG has drawn once "
            "per request it sent (checkpoint, worker, requests that disagree: %s)"
            % (name, sets[:1] + ["..."] + sets[-1:], bad[:4]))


def replayed(d, name):
    """paramd --replay of run d reproduces its params_sha256."""
    r = subprocess.run([t.EXE, "--replay", d, "--out", tempfile.mkdtemp(prefix="paramd-lostck-")],
                       capture_output=True, text=True, env=ENV, timeout=300)
    t.check(r.returncode == 0 and "matches the run" in r.stdout,
            "%s: paramd --replay gives its params_sha256 (exit %d): %s"
            % (name, r.returncode, (r.stdout + r.stderr).strip().splitlines()[-1:]))


def same_loss(entry, one):
    return all(entry[k] == one[k] for k in ("worker", "rank", "last_update", "update"))


def whole_run(d, name, one, rejoined, epochs, before=()):
    """A resumed run of a run that lost worker WORKER (its entry ONE, after
    the entries BEFORE) at the checkpoint `rejoined`: it rejoined there and
    finished its epochs; every worker sent each minibatch of its shard
    exactly once (the same count for the three shards); every gradient
    accounted for."""
    s = t.summary(d)
    t.check_accounting(s, name)
    lost = s.get("workers_lost", [])
    t.check(len(lost) == len(before) + 1 and same_loss(lost[-1], one) and
            abs(lost[-1]["wall_s"] - one["wall_s"]) < 1e-6 and
            lost[-1]["rejoined_at_update"] == rejoined and
            all(same_loss(x, y) and x["rejoined_at_update"] == y["rejoined_at_update"]
                for x, y in zip(lost, before)),
            "%s: summary.json still names worker %d (rank %d) lost at update %d (its last "
            "message at %d), rejoined at %d: %s" % (name, WORKER, RANK, one["update"],
                                                   one["last_update"], rejoined, lost))
    pw = {w["rank"]: w for w in s["per_worker"]}
    done = [pw[r]["applied"] + pw[r]["dropped"] for r in (1, 2, 3)]
    t.check(all(pw[r]["epochs"] == epochs and pw[r]["lost_at_update"] is None for r in (1, 2, 3)),
            "%s: every worker did its %d epochs, none is lost now: %s"
            % (name, epochs, [(r, pw[r]["epochs"], pw[r]["lost_at_update"]) for r in pw]))
    t.check(s["gradients_bad"] == 0 and len(set(done)) == 1 and
            sum(done) == s["gradients_sent"],
            "%s: each shard's minibatches sent once, the lost one's too (applied + dropped "
            "per worker %s, %d sent)" % (name, done, s["gradients_sent"]))
    u = [r["update"] for r in t.metrics(d)]
    t.check(u == sorted(set(u)), "%s: metrics.jsonl continues, no row twice" % name)
    return s


FIG = []
CASE = sys.argv[1] if len(sys.argv) > 1 else ""
if CASE not in ("after", "before", "again"):
    t.fail("usage: test_lost_ckpt.py after|before|again (got %r)" % CASE)


# 1. Killed after the first checkpoint: the others go on, and so do the
# checkpoints (3 epochs, each gradient sent 2 ms after the last on average,
# uniform on [0, 4 ms]: the others have thousands of updates to go when the
# loss is counted, 2 s after the kill, however fast the machine; each delay
# a draw from the worker's fault RNG, whose state every checkpoint holds).
def after_first():
    name = "async W=3, worker killed after the first checkpoint"
    a = tempfile.mkdtemp(prefix="paramd-lostck-")
    E1 = ["training.epochs=3", "checkpoint.every_updates=200",
          "faults.delay.distribution=uniform", "faults.delay.mean_ms=2"]
    p = job(a, E1)
    if kill_worker(p, a, "the first checkpoint", lambda: t.checkpoint_sets(a)):
        killed_after_ckpt = t.checkpoint_sets(a)[0]
        err = finished(p, name)
        ok = os.path.exists(os.path.join(a, "summary.json"))
        t.check(ok, "%s: the run finished (summary.json): %s" % (name, err[-600:]))
        if ok:
            s, one = t.check_lost_worker(a, name, WORKER, RANK, 3)
            sets = t.checkpoint_sets(a)
            after = [u for u in sets if one and u >= one["update"]]
            t.check(one is not None and sets[-1] == s["updates"] and len(after) >= 3,
                    "%s: checkpoints went on after the loss at %s: %d of them, the last at the "
                    "end (%s)" % (name, one and one["update"], len(after), sets[-3:]))
            recorded = [lost_of(a, u)[0] for u in after]
            t.check(one is not None and all(len(l) == 1 and same_loss(l[0], one) and
                                            l[0]["rejoined"] == -1 and l[0]["sent"] > 0
                                            for l in recorded),
                    "%s: each of them records it in LOST (worker, rank, when, its gradients "
                    "sent): %s" % (name, recorded[:1]))
            t.check(lost_of(a, killed_after_ckpt)[0] == [],
                    "%s: the one written before the kill (at %d) does not"
                    % (name, killed_after_ckpt))
            pause = s["checkpoint_pause_s"]
            FIG.append("%s (at %d): lost at update %d (last message %d), "
                       "%d updates, test_acc %.4f, %d sent = %d applied + %d dropped, %d "
                       "checkpoints (%d after the loss), pause mean %.4f s max %.4f s"
                       % (name, killed_after_ckpt, one["update"], one["last_update"], s["updates"],
                          s["test_acc"], s["gradients_sent"], s["gradients_applied"], s["dropped"],
                          pause["count"], len(after), pause["mean"], pause["max"]))

            # 2. The job killed right after a checkpoint taken while the worker
            # was lost (the last one before the end), resumed with every rank
            # alive again.
            mid = [u for u in after if u < s["updates"]][-1:]
            name = "killed after the checkpoint at %s (worker lost), resumed" % (mid[0] if mid
                                                                                 else "?")
            if mid:
                k = t.killed_after(a, mid[0])
                q = job(k, E1, args=["--resume"])
                err = finished(q, name)
                ok = os.path.exists(os.path.join(k, "summary.json"))
                t.check(ok, "%s: the resumed run finished: %s" % (name, err[-600:]))
                if ok:
                    sr = whole_run(k, name, one, mid[0], 3)
                    # The rejoined worker skipped the minibatches it had sent
                    # before its loss, and its fault RNG the delays they drew
                    # (it was left where the state at its last checkpoint had
                    # it: behind by the skipped requests, before the fix).
                    fault_rng_follows(a, t.checkpoint_sets(a), "the run that lost it")
                    fault_rng_follows(k, [u for u in t.checkpoint_sets(k) if u > mid[0]],
                                      "%s, after its rejoin" % name)
                    # (softmax on Fashion-MNIST: 0.83 after 3 epochs; the last
                    # updates, of the rejoined worker's shard alone, move it by a
                    # few hundredths)
                    t.check(sr["test_acc"] >= 0.75,
                            "%s: test accuracy %.4f >= 0.75 (the run that went on without "
                            "the worker: %.4f)" % (name, sr["test_acc"], s["test_acc"]))
                    FIG.append("%s: rejoined at %d, %d updates, test_acc %.4f, %d sent = %d "
                               "applied + %d dropped" % (name, mid[0], sr["updates"],
                                                         sr["test_acc"], sr["gradients_sent"],
                                                         sr["gradients_applied"], sr["dropped"]))
    else:
        p.kill()
        p.communicate()


# 3. Killed before the first checkpoint: the end's is the first, and the
# writer has no state of the lost worker (it failed on that).
def before_first():
    name = "async W=3, worker killed before the first checkpoint"
    b = tempfile.mkdtemp(prefix="paramd-lostck-")
    E3 = ["training.epochs=2", "checkpoint.every_updates=1000000", "training.trace=true",
          "faults.delay.distribution=uniform", "faults.delay.mean_ms=0.5"]
    p = job(b, E3)
    if kill_worker(p, b, "update 100", lambda: status_update(b) >= 100):
        err = finished(p, name)
        ok = os.path.exists(os.path.join(b, "summary.json"))
        t.check(ok, "%s: the run finished (summary.json), its checkpoint at the end written: %s"
                % (name, [l for l in err.splitlines() if l.startswith("paramd:")][-2:]))
        if ok:
            s, one = t.check_lost_worker(b, name, WORKER, RANK, 2)
            sets = t.checkpoint_sets(b)
            lost, lens = lost_of(b, sets[-1]) if sets else ([], [])
            t.check(sets == [s["updates"]] and one is not None and len(lost) == 1 and
                    same_loss(lost[0], one) and lost[0]["rejoined"] == -1 and
                    lens[WORKER] == 0 and all(lens[w] > 0 for w in (0, 2)),
                    "%s: the end's checkpoint (%s) records it, with no saved state (ITER lengths "
                    "%s): %s" % (name, sets, lens, lost))
            FIG.append("%s: lost at update %d (last message %d), %d updates, test_acc %.4f, %d "
                       "sent = %d applied + %d dropped" % (name, one["update"], one["last_update"],
                                                           s["updates"], s["test_acc"],
                                                           s["gradients_sent"],
                                                           s["gradients_applied"], s["dropped"]))
            replayed(b, name)
            # Resumed at its end: the others have no epochs left, the lost one
            # rejoins where it was lost and trains the rest of its shard.
            name = "its end resumed"
            q = job(b, E3, args=["--resume"])
            err = finished(q, name)
            ok = os.path.exists(os.path.join(b, "summary.json")) and \
                t.summary(b)["updates"] > s["updates"]
            t.check(ok, "%s: the resumed run trained on and finished: %s" % (name, err[-600:]))
            if ok:
                sr = whole_run(b, name, one, s["updates"], 2)
                # It rejoined from a fresh state: its fault RNG past the
                # delays of the requests it had sent before its loss too.
                fault_rng_follows(b, [u for u in t.checkpoint_sets(b) if u > s["updates"]], name)
                replayed(b, name)
                FIG.append("%s: rejoined at %d, %d updates, test_acc %.4f, %d sent = %d applied + "
                           "%d dropped" % (name, s["updates"], sr["updates"], sr["test_acc"],
                                           sr["gradients_sent"], sr["gradients_applied"],
                                           sr["dropped"]))
    else:
        p.kill()
        p.communicate()


def run_to_end(d, name, sets, args=(), kill=None):
    """Run (or resume) d, killing rank RANK once a checkpoint newer than
    `kill` is written (None: no kill); its summary.json, or None."""
    p = job(d, sets, args=args)
    if kill is not None and not kill_worker(
            p, d, "a checkpoint after %d" % kill,
            lambda: [u for u in t.checkpoint_sets(d) if u > kill]):
        p.kill()
        p.communicate()
        return None
    err = finished(p, name)
    ok = os.path.exists(os.path.join(d, "summary.json"))
    t.check(ok, "%s: the run finished (summary.json): %s" % (name, err[-600:]))
    return t.summary(d) if ok else None


# 4. Lost, rejoined, lost again, rejoined again.
def lost_again():
    E4 = ["training.epochs=3", "checkpoint.every_updates=200",
          "faults.delay.distribution=uniform", "faults.delay.mean_ms=2"]
    name = "async W=3, worker killed after the first checkpoint"
    a = tempfile.mkdtemp(prefix="paramd-lostck-")
    s = run_to_end(a, name, E4, kill=0)
    if not s:
        return
    _, one = t.check_lost_worker(a, name, WORKER, RANK, 3)
    first = [u for u in t.checkpoint_sets(a) if one and u >= one["update"]][:1]
    if not first:
        t.fail("%s: no checkpoint after the loss" % name)
        return
    name = "resumed from %d, the rejoined worker killed again" % first[0]
    k = t.killed_after(a, first[0])
    s = run_to_end(k, name, E4, args=["--resume"], kill=first[0])
    if not s:
        return
    t.check_accounting(s, name)
    lost = s.get("workers_lost", [])
    two = len(lost) == 2 and same_loss(lost[0], one) and lost[1]["worker"] == WORKER and \
        lost[0]["rejoined_at_update"] == first[0] and lost[1]["rejoined_at_update"] is None and \
        lost[1]["update"] > first[0]
    t.check(two, "%s: summary.json names both losses, the first rejoined at %d: %s"
            % (name, first[0], lost))
    pw = {w["rank"]: w for w in s["per_worker"]}
    t.check(two and pw[RANK]["lost_at_update"] == lost[1]["update"],
            "%s: per_worker names the second loss (%s)" % (name, pw[RANK]["lost_at_update"]))
    if not two:
        return
    FIG.append("%s: lost at %d and again at %d, %d updates, %d sent = %d applied + %d dropped"
               % (name, one["update"], lost[1]["update"], s["updates"], s["gradients_sent"],
                  s["gradients_applied"], s["dropped"]))
    later = [u for u in t.checkpoint_sets(k) if lost[1]["update"] <= u < s["updates"]][:1]
    if not later:
        t.fail("%s: no checkpoint after the second loss before the end" % name)
        return
    name = "resumed again from %d" % later[0]
    k2 = t.killed_after(k, later[0])
    sr = run_to_end(k2, name, E4, args=["--resume"])
    if sr:
        whole_run(k2, name, lost[1], later[0], 3, before=[lost[0]])
        fault_rng_follows(k, [u for u in t.checkpoint_sets(k) if u > first[0]],
                          "resumed from %d (rejoined, lost again)" % first[0])
        fault_rng_follows(k2, [u for u in t.checkpoint_sets(k2) if u > later[0]],
                          "%s, after its second rejoin" % name)
        FIG.append("%s: %d updates, test_acc %.4f, %d sent = %d applied + %d dropped"
                   % (name, sr["updates"], sr["test_acc"], sr["gradients_sent"],
                      sr["gradients_applied"], sr["dropped"]))


if CASE == "after":
    after_first()
elif CASE == "before":
    before_first()
elif CASE == "again":
    lost_again()
for f in FIG:
    print("figure:", f)
t.done()
