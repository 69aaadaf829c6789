#!/usr/bin/env python3
"""Write a small synthetic sparse binary problem in LIBSVM format (the
files sparse-train.svm and sparse-test.svm committed beside this script):
1000 features, about 12 non-zeros per row, label = sign(w.x + noise) with
a fixed random w, so logreg and svm reach high accuracy. Deterministic."""
import random

rng = random.Random(20261128)
D = 1000
w = [rng.gauss(0, 1) for _ in range(D)]


def rows(n):
    for _ in range(n):
        idx = sorted(rng.sample(range(D), rng.randint(6, 18)))
        val = [round(rng.uniform(0.1, 1.0), 3) for _ in idx]
        z = sum(w[i] * v for i, v in zip(idx, val)) + rng.gauss(0, 0.3)
        yield ("+1" if z > 0 else "-1") + " " + " ".join("%d:%g" % (i + 1, v) for i, v in zip(idx, val))


for name, n in (("sparse-train.svm", 4000), ("sparse-test.svm", 1000)):
    with open(name, "w") as f:
        f.write("# synthetic sparse binary problem, see make_sparse.py\n")
        for line in rows(n):
            f.write(line + "\n")
