// ops.crossEntropy / crossEntropyBackward (fused with the output projection, chunked over
// the vocabulary) against a float64 reference; the reference's gradients against central
// finite differences; odd sizes, chunks smaller than V and not dividing it, several token
// blocks, ignored rows (some, all), bias, mean / sum, frozen head, tied weights, 16-bit
// storage, every CPU level, poisoned outputs, error codes.
import { ops, setCpuIsa, getCpuIsa, Tensor, DType, getNumThreads, setNumThreads, tensor } from '../src';
import { describeGpu, expectClose, expectCode, finiteDiff, hostRandom, relErr } from './helpers';
import { cpuLevels, disposeAll, HALF_ULP, intTensor, poisonOutputs, randInts, randTensor } from './train-util';

poisonOutputs();

interface Ref {
  loss: number;
  lse: Float64Array;
  dH: Float64Array;
  dW: Float64Array;
  dB: Float64Array;
}

/** float64 cross-entropy of logits = h·wᵀ + b, and its analytic gradients. */
function refXent(
  h: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null, t: ArrayLike<number>,
  N: number, H: number, V: number, o: { ignore?: number; sum?: boolean; gradLoss?: number } = {},
): Ref {
  const ignore = o.ignore ?? -100, gradLoss = o.gradLoss ?? 1;
  const lse = new Float64Array(N), dH = new Float64Array(N * H), dW = new Float64Array(V * H), dB = new Float64Array(V);
  let count = 0;
  for (let n = 0; n < N; n++) if (t[n] !== ignore) count++;
  const s = o.sum ? gradLoss : count > 0 ? gradLoss / count : 0;
  let total = 0;
  const logits = new Float64Array(V);
  for (let n = 0; n < N; n++) {
    if (t[n] === ignore) continue;
    let mx = -Infinity;
    for (let v = 0; v < V; v++) {
      let acc = b ? b[v] : 0;
      for (let k = 0; k < H; k++) acc += h[n * H + k] * w[v * H + k];
      logits[v] = acc;
      mx = Math.max(mx, acc);
    }
    let se = 0;
    for (let v = 0; v < V; v++) se += Math.exp(logits[v] - mx);
    lse[n] = mx + Math.log(se);
    total += lse[n] - logits[t[n]];
    for (let v = 0; v < V; v++) {
      const d = s * (Math.exp(logits[v] - lse[n]) - (v === t[n] ? 1 : 0));
      dB[v] += d;
      for (let k = 0; k < H; k++) {
        dH[n * H + k] += d * w[v * H + k];
        dW[v * H + k] += d * h[n * H + k];
      }
    }
  }
  const loss = o.sum ? total : count > 0 ? total / count : 0;
  return { loss, lse, dH, dW, dB };
}

interface Case {
  N: number;
  H: number;
  V: number;
  chunk?: number;
  bias?: boolean;
  ignoreFrac?: number;
  sum?: boolean;
  gradLoss?: number;
  ignore?: number;
  dtype?: DType;
  wdtype?: DType;
  needW?: boolean;
  scale?: number;
}

let seed = 1000;
function run(c: Case): void {
  const { N, H, V } = c;
  const dtype = c.dtype ?? 'float32', wdtype = c.wdtype ?? dtype;
  const scale = c.scale ?? 1;
  const h = randTensor([N, H], seed++, dtype, scale), w = randTensor([V, H], seed++, wdtype, scale);
  const b = c.bias ? randTensor([V], seed++, wdtype) : null;
  const ignore = c.ignore ?? -100;
  const tg = randInts(N, V, seed++);
  const drop = hostRandom(N, seed++);
  for (let n = 0; n < N; n++) if ((drop[n] + 1) / 2 < (c.ignoreFrac ?? 0)) tg[n] = ignore;
  const t = intTensor(tg, [N]);
  const opts = { chunkSize: c.chunk, bias: b?.t, reduction: c.sum ? ('sum' as const) : ('mean' as const), ignoreIndex: c.ignore };
  const ref = refXent(h.host, w.host, b?.host ?? null, tg, N, H, V, { ignore, sum: c.sum, gradLoss: c.gradLoss });
  const what = JSON.stringify(c);
  const { loss, lse } = ops.crossEntropy(h.t, w.t, t, opts);
  expect(loss.shape).toEqual([]);
  expect(lse.shape).toEqual([N]);
  // Inputs are exactly the stored values and the arithmetic is float32: 1e-5.
  expectClose([loss.item()], [ref.loss], 1e-5, `${what} loss`);
  expectClose(lse.toArray(), ref.lse, 1e-5, `${what} lse`);
  const g = ops.crossEntropyBackward(h.t, w.t, t, lse, { ...opts, gradLoss: c.gradLoss, needWeightGrad: c.needW });
  // dHidden is stored in hidden's dtype: one rounding (half an ulp) on top of float32 error.
  expect(g.dHidden.dtype).toBe(dtype);
  expectClose(g.dHidden.toArray(), ref.dH, 1e-5 + 2 * HALF_ULP[dtype], `${what} dHidden`);
  if (c.needW === false) expect(g.dWeight).toBeNull();
  else {
    expect(g.dWeight!.dtype).toBe('float32');
    expectClose(g.dWeight!.toArray(), ref.dW, 1e-5, `${what} dWeight`);
  }
  if (b) expectClose(g.dBias!.toArray(), ref.dB, 1e-5, `${what} dBias`);
  else expect(g.dBias).toBeNull();
  disposeAll(h.t, w.t, b?.t, t, loss, lse, g.dHidden, g.dWeight, g.dBias);
}

describe('float64 reference gradients vs central finite differences', () => {
  const N = 4, H = 3, V = 5;
  const h = Float64Array.from(hostRandom(N * H, 1), (x) => 2 * x);
  const w = Float64Array.from(hostRandom(V * H, 2), (x) => 2 * x);
  const b = Float64Array.from(hostRandom(V, 3));
  const t = [2, -100, 4, 0];
  for (const sum of [false, true])
    test(`reduction ${sum ? 'sum' : 'mean'}, bias, an ignored row, gradLoss 1.5`, () => {
      const o = { sum, gradLoss: 1.5 };
      const ref = refXent(h, w, b, t, N, H, V, o);
      const f = (hh: Float64Array, ww: Float64Array, bb: Float64Array) => 1.5 * refXent(hh, ww, bb, t, N, H, V, o).loss;
      expectClose(ref.dH, finiteDiff((x) => f(x, w, b), h), 1e-7, 'dH');
      expectClose(ref.dW, finiteDiff((x) => f(h, x, b), w), 1e-7, 'dW');
      expectClose(ref.dB, finiteDiff((x) => f(h, w, x), b), 1e-7, 'dB');
    });
  test('tied weights: d/dE of loss(E[ids] · Eᵀ) = scatter(dH) + dW', () => {
    const ids = [3, 1, 3, 0];
    const E = Float64Array.from(hostRandom(V * H, 4));
    const f = (e: Float64Array) => {
      const hh = new Float64Array(N * H);
      ids.forEach((id, n) => hh.set(e.subarray(id * H, id * H + H), n * H));
      return refXent(hh, e, null, t, N, H, V).loss;
    };
    const hh = new Float64Array(N * H);
    ids.forEach((id, n) => hh.set(E.subarray(id * H, id * H + H), n * H));
    const ref = refXent(hh, E, null, t, N, H, V);
    const dE = Float64Array.from(ref.dW);
    ids.forEach((id, n) => {
      for (let k = 0; k < H; k++) dE[id * H + k] += ref.dH[n * H + k];
    });
    expectClose(dE, finiteDiff(f, E), 1e-7, 'dE');
  });
});

describe('crossEntropy vs float64 reference', () => {
  const best = getCpuIsa();
  afterAll(() => setCpuIsa(best));
  for (const isa of cpuLevels()) {
    describe(isa, () => {
      beforeAll(() => setCpuIsa(isa));
      test('N 1, H 7, V 1 (one class: loss 0)', () => run({ N: 1, H: 7, V: 1 }));
      test('N 37, H 40, V 37, chunk 16 (3 chunks, the last short), bias', () => run({ N: 37, H: 40, V: 37, chunk: 16, bias: true }));
      test('N 97, H 65, V 1000, chunk 300 (4 chunks, not dividing V), some ignored', () =>
        run({ N: 97, H: 65, V: 1000, chunk: 300, ignoreFrac: 0.3 }));
      test('N 97, H 7, V 1000, default chunk, sum, gradLoss 2.5, bias', () =>
        run({ N: 97, H: 7, V: 1000, sum: true, gradLoss: 2.5, bias: true }));
      test('N 600 (two token blocks), H 40, V 101, chunk 33, some ignored, bias', () =>
        run({ N: 600, H: 40, V: 101, chunk: 33, ignoreFrac: 0.2, bias: true }));
      test('frozen head (needWeightGrad false), ignoreIndex 0 is a class id that gets ignored', () => {
        run({ N: 37, H: 65, V: 37, chunk: 7, needW: false, bias: true });
        run({ N: 37, H: 40, V: 37, chunk: 7, ignore: 0 });
      });
      test('large logits (scale 4: |logit| up to ~100) stay finite and exact', () =>
        run({ N: 37, H: 40, V: 200, chunk: 64, scale: 4 }));
      test('all rows ignored: loss 0 (mean and sum), lse 0, zero gradients', () => {
        for (const sum of [false, true]) run({ N: 37, H: 7, V: 37, chunk: 16, ignoreFrac: 1.1, sum, bias: true });
      });
    });
  }

  test('past the GEMM cache blocks: H 520 > kc, default chunks of 2112 rows > mc, mixed dtypes', () => {
    run({ N: 5, H: 520, V: 4200, dtype: 'float32', wdtype: 'bfloat16', bias: true });
  });

  test('1 and 3 threads (one slab; uneven slabs)', () => {
    const was = getNumThreads();
    try {
      for (const n of [1, 3]) {
        setNumThreads(n);
        run({ N: 97, H: 40, V: 1000, chunk: 100, bias: true, ignoreFrac: 0.2 });
        run({ N: 600, H: 7, V: 37, chunk: 8 });
      }
    } finally {
      setNumThreads(was);
    }
  });

  test('hidden [B,S,H] with targets [B,S]: same as the flattened call', () => {
    const h = randTensor([3, 5, 16], 11), w = randTensor([50, 16], 12);
    const tg = randInts(15, 50, 13);
    tg[4] = -100;
    const t3 = intTensor(tg, [3, 5]), t1 = intTensor(tg, [15]);
    const a = ops.crossEntropy(h.t, w.t, t3, { chunkSize: 16 });
    expect(a.lse.shape).toEqual([3, 5]);
    const ref = refXent(h.host, w.host, null, tg, 15, 16, 50);
    expectClose([a.loss.item()], [ref.loss], 1e-5, 'loss');
    const g = ops.crossEntropyBackward(h.t, w.t, t3, a.lse, { chunkSize: 16 });
    expect(g.dHidden.shape).toEqual([3, 5, 16]);
    expectClose(g.dHidden.toArray(), ref.dH, 1e-5, 'dHidden');
    expectClose(g.dWeight!.toArray(), ref.dW, 1e-5, 'dWeight');
    disposeAll(h.t, w.t, t3, t1, a.loss, a.lse, g.dHidden, g.dWeight);
  });

  test('tied weights: embedding -> crossEntropy, dE = embeddingBackward(dHidden) + dWeight', () => {
    const V = 61, H = 24, N = 40;
    const E = randTensor([V, H], 21);
    const ids = randInts(N, V, 22), tg = randInts(N, V, 23);
    tg[3] = -100;
    const idsT = intTensor(ids, [N]), t = intTensor(tg, [N]);
    const hidden = ops.embedding(E.t, idsT);
    const { loss, lse } = ops.crossEntropy(hidden, E.t, t, { chunkSize: 20 });
    const g = ops.crossEntropyBackward(hidden, E.t, t, lse, { chunkSize: 20 });
    const dEmb = ops.embeddingBackward(g.dHidden, idsT, V);
    const got = dEmb.toArray().map((x, i) => x + g.dWeight!.toArray()[i]);
    const hh = new Float64Array(N * H);
    ids.forEach((id, n) => hh.set(E.host.subarray(id * H, id * H + H), n * H));
    const ref = refXent(hh, E.host, null, tg, N, H, V);
    const dE = Float64Array.from(ref.dW);
    ids.forEach((id, n) => {
      for (let k = 0; k < H; k++) dE[id * H + k] += ref.dH[n * H + k];
    });
    expectClose([loss.item()], [ref.loss], 1e-5, 'loss');
    expectClose(got, dE, 1e-5, 'dE');
    disposeAll(E.t, idsT, t, hidden, loss, lse, g.dHidden, g.dWeight, dEmb);
  });

  test('deterministic: the same call gives the same bits', () => {
    const h = randTensor([97, 40], 31), w = randTensor([500, 40], 32);
    const t = intTensor(randInts(97, 500, 33), [97]);
    const r1 = ops.crossEntropy(h.t, w.t, t, { chunkSize: 64 }), r2 = ops.crossEntropy(h.t, w.t, t, { chunkSize: 64 });
    expect(r1.loss.item()).toBe(r2.loss.item());
    const g1 = ops.crossEntropyBackward(h.t, w.t, t, r1.lse, { chunkSize: 64 });
    const g2 = ops.crossEntropyBackward(h.t, w.t, t, r1.lse, { chunkSize: 64 });
    expect(Buffer.from(g1.dHidden.toArray().buffer).equals(Buffer.from(g2.dHidden.toArray().buffer))).toBe(true);
    expect(Buffer.from(g1.dWeight!.toArray().buffer).equals(Buffer.from(g2.dWeight!.toArray().buffer))).toBe(true);
    disposeAll(h.t, w.t, t, r1.loss, r1.lse, r2.loss, r2.lse, g1.dHidden, g1.dWeight, g2.dHidden, g2.dWeight);
  });

  test('gradLoss as a one-element tensor', () => {
    const h = randTensor([7, 8], 41), w = randTensor([9, 8], 42);
    const tg = randInts(7, 9, 43), t = intTensor(tg, [7]);
    const { loss, lse } = ops.crossEntropy(h.t, w.t, t);
    const gl = randTensor([1], 44);
    const g = ops.crossEntropyBackward(h.t, w.t, t, lse, { gradLoss: gl.t });
    const ref = refXent(h.host, w.host, null, tg, 7, 8, 9, { gradLoss: gl.host[0] });
    expectClose(g.dHidden.toArray(), ref.dH, 1e-5, 'dHidden');
    disposeAll(h.t, w.t, t, loss, lse, gl.t, g.dHidden, g.dWeight);
  });

  test('NaN in hidden gives a NaN loss, never a silent number', () => {
    const h = randTensor([3, 4], 51), w = randTensor([5, 4], 52);
    const v = h.t.view() as Float32Array;
    v[5] = NaN;
    const t = intTensor([1, 2, 3], [3]);
    const { loss, lse } = ops.crossEntropy(h.t, w.t, t, { chunkSize: 2 });
    expect(loss.item()).toBeNaN();
    expect(lse.toArray()[1]).toBeNaN();
    disposeAll(h.t, w.t, t, loss, lse);
  });
});

describe('crossEntropy with 16-bit storage', () => {
  // Inputs are rounded to bf16/f16 first and the reference uses the rounded values, so
  // loss, lse, dWeight and dBias (float32 outputs, float32 arithmetic) keep 1e-5; dHidden is
  // stored in hidden's dtype, which adds half an ulp per element: 2^-9 (bf16), 2^-12 (f16).
  for (const dtype of ['bfloat16', 'float16'] as DType[]) {
    test(`${dtype} hidden and weight, bias, ignored rows`, () =>
      run({ N: 97, H: 65, V: 300, chunk: 128, dtype, bias: true, ignoreFrac: 0.3 }));
    test(`${dtype} hidden with a float32 head, and float32 hidden with a ${dtype} head`, () => {
      run({ N: 37, H: 40, V: 100, chunk: 48, dtype, wdtype: 'float32' });
      run({ N: 37, H: 40, V: 100, chunk: 48, dtype: 'float32', wdtype: dtype });
    });
  }
});

describe('crossEntropy errors', () => {
  const h = randTensor([4, 8], 61).t, w = randTensor([10, 8], 62).t;
  const t = intTensor([1, 2, -100, 9], [4]);
  afterAll(() => disposeAll(h, w, t));
  test('targets outside [0, V) other than ignoreIndex', () => {
    const bad = intTensor([1, 10, 2, 3], [4]);
    expectCode(() => ops.crossEntropy(h, w, bad), 'INVALID_ARGUMENT', /targets\[1\] = 10 is outside \[0, 10\)/);
    const neg = intTensor([1, 2, -5, 3], [4]);
    expectCode(() => ops.crossEntropy(h, w, neg), 'INVALID_ARGUMENT', /targets\[2\] = -5/);
    expectCode(() => ops.crossEntropy(h, w, t, { ignoreIndex: -1 }), 'INVALID_ARGUMENT', /targets\[2\] = -100/);
    const { lse } = ops.crossEntropy(h, w, t);
    expectCode(() => ops.crossEntropyBackward(h, w, bad, lse), 'INVALID_ARGUMENT', /targets\[1\]/);
    disposeAll(bad, neg, lse);
  });
  test('shapes, dtypes, options', () => {
    expectCode(() => ops.crossEntropy(h, randTensor([10, 7], 63).t, t), 'SHAPE_MISMATCH', /same H/);
    expectCode(() => ops.crossEntropy(h, w, intTensor([1, 2, 3], [3])), 'SHAPE_MISMATCH', /targets/);
    expectCode(() => ops.crossEntropy(h, w, randTensor([4], 64).t), 'DTYPE_MISMATCH', /targets float32\[4\] must be int32/);
    expectCode(() => ops.crossEntropy(intTensor([1, 2], [1, 2]), w, t), 'DTYPE_MISMATCH', /hidden/);
    expectCode(() => ops.crossEntropy(h, w, t, { bias: randTensor([9], 65).t }), 'SHAPE_MISMATCH', /bias float32\[9\] must be \[10\]/);
    expectCode(() => ops.crossEntropy(h, w, t, { reduction: 'none' as 'sum' }), 'INVALID_ARGUMENT', /reduction/);
    expectCode(() => ops.crossEntropy(h, w, t, { chunkSize: 0 }), 'INVALID_ARGUMENT', /chunkSize/);
    expectCode(() => ops.crossEntropy(h, randTensor([10], 66).t, t), 'SHAPE_MISMATCH', /weight/);
    const { loss, lse } = ops.crossEntropy(h, w, t);
    expectCode(() => ops.crossEntropyBackward(h, w, t, loss), 'SHAPE_MISMATCH', /lse/);
    expectCode(() => ops.crossEntropyBackward(h, w, t, lse, { gradLoss: NaN }), 'INVALID_ARGUMENT', /gradLoss/);
    expectCode(() => ops.crossEntropyBackward(h, w, t, intTensor([0, 0, 0, 0], [4])), 'DTYPE_MISMATCH', /lse/);
    const d = randTensor([4, 8], 67).t;
    d.dispose();
    expectCode(() => ops.crossEntropy(d, w, t), 'DISPOSED');
    expectCode(() => ops.crossEntropy(h, w, 'x' as unknown as Tensor), 'INVALID_ARGUMENT', /targets is not a Tensor/);
    disposeAll(loss, lse);
  });
  test('empty N: loss 0, empty lse', () => {
    const e = randTensor([0, 8], 68).t, te = intTensor([], [0]);
    const { loss, lse } = ops.crossEntropy(e, w, te);
    expect(loss.item()).toBe(0);
    expect(lse.shape).toEqual([0]);
    const g = ops.crossEntropyBackward(e, w, te, lse, { bias: null });
    expect(g.dHidden.shape).toEqual([0, 8]);
    expect(relErr(g.dWeight!.toArray(), new Float32Array(80))).toBe(0);
    disposeAll(e, te, loss, lse, g.dHidden, g.dWeight);
  });
});

describeGpu('crossEntropy on CUDA tensors', () => {
  // float32: both sides accumulate float32 GEMMs in different orders (~1e-7 relative);
  // 16-bit storage: dHidden is rounded once on each side (a few half-ulps apart).
  const tol: Record<string, number> = { float32: 1e-5, bfloat16: 4 * HALF_ULP.bfloat16, float16: 4 * HALF_ULP.float16 };
  for (const dtype of ['float32', 'bfloat16'] as DType[])
    test(`${dtype}: loss, lse and every gradient as on the CPU (chunks not dividing V, ignored rows, bias)`, () => {
      const N = 37, H = 65, V = 1000;
      const h = randTensor([N, H], 51, dtype), w = randTensor([V, H], 52, dtype, 0.5), b = randTensor([V], 53, dtype);
      const t = randInts(N, V, 54);
      for (let i = 0; i < N; i += 4) t[i] = -100;
      const targets = intTensor(t, [N]);
      const [hg, wg, bg, tg] = [h.t, w.t, b.t, targets].map((x) => x.to('cuda'));
      const o = { bias: b.t, chunkSize: 300 }, og = { bias: bg, chunkSize: 300 };
      const cpu = ops.crossEntropy(h.t, w.t, targets, o), gpu = ops.crossEntropy(hg, wg, tg, og);
      expect(gpu.loss.device).toBe('cuda:0');
      expect(relErr(gpu.loss.toArray(), cpu.loss.toArray())).toBeLessThan(1e-5);
      expect(relErr(gpu.lse.toArray(), cpu.lse.toArray())).toBeLessThan(1e-5);
      // gradLoss as a one-element tensor on the device (float32 0.37: 1e-8 from the CPU's 0.37).
      const gl = tensor(new Float32Array([0.37]), []).to('cuda');
      const gc = ops.crossEntropyBackward(h.t, w.t, targets, cpu.lse, { ...o, gradLoss: 0.37 });
      const gg = ops.crossEntropyBackward(hg, wg, tg, gpu.lse, { ...og, gradLoss: gl });
      expect(relErr(gg.dHidden.toArray(), gc.dHidden.toArray())).toBeLessThan(tol[dtype]);
      expect(relErr(gg.dWeight!.toArray(), gc.dWeight!.toArray())).toBeLessThan(1e-5);
      expect(relErr(gg.dBias!.toArray(), gc.dBias!.toArray())).toBeLessThan(1e-5);
      disposeAll(h.t, w.t, b.t, targets, hg, wg, bg, tg, gl, cpu.loss, cpu.lse, gpu.loss, gpu.lse);
      disposeAll(gc.dHidden, gc.dWeight, gc.dBias, gg.dHidden, gg.dWeight, gg.dBias);
    });
  test('a bad target is INVALID_ARGUMENT as on the CPU; all rows ignored gives loss 0 and zero gradients', () => {
    const h = randTensor([3, 4], 55).t.to('cuda'), w = randTensor([5, 4], 56).t.to('cuda');
    const bad = intTensor([1, 5, 0], [3]).to('cuda');
    expectCode(() => ops.crossEntropy(h, w, bad), 'INVALID_ARGUMENT', /targets\[1\] = 5 is outside \[0, 5\)/);
    const ignored = intTensor([-100, -100, -100], [3]).to('cuda');
    const r = ops.crossEntropy(h, w, ignored);
    expect(r.loss.item()).toBe(0);
    const g = ops.crossEntropyBackward(h, w, ignored, r.lse);
    expect(Array.from(g.dHidden.toArray()).every((x) => x === 0)).toBe(true);
    expect(Array.from(g.dWeight!.toArray()).every((x) => x === 0)).toBe(true);
    disposeAll(h, w, bad, ignored, r.loss, r.lse, g.dHidden, g.dWeight);
  });
});
