// layers-ref.ts: float64 references and shared utilities of the layers tests
// (test/layers-*.test.ts): host tensors rounded to a storage dtype, the CPU levels to
// run at, tolerances, and the float64 math the kernels are checked against.
import { tensor, Tensor, DType, getCpuIsa, CpuIsa } from '../src';
import { hostRandom, relErr } from './helpers';

/** The CPU levels every float32 correctness test runs at: the portable one and the best. */
export function isas(): CpuIsa[] {
  const best = getCpuIsa();
  return best === 'generic' ? ['generic'] : ['generic', best];
}

/** float32 results against float64 references: ‖out − ref‖ / ‖ref‖. */
export const TOL32 = 1e-5;
/**
 * 16-bit outputs are rounded once from float32: each element carries a relative error of
 * at most the unit roundoff u (2^-8 for bfloat16's 8-bit significand, 2^-11 for
 * float16's 11 bits), so the norm-wise error is at most u, plus the float32 part.
 * References are computed from the same (rounded) inputs the kernel saw.
 */
export const TOL16: Record<string, number> = { bfloat16: 2 ** -8 + 2e-5, float16: 2 ** -11 + 2e-5 };
export function tolFor(dtype: DType): number {
  return dtype === 'float32' ? TOL32 : TOL16[dtype];
}

/** Values rounded to dtype (through the library's own bit-exact cast). */
export function roundTo(values: Float32Array, dtype: DType): Float32Array {
  if (dtype === 'float32') return values;
  const t = tensor(values, [values.length]);
  const c = t.cast(dtype);
  const out = c.toArray() as Float32Array;
  t.dispose();
  c.dispose();
  return out;
}

/** A tensor of fresh random values in offset + [-scale, scale) and its exact host values (as the kernel sees them). */
export function rnd(shape: number[], seed: number, dtype: DType = 'float32', scale = 1, offset = 0): { t: Tensor; h: Float64Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  const raw = hostRandom(n, seed);
  if (scale !== 1 || offset !== 0) for (let i = 0; i < n; i++) raw[i] = raw[i] * scale + offset;
  const v = roundTo(raw, dtype);
  return { t: tensor(v, shape, { dtype }), h: Float64Array.from(v) };
}

/** A tensor from given values, rounded to dtype. */
export function fromHost(values: ArrayLike<number>, shape: number[], dtype: DType = 'float32'): { t: Tensor; h: Float64Array } {
  const v = roundTo(Float32Array.from(values), dtype);
  return { t: tensor(v, shape, { dtype }), h: Float64Array.from(v) };
}

export function host(t: Tensor): Float64Array {
  return Float64Array.from(t.toArray());
}

/** Fails naming `what` unless relErr(got, want) <= tol (NaN never passes). */
export function close(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  const e = relErr(got, want);
  if (!(e <= tol)) throw new Error(`${what}: relative error ${e} > ${tol} (n = ${want.length})`);
}

/**
 * ‖got − want‖ ≤ tol · max(‖want‖, scale): for results that are a cancellation of
 * terms of norm `scale` (a gradient that is exactly 0 in float64, e.g. a norm over a
 * last dim of 1), where float32 leaves O(u · scale) and a relative error means nothing.
 */
export function closeScaled(got: ArrayLike<number>, want: ArrayLike<number>, scale: number, tol: number, what: string): void {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  const e = Math.sqrt(num) / Math.max(Math.sqrt(den), scale);
  if (!(e <= tol)) throw new Error(`${what}: error ${e} of max(‖want‖, ${scale}) > ${tol} (n = ${want.length})`);
}

export function norm(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

export function disposeAll(...ts: (Tensor | null | undefined | Record<string, Tensor | null>)[]): void {
  for (const t of ts) {
    if (!t) continue;
    if (t instanceof Tensor) t.dispose();
    else for (const v of Object.values(t)) v?.dispose();
  }
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

// ---- broadcasting ----

/** For each flat index of outShape, the flat index of an operand of inShape broadcast to it. */
export function bcastMap(outShape: readonly number[], inShape: readonly number[]): Int32Array {
  const n = outShape.reduce((a, b) => a * b, 1), nd = outShape.length, off = nd - inShape.length;
  const map = new Int32Array(n);
  const strides: number[] = new Array(nd).fill(0);
  let s = 1;
  for (let d = inShape.length - 1; d >= 0; d--) {
    strides[d + off] = inShape[d] === 1 ? 0 : s;
    s *= inShape[d];
  }
  for (let i = 0; i < n; i++) {
    let idx = i, o = 0;
    for (let d = nd - 1; d >= 0; d--) {
      o += (idx % outShape[d]) * strides[d];
      idx = Math.floor(idx / outShape[d]);
    }
    map[i] = o;
  }
  return map;
}

/** Sums x (of shape `shape`) over the dims in `dims`, keeping the others in order. */
export function refSum(x: ArrayLike<number>, shape: readonly number[], dims: number[]): Float64Array {
  const nd = shape.length;
  const keptShape = shape.map((s, d) => (dims.includes(d) ? 1 : s));
  const nout = keptShape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(nout);
  const map = bcastMap(shape, keptShape);
  for (let i = 0; i < map.length; i++) out[map[i]] += x[i];
  void nd;
  return out;
}

// ---- special functions ----

/** erfc(z) in float64 (relative accuracy ~1e-14 for all z). */
export function erfc(z: number): number {
  if (z < 0) return 2 - erfc(-z);
  if (z < 2.5) {
    // erf(z) = 2/sqrt(pi) exp(-z^2) sum_n (2z^2)^n z / (1*3*...*(2n+1)) (all terms positive)
    let t = z, s = z;
    for (let n = 1; n < 200; n++) {
      t *= (2 * z * z) / (2 * n + 1);
      s += t;
      if (t < 1e-17 * s) break;
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * Math.exp(-z * z) * s;
  }
  // Continued fraction: erfc(z) = exp(-z^2) / sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/(z + ...)))).
  let f = z;
  for (let k = 80; k >= 1; k--) f = z + k / 2 / f;
  return Math.exp(-z * z) / (Math.sqrt(Math.PI) * f);
}

export const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

// ---- rope ----

export interface RopeScalingRef {
  type: 'llama3' | 'linear';
  factor: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
}

/** inv_freq as transformers computes it (default, linear, _compute_llama3_parameters), in float64. */
export function ropeInvFreq(D: number, theta: number, scaling?: RopeScalingRef): Float64Array {
  const h = D / 2, out = new Float64Array(h);
  for (let i = 0; i < h; i++) {
    let f = 1 / Math.pow(theta, (2 * i) / D);
    if (scaling?.type === 'linear') f /= scaling.factor;
    else if (scaling?.type === 'llama3') {
      const lo = scaling.lowFreqFactor!, hi = scaling.highFreqFactor!, old = scaling.originalMaxPositionEmbeddings!;
      const lowWavelen = old / lo, highWavelen = old / hi;
      const wavelen = (2 * Math.PI) / f;
      let g = wavelen > lowWavelen ? f / scaling.factor : f;
      const smooth = (old / wavelen - lo) / (hi - lo);
      const smoothed = ((1 - smooth) * g) / scaling.factor + smooth * g;
      const medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
      if (medium) g = smoothed;
      f = g;
    }
    out[i] = f;
  }
  return out;
}

/** rotate_half rope of x [B,S,H,D] with positions [B,S] or [S]; sign -1 rotates back. */
export function refRope(
  x: ArrayLike<number>, shape: number[], pos: ArrayLike<number>, perBatch: boolean, invFreq: Float64Array, sign = 1,
): Float64Array {
  const [B, S, H, D] = shape, h = D / 2;
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++)
    for (let s = 0; s < S; s++) {
      const p = pos[perBatch ? b * S + s : s];
      for (let i = 0; i < h; i++) {
        const a = p * invFreq[i], c = Math.cos(a), sn = sign * Math.sin(a);
        for (let hd = 0; hd < H; hd++) {
          const base = ((b * S + s) * H + hd) * D;
          const x1 = x[base + i], x2 = x[base + i + h];
          out[base + i] = x1 * c - x2 * sn;
          out[base + i + h] = x2 * c + x1 * sn;
        }
      }
    }
  return out;
}

// ---- dropout mask (Philox4x32-10, as native/core/philox.h) ----

function mulhilo(a: number, b: number): [number, number] {
  const p = BigInt(a) * BigInt(b);
  return [Number(p >> 32n), Number(p & 0xffffffffn)];
}

/** The four Philox words of counter ctr under seed. */
export function philox(ctr: bigint, seed: bigint): number[] {
  let c0 = Number(ctr & 0xffffffffn), c1 = Number((ctr >> 32n) & 0xffffffffn), c2 = 0, c3 = 0;
  let k0 = Number(seed & 0xffffffffn), k1 = Number((seed >> 32n) & 0xffffffffn);
  for (let r = 0; r < 10; r++) {
    const [hi0, lo0] = mulhilo(0xd2511f53, c0);
    const [hi1, lo1] = mulhilo(0xcd9e8d57, c2);
    const n0 = (hi1 ^ c1 ^ k0) >>> 0, n2 = (hi0 ^ c3 ^ k1) >>> 0;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    k0 = (k0 + 0x9e3779b9) >>> 0;
    k1 = (k1 + 0xbb67ae85) >>> 0;
  }
  return [c0, c1, c2, c3];
}

/** keep[i] for i < n: Philox word of element i >= floor(fround(p) * 2^32). */
export function dropoutMask(n: number, p: number, seed: bigint): Uint8Array {
  const t = Math.min(Math.floor(Math.fround(p) * 4294967296), 4294967295);
  const keep = new Uint8Array(n);
  for (let c = 0; 4 * c < n; c++) {
    const w = philox(BigInt(c), seed);
    for (let k = 0; k < 4 && 4 * c + k < n; k++) keep[4 * c + k] = w[k] >= t ? 1 : 0;
  }
  return keep;
}
