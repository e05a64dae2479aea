// ops.attention / ops.attentionBackward against a float64 reference written here (the
// materialised softmax), itself checked against finite differences: odd sizes, head dims
// 40 / 64 / 128, grouped-query attention, causal, padding masks (left, right, a row with
// no key at all), bfloat16 / float16 storage, the generic SIMD level beside the best,
// thread counts that take the split-key path, poisoned outputs and argument errors.
import { ops, tensor, zeros, Tensor, DType, getCpuIsa, setCpuIsa, CpuIsa, getNumThreads, setNumThreads } from '../src';
import { native } from '../src/binding';
import { setPoisonOutputs } from '../src/tensor';
import { describeGpu, expectClose, expectCode, finiteDiff, hostRandom, relErr } from './helpers';

interface Dims {
  B: number;
  S: number;
  Hq: number;
  Hkv: number;
  D: number;
}

interface Opts {
  causal?: boolean;
  scale?: number;
  mask?: Int32Array | null;
}

interface Ref {
  out: Float64Array;
  lse: Float64Array;
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
}

// ---- float64 reference: materialised scores, softmax, its analytic gradient ----

function refAttention(d: Dims, q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dO: ArrayLike<number> | null, o: Opts): Ref {
  const { B, S, Hq, Hkv, D } = d;
  const G = Hq / Hkv;
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const out = new Float64Array(B * S * Hq * D), lse = new Float64Array(B * Hq * S);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
  const s = new Float64Array(S), p = new Float64Array(S), dp = new Float64Array(S);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / G);
      for (let i = 0; i < S; i++) {
        const qi = ((b * S + i) * Hq + h) * D;
        let mx = -Infinity;
        for (let j = 0; j < S; j++) {
          const ok = (!o.causal || j <= i) && (!o.mask || o.mask[b * S + j] !== 0);
          if (!ok) {
            s[j] = -Infinity;
            continue;
          }
          const kj = ((b * S + j) * Hkv + kh) * D;
          let acc = 0;
          for (let c = 0; c < D; c++) acc += q[qi + c] * k[kj + c];
          s[j] = scale * acc;
          mx = Math.max(mx, s[j]);
        }
        const li = (b * Hq + h) * S + i;
        if (mx === -Infinity) {
          lse[li] = -Infinity; // out, dq stay 0
          continue;
        }
        let sum = 0;
        for (let j = 0; j < S; j++) sum += s[j] === -Infinity ? 0 : Math.exp(s[j] - mx);
        lse[li] = mx + Math.log(sum);
        for (let j = 0; j < S; j++) p[j] = s[j] === -Infinity ? 0 : Math.exp(s[j] - lse[li]);
        for (let j = 0; j < S; j++) {
          if (p[j] === 0) continue;
          const vj = ((b * S + j) * Hkv + kh) * D;
          for (let c = 0; c < D; c++) out[qi + c] += p[j] * v[vj + c];
        }
        if (!dO) continue;
        // dv_j += p_j dO_i; dp_j = dO_i·v_j; ds_j = p_j (dp_j − Σ_l p_l dp_l);
        // dq_i += scale Σ_j ds_j k_j; dk_j += scale ds_j q_i.
        let delta = 0;
        for (let j = 0; j < S; j++) {
          dp[j] = 0;
          if (p[j] === 0) continue;
          const vj = ((b * S + j) * Hkv + kh) * D;
          for (let c = 0; c < D; c++) {
            dv[vj + c] += p[j] * dO[qi + c];
            dp[j] += dO[qi + c] * v[vj + c];
          }
          delta += p[j] * dp[j];
        }
        for (let j = 0; j < S; j++) {
          if (p[j] === 0) continue;
          const ds = scale * p[j] * (dp[j] - delta);
          const kj = ((b * S + j) * Hkv + kh) * D;
          for (let c = 0; c < D; c++) {
            dq[qi + c] += ds * k[kj + c];
            dk[kj + c] += ds * q[qi + c];
          }
        }
      }
    }
  return { out, lse, dq, dk, dv };
}

// ---- running ours ----

function roundTo(x: Float32Array, dtype: DType): Float32Array {
  if (dtype === 'float32') return x;
  const t = tensor(x, [x.length]);
  const r = t.cast(dtype);
  const y = r.toArray() as Float32Array;
  t.dispose();
  r.dispose();
  return y;
}

interface Case extends Opts {
  dtype?: DType;
  device?: string; // default 'cpu'
  seed?: number;
  qScale?: number; // spreads the scores (a peaked softmax exercises the running max)
}

interface Got {
  out: Float32Array;
  lse: Float32Array;
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
  ref: Ref;
}

// The same case at several SIMD levels / thread counts shares its reference (same seed).
const refCache = new Map<string, Ref>();
function cachedRef(d: Dims, c: Case, dtype: DType, seed: number, make: () => Ref): Ref {
  const key = JSON.stringify({ d, c: { ...c, device: undefined, mask: c.mask ? Array.from(c.mask).join('') : null }, dtype, seed });
  let r = refCache.get(key);
  if (!r) refCache.set(key, (r = make()));
  return r;
}

function run(d: Dims, c: Case): Got {
  const dtype = c.dtype ?? 'float32';
  const seed = c.seed ?? d.S * 7 + d.D * 131 + d.Hq * 17 + d.Hkv;
  const qs = c.qScale ?? 2;
  const nq = d.B * d.S * d.Hq * d.D, nk = d.B * d.S * d.Hkv * d.D;
  const qh = roundTo(hostRandom(nq, seed).map((x) => x * qs), dtype);
  const kh = roundTo(hostRandom(nk, seed + 1), dtype);
  const vh = roundTo(hostRandom(nk, seed + 2), dtype);
  const dOh = roundTo(hostRandom(nq, seed + 3), dtype);
  const device = c.device ?? 'cpu';
  const q = tensor(qh, [d.B, d.S, d.Hq, d.D], { dtype, device });
  const k = tensor(kh, [d.B, d.S, d.Hkv, d.D], { dtype, device });
  const v = tensor(vh, [d.B, d.S, d.Hkv, d.D], { dtype, device });
  const dO = tensor(dOh, [d.B, d.S, d.Hq, d.D], { dtype, device });
  const mask = c.mask ? tensor(c.mask, [d.B, d.S], { dtype: 'int32', device }) : null;
  const opts = { causal: c.causal, scale: c.scale, keyPaddingMask: mask };
  const { out, lse } = ops.attention(q, k, v, opts);
  expect(out.shape).toEqual(q.shape);
  expect(out.dtype).toBe(dtype);
  expect(out.device).toBe(q.device);
  expect(lse.shape).toEqual([d.B, d.Hq, d.S]);
  expect(lse.dtype).toBe('float32');
  const { dq, dk, dv } = ops.attentionBackward(dO, q, k, v, out, lse, opts);
  expect(dq.shape).toEqual(q.shape);
  expect(dk.shape).toEqual(k.shape);
  expect(dv.shape).toEqual(v.shape);
  expect([dq.dtype, dk.dtype, dv.dtype]).toEqual([dtype, dtype, dtype]);
  const got = {
    out: out.toArray() as Float32Array,
    lse: lse.toArray() as Float32Array,
    dq: dq.toArray() as Float32Array,
    dk: dk.toArray() as Float32Array,
    dv: dv.toArray() as Float32Array,
    ref: cachedRef(d, c, dtype, seed, () => refAttention(d, qh, kh, vh, dOh, c)),
  };
  for (const t of [q, k, v, dO, mask, out, lse, dq, dk, dv]) t?.dispose();
  return got;
}

// lse: -Infinity exactly where the reference has it, the rest within tol.
function expectLse(got: Float32Array, want: Float64Array, tol: number, what: string): void {
  const g: number[] = [], w: number[] = [];
  for (let i = 0; i < want.length; i++) {
    if (want[i] === -Infinity) {
      if (got[i] !== -Infinity) throw new Error(`${what}: lse[${i}] = ${got[i]}, want -Infinity`);
    } else {
      g.push(got[i]);
      w.push(want[i]);
    }
  }
  expectClose(g, w, tol, what);
}

function check(d: Dims, c: Case, tol = 1e-5, gradTol = tol): void {
  const r = run(d, c);
  const what = `${JSON.stringify(d)} ${JSON.stringify({ ...c, mask: c.mask ? 'yes' : undefined })}`;
  if (process.env.ATTN_DEBUG) console.log(what, ['out', 'dq', 'dk', 'dv'].map((n) => relErr(r[n as 'out'], r.ref[n as 'out']).toExponential(2)).join(' '));
  expectClose(r.out, r.ref.out, tol, `out ${what}`);
  expectLse(r.lse, r.ref.lse, tol, `lse ${what}`);
  expectClose(r.dq, r.ref.dq, gradTol, `dq ${what}`);
  expectClose(r.dk, r.ref.dk, gradTol, `dk ${what}`);
  expectClose(r.dv, r.ref.dv, gradTol, `dv ${what}`);
}

// Key masks [B,S]: batch b keeps keys [lo_b, hi_b).
function rangeMask(S: number, ranges: [number, number][]): Int32Array {
  const m = new Int32Array(ranges.length * S);
  ranges.forEach(([lo, hi], b) => {
    for (let j = lo; j < hi; j++) m[b * S + j] = 1;
  });
  return m;
}

let poisonWas = false;
beforeAll(() => {
  poisonWas = setPoisonOutputs(true);
});
afterAll(() => {
  setPoisonOutputs(poisonWas);
});

describe('the float64 reference', () => {
  // The analytic gradient of L = Σ out ∘ dO against central differences of the forward.
  const cases: [string, Dims, Opts][] = [
    ['plain', { B: 1, S: 3, Hq: 1, Hkv: 1, D: 2 }, {}],
    ['GQA, causal, masked, custom scale', { B: 2, S: 4, Hq: 2, Hkv: 1, D: 3 }, { causal: true, scale: 0.7, mask: rangeMask(4, [[1, 4], [0, 3]]) }],
  ];
  for (const [name, d, o] of cases)
    test(name, () => {
      const nq = d.B * d.S * d.Hq * d.D, nk = d.B * d.S * d.Hkv * d.D;
      const q = Float64Array.from(hostRandom(nq, 11), (x) => 2 * x), k = Float64Array.from(hostRandom(nk, 12));
      const v = Float64Array.from(hostRandom(nk, 13)), dO = Float64Array.from(hostRandom(nq, 14));
      const ref = refAttention(d, q, k, v, dO, o);
      const loss = (qq: Float64Array, kk: Float64Array, vv: Float64Array) => {
        const { out } = refAttention(d, qq, kk, vv, null, o);
        let s = 0;
        for (let i = 0; i < out.length; i++) s += out[i] * dO[i];
        return s;
      };
      expectClose(ref.dq, finiteDiff((x) => loss(x, k, v), q), 1e-7, 'dq');
      expectClose(ref.dk, finiteDiff((x) => loss(q, x, v), k), 1e-7, 'dk');
      expectClose(ref.dv, finiteDiff((x) => loss(q, k, x), v), 1e-7, 'dv');
      // and lse is the log of the softmax denominator
      expect(ref.lse.every((x) => Number.isFinite(x) || x === -Infinity)).toBe(true);
    });
});

describe('attention vs float64 reference', () => {
  // Every level up to the CPU's: the register tiles (and so Br, Bc) differ per level, and
  // the softmax passes have an AVX-512 body and a portable one.
  const order: CpuIsa[] = ['generic', 'avx2', 'avx512'];
  const best = getCpuIsa();
  const isas = order.slice(0, order.indexOf(best) + 1);
  afterAll(() => setCpuIsa(best));
  for (const isa of isas)
    describe(isa, () => {
      beforeAll(() => setCpuIsa(isa));
      test('S = 37, D = 40, two heads, batch 2', () => check({ B: 2, S: 37, Hq: 2, Hkv: 2, D: 40 }, {}));
      test('S = 97, D = 64, causal', () => check({ B: 1, S: 97, Hq: 2, Hkv: 2, D: 64 }, { causal: true }));
      test('S = 1 (one key), D = 64, causal and not', () => {
        check({ B: 3, S: 1, Hq: 2, Hkv: 1, D: 64 }, {});
        check({ B: 1, S: 1, Hq: 1, Hkv: 1, D: 7 }, { causal: true });
      });
      test('S = 300, D = 128, causal, one (batch, head): split work', () =>
        check({ B: 1, S: 300, Hq: 1, Hkv: 1, D: 128 }, { causal: true, qScale: 4 }));
      test('S = 300, D = 40, peaked softmax, custom scale (the running max moves)', () =>
        check({ B: 1, S: 300, Hq: 1, Hkv: 1, D: 40 }, { scale: 0.5, qScale: 3 }));
      test('GQA Hq = 4, Hkv = 2 and Hkv = 1', () => {
        check({ B: 2, S: 37, Hq: 4, Hkv: 2, D: 40 }, {});
        check({ B: 1, S: 97, Hq: 4, Hkv: 1, D: 64 }, { causal: true });
      });
      test('left and right padding, with and without causal', () => {
        const S = 97;
        const mask = rangeMask(S, [[0, 60], [30, S], [5, 90]]);
        check({ B: 3, S, Hq: 2, Hkv: 1, D: 40 }, { mask });
        // causal + left padding: the first queries of batch 1 and 2 have no key at all
        check({ B: 3, S, Hq: 2, Hkv: 1, D: 40 }, { mask, causal: true });
      });
      test('odd head dims and every key tile masked but one', () => {
        check({ B: 1, S: 300, Hq: 2, Hkv: 2, D: 13 }, { mask: rangeMask(300, [[250, 260]]) });
        check({ B: 2, S: 37, Hq: 1, Hkv: 1, D: 256 }, { causal: true });
        check({ B: 2, S: 37, Hq: 1, Hkv: 1, D: 1 }, { causal: true });
        check({ B: 1, S: 37, Hq: 1, Hkv: 1, D: 1 }, { dtype: 'bfloat16' }, 6e-3);
      });
      // bfloat16 takes the bf16 pair kernels for Q·Kᵀ and dO·Vᵀ where the level has them
      // (an odd D leaves a half-filled last pair); float16 is widened while packing.
      // Tolerances: see '16-bit storage' below.
      test('bfloat16 and float16, odd D', () => {
        check({ B: 1, S: 97, Hq: 2, Hkv: 1, D: 41 }, { dtype: 'bfloat16', causal: true }, 6e-3);
        check({ B: 1, S: 97, Hq: 2, Hkv: 1, D: 41 }, { dtype: 'float16' }, 7.5e-4);
      });
    });
});

describe('rows and keys with nothing to attend', () => {
  test('a batch whose keys are all masked: zeros, lse -Infinity, zero gradients, no NaN', () => {
    const d = { B: 2, S: 37, Hq: 2, Hkv: 1, D: 40 };
    const mask = rangeMask(37, [[0, 37], [0, 0]]);
    for (const causal of [false, true]) {
      const r = run(d, { mask, causal });
      const half = 37 * 2 * 40;
      expect(r.out.subarray(half).every((x) => x === 0)).toBe(true);
      expect(r.lse.subarray(2 * 37).every((x) => x === -Infinity)).toBe(true);
      expect(r.dq.subarray(half).every((x) => x === 0)).toBe(true);
      expect(r.dk.subarray(37 * 40).every((x) => x === 0)).toBe(true);
      expect(r.dv.subarray(37 * 40).every((x) => x === 0)).toBe(true);
      expectClose(r.out, r.ref.out, 1e-5, 'out');
      expectClose(r.dq, r.ref.dq, 1e-5, 'dq');
      expectClose(r.dk, r.ref.dk, 1e-5, 'dk');
    }
  });
  test('masked keys get exactly zero dk and dv', () => {
    const mask = rangeMask(97, [[10, 80]]);
    const r = run({ B: 1, S: 97, Hq: 2, Hkv: 1, D: 64 }, { mask });
    for (let j = 0; j < 97; j++) {
      if (j >= 10 && j < 80) continue;
      for (let c = 0; c < 64; c++) {
        expect(r.dk[j * 64 + c]).toBe(0);
        expect(r.dv[j * 64 + c]).toBe(0);
      }
    }
    expectClose(r.dv, r.ref.dv, 1e-5, 'dv');
  });
});

describe('thread counts', () => {
  const n = getNumThreads();
  afterAll(() => setNumThreads(n));
  for (const t of [1, 3])
    test(`${t} thread(s): the same results`, () => {
      setNumThreads(t);
      check({ B: 1, S: 300, Hq: 4, Hkv: 2, D: 40 }, { causal: true, mask: rangeMask(300, [[3, 290]]) });
      check({ B: 3, S: 97, Hq: 1, Hkv: 1, D: 64 }, {});
    });
});

describe('16-bit storage', () => {
  // Inputs are rounded to the dtype before the reference sees them, so what remains is
  // the rounding of each output element to the dtype (at most half an ulp: 2^-9 = 2.0e-3
  // relative for bfloat16, 2^-12 = 2.4e-4 for float16; measured relative norm errors
  // 1.6e-3 and 2.1e-4), plus in the backward the rounding of `out`, which enters
  // Δ = rowsum(dO ∘ out) and through it dS (measured: at most 1.2x the output rounding).
  // Tolerance: 3x the half-ulp bound (bfloat16 6e-3, float16 7.5e-4), gradients alike.
  const tols: Record<string, number> = { bfloat16: 6e-3, float16: 7.5e-4 };
  for (const dtype of ['bfloat16', 'float16'] as DType[])
    test(dtype, () => {
      check({ B: 2, S: 97, Hq: 2, Hkv: 1, D: 64 }, { dtype }, tols[dtype]);
      check({ B: 1, S: 160, Hq: 2, Hkv: 2, D: 40 }, { dtype, causal: true, mask: rangeMask(160, [[7, 160]]) }, tols[dtype]);
    });
});

describe('empty sizes', () => {
  test('B = 0, S = 0 and Hq = 0 give empty results', () => {
    for (const [B, S, Hq, Hkv] of [[0, 5, 2, 1], [2, 0, 2, 2], [2, 3, 0, 1]]) {
      const q = zeros([B, S, Hq, 8]), k = zeros([B, S, Hkv, 8]);
      const { out, lse } = ops.attention(q, k, k, { causal: true });
      expect(out.shape).toEqual([B, S, Hq, 8]);
      expect(lse.shape).toEqual([B, Hq, S]);
      const g = ops.attentionBackward(q, q, k, k, out, lse, { causal: true });
      expect(g.dk.shape).toEqual([B, S, Hkv, 8]);
      for (const t of [q, k, out, lse, g.dq, g.dk, g.dv]) t.dispose();
    }
  });
});

describe('attention argument errors', () => {
  const q = zeros([2, 5, 4, 8]), k = zeros([2, 5, 2, 8]);
  const mask = zeros([2, 5], { dtype: 'int32' });
  test('shapes', () => {
    expectCode(() => ops.attention(zeros([2, 5, 8]), k, k), 'SHAPE_MISMATCH', /4-D/);
    expectCode(() => ops.attention(q, zeros([2, 6, 2, 8]), zeros([2, 6, 2, 8])), 'SHAPE_MISMATCH', /q's B, S and D/);
    expectCode(() => ops.attention(q, k, zeros([2, 5, 1, 8])), 'SHAPE_MISMATCH', /k and v/);
    expectCode(() => ops.attention(q, zeros([2, 5, 3, 8]), zeros([2, 5, 3, 8])), 'SHAPE_MISMATCH', /multiple of the key\/value heads/);
    expectCode(() => ops.attention(zeros([1, 2, 1, 257]), zeros([1, 2, 1, 257]), zeros([1, 2, 1, 257])), 'SHAPE_MISMATCH', /head dim 257/);
    expectCode(() => ops.attention(zeros([1, 2, 1, 0]), zeros([1, 2, 1, 0]), zeros([1, 2, 1, 0])), 'SHAPE_MISMATCH', /head dim 0/);
    expectCode(() => ops.attention(q, k, k, { keyPaddingMask: zeros([2, 4], { dtype: 'int32' }) }), 'SHAPE_MISMATCH', /keyPaddingMask int32\[2,4\]/);
  });
  test('dtypes', () => {
    expectCode(() => ops.attention(q, k.cast('bfloat16'), k), 'DTYPE_MISMATCH', /bfloat16/);
    expectCode(() => ops.attention(q.cast('int32'), k.cast('int32'), k.cast('int32')), 'DTYPE_MISMATCH', /int32/);
    expectCode(() => ops.attention(q, k, k, { keyPaddingMask: zeros([2, 5]) }), 'DTYPE_MISMATCH', /keyPaddingMask float32\[2,5\] must be int32/);
  });
  test('options', () => {
    expectCode(() => ops.attention(q, k, k, { scale: NaN }), 'INVALID_ARGUMENT', /scale/);
    expectCode(() => ops.attention(q, k, k, { scale: Infinity }), 'INVALID_ARGUMENT', /scale/);
    expectCode(() => ops.attention(q, k, k, { scale: 1e300 }), 'INVALID_ARGUMENT', /float32/);
    expectCode(() => ops.attention(q, k, 'v' as unknown as Tensor), 'INVALID_ARGUMENT', /v is not a Tensor/);
    const gone = zeros([2, 5, 2, 8]);
    gone.dispose();
    expectCode(() => ops.attention(q, k, gone), 'DISPOSED', /v/);
    ops.attention(q, k, k, { keyPaddingMask: mask, causal: true, scale: 0 }).out.dispose();
  });
  test('backward: out, dOut and lse must match the forward', () => {
    const { out, lse } = ops.attention(q, k, k);
    expectCode(() => ops.attentionBackward(zeros([2, 5, 4, 7]), q, k, k, out, lse), 'SHAPE_MISMATCH', /dOut/);
    expectCode(() => ops.attentionBackward(q, q, k, k, out.cast('float16'), lse), 'DTYPE_MISMATCH', /out float16/);
    expectCode(() => ops.attentionBackward(q, q, k, k, out, zeros([2, 5, 4])), 'SHAPE_MISMATCH', /lse float32\[2,5,4\] must be \[2,4,5\]/);
    expectCode(() => ops.attentionBackward(q, q, k, k, out, lse.cast('bfloat16')), 'DTYPE_MISMATCH', /lse bfloat16/);
    expectCode(() => ops.attentionBackward(q, q, k, k, out, lse, { scale: -Infinity }), 'INVALID_ARGUMENT', /scale/);
    out.dispose();
    lse.dispose();
  });
  test('the C ABI checks on its own (TypeScript bypassed)', () => {
    type Nat = ReturnType<Tensor['nat']>;
    const n = native as unknown as {
      attentionForward(...a: unknown[]): void;
      attentionBackward(...a: unknown[]): void;
    };
    const out = zeros([2, 5, 4, 8]), lse = zeros([2, 4, 5]);
    const fwd = (qq: Tensor, kk: Tensor, vv: Tensor, m: Tensor | null, o: Tensor, l: Tensor, scale = 0.5) =>
      n.attentionForward(qq.nat(), kk.nat(), vv.nat(), m ? m.nat() : null, o.nat(), l.nat(), false, scale);
    expectCode(() => fwd(q, k, k, null, zeros([2, 5, 4, 7]), lse), 'SHAPE_MISMATCH', /attention_forward: out/);
    expectCode(() => fwd(q, k, k, null, out, zeros([2, 5, 4])), 'SHAPE_MISMATCH', /lse/);
    expectCode(() => fwd(q, zeros([2, 5, 3, 8]), zeros([2, 5, 3, 8]), null, out, lse), 'SHAPE_MISMATCH', /multiple/);
    expectCode(() => fwd(q, k, k, zeros([2, 5]), out, lse), 'DTYPE_MISMATCH', /key_padding_mask/);
    expectCode(() => fwd(q, k, k, zeros([5, 2], { dtype: 'int32' }), out, lse), 'SHAPE_MISMATCH', /key_padding_mask/);
    expectCode(() => fwd(q, k, k, null, out, lse, NaN), 'INVALID_ARGUMENT', /scale/);
    expectCode(() => fwd(q, k, k, null, out.cast('bfloat16'), lse), 'DTYPE_MISMATCH', /out/);
    const z = (s: number[]) => zeros(s).nat() as Nat;
    expectCode(() => n.attentionBackward(z([2, 5, 4, 8]), q.nat(), k.nat(), k.nat(), out.nat(), lse.nat(), null,
      z([2, 5, 4, 8]), z([2, 5, 4, 8]), z([2, 5, 2, 8]), false, 0.5), 'SHAPE_MISMATCH', /dk/);
    expectCode(() => n.attentionBackward(z([2, 5, 4, 8]), q.nat(), k.nat(), k.nat(), out.nat(), lse.nat(), null,
      z([2, 5, 4, 8]), z([2, 5, 2, 8]), z([2, 5, 2, 9]), false, 0.5), 'SHAPE_MISMATCH', /dv/);
    out.dispose();
    lse.dispose();
  });
});

describeGpu('CUDA', () => {
  // The CUDA kernels on the same cases: float32 (SIMT kernels) within the CPU's float32
  // tolerance of the float64 reference; bfloat16 / float16 (tensor cores for D <= 128,
  // SIMT for D = 256) also round the probabilities P (and dS in the backward) to the
  // dtype before their products, as FlashAttention does, on top of the output rounding
  // that '16-bit storage' budgets 3x half an ulp for: 5x here (bfloat16 1e-2, float16
  // 1.25e-3). The native tests (test_cuda_attention.cc) hold the GPU to 2x the CPU's own
  // 16-bit error, element by element, over many more shapes.
  const tols: Record<string, number> = { float32: 1e-5, bfloat16: 1e-2, float16: 1.25e-3 };
  for (const dtype of ['float32', 'bfloat16', 'float16'] as DType[])
    test(`${dtype} vs the float64 reference`, () => {
      const tol = tols[dtype], device = 'cuda';
      check({ B: 2, S: 37, Hq: 4, Hkv: 2, D: 40 }, { dtype, device }, tol);
      check({ B: 1, S: 1, Hq: 2, Hkv: 1, D: 64 }, { dtype, device, causal: true }, tol);
      check({ B: 1, S: 300, Hq: 2, Hkv: 1, D: 64 }, { dtype, device, causal: true, qScale: 4 }, tol);
      const mask = rangeMask(97, [[0, 60], [30, 97], [0, 0]]);
      check({ B: 3, S: 97, Hq: 2, Hkv: 1, D: 128 }, { dtype, device, mask, causal: true }, tol);
      check({ B: 2, S: 37, Hq: 2, Hkv: 2, D: 256 }, { dtype, device, mask: rangeMask(37, [[5, 37], [0, 30]]) }, tol);
      check({ B: 1, S: 45, Hq: 3, Hkv: 3, D: 13 }, { dtype, device, scale: -0.4 }, tol);
    });

  test('the same results as the CPU; rows and keys with nothing to attend give exact zeros', () => {
    const d = { B: 2, S: 70, Hq: 4, Hkv: 2, D: 64 };
    const mask = rangeMask(70, [[10, 70], [0, 0]]);
    for (const dtype of ['float32', 'bfloat16'] as DType[]) {
      const c = { dtype, mask, causal: true };
      const cpu = run(d, c), gpu = run(d, { ...c, device: 'cuda' });
      const tol = dtype === 'float32' ? 1e-5 : 1e-2;
      for (const n of ['out', 'dq', 'dk', 'dv'] as const) expectClose(gpu[n], cpu[n], tol, `${dtype} ${n}`);
      expectLse(gpu.lse, Float64Array.from(cpu.lse), 1e-5, `${dtype} lse`);
      const half = 70 * 4 * 64;
      expect(gpu.out.subarray(half).every((x) => x === 0)).toBe(true);
      expect(gpu.dq.subarray(half).every((x) => x === 0)).toBe(true);
      expect(gpu.dk.subarray(70 * 2 * 64).every((x) => x === 0)).toBe(true);
      expect(gpu.dv.subarray(0, 10 * 2 * 64).every((x) => x === 0)).toBe(true);
    }
  });

  test('devices must agree (DEVICE_MISMATCH), also past TypeScript', () => {
    const q = zeros([1, 4, 2, 8], { device: 'cuda' }), k = zeros([1, 4, 1, 8], { device: 'cuda' });
    expectCode(() => ops.attention(q.to('cpu'), k, k.to('cpu')), 'DEVICE_MISMATCH');
    const out = zeros([1, 4, 2, 8]), lse = zeros([1, 2, 4], { device: 'cuda' });
    const n = native as unknown as { attentionForward(...a: unknown[]): void };
    expectCode(() => n.attentionForward(q.nat(), k.nat(), k.nat(), null, out.nat(), lse.nat(), false, 0.5), 'DEVICE_MISMATCH', /attention_forward: q on cuda:0, out on cpu/);
    for (const t of [q, k, out, lse]) t.dispose();
  });
});

test('relErr sanity: NaN never passes', () => {
  expect(relErr([NaN], [1])).toBe(Infinity);
});
