"""scripts/compare: a 2-cell study (tests/conf/study-small.yaml) runs and
leaves a report with both cells and valid PNG plots; a failing cell is
reported while the study goes on (exit 1); a grid key paramd does not know
is refused up front (exit 2, the study file's line and the key named); a
study directory that is not empty is refused, not overwritten (exit 2); a
plot that cannot be written fails the run (exit 3); without PyYAML or
matplotlib it names the Debian package to install and stops (exit 2);
seeds; the variant grid key; the load average recorded per cell."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pdtest as t

COMPARE = os.path.join(t.SRC, "scripts", "compare")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def compare(study, out, *extra, pythonpath=None):
    """Run scripts/compare (through its #! line, so with the Python whose
    Debian packages it needs) from a directory outside the tree (so the
    study's base config is found through the repository root)."""
    cmd = [COMPARE, study, "--out", out, "--paramd", t.EXE] + list(extra)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env,
                       cwd=tempfile.gettempdir())
    print("command:", " ".join(cmd), "-> exit", p.returncode)
    return p


def table_rows(report):
    return [line for line in report.splitlines() if line.startswith("| mode=")]


tmp = tempfile.mkdtemp(prefix="paramd-compare-")

# The small study: serial and async softmax, 300 updates each.
out = os.path.join(tmp, "small")
p = compare(os.path.join(t.SRC, "tests", "conf", "study-small.yaml"), out)
t.check(p.returncode == 0, "small study exits 0 (got %d; stderr tail: %s)" % (p.returncode, p.stderr[-1500:]))
t.check("[1/2] mode=serial" in p.stderr and "[2/2] mode=async" in p.stderr,
        "progress lines [1/2] and [2/2] on stderr")
report_path = os.path.join(out, "report.md")
t.check(os.path.isfile(report_path), "report.md exists")
report = open(report_path).read() if os.path.isfile(report_path) else ""
rows = table_rows(report)
t.check(len(rows) == 2 and rows[0].startswith("| mode=serial |") and rows[1].startswith("| mode=async |"),
        "the results table has one row per cell: %s" % rows)
for row in rows:
    cols = [c.strip() for c in row.strip("|").split("|")]
    t.check("max_updates" in cols and "300" in cols, "row %s: finished at 300 updates" % cols[0])
t.check("mpirun -n 3" in report, "the report gives the async cell's command with 3 ranks")
t.check("nproc:" in report and "paramd --version" in report, "the report gives the machine facts")
for png in ("test_loss_vs_time.png", "test_loss_vs_examples.png"):
    path = os.path.join(out, png)
    data = open(path, "rb").read() if os.path.isfile(path) else b""
    t.check(data[:8] == PNG_MAGIC and len(data) > 5000,
            "%s is a PNG of %d bytes (> 5000)" % (png, len(data)))
    t.check(("](%s)" % png) in report, "report.md shows %s" % png)
for cell in ("mode-serial", "mode-async"):
    t.check(os.path.isfile(os.path.join(out, "cells", cell, "summary.json")),
            "cells/%s/summary.json exists" % cell)
try:
    res = json.load(open(os.path.join(out, "results.json")))
    t.check([c["exit_status"] for c in res["cells"]] == [0, 0], "results.json: both cells exit 0")
except (OSError, ValueError, KeyError) as e:
    t.check(False, "results.json readable: %s" % e)

# --report-only rebuilds the report from the cells without running them.
os.remove(report_path)
p = compare(os.path.join(t.SRC, "tests", "conf", "study-small.yaml"), out, "--report-only")
t.check(p.returncode == 0 and os.path.isfile(report_path) and len(table_rows(open(report_path).read())) == 2,
        "--report-only rewrites report.md with both rows (exit %d)" % p.returncode)

# The study directory holds results now: running again into it is refused
# before anything runs, and the results are left as they were.
before = sorted(os.listdir(os.path.join(out, "cells")))
mtime = os.path.getmtime(os.path.join(out, "results.json"))
p = compare(os.path.join(t.SRC, "tests", "conf", "study-small.yaml"), out)
t.check(p.returncode == 2 and "exists and is not an empty directory" in p.stderr and out in p.stderr,
        "a study directory that is not empty is refused (exit %d: %s)" % (p.returncode, p.stderr.strip()))
t.check(sorted(os.listdir(os.path.join(out, "cells"))) == before
        and os.path.getmtime(os.path.join(out, "results.json")) == mtime,
        "the refused study left the cells and results.json untouched")

# A plot that cannot be written (a directory where the PNG goes) fails the
# run with exit 3, naming the plot; the report is still written.
os.remove(os.path.join(out, "test_loss_vs_time.png"))
os.mkdir(os.path.join(out, "test_loss_vs_time.png"))
p = compare(os.path.join(t.SRC, "tests", "conf", "study-small.yaml"), out, "--report-only")
t.check(p.returncode == 3 and "plot %s failed" % os.path.join(out, "test_loss_vs_time.png") in p.stderr,
        "an unwritable plot: exit 3 and the plot named (exit %d: %s)" % (p.returncode, p.stderr.strip()))
report = open(report_path).read() if os.path.isfile(report_path) else ""
t.check("**test_loss_vs_time.png failed**" in report and "](test_loss_vs_examples.png)" in report,
        "report.md names the failed plot and shows the others")

# Without PyYAML or matplotlib: a module of that name that fails to import,
# put first on PYTHONPATH. compare names the Debian package and the apt-get
# line, installs nothing and runs nothing (exit 2).
for module, package in (("yaml", "python3-yaml"), ("matplotlib", "python3-matplotlib")):
    fake = os.path.join(tmp, "no-" + module)
    os.makedirs(fake)
    with open(os.path.join(fake, module + ".py"), "w") as f:
        f.write("raise ImportError('no %s here (test)')\n" % module)
    nowhere = os.path.join(tmp, "not-run-" + module)
    p = compare(os.path.join(t.SRC, "tests", "conf", "study-small.yaml"), nowhere, pythonpath=fake)
    t.check(p.returncode == 2 and "apt-get install -y %s\n" % package in p.stderr
            and "no %s here (test)" % module in p.stderr,
            "without %s: exit 2 and the apt-get line for %s (exit %d: %s)"
            % (module, package, p.returncode, p.stderr.strip()))
    t.check(not os.path.exists(nowhere), "without %s: nothing ran" % module)


def study(name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


# A failing cell (backup_workers must be < W) is reported; the study goes on.
path = study("failing.yaml", "base: tests/conf/softmax.yaml\n"
                             "set: [training.max_updates=50, training.mode=sync]\n"
                             "grid:\n"
                             "  training.backup_workers: [2, 0]\n")
out = os.path.join(tmp, "failing")
p = compare(path, out)
t.check(p.returncode == 1, "a study with a failing cell exits 1 (got %d)" % p.returncode)
t.check("FAILED (exit 2)" in p.stderr and "backup_workers" in p.stderr,
        "the failing cell's exit status and stderr tail are printed")
report = open(os.path.join(out, "report.md")).read() if os.path.isfile(os.path.join(out, "report.md")) else ""
t.check("failed: exit 2" in report and "## Failed cells" in report, "report.md reports the failed cell")
t.check(os.path.isfile(os.path.join(out, "cells", "backup_workers-0", "summary.json")),
        "the cell after the failing one still ran")

# An unknown key in grid: refused before anything runs, naming the line.
path = study("badkey.yaml", "base: tests/conf/softmax.yaml\n"
                            "grid:\n"
                            "  training.mode: [serial, async]\n"
                            "  training.epochz: [1, 2]\n")
out = os.path.join(tmp, "badkey")
p = compare(path, out)
t.check(p.returncode == 2, "unknown grid key: exit 2 (got %d)" % p.returncode)
t.check("badkey.yaml:4:" in p.stderr and "training.epochz" in p.stderr and "unknown key" in p.stderr,
        "unknown grid key: the message names the file, line and key: %s" % p.stderr.strip())
t.check(not os.path.isdir(os.path.join(out, "cells")), "unknown grid key: no cell ran")

# Not a study key at all.
path = study("badstudy.yaml", "base: tests/conf/softmax.yaml\ngrdi:\n  training.mode: [serial]\n")
p = compare(path, os.path.join(tmp, "badstudy"))
t.check(p.returncode == 2 and "badstudy.yaml:2:" in p.stderr and "did you mean grid" in p.stderr,
        "unknown study key: exit 2 and a suggestion: %s" % p.stderr.strip())

# YAML errors come from PyYAML with the line: a list never closed (and where
# it opened), a key given twice (which PyYAML alone would let pass).
path = study("unclosed.yaml", "base: tests/conf/softmax.yaml\ngrid:\n  training.mode: [serial, async\n")
p = compare(path, os.path.join(tmp, "unclosed"))
t.check(p.returncode == 2 and "unclosed.yaml:4:1: expected ',' or ']'" in p.stderr
        and "flow sequence at line 3" in p.stderr,
        "unclosed [: exit 2, the line and where it opened: %s" % p.stderr.strip())
path = study("twice.yaml", "base: tests/conf/softmax.yaml\ngrid:\n  training.mode: [serial]\n"
                           "  training.mode: [async]\n")
p = compare(path, os.path.join(tmp, "twice"))
t.check(p.returncode == 2 and "twice.yaml:4: duplicate key training.mode (first on line 3)" in p.stderr,
        "a key given twice: exit 2 and both lines: %s" % p.stderr.strip())

# Several seeds: every cell runs once per seed; one row per grid cell with
# each column's mean and min-max over the seeds, computed here from the
# runs' own summary.json; the plots draw the mean with a band.
out = os.path.join(tmp, "seeds")
p = compare(os.path.join(t.SRC, "tests", "conf", "study-seeds.yaml"), out)
t.check(p.returncode == 0 and "[4/4] mode=async seed=2" in p.stderr,
        "seeds study: 2 cells x 2 seeds run, exit 0 (got %d: %s)" % (p.returncode, p.stderr[-800:]))
report = open(os.path.join(out, "report.md")).read() if os.path.isfile(os.path.join(out, "report.md")) else ""
t.check("2 seeds: 1, 2, as `run.seed`" in report, "the report says how many seeds and which")
rows = table_rows(report)
t.check(len(rows) == 2 and rows[0].startswith("| mode=serial |") and rows[1].startswith("| mode=async |"),
        "one row per grid cell, not per seed: %s" % rows)
res = json.load(open(os.path.join(out, "results.json"))) if os.path.isfile(os.path.join(out, "results.json")) \
    else {"cells": []}
t.check(res.get("seeds") == [1, 2] and [c["seed"] for c in res["cells"]] == [1, 2, 1, 2],
        "results.json lists each seed's run: %s" % [c.get("seed") for c in res["cells"]])
for i, mode in enumerate(("serial", "async")):
    runs = [c for c in res["cells"] if c["values"] == [["training.mode", mode]]]
    accs = [t.summary(c["dir"])["test_acc"] for c in runs]
    sets = [c["sets"] for c in runs]
    t.check(len(runs) == 2 and ["run.seed=1" in sets[0], "run.seed=2" in sets[1]] == [True, True],
            "%s: one run per seed, run.seed set" % mode)
    want = "%.4f" % (sum(accs) / 2)
    if "%.4f" % min(accs) != "%.4f" % max(accs):
        want += " (%.4f–%.4f)" % (min(accs), max(accs))
    cols = [x.strip() for x in rows[i].strip("|").split("|")] if len(rows) == 2 else []
    t.check(want in cols, "%s: final test acc is the seeds' mean (min-max): %s in %s" % (mode, want, cols))
    t.check(len({t.summary(c["dir"])["params_sha256"] for c in runs}) == 2,
            "%s: the two seeds trained differently" % mode)
for png in ("test_loss_vs_time.png", "test_loss_vs_examples.png", "staleness_hist.png"):
    path = os.path.join(out, png)
    t.check(os.path.isfile(path) and open(path, "rb").read(8) == PNG_MAGIC, "seeds study: %s drawn" % png)
path = study("both.yaml", "base: tests/conf/softmax.yaml\ngrid:\n  training.mode: [serial]\n"
                          "seeds: [1]\nrepeat: 2\n")
p = compare(path, os.path.join(tmp, "both"))
t.check(p.returncode == 2 and "both.yaml:5: seeds and repeat: give one" in p.stderr,
        "seeds and repeat together: exit 2 naming the line: %s" % p.stderr.strip())
path = study("seedtwice.yaml", "base: tests/conf/softmax.yaml\ngrid:\n  training.mode: [serial]\n"
                               "seeds: [3, 3]\n")
p = compare(path, os.path.join(tmp, "seedtwice"))
t.check(p.returncode == 2 and "seedtwice.yaml:4: seeds: 3 listed twice" in p.stderr,
        "a seed listed twice: exit 2: %s" % p.stderr.strip())

# Grid key variant: named cells whose overrides come from their when
# entries only (no --set variant=...); a variant without one is refused.
# Every cell records the load average sampled while it ran.
path = study("variant.yaml", "base: tests/conf/softmax.yaml\n"
                             "set: [training.max_updates=30, training.epochs=0]\n"
                             "grid:\n"
                             "  variant: [slow-lr, fast-lr]\n"
                             "when:\n"
                             "  variant=slow-lr: [optimizer.lr=0.01]\n"
                             "  variant=fast-lr: [optimizer.lr=0.2, training.batch_size=16]\n")
out = os.path.join(tmp, "variant")
p = compare(path, out)
t.check(p.returncode == 0 and "[2/2] variant=fast-lr" in p.stderr,
        "variant study: 2 cells run, exit 0 (got %d: %s)" % (p.returncode, p.stderr[-800:]))
res = json.load(open(os.path.join(out, "results.json"))) if os.path.isfile(os.path.join(out, "results.json")) \
    else {"cells": []}
sets = [c["sets"] for c in res["cells"]]
t.check(sets == [["training.max_updates=30", "training.epochs=0", "optimizer.lr=0.01"],
                 ["training.max_updates=30", "training.epochs=0", "optimizer.lr=0.2", "training.batch_size=16"]],
        "each variant's overrides are set plus its when entry, nothing for variant itself: %s" % sets)
t.check([c["name"] for c in res["cells"]] == ["variant-slow-lr", "variant-fast-lr"],
        "cells named after their variant: %s" % [c.get("name") for c in res["cells"]])
def resolved(d, key):
    try:
        with open(os.path.join(d, "config.resolved.yaml")) as f:
            return [line.split(":", 1)[1].strip() for line in f if line.strip().startswith(key + ":")]
    except OSError:
        return []


got = [(resolved(c["dir"], "lr"), resolved(c["dir"], "batch_size")) for c in res["cells"]]
t.check(got == [(["0.01"], ["32"]), (["0.2"], ["16"])],
        "the variants really ran with their lr and batch size (config.resolved.yaml): %s" % got)
t.check(all(isinstance(c.get("load_mean"), float) and c["load_mean"] >= 0 and c["load_max"] >= c["load_mean"]
            for c in res["cells"]) and len(res["cells"]) == 2,
        "results.json gives each cell's mean and maximum load average: %s"
        % [(c.get("load_mean"), c.get("load_max")) for c in res["cells"]])
report = open(os.path.join(out, "report.md")).read() if os.path.isfile(os.path.join(out, "report.md")) else ""
t.check("load average while the cells ran" in report and "while it ran)" in report,
        "report.md gives the load average during the cells")
path = study("novariant.yaml", "base: tests/conf/softmax.yaml\n"
                               "grid:\n"
                               "  variant: [a, b]\n"
                               "when:\n"
                               "  variant=a: [optimizer.lr=0.01]\n")
p = compare(path, os.path.join(tmp, "novariant"))
t.check(p.returncode == 2 and "novariant.yaml:3: grid variant b: no when: variant=b entry" in p.stderr,
        "a variant without its when entry: exit 2 naming the line: %s" % p.stderr.strip())
t.check(not os.path.exists(os.path.join(tmp, "novariant")), "a refused variant study ran nothing")

if not t.FAILURES:
    shutil.rmtree(tmp, ignore_errors=True)
t.done()
