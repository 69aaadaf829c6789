"""OpenBLAS kernels: a CPU with AVX2 and FMA never runs the Prescott (SSE3)
set, even where the library does not know the CPU model and falls back to
it (paramd then starts again with OPENBLAS_CORETYPE set). On a CPU without
AVX2 or FMA there is nothing to check: the test says so and exits 77,
which meson test counts as skipped."""
import os
import subprocess

import pdtest as t

flags = set()
with open("/proc/cpuinfo") as f:
    for line in f:
        if line.startswith("flags"):
            flags = set(line.split(":")[1].split())
            break
missing = sorted({"avx2", "fma"} - flags)
if missing:
    t.skip("this CPU lacks %s: the AVX2 kernel choice is not checked" % " and ".join(missing))
else:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    out = subprocess.run([t.EXE, "--version"], capture_output=True, text=True, env=env).stdout
    lines = [x for x in out.splitlines() if x.startswith("OpenBLAS") and "(kernels: " in x]
    t.check(len(lines) == 1, "--version has one OpenBLAS line naming its kernels: %s" % lines)
    k = lines[0].split("(kernels: ")[1].split(",")[0].rstrip(")") if lines else "?"
    t.check(k != "Prescott", "an AVX2 and FMA CPU gets better kernels than Prescott: %s" % k)
t.done()
