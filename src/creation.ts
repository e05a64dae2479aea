// creation.ts: the tensor factories: tensor(data), zeros, ones, full, rand, randn.
// rand / randn draw from the counter-based Philox generator in native code: the same
// seed gives the same values on every device. Without a seed they take the next seed of
// a process-wide sequence (manualSeed() resets it).
import { native } from './binding';
import { DType, checkDType, parseDevice, isFloat } from './dtype';
import { fail } from './errors';
import { Tensor, checkShape, shapeSize, shapeStr } from './tensor';

export interface CreateOptions {
  dtype?: DType;
  /** 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: string;
}

type Nested = number | Nested[];

function flatten(data: Nested[], shape: number[], depth: number, out: number[]): void {
  if (shape.length <= depth) shape.push(data.length);
  else if (shape[depth] !== data.length)
    fail('SHAPE_MISMATCH', `tensor(data): ragged nested array: length ${data.length} at depth ${depth}, expected ${shape[depth]}`);
  for (const v of data) {
    if (Array.isArray(v)) flatten(v, shape, depth + 1, out);
    else {
      if (shape.length !== depth + 1) fail('SHAPE_MISMATCH', `tensor(data): ragged nested array at depth ${depth}`);
      out.push(v);
    }
  }
}

/**
 * A tensor from values: a flat array or typed array with a shape, or nested arrays (shape
 * inferred). dtype defaults to int32 for an Int32Array, else float32.
 */
export function tensor(
  data: ArrayLike<number> | Nested[],
  shape?: readonly number[],
  options: CreateOptions = {},
): Tensor {
  const dtype = checkDType(options.dtype ?? (data instanceof Int32Array ? 'int32' : 'float32'), 'tensor(options.dtype)');
  const device = parseDevice(options.device, 'tensor(options.device)');
  let flat: ArrayLike<number>;
  let inferred: number[];
  if (Array.isArray(data) && data.some((v) => Array.isArray(v))) {
    const values: number[] = [];
    inferred = [];
    flatten(data as Nested[], inferred, 0, values);
    flat = values;
  } else if (data && typeof (data as ArrayLike<number>).length === 'number') {
    flat = data as ArrayLike<number>;
    inferred = [flat.length];
  } else {
    fail('INVALID_ARGUMENT', 'tensor(data): data must be an array, a nested array or a typed array');
  }
  const dims = shape === undefined ? inferred : checkShape(shape, 'tensor(shape)');
  if (shapeSize(dims) !== flat.length)
    fail('SHAPE_MISMATCH', `tensor(data, shape): ${flat.length} values do not fill shape ${shapeStr(dims)} (${shapeSize(dims)} elements)`);
  for (let i = 0; i < flat.length; i++) {
    const x = flat[i];
    if (typeof x !== 'number') fail('INVALID_ARGUMENT', `tensor(data): element ${i} is not a number (${typeof x})`);
    if (dtype === 'int32' && (!Number.isInteger(x) || x < -2147483648 || x > 2147483647))
      fail('INVALID_ARGUMENT', `tensor(data): element ${i} = ${x} is not an int32`);
  }
  // Values are written as float32 or int32 on the CPU, then cast / copied natively.
  const hostDtype: DType = dtype === 'int32' ? 'int32' : 'float32';
  let host = Tensor.empty(dims, hostDtype, { type: 'cpu', index: 0 });
  (host.view() as Float32Array | Int32Array).set(flat);
  if (dtype !== hostDtype) {
    const c = host.cast(dtype);
    host.dispose();
    host = c;
  }
  if (device.type === 'cpu') return host;
  const out = host.to(options.device as string);
  host.dispose();
  return out;
}

/** A tensor of the given shape filled with value. */
export function full(shape: readonly number[], value: number, options: CreateOptions = {}): Tensor {
  const dims = checkShape(shape, 'full(shape)');
  const dtype = checkDType(options.dtype ?? 'float32', 'full(options.dtype)');
  if (typeof value !== 'number') fail('INVALID_ARGUMENT', `full(value): a number is required (got ${typeof value})`);
  if (dtype === 'int32' && (!Number.isInteger(value) || value < -2147483648 || value > 2147483647))
    fail('INVALID_ARGUMENT', `full(value): ${value} is not an int32`);
  const out = Tensor.empty(dims, dtype, parseDevice(options.device, 'full(options.device)'));
  native.fill(...out.nat(), value);
  return out;
}

export function zeros(shape: readonly number[], options: CreateOptions = {}): Tensor {
  return full(shape, 0, options);
}

export function ones(shape: readonly number[], options: CreateOptions = {}): Tensor {
  return full(shape, 1, options);
}

let nextSeed = (BigInt(Date.now()) * 2654435761n) & ((1n << 64n) - 1n);

/** Resets the seed sequence used by rand / randn calls that pass no seed. */
export function manualSeed(seed: number | bigint): void {
  nextSeed = toSeed(seed, 'manualSeed(seed)');
}

export function toSeed(seed: number | bigint, what: string): bigint {
  if (typeof seed === 'number' && Number.isSafeInteger(seed) && seed >= 0) return BigInt(seed);
  if (typeof seed === 'bigint' && seed >= 0n && seed < 1n << 64n) return seed;
  fail('INVALID_ARGUMENT', `${what}: a non-negative integer below 2^64 is required (got ${String(seed)})`);
}

/** @internal The position in the seed sequence (activation checkpointing rewinds it). */
export function getSeedState(): bigint {
  return nextSeed;
}
/** @internal */
export function setSeedState(s: bigint): void {
  nextSeed = s;
}

/** @internal The next seed of the sequence (for dropout masks and the like). */
export function nextRandomSeed(): bigint {
  return drawSeed(undefined, '');
}

function drawSeed(seed: number | bigint | undefined, what: string): bigint {
  if (seed !== undefined) return toSeed(seed, what);
  const s = nextSeed;
  nextSeed = (nextSeed + 0x9e3779b97f4a7c15n) & ((1n << 64n) - 1n);
  return s;
}

export interface RandomOptions extends CreateOptions {
  seed?: number | bigint;
}

function random(what: string, shape: readonly number[], kind: 0 | 1, a: number, b: number, options: RandomOptions): Tensor {
  const dims = checkShape(shape, `${what}(shape)`);
  const dtype = checkDType(options.dtype ?? 'float32', `${what}(options.dtype)`);
  if (!isFloat(dtype)) fail('DTYPE_MISMATCH', `${what}(options.dtype): ${dtype} is not a float dtype`);
  const seed = drawSeed(options.seed, `${what}(options.seed)`);
  const out = Tensor.empty(dims, dtype, parseDevice(options.device, `${what}(options.device)`));
  try {
    native.random(...out.nat(), kind, seed, a, b);
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}

/** Uniform values in [low, high) (default [0, 1)). */
export function rand(shape: readonly number[], options: RandomOptions & { low?: number; high?: number } = {}): Tensor {
  return random('rand', shape, 0, options.low ?? 0, options.high ?? 1, options);
}

/** Normal values with mean and std (default 0 and 1). */
export function randn(shape: readonly number[], options: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
  return random('randn', shape, 1, options.mean ?? 0, options.std ?? 1, options);
}
