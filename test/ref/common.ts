// common.ts: small float64 helpers shared by the references under test/ref/ (a seeded
// generator, weight records, norms, activations, and rounding a weight record as stored).
//
// API
//   interface RefTensor { shape: number[]; data: Float64Array }
//   type RefWeights = Record<string, RefTensor>
//   makeRng(seed): () => number            uniform in [-1, 1), deterministic per seed
//   randTensor(rng, shape, scale, offset?) offset + scale * U[-1, 1)
//   roundWeights(weights, dtype)           a copy with every value rounded as stored in dtype
//   toStTensors(weights, dtype, prefix?)   the record as safetensors-writer input
//   layerNormRow, rmsNormRow, gelu (erf-exact), quickGelu, silu, erf
import { StDtype, StTensor, storedValues } from './safetensors-writer';

/** A float64 tensor of a reference (row-major). */
export interface RefTensor {
  shape: number[];
  data: Float64Array;
}

/** Named float64 tensors (a model's weights). */
export type RefWeights = Record<string, RefTensor>;

/** Deterministic uniform generator in [-1, 1) (mulberry32), fresh per seed. */
export function makeRng(seed: number): () => number {
  let a = (seed * 2654435761 + 0x9e3779b9) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

/** A tensor of offset + scale * U[-1, 1) values. */
export function randTensor(rng: () => number, shape: number[], scale: number, offset = 0): RefTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float64Array(n);
  for (let i = 0; i < n; i++) data[i] = offset + scale * rng();
  return { shape: [...shape], data };
}

/** A copy of the weights with every value rounded as stored in dtype (what a loader sees). */
export function roundWeights(weights: RefWeights, dtype: StDtype): RefWeights {
  const out: RefWeights = {};
  for (const [k, t] of Object.entries(weights)) out[k] = { shape: [...t.shape], data: storedValues(t.data, dtype) };
  return out;
}

/** The weights as safetensors-writer input, names prefixed. */
export function toStTensors(weights: RefWeights, dtype: StDtype, prefix = ''): Record<string, StTensor> {
  const out: Record<string, StTensor> = {};
  for (const [k, t] of Object.entries(weights)) out[prefix + k] = { dtype, shape: t.shape, data: t.data };
  return out;
}

/** Element count of a shape. */
export function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The tensor named, or an error naming it. */
export function getW(weights: RefWeights, name: string): Float64Array {
  const t = weights[name];
  if (!t) throw new Error(`reference: missing weight ${name}`);
  return t.data;
}

/** y[o] = Σ_i W[o, i] x[i] (+ b[o]) for W [out, inn] (the torch Linear layout). */
export function linear(x: ArrayLike<number>, xOff: number, W: Float64Array, b: Float64Array | undefined, out: number, inn: number): Float64Array {
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o] : 0;
    const r = o * inn;
    for (let i = 0; i < inn; i++) s += W[r + i] * x[xOff + i];
    y[o] = s;
  }
  return y;
}

/** LayerNorm of one row: (x − mean) / sqrt(var + eps) * w + b, biased variance. */
export function layerNormRow(x: ArrayLike<number>, w: Float64Array, b: Float64Array, eps: number): Float64Array {
  const n = x.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[i];
  mean /= n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (x[i] - mean) ** 2;
  v /= n;
  const r = 1 / Math.sqrt(v + eps);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) y[i] = (x[i] - mean) * r * w[i] + b[i];
  return y;
}

/** RMSNorm of one row (Llama): x * rsqrt(mean(x²) + eps) * w. */
export function rmsNormRow(x: ArrayLike<number>, w: Float64Array, eps: number): Float64Array {
  const n = x.length;
  let ms = 0;
  for (let i = 0; i < n; i++) ms += x[i] * x[i];
  const r = 1 / Math.sqrt(ms / n + eps);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) y[i] = x[i] * r * w[i];
  return y;
}

/** erf to ~1e-16 relative (Taylor series near 0, continued fraction of erfc beyond). */
export function erf(x: number): number {
  const a = Math.abs(x);
  if (a < 2.5) {
    // erf(x) = 2/sqrt(pi) Σ (-1)^n x^(2n+1) / (n! (2n+1))
    let term = a, sum = a;
    for (let n = 1; n < 200; n++) {
      term *= (-a * a) / n;
      const d = term / (2 * n + 1);
      sum += d;
      if (Math.abs(d) < 1e-17 * Math.abs(sum)) break;
    }
    const r = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -r : r;
  }
  if (a > 6) return x < 0 ? -1 : 1;
  // erfc(a) = exp(-a²)/sqrt(pi) * 1/(a + 1/2/(a + 1/(a + 3/2/(a + 2/(a + ...))))) (Lentz)
  let f = a, C = a, D = 0;
  for (let n = 1; n < 300; n++) {
    const an = n / 2;
    D = a + an * D;
    D = D === 0 ? 1e-300 : 1 / D;
    C = a + an / C;
    if (C === 0) C = 1e-300;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
  return x < 0 ? erfc - 1 : 1 - erfc;
}

/** GELU, erf-exact (torch nn.GELU() / HF 'gelu'): x/2 (1 + erf(x/√2)). */
export function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

/** quick_gelu (OpenAI CLIP): x * sigmoid(1.702 x). */
export function quickGelu(x: number): number {
  return x / (1 + Math.exp(-1.702 * x));
}

/** SiLU: x * sigmoid(x). */
export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

/** Row-wise softmax in place over v[0..n). */
export function softmaxInPlace(v: Float64Array): void {
  let m = -Infinity;
  for (let i = 0; i < v.length; i++) if (v[i] > m) m = v[i];
  let s = 0;
  for (let i = 0; i < v.length; i++) {
    v[i] = v[i] === -Infinity ? 0 : Math.exp(v[i] - m);
    s += v[i];
  }
  for (let i = 0; i < v.length; i++) v[i] /= s;
}
