"""Lost workers with two servers (training.servers 2, under mpirun
--enable-recovery with training.worker_timeout 2): a worker killed with
SIGKILL in async, hogwild and sync with a backup worker (and clipping by
the global norm, a collective of the servers each round) does not stop
training. Server 0 alone counts it lost and tells server 1, and in sync
names each round's workers to it (docs/design.md, "Lost workers with
several servers"): both servers applied the same gradients (per_server
applied and applied_set equal), server 1 dropped at most the one gradient
the worker sent it and not server 0, summary.json, status.json and
metrics.jsonl name the lost worker and when, and its shard stays
untrained from then on. The killed rank is found among our own mpirun's
processes (pdtest.rank_pids), never by name."""
import json
import os
import signal
import subprocess
import tempfile

import pdtest as t

ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def status_update(out):
    try:
        with open(os.path.join(out, "status.json")) as f:
            return json.load(f)["update"]
    except (OSError, ValueError, KeyError):
        return -1


FIGURES = []
# Ranks: servers 0 and 1, workers 0, 1, 2 on ranks 2, 3, 4; rank 3 is killed.
for name, sets in (("async S=2", ["training.mode=async"]),
                   ("hogwild S=2", ["training.mode=hogwild", "training.server_threads=2"]),
                   ("sync b=1 S=2", ["training.mode=sync", "training.backup_workers=1",
                                     "optimizer.clip_norm=1"])):
    out = tempfile.mkdtemp(prefix="paramd-it-")
    cmd = t.mpirun_cmd(5, "tests/conf/softmax.yaml", out,
                       sets + ["training.servers=2", "training.epochs=3", "training.eval_every=100",
                               "training.worker_timeout=2"], recovery=True)
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    ok = t.wait_until("%s: update 200" % name, lambda: status_update(out) >= 200, job, deadline=120)
    pids = t.rank_pids(job)
    if not ok or 3 not in pids:
        job.kill()
        _, err = job.communicate()
        t.fail("%s: the job ended, or rank 3 was not found, before the kill (%s): %s"
               % (name, pids, err[-500:]))
        continue
    os.kill(pids[3], signal.SIGKILL)
    try:
        _, err = job.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        job.kill()
        for p in pids.values():   # our own ranks, left by the mpirun just killed
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        _, err = job.communicate()
        t.fail("%s: the job still runs 120 s after the kill: %s" % (name, err[-800:]))
        continue
    t.check(job.returncode == 0, "%s: a killed worker does not stop training; mpirun "
            "--enable-recovery exits 0 (%s)" % (name, job.returncode))
    if not os.path.exists(os.path.join(out, "summary.json")):
        t.fail("%s: no summary.json: %s" % (name, err[-800:]))
        continue
    s, one = t.check_lost_worker(out, name, 1, 3, 3)
    ps = s["per_server"]
    t.check(len(ps) == 2 and ps[0]["applied"] == ps[1]["applied"] == s["gradients_applied"] and
            ps[0]["applied_set"] == ps[1]["applied_set"] and ps[0]["bad"] == ps[1]["bad"],
            "%s: both servers applied the same gradients: %s" % (name, ps))
    t.check(len(ps) == 2 and ps[1]["dropped"] - ps[0]["dropped"] in (0, 1),
            "%s: server 1 dropped at most the one gradient only it got (%s)" % (name, ps))
    t.check("worker 1 (rank 3) lost at update" in err and "as server 0 says" in err,
            "%s: server 0 warns on stderr, server 1 follows it" % name)
    FIGURES.append("%s: killed after update %d (counted lost at %d, %.1f s), %d updates, test_acc %.4f"
                   % (name, one["last_update"], one["update"], one["wall_s"], s["updates"],
                      s["test_acc"]) if one else name + ": -")
for f in FIGURES:
    print("figure:", f)
t.done()
