// helpers.ts: shared test utilities: error-code assertions, seeded host data, float64
// reference products, and whether a CUDA device is present.
import { Llm2ClipError, ErrorCode, cuda } from '../src';

export const hasGpu = cuda.isAvailable();
/** describe() that runs only where a GPU is present (skipped, and reported so, elsewhere). */
export const describeGpu = hasGpu ? describe : describe.skip;

export function expectCode(fn: () => unknown, code: ErrorCode, messagePart?: string | RegExp): Llm2ClipError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(Llm2ClipError);
  const e = err as Llm2ClipError;
  expect(e.code).toBe(code);
  if (messagePart) expect(e.message).toMatch(messagePart);
  return e;
}

/** expectCode for a promise: it must reject with Llm2ClipError(code) whose message matches every given part. */
export async function expectCodeAsync(p: Promise<unknown>, code: ErrorCode, ...parts: (string | RegExp | undefined)[]): Promise<Llm2ClipError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(Llm2ClipError);
  const e = err as Llm2ClipError;
  expect(e.code).toBe(code);
  for (const part of parts) if (part !== undefined) expect(e.message).toMatch(part);
  return e;
}

/** Deterministic pseudo-random values in [-1, 1) (xorshift), fresh per seed. */
export function hostRandom(n: number, seed: number): Float32Array {
  let x = (seed * 2654435761) >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x / 2 ** 31 - 1;
  }
  return out;
}

/**
 * float64 reference of op(a)·op(b) for one matrix, plus Σ_k |a||b| per element (the
 * scale of float32 accumulation error).
 */
export function refMatmul(
  a: ArrayLike<number>, b: ArrayLike<number>, M: number, N: number, K: number, transA: boolean, transB: boolean,
): { c: Float64Array; mag: Float64Array } {
  const c = new Float64Array(M * N), mag = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let k = 0; k < K; k++) {
      const av = transA ? a[k * M + i] : a[i * K + k];
      for (let j = 0; j < N; j++) {
        const bv = transB ? b[j * K + k] : b[k * N + j];
        c[i * N + j] += av * bv;
        mag[i * N + j] += Math.abs(av * bv);
      }
    }
  return { c, mag };
}

/** Index of the first element outside |got - want| <= tol(i), or -1; NaN never passes. */
export function firstBad(got: ArrayLike<number>, want: ArrayLike<number>, tol: (i: number) => number): number {
  if (got.length !== want.length) return 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= tol(i))) return i;
  }
  return -1;
}

/** ‖got − want‖ / ‖want‖ (2-norms); Infinity when a value is NaN or the lengths differ. */
export function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < got.length; i++) {
    if (Number.isNaN(got[i]) || Number.isNaN(want[i])) return Infinity;
    const d = got[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  if (!Number.isFinite(num)) return Infinity;
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** Fails (naming what) unless relErr(got, want) <= tol; NaN never passes. */
export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  const e = relErr(got, want);
  if (!(e <= tol)) throw new Error(`${what}: relative error ${e} > ${tol} (n = ${want.length})`);
}

/**
 * Central finite differences of a float64 scalar function: d f / d x[i] for the
 * indices given (all by default), step h·max(1, |x[i]|).
 */
export function finiteDiff(f: (x: Float64Array) => number, x: Float64Array, h = 1e-6, indices?: number[]): Float64Array {
  const g = new Float64Array(x.length);
  const idx = indices ?? Array.from({ length: x.length }, (_, i) => i);
  for (const i of idx) {
    const xi = x[i], step = h * Math.max(1, Math.abs(xi));
    x[i] = xi + step;
    const fp = f(x);
    x[i] = xi - step;
    const fm = f(x);
    x[i] = xi;
    g[i] = (fp - fm) / (2 * step);
  }
  return g;
}
