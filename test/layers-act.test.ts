// Layers: rope (Hugging Face rotate_half, llama3 / linear scaling, large positions,
// left padding), swiglu, gelu (erf and tanh), quickGelu and dropout (the Philox rule
// of native/core/dropout.h, reproduced here in JS), forward and backward against float64
// references checked by finite differences; every CPU level, 16-bit storage, errors.
import { ops, tensor, DType, setCpuIsa, getCpuIsa, Tensor } from '../src';
import type { RopeLlama3Scaling } from '../src/ops/layers';
import { setPoisonOutputs } from '../src/tensor';
import { expectCode, finiteDiff, hostRandom, relErr } from './helpers';
import {
  TOL32, close, disposeAll, dot, dropoutMask, erfc, host, isas, refRope, rnd, ropeInvFreq, sigmoid, tolFor, RopeScalingRef,
} from './layers-ref';

let seed = 9000;
const next = () => seed++;

beforeAll(() => setPoisonOutputs(true));
afterAll(() => setPoisonOutputs(false));

const LLAMA3: RopeLlama3Scaling = {
  type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192,
};

// ---- float64 references ----

const gelu = (x: number) => 0.5 * x * erfc(-x / Math.SQRT2);
const geluD = (x: number) => 0.5 * erfc(-x / Math.SQRT2) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
const K = Math.sqrt(2 / Math.PI), C = 0.044715;
const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(K * (x + C * x ** 3)));
const geluTanhD = (x: number) => {
  const t = Math.tanh(K * (x + C * x ** 3));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * K * (1 + 3 * C * x * x);
};
const quick = (x: number) => x * sigmoid(1.702 * x);
const quickD = (x: number) => {
  const s = sigmoid(1.702 * x);
  return s + 1.702 * x * s * (1 - s);
};
const silu = (g: number) => g * sigmoid(g);
const swigluDg = (g: number, u: number) => u * sigmoid(g) * (1 + g * (1 - sigmoid(g)));

const ACTS = {
  gelu: { f: gelu, d: geluD, fwd: (x: Tensor) => ops.gelu(x), bwd: (dy: Tensor, x: Tensor) => ops.geluBackward(dy, x) },
  geluTanh: {
    f: geluTanh, d: geluTanhD,
    fwd: (x: Tensor) => ops.gelu(x, { approximate: 'tanh' }), bwd: (dy: Tensor, x: Tensor) => ops.geluBackward(dy, x, { approximate: 'tanh' }),
  },
  quickGelu: { f: quick, d: quickD, fwd: (x: Tensor) => ops.quickGelu(x), bwd: (dy: Tensor, x: Tensor) => ops.quickGeluBackward(dy, x) },
};

describe('float64 references', () => {
  test('erfc matches known values (series below 2.5, continued fraction above)', () => {
    const known: [number, number][] = [
      [0.5, 0.4795001221869535], [1, 0.15729920705028513], [2.4999, 0.0004071699003334514], [2.5, 0.0004069520174449589],
      [3, 2.2090496998585438e-5], [5, 1.5374597944280351e-12], [10, 2.088487583762545e-45],
    ];
    for (const [z, v] of known) expect(Math.abs(erfc(z) - v) / v).toBeLessThan(1e-11); // 1 - erf near 2.5: ~1e-12
    expect(Math.abs(erfc(-1) - (2 - 0.15729920705028513))).toBeLessThan(1e-15);
  });
  test('activation derivatives match finite differences', () => {
    const xs = Float64Array.from(hostRandom(64, 3), (v) => 6 * v);
    for (const [name, a] of Object.entries(ACTS)) {
      const fd = finiteDiff((x) => x.reduce((s, v) => s + a.f(v), 0), xs);
      expect([name, relErr(xs.map(a.d), fd) < 1e-7]).toEqual([name, true]);
    }
    const g = Float64Array.from(hostRandom(64, 4), (v) => 5 * v), u = Float64Array.from(hostRandom(64, 5));
    const fdg = finiteDiff((x) => x.reduce((s, v, i) => s + silu(v) * u[i], 0), g);
    expect(relErr(g.map((v, i) => swigluDg(v, u[i])), fdg)).toBeLessThan(1e-7);
    const fdu = finiteDiff((x) => x.reduce((s, v, i) => s + silu(g[i]) * v, 0), u);
    expect(relErr(g.map(silu), fdu)).toBeLessThan(1e-7);
  });
  test('rope backward (rotation by -angle) is the gradient of the forward', () => {
    const shape = [2, 3, 2, 8], n = 96;
    const pos = [3, 4, 5, 0, 1, 2];
    const inv = ropeInvFreq(8, 10000, LLAMA3);
    const x = Float64Array.from(hostRandom(n, next())), g = Float64Array.from(hostRandom(n, next()));
    const fd = finiteDiff((t) => dot(refRope(t, shape, pos, true, inv), g), x);
    expect(relErr(refRope(g, shape, pos, true, inv, -1), fd)).toBeLessThan(1e-7);
  });
  test('dropout backward (mask · g / (1 − p)) is the gradient of the forward', () => {
    const n = 37, p = 0.4, keep = dropoutMask(n, p, 5n);
    const x = Float64Array.from(hostRandom(n, next())), g = Float64Array.from(hostRandom(n, next()));
    const fwd = (t: Float64Array) => t.reduce((s, v, i) => s + (keep[i] ? v / (1 - p) : 0) * g[i], 0);
    expect(relErr(Float64Array.from(g, (v, i) => (keep[i] ? v / (1 - p) : 0)), finiteDiff(fwd, x))).toBeLessThan(1e-7);
  });
  test('llama3 inv_freq: high frequencies kept, low ones divided by factor, smooth between', () => {
    const D = 128, theta = 500000;
    const base = ropeInvFreq(D, theta), s = ropeInvFreq(D, theta, LLAMA3);
    let kept = 0, divided = 0, smooth = 0;
    for (let i = 0; i < D / 2; i++) {
      const wl = (2 * Math.PI) / base[i];
      if (wl < 8192 / 4) { expect(s[i]).toBe(base[i]); kept++; }
      else if (wl > 8192) { expect(s[i]).toBeCloseTo(base[i] / 8, 15); divided++; }
      else { expect(s[i]).toBeLessThan(base[i]); expect(s[i]).toBeGreaterThan(base[i] / 8); smooth++; }
    }
    expect(kept > 0 && divided > 0 && smooth > 0).toBe(true);
  });
});

function checkAct(name: keyof typeof ACTS, n: number, dtype: DType = 'float32', scale = 4) {
  const a = ACTS[name];
  const x = rnd([n], next(), dtype, scale), dy = rnd([n], next(), dtype);
  const y = a.fwd(x.t), dx = a.bwd(dy.t, x.t);
  expect(y.dtype).toBe(dtype);
  close(host(y), x.h.map(a.f), tolFor(dtype), `${name} n=${n} ${dtype}`);
  close(host(dx), x.h.map((v, i) => dy.h[i] * a.d(v)), tolFor(dtype), `${name}Backward n=${n} ${dtype}`);
  disposeAll(x.t, dy.t, y, dx);
}

function checkSwiglu(shape: number[], dtype: DType = 'float32', scale = 4) {
  const g = rnd(shape, next(), dtype, scale), u = rnd(shape, next(), dtype), dy = rnd(shape, next(), dtype);
  const y = ops.swiglu(g.t, u.t);
  expect(y.shape).toEqual(shape);
  close(host(y), g.h.map((v, i) => silu(v) * u.h[i]), tolFor(dtype), `swiglu ${shape} ${dtype}`);
  const { dGate, dUp } = ops.swigluBackward(dy.t, g.t, u.t);
  close(host(dGate), g.h.map((v, i) => dy.h[i] * swigluDg(v, u.h[i])), tolFor(dtype), `swiglu dGate ${shape} ${dtype}`);
  close(host(dUp), g.h.map((v, i) => dy.h[i] * silu(v)), tolFor(dtype), `swiglu dUp ${shape} ${dtype}`);
  disposeAll(g.t, u.t, dy.t, y, dGate, dUp);
}

function checkRope(shape: number[], pos: number[], perBatch: boolean, o: { theta?: number; scaling?: RopeScalingRef; dtype?: DType } = {}) {
  const dtype = o.dtype ?? 'float32';
  const x = rnd(shape, next(), dtype), dy = rnd(shape, next(), dtype);
  const p = tensor(Int32Array.from(pos), perBatch ? shape.slice(0, 2) : [shape[1]], { dtype: 'int32' });
  const opts = { theta: o.theta, scaling: o.scaling as never };
  const inv = ropeInvFreq(shape[3], o.theta ?? 10000, o.scaling);
  const what = `rope ${shape} ${dtype} ${JSON.stringify(o.scaling ?? null)} pos ${pos.slice(0, 3)}…`;
  const y = ops.rope(x.t, p, opts);
  close(host(y), refRope(x.h, shape, pos, perBatch, inv), tolFor(dtype), what);
  const dx = ops.ropeBackward(dy.t, p, opts);
  close(host(dx), refRope(dy.h, shape, pos, perBatch, inv, -1), tolFor(dtype), `${what} backward`);
  disposeAll(x.t, dy.t, p, y, dx);
}

/** Left-padded position ids as transformers builds them: cumsum(mask) - 1, 1 where padded. */
function leftPadded(B: number, S: number, pads: number[]): number[] {
  const pos: number[] = [];
  for (let b = 0; b < B; b++) for (let s = 0; s < S; s++) pos.push(s < pads[b] ? 1 : s - pads[b]);
  return pos;
}

describe.each(isas())('pointwise ops and rope at %s', (isa) => {
  const best = getCpuIsa();
  beforeAll(() => setCpuIsa(isa));
  afterAll(() => setCpuIsa(best));

  for (const name of Object.keys(ACTS) as (keyof typeof ACTS)[])
    test(`${name} forward / backward`, () => {
      for (const n of [1, 7, 40, 65, 128, 97 * 37, 70001]) checkAct(name, n);
      checkAct(name, 4001, 'float32', 30); // far tails: saturation without NaN
    });

  test('activations at extreme inputs stay finite and exact in the limits', () => {
    const x = tensor([-200, -60, -20, 0, 20, 60, 200], [7]);
    for (const a of Object.values(ACTS)) {
      const y = Array.from(a.fwd(x).toArray()), d = Array.from(a.bwd(tensor(new Float32Array(7).fill(1), [7]), x).toArray());
      expect(y.every(Number.isFinite) && d.every(Number.isFinite)).toBe(true);
      expect(y[0]).toBeCloseTo(0, 6);
      expect(y[6]).toBe(200);
      expect(d[0]).toBeCloseTo(0, 6);
      expect(d[6]).toBeCloseTo(1, 6);
      expect(y[3]).toBe(0);
    }
  });

  test('swiglu forward / backward', () => {
    for (const shape of [[1], [7], [37, 40], [97, 65], [3, 128], [257, 300]]) checkSwiglu(shape);
    checkSwiglu([4001], 'float32', 40); // saturated gates
  });

  test('rope: odd sizes, positions [S] and [B,S], left padding', () => {
    for (const D of [2, 8, 40, 64, 128])
      for (const [B, S, H] of [[1, 1, 1], [1, 7, 3], [2, 37, 1], [3, 5, 4]]) {
        checkRope([B, S, H, D], Array.from({ length: S }, (_, s) => s), false);
        checkRope([B, S, H, D], leftPadded(B, S, Array.from({ length: B }, (_, b) => (b * 3) % S)), true);
      }
  });

  test('rope with llama3 and linear scaling, theta 500000, large positions (100k+)', () => {
    const shape = [2, 9, 2, 128];
    const big = Array.from({ length: 18 }, (_, i) => 100000 + 997 * i); // sparse: cos / sin per token
    const dense = Array.from({ length: 18 }, (_, i) => 131000 + (i % 9)); // a shifted range: one table
    checkRope(shape, big, true, { theta: 500000, scaling: LLAMA3 });
    checkRope(shape, dense, true, { theta: 500000, scaling: LLAMA3 });
    checkRope(shape, big, true, { theta: 10000 });
    checkRope(shape, big.slice(0, 9), false, { theta: 10000, scaling: { type: 'linear', factor: 4 } });
    checkRope([1, 5, 1, 64], [0, 1, 2, 3, 4], false, { theta: 500000, scaling: { ...LLAMA3, factor: 32 } });
  });

  test('rope backward undoes the forward', () => {
    const x = rnd([2, 33, 3, 64], next());
    const p = tensor(Int32Array.from({ length: 33 }, (_, i) => 5 * i), [33], { dtype: 'int32' });
    const y = ops.rope(x.t, p, { scaling: LLAMA3 });
    const back = ops.ropeBackward(y, p, { scaling: LLAMA3 });
    close(host(back), x.h, 1e-6, 'ropeBackward(rope(x))');
    disposeAll(x.t, p, y, back);
  });
});

describe('pointwise ops with bfloat16 / float16 storage', () => {
  for (const dtype of ['bfloat16', 'float16'] as DType[])
    test(dtype, () => {
      for (const name of Object.keys(ACTS) as (keyof typeof ACTS)[]) {
        checkAct(name, 4001, dtype);
        checkAct(name, 65, dtype);
      }
      checkSwiglu([37, 65], dtype);
      checkRope([2, 7, 3, 64], leftPadded(2, 7, [0, 2]), true, { dtype, theta: 500000, scaling: LLAMA3 });
      checkRope([1, 5, 2, 40], [0, 1, 2, 3, 4], false, { dtype });
    });
});

describe('dropout', () => {
  const bits = (t: Tensor) => Array.from(t.toArray());

  test('follows the Philox rule exactly (JS reimplementation), generic and best level alike', () => {
    const best = getCpuIsa();
    for (const [n, p, s] of [[1000 + 13, 0.1, 7n], [4096 + 31, 0.5, 0x123456789abcdefn], [5, 0.3, (1n << 64n) - 1n], [70003, 0.25, 42n]] as [number, number, bigint][]) {
      const x = rnd([n], next());
      const keep = dropoutMask(n, p, s);
      const scale = Math.fround(1 / (1 - Math.fround(p)));
      const want = Array.from(x.h, (v, i) => (keep[i] ? Math.fround(v * scale) : 0));
      for (const isa of isas()) {
        setCpuIsa(isa);
        const y = ops.dropout(x.t, { p, seed: s });
        const got = bits(y);
        let bad = -1;
        for (let i = 0; i < n && bad < 0; i++) if (!Object.is(got[i], want[i]) && !(got[i] === 0 && want[i] === 0)) bad = i;
        expect([isa, n, bad]).toEqual([isa, n, -1]);
        y.dispose();
      }
      setCpuIsa(best);
      x.t.dispose();
    }
  });

  test('p = 0 is the identity; kept fraction ≈ 1 − p; kept values scaled by 1/(1 − p)', () => {
    const n = 100000;
    const x = rnd([n], next(), 'float32', 1, 2); // all values in [1, 3): none is 0
    const y0 = ops.dropout(x.t, { p: 0, seed: 1 });
    expect(bits(y0)).toEqual(Array.from(x.h));
    for (const p of [0.1, 0.5, 0.9]) {
      const y = bits(ops.dropout(x.t, { p, seed: 3 }));
      const kept = y.filter((v) => v !== 0).length;
      // Binomial: 5 standard deviations.
      expect(Math.abs(kept / n - (1 - p))).toBeLessThan(5 * Math.sqrt((p * (1 - p)) / n));
      const scale = Math.fround(1 / (1 - Math.fround(p)));
      for (let i = 0; i < n; i += 997) if (y[i] !== 0) expect(y[i]).toBe(Math.fround(x.h[i] * scale));
    }
    disposeAll(x.t, y0);
  });

  test('same seed same mask, different seed different mask; number and bigint seeds agree', () => {
    const x = rnd([10007], next(), 'float32', 1, 2);
    const a = bits(ops.dropout(x.t, { p: 0.5, seed: 11 }));
    const b = bits(ops.dropout(x.t, { p: 0.5, seed: 11n }));
    const c = bits(ops.dropout(x.t, { p: 0.5, seed: 12 }));
    expect(a).toEqual(b);
    const differ = a.filter((v, i) => (v === 0) !== (c[i] === 0)).length;
    expect(differ).toBeGreaterThan(10007 * 0.4);
    x.t.dispose();
  });

  test('backward regenerates the forward mask: dx = mask · dy / (1 − p)', () => {
    const shape = [37, 65];
    const x = rnd(shape, next(), 'float32', 1, 2), dy = rnd(shape, next());
    const opts = { p: 0.3, seed: 2n ** 40n + 5n };
    const y = bits(ops.dropout(x.t, opts));
    const dx = bits(ops.dropoutBackward(dy.t, opts));
    const scale = Math.fround(1 / (1 - Math.fround(0.3)));
    for (let i = 0; i < y.length; i++) expect(dx[i]).toBe(y[i] === 0 ? 0 : Math.fround(dy.h[i] * scale));
    disposeAll(x.t, dy.t);
  });

  for (const dtype of ['bfloat16', 'float16'] as DType[])
    test(`${dtype} storage: the same mask, kept values rounded once`, () => {
      const n = 3001;
      const x = rnd([n], next(), dtype);
      const keep = dropoutMask(n, 0.2, 99n);
      const y = ops.dropout(x.t, { p: 0.2, seed: 99 });
      expect(y.dtype).toBe(dtype);
      const scale = Math.fround(1 / (1 - Math.fround(0.2)));
      const want = tensor(Float32Array.from(x.h, (v, i) => (keep[i] ? Math.fround(v * scale) : 0)), [n]).cast(dtype);
      expect(bits(y)).toEqual(bits(want));
      disposeAll(x.t, y, want);
    });

  test('empty tensors', () => {
    expect(ops.dropout(tensor(new Float32Array(0), [0, 3]), { p: 0.5, seed: 1 }).shape).toEqual([0, 3]);
  });
});

describe('pointwise / rope / dropout errors', () => {
  const f = (shape: number[], dtype: DType = 'float32') => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, { dtype });
  const pos = (n: number) => tensor(new Int32Array(n), [n], { dtype: 'int32' });
  test('rope', () => {
    expectCode(() => ops.rope(f([2, 3, 4]), pos(3)), 'SHAPE_MISMATCH', /rope: x float32\[2,3,4\] must be \[B,S,H,D\]/);
    expectCode(() => ops.rope(f([1, 3, 2, 7]), pos(3)), 'SHAPE_MISMATCH', /D = 7 must be even/);
    expectCode(() => ops.rope(f([1, 3, 2, 8]), pos(4)), 'SHAPE_MISMATCH', /positions int32\[4\] must be \[B,S\]/);
    expectCode(() => ops.rope(f([1, 3, 2, 8]), f([3])), 'DTYPE_MISMATCH', /positions float32\[3\] must be int32/);
    expectCode(() => ops.rope(f([1, 3, 2, 8], 'int32'), pos(3)), 'DTYPE_MISMATCH');
    expectCode(() => ops.rope(f([1, 3, 2, 8]), pos(3), { theta: 0 }), 'INVALID_ARGUMENT', /theta/);
    expectCode(() => ops.rope(f([1, 3, 2, 8]), pos(3), { scaling: { type: 'yarn' } as never }), 'INVALID_ARGUMENT', /scaling.type/);
    expectCode(() => ops.rope(f([1, 3, 2, 8]), pos(3), { scaling: { ...LLAMA3, highFreqFactor: 1 } }), 'INVALID_ARGUMENT', /lowFreqFactor < highFreqFactor/);
    expectCode(() => ops.rope(f([1, 3, 2, 8]), pos(3), { scaling: { type: 'linear', factor: -2 } }), 'INVALID_ARGUMENT', /factor/);
    expectCode(() => ops.ropeBackward(f([1, 3, 2, 8]), pos(2)), 'SHAPE_MISMATCH', /ropeBackward/);
  });
  test('activations and swiglu', () => {
    expectCode(() => ops.gelu(f([3], 'int32')), 'DTYPE_MISMATCH', /gelu: x int32/);
    expectCode(() => ops.gelu(f([3]), { approximate: 'erf' as never }), 'INVALID_ARGUMENT', /approximate/);
    expectCode(() => ops.geluBackward(f([4]), f([3])), 'SHAPE_MISMATCH', /geluBackward: dy float32\[4\]/);
    expectCode(() => ops.quickGeluBackward(f([3], 'bfloat16'), f([3])), 'DTYPE_MISMATCH');
    expectCode(() => ops.swiglu(f([3, 4]), f([4, 3])), 'SHAPE_MISMATCH', /swiglu: up float32\[4,3\]/);
    expectCode(() => ops.swiglu(f([3]), f([3], 'float16')), 'DTYPE_MISMATCH');
    expectCode(() => ops.swigluBackward(f([3]), f([3]), f([2])), 'SHAPE_MISMATCH');
  });
  test('dropout', () => {
    expectCode(() => ops.dropout(f([3]), { p: 1, seed: 1 }), 'INVALID_ARGUMENT', /p must be in \[0, 1\)/);
    expectCode(() => ops.dropout(f([3]), { p: 0.99999999999, seed: 1 }), 'INVALID_ARGUMENT', /p must be in/); // 1 as float32
    expectCode(() => ops.dropout(f([3]), { p: -0.1, seed: 1 }), 'INVALID_ARGUMENT');
    expectCode(() => ops.dropout(f([3]), { p: NaN, seed: 1 }), 'INVALID_ARGUMENT');
    expectCode(() => ops.dropout(f([3]), { p: 0.5, seed: -1 }), 'INVALID_ARGUMENT', /seed/);
    expectCode(() => ops.dropout(f([3]), { p: 0.5, seed: 1n << 64n }), 'INVALID_ARGUMENT', /seed/);
    expectCode(() => ops.dropout(f([3]), { p: 0.5 } as never), 'INVALID_ARGUMENT', /seed is required/);
    expectCode(() => ops.dropoutBackward(f([3], 'int32'), { p: 0.5, seed: 1 }), 'DTYPE_MISMATCH');
  });
});
