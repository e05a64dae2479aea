"""summarize.py: joins l2c_gpu_bench's and torch_ref.py's JSON lines into the report of
bench/gpu/run.sh: one markdown table (ours, PyTorch, ratio, % of the card's measured bf16
peak = PyTorch's bf16 4096^3 matmul rate, or ours when PyTorch is absent), and one JSON
file when an output path is given. Usage: summarize.py OURS.jsonl TORCH.jsonl [OUT.json]
"""
import json
import sys


def load(path):
    rows, meta = {}, {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "case" in d:
                    rows[(d["suite"], d["case"])] = d
                else:
                    meta.setdefault("notes", []).append(d)
    except FileNotFoundError:
        pass
    return rows, meta


ours, ours_meta = load(sys.argv[1])
torch_rows, torch_meta = load(sys.argv[2]) if len(sys.argv) > 2 else ({}, {})
peak_row = torch_rows.get(("gemm", "bfloat16 4096x4096x4096")) or ours.get(("gemm", "bfloat16 4096x4096x4096"))
peak = peak_row["tflops"] if peak_row else None
peak_src = "torch.matmul" if ("gemm", "bfloat16 4096x4096x4096") in torch_rows else "ours"

lines = []
if peak:
    lines.append(f"Measured dense bf16 peak: {peak:.0f} TFLOP/s ({peak_src}, 4096^3).")
lines.append("")
lines.append("| suite | case | ours ms | ours TFLOP/s | % of peak | PyTorch ms | PyTorch TFLOP/s | ours / PyTorch time |")
lines.append("|---|---|---|---|---|---|---|---|")
keys = list(ours.keys()) + [k for k in torch_rows if k not in ours]
for k in keys:
    o, t = ours.get(k), torch_rows.get(k)
    pct = f"{100 * o['tflops'] / peak:.0f}%" if (o and peak) else ""
    extra = f" ({o['vs_base']:.2f}x base)" if o and "vs_base" in o else ""
    lines.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
        k[0], k[1] + extra,
        f"{o['ms']:.3f}" if o else "-", f"{o['tflops']:.1f}" if o else "-", pct,
        f"{t['ms']:.3f}" if t else "-", f"{t['tflops']:.1f}" if t else "-",
        f"{o['ms'] / t['ms']:.2f}" if (o and t) else ""))
for m in ours_meta.get("notes", []) + torch_meta.get("notes", []):
    if "error" in m:
        lines.append(f"\nerror: {m['error']}")
print("\n".join(lines))
if len(sys.argv) > 3:
    with open(sys.argv[3], "w") as f:
        json.dump({"peak_tflops": peak, "peak_source": peak_src, "ours": list(ours.values()),
                   "torch": list(torch_rows.values()), "notes": ours_meta.get("notes", []) + torch_meta.get("notes", [])}, f, indent=1)
