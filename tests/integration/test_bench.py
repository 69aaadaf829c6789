"""scripts/bench --quick, the CI smoke test of the benchmark: every one of
the six figures is produced, each row with a finite positive value and,
where it has a reference, ratio = value / reference. Timings themselves
are never judged here (the machine may be loaded)."""
import json
import math
import os
import subprocess
import sys
import tempfile

import pdtest as t

build = os.path.dirname(os.path.dirname(t.EXE))
out = os.path.join(tempfile.mkdtemp(prefix="paramd-bench-it-"), "bench.json")
p = subprocess.run([sys.executable, os.path.join(t.SRC, "scripts", "bench"), "--quick", "--no-build",
                    "--build", build, "--json", out], capture_output=True, text=True, timeout=600)
if p.returncode != 0:
    print(p.stdout[-3000:], p.stderr[-3000:])
t.check(p.returncode == 0 and os.path.exists(out),
        "scripts/bench --quick exits 0 (%d) and writes bench.json" % p.returncode)
if not os.path.exists(out):
    t.done()
b = json.load(open(out))
rows = b["figures"]
by = {}
for r in rows:
    by.setdefault(r["figure"], []).append(r)
want = {"fwd_bwd_gflops": 2, "optim_gbs": 10, "sync_round_us": 2, "server_grads_per_s": 2,
        "epoch_s": 9, "peak_rss_mb": 5}
for f, n in want.items():
    t.check(len(by.get(f, [])) == n, "figure %s: %d rows, want %d" % (f, len(by.get(f, [])), n))
for r in rows:
    v = r["value"]
    t.check(isinstance(v, (int, float)) and math.isfinite(v) and v > 0,
            "%s %s: value %r finite and > 0" % (r["figure"], r["case"], v))
    if r["ref"] is not None:
        t.check(r["ref"] > 0 and abs(r["ratio"] - v / r["ref"]) <= 1e-3 * v / r["ref"],
                "%s %s: ratio %r == %r / %r" % (r["figure"], r["case"], r["ratio"], v, r["ref"]))
cases = " | ".join(r["case"] for r in by.get("epoch_s", []))
for m in ("serial", "sync W=2", "sync W=2 servers=0", "sync W=2 servers=2", "async W=2",
          "hogwild W=2"):
    t.check("paramd " + m in cases, "epoch_s has paramd %s: %s" % (m, cases))
t.check("paramd sync W=2 vs paramd serial" in cases, "sync is compared with serial: %s" % cases)
# The PyTorch reference ran, or one note says why not.
torch_rows = [r for r in by.get("epoch_s", []) if "torch" in r["case"]]
t.check(len(torch_rows) == 6 or any("PyTorch" in n for n in b["notes"]),
        "the torch reference is measured (%d rows) or a note says why not: %s"
        % (len(torch_rows), b["notes"]))

# pd_bench sync's options for docs/performance.md's measurements (not in
# scripts/bench): --bucket B adds the round in pieces of B floats beside
# the one-message round, --apply has the server sum and step in both.
bench = os.path.join(build, "bench", "pd_bench")
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OPENBLAS_NUM_THREADS="1")
p = subprocess.run(["mpirun", "--oversubscribe", "-n", "3", bench, "sync", "10000", "--reps", "1",
                    "--bucket", "3000", "--apply"], capture_output=True, text=True, timeout=300,
                   env=env)
got = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
t.check(p.returncode == 0 and [(r["figure"], r["case"]) for r in got] ==
        [("sync_round_apply_us", "1 server + W=2 n=10000 pieces of 3000"),
         ("sync_round_apply_us", "1 server + W=2 n=10000 one message")] and
        all(r["value"] > 0 and r["ref"] > 0 for r in got),
        "pd_bench sync --bucket 3000 --apply: the rounds in pieces and in one message, with "
        "the server's step, against Allreduce: %s %s" % (got, p.stderr[-500:]))
t.done()
