"""torch_ref.py: PyTorch's side of bench/gpu/run.sh. The same cases as l2c_gpu_bench
(same case names, same FLOP counts), done the way PyTorch users do them: torch.matmul
(cuBLAS), scaled_dot_product_attention (its flash backend where it applies), LoRA as PEFT
computes it (base linear + dropout-free lora_B(lora_A(x)) * scale, autograd for the
backward), and the materialised InfoNCE / CLIP loss (logits = scale * a @ b.T, two
cross-entropies). One JSON object per line. Usage: python3 torch_ref.py [--quick] [--suite S]
"""
import json
import sys

import torch
import torch.nn.functional as F

quick = "--quick" in sys.argv
suite = sys.argv[sys.argv.index("--suite") + 1] if "--suite" in sys.argv else None
dev = "cuda"
DT = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def time_ms(fn, reps, warmup=1):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    return ts[len(ts) // 2]


def emit(suite_, name, ms, flop, **extra):
    d = {"suite": suite_, "case": name, "ms": round(ms, 4), "tflop": flop / 1e12, "tflops": round(flop / (ms * 1e-3) / 1e12, 2)}
    d.update(extra)
    print(json.dumps(d), flush=True)


def run(name, fn):
    try:
        fn()
    except torch.cuda.OutOfMemoryError as e:  # the materialised versions run out first
        print(json.dumps({"suite": name, "error": "out of memory: " + str(e).split("\n")[0]}), flush=True)
        torch.cuda.empty_cache()


def gemm_case(M, N, K, dt, trans_b, reps):
    a = torch.randn(M, K, device=dev, dtype=DT[dt])
    b = torch.randn(N, K, device=dev, dtype=DT[dt]) if trans_b else torch.randn(K, N, device=dev, dtype=DT[dt])
    f = (lambda: a @ b.T) if trans_b else (lambda: a @ b)
    emit("gemm", f"{dt} {M}x{N}x{K}" + (" bT" if trans_b else ""), time_ms(f, reps), 2.0 * M * N * K)


def bench_gemm():
    reps = 3 if quick else 10
    for n in ([256] if quick else [2048, 4096, 8192]):
        gemm_case(n, n, n, "bfloat16", False, reps)
    n = 256 if quick else 4096
    gemm_case(n, n, n, "bfloat16", True, reps)
    gemm_case(n, n, n, "float16", False, reps)
    m = 128 if quick else 2048
    gemm_case(m, m, m, "float32", False, reps)


def attention_case(B, S, Hq, Hkv, D, causal, dt, reps):
    q = torch.randn(B, Hq, S, D, device=dev, dtype=DT[dt], requires_grad=True)
    k = torch.randn(B, Hkv, S, D, device=dev, dtype=DT[dt], requires_grad=True)
    v = torch.randn(B, Hkv, S, D, device=dev, dtype=DT[dt], requires_grad=True)
    kk, vv = (k, v) if Hq == Hkv else (k.repeat_interleave(Hq // Hkv, 1), v.repeat_interleave(Hq // Hkv, 1))
    name = f"{dt} B{B} S{S} H{Hq}/{Hkv} D{D}" + (" causal" if causal else "")
    f = 4.0 * B * Hq * S * S * D * (0.5 if causal else 1.0)
    emit("attention", name + " fwd", time_ms(lambda: F.scaled_dot_product_attention(q, kk, vv, is_causal=causal), reps), f)
    o = F.scaled_dot_product_attention(q, kk, vv, is_causal=causal)
    g = torch.randn_like(o)
    emit("attention", name + " bwd", time_ms(lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True), reps), 2.5 * f)


def bench_attention():
    reps = 2 if quick else 5
    if quick:
        attention_case(1, 128, 4, 2, 64, False, "bfloat16", reps)
        return
    for D in (64, 128):
        for S in (1024, 2048, 4096, 8192):
            attention_case(16384 // S, S, 2048 // D, 2048 // D, D, False, "bfloat16", reps)
    attention_case(4, 4096, 16, 16, 128, True, "bfloat16", reps)
    attention_case(4, 4096, 32, 8, 128, False, "bfloat16", reps)


def lora_case(N, inn, out, r, dt, reps):
    x = torch.randn(N, inn, device=dev, dtype=DT[dt], requires_grad=True)
    w = torch.randn(out, inn, device=dev, dtype=DT[dt]) / inn ** 0.5
    a = (torch.randn(r, inn, device=dev) / inn ** 0.5).requires_grad_()
    b = (torch.randn(out, r, device=dev) * 0.01).requires_grad_()
    name = f"{dt} N{N} in{inn} out{out} r{r}"
    gemm = 2.0 * N * inn * out

    def fwd():  # PEFT's Linear.forward (dropout off): base + lora_B(lora_A(x)) * scaling, adapters in float32
        return F.linear(x, w) + (F.linear(F.linear(x.float(), a), b) * 2.0).to(x.dtype)

    emit("lora", name + " lora fwd", time_ms(fwd, reps), gemm + 2.0 * N * r * (inn + out))
    y = fwd()
    dy = torch.randn_like(y)
    emit("lora", name + " lora bwd", time_ms(lambda: torch.autograd.grad(y, (x, a, b), dy, retain_graph=True), reps),
         gemm + 6.0 * N * r * (inn + out))


def bench_lora():
    reps = 2 if quick else 5
    if quick:
        lora_case(256, 256, 384, 16, "bfloat16", reps)
        return
    lora_case(8192, 4096, 4096, 16, "bfloat16", reps)
    lora_case(8192, 4096, 14336, 16, "bfloat16", reps)


def infonce_case(N, d, dt, reps):
    a = (torch.randn(N, d, device=dev, dtype=DT[dt]) / d ** 0.5).requires_grad_()
    b = (torch.randn(N, d, device=dev, dtype=DT[dt]) / d ** 0.5).requires_grad_()
    lab = torch.arange(N, device=dev)
    name = f"{dt} N=M={N} d{d} symmetric"
    f = 2.0 * N * N * d

    def loss():
        L = 50.0 * a @ b.T
        return (F.cross_entropy(L.float(), lab) + F.cross_entropy(L.T.float(), lab)) / 2

    emit("infonce", name + " fwd", time_ms(loss, reps), f)
    l = loss()
    emit("infonce", name + " bwd", time_ms(lambda: torch.autograd.grad(l, (a, b), retain_graph=True), reps), 3 * f)
    del l
    torch.cuda.empty_cache()


def bench_infonce():
    if quick:
        infonce_case(512, 64, "bfloat16", 2)
        return
    for N in (16384, 65536):
        run("infonce", lambda: infonce_case(N, 1024, "bfloat16", 2 if N > 16384 else 5))
    run("infonce", lambda: infonce_case(262144, 1024, "bfloat16", 1))


print(json.dumps({"torch": torch.__version__, "device": torch.cuda.get_device_name(0)}), flush=True)
for nm, fn in (("gemm", bench_gemm), ("attention", bench_attention), ("lora", bench_lora), ("infonce", bench_infonce)):
    if suite in (None, nm):
        run(nm, fn)
