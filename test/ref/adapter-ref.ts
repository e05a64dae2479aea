// adapter-ref.ts: float64 reference of LLM2CLIP's text adapter (../shared/docs/LLM2CLIP.md):
// the L2-normalised LLM embedding goes through k residual blocks
//   x <- x + fc2(GELU(fc1(LayerNorm(x))))      fc1: d -> 2d, fc2: 2d -> d (both with bias)
// then y = proj(LayerNorm(x)), proj: d -> embedDim with bias. GELU is erf-exact, every
// LayerNorm has eps 1e-5 and an affine weight and bias.
//
// API
//   randomAdapterWeights(d, embedDim, k, seed) -> RefWeights named:
//       blocks.N.norm.{weight,bias} [d]; blocks.N.fc1.weight [2d, d], .bias [2d];
//       blocks.N.fc2.weight [d, 2d], .bias [d]   (N = 0..k-1; torch Linear layout [out, in])
//       norm.{weight,bias} [d]; proj.weight [embedDim, d], proj.bias [embedDim]
//   ADAPTER_LN_EPS = 1e-5
//   adapterForwardRef(weights, x [N, d], d, k, { normalize = true }?) -> Float64Array [N, embedDim]
//       The input rows are L2-normalised INSIDE the reference (x / ‖x‖; a zero row stays
//       zero) unless normalize is false; embedDim is read from proj.weight.
import { RefWeights, makeRng, randTensor, getW, linear, layerNormRow, gelu } from './common';

/** LayerNorm epsilon of the adapter. */
export const ADAPTER_LN_EPS = 1e-5;

/** Random adapter weights (names in the file header), activations O(1). */
export function randomAdapterWeights(d: number, embedDim: number, k: number, seed: number): RefWeights {
  const rng = makeRng(seed);
  const w: RefWeights = {};
  const norm = (n: string) => {
    w[n + '.weight'] = randTensor(rng, [d], 0.2, 1);
    w[n + '.bias'] = randTensor(rng, [d], 0.2);
  };
  for (let i = 0; i < k; i++) {
    const p = `blocks.${i}.`;
    norm(p + 'norm');
    w[p + 'fc1.weight'] = randTensor(rng, [2 * d, d], Math.sqrt(3 / d));
    w[p + 'fc1.bias'] = randTensor(rng, [2 * d], 0.2);
    w[p + 'fc2.weight'] = randTensor(rng, [d, 2 * d], 0.5 * Math.sqrt(3 / (2 * d)));
    w[p + 'fc2.bias'] = randTensor(rng, [d], 0.2);
  }
  norm('norm');
  w['proj.weight'] = randTensor(rng, [embedDim, d], Math.sqrt(3 / d));
  w['proj.bias'] = randTensor(rng, [embedDim], 0.2);
  return w;
}

/** The adapter on rows x [N, d] (normalised first unless opts.normalize === false). */
export function adapterForwardRef(weights: RefWeights, x: Float64Array, d: number, k: number, opts: { normalize?: boolean } = {}): Float64Array {
  const N = x.length / d;
  if (!Number.isInteger(N)) throw new Error('adapter-ref: x length not a multiple of d');
  const pw = weights['proj.weight'];
  if (!pw) throw new Error('adapter-ref: missing weight proj.weight');
  const E = pw.shape[0];
  const out = new Float64Array(N * E);
  for (let n = 0; n < N; n++) {
    const h = Float64Array.from(x.subarray(n * d, (n + 1) * d));
    if (opts.normalize !== false) {
      let s = 0;
      for (let i = 0; i < d; i++) s += h[i] * h[i];
      const r = s > 0 ? 1 / Math.sqrt(s) : 0;
      for (let i = 0; i < d; i++) h[i] *= r;
    }
    for (let b = 0; b < k; b++) {
      const p = `blocks.${b}.`;
      const z = layerNormRow(h, getW(weights, p + 'norm.weight'), getW(weights, p + 'norm.bias'), ADAPTER_LN_EPS);
      const u = linear(z, 0, getW(weights, p + 'fc1.weight'), getW(weights, p + 'fc1.bias'), 2 * d, d);
      for (let i = 0; i < 2 * d; i++) u[i] = gelu(u[i]);
      const y = linear(u, 0, getW(weights, p + 'fc2.weight'), getW(weights, p + 'fc2.bias'), d, 2 * d);
      for (let i = 0; i < d; i++) h[i] += y[i];
    }
    const z = layerNormRow(h, getW(weights, 'norm.weight'), getW(weights, 'norm.bias'), ADAPTER_LN_EPS);
    out.set(linear(z, 0, pw.data, getW(weights, 'proj.bias'), E, d), n * E);
  }
  return out;
}
