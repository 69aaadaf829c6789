"""Exact replay of async runs: paramd --replay RUN_DIR re-executes a traced
async run in one process and reproduces its params_sha256; a damaged trace
or a non-async run is refused with a clear message."""
import os
import subprocess

import pdtest as t


def replay(run_dir, expect=0):
    p = subprocess.run([t.EXE, "--replay", run_dir, "--quiet"], capture_output=True, text=True,
                       timeout=600)
    if p.returncode != expect:
        print(p.stdout[-2000:], p.stderr[-2000:])
    return p


cases = [
    ("softmax W=2 sgd", "tests/conf/softmax.yaml", ["training.mode=async"], 3),
    ("softmax W=3 nesterov, drop k=1, inverse scaling, clip",
     "tests/conf/softmax.yaml", ["training.mode=async", "optimizer.name=nesterov",
                                 "training.max_staleness=1", "training.staleness_policy=drop",
                                 "optimizer.staleness_scaling=inverse", "optimizer.clip_norm=1",
                                 "training.max_updates=1500"], 4),
    ("softmax W=2 adam, wait k=1", "tests/conf/softmax.yaml",
     ["training.mode=async", "optimizer.name=adam", "optimizer.lr=default",
      "training.max_staleness=1", "training.staleness_policy=wait", "training.max_updates=1000"], 3),
    ("MLP W=2 momentum", "conf/fmnist-mlp-serial.yaml",
     ["training.mode=async", "optimizer.lr=0.02", "model.hidden=[64]", "training.max_updates=600"], 3),
    ("sparse logreg W=2 adagrad", "tests/conf/sparse.yaml", ["training.mode=async", "training.epochs=2"], 3),
    # sparse pulls at Nesterov's lookahead point
    ("sparse logreg W=2 nesterov", "tests/conf/sparse.yaml",
     ["training.mode=async", "optimizer.name=nesterov", "optimizer.lr=0.5", "training.epochs=2"], 3),
]
os.chdir(t.SRC)
for name, conf, sets, ranks in cases:
    d, _ = t.run(conf, sets + ["training.trace=true"], ranks=ranks)
    s = t.summary(d)
    p = replay(d)
    t.check(p.returncode == 0, "%s: replay reproduces params_sha256 %s (exit %d: %s)"
            % (name, s["params_sha256"][:12], p.returncode, p.stderr.strip()[-300:]))
    r = t.summary(os.path.join(d, "replay"))
    t.check(r["params_sha256"] == s["params_sha256"], "%s: replay summary has the same hash" % name)
    t.check(r["updates"] == s["updates"], "%s: same update count %s == %s" % (name, r["updates"], s["updates"]))

# A damaged trace is refused, naming the file.
trace = os.path.join(d, "trace.bin")
with open(trace, "rb") as f:
    data = f.read()
with open(trace, "wb") as f:
    f.write(data[:-10])
p = replay(d, expect=2)
t.check(p.returncode == 2, "a truncated trace exits 2 (got %d)" % p.returncode)
t.check("trace.bin: truncated" in p.stderr, "and says so: " + p.stderr.strip())
with open(trace, "wb") as f:
    f.write(b"XXXXXXXX" + data[8:])
p = replay(d, expect=2)
t.check("not a paramd trace" in p.stderr, "bad magic is named: " + p.stderr.strip())

# A sync run is not replayed (it is reproducible from its seed).
d, _ = t.run("tests/conf/softmax.yaml", ["training.mode=sync", "training.max_updates=50"], ranks=3)
p = replay(d, expect=2)
t.check(p.returncode == 2 and "async" in p.stderr, "replaying a sync run is refused: " + p.stderr.strip())
t.done()
