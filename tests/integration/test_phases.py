"""training.phases: modes run one after another on the same parameters and
optimizer state. Two sync phases of one epoch are a two-epoch sync run bit
for bit (parameters, optimizer state, update counter and data iterators all
carry over); async then sync converges and accounts for every gradient in
each phase; rows, status.json and summary.json say which phase; invalid
phases are refused at their place in the config."""
import json
import os
import tempfile

import pdtest as t

conf = "tests/conf/softmax.yaml"
mom = ["optimizer.name=momentum", "optimizer.lr=default"]

# Two sync phases of one epoch each are one two-epoch sync run, bit for bit
# (momentum: its velocity carries over; W=2: each worker's iterator too).
plain, _ = t.run(conf, mom + ["training.mode=sync", "training.epochs=2"], ranks=3)
two, _ = t.run(conf, mom + ["training.phases=[{mode: sync, epochs: 1}, {mode: sync, epochs: 1}]"],
               ranks=3)
sp, s2 = t.summary(plain), t.summary(two)
t.check(sp["params_sha256"] == s2["params_sha256"], "[sync 1, sync 1] == sync 2 epochs: "
        "params_sha256 %s == %s" % (s2["params_sha256"][:12], sp["params_sha256"][:12]))
t.check(s2["updates"] == sp["updates"] == 1876 and s2["gradients_applied"] == 3752,
        "updates %s == %s == 1876 (938 rounds an epoch), applied %s == 3752"
        % (s2["updates"], sp["updates"], s2["gradients_applied"]))
t.check(s2["mode"] == "phases" and sp["mode"] == "sync",
        "summary.json's mode: %s with phases, %s without" % (s2["mode"], sp["mode"]))
ph = s2.get("phases", [])
t.check([(p["index"], p["mode"], p["first_update"], p["last_update"], p["gradients_applied"])
         for p in ph] == [(0, "sync", 0, 938, 1876), (1, "sync", 938, 1876, 1876)],
        "summary.json phases: %s" % [(p["index"], p["mode"], p["first_update"], p["last_update"],
                                     p["gradients_applied"]) for p in ph])
rows = t.metrics(two)
t.check([(r["update"], r["phase_index"], r["phase_mode"]) for r in rows] ==
        [(0, 0, "sync"), (938, 0, "sync"), (1876, 1, "sync")],
        "metrics rows carry the phase: %s" % [(r["update"], r.get("phase_index")) for r in rows])
t.check([r["test_loss"] for r in rows] == [r["test_loss"] for r in t.metrics(plain)],
        "the same test losses as the plain run at updates 0, 938, 1876")
t.check("phases" not in sp and "phase_index" not in t.metrics(plain)[0],
        "a run without phases writes no phase fields")

# Async warm-up, then sync at a lower learning rate: converges, and every
# phase accounts for its gradients (sent = applied + dropped + bad).
ph_async = ("training.phases=[{mode: async, epochs: 1}, "
            "{mode: sync, epochs: 1, optimizer: {lr: 0.05}}]")
d, _ = t.run(conf, [ph_async], ranks=3)
s = t.summary(d)
t.check_accounting(s, "[async, sync] whole run")
ph = s.get("phases", [])
t.check([p["mode"] for p in ph] == ["async", "sync"], "phases async, sync: %s"
        % [p["mode"] for p in ph])
t.check_phases_accounting(ph)
t.check(sum(p["gradients_sent"] for p in ph) == s["gradients_sent"] and
        sum(p["gradients_applied"] for p in ph) == s["gradients_applied"],
        "the phases' gradients add up to the run's: sent %s, applied %s"
        % (s["gradients_sent"], s["gradients_applied"]))
t.check(ph[0]["last_update"] == ph[1]["first_update"] == ph[0]["gradients_applied"] and
        ph[1]["last_update"] == s["updates"] == ph[0]["gradients_applied"] + 938,
        "async's updates (one per gradient), then 938 sync rounds: %s" %
        [(p["first_update"], p["last_update"]) for p in ph])
t.check(ph[1]["test_loss"] < ph[0]["test_loss"] < 0.7 and s["test_acc"] > 0.8,
        "converges: test loss %.4f after async, %.4f after sync, test acc %.4f"
        % (ph[0]["test_loss"], ph[1]["test_loss"], s["test_acc"]))
with open(os.path.join(d, "status.json")) as f:
    st = json.load(f)
t.check(st.get("phase_index") == 1 and st.get("phase_mode") == "sync",
        "status.json: phase_index %s, phase_mode %s" % (st.get("phase_index"), st.get("phase_mode")))
# config.resolved.yaml keeps the phases and loads back as the same run.
again, _ = t.run(os.path.join(two, "config.resolved.yaml"), [], ranks=3)
t.check(t.summary(again)["params_sha256"] == sp["params_sha256"],
        "[sync 1, sync 1] from its config.resolved.yaml: the same params_sha256")

# Sync for a number of updates, then local SGD: max_updates counts from the
# phase's start, epochs until that many more epoch ends.
d, _ = t.run(conf, mom + ["training.phases=[{mode: sync, max_updates: 300}, "
                          "{mode: local_sgd, epochs: 1, local_steps: 4}]"], ranks=3)
s = t.summary(d)
ph = s["phases"]
t.check(ph[0]["exit"] == "max_updates" and ph[0]["last_update"] == 300 and
        ph[0]["gradients_applied"] == 600, "sync phase: 300 rounds of 2 gradients: %s" % ph[0])
t.check(ph[1]["mode"] == "local_sgd" and abs(s["epochs"] - 1) < 1e-9,
        "local_sgd finishes the first epoch: epochs %s" % s["epochs"])
t.check_accounting(s, "[sync, local_sgd]")

# --check lists the phases of the example config.
_, p = t.run("conf/phases-async-sync.yaml", [], ranks=1, args=["--check"])
t.check("training:   2 phases, batch 32 per worker" in p.stdout and
        "phase 0:    mode=async, epochs=1\nphase 1:    mode=sync, epochs=2, optimizer.lr=0.02\n"
        in p.stdout, "--check lists the phases: %s" % p.stdout[-200:])

# Refusals, each at its place: a phase needing more workers than the job
# has, a batch method, the model changed, serial.
tmp = tempfile.mkdtemp(prefix="paramd-phases-")
bad = os.path.join(tmp, "bad.yaml")
with open(bad, "w") as f:
    f.write("run:\n  seed: 3\nmodel:\n  type: softmax\ntraining:\n  phases:\n"
            "    - {mode: async, epochs: 1}\n"
            "    - mode: sync\n      epochs: 1\n      backup_workers: 2\n")
_, p = t.run(bad, [], ranks=3, expect=2)
t.check("bad.yaml:8:7: training.phases[1] (mode sync): training.backup_workers: must be < the "
        "number of workers (2), got 2" in p.stderr, "too few workers for a phase: %s" % p.stderr[:300])
for sets, want in (
        (["optimizer.name=lbfgs", "training.phases=[{mode: sync, epochs: 1}]"],
         "optimizer.name: lbfgs is a batch method"),
        (["training.phases=[{mode: sync, epochs: 1}, {mode: async, epochs: 1, model.type: mlp}]"],
         "training.phases[1].model.type: model keys are the whole run's"),
        (["training.phases=[{mode: sync, epochs: 1}, {mode: serial, epochs: 1}]"],
         "training.phases[1].mode: serial is one process"),
        (["training.phases=[{mode: sync, epochs: 1, optimizer: {name: adam}}]"],
         "training.phases[0].optimizer.name: is the same in every phase"),
        (["training.phases=[{mode: sync}]"], "training.phases[0]: missing epochs or max_updates")):
    _, p = t.run(conf, sets, ranks=1, expect=2, args=["--check"])
    t.check(want in p.stderr, "%s refused: %s" % (sets[-1], p.stderr.strip()[:300]))
# Every mode writes checkpoints now, with any number of servers.
_, p = t.run(conf, ["training.phases=[{mode: sync, epochs: 1}, {mode: easgd, epochs: 1}]",
                    "training.servers=2", "checkpoint.every_updates=100"], ranks=1,
             args=["--check"])
t.check(p.returncode == 0, "checkpoints with a 2-server easgd phase pass --check: %s"
        % p.stderr.strip()[:300])
t.done()
