// bench/lora.ts: the `lora` suite. A linear layer with a LoRA adapter, forward + backward
// (needInputGrad: dx, dA, dB), fused (ops.loraLinear / ops.loraLinearBackward) against
// the plain frozen linear layer of the same shape through ops.matmul (y = x·Wᵀ forward,
// dx = dy·W backward), side by side in the same run, alternating call by call. The issue's
// bar: fused fwd+bwd <= 1.15x plain at N = 4096, in = out = 2048, r = 16, float32.
// Informational: forward alone, bfloat16, dropout, and PyTorch 1.13 (Debian's
// python3-torch: F.linear + PEFT-style LoRA math with autograd, as many threads as ours).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ops, randn, getNumThreads, Tensor, DType } from '../src';
import { renderSvg, ChartSeries } from './chart';
import { BenchOptions, LoadWatch, median, report, sync, timeIt, writeResults } from './harness';

interface Shape {
  N: number;
  inD: number;
  out: number;
  r: number;
}

interface Inputs {
  x: Tensor;
  W: Tensor;
  b: Tensor;
  A: Tensor;
  B: Tensor;
  dy: Tensor;
}

function makeInputs(s: Shape, dtype: DType, device: string): Inputs {
  return {
    x: randn([s.N, s.inD], { seed: 1, dtype, device }),
    W: randn([s.out, s.inD], { seed: 2, dtype, std: 0.02, device }),
    b: randn([s.out], { seed: 3, dtype, device }),
    A: randn([s.r, s.inD], { seed: 4, std: 0.02, device }), // float32 adapters, as PEFT keeps them
    B: randn([s.out, s.r], { seed: 5, std: 0.02, device }),
    dy: randn([s.N, s.out], { seed: 6, dtype, device }),
  };
}

function disposeAll(ts: (Tensor | null | undefined)[]): void {
  for (const t of ts) t?.dispose();
}

type Fn = () => void;

/** Alternates a and b call by call (after one warm-up each); seconds per call. */
function alternate(a: Fn, b: Fn, reps: number): [number[], number[]] {
  a();
  b();
  const ta: number[] = [], tb: number[] = [];
  for (let i = 0; i < reps; i++) {
    ta.push(...timeIt(a, 1, 0));
    tb.push(...timeIt(b, 1, 0));
  }
  return [ta, tb];
}

const TORCH_PY = `
import sys, time, torch
import torch.nn.functional as F
N, i, o, r, reps, threads = map(int, sys.argv[1:7]); dt = getattr(torch, sys.argv[7]); p = float(sys.argv[8])
torch.set_num_threads(threads)
torch.manual_seed(0)
x = torch.randn(N, i, dtype=dt).requires_grad_()
W = torch.randn(o, i, dtype=dt) * 0.02
b = torch.randn(o, dtype=dt)
A = (torch.randn(r, i) * 0.02).requires_grad_()
B = (torch.randn(o, r) * 0.02).requires_grad_()
dy = torch.randn(N, o, dtype=dt)
scale = 2.0
def lora():
    # PEFT's Linear.forward: base_layer(x) + lora_B(lora_A(dropout(x))) * scaling, x cast to the adapters' dtype
    xa = F.dropout(x.to(A.dtype), p) if p > 0 else x.to(A.dtype)
    y = F.linear(x, W, b) + (F.linear(F.linear(xa, A), B) * scale).to(dt)
    y.backward(dy)
    x.grad = None; A.grad = None; B.grad = None
def plain():
    y = F.linear(x, W, b)
    y.backward(dy)
    x.grad = None
for f in (lora, plain): f()
for _ in range(reps):
    for name, f in (("lora", lora), ("plain", plain)):
        t = time.perf_counter(); f(); print(name, time.perf_counter() - t)
`;

function torchAvailable(): string | null {
  const r = spawnSync('/usr/bin/python3', ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** PyTorch seconds per fwd+bwd call: {lora, plain}. */
function torchTimes(s: Shape, dtype: DType, p: number, reps: number): { lora: number[]; plain: number[] } {
  const args = [s.N, s.inD, s.out, s.r, reps, getNumThreads()].map(String);
  const r = spawnSync('/usr/bin/python3', ['-c', TORCH_PY, ...args, dtype, String(p)], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`torch baseline failed: ${r.stderr}`);
  const out = { lora: [] as number[], plain: [] as number[] };
  for (const line of r.stdout.trim().split('\n')) {
    const [name, t] = line.split(' ');
    if (name === 'lora' || name === 'plain') out[name].push(Number(t));
  }
  return out;
}

/** The lora suite (see the file comment); on a GPU fused and plain alone (the PyTorch baseline is CPU). */
export function runLora(o: BenchOptions): void {
  const { quick, device } = o;
  const load0 = new LoadWatch();
  const s: Shape = quick ? { N: 512, inD: 256, out: 256, r: 16 } : { N: 4096, inD: 2048, out: 2048, r: 16 };
  const reps = quick ? 5 : 9;
  const scale = 2;
  const torchVersion = device === 'cpu' && !o.noBaseline ? torchAvailable() : null;
  if (!torchVersion && device === 'cpu' && !o.noBaseline) console.log('baseline: PyTorch not found (/usr/bin/python3 -c "import torch" failed); skipped');
  const flopsFwd = 2 * s.N * s.inD * s.out;
  const rows: Record<string, string | number>[] = [];
  const shape = `N=${s.N} in=${s.inD} out=${s.out} r=${s.r}`;
  let barRatio = NaN;

  const cases: { name: string; dtype: DType; fwdOnly: boolean; p: number }[] = [
    { name: 'fwd+bwd', dtype: 'float32', fwdOnly: false, p: 0 },
    { name: 'fwd', dtype: 'float32', fwdOnly: true, p: 0 },
    { name: 'fwd+bwd dropout 0.1', dtype: 'float32', fwdOnly: false, p: 0.1 },
    { name: 'fwd+bwd', dtype: 'bfloat16', fwdOnly: false, p: 0 },
  ];
  for (const c of cases) {
    const t = makeInputs(s, c.dtype, device);
    const dropout = c.p > 0 ? { p: c.p, seed: 123 } : undefined;
    const fused = () => {
      const y = ops.loraLinear(t.x, t.W, t.A, t.B, { scale, bias: t.b, dropout });
      if (c.fwdOnly) return void (sync(device), y.dispose());
      const g = ops.loraLinearBackward(t.dy, t.x, t.W, t.A, t.B, { scale, dropout, needInputGrad: true });
      sync(device);
      disposeAll([y, g.dx, g.dA, g.dB]);
    };
    const plain = () => {
      const y = ops.matmul(t.x, t.W, { transB: true });
      if (c.fwdOnly) return void (sync(device), y.dispose());
      const dx = ops.matmul(t.dy, t.W);
      sync(device);
      disposeAll([y, dx]);
    };
    const [tf, tp] = alternate(fused, plain, reps);
    disposeAll(Object.values(t));
    const mf = median(tf), mp = median(tp);
    const flops = c.fwdOnly ? flopsFwd : 2 * flopsFwd;
    const row: Record<string, string | number> = {
      case: `${c.dtype} ${c.name}`,
      'fused ms': mf * 1e3,
      'plain ms': mp * 1e3,
      'fused/plain': mf / mp,
      'plain GFLOP/s': flops / mp / 1e9,
    };
    if (c.dtype === 'float32' && !c.fwdOnly && c.p === 0) barRatio = mf / mp;
    if (torchVersion && !c.fwdOnly) {
      const tt = torchTimes(s, c.dtype, c.p, quick ? 3 : 5);
      row['torch lora ms'] = median(tt.lora) * 1e3;
      row['torch plain ms'] = median(tt.plain) * 1e3;
      row['fused/torch lora'] = mf / median(tt.lora);
    }
    rows.push(row);
  }
  console.log(`lora ${shape}, ${getNumThreads()} threads; plain = ops.matmul (x·Wᵀ, and dy·W for bwd), no bias add`);
  const verdict = barRatio <= 1.15 ? 'meets' : 'misses';
  console.log(`\nfloat32 fwd+bwd fused/plain = ${barRatio.toFixed(3)} (${verdict} the <= 1.15 bar)`);
  const load = os.loadavg().map((v) => v.toFixed(2)).join(' ');
  console.log(`load average at the end: ${load} (${os.cpus().length} cores)`);
  const series: ChartSeries[] = [
    { name: 'fused LoRA (ours)', points: rows.map((r) => ({ x: r.case as string, y: r['fused ms'] as number })) },
    { name: 'plain linear (ours)', points: rows.map((r) => ({ x: r.case as string, y: r['plain ms'] as number })) },
  ];
  if (rows.some((r) => typeof r['torch lora ms'] === 'number'))
    series.push({ name: `PyTorch ${torchVersion} LoRA`, points: rows.map((r) => ({ x: r.case as string, y: typeof r['torch lora ms'] === 'number' ? r['torch lora ms'] : null })) });
  const svg = renderSvg({
    kind: 'bar', title: `LoRA linear, ms per call on ${device}`, xLabel: 'case', yLabel: 'ms (lower is better)', series, width: 700,
    note: `${shape}; fused/plain float32 fwd+bwd = ${barRatio.toFixed(3)} (bar <= 1.15)`,
  });
  const files = writeResults('lora', o, load0, rows, {
    shape: s,
    scale,
    timing: `median of ${reps} calls after one warm-up; fused and plain alternate call by call in the same process`,
    plain: 'ops.matmul: y = x·Wᵀ (forward), dx = dy·W (backward); no bias add (the fused op adds its bias)',
    fused: 'ops.loraLinear (bias, float32 adapters) + ops.loraLinearBackward (needInputGrad: dx, dA, dB)',
    baseline: torchVersion
      ? `PyTorch ${torchVersion} (Debian python3-torch), ${getNumThreads()} threads: F.linear(x, W, b) + F.linear(F.linear(dropout(x), A), B)*scale, autograd backward for x, A, B; torch plain = F.linear(x, W, b) backward for x`
      : null,
    bar: { metric: 'float32 fwd+bwd fused/plain', limit: 1.15, value: barRatio },
  }, svg);
  report(rows, files, load0);
  if (!quick && device === 'cpu') fs.writeFileSync(path.join(o.out, 'lora.md'), markdown(shape, rows, barRatio, torchVersion, quick, load));
}

function markdown(shape: string, rows: Record<string, string | number>[], bar: number, torch: string | null, quick: boolean, load: string): string {
  const cols = Object.keys(rows.reduce((a, r) => (Object.keys(r).length > Object.keys(a).length ? r : a), rows[0]));
  // ms and GFLOP/s with one decimal, ratios with three.
  const cell = (c: string, v: string | number | undefined) =>
    v === undefined ? '' : typeof v === 'number' ? v.toFixed(c.endsWith('ms') || c.endsWith('GFLOP/s') ? 1 : 3) : v;
  const lines = [
    `# lora bench${quick ? ' (--quick)' : ''}`,
    '',
    `${shape}, ${getNumThreads()} threads on ${os.cpus()[0]?.model ?? 'unknown'} (${os.cpus().length} cores, load average`,
    `${load} at the end), ${new Date().toISOString()}. Fused = ops.loraLinear (with bias, float32`,
    'adapters) + ops.loraLinearBackward (dx, dA, dB); plain = the frozen linear layer through ops.matmul',
    '(x·Wᵀ forward, dy·W backward, no bias add), alternating call by call in one process; medians.',
    'The dropout row compares against the same plain layer (no dropout): its ratio includes the masks',
    '(forward: drop(x); backward: drop(x) regenerated, and the mask on dx). bfloat16: x, W, dy bfloat16,',
    'adapters float32; plain bfloat16 ops.matmul.',
    torch ? `PyTorch ${torch}: F.linear + PEFT-style LoRA math with autograd, same thread count.` : 'PyTorch: not available, skipped.',
    '',
    `**float32 fwd+bwd fused/plain = ${bar.toFixed(3)}** (bar: <= 1.15).`,
    '',
    `| ${cols.join(' | ')} |`,
    `| ${cols.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${cols.map((c) => cell(c, r[c])).join(' | ')} |`),
    '',
  ];
  return lines.join('\n');
}
