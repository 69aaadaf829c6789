"""A rank that dies makes the job exit non-zero within 30 s instead of
hanging: kill a worker (and, separately, the server) of a running job."""
import os
import signal
import subprocess
import tempfile
import time

import pdtest as t

for victim in ("worker", "server"):
    out = tempfile.mkdtemp(prefix="paramd-lost-")
    cmd = ["mpirun", "-n", "3", "--oversubscribe", "--allow-run-as-root", "-x", "OPENBLAS_NUM_THREADS=1",
           t.EXE, os.path.join(t.SRC, "tests/conf/softmax.yaml"), "--out", out, "--quiet",
           "--set", "training.mode=sync", "--set", "training.epochs=50"]
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until training runs (status.json appears), then find the ranks.
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(out, "status.json")) and time.time() < deadline:
        time.sleep(0.2)
    ps = subprocess.run(["pgrep", "-f", "--", "--out " + out], capture_output=True, text=True)
    pids = sorted(int(p) for p in ps.stdout.split() if int(p) != job.pid)
    ranks = [p for p in pids if "mpirun" not in open("/proc/%d/cmdline" % p).read()]
    t.check(len(ranks) == 3, "found the 3 ranks of the job: %s" % ranks)
    # Open MPI starts ranks in order: the lowest pid is rank 0, the server.
    target = ranks[0] if victim == "server" else ranks[-1]
    t0 = time.time()
    os.kill(target, signal.SIGKILL)
    try:
        job.wait(timeout=30)
        took = time.time() - t0
        t.check(job.returncode != 0, "killing the %s: the job exits non-zero (%d)" % (victim, job.returncode))
        t.check(took < 30, "killing the %s: the job ends in %.1f s < 30 s" % (victim, took))
    except subprocess.TimeoutExpired:
        job.kill()
        t.fail("killing the %s: the job still runs after 30 s" % victim)
t.done()
