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
                                 "optimizer.staleness_compensation=inverse", "optimizer.clip_norm=1",
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
    # delay compensation: the server keeps the point each worker read
    ("softmax W=3 nesterov, dc", "tests/conf/softmax.yaml",
     ["training.mode=async", "optimizer.name=nesterov", "optimizer.staleness_compensation=dc",
      "optimizer.dc_lambda=2", "training.max_updates=1200"], 4),
    ("softmax W=2 adam, dc, clip", "tests/conf/softmax.yaml",
     ["training.mode=async", "optimizer.name=adam", "optimizer.lr=default", "optimizer.clip_norm=1",
      "optimizer.staleness_compensation=dc", "optimizer.dc_lambda=1", "training.max_updates=800"], 3),
    ("sparse logreg W=3 momentum, dc", "tests/conf/sparse.yaml",
     ["training.mode=async", "optimizer.name=momentum", "optimizer.lr=0.5",
      "optimizer.staleness_compensation=dc", "optimizer.dc_lambda=1", "training.epochs=2"], 4),
    # DC-ASGD-a: lambda over the root of each coordinate's moving mean of g*g
    ("softmax W=3 momentum, dc adaptive", "tests/conf/softmax.yaml",
     ["training.mode=async", "optimizer.name=momentum", "optimizer.staleness_compensation=dc",
      "optimizer.dc_lambda_adaptive=true", "optimizer.dc_lambda=0.5", "training.max_updates=800"], 4),
    ("sparse logreg W=3 momentum, dc adaptive", "tests/conf/sparse.yaml",
     ["training.mode=async", "optimizer.name=momentum", "optimizer.lr=0.5",
      "optimizer.staleness_compensation=dc", "optimizer.dc_lambda_adaptive=true",
      "optimizer.dc_decay=0.9", "training.epochs=2"], 4),
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

# The correction is really applied: the last dc run's trace replayed as if
# the run had no compensation, or a fixed lambda, does not reproduce it.
resolved = os.path.join(d, "config.resolved.yaml")
with open(resolved) as f:
    text = f.read()
t.check("staleness_compensation: dc" in text and "dc_lambda_adaptive: true" in text,
        "the last dc run's config says dc, adaptive")
for old, new, what in (("staleness_compensation: dc", "staleness_compensation: none", "without dc"),
                       ("dc_lambda_adaptive: true", "dc_lambda_adaptive: false",
                        "with a fixed lambda")):
    with open(resolved, "w") as f:
        f.write(text.replace(old, new).replace("dc_lambda_adaptive: true", "dc_lambda_adaptive: false"))
    p = subprocess.run([t.EXE, "--replay", d, "--quiet", "--out",
                        os.path.join(d, "replay-" + new.split(": ")[1])],
                       capture_output=True, text=True, timeout=600)
    t.check(p.returncode == 3 and "differs" in p.stderr, "%s the replay differs: exit %d %s"
            % (what, p.returncode, p.stderr.strip()[-200:]))
with open(resolved, "w") as f:
    f.write(text)

# dc with several servers (each corrects its range) and in hogwild; dense
# and sparse: every gradient accounted for, the loss finite.
for name, conf, sets, ranks in [
        ("async S=2 dense", "tests/conf/softmax.yaml", ["training.servers=2"], 5),
        ("async S=2 sparse", "tests/conf/sparse.yaml", ["training.servers=2", "optimizer.lr=0.5"], 5),
        ("hogwild 2 threads", "tests/conf/softmax.yaml",
         ["training.mode=hogwild", "training.server_threads=2"], 4),
        ("adaptive async S=2 sparse", "tests/conf/sparse.yaml",
         ["training.servers=2", "optimizer.lr=0.5", "optimizer.dc_lambda_adaptive=true"], 5),
        ("adaptive hogwild 2 threads", "tests/conf/softmax.yaml",
         ["training.mode=hogwild", "training.server_threads=2", "optimizer.dc_lambda_adaptive=true"], 4)]:
    d2, _ = t.run(conf, ["training.mode=async", "optimizer.staleness_compensation=dc",
                         "training.max_updates=600", "training.epochs=0"] + sets, ranks=ranks)
    s = t.summary(d2)
    t.check_accounting(s, "dc " + name)
    t.check(s["updates"] == 600 and s["test_loss"] < 2.3, "dc %s: 600 updates, test loss %.3f"
            % (name, s["test_loss"]))

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
