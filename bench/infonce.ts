// bench/infonce.ts: the `infonce` suite. The symmetric InfoNCE (CLIP) loss, forward +
// backward, float32: ours (ops.infoNCE + ops.infoNCEBackward, streaming, no logits matrix)
// beside the materialised loss in PyTorch 1.13 on the CPU (Debian's python3-torch,
// torch.set_num_threads(our thread count)) on the same data, in the same run, alternating:
//   L = scale * a @ b.T; loss = (cross_entropy(L, arange) + cross_entropy(L.T, arange)) / 2;
//   loss.backward()
// Both sides run in a child process each time so that memory growth is measured cleanly:
// ours as the native allocator's peak above the inputs and the process's peak RSS above
// its RSS before the first call (VmHWM after resetting it through /proc/self/clear_refs),
// torch as ru_maxrss after its first step minus before. Times: medians of warm calls.
// --device cuda: ours alone on the GPU (float32 / bfloat16 / float16), TFLOP/s and the
// share of the dense bf16 tensor rate (runInfonceCuda below).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { cuda, getNumThreads, ops, randn, DType, Tensor } from '../src';
import { machine, median, printTable, resultsDir, writeResult } from './harness';

const SCALE = 50;

// Runs in a child node process: argv N d reps scale symmetric.
const OURS_JS = `
const fs = require('fs');
const L = require(process.env.L2C_SRC);
const [N, d, reps, scale] = process.argv.slice(1, 5).map(Number);
const sym = process.argv[5] === '1';
const st = (k) => Number(new RegExp(k + ':\\\\s+(\\\\d+)').exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
const a = L.randn([N, d], { seed: 1, std: 1 / Math.sqrt(d) }), b = L.randn([N, d], { seed: 2, std: 1 / Math.sqrt(d) });
const now = () => Number(process.hrtime.bigint()) / 1e9;
function step(times) {
  const t0 = now();
  const f = L.ops.infoNCE(a, b, { scale, symmetric: sym });
  const t1 = now();
  const g = L.ops.infoNCEBackward(a, b, { scale, symmetric: sym, lseRows: f.lseRows, lseCols: f.lseCols });
  const loss = f.loss.item(), ds = g.dScale.item();
  const t2 = now();
  if (times) { times.fwd.push(t1 - t0); times.bwd.push(t2 - t1); times.total.push(t2 - t0); }
  for (const t of [f.loss, f.lseRows, f.lseCols, g.da, g.db, g.dScale]) if (t) t.dispose();
  return loss;
}
const nat0 = L.memoryStats().cpu.allocatedBytes;
let canReset = true;
try { fs.writeFileSync('/proc/self/clear_refs', '5'); } catch { canReset = false; }
const rss0 = st('VmRSS'), t0 = now();
const loss = step(null);
const cold = now() - t0;
const rssGrowth = canReset ? st('VmHWM') - rss0 : null;
const nativeGrowth = L.memoryStats().cpu.peakAllocatedBytes - nat0;
const times = { fwd: [], bwd: [], total: [] };
for (let i = 0; i < reps; i++) step(times);
console.log(JSON.stringify({ loss, cold, rssGrowth, nativeGrowth, ...times }));
`;

// Runs in /usr/bin/python3: argv n d reps threads scale afile bfile.
const TORCH_PY = `
import sys, time, json, resource
import numpy as np, torch
import torch.nn.functional as F
n, d, reps, threads = (int(x) for x in sys.argv[1:5]); scale = float(sys.argv[5])
torch.set_num_threads(threads)
a = torch.from_numpy(np.fromfile(sys.argv[6], dtype=np.float32).reshape(n, d)).requires_grad_()
b = torch.from_numpy(np.fromfile(sys.argv[7], dtype=np.float32).reshape(n, d)).requires_grad_()
labels = torch.arange(n)
def step():
    L = scale * a @ b.T
    loss = (F.cross_entropy(L, labels) + F.cross_entropy(L.T, labels)) / 2
    loss.backward()
    v = loss.item()
    a.grad = None; b.grad = None
    return v
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter(); loss = step(); cold = time.perf_counter() - t
r1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(reps):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
print(json.dumps({"loss": loss, "cold": cold, "rssGrowth": (r1 - r0) * 1024, "total": times, "version": torch.__version__}))
`;

interface OursRun {
  loss: number;
  cold: number;
  rssGrowth: number | null;
  nativeGrowth: number;
  fwd: number[];
  bwd: number[];
  total: number[];
}
interface TorchRun {
  loss: number;
  cold: number;
  rssGrowth: number;
  total: number[];
  version: string;
}

function torchAvailable(): boolean {
  return spawnSync('/usr/bin/python3', ['-c', 'import torch, numpy'], { encoding: 'utf8' }).status === 0;
}

function runOurs(N: number, d: number, reps: number): OursRun {
  const env = { ...process.env, L2C_SRC: path.join(__dirname, '..', 'src') };
  const r = spawnSync(process.execPath, ['-e', OURS_JS, String(N), String(d), String(reps), String(SCALE), '1'], {
    encoding: 'utf8', env, maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`ours (child) failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

function runTorch(N: number, d: number, reps: number, afile: string, bfile: string): TorchRun {
  const r = spawnSync('/usr/bin/python3', ['-c', TORCH_PY, String(N), String(d), String(reps), String(getNumThreads()), String(SCALE), afile, bfile], {
    encoding: 'utf8', maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`baseline (torch) failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** The inputs ours regenerates in its child (same seeds), written for torch. */
function writeInputs(N: number, d: number): [string, string] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-infonce-'));
  const files: [string, string] = [path.join(dir, 'a.f32'), path.join(dir, 'b.f32')];
  [1, 2].forEach((seed, i) => {
    const t = randn([N, d], { seed, std: 1 / Math.sqrt(d) });
    const x = t.toArray() as Float32Array;
    fs.writeFileSync(files[i], Buffer.from(x.buffer, x.byteOffset, x.byteLength));
    t.dispose();
  });
  return files;
}

interface Case {
  N: number;
  d: number;
  baseline: boolean;
  reps: number;
  rounds: number;
}

const MB = 2 ** 20;

export function runInfonce(args: string[]): void {
  const quick = args.includes('--quick');
  const device = args.includes('--device') ? args[args.indexOf('--device') + 1] : 'cpu';
  if (device.startsWith('cuda')) {
    runInfonceCuda(quick, device);
    return;
  }
  if (device !== 'cpu') {
    console.log(`bench infonce: unknown device ${device}`);
    return;
  }
  const cases: Case[] = quick
    ? [{ N: 1024, d: 128, baseline: true, reps: 3, rounds: 1 }, { N: 2048, d: 64, baseline: false, reps: 3, rounds: 1 }]
    : [{ N: 8192, d: 512, baseline: true, reps: 3, rounds: 2 }, { N: 65536, d: 256, baseline: false, reps: 1, rounds: 1 }];
  const haveTorch = torchAvailable();
  if (!haveTorch) console.log('baseline: PyTorch (/usr/bin/python3 with torch and numpy) not found; skipping it');
  const rows: Record<string, string | number>[] = [];
  const raw: object[] = [];
  let torchVersion: string | null = null;
  const load0 = os.loadavg()[0];
  for (const c of cases) {
    const ours: OursRun[] = [], base: TorchRun[] = [];
    const useTorch = c.baseline && haveTorch;
    const files = useTorch ? writeInputs(c.N, c.d) : null;
    try {
      for (let r = 0; r < c.rounds; r++) {  // alternate: both see the same machine state
        ours.push(runOurs(c.N, c.d, c.reps));
        if (files) base.push(runTorch(c.N, c.d, c.reps, files[0], files[1]));
      }
    } finally {
      if (files) fs.rmSync(path.dirname(files[0]), { recursive: true, force: true });
    }
    const all = (k: 'fwd' | 'bwd' | 'total') => ours.flatMap((o) => o[k]);
    const tOurs = median(all('total'));
    const row: Record<string, string | number> = {
      case: `N=M=${c.N} d=${c.d}`,
      'fwd s': median(all('fwd')),
      'bwd s': median(all('bwd')),
      'fwd+bwd s': tOurs,
      'GFLOP/s': (8 * c.N * c.N * c.d) / tOurs / 1e9,
      'RSS +MB': Math.max(...ours.map((o) => o.rssGrowth ?? NaN)) / MB,
      'native +MB': Math.max(...ours.map((o) => o.nativeGrowth)) / MB,
    };
    if (base.length) {
      torchVersion = base[0].version;
      const tBase = median(base.flatMap((b) => b.total));
      row['torch s'] = tBase;
      row['torch RSS +MB'] = Math.max(...base.map((b) => b.rssGrowth)) / MB;
      row.speedup = tBase / tOurs;
      row['loss rel diff'] = Math.abs(ours[0].loss - base[0].loss) / Math.abs(base[0].loss);
    } else {
      row['torch s'] = c.baseline ? 'n/a' : `skipped (logits alone ${((4 * c.N * c.N) / 2 ** 30).toFixed(0)} GiB)`;
    }
    rows.push(row);
    raw.push({ N: c.N, M: c.N, d: c.d, ours, torch: base });
    console.log(`done: ${row.case}`);
  }
  printTable(rows);
  const load = [load0, os.loadavg()[0]].map((x) => x.toFixed(1)).join(' -> ');
  console.log(`load average (1 min) over the run: ${load}`);
  const m = machine();
  const file = writeResult('infonce', {
    device: 'cpu',
    loss: `symmetric InfoNCE (CLIP), float32, scale ${SCALE}, inputs randn / sqrt(d)`,
    flopFormula: '8*N*M*d (forward 2NMd + backward 6NMd)',
    timing: 'median of warm calls (after one cold call that measures memory), each side in its own child process, alternating rounds',
    loadAverage: load,
    memory: 'ours: peak RSS (VmHWM after clear_refs) and native allocator peak above the inputs, first call; torch: ru_maxrss growth over its first step',
    baseline: haveTorch ? `PyTorch ${torchVersion ?? ''} CPU, materialised logits, torch.set_num_threads(${getNumThreads()})` : null,
    rows,
    raw,
  });
  const md = [
    '# infonce: streaming InfoNCE / CLIP loss (CPU)',
    '',
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.threads} threads, ${m.isa}, ${m.memoryGiB} GiB; ${m.node}. ${new Date().toISOString()};`,
    `1-minute load average ${load} (other jobs share the cores: ours and torch alternate, so the speedup is fair, the absolute times are not).`,
    '',
    `Symmetric loss, float32, scale ${SCALE}, forward + backward (8·N·M·d flops). Ours: ops.infoNCE + ops.infoNCEBackward,`,
    'logits never stored. Baseline: PyTorch 1.13 on the CPU (OpenBLAS), the materialised loss',
    '`L = scale * a @ b.T; (cross_entropy(L, arange) + cross_entropy(L.T, arange)) / 2; backward()`,',
    'same data, same thread count, in the same run (alternating child processes). Memory: growth over the',
    'inputs during the first call (ours: process peak RSS and native allocator peak; torch: ru_maxrss),',
    'gradients included on both sides.',
    '',
    '| ' + Object.keys(rows[0]).join(' | ') + ' |',
    '| ' + Object.keys(rows[0]).map(() => '---').join(' | ') + ' |',
    ...rows.map((r) => '| ' + Object.keys(rows[0]).map((k) => (typeof r[k] === 'number' ? (r[k] as number).toPrecision(3) : r[k] ?? '')).join(' | ') + ' |'),
    '',
  ].join('\n');
  if (!quick) fs.writeFileSync(path.join(resultsDir(), 'infonce.md'), md);
  console.log(`\nwrote ${file}${quick ? '' : ' and infonce.md'}`);
}

// ---- --device cuda: ours on the GPU (no baseline on the GPU here) ----

// Dense bfloat16 tensor-core peaks (TFLOP/s, without sparsity) of the GPUs the issue
// targets, for the "% of peak" column; other GPUs get none.
function bf16Peak(name: string): number | null {
  if (/H100.*PCIe/i.test(name)) return 756;
  if (/H100|H200|GH200/i.test(name)) return 989;
  if (/A100/i.test(name)) return 312;
  return null;
}

interface CudaCase {
  N: number;
  d: number;
  dtype: DType;
  reps: number;
}

/**
 * The symmetric loss on a CUDA device: forward and backward timed separately (each
 * followed by cuda.synchronize()), medians of warm calls after one cold call, TFLOP/s
 * counting 8·N·M·d, and the allocator's peak above the inputs. The target:
 * bfloat16 at N = M = 65536, d = 1024, >= 50% of the dense bf16 tensor rate.
 */
function runInfonceCuda(quick: boolean, device: string): void {
  if (!cuda.isAvailable()) {
    console.log(`bench infonce --device ${device}: no CUDA device (or a build without CUDA); nothing to measure`);
    return;
  }
  const name = cuda.deviceName(device.includes(':') ? Number(device.split(':')[1]) : 0);
  const peak = bf16Peak(name);
  const cases: CudaCase[] = quick
    ? [{ N: 1024, d: 128, dtype: 'bfloat16', reps: 3 }, { N: 1024, d: 128, dtype: 'float32', reps: 3 }]
    : [
      { N: 16384, d: 1024, dtype: 'float32', reps: 3 },
      { N: 16384, d: 1024, dtype: 'bfloat16', reps: 5 },
      { N: 65536, d: 1024, dtype: 'bfloat16', reps: 3 },
      { N: 65536, d: 1024, dtype: 'float16', reps: 3 },
    ];
  const rows: Record<string, string | number>[] = [];
  const now = () => Number(process.hrtime.bigint()) / 1e9;
  for (const c of cases) {
    const a = randn([c.N, c.d], { seed: 1, std: 1 / Math.sqrt(c.d), dtype: c.dtype, device });
    const b = randn([c.N, c.d], { seed: 2, std: 1 / Math.sqrt(c.d), dtype: c.dtype, device });
    cuda.synchronize(device);
    const base = cuda.memoryStats(device).allocatedBytes;
    const fwd: number[] = [], bwd: number[] = [];
    let loss = NaN, peakBytes = 0;
    for (let r = 0; r <= c.reps; r++) {
      const t0 = now();
      const f = ops.infoNCE(a, b, { scale: SCALE, symmetric: true });
      cuda.synchronize(device);
      const t1 = now();
      const g = ops.infoNCEBackward(a, b, { scale: SCALE, symmetric: true, lseRows: f.lseRows, lseCols: f.lseCols });
      cuda.synchronize(device);
      const t2 = now();
      if (r === 0) {
        loss = f.loss.item();
        peakBytes = cuda.memoryStats(device).peakAllocatedBytes - base;
      } else {
        fwd.push(t1 - t0);
        bwd.push(t2 - t1);
      }
      for (const t of [f.loss, f.lseRows, f.lseCols, g.da, g.db, g.dScale] as (Tensor | null)[]) t?.dispose();
    }
    a.dispose();
    b.dispose();
    const tf = median(fwd), tb = median(bwd), flops = 8 * c.N * c.N * c.d;
    const row: Record<string, string | number> = {
      case: `N=M=${c.N} d=${c.d}`,
      dtype: c.dtype,
      'fwd ms': tf * 1e3,
      'bwd ms': tb * 1e3,
      'TFLOP/s': flops / (tf + tb) / 1e12,
      '% bf16 peak': peak && c.dtype !== 'float32' ? (100 * flops) / (tf + tb) / 1e12 / peak : 'n/a',
      'peak +MB': peakBytes / MB,
      loss,
    };
    rows.push(row);
    console.log(`done: ${row.case} ${c.dtype}`);
  }
  printTable(rows);
  const file = writeResult(quick ? 'infonce_cuda_quick' : 'infonce_cuda', {
    device: name,
    loss: `symmetric InfoNCE (CLIP), scale ${SCALE}, inputs randn / sqrt(d)`,
    flopFormula: '8*N*M*d (forward 2NMd + backward 6NMd; the kernels do 10NMd: S is recomputed once per side)',
    timing: 'median of warm calls after one cold call; each direction followed by cuda.synchronize()',
    peakTflops: peak,
    rows,
  });
  console.log(`\nwrote ${file}`);
}
