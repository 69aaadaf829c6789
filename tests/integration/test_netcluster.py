"""scripts/netcluster: two ranks in two network namespaces really talk over
the rate-limited veth links, and everything the script made is gone after
it, on success and on failure.

1. Each rank writes the global IPv4 addresses it sees: exactly one each, in
   10.213.0.0/16, and different; the pd_bench sync exchange between them
   (100000 floats a round) runs under --mca btl self,tcp, and the tbf
   counters of both links show at least one round's bytes (400 kB each way:
   loopback cannot carry them, each namespace has only its own lo).
2. A program that fails (exit 3 on every rank): netcluster fails too.
3. After both runs, no namespace, link or bridge of either run is left
   (names parsed from netcluster's banner line).
Needs root, network namespaces and tc tbf; without them netcluster exits 77
with the reason and so does this test. No timing is judged (a launch that
hangs is stopped after 25 s and tried once more)."""
import os
import re
import subprocess
import sys
import tempfile

import pdtest as t

NETCLUSTER = os.path.join(t.SRC, "scripts", "netcluster")
BENCH = os.environ.get("PARAMD_BENCH",
                       os.path.join(os.path.dirname(t.EXE), "..", "bench", "pd_bench"))


def netcluster(args, tmp):
    # --timeout: a start here sometimes hangs in Open MPI's launch (a daemon
    # that never reports, docs/performance.md); netcluster then stops it and
    # exits 124, and the run is tried once more. Not a verdict on time.
    for attempt in (1, 2):
        r = subprocess.run([NETCLUSTER, "--timeout", "25"] + args, cwd=tmp, capture_output=True,
                           text=True)
        print(r.stderr.strip()[-2000:])
        if r.returncode != 124:
            break
    if r.returncode == 77:
        t.skip("netcluster unavailable here: " + r.stderr.strip().splitlines()[-1])
        t.done()
    m = re.search(r"namespaces (pdnc\d+h)0\.\.(\d+), bridge (\S+)", r.stderr)
    t.check(m is not None, "netcluster names what it creates in its banner")
    return r, m


def left_over(m):
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    pfx, br = m.group(1), m.group(3)
    vpfx = "nc" + pfx[4:-1] + "v"
    return [n for n in ns.split() if n.startswith(pfx)] + \
        [l for l in re.findall(r"^\d+: ([^:@]+)", links, re.M) if l == br or l.startswith(vpfx)]


def main():
    tmp = tempfile.mkdtemp(prefix="paramd-netcluster-")
    stats = os.path.join(tmp, "stats")
    prog = ["sh", "-c", 'ip -o -4 addr show scope global > "addr.$OMPI_COMM_WORLD_RANK" && exec "$0" "$@"',
            BENCH, "sync", "100000", "--reps", "1", "--seconds", "0.05"]
    r, m = netcluster(["-n", "2", "--rate", "1gbit", "--stats", stats, "--"] + prog, tmp)
    t.check(r.returncode == 0, "2 ranks over the namespaces: exit %d" % r.returncode)
    t.check('"figure": "sync_round_us"' in r.stdout, "pd_bench sync ran over the links")
    addrs = []
    for rank in (0, 1):
        f = os.path.join(tmp, "addr.%d" % rank)
        got = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", open(f).read()) if os.path.exists(f) else []
        t.check(len(got) == 1 and got[0].startswith("10.213."),
                "rank %d sees one global address, a namespace one: %s" % (rank, got))
        addrs += got
    t.check(len(set(addrs)) == 2, "the two ranks are in different namespaces: %s" % addrs)
    rows = open(stats).read().split("\n") if os.path.exists(stats) else []
    rows = [re.findall(r"addr (\S+) sent_bytes (\d+) received_bytes (\d+)", l) for l in rows if l]
    t.check(len(rows) == 2, "stats for two links")
    for row in rows:
        if row:
            addr, sent, recv = row[0]
            t.check(int(sent) >= 400000 and int(recv) >= 400000,
                    "link of %s carried the exchange: sent %s, received %s bytes" % (addr, sent, recv))
    if m:
        t.check(not left_over(m), "nothing left after a run: %s" % left_over(m))

    r, m = netcluster(["-n", "2", "--", "sh", "-c", "exit 3"], tmp)
    t.check(r.returncode != 0, "a failing program fails netcluster: exit %d" % r.returncode)
    if m:
        t.check(not left_over(m), "nothing left after a failed run: %s" % left_over(m))
    subprocess.run(["rm", "-rf", tmp])
    t.done()


if __name__ == "__main__":
    main()
