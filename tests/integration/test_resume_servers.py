"""Checkpoints and --resume of hogwild with two servers (S = 2, W = 2, two
serving threads on each server): each server writes its part of every
checkpoint at one cut of server 0's decisions. Server 0's threads quiesce
for its snapshot; a server s > 0 takes its own once it has concluded
every decision made before the cut, keeping back (neither applied nor
answered) any gradient decided after it until then. A run stopped at
max_updates, or killed right after a checkpoint, and resumed accounts for
every gradient over the whole run (gradients_sent = applied + dropped +
bad), both servers report the same applied, dropped, bad and applied_set,
and metrics.jsonl continues without a row twice or missing."""
import os

import pdtest as t

CONF = "tests/conf/softmax.yaml"
HOG = ["training.mode=hogwild", "training.server_threads=2", "training.servers=2",
       "training.eval_every=40", "training.eval_wait=true", "checkpoint.every_updates=40",
       "checkpoint.keep=3"]


name = "hogwild S=2 T=2 W=2"
b, _ = t.run(CONF, HOG + ["training.max_updates=60"], ranks=4)
c = t.checkpoint_sets(b)   # (a thread may step past 40 before the snapshot)
t.check(len(c) == 2 and 40 <= c[0] < 60 and c[1] == 60 and
        sorted(os.listdir(os.path.join(b, "checkpoints"))) ==
        ["ckpt-%012d.%s" % (u, x) for u in c for x in ("0.pdck", "1.pdck", "manifest")],
        "%s: checkpoints at 40 and 60, a part per server: %s" % (name, t.ckpts(b)))
b, _ = t.run(CONF, HOG + ["training.max_updates=120"], ranks=4, out=b, args=["--resume"])
t.check_resumed_async(b, 120, name + ", stopped at 60 and resumed", 2, exact=False)
mid = [u for u in t.checkpoint_sets(b) if 80 <= u < 120]
t.check(len(mid) == 1, "%s: one checkpoint from 80 on, before the end's: %s"
        % (name, t.checkpoint_sets(b)))
k = t.killed_after(b, mid[0])
k, _ = t.run(CONF, HOG + ["training.max_updates=160"], ranks=4, out=k, args=["--resume"])
t.check_resumed_async(k, 160, name + ", killed after %d and resumed to 160" % mid[0], 2, exact=False)
t.done()
