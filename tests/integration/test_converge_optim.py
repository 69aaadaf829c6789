"""Every optimizer trains softmax regression on Fashion-MNIST for 2 epochs
with its default hyperparameters to >= 0.80 test accuracy; vsgd, which has
no learning rate, too."""
import pdtest as t

rules = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "rmsprop_nesterov",
         "adadelta", "adam", "adamw", "vsgd"]
for rule in rules:
    d, _ = t.run("tests/conf/softmax.yaml", ["optimizer.name=" + rule, "optimizer.lr=default",
                                             "training.epochs=2", "training.batch_size=64"])
    s = t.summary(d)
    t.check(s["test_acc"] >= 0.80, "%s defaults, 2 epochs: test_acc %.4f >= 0.80" % (rule, s["test_acc"]))

# vsgd on the MLP 784-256-128-10, 5 epochs, with each row's curvature along
# its gradient on all three layers, the slow start's C = 10 and the memory
# tau bounded by 100 minibatches (conf/fmnist-mlp-vsgd.yaml; the diagonal
# diverges; the row bound on the pixel layer reached 0.8330, rows with an
# unbounded memory 0.8489, which fails this check: README). Measured
# 0.8671 (seeds 2, 3, 4: 0.8638, 0.8617, 0.8670): the 0.86.
d, _ = t.run("conf/fmnist-mlp-vsgd.yaml", [], timeout=1500)
s = t.summary(d)
t.check(s["optimizer"] == "vsgd", "vsgd mlp: summary optimizer %r" % s["optimizer"])
t.check(s["test_acc"] >= 0.86, "vsgd mlp (rows 3, C 10, memory 100), 5 epochs: test_acc %.4f "
        ">= 0.86" % s["test_acc"])
t.done()
