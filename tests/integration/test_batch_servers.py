"""Batch methods with several servers (training.servers S > 1): each server
keeps its part of every vector and the servers add the slices of each dot
product in one order, so cg, lbfgs and cd with S servers give the S = 1
parameters bit for bit (params_sha256, every metrics row, evaluations);
cd's servers each solve their own blocks. bfgs with S > 1 and servers 0
are refused at training.servers."""
import json
import os
import subprocess
import tempfile

import pdtest as t

os.chdir(t.SRC)
SPARSE = "tests/conf/sparse.yaml"
SKIP = ("wall_s",)   # the only field that may differ between two runs


def rows(d):
    return [{k: v for k, v in r.items() if k not in SKIP} for r in t.metrics(d)]


def same(a, b, label):
    s, y = t.summary(a), t.summary(b)
    t.check(y["params_sha256"] == s["params_sha256"] and rows(a) == rows(b) and
            (y["iterations"], y["evaluations"]) == (s["iterations"], s["evaluations"]),
            "%s: params_sha256 %s, %d metrics rows, %d iterations and %d evaluations equal "
            "bit for bit" % (label, y["params_sha256"][:12], len(rows(b)), y["iterations"],
                             y["evaluations"]))
    return y


# scripts/gen-data's least-squares problem (8 features: 9 parameters),
# S = 1 and S = 2 with W = 2 for cg, lbfgs and cd (two block layouts).
csv = os.path.join(tempfile.mkdtemp(prefix="paramd-linreg-"), "train.csv")
subprocess.run([os.path.join(t.SRC, "scripts", "gen-data"), "linreg", csv], check=True)
LINREG = ["data.train=" + csv]
for name, extra in (("cg", []), ("lbfgs", []), ("cd", []),
                    ("cd", ["optimizer.block_size=3", "optimizer.block_order=random"])):
    sets = LINREG + ["optimizer.name=" + name] + extra
    one, _ = t.run("conf/linreg-sync.yaml", sets, ranks=3)
    two, _ = t.run("conf/linreg-sync.yaml", sets + ["training.servers=2"], ranks=4)
    label = " ".join([name] + [e.split(".")[1] for e in extra])
    y = same(one, two, "linreg %s, S=2 W=2 against S=1 W=2" % label)
    t.check(y["optimality_gap"] < 1e-4 and y["servers"] == 2,
            "linreg %s S=2 W=2: optimality_gap %.3g < 1e-4 (%s, %d evaluations)"
            % (label, y["optimality_gap"], y["stop_reason"], y["evaluations"]))

# logreg on the sparse problem (1001 parameters: every slice of a dot
# product holds 15 or 16 of them): serial against S = 3 W = 1.
for name in ("lbfgs", "cg"):
    sets = ["optimizer.name=" + name, "optimizer.lr=default", "training.max_iterations=12"]
    ser, _ = t.run(SPARSE, sets)
    dist, _ = t.run(SPARSE, sets + ["training.mode=sync", "training.servers=3"], ranks=4)
    same(ser, dist, "logreg %s, S=3 W=1 against serial" % name)

# Refusals: exit 2 at the key.
_, p = t.run(SPARSE, ["optimizer.name=bfgs", "training.mode=sync", "training.servers=2"],
             ranks=3, expect=2)
t.check("training.servers: bfgs keeps its n x n inverse Hessian on one server: set "
        "training.servers 1, or use lbfgs, got 2 servers" in p.stderr,
        "bfgs with 2 servers is refused: %s" % p.stderr.strip()[:160])
_, p = t.run(SPARSE, ["optimizer.name=lbfgs", "training.mode=sync", "training.servers=0"],
             ranks=2, expect=2)
t.check("training.servers: the batch method lbfgs runs on server ranks (1 to 64), not on the "
        "workers (0)" in p.stderr, "lbfgs with servers 0 is refused: %s" % p.stderr.strip()[:160])
t.done()
