"""scripts/compare: a 2-cell study (tests/conf/study-small.yaml) runs and
leaves a report with both cells and valid PNG plots; a failing cell is
reported while the study goes on (exit 1); a grid key paramd does not know
is refused up front (exit 2, the study file's line and the key named)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pdtest as t

COMPARE = os.path.join(t.SRC, "scripts", "compare")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def compare(study, out, *extra):
    """Run scripts/compare from a directory outside the tree (so the study's
    base config is found through the repository root)."""
    cmd = [sys.executable, COMPARE, study, "--out", out, "--paramd", t.EXE] + list(extra)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
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
if not t.FAILURES:
    shutil.rmtree(tmp, ignore_errors=True)
t.done()
