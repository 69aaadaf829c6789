"""A rank that dies ends the job with a non-zero exit instead of a hang:
kill a worker (and, separately, the server) of a running sync job. Each
rank is identified for certain by the OMPI_COMM_WORLD_RANK in its
environment (/proc/PID/environ), never guessed from pid order; rank 0 is
the server (training.servers is 1), ranks 1 and 2 are workers."""
import json
import os
import re
import signal
import subprocess
import tempfile
import time

import pdtest as t


def world_rank(pid):
    """OMPI_COMM_WORLD_RANK of process PID, or None when it has none (mpirun)."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            env = f.read().split(b"\0")
    except OSError:
        return None
    for kv in env:
        if kv.startswith(b"OMPI_COMM_WORLD_RANK="):
            return int(kv.split(b"=", 1)[1])
    return None


def ranks_of(out, job):
    """{rank: pid} of the paramd processes writing into OUT."""
    ps = subprocess.run(["pgrep", "-f", "--", "--out " + out], capture_output=True, text=True)
    found = {}
    for p in (int(x) for x in ps.stdout.split()):
        r = world_rank(p) if p != job.pid else None
        if r is not None:
            found[r] = p
    return found


for victim, rank in (("worker", 2), ("server", 0)):
    out = tempfile.mkdtemp(prefix="paramd-lost-")
    cmd = ["mpirun", "-n", "3", "--oversubscribe", "--allow-run-as-root", "-x", "OPENBLAS_NUM_THREADS=1",
           t.EXE, os.path.join(t.SRC, "tests/conf/softmax.yaml"), "--out", out, "--quiet",
           "--set", "training.mode=sync", "--set", "training.epochs=50"]
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Training runs once status.json says so; a job that never gets there fails here.
    status = os.path.join(out, "status.json")
    deadline = time.time() + 60
    while not os.path.exists(status) and time.time() < deadline and job.poll() is None:
        time.sleep(0.2)
    if not os.path.exists(status):
        job.kill()
        job.communicate()
        t.fail("killing the %s: status.json never appeared, the job did not start training" % victim)
        continue
    with open(status) as f:
        phase = json.load(f)["phase"]
    t.check(phase == "training", "killing the %s: status.json says the job is training before the kill (%s)"
            % (victim, phase))
    pids = ranks_of(out, job)
    t.check(sorted(pids) == [0, 1, 2], "killing the %s: the environments name ranks 0, 1, 2 (%s)"
            % (victim, pids))
    if rank not in pids:
        job.kill()
        job.communicate()
        continue
    os.kill(pids[rank], signal.SIGKILL)
    try:
        _, err = job.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        job.kill()
        job.communicate()
        t.fail("killing the %s (rank %d): the job still runs 30 s later" % (victim, rank))
        continue
    t.check(job.returncode != 0, "killing the %s (rank %d): the job exits non-zero (%d)"
            % (victim, rank, job.returncode))
    # mpirun names the rank that died (its PID it prints as 0 in this Open MPI
    # version): the one this test killed, by SIGKILL, not another rank or cause.
    died = re.findall(r"process rank (\d+) with PID \d+ on node \S+ exited on signal (\d+)", err)
    t.check(died == [(str(rank), "9")], "killing the %s: mpirun reports rank %d died of signal 9, "
            "and no other (%s)" % (victim, rank, died))
    if died != [(str(rank), "9")]:
        print("stderr:", err[-2000:])
    # The run did not finish: summary.json is never written by a killed job.
    t.check(not os.path.exists(os.path.join(out, "summary.json")),
            "killing the %s: no summary.json claims the run finished" % victim)
t.done()
