"""spills.py: the ptxas -v report of a CUDA build log, condensed: per architecture, the
number of kernels and the kernels that spill (registers, spill bytes), demangled with
c++filt when it is there. Exit status 0; prints "spills: none" when no kernel spills.
Usage: python3 spills.py BUILD_LOG
"""
import re
import shutil
import subprocess
import sys

entry = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
regs = re.compile(r"Used (\d+) registers")
spill = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
kernels, cur = {}, None
for line in open(sys.argv[1], errors="replace"):
    m = entry.search(line)
    if m:
        cur = (m.group(1), m.group(2))
        kernels[cur] = {"regs": None, "st": 0, "ld": 0}
        continue
    if cur is None:
        continue
    m = spill.search(line)
    if m:
        kernels[cur]["st"], kernels[cur]["ld"] = int(m.group(1)), int(m.group(2))
    m = regs.search(line)
    if m:
        kernels[cur]["regs"] = int(m.group(1))


def demangle(names):
    if not names or not shutil.which("c++filt"):
        return names
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return out if len(out) == len(names) else names


archs = sorted({a for _, a in kernels})
print("ptxas: " + ", ".join(f"{sum(1 for k in kernels if k[1] == a)} kernels for {a}" for a in archs))
bad = [(k, v) for k, v in kernels.items() if v["st"] or v["ld"]]
if not bad:
    print("spills: none")
else:
    names = demangle([k[0] for k, _ in bad])
    print(f"spills: {len(bad)} kernel builds spill:")
    for (k, v), n in zip(bad, names):
        print(f"  {k[1]}  {v['regs']} regs  {v['st']} B stores / {v['ld']} B loads  {n[:160]}")
