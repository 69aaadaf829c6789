#!/usr/bin/python3
"""Sync and async throughput of the Fashion-MNIST MLP against W and S, over
scripts/netcluster's links (--net RATE), TCP over loopback (--net tcp) or
shared memory (--net shm). One JSON line per run on stdout:
  {"net", "mode", "W", "S", "b", "updates", "s", "updates_per_s",
   "examples_per_s", "epoch_s"}
s is the wall clock between the first and the last row of metrics.jsonl (the
updates plus one test evaluation); epoch_s = 60000 / examples_per_s.
Runs are short (training.max_updates): throughput, not accuracy.

Usage: bench/netsweep.py --net 1gbit|10gbit|tcp|shm [--modes sync,async]
                         [--ws 1,2,4] [--ss 1,2] [--b 32] [--updates 60] [--timeout 90]
A run with no result after --timeout seconds is stopped (SIGTERM) and tried
once more: about one start in ten of 5 or more namespaces hangs here with an
Open MPI daemon that never reports (docs/performance.md).
"""
import argparse, json, os, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(net, mode, W, S, b, updates, build, timeout):
    out = tempfile.mkdtemp(prefix="netsweep-")
    os.rmdir(out)
    cmd = [os.path.join(build, "src/paramd"), "conf/fmnist-mlp-serial.yaml", "--quiet", "--out", out,
           "--set", "training.mode=" + mode, "--set", "training.servers=%d" % S,
           "--set", "training.batch_size=%d" % b, "--set", "training.max_updates=%d" % updates,
           "--set", "optimizer.schedule.type=constant"]
    n = W + S
    if net == "shm":
        cmd = ["mpirun", "--oversubscribe", "-n", str(n), "-x", "OPENBLAS_NUM_THREADS"] + cmd
    elif net == "tcp":
        cmd = ["mpirun", "--oversubscribe", "--mca", "pml", "ob1", "--mca", "btl", "self,tcp",
               "-n", str(n), "-x", "OPENBLAS_NUM_THREADS"] + cmd
    else:
        cmd = [os.path.join(ROOT, "scripts/netcluster"), "-n", str(n), "--rate", net, "--"] + cmd
    for attempt in (1, 2):
        # SIGTERM, not SIGKILL, on a hang: netcluster removes its namespaces
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.terminate()
            _, err = p.communicate()
            err = "no result in %d s (stopped; attempt %d)" % (timeout, attempt)
        if p.returncode == 0:
            break
        print("netsweep: %s %s W=%d S=%d failed: %s" % (net, mode, W, S, err.strip()[-300:]),
              file=sys.stderr)
    else:
        return None
    rows = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    s = rows[-1]["wall_s"] - rows[0]["wall_s"]
    u = rows[-1]["update"] - rows[0]["update"]
    ex = rows[-1]["examples"] - rows[0]["examples"]
    subprocess.run(["rm", "-rf", out])
    return {"net": net, "mode": mode, "W": W, "S": S, "b": b, "updates": u, "s": round(s, 4),
            "updates_per_s": round(u / s, 2), "examples_per_s": round(ex / s, 1),
            "epoch_s": round(60000 / (ex / s), 2)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", required=True)
    p.add_argument("--modes", default="sync,async")
    p.add_argument("--ws", default="1,2,4")
    p.add_argument("--ss", default="1")
    p.add_argument("--b", type=int, default=32)
    p.add_argument("--updates", type=int, default=60)
    p.add_argument("--timeout", type=int, default=90, help="seconds before a run is stopped and retried once")
    p.add_argument("--build", default=os.environ.get("PARAMD_BUILD", os.path.join(ROOT, "build")))
    a = p.parse_args()
    os.environ.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                      OPENBLAS_NUM_THREADS="1")
    for mode in a.modes.split(","):
        for S in map(int, a.ss.split(",")):
            for W in map(int, a.ws.split(",")):
                r = run(a.net, mode, W, S, a.b, a.updates, a.build, a.timeout)
                if r:
                    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
