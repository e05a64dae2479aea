// Layers: the row ops over the last dim (rmsNorm, layerNorm, l2Normalize, softmax) and
// maskedMeanPool, forward and backward, against float64 references whose gradients are
// themselves checked by central finite differences; odd sizes, every CPU level,
// bfloat16 / float16 storage, poisoned outputs, error codes.
import { ops, tensor, DType, setCpuIsa, getCpuIsa, Tensor } from '../src';
import { setPoisonOutputs } from '../src/tensor';
import { expectCode, finiteDiff, hostRandom, relErr } from './helpers';
import { TOL32, close, closeScaled, disposeAll, dot, fromHost, host, isas, norm, rnd, tolFor } from './layers-ref';

let seed = 5000;
const next = () => seed++;

beforeAll(() => setPoisonOutputs(true));
afterAll(() => setPoisonOutputs(false));

const ROWS = [1, 37, 97];
const DIMS = [1, 7, 40, 65, 128];

// ---- float64 references ----

function refRms(x: Float64Array, w: Float64Array | null, rows: number, D: number, eps: number) {
  const y = new Float64Array(x.length), rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const xr = x.subarray(r * D, (r + 1) * D);
    const rs = 1 / Math.sqrt(dot(xr, xr) / D + eps);
    rstd[r] = rs;
    for (let i = 0; i < D; i++) y[r * D + i] = xr[i] * rs * (w ? w[i] : 1);
  }
  return { y, rstd };
}
function refRmsBackward(dy: Float64Array, x: Float64Array, w: Float64Array | null, rows: number, D: number, eps: number) {
  const dx = new Float64Array(x.length), dw = new Float64Array(D);
  for (let r = 0; r < rows; r++) {
    const xr = x.subarray(r * D, (r + 1) * D), dyr = dy.subarray(r * D, (r + 1) * D);
    const rs = 1 / Math.sqrt(dot(xr, xr) / D + eps);
    let c = 0;
    for (let i = 0; i < D; i++) c += dyr[i] * (w ? w[i] : 1) * xr[i];
    c /= D;
    for (let i = 0; i < D; i++) {
      dx[r * D + i] = rs * (dyr[i] * (w ? w[i] : 1) - xr[i] * rs * rs * c);
      dw[i] += dyr[i] * xr[i] * rs;
    }
  }
  return { dx, dw };
}

function refLn(x: Float64Array, w: Float64Array | null, b: Float64Array | null, rows: number, D: number, eps: number) {
  const y = new Float64Array(x.length), mean = new Float64Array(rows), rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const xr = x.subarray(r * D, (r + 1) * D);
    const mu = xr.reduce((s, v) => s + v, 0) / D;
    const vr = xr.reduce((s, v) => s + (v - mu) ** 2, 0) / D;
    const rs = 1 / Math.sqrt(vr + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let i = 0; i < D; i++) y[r * D + i] = (xr[i] - mu) * rs * (w ? w[i] : 1) + (b ? b[i] : 0);
  }
  return { y, mean, rstd };
}
function refLnBackward(dy: Float64Array, x: Float64Array, w: Float64Array | null, rows: number, D: number, eps: number) {
  const dx = new Float64Array(x.length), dw = new Float64Array(D), db = new Float64Array(D);
  const { mean, rstd } = refLn(x, null, null, rows, D, eps);
  for (let r = 0; r < rows; r++) {
    let mg = 0, mgx = 0;
    for (let i = 0; i < D; i++) {
      const g = dy[r * D + i] * (w ? w[i] : 1), xh = (x[r * D + i] - mean[r]) * rstd[r];
      mg += g / D;
      mgx += (g * xh) / D;
    }
    for (let i = 0; i < D; i++) {
      const g = dy[r * D + i] * (w ? w[i] : 1), xh = (x[r * D + i] - mean[r]) * rstd[r];
      dx[r * D + i] = rstd[r] * (g - mg - xh * mgx);
      dw[i] += dy[r * D + i] * xh;
      db[i] += dy[r * D + i];
    }
  }
  return { dx, dw, db };
}

function refL2n(x: Float64Array, rows: number, D: number, eps: number) {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    const xr = x.subarray(r * D, (r + 1) * D);
    const n = Math.max(Math.sqrt(dot(xr, xr)), eps);
    for (let i = 0; i < D; i++) y[r * D + i] = xr[i] / n;
  }
  return y;
}
function refL2nBackward(dy: Float64Array, x: Float64Array, rows: number, D: number, eps: number) {
  const dx = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    const xr = x.subarray(r * D, (r + 1) * D), dyr = dy.subarray(r * D, (r + 1) * D);
    const n = Math.sqrt(dot(xr, xr));
    if (n >= eps) {
      const yd = dot(xr, dyr) / n;
      for (let i = 0; i < D; i++) dx[r * D + i] = (dyr[i] - (xr[i] / n) * yd) / n;
    } else for (let i = 0; i < D; i++) dx[r * D + i] = dyr[i] / eps;
  }
  return dx;
}

function refSoftmax(x: Float64Array, rows: number, D: number) {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let i = 0; i < D; i++) m = Math.max(m, x[r * D + i]);
    let s = 0;
    for (let i = 0; i < D; i++) s += (y[r * D + i] = Math.exp(x[r * D + i] - m));
    for (let i = 0; i < D; i++) y[r * D + i] /= s;
  }
  return y;
}
function refSoftmaxBackward(dy: Float64Array, y: Float64Array, rows: number, D: number) {
  const dx = new Float64Array(y.length);
  for (let r = 0; r < rows; r++) {
    const s = dot(dy.subarray(r * D, (r + 1) * D), y.subarray(r * D, (r + 1) * D));
    for (let i = 0; i < D; i++) dx[r * D + i] = y[r * D + i] * (dy[r * D + i] - s);
  }
  return dx;
}

function poolWeights(mask: ArrayLike<number>, isInt: boolean, B: number, S: number) {
  const w = Float64Array.from(mask, (m) => (isInt ? (m !== 0 ? 1 : 0) : m));
  const sums = new Float64Array(B);
  for (let b = 0; b < B; b++) for (let s = 0; s < S; s++) sums[b] += w[b * S + s];
  return { w, sums };
}
function refPool(h: Float64Array, mask: ArrayLike<number>, isInt: boolean, B: number, S: number, H: number) {
  const { w, sums } = poolWeights(mask, isInt, B, S);
  const out = new Float64Array(B * H);
  for (let b = 0; b < B; b++) {
    if (sums[b] === 0) continue;
    for (let s = 0; s < S; s++) for (let i = 0; i < H; i++) out[b * H + i] += (w[b * S + s] * h[(b * S + s) * H + i]) / sums[b];
  }
  return out;
}
function refPoolBackward(dy: Float64Array, mask: ArrayLike<number>, isInt: boolean, B: number, S: number, H: number) {
  const { w, sums } = poolWeights(mask, isInt, B, S);
  const dh = new Float64Array(B * S * H);
  for (let b = 0; b < B; b++) {
    if (sums[b] === 0) continue;
    for (let s = 0; s < S; s++) for (let i = 0; i < H; i++) dh[(b * S + s) * H + i] = (w[b * S + s] / sums[b]) * dy[b * H + i];
  }
  return dh;
}

/** Σ g·f(x): the scalar whose gradient a backward computes for cotangent g. */
const loss = (y: Float64Array, g: Float64Array) => dot(y, g);

describe('float64 reference gradients match finite differences', () => {
  const rows = 3, D = 5, eps = 1e-5;
  const x = () => Float64Array.from(hostRandom(rows * D, next()));
  const g = Float64Array.from(hostRandom(rows * D, 77));
  test('rmsNorm (x and weight)', () => {
    const xv = x(), w = Float64Array.from(hostRandom(D, next()));
    const ref = refRmsBackward(g, xv, w, rows, D, eps);
    expect(relErr(ref.dx, finiteDiff((t) => loss(refRms(t, w, rows, D, eps).y, g), xv))).toBeLessThan(1e-6);
    expect(relErr(ref.dw, finiteDiff((t) => loss(refRms(xv, t, rows, D, eps).y, g), w))).toBeLessThan(1e-6);
  });
  test('layerNorm (x, weight, bias)', () => {
    const xv = x(), w = Float64Array.from(hostRandom(D, next())), b = Float64Array.from(hostRandom(D, next()));
    const ref = refLnBackward(g, xv, w, rows, D, eps);
    expect(relErr(ref.dx, finiteDiff((t) => loss(refLn(t, w, b, rows, D, eps).y, g), xv))).toBeLessThan(1e-6);
    expect(relErr(ref.dw, finiteDiff((t) => loss(refLn(xv, t, b, rows, D, eps).y, g), w))).toBeLessThan(1e-6);
    expect(relErr(ref.db, finiteDiff((t) => loss(refLn(xv, w, t, rows, D, eps).y, g), b))).toBeLessThan(1e-6);
  });
  test('l2Normalize (above eps, and clamped by a large eps)', () => {
    const xv = x();
    expect(relErr(refL2nBackward(g, xv, rows, D, 1e-12), finiteDiff((t) => loss(refL2n(t, rows, D, 1e-12), g), xv))).toBeLessThan(1e-6);
    expect(relErr(refL2nBackward(g, xv, rows, D, 10), finiteDiff((t) => loss(refL2n(t, rows, D, 10), g), xv))).toBeLessThan(1e-6);
  });
  test('softmax', () => {
    const xv = x();
    const y = refSoftmax(xv, rows, D);
    expect(relErr(refSoftmaxBackward(g, y, rows, D), finiteDiff((t) => loss(refSoftmax(t, rows, D), g), xv))).toBeLessThan(1e-6);
  });
  test('maskedMeanPool (int mask and float weights)', () => {
    const B = 2, S = 3, H = 4;
    const h = Float64Array.from(hostRandom(B * S * H, next())), gy = Float64Array.from(hostRandom(B * H, next()));
    for (const [mask, isInt] of [[[1, 1, 0, 0, 1, 1], true], [[0.5, 1, 2, 1, 0, 3], false]] as [number[], boolean][]) {
      const ref = refPoolBackward(gy, mask, isInt, B, S, H);
      expect(relErr(ref, finiteDiff((t) => loss(refPool(t, mask, isInt, B, S, H), gy), h))).toBeLessThan(1e-6);
    }
  });
});

function checkRms(rows: number, D: number, o: { dtype?: DType; wdtype?: DType; weight?: boolean; eps?: number } = {}) {
  const dtype = o.dtype ?? 'float32', eps = o.eps ?? 1e-6;
  const x = rnd([rows, D], next(), dtype, 2), dy = rnd([rows, D], next(), dtype);
  const w = o.weight === false ? null : rnd([D], next(), o.wdtype ?? dtype);
  const what = `rmsNorm ${rows}x${D} ${dtype}`;
  const { y, rstd } = ops.rmsNorm(x.t, w ? w.t : null, o.eps === undefined ? undefined : { eps });
  expect(y.dtype).toBe(dtype);
  expect(rstd.dtype).toBe('float32');
  expect(rstd.shape).toEqual([rows]);
  const ref = refRms(x.h, w ? w.h : null, rows, D, eps);
  const tol = tolFor(dtype);
  close(host(y), ref.y, tol, what);
  close(host(rstd), ref.rstd, TOL32, `${what} rstd`);
  const g = ops.rmsNormBackward(dy.t, x.t, w ? w.t : null, rstd);
  const rb = refRmsBackward(dy.h, x.h, w ? w.h : null, rows, D, eps);
  // D = 1: dx = rstd g eps / (x^2 + eps), a cancellation of terms of size rstd g.
  if (D === 1) closeScaled(host(g.dx), rb.dx, norm(ref.rstd.map((r, i) => r * dy.h[i] * (w ? w.h[0] : 1))), tol, `${what} dx`);
  else close(host(g.dx), rb.dx, tol, `${what} dx`);
  if (w) {
    expect(g.dWeight!.dtype).toBe('float32');
    close(host(g.dWeight!), rb.dw, TOL32, `${what} dWeight`);
  } else expect(g.dWeight).toBeNull();
  disposeAll(x.t, dy.t, w?.t, y, rstd, g);
}

function checkLn(rows: number, D: number, o: { dtype?: DType; weight?: boolean; bias?: boolean; eps?: number } = {}) {
  const dtype = o.dtype ?? 'float32', eps = o.eps ?? 1e-5;
  // An offset so that the mean matters (and the two-pass variance does).
  const x = rnd([rows, D], next(), dtype, 3, 2);
  const dy = rnd([rows, D], next(), dtype);
  const w = o.weight === false ? null : rnd([D], next(), dtype), b = o.bias === false ? null : rnd([D], next(), dtype);
  const what = `layerNorm ${rows}x${D} ${dtype} w=${!!w} b=${!!b}`;
  const { y, mean, rstd } = ops.layerNorm(x.t, w ? w.t : null, b ? b.t : null, o.eps === undefined ? undefined : { eps });
  const ref = refLn(x.h, w ? w.h : null, b ? b.h : null, rows, D, eps);
  const tol = tolFor(dtype);
  close(host(y), ref.y, tol, what);
  close(host(mean), ref.mean, TOL32, `${what} mean`);
  close(host(rstd), ref.rstd, TOL32, `${what} rstd`);
  const g = ops.layerNormBackward(dy.t, x.t, w ? w.t : null, mean, rstd);
  const rb = refLnBackward(dy.h, x.h, w ? w.h : null, rows, D, eps);
  // D = 1: dx = rstd (g - mean(g)) = 0 exactly; float32 (FMA contraction) leaves u · rstd g.
  if (D === 1) closeScaled(host(g.dx), rb.dx, norm(ref.rstd.map((r, i) => r * dy.h[i] * (w ? w.h[0] : 1))), tol, `${what} dx`);
  else close(host(g.dx), rb.dx, tol, `${what} dx`);
  close(host(g.dBias), rb.db, TOL32, `${what} dBias`);
  if (w) close(host(g.dWeight!), rb.dw, TOL32, `${what} dWeight`);
  else expect(g.dWeight).toBeNull();
  disposeAll(x.t, dy.t, w?.t, b?.t, y, mean, rstd, g);
}

function checkL2n(rows: number, D: number, dtype: DType = 'float32', eps = 1e-12) {
  const x = rnd([rows, D], next(), dtype), dy = rnd([rows, D], next(), dtype);
  const opts = eps === 1e-12 ? undefined : { eps };
  const y = ops.l2Normalize(x.t, opts);
  close(host(y), refL2n(x.h, rows, D, eps), tolFor(dtype), `l2Normalize ${rows}x${D} ${dtype}`);
  const dx = ops.l2NormalizeBackward(dy.t, x.t, opts);
  const rb = refL2nBackward(dy.h, x.h, rows, D, eps);
  // D = 1: dx = (dy - y (y dy)) / n = 0 exactly (above eps), from terms of size dy / n.
  if (D === 1) closeScaled(host(dx), rb, norm(dy.h.map((v, i) => v / Math.max(Math.abs(x.h[i]), eps))), tolFor(dtype), `l2NormalizeBackward ${rows}x${D}`);
  else close(host(dx), rb, tolFor(dtype), `l2NormalizeBackward ${rows}x${D} ${dtype}`);
  disposeAll(x.t, dy.t, y, dx);
}

function checkSoftmax(rows: number, D: number, dtype: DType = 'float32', scale = 4) {
  const x = rnd([rows, D], next(), dtype, scale), dy = rnd([rows, D], next(), dtype);
  const y = ops.softmax(x.t);
  close(host(y), refSoftmax(x.h, rows, D), tolFor(dtype), `softmax ${rows}x${D} ${dtype}`);
  // The backward takes y as stored (rounded for 16-bit dtypes): the reference uses it too.
  const yh = host(y);
  const dx = ops.softmaxBackward(dy.t, y);
  close(host(dx), refSoftmaxBackward(dy.h, yh, rows, D), tolFor(dtype), `softmaxBackward ${rows}x${D} ${dtype}`);
  disposeAll(x.t, dy.t, y, dx);
}

describe.each(isas())('row ops at %s', (isa) => {
  const best = getCpuIsa();
  beforeAll(() => setCpuIsa(isa));
  afterAll(() => setCpuIsa(best));

  test('rmsNorm forward / backward, odd sizes', () => {
    for (const rows of ROWS) for (const D of DIMS) checkRms(rows, D);
    checkRms(37, 65, { weight: false });
    checkRms(7, 40, { eps: 0.5 });
  });
  test('rmsNorm: many rows (several tasks, blocked dWeight partials) and a wide row', () => {
    checkRms(1000, 64);
    checkRms(64, 4096);
  });
  test('layerNorm forward / backward, odd sizes, with and without weight / bias', () => {
    for (const rows of ROWS) for (const D of DIMS) checkLn(rows, D);
    checkLn(37, 65, { weight: false });
    checkLn(37, 65, { bias: false });
    checkLn(37, 65, { weight: false, bias: false, eps: 1e-3 });
    checkLn(1000, 64);
    checkLn(257, 1025);
  });
  test('l2Normalize forward / backward', () => {
    for (const rows of ROWS) for (const D of DIMS) checkL2n(rows, D);
    checkL2n(37, 40, 'float32', 3); // rows clamped by eps (norms of ~3.6 and below)
  });
  test('softmax forward / backward', () => {
    for (const rows of ROWS) for (const D of DIMS) checkSoftmax(rows, D);
    checkSoftmax(37, 65, 'float32', 60); // large logits: the max subtraction matters
    checkSoftmax(200, 1000, 'float32', 8);
  });
  test('maskedMeanPool: right / left padding, all-zero rows, float weights', () => {
    const B = 5, S = 7;
    for (const H of [1, 40, 65, 128]) {
      const h = rnd([B, S, H], next());
      const masks: [number[], boolean][] = [
        [[1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], true], // right padded, empty row
        [[0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1], true], // left padded
        [Array.from({ length: B * S }, (_, i) => ((i % S) + 1) * (i % 3 === 0 ? 0 : 1)), false], // weights (LLM2Vec weighted mean)
        [Array.from({ length: B * S }, (_, i) => (i < S ? 0 : 0.5 + (i % 4))), false], // first row all zero weight
      ];
      for (const [mv, isInt] of masks) {
        const mask = isInt ? tensor(Int32Array.from(mv), [B, S], { dtype: 'int32' }) : tensor(mv, [B, S]);
        const out = ops.maskedMeanPool(h.t, mask);
        expect(out.shape).toEqual([B, H]);
        const ref = refPool(h.h, mv, isInt, B, S, H);
        close(host(out), ref, TOL32, `maskedMeanPool H=${H} ${isInt ? 'int' : 'float'}`);
        const dy = rnd([B, H], next());
        const dh = ops.maskedMeanPoolBackward(dy.t, mask, S);
        expect(dh.shape).toEqual([B, S, H]);
        close(host(dh), refPoolBackward(dy.h, mv, isInt, B, S, H), TOL32, `maskedMeanPoolBackward H=${H}`);
        disposeAll(mask, out, dy.t, dh);
      }
      disposeAll(h.t);
    }
  });
  test('maskedMeanPool: one sequence, wide hidden (column tasks), long sequence', () => {
    for (const [B, S, H] of [[1, 513, 1024], [3, 97, 4096]]) {
      const h = rnd([B, S, H], next());
      const mv = Array.from({ length: B * S }, (_, i) => ((i * 7) % 5 === 0 ? 0 : 1));
      const mask = tensor(Int32Array.from(mv), [B, S], { dtype: 'int32' });
      const out = ops.maskedMeanPool(h.t, mask);
      close(host(out), refPool(h.h, mv, true, B, S, H), TOL32, `maskedMeanPool ${B}x${S}x${H}`);
      disposeAll(h.t, mask, out);
    }
  });
});

describe('row ops with bfloat16 / float16 storage', () => {
  for (const dtype of ['bfloat16', 'float16'] as DType[])
    test(dtype, () => {
      for (const [rows, D] of [[37, 65], [97, 128], [1, 7]]) {
        checkRms(rows, D, { dtype });
        checkLn(rows, D, { dtype });
        checkL2n(rows, D, dtype);
        checkSoftmax(rows, D, dtype);
      }
      checkRms(37, 40, { dtype, wdtype: 'float32' }); // float32 weight beside 16-bit activations
      const B = 3, S = 5, H = 40;
      const h = rnd([B, S, H], next(), dtype);
      const mv = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1];
      const mask = tensor(Int32Array.from(mv), [B, S], { dtype: 'int32' });
      const out = ops.maskedMeanPool(h.t, mask);
      expect(out.dtype).toBe(dtype);
      close(host(out), refPool(h.h, mv, true, B, S, H), tolFor(dtype), `${dtype} maskedMeanPool`);
      const dy = rnd([B, H], next(), dtype);
      const dh = ops.maskedMeanPoolBackward(dy.t, mask, S);
      close(host(dh), refPoolBackward(dy.h, mv, true, B, S, H), tolFor(dtype), `${dtype} maskedMeanPoolBackward`);
      const wm = fromHost([1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], [B, S], dtype);
      const out2 = ops.maskedMeanPool(h.t, wm.t);
      close(host(out2), refPool(h.h, wm.h, false, B, S, H), tolFor(dtype), `${dtype} weighted maskedMeanPool`);
      disposeAll(h.t, mask, out, dy.t, dh, wm.t, out2);
    });
});

describe('row op edge cases', () => {
  test('zero rows: empty outputs, zero weight gradients', () => {
    const x = tensor(new Float32Array(0), [0, 7]), w = tensor(new Float32Array(7).fill(1), [7]);
    const { y, rstd } = ops.rmsNorm(x, w);
    expect(y.shape).toEqual([0, 7]);
    const g = ops.rmsNormBackward(x, x, w, rstd);
    expect(Array.from(g.dWeight.toArray())).toEqual(new Array(7).fill(0));
    const ln = ops.layerNorm(x, w, w);
    const gl = ops.layerNormBackward(x, x, w, ln.mean, ln.rstd);
    expect(Array.from(gl.dWeight.toArray())).toEqual(new Array(7).fill(0));
    expect(Array.from(gl.dBias.toArray())).toEqual(new Array(7).fill(0));
  });
  test('l2Normalize of a zero row is zero (no NaN)', () => {
    const x = tensor([0, 0, 0, 3, 4, 0], [2, 3]);
    expect(Array.from(ops.l2Normalize(x).toArray())).toEqual([0, 0, 0, 0.6000000238418579, 0.800000011920929, 0]);
  });
  test('softmax: -inf entries get 0, a row of -inf is NaN (as torch), NaN propagates', () => {
    const x = tensor([0, -Infinity, 0, -Infinity, -Infinity, -Infinity, 1, NaN, 2], [3, 3]);
    const y = Array.from(ops.softmax(x).toArray());
    expect(y.slice(0, 3)).toEqual([0.5, 0, 0.5]);
    expect(y.slice(3).every(Number.isNaN)).toBe(true);
  });
  test('maskedMeanPool with S = 0 gives zeros', () => {
    const h = tensor(new Float32Array(0), [2, 0, 3]), m = tensor(new Int32Array(0), [2, 0], { dtype: 'int32' });
    expect(Array.from(ops.maskedMeanPool(h, m).toArray())).toEqual([0, 0, 0, 0, 0, 0]);
    expect(ops.maskedMeanPoolBackward(tensor(new Float32Array(6), [2, 3]), m, 0).shape).toEqual([2, 0, 3]);
  });
});

describe('row op errors', () => {
  const f = (shape: number[], dtype: DType = 'float32') => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, { dtype });
  test('shapes', () => {
    expectCode(() => ops.rmsNorm(f([4, 8]), f([7])), 'SHAPE_MISMATCH', /rmsNorm: weight float32\[7\] must be \[8\]/);
    expectCode(() => ops.rmsNorm(f([]), null), 'SHAPE_MISMATCH', /at least one dim/);
    expectCode(() => ops.layerNorm(f([4, 8]), null, f([8, 1])), 'SHAPE_MISMATCH', /bias/);
    expectCode(() => ops.rmsNormBackward(f([4, 8]), f([4, 8]), f([8]), f([3])), 'SHAPE_MISMATCH', /rstd float32\[3\] must hold 4/);
    expectCode(() => ops.layerNormBackward(f([4, 7]), f([4, 8]), null, f([4]), f([4])), 'SHAPE_MISMATCH', /dy/);
    expectCode(() => ops.softmaxBackward(f([4, 8]), f([4, 9])), 'SHAPE_MISMATCH');
    expectCode(() => ops.maskedMeanPool(f([2, 3, 4]), f([2, 4], 'int32')), 'SHAPE_MISMATCH', /mask int32\[2,4\] must be \[B,S\] = \[2,3\]/);
    expectCode(() => ops.maskedMeanPool(f([2, 3]), f([2, 3], 'int32')), 'SHAPE_MISMATCH', /\[B,S,H\]/);
    expectCode(() => ops.maskedMeanPoolBackward(f([2, 4]), f([2, 3], 'int32'), 5), 'SHAPE_MISMATCH');
  });
  test('dtypes', () => {
    expectCode(() => ops.rmsNorm(f([4, 8], 'int32'), null), 'DTYPE_MISMATCH', /rmsNorm: x int32/);
    expectCode(() => ops.rmsNormBackward(f([4, 8]), f([4, 8]), null, f([4], 'bfloat16')), 'DTYPE_MISMATCH', /rstd bfloat16\[4\] must be float32/);
    expectCode(() => ops.layerNormBackward(f([4, 8], 'bfloat16'), f([4, 8]), null, f([4]), f([4])), 'DTYPE_MISMATCH');
    expectCode(() => ops.softmax(f([3], 'int32')), 'DTYPE_MISMATCH');
    expectCode(() => ops.maskedMeanPool(f([2, 3, 4], 'int32'), f([2, 3], 'int32')), 'DTYPE_MISMATCH');
  });
  test('options', () => {
    expectCode(() => ops.rmsNorm(f([4, 8]), null, { eps: -1 }), 'INVALID_ARGUMENT', /eps/);
    expectCode(() => ops.layerNorm(f([4, 8]), null, null, { eps: NaN }), 'INVALID_ARGUMENT', /eps/);
    expectCode(() => ops.l2Normalize(f([4, 8]), { eps: Infinity }), 'INVALID_ARGUMENT');
    expectCode(() => ops.maskedMeanPoolBackward(f([2, 4]), f([2, 3], 'int32'), -1), 'INVALID_ARGUMENT', /S must be/);
    expectCode(() => ops.rmsNorm(f([4, 8]), 'w' as unknown as Tensor), 'INVALID_ARGUMENT', /weight is not a Tensor/);
  });
});
