"""A worker killed (SIGKILL) in plain sync (no backup workers), a mode that
cannot go on without it: the job exits non-zero within 30 s, the newest
checkpoint it wrote before the kill is intact, and --resume with the full
world again finishes with the same params_sha256 as an uninterrupted run.
The killed rank is found among the processes of the mpirun this test
started (pdtest.rank_pids), never by name."""
import os
import signal
import subprocess
import tempfile
import time

import pdtest as t

CONF = "tests/conf/softmax.yaml"
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
SYNC = ["training.mode=sync", "training.epochs=3", "training.eval_every=200",
        "checkpoint.every_updates=100", "checkpoint.keep=2"]

# The uninterrupted run: 2 workers, 1 server, 3 epochs (2814 updates).
a, _ = t.run(CONF, SYNC, ranks=3)
sa = t.summary(a)

# The same run, worker 1 (rank 2) killed once a checkpoint at 300 or later is written.
out = tempfile.mkdtemp(prefix="paramd-it-")
job = subprocess.Popen(t.mpirun_cmd(3, CONF, out, SYNC), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=ENV)
sets = t.wait_until("a checkpoint at 300 or later", lambda: [u for u in t.checkpoint_sets(out)
                                                            if u >= 300], job, deadline=120)
pids = t.rank_pids(job)
if not sets or 2 not in pids:
    job.kill()
    job.communicate()
    t.fail("sync b=0: the job ended before the kill, or rank 2 was not found (%s)" % pids)
    t.done()
os.kill(pids[2], signal.SIGKILL)
killed = time.monotonic()
try:
    _, err = job.communicate(timeout=30)
except subprocess.TimeoutExpired:
    job.kill()
    _, err = job.communicate()
    t.fail("sync b=0, a worker killed: the job still runs 30 s later")
took = time.monotonic() - killed
t.check(job.returncode not in (0, None), "sync b=0, worker 1 (rank 2) killed: mpirun exits non-zero "
        "(%s) within 30 s (%.1f s)" % (job.returncode, took))
t.check(not os.path.exists(os.path.join(out, "summary.json")),
        "sync b=0, a worker killed: no summary.json claims the run finished")
have = t.checkpoint_sets(out)
t.check(have and have[-1] >= 300 and have[-1] < sa["updates"],
        "the killed run left checkpoints, the newest at %s (of %d updates)" % (have, sa["updates"]))

# --resume with the full world again: the uninterrupted result, bit for bit.
_, p = t.run(CONF, SYNC, ranks=3, out=out, args=["--resume"])
sr = t.summary(out)
t.check(sr["params_sha256"] == sa["params_sha256"],
        "resumed from the checkpoint at %s: params_sha256 %s == uninterrupted %s"
        % (have[-1] if have else None, sr["params_sha256"], sa["params_sha256"]))
t.check(sr["updates"] == sa["updates"] and [r["update"] for r in t.metrics(out)] ==
        [r["update"] for r in t.metrics(a)],
        "resumed: %d updates, metrics.jsonl's rows those of the uninterrupted run" % sr["updates"])
t.check_accounting(sr, "sync b=0 killed and resumed")
print("figure: sync b=0, worker killed after the checkpoint at %s: mpirun exit %s after %.1f s; "
      "resumed test_acc %.4f (uninterrupted %.4f)" % (have[-1] if have else None, job.returncode, took,
                                                       sr["test_acc"], sa["test_acc"]))
t.done()
