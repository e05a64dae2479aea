// ops.loraLinear / loraLinearBackward / mergeLora / unmergeLora against a float64
// reference written here (and that reference's gradients against finite differences),
// with the dropout mask recomputed by an independent Philox4x32-10 in TypeScript.
// Odd sizes, bias on/off, dropout on/off, leading dims, mixed dtypes, 16-bit storage,
// empty sizes, every CPU level, poisoned outputs, argument errors.
import { ops, tensor, Tensor, DType, getCpuIsa, setCpuIsa, CpuIsa, zeros, ones } from '../src';
import { setPoisonOutputs } from '../src/tensor';
import { describeGpu, expectClose, expectCode, finiteDiff, hasGpu, hostRandom, relErr } from './helpers';

// ---- the dropout rule of native/core/dropout.h, independently ----

const M32 = (1n << 32n) - 1n;
/** Philox4x32-10 words of counter ctr under seed. */
function philox(ctr: bigint, seed: bigint): number[] {
  let c0 = ctr & M32, c1 = (ctr >> 32n) & M32, c2 = 0n, c3 = 0n;
  let k0 = seed & M32, k1 = (seed >> 32n) & M32;
  for (let r = 0; r < 10; r++) {
    const p0 = 0xd2511f53n * c0, p1 = 0xcd9e8d57n * c2;
    const hi0 = p0 >> 32n, lo0 = p0 & M32, hi1 = p1 >> 32n, lo1 = p1 & M32;
    [c0, c1, c2, c3] = [hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0];
    k0 = (k0 + 0x9e3779b9n) & M32;
    k1 = (k1 + 0xbb67ae85n) & M32;
  }
  return [Number(c0), Number(c1), Number(c2), Number(c3)];
}
/** Multipliers of drop(): keep ? 1/(1-p) (float32 arithmetic) : 0, for n elements. */
function dropMask(n: number, p: number, seed: number | bigint): Float64Array {
  const m = new Float64Array(n);
  const pf = Math.fround(p);
  const t = pf * 4294967296;
  const thr = t >= 4294967295 ? 4294967295 : Math.floor(t);
  const inv = Math.fround(1 / Math.fround(1 - pf));
  const s = BigInt(seed);
  for (let c = 0; c * 4 < n; c++) {
    const w = philox(BigInt(c), s);
    for (let j = 0; j < 4 && c * 4 + j < n; j++) m[c * 4 + j] = w[j] >= thr ? inv : 0;
  }
  return m;
}

// ---- float64 reference ----

interface Dims {
  N: number;
  inD: number;
  out: number;
  r: number;
}
interface Data {
  x: Float32Array;
  W: Float32Array;
  A: Float32Array;
  B: Float32Array;
  bias: Float32Array | null;
  dy: Float32Array;
}

function refForward(d: Dims, v: { x: ArrayLike<number>; W: ArrayLike<number>; A: ArrayLike<number>; B: ArrayLike<number>; bias: ArrayLike<number> | null },
  scale: number, mask: Float64Array | null): { y: Float64Array; t: Float64Array } {
  const { N, inD, out, r } = d;
  const t = new Float64Array(N * r), y = new Float64Array(N * out);
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < r; j++) {
      let s = 0;
      for (let k = 0; k < inD; k++) s += v.x[n * inD + k] * (mask ? mask[n * inD + k] : 1) * v.A[j * inD + k];
      t[n * r + j] = s;
    }
    for (let o = 0; o < out; o++) {
      let s = v.bias ? v.bias[o] : 0;
      for (let k = 0; k < inD; k++) s += v.x[n * inD + k] * v.W[o * inD + k];
      let l = 0;
      for (let j = 0; j < r; j++) l += t[n * r + j] * v.B[o * r + j];
      y[n * out + o] = s + scale * l;
    }
  }
  return { y, t };
}

function refBackward(d: Dims, v: { x: ArrayLike<number>; W: ArrayLike<number>; A: ArrayLike<number>; B: ArrayLike<number>; dy: ArrayLike<number> },
  scale: number, mask: Float64Array | null): { dx: Float64Array; dA: Float64Array; dB: Float64Array } {
  const { N, inD, out, r } = d;
  const { t } = refForward(d, { ...v, bias: null }, scale, mask);
  const g = new Float64Array(N * r);
  for (let n = 0; n < N; n++)
    for (let j = 0; j < r; j++) {
      let s = 0;
      for (let o = 0; o < out; o++) s += v.dy[n * out + o] * v.B[o * r + j];
      g[n * r + j] = scale * s;
    }
  const dB = new Float64Array(out * r), dA = new Float64Array(r * inD), dx = new Float64Array(N * inD);
  for (let o = 0; o < out; o++)
    for (let j = 0; j < r; j++) {
      let s = 0;
      for (let n = 0; n < N; n++) s += v.dy[n * out + o] * t[n * r + j];
      dB[o * r + j] = scale * s;
    }
  for (let j = 0; j < r; j++)
    for (let k = 0; k < inD; k++) {
      let s = 0;
      for (let n = 0; n < N; n++) s += g[n * r + j] * v.x[n * inD + k] * (mask ? mask[n * inD + k] : 1);
      dA[j * inD + k] = s;
    }
  for (let n = 0; n < N; n++)
    for (let k = 0; k < inD; k++) {
      let s = 0;
      for (let o = 0; o < out; o++) s += v.dy[n * out + o] * v.W[o * inD + k];
      let l = 0;
      for (let j = 0; j < r; j++) l += g[n * r + j] * v.A[j * inD + k];
      dx[n * inD + k] = s + (mask ? mask[n * inD + k] : 1) * l;
    }
  return { dx, dA, dB };
}

// ---- helpers ----

let seedCounter = 1000;
function roundTo(values: Float32Array, dtype: DType): Float32Array {
  if (dtype === 'float32') return values;
  const t = tensor(values, [values.length]);
  const c = t.cast(dtype);
  const out = c.toArray() as Float32Array;
  t.dispose();
  c.dispose();
  return out;
}
/** Fresh random inputs (rounded to their storage dtypes, so the reference sees the same values). */
function makeData(d: Dims, bias: boolean, dt: DType = 'float32', adt: DType = dt): Data {
  const s = seedCounter++ * 7;
  return {
    x: roundTo(hostRandom(d.N * d.inD, s + 1), dt),
    W: roundTo(hostRandom(d.out * d.inD, s + 2).map((v) => v * 0.5), dt),
    A: roundTo(hostRandom(d.r * d.inD, s + 3), adt),
    B: roundTo(hostRandom(d.out * d.r, s + 4), adt),
    bias: bias ? roundTo(hostRandom(d.out, s + 5), dt) : null,
    dy: roundTo(hostRandom(d.N * d.out, s + 6), dt),
  };
}
interface Tensors {
  x: Tensor;
  W: Tensor;
  A: Tensor;
  B: Tensor;
  bias: Tensor | null;
  dy: Tensor;
  dispose(): void;
}
function toTensors(d: Dims, v: Data, dt: DType = 'float32', adt: DType = dt, lead?: number[]): Tensors {
  const xs = lead ? [...lead, d.inD] : [d.N, d.inD];
  const ys = lead ? [...lead, d.out] : [d.N, d.out];
  const ts = {
    x: tensor(v.x, xs, { dtype: dt }),
    W: tensor(v.W, [d.out, d.inD], { dtype: dt }),
    A: tensor(v.A, [d.r, d.inD], { dtype: adt }),
    B: tensor(v.B, [d.out, d.r], { dtype: adt }),
    bias: v.bias ? tensor(v.bias, [d.out], { dtype: dt }) : null,
    dy: tensor(v.dy, ys, { dtype: dt }),
    dispose() {
      for (const t of [ts.x, ts.W, ts.A, ts.B, ts.bias, ts.dy]) t?.dispose();
    },
  };
  return ts;
}

interface CaseOpts {
  bias?: boolean;
  p?: number;
  seed?: number | bigint;
  scale?: number;
  dt?: DType;
  adt?: DType;
  tolY?: number;
  tolDx?: number;
  tolAB?: number;
  /** Where the op runs ('cpu' by default; 'cuda' copies the inputs there first). */
  device?: 'cpu' | 'cuda';
}

/** Runs forward + backward on fresh data and compares y, dx, dA, dB to the float64 reference. */
function check(d: Dims, o: CaseOpts = {}): void {
  const dt = o.dt ?? 'float32', adt = o.adt ?? dt;
  const scale = o.scale ?? 2 / Math.max(d.r, 1);
  const p = o.p ?? 0, seed = o.seed ?? 7;
  const v = makeData(d, !!o.bias, dt, adt);
  const ts = toTensors(d, v, dt, adt);
  if (o.device === 'cuda') {
    for (const k of ['x', 'W', 'A', 'B', 'bias', 'dy'] as const) {
      const t = ts[k];
      if (t) {
        ts[k] = t.to('cuda');
        t.dispose();
      }
    }
  }
  const mask = p > 0 ? dropMask(d.N * d.inD, p, seed) : null;
  const dropout = p > 0 ? { p, seed } : undefined;
  const y = ops.loraLinear(ts.x, ts.W, ts.A, ts.B, { scale, bias: ts.bias, dropout });
  expect(y.shape).toEqual([d.N, d.out]);
  expect(y.dtype).toBe(dt);
  const { y: yRef } = refForward(d, v, scale, mask);
  const what = `${JSON.stringify(d)} ${JSON.stringify({ ...o, seed: String(seed) })}`;
  expectClose(y.toArray(), yRef, o.tolY ?? 1e-5, `y ${what}`);
  const g = ops.loraLinearBackward(ts.dy, ts.x, ts.W, ts.A, ts.B, { scale, dropout, needInputGrad: true });
  const ref = refBackward(d, v, scale, mask);
  expect(g.dx!.shape).toEqual([d.N, d.inD]);
  expect(g.dx!.dtype).toBe(dt);
  expect(g.dA.shape).toEqual([d.r, d.inD]);
  expect(g.dB.shape).toEqual([d.out, d.r]);
  expect(g.dA.dtype).toBe(adt);
  expect(g.dB.dtype).toBe(adt);
  expectClose(g.dx!.toArray(), ref.dx, o.tolDx ?? 1e-5, `dx ${what}`);
  expectClose(g.dA.toArray(), ref.dA, o.tolAB ?? 1e-5, `dA ${what}`);
  expectClose(g.dB.toArray(), ref.dB, o.tolAB ?? 1e-5, `dB ${what}`);
  for (const t of [y, g.dx!, g.dA, g.dB]) t.dispose();
  ts.dispose();
}

let poisonWas = false;
beforeAll(() => {
  poisonWas = setPoisonOutputs(true);
});
afterAll(() => {
  setPoisonOutputs(poisonWas);
});

// ---- tests ----

describe('float64 reference vs finite differences', () => {
  test('dx, dA, dB of L = Σ dy ∘ y (with dropout and bias)', () => {
    const d: Dims = { N: 3, inD: 5, out: 4, r: 2 };
    const v = makeData(d, true);
    const scale = 1.5;
    const mask = dropMask(d.N * d.inD, 0.3, 11);
    const loss = (x: ArrayLike<number>, A: ArrayLike<number>, B: ArrayLike<number>) => {
      const { y } = refForward(d, { ...v, x, A, B }, scale, mask);
      let s = 0;
      for (let i = 0; i < y.length; i++) s += y[i] * v.dy[i];
      return s;
    };
    const ref = refBackward(d, v, scale, mask);
    const x64 = Float64Array.from(v.x), A64 = Float64Array.from(v.A), B64 = Float64Array.from(v.B);
    expectClose(ref.dx, finiteDiff((x) => loss(x, A64, B64), x64), 1e-7, 'dx');
    expectClose(ref.dA, finiteDiff((A) => loss(x64, A, B64), A64), 1e-7, 'dA');
    expectClose(ref.dB, finiteDiff((B) => loss(x64, A64, B), B64), 1e-7, 'dB');
    // The mask really drops something here, so the test covers it.
    expect(Array.from(mask).some((m) => m === 0)).toBe(true);
  });
});

// Sizes: N (rows), in, out, r. Odd everything; some past the K block (kc 512 on AVX-512,
// 256 otherwise), the B block (nc 256 / 192) and the pool threshold (threads).
const SIZES: Dims[] = [
  { N: 1, inD: 5, out: 3, r: 1 },
  { N: 37, inD: 33, out: 29, r: 8 },
  { N: 97, inD: 67, out: 45, r: 16 },
  { N: 37, inD: 1, out: 7, r: 1 },
  { N: 1, inD: 77, out: 1, r: 16 },
  { N: 29, inD: 601, out: 301, r: 8 },
  { N: 300, inD: 203, out: 157, r: 16 },
  { N: 5, inD: 40, out: 50, r: 40 },
];

describe('loraLinear / loraLinearBackward vs float64 reference (float32)', () => {
  const levels: CpuIsa[] = ['generic', 'avx2', 'avx512'];
  const best = getCpuIsa();
  const isas = levels.slice(0, levels.indexOf(best) + 1);
  afterAll(() => setCpuIsa(best));
  for (const isa of isas) {
    describe(isa, () => {
      beforeAll(() => setCpuIsa(isa));
      for (const d of SIZES)
        test(`N=${d.N} in=${d.inD} out=${d.out} r=${d.r}`, () => {
          check(d, { bias: true });
          check(d, { bias: false, p: 0.25, seed: d.N * 131 + d.inD });
        });
      test('rows past the A block (mc) on one thread, dropout, bias', () => {
        check({ N: 2101, inD: 9, out: 17, r: 3 }, { bias: true, p: 0.5, seed: 3 });
      });
    });
  }
});

describe('dropout', () => {
  // With W = 0, A = B = I (r = in = out) and x = 1: y = scale·drop(1) exposes the mask.
  function maskOf(N: number, n: number, p: number, seed: number | bigint): { fwd: Float32Array; bwd: Float32Array } {
    const eye = new Float32Array(n * n);
    for (let i = 0; i < n; i++) eye[i * n + i] = 1;
    const x = ones([N, n]), W = zeros([n, n]), I = tensor(eye, [n, n]);
    const y = ops.loraLinear(x, W, I, I, { scale: 1, dropout: { p, seed } });
    // Backward with dy = 1: dx = drop'(g·A) with g = 1.
    const g = ops.loraLinearBackward(x, x, W, I, I, { scale: 1, dropout: { p, seed } });
    const out = { fwd: y.toArray() as Float32Array, bwd: g.dx!.toArray() as Float32Array };
    for (const t of [x, W, I, y, g.dx!, g.dA, g.dB]) t.dispose();
    return out;
  }

  test('the mask is dropout.h\'s rule, and the backward regenerates it', () => {
    for (const [N, n, p, seed] of [[45, 67, 0.3, 5], [8, 33, 0.9, 2n ** 63n + 12345n], [3, 1, 0.5, 0]] as [number, number, number, number | bigint][]) {
      const { fwd, bwd } = maskOf(N, n, p, seed);
      const want = dropMask(N * n, p, seed);
      expect(relErr(fwd, want)).toBe(0);
      expect(relErr(bwd, want)).toBe(0);
    }
  });

  test('kept fraction is about 1 - p', () => {
    for (const p of [0.1, 0.5]) {
      const { fwd } = maskOf(256, 64, p, 99);
      const kept = fwd.reduce((s, v) => s + (v !== 0 ? 1 : 0), 0) / fwd.length;
      const sigma = Math.sqrt((p * (1 - p)) / fwd.length);
      expect(Math.abs(kept - (1 - p))).toBeLessThan(5 * sigma);
    }
  });

  test('p = 0 is exactly no dropout; different seeds give different masks', () => {
    const d: Dims = { N: 13, inD: 21, out: 11, r: 4 };
    const v = makeData(d, true);
    const ts = toTensors(d, v);
    const a = ops.loraLinear(ts.x, ts.W, ts.A, ts.B, { scale: 0.5, bias: ts.bias });
    const b = ops.loraLinear(ts.x, ts.W, ts.A, ts.B, { scale: 0.5, bias: ts.bias, dropout: { p: 0, seed: 5 } });
    expect(Array.from(b.toArray())).toEqual(Array.from(a.toArray()));
    const ga = ops.loraLinearBackward(ts.dy, ts.x, ts.W, ts.A, ts.B, { scale: 0.5 });
    const gb = ops.loraLinearBackward(ts.dy, ts.x, ts.W, ts.A, ts.B, { scale: 0.5, dropout: { p: 0 } });
    for (const k of ['dx', 'dA', 'dB'] as const) expect(Array.from(gb[k]!.toArray())).toEqual(Array.from(ga[k]!.toArray()));
    const c1 = maskOf(4, 16, 0.5, 1).fwd, c2 = maskOf(4, 16, 0.5, 2).fwd;
    expect(relErr(c1, c2)).toBeGreaterThan(0.1);
    for (const t of [a, b, ga.dx!, ga.dA, ga.dB, gb.dx!, gb.dA, gb.dB]) t.dispose();
    ts.dispose();
  });

  // Both draw from core/dropout.h (mask and 1/(1-p) factor), so with W = 0 and identity
  // adapters (every product and sum exact in float32) the outputs agree bit for bit.
  test('drop(x) equals ops.dropout(x, {p, seed}) exactly', () => {
    const n = 37, N = 9;
    const eye = new Float32Array(n * n);
    for (let i = 0; i < n; i++) eye[i * n + i] = 1;
    const x = tensor(hostRandom(N * n, 4242), [N, n]), W = zeros([n, n]), I = tensor(eye, [n, n]);
    const y = ops.loraLinear(x, W, I, I, { scale: 1, dropout: { p: 0.3, seed: 17 } });
    const z = ops.dropout(x, { p: 0.3, seed: 17 });
    expect(Array.from(y.toArray())).toEqual(Array.from(z.toArray()));
    for (const t of [x, W, I, y, z]) t.dispose();
  });
});

describe('shapes', () => {
  test('leading dims [2,3,in] and a 1-D x give the rows of the 2-D call', () => {
    const d: Dims = { N: 6, inD: 19, out: 13, r: 5 };
    const v = makeData(d, true);
    const flat = toTensors(d, v), lead = toTensors(d, v, 'float32', 'float32', [2, 3]);
    const o = { scale: 0.7, dropout: { p: 0.2, seed: 8 } };
    const a = ops.loraLinear(flat.x, flat.W, flat.A, flat.B, { ...o, bias: flat.bias });
    const b = ops.loraLinear(lead.x, lead.W, lead.A, lead.B, { ...o, bias: lead.bias });
    expect(b.shape).toEqual([2, 3, 13]);
    expect(Array.from(b.toArray())).toEqual(Array.from(a.toArray()));
    const ga = ops.loraLinearBackward(flat.dy, flat.x, flat.W, flat.A, flat.B, o);
    const gb = ops.loraLinearBackward(lead.dy, lead.x, lead.W, lead.A, lead.B, o);
    expect(gb.dx!.shape).toEqual([2, 3, 19]);
    expect(Array.from(gb.dx!.toArray())).toEqual(Array.from(ga.dx!.toArray()));
    expect(Array.from(gb.dA.toArray())).toEqual(Array.from(ga.dA.toArray()));
    // One row as a 1-D x.
    const x1 = tensor(v.x.subarray(0, d.inD), [d.inD]);
    const y1 = ops.loraLinear(x1, flat.W, flat.A, flat.B, { scale: 0.7, bias: flat.bias });
    const yr = refForward({ ...d, N: 1 }, { ...v, x: v.x.subarray(0, d.inD) }, 0.7, null).y;
    expect(y1.shape).toEqual([13]);
    expectClose(y1.toArray(), yr, 1e-5, '1-D x');
    for (const t of [a, b, ga.dx!, ga.dA, ga.dB, gb.dx!, gb.dA, gb.dB, x1, y1]) t.dispose();
    flat.dispose();
    lead.dispose();
  });

  test('needInputGrad = false: dx is null, dA and dB unchanged', () => {
    const d: Dims = { N: 23, inD: 31, out: 17, r: 6 };
    const v = makeData(d, false);
    const ts = toTensors(d, v);
    for (const dropout of [undefined, { p: 0.4, seed: 3 }]) {
      const a = ops.loraLinearBackward(ts.dy, ts.x, ts.W, ts.A, ts.B, { scale: 3, dropout });
      const b = ops.loraLinearBackward(ts.dy, ts.x, ts.W, ts.A, ts.B, { scale: 3, dropout, needInputGrad: false });
      expect(b.dx).toBeNull();
      expect(Array.from(b.dA.toArray())).toEqual(Array.from(a.dA.toArray()));
      expect(Array.from(b.dB.toArray())).toEqual(Array.from(a.dB.toArray()));
      for (const t of [a.dx!, a.dA, a.dB, b.dA, b.dB]) t.dispose();
    }
    ts.dispose();
  });

  test('empty sizes: N = 0, in = 0, out = 0, r = 0', () => {
    // N = 0: y empty, dA = dB = 0 (poisoned outputs must be written).
    {
      const g = ops.loraLinearBackward(zeros([0, 4]), zeros([0, 3]), ones([4, 3]), ones([2, 3]), ones([4, 2]), { scale: 1 });
      expect(ops.loraLinear(zeros([0, 3]), ones([4, 3]), ones([2, 3]), ones([4, 2]), { scale: 1 }).shape).toEqual([0, 4]);
      expect(Array.from(g.dA.toArray())).toEqual(new Array(6).fill(0));
      expect(Array.from(g.dB.toArray())).toEqual(new Array(8).fill(0));
      expect(g.dx!.shape).toEqual([0, 3]);
    }
    // in = 0: y = bias; dB = 0, dA and dx empty.
    {
      const bias = tensor([1, 2, 3]);
      const y = ops.loraLinear(zeros([2, 0]), zeros([3, 0]), zeros([2, 0]), ones([3, 2]), { scale: 1, bias });
      expect(Array.from(y.toArray())).toEqual([1, 2, 3, 1, 2, 3]);
      const g = ops.loraLinearBackward(ones([2, 3]), zeros([2, 0]), zeros([3, 0]), zeros([2, 0]), ones([3, 2]), { scale: 1 });
      expect(Array.from(g.dB.toArray())).toEqual(new Array(6).fill(0));
      expect(g.dA.shape).toEqual([2, 0]);
    }
    // out = 0: y empty; dx = 0, dA = 0.
    {
      const g = ops.loraLinearBackward(zeros([2, 0]), ones([2, 3]), zeros([0, 3]), ones([2, 3]), zeros([0, 2]), { scale: 1 });
      expect(Array.from(g.dx!.toArray())).toEqual(new Array(6).fill(0));
      expect(Array.from(g.dA.toArray())).toEqual(new Array(6).fill(0));
      expect(g.dB.shape).toEqual([0, 2]);
    }
    // r = 0: the base layer alone.
    {
      const d: Dims = { N: 7, inD: 9, out: 5, r: 0 };
      const v = makeData(d, true);
      const ts = toTensors(d, v);
      const y = ops.loraLinear(ts.x, ts.W, ts.A, ts.B, { scale: 1, bias: ts.bias, dropout: { p: 0.5, seed: 1 } });
      expectClose(y.toArray(), refForward(d, v, 1, null).y, 1e-5, 'r = 0 y');
      const g = ops.loraLinearBackward(ts.dy, ts.x, ts.W, ts.A, ts.B, { scale: 1 });
      expectClose(g.dx!.toArray(), refBackward(d, v, 1, null).dx, 1e-5, 'r = 0 dx');
      expect(g.dA.shape).toEqual([0, 9]);
      expect(g.dB.shape).toEqual([5, 0]);
      ts.dispose();
    }
  });

  test('NaN in x propagates to y', () => {
    const x = tensor([NaN, 1, 2, 3], [2, 2]);
    const y = ops.loraLinear(x, ones([3, 2]), ones([1, 2]), ones([3, 1]), { scale: 1 }).toArray();
    expect(y[0]).toBeNaN();
    expect(y[3]).toBe(5 + 5);
  });
});

describe('16-bit storage and mixed dtypes', () => {
  // Inputs are rounded to their dtype before the reference sees them, so the only extra
  // error is the single rounding of each output to 16 bits: relative 2^-9 (bfloat16) or
  // 2^-11 (float16) per element, well below 1e-2 / 2e-3 in the 2-norm; float32 outputs
  // (adapter gradients over a 16-bit base) keep the float32 bound.
  const TOL: Record<string, number> = { bfloat16: 1e-2, float16: 2e-3, float32: 1e-5 };
  for (const d of [{ N: 37, inD: 67, out: 45, r: 8 }, { N: 29, inD: 601, out: 301, r: 16 }] as Dims[]) {
    for (const [dt, adt] of [['bfloat16', 'float32'], ['bfloat16', 'bfloat16'], ['float16', 'float16'], ['float16', 'float32'], ['float32', 'bfloat16']] as [DType, DType][])
      test(`${dt} base, ${adt} adapters, N=${d.N} in=${d.inD} out=${d.out} r=${d.r}`, () => {
        check(d, { dt, adt, bias: true, tolY: TOL[dt], tolDx: TOL[dt], tolAB: TOL[adt] });
        check(d, { dt, adt, p: 0.3, seed: 77, tolY: TOL[dt], tolDx: TOL[dt], tolAB: TOL[adt] });
      });
  }
  test('16-bit outputs wider than one column chunk (2048): out = 2100 forward, in = 2100 backward', () => {
    check({ N: 3, inD: 5, out: 2100, r: 3 }, { dt: 'bfloat16', adt: 'float32', bias: true, p: 0.3, tolY: 1e-2, tolDx: 1e-2, tolAB: 1e-5 });
    check({ N: 3, inD: 2100, out: 5, r: 3 }, { dt: 'float16', adt: 'float32', p: 0.3, tolY: 2e-3, tolDx: 2e-3, tolAB: 1e-5 });
  });
  test('generic level, bfloat16 base with float32 adapters', () => {
    const best = getCpuIsa();
    setCpuIsa('generic');
    try {
      check({ N: 37, inD: 67, out: 45, r: 8 }, { dt: 'bfloat16', adt: 'float32', bias: true, p: 0.2, tolY: 1e-2, tolDx: 1e-2, tolAB: 1e-5 });
    } finally {
      setCpuIsa(best);
    }
  });
});

describe('mergeLora / unmergeLora', () => {
  function refMerged(W: Float32Array, A: Float32Array, B: Float32Array, out: number, inD: number, r: number, s: number): Float64Array {
    const w = new Float64Array(out * inD);
    for (let o = 0; o < out; o++)
      for (let k = 0; k < inD; k++) {
        let acc = 0;
        for (let j = 0; j < r; j++) acc += B[o * r + j] * A[j * inD + k];
        w[o * inD + k] = W[o * inD + k] + s * acc;
      }
    return w;
  }

  test('float32: merge, unmerge vs reference; merged weight with zero adapters gives the LoRA output', () => {
    for (const d of [{ N: 19, inD: 67, out: 45, r: 8 }, { N: 5, inD: 300, out: 257, r: 16 }] as Dims[]) {
      const v = makeData(d, true);
      const ts = toTensors(d, v);
      const scale = 16 / d.r;
      const yLora = ops.loraLinear(ts.x, ts.W, ts.A, ts.B, { scale, bias: ts.bias });
      const w = ops.mergeLora(ts.W, ts.A, ts.B, { scale });
      expect(w).toBe(ts.W);
      expectClose(ts.W.toArray(), refMerged(v.W, v.A, v.B, d.out, d.inD, d.r, scale), 1e-6, 'merged');
      const zA = zeros([d.r, d.inD]), zB = zeros([d.out, d.r]);
      const yMerged = ops.loraLinear(ts.x, ts.W, zA, zB, { scale, bias: ts.bias });
      expectClose(yMerged.toArray(), yLora.toArray(), 1e-5, 'merged forward');
      ops.unmergeLora(ts.W, ts.A, ts.B, { scale });
      expectClose(ts.W.toArray(), v.W, 1e-6, 'unmerged');
      for (const t of [yLora, yMerged, zA, zB]) t.dispose();
      ts.dispose();
    }
  });

  test('bfloat16 / float16 weights: one rounding per element; float32 adapters', () => {
    const d: Dims = { N: 1, inD: 97, out: 33, r: 4 };
    for (const dt of ['bfloat16', 'float16'] as DType[]) {
      const v = makeData(d, false, dt, 'float32');
      const ts = toTensors(d, v, dt, 'float32');
      ops.mergeLora(ts.W, ts.A, ts.B, { scale: 0.75 });
      const want = refMerged(v.W, v.A, v.B, d.out, d.inD, d.r, 0.75);
      const wantRounded = roundTo(Float32Array.from(want), dt);
      const got = ts.W.toArray();
      // float32 accumulation of Δ may differ from the float64 one by a few float32 ulps,
      // which can move a value across a 16-bit rounding boundary only when it is within
      // that distance of a midpoint: allow a handful of 1-ulp differences, nothing more.
      let off = 0;
      const ulp = dt === 'bfloat16' ? 2 ** -7 : 2 ** -10;
      for (let i = 0; i < got.length; i++) {
        if (got[i] === wantRounded[i]) continue;
        off++;
        expect(Math.abs(got[i] - wantRounded[i])).toBeLessThanOrEqual(ulp * Math.abs(want[i]) * 1.01);
      }
      expect(off).toBeLessThanOrEqual(3);
      // unmerge restores the weight up to that rounding: not bit-exact in general.
      ops.unmergeLora(ts.W, ts.A, ts.B, { scale: 0.75 });
      expectClose(ts.W.toArray(), v.W, dt === 'bfloat16' ? 1e-2 : 2e-3, `${dt} unmerged`);
      ts.dispose();
    }
  });

  test('merge on the generic level matches the best level within float32 rounding', () => {
    const d: Dims = { N: 1, inD: 130, out: 70, r: 16 };
    const v = makeData(d, false);
    const best = getCpuIsa();
    const a = tensor(v.W, [d.out, d.inD]), b = tensor(v.W, [d.out, d.inD]);
    const A = tensor(v.A, [d.r, d.inD]), B = tensor(v.B, [d.out, d.r]);
    ops.mergeLora(a, A, B, { scale: 2 });
    setCpuIsa('generic');
    try {
      ops.mergeLora(b, A, B, { scale: 2 });
    } finally {
      setCpuIsa(best);
    }
    expectClose(b.toArray(), a.toArray(), 1e-6, 'generic merge');
    for (const t of [a, b, A, B]) t.dispose();
  });
});

describe('argument errors', () => {
  const x = zeros([4, 3]), W = zeros([5, 3]), A = zeros([2, 3]), B = zeros([5, 2]), dy = zeros([4, 5]);
  const f = ops.loraLinear, bw = ops.loraLinearBackward;
  test('scale is required and finite', () => {
    expectCode(() => f(x, W, A, B, undefined as unknown as { scale: number }), 'INVALID_ARGUMENT', /scale/);
    expectCode(() => f(x, W, A, B, {} as { scale: number }), 'INVALID_ARGUMENT', /scale/);
    expectCode(() => f(x, W, A, B, { scale: NaN }), 'INVALID_ARGUMENT', /scale/);
    expectCode(() => bw(dy, x, W, A, B, { scale: Infinity }), 'INVALID_ARGUMENT', /scale/);
    expectCode(() => ops.mergeLora(W, A, B, {} as { scale: number }), 'INVALID_ARGUMENT', /mergeLora.*scale/);
  });
  test('dropout options', () => {
    expectCode(() => f(x, W, A, B, { scale: 1, dropout: { p: 1, seed: 1 } }), 'INVALID_ARGUMENT', /dropout\.p/);
    expectCode(() => f(x, W, A, B, { scale: 1, dropout: { p: -0.1, seed: 1 } }), 'INVALID_ARGUMENT', /dropout\.p/);
    expectCode(() => f(x, W, A, B, { scale: 1, dropout: { p: 0.99999999999, seed: 1 } }), 'INVALID_ARGUMENT', /dropout\.p/);
    expectCode(() => f(x, W, A, B, { scale: 1, dropout: { p: 0.5 } }), 'INVALID_ARGUMENT', /seed/);
    expectCode(() => f(x, W, A, B, { scale: 1, dropout: { p: 0.5, seed: -1 } }), 'INVALID_ARGUMENT', /seed/);
    expectCode(() => f(x, W, A, B, { scale: 1, dropout: { p: 0.5, seed: 2n ** 64n } }), 'INVALID_ARGUMENT', /seed/);
    expectCode(() => bw(dy, x, W, A, B, { scale: 1, dropout: { p: 0.5, seed: 1.5 } }), 'INVALID_ARGUMENT', /seed/);
    expectCode(() => bw(dy, x, W, A, B, { scale: 1, needInputGrad: 'yes' as unknown as boolean }), 'INVALID_ARGUMENT', /needInputGrad/);
  });
  test('shapes', () => {
    expectCode(() => f(x, zeros([5, 4]), A, B, { scale: 1 }), 'SHAPE_MISMATCH', /weight float32\[5,4\]/);
    expectCode(() => f(x, zeros([5]), A, B, { scale: 1 }), 'SHAPE_MISMATCH', /weight/);
    expectCode(() => f(x, W, zeros([2, 4]), B, { scale: 1 }), 'SHAPE_MISMATCH', /loraA float32\[2,4\]/);
    expectCode(() => f(x, W, A, zeros([5, 3]), { scale: 1 }), 'SHAPE_MISMATCH', /loraB float32\[5,3\].*\[5,2\]/);
    expectCode(() => f(x, W, A, zeros([4, 2]), { scale: 1 }), 'SHAPE_MISMATCH', /loraB/);
    expectCode(() => f(x, W, A, B, { scale: 1, bias: zeros([4]) }), 'SHAPE_MISMATCH', /bias float32\[4\]/);
    expectCode(() => f(zeros([]), W, A, B, { scale: 1 }), 'SHAPE_MISMATCH', /x/);
    expectCode(() => bw(zeros([4, 4]), x, W, A, B, { scale: 1 }), 'SHAPE_MISMATCH', /dy float32\[4,4\].*\[4,5\]/);
    expectCode(() => bw(zeros([2, 2, 5]), x, W, A, B, { scale: 1 }), 'SHAPE_MISMATCH', /dy/);
    expectCode(() => ops.unmergeLora(W, zeros([2, 4]), B, { scale: 1 }), 'SHAPE_MISMATCH', /unmergeLora: loraA/);
  });
  test('dtypes', () => {
    const xb = zeros([4, 3], { dtype: 'bfloat16' });
    expectCode(() => f(xb, W, A, B, { scale: 1 }), 'DTYPE_MISMATCH', /x bfloat16\[4,3\].*weight float32/);
    expectCode(() => f(x, W, A, zeros([5, 2], { dtype: 'float16' }), { scale: 1 }), 'DTYPE_MISMATCH', /loraA.*loraB float16/);
    expectCode(() => f(x, W, A, B, { scale: 1, bias: zeros([5], { dtype: 'float16' }) }), 'DTYPE_MISMATCH', /bias/);
    expectCode(() => f(zeros([4, 3], { dtype: 'int32' }), zeros([5, 3], { dtype: 'int32' }), A, B, { scale: 1 }), 'DTYPE_MISMATCH', /int32/);
    expectCode(() => f(x, W, zeros([2, 3], { dtype: 'int32' }), zeros([5, 2], { dtype: 'int32' }), { scale: 1 }), 'DTYPE_MISMATCH', /int32/);
    expectCode(() => bw(zeros([4, 5], { dtype: 'bfloat16' }), x, W, A, B, { scale: 1 }), 'DTYPE_MISMATCH', /dy/);
    expectCode(() => ops.mergeLora(zeros([5, 3], { dtype: 'int32' }), A, B, { scale: 1 }), 'DTYPE_MISMATCH', /weight/);
    xb.dispose();
  });
  test('non-tensors and disposed tensors', () => {
    expectCode(() => f('x' as unknown as Tensor, W, A, B, { scale: 1 }), 'INVALID_ARGUMENT', /loraLinear: x is not a Tensor/);
    expectCode(() => f(x, W, A, B, { scale: 1, bias: 3 as unknown as Tensor }), 'INVALID_ARGUMENT', /bias is not a Tensor/);
    const gone = zeros([2, 3]);
    gone.dispose();
    expectCode(() => f(x, W, gone, B, { scale: 1 }), 'DISPOSED', /loraA/);
    expectCode(() => bw(dy, x, W, A, B, { scale: 1, needInputGrad: false }) && bw(dy, gone, W, A, B, { scale: 1 }), 'DISPOSED', /x/);
  });
});

// On a GPU the same checks against the float64 reference as on the CPU, through the
// CUDA kernels (native/cuda/lora.cu): sizes on the tensor-core path (16-bit x with in a
// multiple of 8) and off it, r across the epilogue's 16-wide chunks, the mask exactly.
describeGpu('CUDA tensors', () => {
  const TOL: Record<string, number> = { bfloat16: 1e-2, float16: 2e-3, float32: 1e-5 };
  for (const d of [{ N: 37, inD: 67, out: 45, r: 8 }, { N: 130, inD: 264, out: 300, r: 16 }, { N: 9, inD: 40, out: 7, r: 33 }] as Dims[])
    for (const [dt, adt] of [['float32', 'float32'], ['bfloat16', 'float32'], ['float16', 'float16']] as [DType, DType][])
      test(`${dt} base, ${adt} adapters, N=${d.N} in=${d.inD} out=${d.out} r=${d.r}`, () => {
        const tol = { dt, adt, tolY: TOL[dt], tolDx: TOL[dt], tolAB: TOL[adt], device: 'cuda' as const };
        check(d, { ...tol, bias: true });
        check(d, { ...tol, p: 0.3, seed: 77 });
      });

  test('the dropout mask equals the CPU\'s bit for bit (W = 0, identity adapters)', () => {
    const N = 45, n = 40, p = 0.3, seed = 5;
    const eye = new Float32Array(n * n);
    for (let i = 0; i < n; i++) eye[i * n + i] = 1;
    for (const dt of ['float32', 'bfloat16'] as DType[]) {
      const run = (dev: 'cpu' | 'cuda') => {
        const ts = [tensor(hostRandom(N * n, 31), [N, n], { dtype: dt }), zeros([n, n], { dtype: dt }), tensor(eye, [n, n])];
        const [x, W, I] = dev === 'cpu' ? ts : ts.map((t) => t.to('cuda'));
        const y = ops.loraLinear(x, W, I, I, { scale: 1, dropout: { p, seed } });
        const g = ops.loraLinearBackward(x, x, W, I, I, { scale: 1, dropout: { p, seed } });
        const out = { y: Array.from(y.toArray()), dx: Array.from(g.dx!.toArray()) };
        for (const t of new Set([...ts, x, W, I, y, g.dx!, g.dA, g.dB])) t.dispose();
        return out;
      };
      const c = run('cpu'), g = run('cuda');
      expect(g.y).toEqual(c.y);
      expect(g.dx).toEqual(c.dx);
    }
  });

  test('mergeLora / unmergeLora on CUDA match the CPU', () => {
    const v = hostRandom(45 * 67, 3), a = hostRandom(8 * 67, 4), b = hostRandom(45 * 8, 5);
    for (const dt of ['float32', 'bfloat16'] as DType[]) {
      const res: number[][] = [];
      for (const dev of ['cpu', 'cuda']) {
        const host = [tensor(v, [45, 67], { dtype: dt }), tensor(a, [8, 67]), tensor(b, [45, 8])];
        const [W, A, B] = dev === 'cpu' ? host : host.map((t) => t.to('cuda'));
        res.push(Array.from(ops.mergeLora(W, A, B, { scale: 0.5 }).toArray()));  // in place: W
        res.push(Array.from(ops.unmergeLora(W, A, B, { scale: 0.5 }).toArray()));
        for (const t of new Set([...host, W, A, B])) t.dispose();
      }
      expect(relErr(res[2], res[0])).toBeLessThan(dt === 'float32' ? 1e-6 : 1e-2);
      expect(relErr(res[3], res[1])).toBeLessThan(dt === 'float32' ? 1e-6 : 1e-2);
    }
  });

  test('tensors on two devices: DEVICE_MISMATCH', () => {
    const x = zeros([4, 3]), W = zeros([5, 3]).to('cuda'), A = zeros([2, 3]).to('cuda'), B = zeros([5, 2]).to('cuda');
    expectCode(() => ops.loraLinear(x, W, A, B, { scale: 1 }), 'DEVICE_MISMATCH', /x is on cpu and weight on cuda/);
    expectCode(() => ops.mergeLora(W, x, B, { scale: 1 }), 'DEVICE_MISMATCH');
    for (const t of [x, W, A, B]) t.dispose();
  });
});

// Without a usable GPU (a build without CUDA, or no device) there are no CUDA tensors.
(hasGpu ? describe.skip : describe)('without a GPU', () => {
  test('CUDA tensors are DEVICE_UNAVAILABLE', () => {
    expectCode(() => zeros([4, 3]).to('cuda'), 'DEVICE_UNAVAILABLE');
  });
});
