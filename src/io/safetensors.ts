// safetensors.ts: the Hugging Face safetensors format (read, write, sharded checkpoints).
//
// Layout: 8 bytes little-endian u64 N, then N bytes of UTF-8 JSON (the header), then the
// data section. The header maps each tensor name to {dtype, shape, data_offsets: [start,
// end]} (byte offsets into the data section) and may hold "__metadata__": {str: str}.
// Tensors are read with a file handle in chunks straight into the tensor's own memory, so
// files (and tensors) past 2 GiB load without a second copy and without readFileSync.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DType, checkDType, dtypeSize, isFloat, parseDevice } from '../dtype';
import { Llm2ClipError, fail } from '../errors';
import { Tensor, shapeSize, shapeStr } from '../tensor';
import { beforeWrite } from './fault';

/** Largest header accepted (bytes): real headers are kilobytes; a bigger N means a corrupt file. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** safetensors dtypes and their element sizes in bytes (0: sub-byte, size not checked). */
const ST_ITEMSIZE: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1, F8_E8M0: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8, C64: 8,
  F4: 0, F6_E2M3: 0, F6_E3M2: 0,
};

/** The dtypes llm2clip loads: the safetensors name -> our dtype (F64 and I64 are narrowed). */
const ST_TO_DTYPE: Record<string, DType> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16', I32: 'int32', F64: 'float32', I64: 'int32' };
const DTYPE_TO_ST: Record<DType, string> = { float32: 'F32', bfloat16: 'BF16', float16: 'F16', int32: 'I32' };

let chunkBytes = 64 * 1024 * 1024;
/**
 * @internal Test hook: the size of each read and write (default 64 MiB), so that tests
 * exercise multi-chunk transfers on small files. Returns the previous value.
 */
export function setSafetensorsChunkBytes(n: number): number {
  if (!Number.isSafeInteger(n) || n < 8 || n % 8 !== 0)
    fail('INVALID_ARGUMENT', `setSafetensorsChunkBytes(n): a positive multiple of 8 is required (got ${n})`);
  const was = chunkBytes;
  chunkBytes = n;
  return was;
}

/** One tensor's entry in a safetensors header. */
export interface SafetensorsEntry {
  /** The safetensors dtype name as written in the file: 'F32', 'BF16', 'F16', 'I32', 'I64', ... */
  dtype: string;
  shape: number[];
  /** [start, end) byte offsets into the data section (which begins after the header). */
  offsets: [number, number];
}

/** What readSafetensorsHeader() returns. */
export interface SafetensorsHeader {
  tensors: Record<string, SafetensorsEntry>;
  /** The "__metadata__" map ({} when absent). */
  metadata: Record<string, string>;
  /** Byte offset of the data section in the file (8 + header length). */
  dataStart: number;
  /** Size of the file in bytes. */
  fileSize: number;
}

/** Options of loadSafetensors() and loadSafetensorsDir(). */
export interface LoadSafetensorsOptions {
  /** Where the tensors go: 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: string;
  /**
   * Cast every floating-point tensor to this float dtype after reading (int32 tensors are
   * left as they are, as Hugging Face's torch_dtype does).
   */
  dtype?: DType;
  /**
   * Which tensors to load: a list of names (each must be in the file, else
   * INVALID_ARGUMENT) or a predicate. Default: all. Unselected tensors are still checked
   * for a well-formed header entry, never read.
   */
  names?: string[] | ((name: string) => boolean);
}

const isLE = os.endianness() === 'LE';

function ioError(file: string, what: string, e: unknown): Llm2ClipError {
  const msg = e instanceof Error ? e.message : String(e);
  return new Llm2ClipError('IO_ERROR', `${what} ${file}: ${msg}`);
}

function corrupt(file: string, msg: string): never {
  fail('CORRUPT_FILE', `safetensors file ${file}: ${msg}`);
}

async function readFully(fh: fs.promises.FileHandle, dst: Uint8Array, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < dst.length) {
    const { bytesRead } = await fh.read(dst, done, dst.length - done, position + done);
    if (bytesRead === 0) corrupt(file, `unexpected end of file at byte ${position + done} (the file was truncated or changed while reading)`);
    done += bytesRead;
  }
}

/** Own-key lookup (a dtype or name such as "toString" must not hit Object.prototype). */
const has = (o: object, k: string): boolean => Object.hasOwn(o, k);

/**
 * The first key that occurs twice in one object of a JSON text (already checked by
 * JSON.parse), or null. JSON.parse keeps the last duplicate silently; other readers keep
 * the first, so a header with duplicates means different tensors to different tools.
 */
export function duplicateJsonKey(text: string): string | null {
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (j < text.length && text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      if (expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        const keys = stack[stack.length - 1]!;
        if (keys.has(key)) return key;
        keys.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
      expectKey = false;
    } else if (c === 0x7d || c === 0x5d) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) expectKey = stack[stack.length - 1] instanceof Set;
  }
  return null;
}

/** Parses and checks the header of an open file. */
async function parseHeader(fh: fs.promises.FileHandle, file: string): Promise<SafetensorsHeader> {
  let fileSize: number;
  try {
    fileSize = (await fh.stat()).size;
  } catch (e) {
    throw ioError(file, 'cannot stat', e);
  }
  if (fileSize < 8) corrupt(file, `the file has ${fileSize} bytes, fewer than the 8-byte header length`);
  const lenBuf = new Uint8Array(8);
  await readFully(fh, lenBuf, 0, file);
  const n = new DataView(lenBuf.buffer).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) corrupt(file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const headerLen = Number(n);
  if (8 + headerLen > fileSize) corrupt(file, `header length ${headerLen} runs past the end of the file (${fileSize} bytes)`);
  const hbuf = new Uint8Array(headerLen);
  await readFully(fh, hbuf, 8, file);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(hbuf);
  } catch {
    corrupt(file, 'the header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    corrupt(file, `the header is not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) corrupt(file, 'the header is not a JSON object');
  const dup = duplicateJsonKey(text);
  if (dup !== null) corrupt(file, `the header holds the key ${JSON.stringify(dup)} twice`);
  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const tensors: Record<string, SafetensorsEntry> = {};
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) corrupt(file, '"__metadata__" is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') corrupt(file, `"__metadata__"."${k}" is not a string`);
        if (k === '__proto__') corrupt(file, '"__metadata__" uses the reserved key "__proto__"');
        metadata[k] = v;
      }
      continue;
    }
    const where = `tensor "${name}"`;
    if (name === '__proto__') corrupt(file, `${where}: "__proto__" is a reserved name`);
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) corrupt(file, `${where}: the entry is not an object`);
    const { dtype, shape, data_offsets: offs } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string' || !has(ST_ITEMSIZE, dtype)) corrupt(file, `${where}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      corrupt(file, `${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0))
      corrupt(file, `${where}: data_offsets ${JSON.stringify(offs)} is not a pair of non-negative integers`);
    const [start, end] = offs as [number, number];
    if (start > end) corrupt(file, `${where}: data_offsets [${start}, ${end}] end before they start`);
    if (end > dataSize)
      corrupt(file, `${where}: data_offsets [${start}, ${end}] run past the end of the data section (${dataSize} bytes; the file may be truncated)`);
    const itemsize = ST_ITEMSIZE[dtype];
    const numel = shapeSize(shape as number[]);
    if (itemsize > 0 && (!Number.isSafeInteger(numel * itemsize) || end - start !== numel * itemsize))
      corrupt(file, `${where}: ${dtype}${shapeStr(shape as number[])} needs ${numel * itemsize} bytes but data_offsets [${start}, ${end}] hold ${end - start}`);
    tensors[name] = { dtype, shape: [...(shape as number[])], offsets: [start, end] };
  }
  // No two tensors may share bytes (empty ranges overlap nothing).
  const ranges = Object.entries(tensors)
    .filter(([, e]) => e.offsets[1] > e.offsets[0])
    .sort((a, b) => a[1].offsets[0] - b[1].offsets[0]);
  for (let i = 1; i < ranges.length; i++) {
    const [pn, p] = ranges[i - 1], [cn, c] = ranges[i];
    if (c.offsets[0] < p.offsets[1])
      corrupt(file, `tensors "${pn}" [${p.offsets}] and "${cn}" [${c.offsets}] overlap in the data section`);
  }
  return { tensors, metadata, dataStart, fileSize };
}

async function openRead(file: string, what: string): Promise<fs.promises.FileHandle> {
  if (typeof file !== 'string' || file.length === 0) fail('INVALID_ARGUMENT', `${what}: path must be a non-empty string (got ${JSON.stringify(file)})`);
  try {
    return await fs.promises.open(file, 'r');
  } catch (e) {
    throw ioError(file, 'cannot open safetensors file', e);
  }
}

/**
 * Reads and checks the header of a safetensors file without loading any tensor:
 * names, dtypes (as written, e.g. 'BF16'), shapes, byte offsets and the metadata.
 * Throws IO_ERROR when the file cannot be read and CORRUPT_FILE when its header breaks
 * the format (bad length, JSON, dtype, shape, out-of-bounds or overlapping offsets).
 */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const fh = await openRead(file, 'readSafetensorsHeader(path)');
  try {
    return await parseHeader(fh, file);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** Converts little-endian float64 / int64 bytes to float32 / int32 values. */
function narrow(src: Uint8Array, dst: Float32Array | Int32Array, at: number, stDtype: string, file: string, name: string): void {
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const n = src.byteLength / 8;
  if (stDtype === 'F64') for (let i = 0; i < n; i++) dst[at + i] = dv.getFloat64(i * 8, true);
  else
    for (let i = 0; i < n; i++) {
      const v = dv.getBigInt64(i * 8, true);
      if (v < -2147483648n || v > 2147483647n)
        fail('DTYPE_MISMATCH', `safetensors file ${file}: tensor "${name}" (I64) holds ${v} at element ${at + i}, outside the int32 range llm2clip loads I64 into`);
      dst[at + i] = Number(v);
    }
}

/** Reads one tensor (already checked) into a new CPU tensor. */
async function readTensor(fh: fs.promises.FileHandle, file: string, name: string, e: SafetensorsEntry, dataStart: number): Promise<Tensor> {
  const dtype = ST_TO_DTYPE[e.dtype];
  const t = Tensor.empty(e.shape, dtype, { type: 'cpu', index: 0 });
  try {
    const bytes = e.offsets[1] - e.offsets[0];
    if (bytes === 0) return t;
    const v = t.view();
    const pos = dataStart + e.offsets[0];
    if (e.dtype === 'F64' || e.dtype === 'I64') {
      const scratch = new Uint8Array(Math.min(chunkBytes, bytes));
      for (let off = 0; off < bytes; off += chunkBytes) {
        const len = Math.min(chunkBytes, bytes - off);
        const part = scratch.subarray(0, len);
        await readFully(fh, part, pos + off, file);
        narrow(part, v as Float32Array | Int32Array, off / 8, e.dtype, file, name);
      }
    } else {
      // One small view per chunk: a typed array over a whole multi-GiB tensor may exceed
      // Node's typed-array length limit even where the tensor's ArrayBuffer does not.
      for (let off = 0; off < bytes; off += chunkBytes)
        await readFully(fh, new Uint8Array(v.buffer, v.byteOffset + off, Math.min(chunkBytes, bytes - off)), pos + off, file);
    }
    return t;
  } catch (err) {
    t.dispose();
    throw err;
  }
}

function selectNames(all: string[], names: LoadSafetensorsOptions['names'], file: string, what: string): string[] {
  if (names === undefined) return all;
  if (typeof names === 'function') return all.filter((n) => names(n));
  if (!Array.isArray(names) || !names.every((n) => typeof n === 'string'))
    fail('INVALID_ARGUMENT', `${what}: options.names must be an array of strings or a function`);
  const have = new Set(all);
  for (const n of names) if (!have.has(n)) fail('INVALID_ARGUMENT', `${what}: tensor "${n}" is not in ${file}`);
  return [...new Set(names)];
}

function checkLoadOptions(options: LoadSafetensorsOptions, what: string): void {
  if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', `${what}: options must be an object`);
  if (options.dtype !== undefined) {
    checkDType(options.dtype, `${what}: options.dtype`);
    if (!isFloat(options.dtype)) fail('INVALID_ARGUMENT', `${what}: options.dtype must be a float dtype (got ${options.dtype}); int32 tensors are never cast`);
  }
  if (options.device !== undefined) parseDevice(options.device, `${what}: options.device`); // before any I/O
}

/** Casts / moves a freshly read CPU tensor as the options ask; disposes the input when it makes a new one. */
function finish(t: Tensor, options: LoadSafetensorsOptions): Tensor {
  let out = t;
  if (options.dtype && isFloat(out.dtype) && out.dtype !== options.dtype) {
    const c = out.cast(options.dtype);
    out.dispose();
    out = c;
  }
  if (options.device !== undefined && options.device !== 'cpu') {
    try {
      const m = out.to(options.device);
      out.dispose();
      out = m;
    } catch (e) {
      out.dispose();
      throw e;
    }
  }
  return out;
}

async function loadOpen(
  fh: fs.promises.FileHandle,
  file: string,
  options: LoadSafetensorsOptions,
  what: string,
  out: Record<string, Tensor>,
): Promise<void> {
  const header = await parseHeader(fh, file);
  const wanted = selectNames(Object.keys(header.tensors), options.names, file, what);
  // Read in file order (sequential I/O).
  wanted.sort((a, b) => header.tensors[a].offsets[0] - header.tensors[b].offsets[0]);
  for (const name of wanted) {
    const e = header.tensors[name];
    if (!has(ST_TO_DTYPE, e.dtype))
      fail(
        'DTYPE_MISMATCH',
        `safetensors file ${file}: tensor "${name}" has dtype ${e.dtype}, which llm2clip does not load ` +
          `(supported: F32, BF16, F16, I32; F64 and I64 are narrowed to float32 / int32); leave it out with options.names`,
      );
    if (e.shape.length > 8)
      fail('INVALID_ARGUMENT', `safetensors file ${file}: tensor "${name}" has ${e.shape.length} dimensions; llm2clip tensors have at most 8`);
    out[name] = finish(await readTensor(fh, file, name, e, header.dataStart), options);
  }
}

function disposeAll(ts: Record<string, Tensor>): void {
  for (const t of Object.values(ts)) t.dispose();
}

/**
 * Loads tensors from a safetensors file: F32, BF16, F16 and I32 as float32, bfloat16,
 * float16 and int32 (bit-exact); F64 and I64 are narrowed to float32 (rounded; beyond its
 * range to ±Infinity) and int32
 * (DTYPE_MISMATCH if a value does not fit). Other dtypes (BOOL, U8, I8, I16, U16, U32,
 * U64, F8_*, C64, ...) throw DTYPE_MISMATCH when selected: skip them with options.names.
 *
 * Errors: IO_ERROR (cannot open / read), CORRUPT_FILE (the file breaks the format: short
 * file, header length past the end or over {@link MAX_HEADER_BYTES}, invalid JSON, an
 * unknown dtype, offsets out of bounds, overlapping or not matching the shape),
 * DTYPE_MISMATCH (an unsupported dtype), INVALID_ARGUMENT (bad options, a requested name
 * that is absent). Messages name the file and the tensor. Nothing is left allocated on
 * failure.
 */
export async function loadSafetensors(file: string, options: LoadSafetensorsOptions = {}): Promise<Record<string, Tensor>> {
  const what = `loadSafetensors(${JSON.stringify(file)})`;
  checkLoadOptions(options, what);
  if (!isLE) fail('INTERNAL', `${what}: safetensors data are little-endian; big-endian hosts are not supported`);
  const fh = await openRead(file, what);
  const out: Record<string, Tensor> = {};
  try {
    await loadOpen(fh, file, options, what, out);
    return out;
  } catch (e) {
    disposeAll(out);
    if (e instanceof Llm2ClipError) throw e;
    throw ioError(file, 'cannot read safetensors file', e);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/**
 * Writes tensors as a safetensors file in the Hugging Face layout: the header (with
 * "__metadata__" first; {format: 'pt'} is added unless metadata sets "format", since
 * transformers refuses files without it) padded with spaces to a multiple of 8 bytes,
 * then the data contiguous and in order of decreasing element size, then name (the order
 * of the reference Rust writer, which keeps every tensor aligned to its element size).
 * Values are written bit-exactly in their dtype (bfloat16 / float16 bits kept); CUDA
 * tensors are copied to the host one at a time. The file is written to
 * `path + '.tmp-<pid>'` and renamed over path, so readers never see a partial file.
 */
export async function saveSafetensors(file: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): Promise<void> {
  const what = `saveSafetensors(${JSON.stringify(file)})`;
  if (typeof file !== 'string' || file.length === 0) fail('INVALID_ARGUMENT', `saveSafetensors(path): path must be a non-empty string`);
  if (tensors === null || typeof tensors !== 'object') fail('INVALID_ARGUMENT', `${what}: tensors must be an object of name -> Tensor`);
  if (!isLE) fail('INTERNAL', `${what}: safetensors data are little-endian; big-endian hosts are not supported`);
  const meta: Record<string, string> = {};
  if (metadata !== undefined) {
    if (metadata === null || typeof metadata !== 'object') fail('INVALID_ARGUMENT', `${what}: metadata must be an object of strings`);
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') fail('INVALID_ARGUMENT', `${what}: metadata["${k}"] must be a string (got ${typeof v})`);
      meta[k] = v;
    }
  }
  if (meta.format === undefined) meta.format = 'pt';
  const entries = Object.entries(tensors);
  for (const [name, t] of entries) {
    if (name.length === 0 || name === '__metadata__') fail('INVALID_ARGUMENT', `${what}: invalid tensor name ${JSON.stringify(name)}`);
    if (!(t instanceof Tensor)) fail('INVALID_ARGUMENT', `${what}: tensors["${name}"] is not a Tensor`);
    t.nat(`${what}: tensor "${name}"`);
  }
  entries.sort(([an, a], [bn, b]) => dtypeSize(b.dtype) - dtypeSize(a.dtype) || (an < bn ? -1 : an > bn ? 1 : 0));
  const header: Record<string, unknown> = { __metadata__: meta };
  let offset = 0;
  for (const [name, t] of entries) {
    const bytes = t.size * dtypeSize(t.dtype);
    header[name] = { dtype: DTYPE_TO_ST[t.dtype], shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(json.length));

  const tmp = `${file}.tmp-${process.pid}`;
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(tmp, 'w');
  } catch (e) {
    throw ioError(tmp, 'cannot create', e);
  }
  let ok = false;
  try {
    let pos = 0;
    const write = async (buf: ArrayBufferLike, start: number, bytes: number): Promise<void> => {
      for (let off = 0; off < bytes; ) {
        const chunk = new Uint8Array(buf, start + off, Math.min(chunkBytes, bytes - off));
        beforeWrite(file, chunk.length);
        const { bytesWritten } = await fh.write(chunk, 0, chunk.length, pos);
        if (bytesWritten <= 0) throw new Error(`no bytes written at offset ${pos}`);
        off += bytesWritten;
        pos += bytesWritten;
      }
    };
    await write(lenBuf.buffer, lenBuf.byteOffset, lenBuf.length);
    await write(json.buffer, json.byteOffset, json.length);
    for (const [, t] of entries) {
      if (t.size === 0) continue;
      const host = t.device === 'cpu' ? t : t.to('cpu');
      try {
        const v = host.view();
        await write(v.buffer, v.byteOffset, t.size * dtypeSize(t.dtype));
      } finally {
        if (host !== t) host.dispose();
      }
    }
    await fh.sync();
    ok = true;
  } catch (e) {
    if (e instanceof Llm2ClipError) throw e;
    throw ioError(file, 'cannot write', e);
  } finally {
    await fh.close().catch(() => undefined);
    if (!ok) await fs.promises.unlink(tmp).catch(() => undefined);
  }
  try {
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.unlink(tmp).catch(() => undefined);
    throw ioError(file, `cannot rename ${tmp} to`, e);
  }
}

/** Options of loadSafetensorsDir(). */
export interface LoadSafetensorsDirOptions extends LoadSafetensorsOptions {
  /**
   * The checkpoint's base name: `<baseName>.safetensors` or
   * `<baseName>.safetensors.index.json` (default 'model').
   */
  baseName?: string;
}

/**
 * Loads a Hugging Face checkpoint folder: the shards listed in
 * `model.safetensors.index.json` (its "weight_map": tensor name -> shard file) when that
 * index exists, else `model.safetensors`. With an index, exactly the names of the
 * weight_map are loaded (filtered by options.names); every listed shard must exist in the
 * folder (IO_ERROR naming it otherwise) and hold every tensor the index assigns to it
 * (CORRUPT_FILE otherwise). A shard name with a path separator is refused (CORRUPT_FILE).
 */
export async function loadSafetensorsDir(dir: string, options: LoadSafetensorsDirOptions = {}): Promise<Record<string, Tensor>> {
  const what = `loadSafetensorsDir(${JSON.stringify(dir)})`;
  if (typeof dir !== 'string' || dir.length === 0) fail('INVALID_ARGUMENT', `loadSafetensorsDir(dir): dir must be a non-empty string`);
  checkLoadOptions(options, what);
  const base = options.baseName ?? 'model';
  if (typeof base !== 'string' || base.length === 0 || /[/\\]/.test(base)) fail('INVALID_ARGUMENT', `${what}: options.baseName must be a file name`);
  const indexPath = path.join(dir, `${base}.safetensors.index.json`);
  const single = path.join(dir, `${base}.safetensors`);
  let indexText: string | null = null;
  try {
    indexText = await fs.promises.readFile(indexPath, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(indexPath, 'cannot read', e);
  }
  if (indexText === null) {
    if (!fs.existsSync(single)) fail('IO_ERROR', `${what}: neither ${base}.safetensors nor ${base}.safetensors.index.json is in ${dir}`);
    return loadSafetensors(single, options);
  }
  let index: unknown;
  try {
    index = JSON.parse(indexText);
  } catch (e) {
    fail('CORRUPT_FILE', `safetensors index ${indexPath}: not valid JSON (${(e as Error).message})`);
  }
  const dupKey = duplicateJsonKey(indexText);
  if (dupKey !== null) fail('CORRUPT_FILE', `safetensors index ${indexPath}: the key ${JSON.stringify(dupKey)} occurs twice`);
  const wm = (index as { weight_map?: unknown } | null)?.weight_map;
  if (wm === null || typeof wm !== 'object' || Array.isArray(wm)) fail('CORRUPT_FILE', `safetensors index ${indexPath}: no "weight_map" object`);
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
    if (name === '__proto__') fail('CORRUPT_FILE', `safetensors index ${indexPath}: weight_map uses the reserved name "__proto__"`);
    if (typeof shard !== 'string' || shard.length === 0 || /[/\\]/.test(shard) || shard === '.' || shard === '..')
      fail('CORRUPT_FILE', `safetensors index ${indexPath}: weight_map["${name}"] = ${JSON.stringify(shard)} is not a file name in the folder`);
    if (!byShard.has(shard)) byShard.set(shard, []);
    byShard.get(shard)!.push(name);
  }
  const all = [...byShard.values()].flat();
  const wanted = new Set(selectNames(all, options.names, indexPath, what));
  for (const shard of byShard.keys())
    if (!fs.existsSync(path.join(dir, shard)))
      fail('IO_ERROR', `${what}: shard ${shard} listed in ${indexPath} is missing from ${dir}`);
  const out: Record<string, Tensor> = {};
  try {
    for (const [shard, names] of byShard) {
      const shardPath = path.join(dir, shard);
      const header = await readSafetensorsHeader(shardPath);
      for (const n of names)
        if (!has(header.tensors, n)) fail('CORRUPT_FILE', `safetensors index ${indexPath} assigns tensor "${n}" to ${shard}, which does not hold it`);
      const mine = names.filter((n) => wanted.has(n));
      if (mine.length === 0) continue;
      Object.assign(out, await loadSafetensors(shardPath, { ...options, names: mine }));
    }
    return out;
  } catch (e) {
    disposeAll(out);
    throw e;
  }
}
