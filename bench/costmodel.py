#!/usr/bin/python3
"""docs/performance.md's cost model of a sync round with S dedicated servers
and W workers, checked against bench/netsweep.py's rows, and projected.

  T(W, S) = k_cpu(W) c(b) + L + 2 W P / (S B) + (W P h_sum + P h_step) / S

c(b): one worker's forward+backward on b examples; L: one round trip of a
small message (paramd's waits included); P: parameter bytes; B: one link's
bandwidth (per direction; a server's link carries W pushes in and W replies
out, one after the other); h_sum, h_step: seconds per byte to add one
gradient and to step (the apply rate). k_cpu(W) = max(1, W / cores) only on
this machine, where W workers share its cores; 1 on a cluster.

Usage: bench/costmodel.py check ROWS.jsonl [--nominal]
                                 (measured vs model, sync rows; --nominal: the
                                 namespace links at their tbf rate)
       bench/costmodel.py project              (8, 64, 512 workers at 10, 100 Gb/s)
"""
import json
import sys

P = 235146 * 4            # MLP 784-256-128-10, float32
C32 = 2.6e-3              # c(32): serial run, 3.05 ms per update minus the step
CORES = 2
H_STEP = 20 / 11.4e9      # momentum: 20 bytes of minimal traffic per parameter at 11.4 GB/s, per 4 bytes
H_SUM = 12 / 10.0e9       # adding a gradient: 12 bytes per parameter at the triad's 10 GB/s, per 4 bytes
# per net: (L seconds, B bytes/s), from pd_bench sync n=1 and n=248022 with W=1
NETS = {"shm": (0.85e-3, 1984176 / (1.21e-3 - 0.85e-3)),
        "tcp": (1.38e-3, 1984176 / (3.87e-3 - 1.38e-3)),
        "1gbit": (0.39e-3, 1984176 / (20.09e-3 - 0.39e-3)),
        "10gbit": (0.73e-3, 1984176 / (4.14e-3 - 0.73e-3))}
# the namespace links at their nominal tbf rate instead (--nominal)
NOMINAL = {"1gbit": 1e9 / 8, "10gbit": 10e9 / 8}


def model(W, S, L, B, c=C32, kcpu=True):
    k = max(1.0, W / CORES) if kcpu else 1.0
    return k * c + L + 2 * W * P / (S * B) + (W * P * H_SUM / 4 + P * H_STEP / 4) / S


def check(path, nominal=False):
    errs = {}
    print("| net | W | S | measured ms/round | model ms/round | error |")
    print("|---|---:|---:|---:|---:|---:|")
    for l in open(path):
        r = json.loads(l)
        if r["mode"] != "sync" or r["net"] not in NETS:
            continue
        L, B = NETS[r["net"]]
        if nominal and r["net"] in NOMINAL:
            B = NOMINAL[r["net"]]
        m = 1e3 / r["updates_per_s"]
        p = 1e3 * model(r["W"], r["S"], L, B)
        e = (p - m) / m
        errs.setdefault(r["net"], []).append(abs(e))
        print("| %s | %d | %d | %.1f | %.1f | %+.0f%% |" % (r["net"], r["W"], r["S"], m, p, 100 * e))
    print()
    for n, e in errs.items():
        print("mean |error| %s: %.0f%% over %d runs (max %.0f%%)" % (n, 100 * sum(e) / len(e), len(e),
                                                                    100 * max(e)))


def project():
    print("| W | link | c(b) ms | network ms (S=1) | server apply ms (S=1) | T ms (S=1) | "
          "S for network <= compute | T ms with that S |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    L = 50e-6
    for W in (8, 64, 512):
        for gbit in (10, 100):
            B = gbit * 1e9 / 8 * 0.9
            net = 2 * W * P / B
            app = W * P * H_SUM / 4 + P * H_STEP / 4
            # servers needed so that a server's share (network + apply) is at most one worker's compute
            S = 1
            while (net + app) / S > C32 and S < 4096:
                S += 1
            print("| %d | %d Gb/s | %.1f | %.1f | %.1f | %.1f | %d | %.1f |" % (
                W, gbit, 1e3 * C32, 1e3 * net, 1e3 * app,
                1e3 * model(W, 1, L, B, kcpu=False), S, 1e3 * model(W, S, L, B, kcpu=False)))


if __name__ == "__main__":
    if len(sys.argv) in (3, 4) and sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3:] == ["--nominal"])
    elif len(sys.argv) == 2 and sys.argv[1] == "project":
        project()
    else:
        sys.exit(__doc__)
