"""Convergence on the real data (not timed): the serial MLP reaches the
published MLP accuracy on Fashion-MNIST, softmax regression >= 0.84."""
import pdtest as t

d, _ = t.run("conf/fmnist-mlp-serial.yaml")
s = t.summary(d)
t.check(s["test_acc"] >= 0.885, "serial MLP 784-256-128-10: test_acc %.4f >= 0.885" % s["test_acc"])
d, _ = t.run("conf/fmnist-softmax-serial.yaml")
s = t.summary(d)
t.check(s["test_acc"] >= 0.84, "serial softmax: test_acc %.4f >= 0.84" % s["test_acc"])
t.done()
