"""bench/gpu/gemm_ctypes.py: our CUDA matmul through the C ABI (libllm2clip.so, ctypes)
against torch.matmul (cuBLAS) on the same tensors: checks the result (relative error vs a
float64 product on a sample of rows) and times both (TFLOP/s = 2*M*N*K / t, median of
repetitions, each side synchronised). Prints a markdown table.
Usage: python3 gemm_ctypes.py path/to/libllm2clip.so [--quick]"""
import ctypes as C
import statistics
import sys
import time

import torch

lib = C.CDLL(sys.argv[1])
quick = "--quick" in sys.argv


class Device(C.Structure):
    _fields_ = [("type", C.c_int), ("index", C.c_int32)]


class Tensor(C.Structure):
    _fields_ = [("data", C.c_void_p), ("dtype", C.c_int), ("device", Device), ("ndim", C.c_int32),
                ("shape", C.c_int64 * 8)]


class MatmulArgs(C.Structure):
    _fields_ = [("a", C.POINTER(Tensor)), ("b", C.POINTER(Tensor)), ("out", C.POINTER(Tensor)),
                ("trans_a", C.c_int32), ("trans_b", C.c_int32)]


lib.l2c_last_error.restype = C.c_char_p
DT = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}


def desc(t):
    d = Tensor()
    d.data = t.data_ptr()
    d.dtype = DT[t.dtype]
    d.device = Device(1, t.device.index or 0)
    d.ndim = t.dim()
    for i, s in enumerate(t.shape):
        d.shape[i] = s
    return d


def ours(a, b, out):
    da, db, do = desc(a), desc(b), desc(out)
    args = MatmulArgs(C.pointer(da), C.pointer(db), C.pointer(do), 0, 0)
    s = lib.l2c_matmul(C.byref(args))
    if s != 0:
        raise RuntimeError(lib.l2c_last_error().decode())


def sync():
    torch.cuda.synchronize()
    lib.l2c_synchronize(Device(1, 0))


def timed(fn, reps):
    fn(); sync()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)


print("| dtype | M=N=K | ours TFLOP/s | torch TFLOP/s | ours/torch | max rel err (ours) | max rel err (torch) |")
print("|---|---|---|---|---|---|---|")
sizes = [1024, 2048] if quick else [1024, 2048, 4096, 8192]
for dtype in (torch.float32, torch.bfloat16, torch.float16):
    for n in sizes:
        g = torch.Generator(device="cuda").manual_seed(n)
        a = torch.randn(n, n, device="cuda", dtype=torch.float32, generator=g).to(dtype)
        b = torch.randn(n, n, device="cuda", dtype=torch.float32, generator=g).to(dtype)
        out = torch.full((n, n), float("nan"), device="cuda", dtype=dtype)
        sync()
        ours(a, b, out); sync()
        ref_rows = slice(0, 64)
        ref = a[ref_rows].double() @ b.double()
        scale = ref.abs().max().item()
        err_ours = ((out[ref_rows].double() - ref).abs().max() / scale).item()
        err_torch = (((a[ref_rows] @ b).double() - ref).abs().max() / scale).item()
        reps = 5 if n >= 4096 else 20
        t_ours = timed(lambda: ours(a, b, out), reps)
        t_torch = timed(lambda: torch.matmul(a, b, out=out), reps)
        f = 2 * n ** 3
        print(f"| {str(dtype).split('.')[1]} | {n} | {f / t_ours / 1e12:.1f} | {f / t_torch / 1e12:.1f} | "
              f"{t_torch / t_ours:.2f} | {err_ours:.1e} | {err_torch:.1e} |", flush=True)
