"""Serial training end to end on small budgets: the run directory contract,
reproducibility, early stopping restoring the best parameters, divergence
exits 3, every model type trains on its data format."""
import json
import os
import tempfile

import pdtest as t

d, _ = t.run("tests/conf/softmax.yaml", ["training.max_updates=200", "training.eval_every=100"])
for f in ("config.resolved.yaml", "metrics.jsonl", "params.bin", "summary.json", "status.json"):
    t.check(os.path.exists(os.path.join(d, f)), "run directory has " + f)
s = t.summary(d)
for k in ("mode", "optimizer", "workers", "servers", "updates", "epochs", "wall_s",
          "examples_per_s", "test_loss", "test_acc", "params_sha256", "exit"):
    t.check(k in s, "summary.json has " + k)
t.check(s["updates"] == 200 and s["exit"] == "max_updates", "stops at max_updates: %s %s" % (s["updates"], s["exit"]))
m = t.metrics(d)
t.check([r["update"] for r in m] == [0, 100, 200], "evaluations at 0, 100, 200: %s" % [r["update"] for r in m])
for k in ("wall_s", "update", "epoch", "examples", "lr", "train_loss", "test_loss", "test_acc",
          "staleness_mean", "staleness_max", "dropped"):
    t.check(all(k in r for r in m), "metrics rows have " + k)
t.check(len(t.params(d)) == 7850, "params.bin holds 7850 floats: %d" % len(t.params(d)))

# Same seed, same bits; feeding config.resolved.yaml back reproduces the run.
d2, _ = t.run("tests/conf/softmax.yaml", ["training.max_updates=200", "training.eval_every=100"])
t.check(t.summary(d2)["params_sha256"] == s["params_sha256"], "serial is reproducible")
d3, _ = t.run(os.path.join(d, "config.resolved.yaml"))
t.check(t.summary(d3)["params_sha256"] == s["params_sha256"], "config.resolved.yaml reproduces the run")

# Early stopping: patience on the validation loss; the best update is kept.
d, _ = t.run("tests/conf/softmax.yaml", ["data.validation_fraction=0.1", "training.eval_every=10",
                                         "training.early_stopping.patience=1",
                                         "optimizer.lr=0.1", "training.epochs=3"])
s = t.summary(d)
m = t.metrics(d)
best = min(m, key=lambda r: r["valid_loss"])
t.check(s["exit"] == "early_stopped", "early stopping fires with patience 1: exit %s" % s["exit"])
t.check(s["best_update"] > 0, "the best validation loss comes after some training: %s" % s["best_update"])
t.check(s["best_update"] == best["update"], "best_update %s is the best validation row %s"
        % (s["best_update"], best["update"]))
t.check(abs(s["test_loss"] - best["test_loss"]) < 1e-6,
        "the best parameters are restored: final test loss %.6f == %.6f at the best update"
        % (s["test_loss"], best["test_loss"]))

# Divergence: a huge learning rate makes the loss non-finite: exit 3.
d, p = t.run("tests/conf/softmax.yaml", ["optimizer.lr=1e38", "training.max_updates=50"], expect=3)
t.check("diverged" in p.stderr, "divergence is explained: " + p.stderr.strip()[-200:])

# Sparse linear models on LIBSVM data (sparse gradients end to end).
os.chdir(t.SRC)
for model in ("logreg", "svm"):
    d, _ = t.run("tests/conf/sparse.yaml", ["model.type=" + model])
    s = t.summary(d)
    t.check(s["test_acc"] >= 0.85, "serial %s on sparse data: test_acc %.4f >= 0.85" % (model, s["test_acc"]))
t.done()
