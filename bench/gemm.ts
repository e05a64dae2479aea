// bench/gemm.ts: the `gemm` suite. GFLOP/s (2·M·N·K / t) of ops.matmul on the CPU (or
// the GPU with --device cuda) at square sizes, side by side in the same run with the
// baseline: OpenBLAS sgemm through numpy (Debian's python3-numpy + libopenblas0-pthread,
// its AVX-512 kernel, as many threads as ours), alternating ours / baseline per size.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import { ops, randn, getNumThreads, Tensor, DType } from '../src';
import { renderSvg, ChartSeries } from './chart';
import { BenchOptions, LoadWatch, median, report, sync, timeIt, writeResults } from './harness';

const OPENBLAS = '/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3';

const BASELINE_PY = `
import sys, time, numpy as np
n, reps = int(sys.argv[1]), int(sys.argv[2])
a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)
a @ b
for _ in range(reps):
    t = time.perf_counter(); a @ b; print(time.perf_counter() - t)
`;

function baselineAvailable(): boolean {
  if (!fs.existsSync(OPENBLAS)) return false;
  return spawnSync('/usr/bin/python3', ['-c', 'import numpy'], { encoding: 'utf8' }).status === 0;
}

/** OpenBLAS sgemm seconds per call at n³ (numpy, same thread count as ours). */
function baselineTimes(n: number, reps: number): number[] {
  // OPENBLAS_CORETYPE may be pinned to an older kernel on these machines; pick the
  // AVX-512 one where the CPU has it, as ../shared/tools/openblas-sgemm.sh does.
  const core = fs.readFileSync('/proc/cpuinfo', 'utf8').includes('avx512f') ? 'SkylakeX' : 'Haswell';
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_CORETYPE: core, OPENBLAS_NUM_THREADS: String(getNumThreads()) };
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync('/usr/bin/python3', ['-c', BASELINE_PY, String(n), String(reps)], { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`baseline failed: ${r.stderr}`);
  return r.stdout.trim().split('\n').map(Number);
}

interface Case {
  n: number;
  dtype: DType;
  transA?: boolean;
  transB?: boolean;
  baseline: boolean;
}

/** The gemm suite (see the file comment). */
export function runGemm(o: BenchOptions): void {
  const { device, quick } = o;
  const load = new LoadWatch();
  const sizes = quick ? [256, 512] : [256, 512, 1024, 2048];
  const cases: Case[] = [];
  for (const n of sizes) cases.push({ n, dtype: 'float32', baseline: device === 'cpu' });
  for (const n of quick ? [512] : [1024, 2048]) {
    cases.push({ n, dtype: 'float32', transA: true, baseline: false });
    cases.push({ n, dtype: 'float32', transB: true, baseline: false });
    cases.push({ n, dtype: 'bfloat16', baseline: false });
    cases.push({ n, dtype: 'float16', baseline: false });
  }
  const haveBaseline = device === 'cpu' && !o.noBaseline && baselineAvailable();
  if (device === 'cpu' && !o.noBaseline && !haveBaseline)
    console.log(`baseline: OpenBLAS via numpy not found (run ../shared/tools/openblas-sgemm.sh once to install it)`);
  const rows: Record<string, string | number>[] = [];
  for (const c of cases) {
    const flops = 2 * c.n ** 3;
    const reps = quick ? 3 : c.n >= 2048 ? 5 : c.n >= 1024 ? 9 : 21;
    const a = randn([c.n, c.n], { dtype: c.dtype, device, seed: 1 });
    const b = randn([c.n, c.n], { dtype: c.dtype, device, seed: 2 });
    let out: Tensor | undefined;
    const ours = () => {
      out?.dispose();
      out = ops.matmul(a, b, { transA: c.transA, transB: c.transB });
      sync(device); // wait for the device
    };
    const oursT: number[] = [];
    const baseT: number[] = [];
    // Alternate ours and the baseline so both see the same machine state.
    const rounds = c.baseline && haveBaseline ? 2 : 1;
    for (let r = 0; r < rounds; r++) {
      oursT.push(...timeIt(ours, reps));
      if (c.baseline && haveBaseline) baseT.push(...baselineTimes(c.n, reps));
    }
    out?.dispose();
    a.dispose();
    b.dispose();
    const g = flops / median(oursT) / 1e9;
    const row: Record<string, string | number> = {
      case: `${c.dtype}${c.transA ? ' Aᵀ' : ''}${c.transB ? ' Bᵀ' : ''}`,
      size: `${c.n}³`,
      n: c.n,
      'GFLOP/s': g,
    };
    if (baseT.length) {
      const gb = flops / median(baseT) / 1e9;
      row['OpenBLAS GFLOP/s'] = gb;
      row['ours/OpenBLAS'] = g / gb;
    }
    rows.push(row);
  }
  // Chart: GFLOP/s against the size, one line per case (and the baseline's).
  const series = new Map<string, ChartSeries>();
  const add = (name: string, x: number, y: number) => {
    if (!series.has(name)) series.set(name, { name, points: [] });
    series.get(name)!.points.push({ x, y });
  };
  for (const r of rows) {
    add(`ours ${r.case}`, r.n as number, r['GFLOP/s'] as number);
    if (typeof r['OpenBLAS GFLOP/s'] === 'number') add('OpenBLAS sgemm (numpy)', r.n as number, r['OpenBLAS GFLOP/s']);
  }
  const svg = renderSvg({
    kind: 'line', title: `matmul GFLOP/s on ${device}`, xLabel: 'square size N (N³ GEMM)', yLabel: 'GFLOP/s',
    xScale: 'log2', series: [...series.values()], width: 640, note: 'GFLOP/s = 2·N³ / median time',
  });
  const files = writeResults('gemm', o, load, rows, {
    flopFormula: '2*M*N*K',
    timing: 'median of repetitions after one warm-up; ours and the baseline alternate in two rounds',
    baseline: haveBaseline ? `OpenBLAS sgemm (${OPENBLAS}) via numpy, AVX-512 kernel, ${getNumThreads()} threads` : null,
  }, svg);
  report(rows, files, load);
}
