"""The command line as a user meets it: exit statuses and messages for bad
usage, bad config, --help, --version, --check, and nothing created in the
run directory when the config is refused."""
import json
import os
import subprocess
import tempfile

import pdtest as t


def paramd(*args, ranks=1, mpi=()):
    cmd = [t.EXE, *args]
    if ranks > 1:
        cmd = ["mpirun", "-n", str(ranks), "--oversubscribe", "--allow-run-as-root", *mpi] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1",
                                   OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1"))


p = paramd("--help")
t.check(p.returncode == 0, "--help exits 0")
for opt in ("--set", "--out", "--resume", "--check", "--json", "--quiet", "--help", "--version"):
    t.check(opt in p.stdout, "--help lists " + opt)

p = paramd("--version")
t.check(p.returncode == 0, "--version exits 0")
for word in ("paramd", "Open MPI", "OpenBLAS", "libyaml"):
    t.check(word in p.stdout, "--version names " + word + ": " + p.stdout.replace("\n", " | "))

# A user's own OPENBLAS_CORETYPE is kept (the choice of kernels on a CPU
# with AVX2 and FMA is tests/integration/test_kernels.py, skipped elsewhere).
def kernels(env_core):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    if env_core:
        env["OPENBLAS_CORETYPE"] = env_core
    out = subprocess.run([t.EXE, "--version"], capture_output=True, text=True, env=env).stdout
    line = [x for x in out.splitlines() if x.startswith("OpenBLAS")][0]
    return line.split("(kernels: ")[1].split(",")[0].rstrip(")")


t.check(kernels("Prescott") == "Prescott", "OPENBLAS_CORETYPE=Prescott is kept")

p = paramd("--frobnicate", "x.yaml")
t.check(p.returncode == 2, "unknown option exits 2 (got %d)" % p.returncode)
t.check("--frobnicate" in p.stderr, "unknown option is named: " + p.stderr.strip())

p = paramd()
t.check(p.returncode == 2, "missing config exits 2 (got %d)" % p.returncode)

p = paramd("/nonexistent/run.yaml")
t.check(p.returncode == 2, "missing file exits 2 (got %d)" % p.returncode)
t.check("/nonexistent/run.yaml" in p.stderr, "missing file is named: " + p.stderr.strip())

tmp = tempfile.mkdtemp(prefix="paramd-cli-")
bad = os.path.join(tmp, "bad.yaml")
with open(bad, "w") as f:
    f.write("training:\n  epochz: 3\n")
out = os.path.join(tmp, "out")
p = paramd(bad, "--out", out)
t.check(p.returncode == 2, "unknown key exits 2 (got %d)" % p.returncode)
t.check(bad + ":2:3: training.epochz: unknown key (did you mean epochs?)" in p.stderr,
        "unknown key message: " + p.stderr.strip())
t.check(not os.path.exists(out), "nothing created for a refused config")

# Under mpirun, rank 0 alone prints the config error; every rank exits 2.
p = paramd(bad, "--out", out, ranks=3)
t.check(p.returncode == 2, "mpirun: unknown key exits 2 (got %d)" % p.returncode)
t.check(p.stderr.count("unknown key") == 1, "mpirun: message printed once: %r" % p.stderr[-500:])

p = paramd(os.path.join(t.SRC, "conf/demo.yaml"), "--set", "training.epochs=abc")
t.check(p.returncode == 2, "bad --set exits 2 (got %d)" % p.returncode)
t.check("--set training.epochs=abc" in p.stderr, "bad --set is named: " + p.stderr.strip())

p = paramd(os.path.join(t.SRC, "conf/demo.yaml"), "--check")
t.check(p.returncode == 0, "--check on the demo config exits 0 (got %d: %s)" % (p.returncode, p.stderr))
t.check("60000 train" in p.stdout and "10000 test" in p.stdout, "--check summarizes data: " + p.stdout)

# An MPI without MPI_THREAD_MULTIPLE refuses hogwild, and says so once
# (not once per rank): a PMPI shim lowers the level Open MPI offers.
shim = os.environ.get("PARAMD_THREAD_SHIM")
if not shim or not os.path.exists(shim):
    t.fail("PARAMD_THREAD_SHIM is not built: %r" % shim)
else:
    out = tempfile.mkdtemp(prefix="paramd-cli-")
    p = paramd(os.path.join(t.SRC, "tests/conf/softmax.yaml"), "--out", out, "--quiet",
               "--set", "training.mode=hogwild", ranks=3, mpi=["-x", "LD_PRELOAD=" + shim])
    t.check(p.returncode == 3, "hogwild without MPI_THREAD_MULTIPLE exits 3 (got %d)"
            % p.returncode)
    t.check(p.stderr.count("needs MPI_THREAD_MULTIPLE") == 1,
            "the thread-level error printed once: %r" % p.stderr[-600:])

# What --help and the man page say about SIGTERM is what happens
# (test_signals.py).
for flag in ("--help", "--man"):
    p = paramd(flag)
    text = " ".join(p.stdout.replace("\\-", "-").split())
    t.check("summary.json (exit \"signal\"), and stops; --resume continues it" in text and
            "SIGUSR1 writes a checkpoint and training goes on" in text and
            "writes no checkpoint" not in text, flag + " says what SIGTERM does")

# --check --json: the same facts as one JSON object on one line, every key
# and value exact for tests/conf/softmax.yaml (784 x 10 + 10 parameters,
# Fashion-MNIST's 60000/10000 examples); workers is null until the job's
# size is known. The text form is pinned line by line beside it.
softmax = os.path.join(t.SRC, "tests", "conf", "softmax.yaml")


def check_json(*args, ranks=1):
    p = paramd(softmax, "--check", "--json", *args, ranks=ranks)
    lines = p.stdout.splitlines()
    t.check(p.returncode == 0 and len(lines) == 1,
            "--check --json %s (%d ranks): exit 0 and one line (got %d, %d lines: %s)"
            % (" ".join(args), ranks, p.returncode, len(lines), p.stdout + p.stderr))
    try:
        return json.loads(p.stdout)
    except ValueError as e:
        t.check(False, "--check --json prints JSON: %s: %r" % (e, p.stdout))
        return {}


common = {"config": softmax,
          "model": {"type": "softmax", "features": 784, "classes": 10, "parameters": 7850},
          "optimizer": {"name": "sgd", "lr": 0.1},
          "data": {"train": 60000, "validation": 0, "test": 10000, "sparse": False},
          "training": {"epochs": 1, "batch_size": 32}, "out_dir": "runs/latest"}
want = dict(common, mode="serial", ranks=1, servers=0, workers=1, min_ranks=1)
got = check_json()
t.check(got == want, "--check --json, serial: %s == %s" % (got, want))
want = dict(common, mode="async", ranks=1, servers=1, workers=None, min_ranks=2,
            optimizer={"name": "sgd", "lr": 0.05}, out_dir='d "q"\\x')
got = check_json("--set", "training.mode=async", "--set", "optimizer.lr=0.05",
                 "--out", 'd "q"\\x')
t.check(got == want, "--check --json, async without mpirun (quotes escaped): %s == %s"
        % (got, want))
want = dict(common, mode="sync", ranks=4, servers=2, workers=2, min_ranks=3)
got = check_json("--set", "training.mode=sync", "--set", "training.servers=2", ranks=4)
t.check(got == want, "--check --json, sync under mpirun -n 4 with 2 servers: %s == %s"
        % (got, want))
p = paramd(softmax, "--check", "--set", "training.mode=sync", "--set", "training.servers=2",
           ranks=4)
t.check(p.stdout.splitlines() == [
    "config:     %s (valid)" % softmax,
    "mode:       sync, 2 servers + 2 workers",
    "model:      softmax, 784 features, 10 classes, 7850 parameters",
    "optimizer:  sgd, lr 0.1",
    "data:       60000 train, 0 validation, 10000 test examples",
    "training:   1 epochs, batch 32 per worker, out_dir runs/latest"],
    "--check text form, line by line: %r" % p.stdout)
p = paramd(softmax, "--json")
t.check(p.returncode == 2 and "--json goes with --check" in p.stderr,
        "--json without --check exits 2 (got %d: %s)" % (p.returncode, p.stderr.strip()))

# Large models: MPI counts are int. A sparse model whose payload per server
# (12 bytes a parameter + 8) would pass INT_MAX is refused before anything is
# allocated or sent, naming the limit and the fix; a LIBSVM index past
# INT_MAX is a located data error, not a truncated feature count.
tmp = tempfile.mkdtemp(prefix="paramd-cli-")
tiny = os.path.join(tmp, "tiny.svm")
with open(tiny, "w") as f:
    f.write("+1 1:0.5 3:1\n-1 2:0.25\n")
sparse = os.path.join(t.SRC, "tests/conf/sparse.yaml")
big = ["--set", "data.train=" + tiny, "--set", "data.test=" + tiny, "--set", "training.mode=async"]
limit = (2**31 - 1 - 8) // 12          # parameters one server may hold: 178956969
p = paramd(sparse, "--check", *big, "--set", "model.features=%d" % (limit - 1), ranks=3)
t.check(p.returncode == 0, "a sparse model of %d parameters on one server passes --check (%d): %s"
        % (limit, p.returncode, p.stderr[-300:]))
p = paramd(sparse, "--out", os.path.join(tmp, "big"), "--quiet", *big,
           "--set", "model.features=%d" % limit, ranks=3)
t.check(p.returncode == 2, "one parameter more (%d) is refused with exit 2 (got %d)"
        % (limit + 1, p.returncode))
t.check(p.stderr.count("MPI counts are int") == 1 and "model.features: %d parameters over 1 server"
        % (limit + 1) in p.stderr and "at most %d" % limit in p.stderr and
        "set training.servers to at least 2" in p.stderr,
        "named once with the limit and the fix: %r" % p.stderr[-700:])
t.check(not os.path.exists(os.path.join(tmp, "big")), "nothing created for the refused model")
p = paramd(sparse, "--check", *big, "--set", "model.features=%d" % limit,
           "--set", "training.servers=2", ranks=3)
t.check(p.returncode == 0, "the same model on two servers passes --check (%d): %s"
        % (p.returncode, p.stderr[-300:]))
wide = os.path.join(tmp, "wide.svm")
with open(wide, "w") as f:
    f.write("+1 1:0.5\n-1 3:1 2147483648:0.25\n")
p = paramd(sparse, "--check", "--set", "data.train=" + wide, "--set", "data.test=" + tiny,
           "--set", "model.features=0")
t.check(p.returncode == 2 and wide + ":2: index 2147483648" in p.stderr and
        "up to 2147483647" in p.stderr, "a LIBSVM index past INT_MAX is located (%d): %s"
        % (p.returncode, p.stderr.strip()))

# A sync config without mpirun is a clear error naming the key.
p = paramd(os.path.join(t.SRC, "conf/demo.yaml"))
t.check(p.returncode == 2, "sync without mpirun exits 2 (got %d)" % p.returncode)
t.check("training.mode" in p.stderr, "names training.mode: " + p.stderr.strip())
t.done()
