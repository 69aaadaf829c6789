"""Fashion-MNIST MLP with 1 server + 2 workers within the serial config's
epochs: sync >= 0.88 test accuracy, async and hogwild >= 0.87."""
import pdtest as t

mlp = "conf/fmnist-mlp-serial.yaml"
d, _ = t.run(mlp, ["training.mode=sync", "training.batch_size=32"], ranks=3)
s = t.summary(d)
t.check(s["test_acc"] >= 0.88, "sync W=2 MLP: test_acc %.4f >= 0.88" % s["test_acc"])
# Asynchrony acts like extra momentum (Mitliagkas et al. 2016): with the
# serial config's momentum 0.9 the async modes take a smaller step.
for mode in ("async", "hogwild"):
    # Two workers of batch 64 make 1876 updates per epoch: the cosine
    # period is 10 epochs of those.
    d, _ = t.run(mlp, ["training.mode=" + mode, "optimizer.lr=0.02",
                       "optimizer.schedule.step_size=18760"], ranks=3)
    s = t.summary(d)
    t.check(s["test_acc"] >= 0.87, "%s W=2 MLP: test_acc %.4f >= 0.87" % (mode, s["test_acc"]))
    t.check(s["gradients_applied"] + s["dropped"] == s["gradients_sent"],
            "%s accounting holds" % mode)
t.done()
