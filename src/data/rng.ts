// rng.ts: a small seeded PRNG for data pipelines (xoshiro128** seeded through splitmix32),
// with a serialisable state so that samplers can checkpoint and resume exactly. Pure 32-bit
// integer arithmetic: the same sequence on every platform.
import { fail } from '../errors';

/** The 4 x 32-bit state of {@link Rng}, as plain numbers (JSON-safe). */
export type RngState = [number, number, number, number];

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** splitmix32's output function: a 32-bit bijective mix. */
function mix32(z: number): number {
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * Hashes integer parts (each a safe integer, e.g. a seed and an epoch) to one 32-bit
 * value; different tuples give independent-looking values.
 */
export function hashInts(...parts: number[]): number {
  let h = 0x243f6a88;
  for (const p of parts) {
    const lo = p >>> 0, hi = Math.floor(p / 4294967296) >>> 0;
    h = mix32((h ^ lo) + 0x9e3779b9);
    h = mix32((h ^ hi) + 0x7f4a7c15);
  }
  return h;
}

/** xoshiro128** (Blackman & Vigna): 32-bit outputs, period 2^128 - 1. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** A generator seeded from integer parts (e.g. `new Rng(seed, epoch)`). */
  constructor(...seed: number[]) {
    for (const p of seed)
      if (!Number.isSafeInteger(p)) fail('INVALID_ARGUMENT', `Rng: seed parts must be safe integers, got ${p}`);
    // A splitmix32 stream from the hashed seed fills the state; the all-zero state, which
    // xoshiro never leaves, is mapped away below.
    let x = hashInts(...seed);
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      return mix32(x);
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** A generator continuing from a state returned by {@link Rng.state}. */
  static fromState(state: unknown, what = 'rngState'): Rng {
    if (!Array.isArray(state) || state.length !== 4 || !state.every((v) => Number.isInteger(v) && v >= 0 && v < 4294967296))
      fail('INVALID_ARGUMENT', `${what}: expected 4 unsigned 32-bit integers, got ${JSON.stringify(state)}`);
    if (state.every((v) => v === 0)) fail('INVALID_ARGUMENT', `${what}: the all-zero state is invalid for xoshiro128**`);
    const r = new Rng(0);
    [r.s0, r.s1, r.s2, r.s3] = state as RngState;
    return r;
  }

  /** The current state (a copy). */
  state(): RngState {
    return [this.s0, this.s1, this.s2, this.s3];
  }

  /** A uniform unsigned 32-bit integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** A uniform float in [0, 1) with 32 random bits. */
  float(): number {
    return this.nextU32() / 4294967296;
  }

  /** A uniform integer in [0, n), unbiased (rejection sampling); 1 <= n <= 2^32. */
  below(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 4294967296) fail('INVALID_ARGUMENT', `Rng.below: n must be an integer in [1, 2^32], got ${n}`);
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const u = this.nextU32();
      if (u < limit) return u % n;
    }
  }

  /** Shuffles `a` in place (Fisher-Yates) and returns it. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.below(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }
}
