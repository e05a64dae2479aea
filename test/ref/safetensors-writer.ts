// safetensors-writer.ts: a minimal, independent safetensors writer (and header reader)
// for tests. It shares no code with src/: fixtures written here check the package's own
// reader.
//
// API
//   type StDtype = 'F32' | 'BF16' | 'F16' | 'I64'
//   interface StTensor { dtype: StDtype; shape: number[]; data: ArrayLike<number> }
//   roundToDtype(x, dtype): number           one value rounded as stored (round to nearest
//                                            even, once, from the float64 value; overflow
//                                            gives ±Infinity; I64 truncates toward zero)
//   storedValues(data, dtype): Float64Array  every value rounded as stored
//   encodeTensor(data, dtype): Uint8Array    the little-endian bytes of the stored values
//   safetensorsBytes(tensors, metadata?)     the whole file as bytes
//   writeSafetensorsFile(path, tensors, metadata?)
//   readSafetensorsHeader(path | bytes)      { header (parsed JSON), headerLength, dataStart }
//   readSafetensorsTensor(bytes, name)       decoded values of one tensor (Float64Array)
//
// File layout (safetensors spec): u64 little-endian N, then N bytes of UTF-8 JSON
// { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": {string: string} },
// padded with spaces so that N is a multiple of 8, then the data buffer; offsets are
// relative to the data buffer, tensors are contiguous, row-major, in the order given.
import * as fs from 'fs';

/** Storage dtypes the writer supports. */
export type StDtype = 'F32' | 'BF16' | 'F16' | 'I64';

/** One tensor to write: values (any numbers; rounded to dtype on write). */
export interface StTensor {
  dtype: StDtype;
  shape: number[];
  data: ArrayLike<number>;
}

const BYTES: Record<StDtype, number> = { F32: 4, BF16: 2, F16: 2, I64: 8 };

/** Bytes per element of a storage dtype. */
export function dtypeBytes(dtype: StDtype): number {
  return BYTES[dtype];
}

/** Round half to even of a value whose scaling was exact. */
function roundHalfEven(q: number): number {
  const f = Math.floor(q);
  const d = q - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** floor(log2(a)) exactly, for finite a > 0. */
function exponentOf(a: number): number {
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  return e;
}

/**
 * x rounded (once, to nearest even) to a binary format with `mant` fraction bits, minimum
 * normal exponent `emin` (subnormals below) and largest finite value `maxFinite`.
 */
function roundBinary(x: number, mant: number, emin: number, emax: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  const e = Math.max(exponentOf(a), emin);
  const ulp = 2 ** (e - mant);
  let r = roundHalfEven(a / ulp) * ulp;
  const maxFinite = (2 - 2 ** -mant) * 2 ** emax;
  if (r > maxFinite) r = Infinity;
  return x < 0 ? -r : r;
}

/** One value as stored in dtype (see the file header). */
export function roundToDtype(x: number, dtype: StDtype): number {
  switch (dtype) {
    case 'F32':
      return Math.fround(x);
    case 'BF16':
      return roundBinary(x, 7, -126, 127);
    case 'F16':
      return roundBinary(x, 10, -14, 15);
    case 'I64':
      return Math.trunc(x);
  }
}

/** All values as stored in dtype, as float64 (what a reference should compute with). */
export function storedValues(data: ArrayLike<number>, dtype: StDtype): Float64Array {
  const out = new Float64Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = roundToDtype(data[i], dtype);
  return out;
}

/** IEEE half bits of a value already representable in F16 (or ±Inf / NaN). */
function f16Bits(v: number): number {
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === Infinity) return sign | 0x7c00;
  if (a === 0) return sign;
  const e = exponentOf(a);
  if (e < -14) return sign | Math.round(a / 2 ** -24); // subnormal: multiples of 2^-24
  const m = Math.round((a / 2 ** e - 1) * 1024);
  return sign | ((e + 15) << 10) | m;
}

/** The little-endian bytes of data stored as dtype. */
export function encodeTensor(data: ArrayLike<number>, dtype: StDtype): Uint8Array {
  const n = data.length;
  const buf = new Uint8Array(n * BYTES[dtype]);
  const dv = new DataView(buf.buffer);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < n; i++) {
    const v = roundToDtype(data[i], dtype);
    switch (dtype) {
      case 'F32':
        dv.setFloat32(i * 4, v, true);
        break;
      case 'BF16':
        if (Number.isNaN(v)) {
          dv.setUint16(i * 2, 0x7fc0, true);
        } else {
          f32[0] = v; // exact: a bf16 value is a float32 with 16 zero low bits
          dv.setUint16(i * 2, u32[0] >>> 16, true);
        }
        break;
      case 'F16':
        dv.setUint16(i * 2, f16Bits(v), true);
        break;
      case 'I64':
        dv.setBigInt64(i * 8, BigInt(v), true);
        break;
    }
  }
  return buf;
}

/** The bytes of a safetensors file holding the tensors (in the order of the record). */
export function safetensorsBytes(tensors: Record<string, StTensor>, metadata: Record<string, string> = { format: 'pt' }): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const parts: Uint8Array[] = [];
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`safetensors-writer: tensor ${name}: shape [${t.shape}] holds ${n} values, data has ${t.data.length}`);
    const bytes = encodeTensor(t.data, t.dtype);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + bytes.length] };
    parts.push(bytes);
    off += bytes.length;
  }
  let json = JSON.stringify(header);
  const jsonLen = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (jsonLen % 8)) % 8);
  const hb = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + hb.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let p = 8 + hb.length;
  for (const b of parts) {
    out.set(b, p);
    p += b.length;
  }
  return out;
}

/** Writes a safetensors file (see safetensorsBytes). */
export function writeSafetensorsFile(path: string, tensors: Record<string, StTensor>, metadata?: Record<string, string>): void {
  fs.writeFileSync(path, safetensorsBytes(tensors, metadata));
}

/** Parsed header of a safetensors file (or its bytes). */
export interface StHeader {
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  headerLength: number;
  dataStart: number;
}

/** Reads and parses the header of a safetensors file (path) or byte buffer. */
export function readSafetensorsHeader(src: string | Uint8Array): StHeader {
  const bytes = typeof src === 'string' ? new Uint8Array(fs.readFileSync(src)) : src;
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const json = Buffer.from(bytes.buffer, bytes.byteOffset + 8, n).toString('utf8');
  return { header: JSON.parse(json), headerLength: n, dataStart: 8 + n };
}

/** Decodes one tensor of a safetensors byte buffer (F32, BF16, F16, I64) to float64. */
export function readSafetensorsTensor(bytes: Uint8Array, name: string): { dtype: StDtype; shape: number[]; data: Float64Array } {
  const { header, dataStart } = readSafetensorsHeader(bytes);
  const e = header[name] as { dtype: StDtype; shape: number[]; data_offsets: [number, number] } | undefined;
  if (!e || !('data_offsets' in e)) throw new Error(`safetensors-writer: no tensor ${name}`);
  const [b0, b1] = e.data_offsets;
  const dv = new DataView(bytes.buffer, bytes.byteOffset + dataStart + b0, b1 - b0);
  const n = (b1 - b0) / BYTES[e.dtype];
  const out = new Float64Array(n);
  const u32 = new Uint32Array(1);
  const f32 = new Float32Array(u32.buffer);
  for (let i = 0; i < n; i++) {
    switch (e.dtype) {
      case 'F32':
        out[i] = dv.getFloat32(i * 4, true);
        break;
      case 'BF16':
        u32[0] = dv.getUint16(i * 2, true) << 16;
        out[i] = f32[0];
        break;
      case 'F16': {
        const h = dv.getUint16(i * 2, true);
        const s = h & 0x8000 ? -1 : 1;
        const ex = (h >> 10) & 0x1f, m = h & 0x3ff;
        out[i] = ex === 0 ? s * m * 2 ** -24 : ex === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (ex - 15);
        break;
      }
      case 'I64':
        out[i] = Number(dv.getBigInt64(i * 8, true));
        break;
    }
  }
  return { dtype: e.dtype, shape: e.shape, data: out };
}
