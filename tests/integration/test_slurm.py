"""scripts/slurm/paramd.sbatch on a real Slurm: a sync job (1 server + 2
workers) is warned as before its time limit (the SIGUSR1 that
--signal=B:USR1@N sends the batch shell, sent here with `scancel --batch
--signal=USR1`), stops with a checkpoint, requeues itself, starts again in
the same run directory with --resume and finishes with the params_sha256
of an uninterrupted run.

The test starts its own single-node Slurm as root (munged with its own key
and socket, slurmctld, slurmd on free ports, everything under one temporary
directory; scripts/setup installs slurm-wlm and munge) and stops it at the
end, also on failure. If that Slurm cannot start here, the test says why
and exits 77 (skipped), never 0.

Nothing waits for a time: the first start trains without a limit until it
is signalled, and the config file gets its max_updates (a key that may
change on resume) while the requeued job is held; Slurm holds a requeued
job about two minutes (its begin time, until slurmd forgets the revoked
credential of its previous start), which the test shortens with
`scontrol update StartTime=now+1`."""
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pdtest as t

SBATCH = os.path.join(t.SRC, "scripts", "slurm", "paramd.sbatch")
DEADLINE = 120   # seconds: a bound on a wait that should take one, never a verdict
# sync, 1 server + 2 workers; eval_wait: every due evaluation has its row.
SETS = ["training.mode=sync", "training.epochs=1000", "training.eval_every=300",
        "training.eval_wait=true"]
ARGS = [a for s in SETS for a in ("--set", s)] + ["--quiet"]
NTASKS = 3


def free_port():
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class Slurm:
    """munged + slurmctld + slurmd under one directory; stop() ends them."""

    def __init__(self, d):
        self.d = d
        self.conf = os.path.join(d, "slurm.conf")
        self.env = dict(os.environ, SLURM_CONF=self.conf)
        self.pidfiles = [os.path.join(d, n) for n in ("slurmd.pid", "slurmctld.pid", "munged.pid")]

    def start(self):
        """None when up, else why not."""
        if os.geteuid() != 0:
            return "slurmd must run as root, and this test runs as uid %d" % os.geteuid()
        need = ["munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol",
                "scancel", "sinfo"]
        missing = [c for c in need if not shutil.which(c, path=os.environ.get("PATH", "") +
                                                       ":/usr/sbin:/sbin")]
        if missing:
            return ("%s not installed (scripts/setup installs slurm-wlm and munge)"
                    % " ".join(missing))
        d = self.d
        os.chmod(d, 0o755)   # munged wants its socket's directory open to all
        for sub in ("state", "spool", "log"):
            os.mkdir(os.path.join(d, sub))
        key = os.path.join(d, "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(128))
        os.chmod(key, stat.S_IRUSR)
        sock = os.path.join(d, "munge.sock")
        p = subprocess.run(["munged", "--socket=" + sock, "--key-file=" + key,
                            "--log-file=" + os.path.join(d, "log", "munged.log"),
                            "--pid-file=" + os.path.join(d, "munged.pid"),
                            "--seed-file=" + os.path.join(d, "munged.seed")],
                           capture_output=True, text=True)
        if p.returncode != 0:
            return "munged did not start: %s" % p.stderr.strip()
        host = socket.gethostname().split(".")[0]
        with open(self.conf, "w") as f:
            f.write("""ClusterName=paramdtest
SlurmctldHost={host}
SlurmctldPort={cport}
SlurmdPort={dport}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
MpiDefault=none
SlurmdParameters=config_overrides
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
InactiveLimit=0
KillWait=30
MinJobAge=600
NodeName={host} CPUs=8 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
""".format(host=host, cport=free_port(), dport=free_port(), sock=sock, d=d))
        for daemon in (["slurmctld", "-f", self.conf, "-c", "-i"], ["slurmd", "-f", self.conf]):
            p = subprocess.run(daemon, capture_output=True, text=True, env=self.env)
            if p.returncode != 0:
                return "%s did not start: %s %s" % (daemon[0], p.stderr.strip(), self.logs())
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            p = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                               env=self.env)
            if p.returncode == 0 and re.match(r"(idle|mix|alloc)", p.stdout.strip()):
                return None
            time.sleep(0.2)
        return "the node did not come up within %d s: %s" % (DEADLINE, self.logs())

    def logs(self):
        out = []
        for n in ("slurmctld.log", "slurmd.log", "munged.log"):
            try:
                with open(os.path.join(self.d, "log", n)) as f:
                    out.append("%s:\n%s" % (n, "".join(f.readlines()[-8:])))
            except OSError:
                pass
        return "\n".join(out)

    def cmd(self, *args):
        return subprocess.run(list(args), capture_output=True, text=True, env=self.env)

    def job(self, jid):
        """scontrol's fields of job jid as a dict."""
        p = self.cmd("scontrol", "show", "job", "-o", str(jid))
        return dict(kv.split("=", 1) for kv in p.stdout.split() if "=" in kv)

    def stop(self):
        """Cancel every job, then end the daemons by their pid files."""
        p = self.cmd("squeue", "-h", "-o", "%i")
        jobs = p.stdout.split() if p.returncode == 0 else []
        for j in jobs:
            self.cmd("scancel", j)
        end = time.monotonic() + 60
        while jobs and time.monotonic() < end:
            p = self.cmd("squeue", "-h", "-t", "running,completing", "-o", "%i")
            if p.returncode != 0 or not p.stdout.strip():
                break
            time.sleep(0.3)
        for f in self.pidfiles:
            try:
                with open(f) as fh:
                    pid = int(fh.read().strip())
                os.kill(pid, 15)
            except (OSError, ValueError):
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, 9)


T0 = time.monotonic()


def wait_for(what, cond):
    v = t.wait_until(what, cond, deadline=DEADLINE)
    if v:
        print("      %5.1f s: %s" % (time.monotonic() - T0, what))
    return v


def write_conf(path, max_updates):
    with open(os.path.join(t.SRC, "tests", "conf", "softmax.yaml")) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("training:\n", "training:\n  max_updates: %d\n" % max_updates, 1))


def main(work, slurm):
    why = slurm.start()
    if why:
        t.skip("no Slurm here: " + why)
        return
    print("ok:   a single-node Slurm started (%s)" % slurm.conf)
    conf = os.path.join(work, "run.yaml")
    out = os.path.join(work, "run")
    log = os.path.join(work, "job.out")
    write_conf(conf, 0)   # no limit: the first start trains until it is signalled
    # mpirun lingers twice odls_base_sigkill_timeout after a rank exits 143
    # (the script's 15 s: a minute); 2 s keeps the test short.
    env = "ALL,PARAMD=%s,PARAMD_OUT=%s,OMPI_MCA_odls_base_sigkill_timeout=2" % (t.EXE, out)
    p = slurm.cmd("sbatch", "--parsable", "-n", str(NTASKS), "-o", log, "-D", work,
                  "--export=" + env, SBATCH, conf, *ARGS)
    t.check(p.returncode == 0, "sbatch: %s %s" % (p.stdout.strip(), p.stderr.strip()))
    if p.returncode != 0:
        return
    jid = p.stdout.strip().split(";")[0]
    if not wait_for("the job to train (a metrics.jsonl row)", lambda: t.rows_so_far(out)):
        return
    # What --signal=B:USR1@N sends before the time limit.
    p = slurm.cmd("scancel", "--batch", "--signal=USR1", jid)
    t.check(p.returncode == 0, "scancel --batch --signal=USR1 %s: %s" % (jid, p.stderr.strip()))
    job = wait_for("the job to be requeued",
                   lambda: (lambda j: j if j.get("Restarts") == "1" and
                            j.get("JobState") == "PENDING" else None)(slurm.job(jid)))
    if not job:
        return
    with open(log) as f:
        text = f.read()
    m = re.search(r"paramd: stopped by SIGUSR2 after update (\d+); checkpoint (\S+) written", text)
    t.check(m is not None and "requeueing job %s" % jid in text,
            "the first start stopped with a checkpoint and requeued itself: %r" % text[-800:])
    if not m:
        return
    u = int(m.group(1))
    t.check(m.group(2) == "%s/checkpoints/ckpt-%012d.manifest" % (out, u)
            and os.path.exists(m.group(2)),
            "the checkpoint at %d is in the run directory" % u)
    M = u + 400
    write_conf(conf, M)
    # slurmd refuses to start a job again with a credential made in the same
    # second as it revoked the previous start's ("Job credential revoked");
    # that start was revoked before the job showed PENDING, so now+1 is later.
    p = slurm.cmd("scontrol", "update", "JobId=" + jid, "StartTime=now+1")
    t.check(p.returncode == 0, "scontrol update StartTime=now+1: %s" % p.stderr.strip())
    ended = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
    job = wait_for("the requeued job to end",
                   lambda: (lambda j: j if j.get("JobState") in ended else None)(slurm.job(jid)))
    if not job:
        return
    with open(log) as f:
        text = f.read()
    t.check(job["JobState"] == "COMPLETED" and job.get("ExitCode") == "0:0",
            "the requeued job completed: %s %s" % (job["JobState"], job.get("ExitCode")))
    t.check("paramd.sbatch: start 2 of job %s: resuming %s" % (jid, out) in text,
            "it started again with --resume in the same run directory: %r" % text[-800:])
    ref, _ = t.run(conf, SETS, ranks=NTASKS)
    s, sr = t.summary(out), t.summary(ref)
    t.check(s["updates"] == M and s["params_sha256"] == sr["params_sha256"],
            "stopped at %d, requeued, resumed to %d: params_sha256 %s == uninterrupted %s"
            % (u, M, s["params_sha256"][:16], sr["params_sha256"][:16]))
    ud = [r["update"] for r in t.metrics(out)]
    ur = [r["update"] for r in t.metrics(ref)]
    t.check(ud == ur, "metrics.jsonl has the uninterrupted run's rows across both starts: %s vs %s"
            % (ud, ur))


work = tempfile.mkdtemp(prefix="paramd-slurm-")
slurm = Slurm(work)
try:
    main(work, slurm)
finally:
    slurm.stop()
    if t.FAILURES:
        print(slurm.logs())
        try:
            with open(os.path.join(work, "job.out")) as f:
                print("job.out:\n" + f.read()[-3000:])
        except OSError:
            pass
    else:
        shutil.rmtree(work, ignore_errors=True)
t.done()
