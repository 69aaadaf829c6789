"""A server's per-worker buffers (each worker's received gradient and its
reply) are sized to the server's range, not the whole model: a large
sparse model runs under an address-space limit (ulimit -v) that the
whole-model buffers passed.

The model: logistic regression whose LIBSVM data has one feature index
at 30,000,000 (n = 30M parameters, 120 MB of floats) and otherwise five
small ones per row, so nothing but the parameter vectors is large. Async
with S = 2 servers and W = 4 workers. Per server, whole-model buffers were
4 workers x (gradient + reply) x 120 MB = 960 MB, plus a round sum the
async mode never uses (120 MB); range-sized ones are 480 MB and no round
sum: 600 MB less. Measured peaks of the address space on this machine
(VmPeak): server 0 2.83 GB before, 2.25 GB after; server 1 2.46 GB before,
1.87 GB after; a worker 1.58 GB. The limit, 2.55 GB, lies in the middle of
the gap on both sides (300 MB either way): before, server 0's setup failed
with "out of memory allocating 30000000 x 4 bytes"."""
import json
import os
import random
import subprocess
import tempfile

import pdtest as t

LIMIT_KB = 2550000
F = 30000000

tmp = tempfile.mkdtemp(prefix="paramd-mem-")
rng = random.Random(1)
train, test = os.path.join(tmp, "train.svm"), os.path.join(tmp, "test.svm")
for path, rows in ((train, 256), (test, 64)):
    with open(path, "w") as f:
        for i in range(rows):
            feats = " ".join("%d:%.3f" % (j, rng.random()) for j in sorted(rng.sample(range(1, 50), 5)))
            if path == train and i == 7:
                feats += " %d:1" % F   # the one high index: the model has F + 1 parameters
            f.write("%d %s\n" % (1 if i % 2 else -1, feats))
conf = os.path.join(tmp, "big.yaml")
with open(conf, "w") as f:
    f.write("""run: {seed: 1}
data: {format: libsvm, train: %s, test: %s, normalize: none}
model: {type: logreg}
training: {mode: async, epochs: 1, batch_size: 16, servers: 2}
optimizer: {name: adagrad, lr: 0.5}
""" % (train, test))

out = os.path.join(tmp, "run")
# The limit on paramd alone (not mpirun): each rank's shell sets it, then execs.
cmd = ["mpirun", "-n", "6", "--oversubscribe", "--allow-run-as-root", "-x", "OPENBLAS_NUM_THREADS=1",
       "sh", "-c", 'ulimit -v %d && exec "$0" "$@"' % LIMIT_KB, t.EXE, conf, "--out", out, "--quiet"]
env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
t.check(p.returncode == 0, "a %d-parameter sparse model, S=2 W=4, runs under ulimit -v %d kB (exit %d%s)"
        % (F + 1, LIMIT_KB, p.returncode, (": " + p.stderr.strip()[-300:]) if p.returncode else ""))
if p.returncode == 0:
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    t.check(s["updates"] == 16 and os.path.getsize(os.path.join(out, "params.bin")) == 4 * (F + 1),
            "it trains every batch (16 updates: %s) and writes all %d parameters" % (s["updates"], F + 1))
    t.check_accounting(s, "async S=2 large sparse")
t.done()
