"""paramd --evaluate and --predict on a run directory: exact metrics for a
model whose parameters are set by hand (logreg with liblinear-style 1/2
labels: confusion matrix, precision, recall, AUC, loss computed here),
predictions line by line, class names in a softmax run's confusion matrix
and predictions, and a model that does not fit the data (exit 2, one line
saying which and by how much)."""
import json
import math
import os
import struct
import subprocess
import tempfile

import pdtest


def paramd(args, cwd, expect=0):
    p = subprocess.run([pdtest.EXE] + args, cwd=cwd, capture_output=True, text=True,
                       env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    if p.returncode != expect:
        pdtest.fail("paramd %s: exit %d, expected %d; stderr %s"
                    % (" ".join(args), p.returncode, expect, p.stderr.strip()))
    return p


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def binary(work):
    # Labels 1 and 2 (liblinear's): 1 negative, 2 positive.
    write(os.path.join(work, "bin.csv"), "y,a,b\n2,3,0\n2,-1,0\n1,0.5,0\n1,-2,0\n2,1,0\n")
    write(os.path.join(work, "bin.yaml"),
          "data:\n  format: csv\n  train: bin.csv\n  test: bin.csv\n  header: true\n"
          "  label_column: y\n  normalize: none\nmodel:\n  type: logreg\n"
          "training:\n  epochs: 1\n  batch_size: 5\n")
    p = paramd(["--out", "runs/bin", "bin.yaml"], work)
    pdtest.check('labels: "2" is the positive class (+1), "1" the negative (-1)' in p.stdout,
                 "the run says which label is positive")
    run = os.path.join(work, "runs", "bin")
    # w = (1, 0), b = 0: the margin is feature a.
    with open(os.path.join(run, "params.bin"), "wb") as f:
        f.write(struct.pack("<3f", 1.0, 0.0, 0.0))
    p = paramd(["--evaluate", "runs/bin"], work)
    ev = json.load(open(os.path.join(run, "evaluation.json")))
    # By hand: margins 3, -1, 0.5, -2, 1 for labels +, +, -, -, +.
    # TN 1 (-2), FP 1 (0.5), FN 1 (-1), TP 2 (3, 1).
    pdtest.check(ev["confusion"] == [[1, 1], [1, 2]], "confusion %s == [[1, 1], [1, 2]]"
                 % ev["confusion"])
    pdtest.check(ev["class_names"] == ["1", "2"] and ev["positive_class"] == "2",
                 "class names 1, 2; positive 2")
    pdtest.check(ev["accuracy"] == 0.6, "accuracy %r == 3/5" % ev["accuracy"])
    pdtest.check(abs(ev["precision"] - 2 / 3) < 1e-15 and abs(ev["recall"] - 2 / 3) < 1e-15,
                 "precision %r, recall %r == 2/3" % (ev["precision"], ev["recall"]))
    # 5 of the 6 (positive, negative) pairs are ordered right: (-1, 0.5) is not.
    pdtest.check(abs(ev["auc"] - 5 / 6) < 1e-15, "AUC %r == 5/6" % ev["auc"])
    ym = [3, -1, -0.5, 2, 1]   # y * margin
    loss = sum(math.log1p(math.exp(-v)) for v in ym) / 5
    pdtest.check(abs(ev["loss"] - loss) < 1e-6, "loss %r == %r (computed here)" % (ev["loss"], loss))
    pdtest.check("accuracy:   0.600000 (3 of 5)" in p.stdout and
                 "auc:        0.833333   (positive class \"2\")" in p.stdout,
                 "printed: accuracy 3 of 5, AUC 0.833333 with the positive class")
    pdtest.check("   1      1      1\n     2      1      2\n" in p.stdout,
                 "printed confusion matrix rows 1: 1 1, 2: 1 2")
    # Predictions, file order: class and both probabilities.
    p = paramd(["--predict", "runs/bin", "--out", "pred.csv"], work)
    lines = open(os.path.join(work, "pred.csv")).read().splitlines()
    want = ["predicted,p_1,p_2"]
    for z in (3, -1, 0.5, -2, 1):
        q = 1 / (1 + math.exp(-z))
        want.append("%s,%.6f,%.6f" % ("2" if z >= 0 else "1", 1 - q, q))
    pdtest.check(lines == want, "predictions %s == %s" % (lines, want))
    # Another test file given with --set; a label it lacks: exit 2.
    write(os.path.join(work, "other.csv"), "y,a,b\n1,4,0\n")
    paramd(["--evaluate", "runs/bin", "--set", "data.test=other.csv"], work)
    ev = json.load(open(os.path.join(run, "evaluation.json")))
    pdtest.check(ev["test"] == "other.csv" and ev["confusion"] == [[0, 1], [0, 0]],
                 "--set data.test=other.csv: confusion %s" % ev["confusion"])
    write(os.path.join(work, "other.csv"), "y,a,b\n3,4,0\n")
    p = paramd(["--evaluate", "runs/bin", "--set", "data.test=other.csv"], work, expect=2)
    pdtest.check(p.stderr == "paramd: other.csv:2: label 3 is neither of the training file's "
                 "two labels (1 negative, 2 positive)\n", "unknown label: %r" % p.stderr)
    # Mismatches: features, parameters.
    write(os.path.join(work, "other.csv"), "y,a,b,c\n1,4,0,1\n")
    p = paramd(["--evaluate", "runs/bin", "--set", "data.test=other.csv"], work, expect=2)
    pdtest.check(p.stderr == "paramd: other.csv:1: 3 feature columns, expected 2 "
                 "(model.features)\n", "a file with 3 features: %r" % p.stderr)
    with open(os.path.join(run, "params.bin"), "wb") as f:
        f.write(struct.pack("<2f", 1.0, 0.0))
    p = paramd(["--predict", "runs/bin"], work, expect=2)
    pdtest.check(p.stderr == "paramd: runs/bin/params.bin: 8 bytes, the model needs 12 (3 "
                 "float32 parameters); it is smaller by 1 parameters\n",
                 "a short params.bin: %r" % p.stderr)
    p = paramd(["--evaluate", "runs/bin", "--set", "model.l2=1"], work, expect=2)
    pdtest.check(p.stderr == "paramd: --set model.l2=1: only data.* keys can change for a "
                 "trained model\n", "model keys are refused: %r" % p.stderr)
    p = paramd(["--evaluate", "runs/none"], work, expect=2)
    pdtest.check(p.stderr.startswith("paramd: runs/none/config.resolved.yaml: "),
                 "a missing run directory names the file: %r" % p.stderr.strip())


def classes(work):
    """A softmax run with class names: the confusion matrix and predictions
    use the names; evaluation agrees with the run's own test accuracy and
    with its predictions."""
    rows = ["label,a,b"]
    pts = {"cat": (0, 0), "dog": (3, 0), "emu": (0, 3)}
    for i in range(60):
        name = sorted(pts)[i % 3]
        x, y = pts[name]
        rows.append("%s,%.2f,%.2f" % (name, x + (i % 5) * 0.3 - 0.6, y + (i % 7) * 0.25 - 0.75))
    write(os.path.join(work, "pets.csv"), "\ufeff" + "\n".join(rows) + "\n")   # with a BOM
    write(os.path.join(work, "pets.yaml"),
          "data:\n  format: csv\n  train: pets.csv\n  test: pets.csv\n  header: true\n"
          "  label_column: label\n  normalize: standardize\nmodel:\n  type: softmax\n"
          "training:\n  epochs: 3\n  batch_size: 8\n")
    paramd(["--quiet", "--out", "runs/pets", "pets.yaml"], work)
    run = os.path.join(work, "runs", "pets")
    summ = pdtest.summary(run)
    p = paramd(["--evaluate", "runs/pets"], work)
    ev = json.load(open(os.path.join(run, "evaluation.json")))
    pdtest.check(ev["class_names"] == ["cat", "dog", "emu"], "class names %s" % ev["class_names"])
    pdtest.check(ev["accuracy"] == summ["test_acc"] and abs(ev["loss"] - summ["test_loss"]) < 1e-8,
                 "evaluate's accuracy %r and loss %r == the run's %r, %r"
                 % (ev["accuracy"], ev["loss"], summ["test_acc"], summ["test_loss"]))
    pdtest.check(" cat    dog    emu\n" in p.stdout, "the printed matrix is headed by the names")
    p = paramd(["--predict", "runs/pets"], work)
    pred = [l.split(",") for l in p.stdout.splitlines()]
    truth = [r.split(",")[0] for r in rows[1:]]
    conf = [[0] * 3 for _ in range(3)]
    names = ["cat", "dog", "emu"]
    for (name, *probs), t in zip(pred[1:], truth):
        conf[names.index(t)][names.index(name)] += 1
    pdtest.check(pred[0] == ["predicted", "p_cat", "p_dog", "p_emu"] and len(pred) == 61,
                 "predict: header and 60 lines")
    pdtest.check(all(abs(sum(float(v) for v in r[1:]) - 1) < 2e-6 for r in pred[1:]),
                 "each line's probabilities sum to 1")
    pdtest.check(conf == ev["confusion"], "predictions give evaluate's confusion matrix %s"
                 % ev["confusion"])
    # The same file without its label column: the same predictions.
    write(os.path.join(work, "pets-x.csv"), "\n".join(r.split(",", 1)[1] for r in rows) + "\n")
    q = paramd(["--predict", "runs/pets", "--set", "data.test=pets-x.csv"], work)
    pdtest.check(q.stdout == p.stdout, "an unlabeled file gets the same 60 predictions")
    # A model with 3 classes on a run whose params.json says 4: which, by how much.
    meta_path = os.path.join(run, "params.json")
    meta = open(meta_path).read().replace('"classes": 3', '"classes": 4')
    write(meta_path, meta)
    p = paramd(["--evaluate", "runs/pets"], work, expect=2)
    pdtest.check(p.stderr == "paramd: runs/pets: the model has 4 classes, the data 3 (1 fewer)\n",
                 "class count mismatch: %r" % p.stderr)


def init_from(work):
    """--init-from RUN_DIR (model.init_from): a serial run continued from
    the pets run starts where it ended (its update-0 test loss is the
    run's final one), and so does an async run (with a learning rate too
    small to move a float32, params.bin stays bit-identical); a model of
    another layout is exit 2 naming the difference."""
    run = os.path.join(work, "runs", "pets")
    summ = pdtest.summary(run)
    paramd(["--quiet", "--out", "runs/more", "--init-from", "runs/pets", "--set",
            "training.max_updates=1", "pets.yaml"], work)
    first = pdtest.metrics(os.path.join(work, "runs", "more"))[0]
    pdtest.check(first["update"] == 0 and first["test_loss"] == summ["test_loss"],
                 "continued serial run: update-0 test loss %r == the run's final %r"
                 % (first["test_loss"], summ["test_loss"]))
    resolved = open(os.path.join(work, "runs", "more", "config.resolved.yaml")).read()
    pdtest.check('init_from: "runs/pets"' in resolved, "config.resolved.yaml keeps init_from")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    p = subprocess.run(["mpirun", "-n", "2", "--oversubscribe", pdtest.EXE, "--quiet", "--out",
                        "runs/async", "--set", "model.init_from=runs/pets", "--set",
                        "training.mode=async", "--set", "training.max_updates=2", "--set",
                        "optimizer.lr=1e-30", "pets.yaml"], cwd=work, capture_output=True,
                       text=True, env=env)
    same = p.returncode == 0 and open(os.path.join(work, "runs", "async", "params.bin"), "rb").read() \
        == open(os.path.join(run, "params.bin"), "rb").read()
    pdtest.check(same, "async run from the serial run's parameters keeps them (exit %d) %s"
                 % (p.returncode, p.stderr.strip()[-300:]))
    # Other layouts.
    p = paramd(["--quiet", "--out", "runs/x", "--init-from", "runs/pets", "--set",
                "model.type=mlp", "--set", "model.hidden=[4]", "pets.yaml"], work, expect=2)
    pdtest.check(p.stderr == "paramd: model.init_from runs/pets: a softmax model there, mlp "
                 "here\n", "another model type: %r" % p.stderr)
    paramd(["--quiet", "--out", "runs/mlp", "--set", "model.type=mlp", "--set",
            "model.hidden=[4]", "pets.yaml"], work)
    p = paramd(["--quiet", "--out", "runs/x", "--init-from", "runs/mlp", "--set",
                "model.type=mlp", "--set", "model.hidden=[5]", "pets.yaml"], work, expect=2)
    pdtest.check(p.stderr == "paramd: model.init_from runs/mlp: tensor 0 is W1 [4, 2] there, "
                 "W1 [5, 2] here\n", "another hidden width: %r" % p.stderr)
    p = paramd(["--quiet", "--out", "runs/x", "--init-from", "runs/mlp", "--set",
                "model.type=mlp", "--set", "model.hidden=[4,4]", "pets.yaml"], work, expect=2)
    pdtest.check(p.stderr == "paramd: model.init_from runs/mlp: 4 tensors there, 6 here "
                 "(model.hidden differs)\n", "another depth: %r" % p.stderr)
    pdtest.check(not os.path.exists(os.path.join(work, "runs", "x", "summary.json")),
                 "a refused start leaves no results")


def from_checkpoint(work):
    """A run without params.bin (stopped before the end) is evaluated from
    its newest checkpoint, and says so."""
    paramd(["--quiet", "--out", "runs/ck", "--set", "checkpoint.every_updates=5", "--set",
            "training.max_updates=10", "pets.yaml"], work)
    run = os.path.join(work, "runs", "ck")
    summ = pdtest.summary(run)
    os.remove(os.path.join(run, "params.bin"))
    p = paramd(["--evaluate", "runs/ck"], work)
    ev = json.load(open(os.path.join(run, "evaluation.json")))
    pdtest.check(ev.get("checkpoint_update") == 10 and ev["accuracy"] == summ["test_acc"]
                 and abs(ev["loss"] - summ["test_loss"]) < 1e-8,
                 "from the checkpoint at update 10: accuracy %r, loss %r == the run's %r, %r"
                 % (ev["accuracy"], ev["loss"], summ["test_acc"], summ["test_loss"]))
    pdtest.check("(runs/ck, no params.bin: its checkpoint at update 10)" in p.stdout,
                 "the output names the checkpoint")


work = tempfile.mkdtemp(prefix="paramd-use-")
binary(work)
classes(work)
init_from(work)
from_checkpoint(work)
pdtest.done()
