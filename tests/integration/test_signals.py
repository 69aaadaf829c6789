"""Signals (serial): SIGTERM or SIGINT ends a run after its current step
with one checkpoint, params.bin and summary.json ("exit": "signal") and
exit 143, a repeated SIGTERM changes nothing,
SIGUSR1 writes a checkpoint and training goes on; a SIGTERM or a SIGKILL at
an exact point of writing a checkpoint (LD_PRELOAD rename_shim.c) never
leaves a damaged checkpoint that is taken for valid. Every stopped run is
resumed and ends with the params_sha256 of an uninterrupted run.

Signals are sent once the run is training (a metrics.jsonl row exists),
and each wait is for a state of the run directory, not for a time."""
import json
import os
import re
import signal
import subprocess
import tempfile

import pdtest as t

CONF = "tests/conf/softmax.yaml"
LONG = ["training.epochs=1000", "training.eval_every=300"]   # stopped by a signal
SHIM = os.environ.get("PARAMD_RENAME_SHIM", os.path.join(t.SRC, "build", "tests",
                                                         "librename_shim.so"))


def start(sets=(), shim=None):
    out = tempfile.mkdtemp(prefix="paramd-it-")
    cmd = [t.EXE, os.path.join(t.SRC, CONF), "--out", out, "--quiet"]
    for s in list(LONG) + list(sets):
        cmd += ["--set", s]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if shim:
        env.update(LD_PRELOAD=SHIM, PARAMD_SHIM_RENAME=shim)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env), out


def files(d):
    return sorted(os.listdir(os.path.join(d, "checkpoints")))


def finish(p):
    out, err = p.communicate(timeout=300)
    return p.returncode, err


def stopped_ok(d, rc, err, sig, name):
    """Exit 143, one checkpoint at the stop, summary.json and status.json
    say "signal". Returns the checkpoint's update."""
    s = t.checkpoint_sets(d)
    t.check(rc == 143, "%s: exit 143 (got %s)" % (name, rc))
    t.check(len(s) >= 1, "%s: a checkpoint was written: %s" % (name, files(d) if s else s))
    if not s:
        return None
    u = s[-1]
    line = ("paramd: stopped by %s after update %d; checkpoint %s/checkpoints/"
            "ckpt-%012d.manifest written (continue with --resume)" % (sig, u, d, u))
    t.check(line in err.splitlines(), "%s: one line says so: %r" % (name, err))
    with open(os.path.join(d, "status.json")) as f:
        st = json.load(f)
    s = t.summary(d) if os.path.exists(os.path.join(d, "summary.json")) else {}
    t.check(st["phase"] == "signal" and s.get("exit") == "signal" and s.get("updates") == u and
            os.path.exists(os.path.join(d, "params.bin")),
            "%s: summary.json (exit %s, %s updates), status.json (phase %s) and params.bin at "
            "the stop" % (name, s.get("exit"), s.get("updates"), st["phase"]))
    return u


stops = {}   # name -> (run dir, update it stopped at, stderr words expected on resume)

# SIGTERM, sent twice: the second changes nothing.
p, d = start()
if t.wait_until("a metrics row", proc=p, cond=lambda: t.rows_so_far(d)):
    p.send_signal(signal.SIGTERM)
    p.send_signal(signal.SIGTERM)
rc, err = finish(p)
u = stopped_ok(d, rc, err, "SIGTERM", "SIGTERM twice")
t.check(t.checkpoint_sets(d) == [u], "SIGTERM twice: exactly one checkpoint: %s" % files(d))
stops["SIGTERM"] = (d, u, None)

# SIGINT (Ctrl-C) does the same.
p, d = start()
if t.wait_until("a metrics row", proc=p, cond=lambda: t.rows_so_far(d)):
    p.send_signal(signal.SIGINT)
rc, err = finish(p)
stops["SIGINT"] = (d, stopped_ok(d, rc, err, "SIGINT", "SIGINT"), None)

# SIGUSR1: a checkpoint, and training goes on past it; then SIGTERM.
p, d = start()
if t.wait_until("a metrics row", proc=p, cond=lambda: t.rows_so_far(d)):
    p.send_signal(signal.SIGUSR1)
    if t.wait_until("the SIGUSR1 checkpoint", proc=p, cond=lambda: t.checkpoint_sets(d)):
        u1 = t.checkpoint_sets(d)[0]
        if t.wait_until("a row after update %d" % u1, proc=p,
                        cond=lambda: max(t.rows_so_far(d)) > u1):
            p.send_signal(signal.SIGTERM)
rc, err = finish(p)
u2 = stopped_ok(d, rc, err, "SIGTERM", "SIGUSR1 then SIGTERM")
s = t.checkpoint_sets(d)
t.check(len(s) == 2 and s[0] < s[1], "SIGUSR1: its checkpoint, then training went on to the "
        "stop's: %s" % files(d))
if len(s) == 2:
    # Resume from the SIGUSR1 checkpoint itself: the stop's set removed.
    for n in files(d):
        if n.startswith("ckpt-%012d." % s[1]):
            os.remove(os.path.join(d, "checkpoints", n))
    stops["SIGUSR1"] = (d, s[0], None)

# A second SIGTERM while the stop's checkpoint is written (just before the
# part, then the manifest, takes its name): ignored, the checkpoint completes.
for suffix in (".pdck", ".manifest"):
    name = "SIGTERM again before the %s rename" % suffix
    p, d = start(shim="%s:1:%d" % (suffix, signal.SIGTERM))
    if t.wait_until("a metrics row", proc=p, cond=lambda: t.rows_so_far(d)):
        p.send_signal(signal.SIGTERM)
    rc, err = finish(p)
    t.check("shim: signal 15 before rename to " in err, "%s: the shim fired: %r" % (name, err))
    u = stopped_ok(d, rc, err, "SIGTERM", name)
    t.check(not [n for n in files(d) if ".tmp." in n],
            "%s: no temporary left: %s" % (name, files(d)))
    stops[name] = (d, u, None)

# SIGKILL in the middle of the second periodic checkpoint (at 200): the one
# at 100 stays valid. Killed before the part's rename: only a temporary
# is left, which is ignored. Killed before the manifest's rename: the part
# without its manifest (and the manifest's temporary) is skipped with one
# warning.
for suffix, left, warn in ((".pdck", r"ckpt-000000000200\.0\.pdck\.tmp\.\d+", None),
                           (".manifest", r"ckpt-000000000200\.0\.pdck "
                            r"ckpt-000000000200\.manifest\.tmp\.\d+",
                            "paramd: warning: skipping damaged checkpoint: ")):
    name = "SIGKILL before the %s rename of the checkpoint at 200" % suffix
    p, d = start(["checkpoint.every_updates=100"], shim="%s:2:%d" % (suffix, signal.SIGKILL))
    rc, err = finish(p)
    t.check(rc == -signal.SIGKILL and "shim: signal 9 before rename to " in err,
            "%s: killed there (%s): %r" % (name, rc, err))
    extra = [n for n in files(d) if not n.startswith("ckpt-000000000100.")]
    t.check(t.checkpoint_sets(d) == [100] and re.fullmatch(left, " ".join(extra)),
            "%s: the set at 100 and %s remain: %s" % (name, left, files(d)))
    stops[name] = (d, 100, warn)

# The uninterrupted reference, past every stop, and each stopped run resumed
# to it (max_updates may change on resume).
stopped_at = [u for _, u, _ in stops.values() if u is not None]
M = max(stopped_at or [0]) + 150
ref, _ = t.run(CONF, LONG + ["training.max_updates=%d" % M])
sref = t.summary(ref)
t.check(sref["updates"] == M, "reference: %d updates (%s)" % (M, sref["updates"]))
ur = [r["update"] for r in t.metrics(ref)]
for name, (d, u, warn) in stops.items():
    if u is None:
        continue
    _, p = t.run(CONF, LONG + ["training.max_updates=%d" % M], out=d, args=["--resume"])
    s = t.summary(d)
    t.check(s["params_sha256"] == sref["params_sha256"] and s["updates"] == M,
            "%s at %d, resumed: params_sha256 %s == uninterrupted %s"
            % (name, u, s["params_sha256"][:16], sref["params_sha256"][:16]))
    warned = [l for l in p.stderr.splitlines() if "warning" in l]
    t.check(warned == ([] if warn is None else [l for l in warned if l.startswith(warn)]) and
            len(warned) == (warn is not None), "%s: warnings on resume: %r" % (name, warned))
    ud = [r["update"] for r in t.metrics(d)]
    t.check(ud == ur, "%s: metrics.jsonl has every row once, as the uninterrupted run's (the "
            "resumed run makes the same evaluations after %d): %s" % (name, u, ud))
t.done()
