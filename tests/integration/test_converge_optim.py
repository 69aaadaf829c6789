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
t.done()
