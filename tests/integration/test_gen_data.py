"""scripts/gen-data sparse: the same seed writes the same LIBSVM files, a
different seed different ones; every row has --nnz cold features above
--hot and each hot feature in about --hot-p of the rows, indices sorted
and values in [0.1, 1]; both labels occur; a serial logreg run reads the
files and learns (test accuracy above 0.7 after 2 epochs); bad arguments
exit 2."""
import os
import subprocess
import tempfile

import pdtest as t

GEN = os.path.join(t.SRC, "scripts", "gen-data")
tmp = tempfile.mkdtemp(prefix="paramd-gendata-")


def gen(name, *args):
    train, test = os.path.join(tmp, name + "-train.svm"), os.path.join(tmp, name + "-test.svm")
    p = subprocess.run([GEN, "sparse", train, "--n", "2000", "--d", "200", "--nnz", "6", "--hot", "3",
                        "--hot-p", "0.5", "--test", test, "--n-test", "500"] + list(args),
                       capture_output=True, text=True)
    t.check(p.returncode == 0, "gen-data sparse %s exits 0 (%d: %s)" % (" ".join(args), p.returncode, p.stderr))
    return train, test


a, a_test = gen("a", "--seed", "5")
b, _ = gen("b", "--seed", "5")
c, _ = gen("c", "--seed", "6")
read = lambda path: open(path).read() if os.path.isfile(path) else ""
t.check(read(a) and read(a) == read(b), "the same seed writes the same training file")
t.check(read(a) != read(c), "another seed writes another file")
rows = [line.split() for line in read(a).splitlines()]
t.check(len(rows) == 2000 and len(read(a_test).splitlines()) == 500, "2000 training and 500 test rows")
hot = [0, 0, 0]
ok = True
for r in rows:
    idx = [int(x.split(":")[0]) for x in r[1:]]
    val = [float(x.split(":")[1]) for x in r[1:]]
    ok &= r[0] in ("+1", "-1") and idx == sorted(set(idx)) and all(0.1 <= v <= 1 for v in val)
    ok &= sum(1 for i in idx if i > 3) == 6 and all(1 <= i <= 200 for i in idx)
    for i in idx:
        if i <= 3:
            hot[i - 1] += 1
t.check(ok, "every row: a label, sorted distinct indices in 1..200, 6 of them above 3, values in [0.1, 1]")
t.check(all(900 <= h <= 1100 for h in hot), "each hot feature in about half the rows: %s of 2000" % hot)
labels = {r[0] for r in rows}
t.check(labels == {"+1", "-1"}, "both labels occur: %s" % labels)

out, p = t.run("tests/conf/sparse.yaml", ["data.train=" + a, "data.test=" + a_test, "model.features=200",
                                          "training.epochs=2"])
s = t.summary(out) if p.returncode == 0 else {}
t.check(s.get("test_acc", 0) > 0.7, "serial logreg learns the problem: test accuracy %s" % s.get("test_acc"))

p = subprocess.run([GEN, "sparse", os.path.join(tmp, "bad.svm"), "--d", "5", "--nnz", "4", "--hot", "3"],
                   capture_output=True, text=True)
t.check(p.returncode == 2 and "--hot + --nnz <= --d" in p.stderr,
        "more features per row than the problem has: exit 2 (%d: %s)" % (p.returncode, p.stderr.strip()))
t.done()
