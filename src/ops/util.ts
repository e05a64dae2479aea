// ops/util.ts: argument checks shared by the kernel wrappers: each failure is an
// Llm2ClipError whose message names the op, the argument, its dtype and shape.
import { native } from '../binding';
import { DType, sameDevice } from '../dtype';
import { fail } from '../errors';
import { Tensor, shapeStr } from '../tensor';

/** The addon's functions of one kernel family, typed by the family's file. */
export function nativeOps<T>(): T {
  return native as unknown as T;
}

/** "q float32[2,3,4,8]" */
export function desc(name: string, t: Tensor): string {
  return `${name} ${t.dtype}${shapeStr(t.shape)}`;
}

/** INVALID_ARGUMENT unless t is a live Tensor; DISPOSED if it was disposed. */
export function checkTensor(t: unknown, op: string, name: string): Tensor {
  if (!(t instanceof Tensor)) fail('INVALID_ARGUMENT', `${op}: ${name} is not a Tensor`);
  t.nat(`${op}: ${name}`);
  return t;
}

/** DEVICE_MISMATCH unless every given tensor is on the first one's device. */
export function checkSameDevice(op: string, tensors: Record<string, Tensor | null | undefined>): void {
  let first: [string, Tensor] | null = null;
  for (const [name, t] of Object.entries(tensors)) {
    if (!t) continue;
    if (!first) first = [name, t];
    else if (!sameDevice(first[1].deviceInfo, t.deviceInfo))
      fail('DEVICE_MISMATCH', `${op}: ${first[0]} is on ${first[1].device} and ${name} on ${t.device}; move one with to()`);
  }
}

/** DTYPE_MISMATCH unless t is float32, bfloat16 or float16. */
export function checkFloat(op: string, name: string, t: Tensor): void {
  if (t.dtype === 'int32') fail('DTYPE_MISMATCH', `${op}: ${desc(name, t)} must be float32, bfloat16 or float16`);
}

/** DTYPE_MISMATCH unless every given tensor has the first one's dtype. */
export function checkSameDType(op: string, tensors: Record<string, Tensor | null | undefined>): DType | null {
  let first: [string, Tensor] | null = null;
  for (const [name, t] of Object.entries(tensors)) {
    if (!t) continue;
    if (!first) first = [name, t];
    else if (t.dtype !== first[1].dtype)
      fail('DTYPE_MISMATCH', `${op}: ${desc(first[0], first[1])} and ${desc(name, t)} must have the same dtype`);
  }
  return first ? first[1].dtype : null;
}

/** INVALID_ARGUMENT unless v is a finite number (within [lo, hi] when given). */
export function checkNumber(op: string, name: string, v: unknown, lo = -Infinity, hi = Infinity): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi)
    fail('INVALID_ARGUMENT', `${op}: ${name} must be a finite number${lo > -Infinity || hi < Infinity ? ` in [${lo}, ${hi}]` : ''} (got ${String(v)})`);
  return v;
}

/** INVALID_ARGUMENT unless v is an integer in [lo, hi]. */
export function checkInt(op: string, name: string, v: unknown, lo = -Infinity, hi = Infinity): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi)
    fail('INVALID_ARGUMENT', `${op}: ${name} must be an integer${lo > -Infinity || hi < Infinity ? ` in [${lo}, ${hi}]` : ''} (got ${String(v)})`);
  return v;
}

/**
 * Allocates outputs, runs fn with them, and disposes them all if fn throws (so a
 * failed native call leaks nothing).
 */
export function withOutputs<T extends Tensor[]>(outs: T, fn: (...outs: T) => void): T {
  try {
    fn(...outs);
  } catch (e) {
    for (const o of outs) o.dispose();
    throw e;
  }
  return outs;
}
