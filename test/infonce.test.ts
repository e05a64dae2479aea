// ops.infoNCE / ops.infoNCEBackward against a materialised float64 reference written here:
// loss, lseRows, lseCols, da, db, dScale; the reference's gradients against central finite
// differences; N != M, N = M = 1, odd d, symmetric or not, scale as a number or a tensor,
// gradLoss != 1, scale 100, several waves / column blocks / depth chunks with ragged
// edges, a 4096 x 4096 spot check, bfloat16 / float16 storage, every CPU SIMD level,
// poisoned outputs, empty sizes and error cases.
import { ops, tensor, Tensor, DType, getCpuIsa, setCpuIsa, CpuIsa, zeros } from '../src';
import { setPoisonOutputs } from '../src/tensor';
import { nativeOps } from '../src/ops/util';
import { describeGpu, expectClose, expectCode, finiteDiff, hostRandom, relErr } from './helpers';

let poisonWas = false;
beforeAll(() => {
  poisonWas = setPoisonOutputs(true);
});
afterAll(() => {
  setPoisonOutputs(poisonWas);
});

// ---- float64 reference (materialises the logits) ----

interface Ref {
  loss: number;
  lseRows: Float64Array;
  lseCols: Float64Array;
  da: Float64Array;
  db: Float64Array;
  dScale: number;
}

function reference(a: ArrayLike<number>, b: ArrayLike<number>, N: number, M: number, d: number, s: number,
  symmetric: boolean, gradLoss = 1, wantGrads = true): Ref {
  const S = new Float64Array(N * M);
  for (let i = 0; i < N; i++)
    for (let j = 0; j < M; j++) {
      let t = 0;
      for (let k = 0; k < d; k++) t += a[i * d + k] * b[j * d + k];
      S[i * M + j] = t;
    }
  const lseRows = new Float64Array(N), lseCols = new Float64Array(symmetric ? M : 0);
  let lossR = 0, lossC = 0;
  for (let i = 0; i < N; i++) {
    let mx = -Infinity;
    for (let j = 0; j < M; j++) mx = Math.max(mx, s * S[i * M + j]);
    let z = 0;
    for (let j = 0; j < M; j++) z += Math.exp(s * S[i * M + j] - mx);
    lseRows[i] = mx + Math.log(z);
    lossR += lseRows[i] - s * S[i * M + i];
  }
  if (symmetric)
    for (let j = 0; j < M; j++) {
      let mx = -Infinity;
      for (let i = 0; i < N; i++) mx = Math.max(mx, s * S[i * M + j]);
      let z = 0;
      for (let i = 0; i < N; i++) z += Math.exp(s * S[i * M + j] - mx);
      lseCols[j] = mx + Math.log(z);
      lossC += lseCols[j] - s * S[j * M + j];
    }
  const loss = N === 0 ? 0 : symmetric ? (lossR + lossC) / (2 * N) : lossR / N;
  const da = new Float64Array(N * d), db = new Float64Array(M * d);
  let dScale = 0;
  if (wantGrads && N > 0) {
    const coef = gradLoss / ((symmetric ? 2 : 1) * N), dcoef = gradLoss / N;
    for (let i = 0; i < N; i++)
      for (let j = 0; j < M; j++) {
        const L = s * S[i * M + j];
        let p = Math.exp(L - lseRows[i]);
        if (symmetric) p += Math.exp(L - lseCols[j]);
        const G = coef * p - (i === j ? dcoef : 0);
        dScale += G * S[i * M + j];
        const sg = s * G;
        for (let k = 0; k < d; k++) {
          da[i * d + k] += sg * b[j * d + k];
          db[j * d + k] += sg * a[i * d + k];
        }
      }
  }
  return { loss, lseRows, lseCols, da, db, dScale };
}

// ---- helpers ----

/** Values of the given dtype (rounded there first, so the reference sees them exactly). */
function inputs(n: number, seed: number, dtype: DType = 'float32', amp = 1): Float32Array {
  const x = hostRandom(n, seed);
  if (amp !== 1) for (let i = 0; i < n; i++) x[i] *= amp;
  if (dtype === 'float32') return x;
  const t = tensor(x, [n]).cast(dtype);
  const r = t.toArray() as Float32Array;
  t.dispose();
  return r;
}

function dispose(...ts: (Tensor | null | undefined)[]): void {
  for (const t of ts) t?.dispose();
}

// Each case gets its own seeds (from its description), so the same case at another SIMD
// level sees the same inputs and reuses the float64 reference (the slow part).
function caseSeed(key: string): number {
  let h = 2166136261;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619) >>> 0;
  return (h % 100000) + 1;
}
const refCache = new Map<string, { ah: Float32Array; bh: Float32Array; want: Ref }>();

interface Case {
  N: number;
  M: number;
  d: number;
  symmetric?: boolean;
  scale?: number;
  scaleTensor?: boolean;
  gradLoss?: number;
  gradLossTensor?: boolean;
  dtype?: DType;
  amp?: number;
  /** tolerances: lse / loss, and gradients */
  tol?: number;
  gradTol?: number;
}

/** Runs forward + backward and compares every output with the float64 reference. */
function check(c: Case): void {
  const dtype = c.dtype ?? 'float32', sym = !!c.symmetric, s = c.scale ?? 7, g = c.gradLoss ?? 1;
  const key = JSON.stringify(c);
  let cached = refCache.get(key);
  if (!cached) {
    const seed = caseSeed(key);
    const ah = inputs(c.N * c.d, seed * 7 + 1, dtype, c.amp), bh = inputs(c.M * c.d, seed * 7 + 2, dtype, c.amp);
    cached = { ah, bh, want: reference(ah, bh, c.N, c.M, c.d, s, sym, g) };
    refCache.set(key, cached);
  }
  const { ah, bh, want } = cached;
  const a = tensor(ah, [c.N, c.d], { dtype }), b = tensor(bh, [c.M, c.d], { dtype });
  const scaleT = c.scaleTensor ? tensor([s], [1]) : null;
  const gT = c.gradLossTensor ? tensor([g], []) : null;
  const scale = scaleT ?? s;
  const tol = c.tol ?? 1e-5, gradTol = c.gradTol ?? 1e-5;
  const what = `infoNCE ${JSON.stringify(c)}`;
  const f = ops.infoNCE(a, b, { scale, symmetric: sym });
  try {
    expect(f.loss.shape).toEqual([]);
    expect(f.loss.dtype).toBe('float32');
    expect(f.lseRows.shape).toEqual([c.N]);
    expectClose([f.loss.item()], [want.loss], tol, `${what}: loss`);
    expectClose(f.lseRows.toArray(), want.lseRows, tol, `${what}: lseRows`);
    if (sym) {
      expect(f.lseCols!.shape).toEqual([c.M]);
      expectClose(f.lseCols!.toArray(), want.lseCols, tol, `${what}: lseCols`);
    } else {
      expect(f.lseCols).toBeNull();
    }
    const gr = ops.infoNCEBackward(a, b, { scale, symmetric: sym, lseRows: f.lseRows, lseCols: f.lseCols, gradLoss: gT ?? g });
    try {
      expect(gr.da.shape).toEqual([c.N, c.d]);
      expect(gr.db.shape).toEqual([c.M, c.d]);
      expect(gr.da.dtype).toBe(dtype);
      expect(gr.db.dtype).toBe(dtype);
      expect(gr.dScale.shape).toEqual([]);
      expectClose(gr.da.toArray(), want.da, gradTol, `${what}: da`);
      expectClose(gr.db.toArray(), want.db, gradTol, `${what}: db`);
      expectClose([gr.dScale.item()], [want.dScale], gradTol, `${what}: dScale`);
    } finally {
      dispose(gr.da, gr.db, gr.dScale);
    }
  } finally {
    dispose(a, b, scaleT, gT, f.loss, f.lseRows, f.lseCols);
  }
}

/** Runs fn with LLM2CLIP_INFONCE_WAVE_ROWS set (read by the kernels at each call). */
function withWaveRows(rows: number, fn: () => void): void {
  const was = process.env.LLM2CLIP_INFONCE_WAVE_ROWS;
  process.env.LLM2CLIP_INFONCE_WAVE_ROWS = String(rows);
  try {
    fn();
  } finally {
    if (was === undefined) delete process.env.LLM2CLIP_INFONCE_WAVE_ROWS;
    else process.env.LLM2CLIP_INFONCE_WAVE_ROWS = was;
  }
}

// ---- the reference itself against finite differences ----

describe('float64 reference', () => {
  for (const sym of [false, true])
    test(`analytic gradients match finite differences (symmetric=${sym})`, () => {
      const N = sym ? 4 : 3, M = sym ? 4 : 5, d = 3, s = 2.5, g = 1.7;
      const x = Float64Array.from([...hostRandom(N * d, 11), ...hostRandom(M * d, 12), s]);
      const f = (v: Float64Array) =>
        g * reference(v.subarray(0, N * d), v.subarray(N * d, N * d + M * d), N, M, d, v[N * d + M * d], sym, 1, false).loss;
      const fd = finiteDiff(f, x);
      const r = reference(x.subarray(0, N * d), x.subarray(N * d, N * d + M * d), N, M, d, s, sym, g);
      expect(relErr(r.da, fd.subarray(0, N * d))).toBeLessThan(1e-7);
      expect(relErr(r.db, fd.subarray(N * d, N * d + M * d))).toBeLessThan(1e-7);
      expect(relErr([r.dScale], [fd[N * d + M * d]])).toBeLessThan(1e-7);
    });
});

// ---- float32 at every CPU level ----

describe('infoNCE float32 vs float64 reference', () => {
  const order: CpuIsa[] = ['generic', 'avx2', 'avx512'];
  const best = getCpuIsa();
  const isas = order.slice(0, order.indexOf(best) + 1);
  afterAll(() => setCpuIsa(best));
  for (const isa of isas)
    describe(isa, () => {
      beforeAll(() => setCpuIsa(isa));
      test('N != M (37 x 97), d 33, not symmetric', () => check({ N: 37, M: 97, d: 33 }));
      test('N = M = 1, d 1 (symmetric and not)', () => {
        check({ N: 1, M: 1, d: 1 });
        check({ N: 1, M: 1, d: 1, symmetric: true });
        check({ N: 1, M: 5, d: 7 });
      });
      test('odd d (1, 7, 33, 65), symmetric and not', () => {
        for (const d of [1, 7, 33, 65]) {
          check({ N: 29, M: 29, d, symmetric: true });
          check({ N: 23, M: 41, d });
        }
      });
      test('scale as a tensor, gradLoss a number != 1 and a tensor', () => {
        check({ N: 31, M: 31, d: 17, symmetric: true, scaleTensor: true, gradLoss: 0.37 });
        check({ N: 19, M: 45, d: 9, scale: 3, scaleTensor: true, gradLoss: -2.5, gradLossTensor: true });
        check({ N: 19, M: 19, d: 9, scale: 0, gradLoss: 1.5, symmetric: true });
      });
      test('scale 100 on unit-norm-sized rows', () => {
        // entries in [-1/4, 1/4) at d 16: |a_i . b_j| < 1, logits within ±100
        check({ N: 45, M: 45, d: 16, scale: 100, amp: 0.25, symmetric: true });
        check({ N: 45, M: 60, d: 16, scale: 100, amp: 0.25 });
      });
      test('several column blocks, sub-blocks and waves, ragged at every level', () => {
        // 700 rows at most 504 per wave: waves of 504 and 196 rows; sub-blocks of kk rows;
        // column blocks split over the tasks with a ragged last one.
        withWaveRows(504, () => {
          check({ N: 700, M: 700, d: 65, symmetric: true, scale: 5 });
          check({ N: 530, M: 777, d: 33, scale: 5, gradLoss: 0.5 });
        });
      });
      test('NaN in an input row propagates to its lse, the loss and the gradients', () => {
        const N = 20, d = 9;
        for (const symmetric of [false, true]) {
          const ah = inputs(N * d, 31), bh = inputs(N * d, 32);
          ah[5 * d + 3] = NaN;
          ah[13 * d] = NaN;  // the last row of a 14-row strip too
          const a = tensor(ah, [N, d]), b = tensor(bh, [N, d]);
          const f = ops.infoNCE(a, b, { scale: 3, symmetric });
          const lr = f.lseRows.toArray();
          expect(Number.isNaN(lr[5]) && Number.isNaN(lr[13])).toBe(true);
          expect(lr.filter(Number.isNaN).length).toBe(2);
          expect(Number.isNaN(f.loss.item())).toBe(true);
          if (symmetric) expect(f.lseCols!.toArray().every(Number.isNaN)).toBe(true);
          const g = ops.infoNCEBackward(a, b, { scale: 3, symmetric, lseRows: f.lseRows, lseCols: f.lseCols });
          expect(Number.isNaN(g.dScale.item())).toBe(true);
          expect(g.db.toArray().some(Number.isNaN)).toBe(true);
          dispose(a, b, f.loss, f.lseRows, f.lseCols, g.da, g.db, g.dScale);
        }
      });
      test('d past the depth block (600 > kc): logits in depth chunks', () => {
        check({ N: 40, M: 70, d: 600, scale: 0.5 });
        check({ N: 33, M: 33, d: 1100, scale: 0.3, symmetric: true });
      });
    });
});

describe('infoNCE stability and scale', () => {
  test('scale 100 with large inputs: no overflow or NaN', () => {
    // Entries up to ±3 at d 16: |a_i . b_j| up to ~40, logits up to ~±4000 (exp would
    // overflow without the running maximum). float32 rounding of a dot product is up to
    // d·u·Σ|a||b| (u = 2^-24), times the scale an absolute error δL of the logits, which
    // changes P = exp(L - lse) by a relative δL: the gradients' tolerance is set from it.
    const N = 40, M = 40, d = 16, s = 100;
    const ah = inputs(N * d, 901, 'float32', 3), bh = inputs(M * d, 902, 'float32', 3);
    let magMax = 0;
    for (let i = 0; i < N; i++)
      for (let j = 0; j < M; j++) {
        let m = 0;
        for (let k = 0; k < d; k++) m += Math.abs(ah[i * d + k] * bh[j * d + k]);
        magMax = Math.max(magMax, m);
      }
    const dL = s * d * 2 ** -24 * magMax;
    const a = tensor(ah, [N, d]), b = tensor(bh, [M, d]);
    for (const symmetric of [false, true]) {
      const want = reference(ah, bh, N, M, d, s, symmetric);
      const f = ops.infoNCE(a, b, { scale: s, symmetric });
      const got = f.lseRows.toArray();
      expect(got.every(Number.isFinite)).toBe(true);
      expectClose(got, want.lseRows, 1e-5, 'lseRows');
      expectClose([f.loss.item()], [want.loss], 1e-5, 'loss');
      const g = ops.infoNCEBackward(a, b, { scale: s, symmetric, lseRows: f.lseRows, lseCols: f.lseCols });
      const da = g.da.toArray(), db = g.db.toArray();
      expect(da.every(Number.isFinite) && db.every(Number.isFinite)).toBe(true);
      expectClose(da, want.da, 4 * dL + 1e-5, 'da');
      expectClose(db, want.db, 4 * dL + 1e-5, 'db');
      dispose(f.loss, f.lseRows, f.lseCols, g.da, g.db, g.dScale);
    }
    dispose(a, b);
  });

  test('4096 x 4096, d 64: lse spot checks against float64 rows and columns, loss consistent', () => {
    const N = 4096, d = 64, s = 10;
    const ah = inputs(N * d, 777), bh = inputs(N * d, 778);
    const a = tensor(ah, [N, d]), b = tensor(bh, [N, d]);
    const f = ops.infoNCE(a, b, { scale: s, symmetric: true });
    const lr = f.lseRows.toArray(), lc = f.lseCols!.toArray();
    const lse = (x: Float64Array) => {
      let mx = -Infinity;
      for (const v of x) mx = Math.max(mx, v);
      let z = 0;
      for (const v of x) z += Math.exp(v - mx);
      return mx + Math.log(z);
    };
    const rows: number[] = [], cols: number[] = [], wantR: number[] = [], wantC: number[] = [];
    const L = new Float64Array(N);
    for (let i = 0; i < N; i += 61) {  // 68 rows and 68 columns, float64 each
      for (let j = 0; j < N; j++) {
        let t = 0;
        for (let k = 0; k < d; k++) t += ah[i * d + k] * bh[j * d + k];
        L[j] = s * t;
      }
      rows.push(lr[i]);
      wantR.push(lse(L));
      for (let j = 0; j < N; j++) {
        let t = 0;
        for (let k = 0; k < d; k++) t += ah[j * d + k] * bh[i * d + k];
        L[j] = s * t;
      }
      cols.push(lc[i]);
      wantC.push(lse(L));
    }
    expectClose(rows, wantR, 1e-6, 'lseRows (sampled)');
    expectClose(cols, wantC, 1e-6, 'lseCols (sampled)');
    // loss = mean over rows and columns of lse - L_ii, from our lse and float64 diagonals
    let sum = 0;
    for (let i = 0; i < N; i++) {
      let t = 0;
      for (let k = 0; k < d; k++) t += ah[i * d + k] * bh[i * d + k];
      sum += lr[i] + lc[i] - 2 * s * t;
    }
    expectClose([f.loss.item()], [sum / (2 * N)], 1e-5, 'loss');
    dispose(a, b, f.loss, f.lseRows, f.lseCols);
  });
});

describe('infoNCE reproducibility', () => {
  test('bit-identical results across calls (static column owners, fixed reduction order)', () => {
    const N = 600, d = 40;
    const a = tensor(inputs(N * d, 41), [N, d]), b = tensor(inputs(N * d, 42), [N, d]);
    const run = () => {
      const f = ops.infoNCE(a, b, { scale: 4, symmetric: true });
      const g = ops.infoNCEBackward(a, b, { scale: 4, symmetric: true, lseRows: f.lseRows, lseCols: f.lseCols });
      const out = [f.loss.item(), g.dScale.item(), ...f.lseRows.toArray(), ...f.lseCols!.toArray(), ...g.da.toArray(), ...g.db.toArray()];
      dispose(f.loss, f.lseRows, f.lseCols, g.da, g.db, g.dScale);
      return out;
    };
    withWaveRows(252, () => {
      const first = run(), second = run();
      expect(second.every((x, i) => Object.is(x, first[i]))).toBe(true);
    });
    dispose(a, b);
  });
});

describe('infoNCE 16-bit storage', () => {
  // Inputs are rounded to the dtype before the reference sees them, so the only extra
  // error is the final rounding of da / db to the storage dtype: at most half an ulp,
  // 2^-9 relative (bfloat16) or 2^-12 (float16, normal range) per element, so the
  // ‖·‖ relative error is at most that; tolerances 4e-3 and 1e-3 leave room for the
  // float32 accumulation. Loss and lse are float32 outputs: 1e-5 still holds.
  for (const [dtype, gtol] of [['bfloat16', 4e-3], ['float16', 1e-3]] as [DType, number][])
    test(dtype, () => {
      check({ N: 37, M: 97, d: 33, dtype, gradTol: gtol });
      check({ N: 64, M: 64, d: 48, dtype, symmetric: true, scale: 20, amp: 0.3, gradTol: gtol });
      withWaveRows(252, () => check({ N: 300, M: 300, d: 40, dtype, symmetric: true, gradTol: gtol }));
    });
});

describe('infoNCE empty sizes', () => {
  test('N = 0: loss 0, db zeros; d = 0: logits 0, loss log M', () => {
    const a = zeros([0, 5]), b = tensor(hostRandom(15, 3), [3, 5]);
    const f = ops.infoNCE(a, b, { scale: 2 });
    expect(f.loss.item()).toBe(0);
    expect(f.lseRows.shape).toEqual([0]);
    const g = ops.infoNCEBackward(a, b, { scale: 2, lseRows: f.lseRows });
    expect(g.da.shape).toEqual([0, 5]);
    expect(Array.from(g.db.toArray())).toEqual(new Array(15).fill(0));
    expect(g.dScale.item()).toBe(0);
    dispose(a, b, f.loss, f.lseRows, g.da, g.db, g.dScale);

    const a0 = zeros([3, 0]), b0 = zeros([4, 0]);
    const f0 = ops.infoNCE(a0, b0, { scale: 2 });
    expect(f0.loss.item()).toBeCloseTo(Math.log(4), 6);
    const g0 = ops.infoNCEBackward(a0, b0, { scale: 2, lseRows: f0.lseRows });
    expect(g0.dScale.item()).toBe(0);
    expect(g0.db.shape).toEqual([4, 0]);
    dispose(a0, b0, f0.loss, f0.lseRows, g0.da, g0.db, g0.dScale);

    const e = zeros([0, 0]);
    const fe = ops.infoNCE(e, e, { scale: 1, symmetric: true });
    expect(fe.loss.item()).toBe(0);
    expect(fe.lseCols!.shape).toEqual([0]);
    dispose(e, fe.loss, fe.lseRows, fe.lseCols);
  });
});

describe('infoNCE errors', () => {
  const a = tensor(hostRandom(12, 1), [3, 4]), b = tensor(hostRandom(20, 2), [5, 4]);
  const sq = tensor(hostRandom(12, 3), [3, 4]);
  afterAll(() => dispose(a, b, sq));

  test('inputs', () => {
    expectCode(() => ops.infoNCE({} as Tensor, b, { scale: 1 }), 'INVALID_ARGUMENT', /infoNCE: a/);
    expectCode(() => ops.infoNCE(a, b, undefined as unknown as { scale: number }), 'INVALID_ARGUMENT', /scale/);
    const ai = zeros([3, 4], { dtype: 'int32' });
    expectCode(() => ops.infoNCE(ai, ai, { scale: 1 }), 'DTYPE_MISMATCH', /int32/);
    ai.dispose();
    const bh = b.cast('bfloat16');
    expectCode(() => ops.infoNCE(a, bh, { scale: 1 }), 'DTYPE_MISMATCH', /same dtype/);
    bh.dispose();
    expectCode(() => ops.infoNCE(a.reshape([3, 2, 2]), b, { scale: 1 }), 'SHAPE_MISMATCH', /2-D/);
    expectCode(() => ops.infoNCE(a, b.reshape([10, 2]), { scale: 1 }), 'SHAPE_MISMATCH', /same d/);
    expectCode(() => ops.infoNCE(b, a, { scale: 1 }), 'SHAPE_MISMATCH', /at least as many rows/);
    expectCode(() => ops.infoNCE(a, b, { scale: 1, symmetric: true }), 'SHAPE_MISMATCH', /symmetric/);
    const gone = tensor([1, 2, 3, 4], [1, 4]);
    gone.dispose();
    expectCode(() => ops.infoNCE(gone, b, { scale: 1 }), 'DISPOSED');
  });

  test('scale and gradLoss', () => {
    for (const bad of [NaN, Infinity, '2', undefined, null])
      expectCode(() => ops.infoNCE(a, b, { scale: bad as unknown as number }), 'INVALID_ARGUMENT', /scale/);
    const s16 = tensor([1], [1], { dtype: 'bfloat16' }), s2 = tensor([1, 2], [2]);
    expectCode(() => ops.infoNCE(a, b, { scale: s16 }), 'DTYPE_MISMATCH', /scale/);
    expectCode(() => ops.infoNCE(a, b, { scale: s2 }), 'SHAPE_MISMATCH', /scale/);
    const f = ops.infoNCE(a, b, { scale: 1 });
    expectCode(() => ops.infoNCEBackward(a, b, { scale: 1, lseRows: f.lseRows, gradLoss: NaN }), 'INVALID_ARGUMENT', /gradLoss/);
    expectCode(() => ops.infoNCEBackward(a, b, { scale: 1, lseRows: f.lseRows, gradLoss: s2 }), 'SHAPE_MISMATCH', /gradLoss/);
    dispose(s16, s2, f.loss, f.lseRows);
  });

  test('backward lse arguments', () => {
    const f = ops.infoNCE(a, b, { scale: 1 });
    const fs = ops.infoNCE(sq, sq, { scale: 1, symmetric: true });
    expectCode(() => ops.infoNCEBackward(a, b, { scale: 1, lseRows: undefined as unknown as Tensor }), 'INVALID_ARGUMENT', /lseRows/);
    const wrong = zeros([5]);
    expectCode(() => ops.infoNCEBackward(a, b, { scale: 1, lseRows: wrong }), 'SHAPE_MISMATCH', /lseRows/);
    const wrong16 = zeros([3], { dtype: 'float16' });
    expectCode(() => ops.infoNCEBackward(a, b, { scale: 1, lseRows: wrong16 }), 'DTYPE_MISMATCH', /lseRows/);
    expectCode(() => ops.infoNCEBackward(sq, sq, { scale: 1, symmetric: true, lseRows: fs.lseRows }), 'INVALID_ARGUMENT', /lseCols/);
    expectCode(() => ops.infoNCEBackward(sq, sq, { scale: 1, symmetric: true, lseRows: fs.lseRows, lseCols: wrong }), 'SHAPE_MISMATCH', /lseCols/);
    expectCode(() => ops.infoNCEBackward(a, b, { scale: 1, lseRows: f.lseRows, lseCols: f.lseRows }), 'INVALID_ARGUMENT', /lseCols/);
    dispose(wrong, wrong16, f.loss, f.lseRows, fs.loss, fs.lseRows, fs.lseCols);
  });

  test('the native layer re-checks what memory safety depends on', () => {
    interface Raw {
      infonceForward(...args: unknown[]): void;
      infonceBackward(...args: unknown[]): void;
    }
    const raw = nativeOps<Raw>();
    const loss = zeros([]), lr = zeros([3]), short = zeros([2]), da = zeros([3, 4]), db = zeros([5, 4]);
    expectCode(() => raw.infonceForward(a.nat(), b.nat(), 1, null, false, loss.nat(), short.nat(), null), 'SHAPE_MISMATCH', /lse_rows/);
    expectCode(() => raw.infonceForward(b.nat(), a.nat(), 1, null, false, loss.nat(), lr.nat(), null), 'SHAPE_MISMATCH', /at least/);
    expectCode(() => raw.infonceForward(a.nat(), b.nat(), NaN, null, false, loss.nat(), lr.nat(), null), 'INVALID_ARGUMENT', /scale/);
    expectCode(() => raw.infonceForward(a.nat(), b.nat(), 1, null, true, loss.nat(), lr.nat(), null), 'SHAPE_MISMATCH', /symmetric/);
    expectCode(() => raw.infonceBackward(a.nat(), b.nat(), 1, null, false, lr.nat(), null, 1, null, db.nat(), db.nat(), loss.nat()),
      'SHAPE_MISMATCH', /da/);
    expectCode(() => raw.infonceBackward(a.nat(), b.nat(), 1, null, false, short.nat(), null, 1, null, da.nat(), db.nat(), loss.nat()),
      'SHAPE_MISMATCH', /lse_rows/);
    expectCode(() => raw.infonceBackward(a.nat(), b.nat(), 1, null, false, lr.nat(), null, 1, null, da.nat(), db.nat(), lr.nat()),
      'SHAPE_MISMATCH', /dscale/);
    dispose(loss, lr, short, da, db);
  });
});

// Where a GPU is present (skipped otherwise): the CUDA kernels against the CPU kernels on
// the same inputs (native/tests/test_cuda_infonce.cc covers sizes, paths and tolerances in
// depth). float32: the same float32 math in another order (no TF32), 1e-5 for lse / loss
// and 1e-4 for the gradients; 16-bit storage: lse / loss are float32 outputs of exact
// products (1e-5), da / db are rounded to the dtype on both sides and the GPU also rounds
// its dL tile to the dtype for the tensor cores: 2^-7 (two bfloat16 unit roundoffs) and
// 2^-9 (four float16 ones).
describeGpu('infoNCE on CUDA tensors', () => {
  interface GpuCase {
    N: number;
    M: number;
    d: number;
    dtype: DType;
    symmetric?: boolean;
    scale: number;
    scaleTensor?: boolean;
    gradLoss?: number;
    gradLossTensor?: boolean;
    amp?: number;
  }
  function vsCpu(c: GpuCase): void {
    const sym = !!c.symmetric, g = c.gradLoss ?? 1;
    const seed = caseSeed(JSON.stringify(c));
    const ah = inputs(c.N * c.d, seed * 7 + 1, c.dtype, c.amp), bh = inputs(c.M * c.d, seed * 7 + 2, c.dtype, c.amp);
    const gradTol = c.dtype === 'bfloat16' ? 2 ** -7 : c.dtype === 'float16' ? 2 ** -9 : 1e-4;
    const outs: Record<string, { loss: number; lseRows: ArrayLike<number>; lseCols: ArrayLike<number> | null;
      da: ArrayLike<number>; db: ArrayLike<number>; dScale: number; dev: string; lossDevice: string }> = {};
    for (const device of ['cpu', 'cuda']) {
      const a = tensor(ah, [c.N, c.d], { dtype: c.dtype }).to(device), b = tensor(bh, [c.M, c.d], { dtype: c.dtype }).to(device);
      const scaleT = c.scaleTensor ? tensor([c.scale], [1]).to(device) : null;
      const gT = c.gradLossTensor ? tensor([g], []).to(device) : null;
      const f = ops.infoNCE(a, b, { scale: scaleT ?? c.scale, symmetric: sym });
      const gr = ops.infoNCEBackward(a, b, { scale: scaleT ?? c.scale, symmetric: sym, lseRows: f.lseRows, lseCols: f.lseCols,
        gradLoss: gT ?? g });
      outs[device] = { loss: f.loss.item(), lseRows: f.lseRows.toArray(), lseCols: f.lseCols ? f.lseCols.toArray() : null,
        da: gr.da.toArray(), db: gr.db.toArray(), dScale: gr.dScale.item(), dev: gr.da.device, lossDevice: f.loss.device };
      dispose(a, b, scaleT, gT, f.loss, f.lseRows, f.lseCols, gr.da, gr.db, gr.dScale);
    }
    const cpu = outs.cpu, gpu = outs.cuda, what = `cuda ${JSON.stringify(c)}`;
    expect(gpu.dev).toMatch(/^cuda/);
    expect(gpu.lossDevice).toMatch(/^cuda/);
    expectClose([gpu.loss], [cpu.loss], 1e-5, `${what}: loss`);
    expectClose(gpu.lseRows, cpu.lseRows, 1e-5, `${what}: lseRows`);
    if (sym) expectClose(gpu.lseCols!, cpu.lseCols!, 1e-5, `${what}: lseCols`);
    expect(relErr(gpu.da, cpu.da)).toBeLessThanOrEqual(gradTol);
    expect(relErr(gpu.db, cpu.db)).toBeLessThanOrEqual(gradTol);
    expectClose([gpu.dScale], [cpu.dScale], 1e-4, `${what}: dScale`);
  }

  test('float32: N != M, odd d; symmetric with a scale tensor on the device', () => {
    vsCpu({ N: 37, M: 97, d: 65, dtype: 'float32', scale: 7 });
    vsCpu({ N: 150, M: 150, d: 300, dtype: 'float32', symmetric: true, scale: 2.5, scaleTensor: true, gradLoss: 1.7 });
  });

  test('bfloat16 / float16: several tiles, gradLoss tensor, scale 100', () => {
    vsCpu({ N: 300, M: 700, d: 136, dtype: 'bfloat16', scale: 20, gradLoss: -0.6, gradLossTensor: true, amp: 0.3 });
    vsCpu({ N: 260, M: 260, d: 64, dtype: 'float16', symmetric: true, scale: 100, scaleTensor: true, amp: 0.1 });
  });

  test('mixing devices is DEVICE_MISMATCH', () => {
    const a = tensor(hostRandom(12, 1), [3, 4]).to('cuda'), b = tensor(hostRandom(12, 2), [3, 4]);
    expectCode(() => ops.infoNCE(a, b, { scale: 1 }), 'DEVICE_MISMATCH');
    const s = tensor([1], [1]);
    const b2 = b.to('cuda');
    expectCode(() => ops.infoNCE(a, b2, { scale: s }), 'DEVICE_MISMATCH', /scale/);
    dispose(a, b, s, b2);
  });
});
