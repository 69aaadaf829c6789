"""docs/weights.md's snippets, run as written: a small MLP is trained on a
CSV file with class names, then the shared loading lines plus the NumPy
(argument numpy) or the PyTorch nn.Sequential (argument torch) snippet
must give the test accuracy paramd wrote in summary.json. params.json must
list the tensors exactly as the document shows them. Exits 77 (skipped,
with a line saying why) when the package is not installed."""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

import pdtest

WHICH = sys.argv[1] if len(sys.argv) > 1 else "numpy"
DOC = os.path.join(pdtest.SRC, "docs", "weights.md")


def fruit(path, n, rng):
    """Three classes around different centres in 4 features."""
    centres = {"apple": (0, 0, 2, 1), "kiwi": (2, 1, 0, -1), "pear": (1, -2, 1, 0)}
    names = sorted(centres)
    with open(path, "w") as f:
        f.write("label,a,b,c,d\n")
        for i in range(n):
            name = names[i % 3]
            x = [c + rng.gauss(0, 0.9) for c in centres[name]]
            f.write(name + "," + ",".join("%.4f" % v for v in x) + "\n")


def main():
    # A Python that has the package (this one, or the system's); else say
    # so and skip.
    tried = []
    python = None
    for py in dict.fromkeys([os.environ.get("PARAMD_PYTHON"), sys.executable,
                             "/usr/bin/python3", shutil.which("python3")]):
        if not py or not os.path.exists(py):
            continue
        probe = subprocess.run([py, "-c", "import numpy, %s" % WHICH], capture_output=True,
                               text=True)
        if probe.returncode == 0:
            python = py
            break
        tried.append("%s: %s" % (py, (probe.stderr.strip().splitlines() or ["?"])[-1]))
    if not python:
        pdtest.skip("%s is not installed (%s): docs/weights.md's %s snippet not run"
                    % (WHICH, "; ".join(tried), WHICH))
        pdtest.done()
    print("running the snippets with", python)
    work = tempfile.mkdtemp(prefix="paramd-weights-")
    rng = random.Random(7)
    fruit(os.path.join(work, "fruit.csv"), 240, rng)
    fruit(os.path.join(work, "fruit-test.csv"), 90, rng)
    conf = os.path.join(work, "fruit.yaml")
    with open(conf, "w") as f:
        f.write("data:\n  format: csv\n  train: fruit.csv\n  test: fruit-test.csv\n"
                "  header: true\n  label_column: label\n  normalize: standardize\n"
                "model:\n  type: mlp\n  hidden: [8]\n  activation: tanh\n"
                "training:\n  epochs: 5\n  batch_size: 16\n")
    p = subprocess.run([pdtest.EXE, "--quiet", "--out", "runs/fruit", "fruit.yaml"], cwd=work,
                       capture_output=True, text=True)
    pdtest.check(p.returncode == 0, "paramd trains the fruit MLP (exit %d) %s"
                 % (p.returncode, p.stderr.strip()))
    run = os.path.join(work, "runs", "fruit")
    meta = json.load(open(os.path.join(run, "params.json")))
    summ = pdtest.summary(run)

    # params.json as the document shows it.
    tensors = [(t["name"], t["shape"], t["dtype"], t["byte_order"], t["offset"])
               for t in meta["tensors"]]
    want = [("W1", [8, 4], "float32", "little", 0), ("b1", [8], "float32", "little", 128),
            ("W2", [3, 8], "float32", "little", 160), ("b2", [3], "float32", "little", 256)]
    pdtest.check(tensors == want, "params.json tensors %s == %s" % (tensors, want))
    pdtest.check((meta["model"], meta["activation"], meta["features"], meta["classes"],
                  meta["parameters"]) == ("mlp", "tanh", 4, 3, 67),
                 "params.json: mlp, tanh, 4 features, 3 classes, 67 parameters")
    pdtest.check(meta["class_names"] == ["apple", "kiwi", "pear"],
                 "class names in byte order: %s" % meta["class_names"])
    pdtest.check(os.path.getsize(os.path.join(run, "params.bin")) == 4 * 67,
                 "params.bin holds 67 float32")
    norm = meta["input"]
    pdtest.check(norm["normalize"] == "standardize" and len(norm["shift"]) == 4
                 and len(norm["scale"]) == 4, "input normalization: standardize, 4 shifts, 4 scales")

    # The document's snippets, verbatim.
    blocks = re.findall(r"```python\n(.*?)```", open(DOC).read(), re.S)
    pdtest.check(len(blocks) == 3, "docs/weights.md has 3 python blocks (got %d)" % len(blocks))
    script = blocks[0] + (blocks[1] if WHICH == "numpy" else blocks[2])
    p = subprocess.run([python, "-c", script], cwd=work, capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    m = re.search(r"%s test accuracy ([0-9.]+)" % WHICH, p.stdout)
    pdtest.check(p.returncode == 0 and m is not None, "the %s snippet runs (exit %d) %s"
                 % (WHICH, p.returncode, p.stderr.strip()[-500:]))
    if m:
        acc = float(m.group(1))
        # Deterministic (seeded data, serial run): the snippet's float32
        # sums in another order than OpenBLAS's change no prediction here.
        pdtest.check(acc == summ["test_acc"], "%s accuracy %.6f == paramd's test accuracy %.6f"
                     % (WHICH, acc, summ["test_acc"]))
    pdtest.done()


main()
