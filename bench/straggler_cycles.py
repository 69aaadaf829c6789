#!/usr/bin/python3
"""Time to the target accuracy in unslowed worker cycles, for a straggler
study run by scripts/compare (conf/study-stragglers.yaml): a measure the
machine's load moves much less than seconds do.

On a shared machine one run's workers may cycle twice as fast as the next
run's. paramd paces a straggler of factor F to F times the unslowed cycle
time T (faults.slow_workers, slow_basis cycle), so each run's T can be read
off its own summary.json (per_worker gradients_per_s, first to last request):

  - where the unslowed workers never wait for the straggler (no straggler,
    sync with backup workers, async without a bound), 1/T = their mean rate;
  - where they do (sync without backups, SSP with the wait policy: everyone
    goes at the straggler's pace), 1/T = F x the straggler's rate.

cycles to target = (seconds from the first evaluation to the one that
reached the target) / T. A cost model then predicts: sync R rounds -> F R
cycles; sync with b backups R -> R; async G gradients -> G / (W - 1 + 1/F);
SSP at the straggler's pace -> G / (W / F) cycles.

Usage: bench/straggler_cycles.py STUDY_DIR [--rank R] [--factor F]
  STUDY_DIR: scripts/compare's --out (its results.json); R, F: the
  straggler (default rank 4, factor 4). Prints a markdown table, one row per
  grid cell: seconds and cycles to the target (mean and min-max over seeds)
  and the rates. Standard library only.
"""
import argparse
import json
import os
import statistics
import sys

WAITING = ("sync", "ssp")   # variants whose unslowed workers wait for the straggler


def spread(xs, spec):
    if not xs:
        return "–"
    m, lo, hi = (format(x, spec) for x in (statistics.mean(xs), min(xs), max(xs)))
    return m if lo == hi else "%s (%s–%s)" % (m, lo, hi)


def cell_figures(c, rank, factor):
    """(variant, reached, seconds, cycles, fast rate, straggler rate, gradients to target, 1/T)."""
    s = c.get("summary") or {}
    variant = dict(c["values"]).get("variant", c["label"])
    pw = s.get("per_worker") or []
    fast = [w["gradients_per_s"] for w in pw if w["rank"] != rank and w.get("gradients_per_s")]
    slow = [w["gradients_per_s"] for w in pw if w["rank"] == rank and w.get("gradients_per_s")]
    fast = statistics.mean(fast) if fast else None
    slow = slow[0] if slow else None
    straggling = "faults.slow_workers=[]" not in c["sets"]
    if variant in WAITING and straggling:
        unslowed = factor * slow if slow else None
    else:
        unslowed = fast
    r = c.get("reached")
    secs = r.get("train_s") if r else None
    cycles = secs * unslowed if secs is not None and unslowed else None
    batch = next((int(x.split("=", 1)[1]) for x in c["sets"] if x.startswith("training.batch_size=")), 32)
    grads = r["examples"] / batch + (r.get("dropped") or 0) if r else None
    return variant, r is not None, secs, cycles, fast, slow if straggling else None, grads, unslowed


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study_dir")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--factor", type=float, default=4)
    a = ap.parse_args(argv)
    try:
        with open(os.path.join(a.study_dir, "results.json")) as f:
            res = json.load(f)
    except (OSError, ValueError) as e:
        print("straggler_cycles: %s: %s" % (a.study_dir, e), file=sys.stderr)
        return 2
    groups = {}
    for c in res["cells"]:
        fig = cell_figures(c, a.rank, a.factor)
        groups.setdefault(fig[0], []).append(fig)
    print("| cell | reached | s to %g (from first eval) | unslowed cycles to %g | gradients sent to %g "
          "| 1/T (1/s) | unslowed workers' rate (1/s) | straggler's rate (1/s) | their ratio |"
          % ((res.get("target_acc"),) * 3))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v, figs in groups.items():
        hit = [f for f in figs if f[1]]
        ratio = [f[4] / f[5] for f in figs if f[4] and f[5]]
        print("| %s | %d of %d | %s | %s | %s | %s | %s | %s | %s |" % (
            v, len(hit), len(figs), spread([f[2] for f in hit], ".2f"), spread([f[3] for f in hit], ".0f"),
            spread([f[6] for f in hit], ".0f"), spread([f[7] for f in figs if f[7]], ".0f"),
            spread([f[4] for f in figs if f[4]], ".0f"),
            spread([f[5] for f in figs if f[5]], ".0f"), spread(ratio, ".2f")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
