"""Checkpoints of the batch methods: a run that checkpoints every k
iterations, stops (training.max_iterations, SIGTERM, kill -9) and is
resumed (--resume, with a larger max_iterations; a run that ends by
itself writes a checkpoint of its end) ends with the
uninterrupted run's params_sha256, iterations, evaluations and metrics
rows: lbfgs and cg serially, lbfgs and cd in sync mode with 2 servers and
2 workers; SIGTERM (serial process; server 0 of a sync job) writes the
checkpoint of the iteration it ends and exits 143, SIGUSR1 (server 0 of
2 servers) one and training goes on; the checkpoint's parts
carry the BTCH section; a checkpoint of another method is refused (exit 2)."""
import os
import signal
import subprocess
import tempfile

import pdtest as t

os.chdir(t.SRC)
SPARSE = "tests/conf/sparse.yaml"
SOFTMAX = "tests/conf/softmax.yaml"
SKIP = ("wall_s",)   # the only field that may differ between two runs
EXACT = ["optimizer.lr=default", "optimizer.grad_tol=0", "optimizer.loss_tol=0"]


def rows(d):
    return [{k: v for k, v in r.items() if k not in SKIP} for r in t.metrics(d)]


def same(a, b, label):
    s, y = t.summary(a), t.summary(b)
    t.check(y["params_sha256"] == s["params_sha256"] and rows(a) == rows(b) and
            (y["iterations"], y["evaluations"], y["stop_reason"]) ==
            (s["iterations"], s["evaluations"], s["stop_reason"]),
            "%s: params_sha256 %s, %d metrics rows, %d iterations, %d evaluations and %s "
            "as the uninterrupted run" % (label, y["params_sha256"][:12], len(rows(b)),
                                         y["iterations"], y["evaluations"], y["stop_reason"]))


def resumed(conf, sets, ranks, stop_at, every, label):
    """Uninterrupted against: stopped at stop_at iterations with a
    checkpoint every `every`, resumed to the end."""
    whole, _ = t.run(conf, sets, ranks=ranks)
    d, _ = t.run(conf, [s for s in sets if "max_iterations" not in s] +
                 ["training.max_iterations=%d" % stop_at, "checkpoint.every_updates=%d" % every],
                 ranks=ranks)
    last = t.checkpoint_sets(d)[-1]
    # the run's end (max_iterations) writes a checkpoint of its own, also
    # between the every-k ones (before, the last was the k-th's, and the
    # resume redid the iterations after it)
    t.check(last == stop_at, "%s: the end's checkpoint, at iteration %d (the last at %d)"
            % (label, stop_at, last))
    t.run(conf, sets + ["checkpoint.every_updates=%d" % every], ranks=ranks, out=d,
          args=["--resume"])
    same(whole, d, "%s, resumed from iteration %d" % (label, last))
    return whole, d


# Serially, logreg on the sparse problem (1001 parameters).
for name in ("lbfgs", "cg"):
    resumed(SPARSE, EXACT + ["optimizer.name=" + name, "training.max_iterations=25"], 1, 12, 5,
            "serial " + name)

# Sync, 2 servers and 2 workers: lbfgs on the sparse problem, and cd with
# random blocks on scripts/gen-data's least-squares problem.
whole, d = resumed(SPARSE, EXACT + ["optimizer.name=lbfgs", "training.max_iterations=20",
                                    "training.mode=sync", "training.servers=2"], 4, 9, 4,
                   "sync S=2 W=2 lbfgs")
parts = sorted(n for n in os.listdir(os.path.join(d, "checkpoints")) if n.endswith(".pdck"))
t.check(len(parts) == 2 * len(t.checkpoint_sets(d)) and parts[0].endswith(".0.pdck") and
        parts[1].endswith(".1.pdck"), "a part per server in each set: %s" % " ".join(parts[:2]))
with open(os.path.join(d, "checkpoints", parts[0]), "rb") as f:
    head = f.read()
t.check(head[12] == 7 and b"BTCH" in head, "each part has 7 sections, BTCH among them")

csv = os.path.join(tempfile.mkdtemp(prefix="paramd-linreg-"), "train.csv")
subprocess.run([os.path.join(t.SRC, "scripts", "gen-data"), "linreg", csv], check=True)
resumed("conf/linreg-sync.yaml", ["data.train=" + csv, "optimizer.name=cd",
                                  "optimizer.block_order=random", "optimizer.grad_tol=1e-12",
                                  "optimizer.loss_tol=0", "training.max_iterations=8",
                                  "training.servers=2"], 4, 3, 2, "sync S=2 W=2 cd random")

# The checkpoint resumed with another lbfgs memory (a key outside the
# config hash, which BTCH records): exit 2 at start, naming the part.
_, p = t.run(SPARSE, EXACT + ["optimizer.name=lbfgs", "training.max_iterations=20",
                              "training.mode=sync", "training.servers=2", "optimizer.history=5"],
             ranks=4, out=d, args=["--resume"], expect=2)
t.check("checkpoints/ckpt-000000000020.0.pdck: BTCH: optimizer.history 10 in the checkpoint, 5 "
        "in this run" in p.stderr, "a resume with another optimizer.history is refused: %s"
        % p.stderr.strip()[:200])

# SIGUSR1 to server 0 of a sync job with 2 servers: a checkpoint, and
# training goes on past it; then SIGTERM to server 0 (the other server and
# the worker follow it); resumed from the newest, the uninterrupted run.
SOFT2 = EXACT + ["optimizer.name=lbfgs", "optimizer.batch_examples=3000", "training.mode=sync",
                 "training.servers=2"]
env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
whole, _ = t.run(SOFTMAX, SOFT2 + ["training.max_iterations=25"], ranks=3)
out = tempfile.mkdtemp(prefix="paramd-it-")
p = subprocess.Popen(t.mpirun_cmd(3, SOFTMAX, out, SOFT2 + ["training.max_iterations=1000000"]),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
t.wait_until("2 rows", lambda: len(t.rows_so_far(out)) >= 2, p)
pid = t.wait_until("rank 0", lambda: t.rank_pids(p).get(0), p)
if pid:
    os.kill(pid, signal.SIGUSR1)
first = t.wait_until("a checkpoint", lambda: t.checkpoint_sets(out), p)
now = len(t.rows_so_far(out))
t.wait_until("a row after it", lambda: len(t.rows_so_far(out)) > now, p)
if pid:
    os.kill(pid, signal.SIGTERM)
_, err = p.communicate(timeout=300)
sets = t.checkpoint_sets(out)
t.check(p.returncode == 143 and first and len(sets) == 2 and sets[0] == first[0] < sets[1],
        "sync S=2 W=1: SIGUSR1 checkpointed iteration %s and training went on; SIGTERM after "
        "iteration %s: exit %s (%s)" % (first[0] if first else None, sets[-1] if sets else None,
                                      p.returncode, err.strip()[:160]))
t.run(SOFTMAX, SOFT2 + ["training.max_iterations=25"], ranks=3, out=out, args=["--resume"])
same(whole, out, "sync S=2 W=1 lbfgs, SIGUSR1 then SIGTERM to server 0, then --resume")

# SIGTERM: the serial process, and server 0 of a sync job (S=1, W=2).
# The stopped run has no iteration limit, so the signal always lands
# inside it; the resumed one stops at 25 like the uninterrupted one.
SOFT = EXACT + ["optimizer.name=lbfgs", "optimizer.batch_examples=3000"]
for ranks, extra in ((1, []), (3, ["training.mode=sync"])):
    label = "serial" if ranks == 1 else "sync W=2, SIGTERM to server 0"
    whole, _ = t.run(SOFTMAX, SOFT + extra + ["training.max_iterations=25"], ranks=ranks)
    out = tempfile.mkdtemp(prefix="paramd-it-")
    cmd = t.mpirun_cmd(ranks, SOFTMAX, out, SOFT + extra + ["training.max_iterations=1000000"])
    if ranks == 1:
        cmd = cmd[cmd.index(t.EXE):]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    t.wait_until("3 rows", lambda: len(t.rows_so_far(out)) >= 3, p)
    pid = p.pid if ranks == 1 else t.wait_until("rank 0", lambda: t.rank_pids(p).get(0), p)
    if pid:
        os.kill(pid, signal.SIGTERM)
    _, err = p.communicate(timeout=300)
    t.check(p.returncode == 143 and "checkpoint" in err,
            "%s lbfgs: SIGTERM stops it with exit %s and one line: %s"
            % (label, p.returncode, err.strip()[:200]))
    sets = t.checkpoint_sets(out)
    s = t.summary(out)
    t.check(sets and sets[-1] == s["iterations"] < 25 and s["exit"] == "signal",
            "%s: the checkpoint of iteration %s, the summary's last (%s), exit %s"
            % (label, sets[-1] if sets else None, s["iterations"], s["exit"]))
    t.run(SOFTMAX, SOFT + extra + ["training.max_iterations=25"], ranks=ranks, out=out,
          args=["--resume"])
    same(whole, out, "%s lbfgs, SIGTERM after iteration %s then --resume" % (label, sets[-1]))
t.done()
