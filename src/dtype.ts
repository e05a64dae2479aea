// dtype.ts: element types and devices, with their codes in the C ABI (llm2clip.h).
import { fail } from './errors';
import { native } from './binding';

export type DType = 'float32' | 'bfloat16' | 'float16' | 'int32';
export const DTYPES: readonly DType[] = ['float32', 'bfloat16', 'float16', 'int32'];
const DTYPE_CODE: Record<DType, number> = { float32: 0, bfloat16: 1, float16: 2, int32: 3 };
const DTYPE_SIZE: Record<DType, number> = { float32: 4, bfloat16: 2, float16: 2, int32: 4 };

export function dtypeCode(d: DType): number {
  return DTYPE_CODE[d];
}
export function dtypeSize(d: DType): number {
  return DTYPE_SIZE[d];
}
export function isFloat(d: DType): boolean {
  return d !== 'int32';
}

export function checkDType(d: unknown, what: string): DType {
  if (typeof d !== 'string' || !(DTYPES as readonly string[]).includes(d))
    fail('INVALID_ARGUMENT', `${what}: unknown dtype ${JSON.stringify(d)} (expected one of ${DTYPES.join(', ')})`);
  return d as DType;
}

export type DeviceType = 'cpu' | 'cuda';
/** 'cpu', 'cuda' (= 'cuda:0') or 'cuda:N'. */
export type DeviceSpec = DeviceType | `cuda:${number}`;

export interface Device {
  readonly type: DeviceType;
  readonly index: number;
}

export function deviceTypeCode(t: DeviceType): number {
  return t === 'cpu' ? 0 : 1;
}

export function deviceName(d: Device): string {
  return d.type === 'cpu' ? 'cpu' : d.index === 0 ? 'cuda' : `cuda:${d.index}`;
}

/** Parses a device string and checks that the device exists in this process. */
export function parseDevice(spec: unknown, what: string): Device {
  if (spec === undefined || spec === 'cpu') return { type: 'cpu', index: 0 };
  const m = typeof spec === 'string' ? /^cuda(?::(\d+))?$/.exec(spec) : null;
  if (!m) fail('INVALID_ARGUMENT', `${what}: unknown device ${JSON.stringify(spec)} (expected 'cpu', 'cuda' or 'cuda:N')`);
  const index = m[1] === undefined ? 0 : Number(m[1]);
  if (!native.cudaCompiled())
    fail('DEVICE_UNAVAILABLE', `${what}: ${spec} requested but llm2clip was built without CUDA (nvcc was not found at install)`);
  const count = native.cudaDeviceCount();
  if (index >= count)
    fail('DEVICE_UNAVAILABLE', `${what}: ${spec} requested but ${count} CUDA device(s) are available`);
  return { type: 'cuda', index };
}

export function sameDevice(a: Device, b: Device): boolean {
  return a.type === b.type && a.index === b.index;
}
