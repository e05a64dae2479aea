// safetensors: round trips for every dtype (bit-exact), a hand-written file, corrupt
// files (each a Llm2ClipError naming the file / tensor), multi-chunk reads, sharded
// checkpoints, CUDA tensors where a GPU is present.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tensor, tensor, randn, DType, loadSafetensors, saveSafetensors, readSafetensorsHeader, loadSafetensorsDir } from '../src';
import { setSafetensorsChunkBytes } from '../src/io/safetensors';
import { tensorCounts } from '../src/tensor';
import { hostRandom, describeGpu, hasGpu, expectCodeAsync } from './helpers';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-st-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Raw bits of a CPU tensor. */
function bits(t: Tensor): Uint8Array {
  const v = t.view();
  return new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
}

function disposeAll(ts: Record<string, Tensor>): void {
  for (const t of Object.values(ts)) t.dispose();
}

/** A tensor of dtype with fresh values (bf16/f16 bits include NaN, Inf, subnormals). */
function make(shape: number[], dtype: DType, seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const r = hostRandom(n, seed);
  if (dtype === 'int32') return tensor(Int32Array.from(r, (x) => Math.round(x * 2 ** 31)), shape, { dtype });
  if (dtype === 'float32') {
    const a = Float32Array.from(r, (x) => x * 1000);
    if (n > 3) [a[0], a[1], a[2]] = [NaN, -Infinity, 1e-42];
    return tensor(a, shape);
  }
  // 16-bit: set arbitrary bit patterns directly (every pattern must survive).
  const t = tensor(new Float32Array(n), shape, { dtype });
  const v = t.view() as Uint16Array;
  for (let i = 0; i < n; i++) v[i] = Math.floor((r[i] + 1) * 32768) & 0xffff;
  return t;
}

/** Writes a safetensors file from a header object and a data buffer (no library code). */
function writeRaw(file: string, header: unknown, data: Uint8Array, opts: { lenOverride?: bigint; pad?: number; raw?: string | Uint8Array } = {}): void {
  const json = opts.raw instanceof Uint8Array ? Buffer.from(opts.raw) : Buffer.from(opts.raw ?? JSON.stringify(header) + ' '.repeat(opts.pad ?? 0), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(opts.lenOverride ?? BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, data]));
}

describe('safetensors', () => {
  test('round trip of every dtype, odd shapes, 0-d and empty tensors, bit-exact', async () => {
    const dtypes: DType[] = ['float32', 'bfloat16', 'float16', 'int32'];
    const shapes = [[], [1], [7], [3, 5], [2, 3, 5], [0], [4, 0, 3], [1, 1, 1, 9]];
    const ts: Record<string, Tensor> = {};
    let seed = 100;
    for (const d of dtypes) for (const s of shapes) ts[`${d}.${s.join('x') || 'scalar'}`] = make(s, d, seed++);
    const file = path.join(dir, 'all.safetensors');
    await saveSafetensors(file, ts, { note: 'hello', 'ünï': 'cödé' });
    const back = await loadSafetensors(file);
    try {
      expect(Object.keys(back).sort()).toEqual(Object.keys(ts).sort());
      for (const [name, t] of Object.entries(ts)) {
        const b = back[name];
        expect([name, b.dtype, b.shape]).toEqual([name, t.dtype, t.shape]);
        expect(Buffer.from(bits(b)).equals(Buffer.from(bits(t)))).toBe(true);
      }
      const h = await readSafetensorsHeader(file);
      expect(h.metadata).toEqual({ note: 'hello', 'ünï': 'cödé', format: 'pt' });
      expect(h.dataStart % 8).toBe(0);
      expect(h.tensors['bfloat16.3x5']).toEqual({ dtype: 'BF16', shape: [3, 5], offsets: expect.any(Array) });
      // Data contiguous, every tensor aligned to its element size.
      const ranges = Object.values(h.tensors).map((e) => e.offsets).sort((a, b) => a[0] - b[0]);
      let end = 0;
      for (const [s, e] of ranges) {
        expect(s).toBe(end);
        end = e;
      }
      expect(h.dataStart + end).toBe(h.fileSize);
      for (const e of Object.values(h.tensors)) expect(e.offsets[0] % (e.dtype === 'F32' || e.dtype === 'I32' ? 4 : 2)).toBe(0);
      // No temp file left behind.
      expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    } finally {
      disposeAll(ts);
      disposeAll(back);
    }
  });

  test('a hand-written file loads (F32, BF16, F16, I32, F64 and I64 narrowed), with metadata and padding', async () => {
    const f32 = new Float32Array([1.5, -2, 3.25, 1e30, -0, 7]);
    const bf = new Uint16Array([0x3f80, 0xc000, 0x7f80, 0x0001]); // 1, -2, Inf, subnormal
    const f16 = new Uint16Array([0x3c00, 0x7bff, 0x8001]); // 1, 65504, -min subnormal
    const i32 = new Int32Array([-2147483648, 0, 2147483647]);
    const f64 = new Float64Array([0.1, -1e300, 2.5]);
    const i64 = new BigInt64Array([-5n, 2147483647n]);
    const parts: [string, string, number[], Uint8Array][] = [
      ['w', 'F32', [2, 3], new Uint8Array(f32.buffer)],
      ['b', 'BF16', [4], new Uint8Array(bf.buffer)],
      ['h', 'F16', [3, 1], new Uint8Array(f16.buffer)],
      ['i', 'I32', [3], new Uint8Array(i32.buffer)],
      ['d', 'F64', [3], new Uint8Array(f64.buffer)],
      ['l', 'I64', [1, 2], new Uint8Array(i64.buffer)],
      ['e', 'F32', [0, 5], new Uint8Array(0)],
    ];
    const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
    const chunks: Uint8Array[] = [];
    let off = 0;
    // Reverse file order vs header order, to check offsets are honoured.
    for (const [name, dtype, shape, data] of [...parts].reverse()) {
      header[name] = { dtype, shape, data_offsets: [off, off + data.length] };
      chunks.push(data);
      off += data.length;
    }
    const file = path.join(dir, 'hand.safetensors');
    writeRaw(file, header, Buffer.concat(chunks), { pad: 5 });
    const t = await loadSafetensors(file);
    try {
      expect(Array.from(t.w.toArray())).toEqual(Array.from(f32));
      expect(t.w.shape).toEqual([2, 3]);
      expect([t.b.dtype, t.h.dtype, t.i.dtype, t.d.dtype, t.l.dtype]).toEqual(['bfloat16', 'float16', 'int32', 'float32', 'int32']);
      expect(Array.from(t.b.view())).toEqual(Array.from(bf));
      expect(Array.from(t.h.view())).toEqual(Array.from(f16));
      expect(Array.from(t.b.toArray()).slice(0, 3)).toEqual([1, -2, Infinity]);
      expect(Array.from(t.h.toArray()).slice(0, 2)).toEqual([1, 65504]);
      expect(Array.from(t.i.toArray())).toEqual(Array.from(i32));
      expect(Array.from(t.d.toArray())).toEqual(Array.from(Float32Array.from(f64)));
      expect(Array.from(t.l.toArray())).toEqual([-5, 2147483647]);
      expect(t.e.shape).toEqual([0, 5]);
      const h = await readSafetensorsHeader(file);
      expect(h.tensors.d).toEqual({ dtype: 'F64', shape: [3], offsets: [16, 40] }); // after l (16 bytes) and e (0)
    } finally {
      disposeAll(t);
    }
  });

  test('options: names (list or predicate), dtype cast of float tensors only', async () => {
    const file = path.join(dir, 'opts.safetensors');
    const ts = { a: make([5, 3], 'float32', 1), b: make([4], 'bfloat16', 2), c: make([3], 'int32', 3) };
    await saveSafetensors(file, ts);
    const some = await loadSafetensors(file, { names: ['c', 'a'] });
    expect(Object.keys(some).sort()).toEqual(['a', 'c']);
    disposeAll(some);
    const pred = await loadSafetensors(file, { names: (n) => n !== 'a' });
    expect(Object.keys(pred).sort()).toEqual(['b', 'c']);
    disposeAll(pred);
    const cast = await loadSafetensors(file, { dtype: 'bfloat16' });
    try {
      expect([cast.a.dtype, cast.b.dtype, cast.c.dtype]).toEqual(['bfloat16', 'bfloat16', 'int32']);
      const want = ts.a.cast('bfloat16');
      expect(Array.from(cast.a.view())).toEqual(Array.from(want.view()));
      want.dispose();
      expect(Array.from(cast.c.toArray())).toEqual(Array.from(ts.c.toArray()));
    } finally {
      disposeAll(cast);
      disposeAll(ts);
    }
    await expectCodeAsync(loadSafetensors(file, { names: ['zz'] }), 'INVALID_ARGUMENT', 'zz', file);
    await expectCodeAsync(loadSafetensors(file, { dtype: 'int32' }), 'INVALID_ARGUMENT', 'dtype');
    await expectCodeAsync(loadSafetensors(file, { device: 'tpu' }), 'INVALID_ARGUMENT', 'tpu');
    if (!hasGpu) await expectCodeAsync(loadSafetensors(file, { device: 'cuda' }), 'DEVICE_UNAVAILABLE', 'cuda');
  });

  test('multi-chunk reads and writes (small chunk size), incl. F64 narrowing across chunks', async () => {
    const was = setSafetensorsChunkBytes(24);
    try {
      const ts = { big: make([37, 11], 'float32', 7), half: make([101], 'float16', 8), odd: make([3], 'bfloat16', 9) };
      const file = path.join(dir, 'chunks.safetensors');
      await saveSafetensors(file, ts);
      const back = await loadSafetensors(file);
      for (const k of Object.keys(ts) as (keyof typeof ts)[]) expect(Buffer.from(bits(back[k])).equals(Buffer.from(bits(ts[k])))).toBe(true);
      disposeAll(back);
      disposeAll(ts);
      const f64 = Float64Array.from(hostRandom(50, 10), (x) => x * 3);
      const f2 = path.join(dir, 'f64.safetensors');
      writeRaw(f2, { x: { dtype: 'F64', shape: [5, 10], data_offsets: [0, 400] } }, new Uint8Array(f64.buffer));
      const t = await loadSafetensors(f2);
      expect(Array.from(t.x.toArray())).toEqual(Array.from(Float32Array.from(f64)));
      t.x.dispose();
    } finally {
      setSafetensorsChunkBytes(was);
    }
  });

  test('corrupt files: each a CORRUPT_FILE naming the file (and the tensor), nothing leaked', async () => {
    const data = new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer); // 24 bytes
    const ok = { a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [2], data_offsets: [16, 24] } };
    const cases: [string, (f: string) => void, (string | RegExp)[]][] = [
      ['empty', (f) => fs.writeFileSync(f, Buffer.alloc(0)), ['fewer than the 8-byte']],
      ['short', (f) => fs.writeFileSync(f, Buffer.alloc(5)), ['fewer than the 8-byte']],
      ['len past end', (f) => writeRaw(f, ok, data, { lenOverride: 100000n }), ['runs past the end']],
      ['len huge', (f) => writeRaw(f, ok, data, { lenOverride: 0xffffffffffffffffn }), ['exceeds']],
      ['bad json', (f) => writeRaw(f, null, data, { raw: '{"a": {"dtype": "F32",' }), ['not valid JSON']],
      ['not object', (f) => writeRaw(f, [1, 2], data), ['not a JSON object']],
      ['bad utf8', (f) => writeRaw(f, null, data, { raw: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]) }), ['not valid UTF-8']],
      ['truncated data', (f) => writeRaw(f, ok, data.subarray(0, 20)), ['"b"', 'run past the end']],
      ['out of bounds', (f) => writeRaw(f, { ...ok, b: { dtype: 'F32', shape: [2], data_offsets: [24, 32] } }, data), ['"b"', 'past the end']],
      ['overlap', (f) => writeRaw(f, { ...ok, b: { dtype: 'F32', shape: [2], data_offsets: [12, 20] } }, data), ['"a"', '"b"', 'overlap']],
      ['size mismatch', (f) => writeRaw(f, { ...ok, a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 16] } }, data), ['"a"', 'needs 24 bytes']],
      ['unknown dtype', (f) => writeRaw(f, { ...ok, a: { dtype: 'F33', shape: [2, 2], data_offsets: [0, 16] } }, data), ['"a"', 'unknown dtype "F33"']],
      ['bad shape', (f) => writeRaw(f, { ...ok, a: { dtype: 'F32', shape: [2, -2], data_offsets: [0, 16] } }, data), ['"a"', 'shape']],
      ['bad offsets', (f) => writeRaw(f, { ...ok, a: { dtype: 'F32', shape: [2, 2], data_offsets: [16, 0] } }, data), ['"a"', 'end before']],
      ['missing offsets', (f) => writeRaw(f, { ...ok, a: { dtype: 'F32', shape: [2, 2] } }, data), ['"a"', 'data_offsets']],
      ['bad metadata', (f) => writeRaw(f, { ...ok, __metadata__: { x: 1 } }, data), ['__metadata__']],
    ];
    const live = tensorCounts().liveTensors;
    for (const [what, write, parts] of cases) {
      const f = path.join(dir, `corrupt-${what.replace(/ /g, '_')}.safetensors`);
      write(f);
      const e = await expectCodeAsync(loadSafetensors(f), 'CORRUPT_FILE', f, ...parts);
      expect([what, e.message]).toEqual([what, expect.stringContaining(f)]);
      await expectCodeAsync(readSafetensorsHeader(f), 'CORRUPT_FILE', f);
    }
    // Unsupported (valid) dtypes: DTYPE_MISMATCH when selected, skippable by names.
    const f = path.join(dir, 'u8.safetensors');
    writeRaw(f, { ...ok, m: { dtype: 'U8', shape: [3], data_offsets: [24, 27] } }, Buffer.concat([data, Buffer.from([1, 2, 3])]));
    await expectCodeAsync(loadSafetensors(f), 'DTYPE_MISMATCH', f, '"m"', 'U8'); // after reading a and b
    expect(tensorCounts().liveTensors).toBe(live);
    const some = await loadSafetensors(f, { names: (n) => n !== 'm' });
    expect(Array.from(some.b.toArray())).toEqual([5, 6]);
    disposeAll(some);
    // I64 beyond int32.
    const big = path.join(dir, 'i64big.safetensors');
    writeRaw(big, { x: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(new BigInt64Array([1n << 40n]).buffer));
    await expectCodeAsync(loadSafetensors(big), 'DTYPE_MISMATCH', big, '"x"');
    expect(tensorCounts().liveTensors).toBe(live);
  });

  test('missing files and bad arguments', async () => {
    const missing = path.join(dir, 'nope.safetensors');
    await expectCodeAsync(loadSafetensors(missing), 'IO_ERROR', missing);
    await expectCodeAsync(readSafetensorsHeader(missing), 'IO_ERROR', missing);
    await expectCodeAsync(loadSafetensors(''), 'INVALID_ARGUMENT');
    const t = make([2], 'float32', 3);
    await expectCodeAsync(saveSafetensors(path.join(dir, 'no', 'such', 'dir.safetensors'), { t }), 'IO_ERROR', 'dir.safetensors');
    await expectCodeAsync(saveSafetensors(path.join(dir, 'x.safetensors'), { t, u: 5 as unknown as Tensor }), 'INVALID_ARGUMENT', '"u"');
    await expectCodeAsync(saveSafetensors(path.join(dir, 'x.safetensors'), { __metadata__: t }), 'INVALID_ARGUMENT', '__metadata__');
    await expectCodeAsync(saveSafetensors(path.join(dir, 'x.safetensors'), { t }, { a: 1 as unknown as string }), 'INVALID_ARGUMENT', 'metadata');
    const d = make([2], 'float32', 4);
    d.dispose();
    await expectCodeAsync(saveSafetensors(path.join(dir, 'x.safetensors'), { t, d }), 'DISPOSED', '"d"');
    expect(fs.existsSync(path.join(dir, 'x.safetensors'))).toBe(false);
    t.dispose();
  });

  test('saving over an existing file replaces it atomically', async () => {
    const file = path.join(dir, 'over.safetensors');
    const a = make([3], 'float32', 11), b = make([5, 2], 'bfloat16', 12);
    await saveSafetensors(file, { a });
    await saveSafetensors(file, { b });
    const back = await loadSafetensors(file);
    expect(Object.keys(back)).toEqual(['b']);
    expect(Array.from(back.b.view())).toEqual(Array.from(b.view()));
    disposeAll(back);
    a.dispose();
    b.dispose();
  });

  test('sharded checkpoint folder with an index; single-file folder; broken indexes', async () => {
    const sd = fs.mkdtempSync(path.join(dir, 'shards-'));
    const ts: Record<string, Tensor> = {};
    for (let i = 0; i < 5; i++) ts[`layers.${i}.weight`] = make([3, i + 1], 'bfloat16', 20 + i);
    ts['norm.weight'] = make([7], 'float32', 30);
    const s1 = { 'layers.0.weight': ts['layers.0.weight'], 'layers.1.weight': ts['layers.1.weight'], 'norm.weight': ts['norm.weight'] };
    const s2 = { 'layers.2.weight': ts['layers.2.weight'], 'layers.3.weight': ts['layers.3.weight'], 'layers.4.weight': ts['layers.4.weight'] };
    await saveSafetensors(path.join(sd, 'model-00001-of-00002.safetensors'), s1);
    await saveSafetensors(path.join(sd, 'model-00002-of-00002.safetensors'), { ...s2, extra: ts['norm.weight'] });
    const weightMap: Record<string, string> = {};
    for (const k of Object.keys(s1)) weightMap[k] = 'model-00001-of-00002.safetensors';
    for (const k of Object.keys(s2)) weightMap[k] = 'model-00002-of-00002.safetensors';
    const writeIndex = (wm: unknown): void => fs.writeFileSync(path.join(sd, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: wm }));
    writeIndex(weightMap);
    const back = await loadSafetensorsDir(sd, { dtype: 'float32' });
    try {
      expect(Object.keys(back).sort()).toEqual(Object.keys(ts).sort()); // "extra" is not in the index: not loaded
      for (const [k, t] of Object.entries(ts)) {
        expect(back[k].dtype).toBe('float32');
        expect(Array.from(back[k].toArray())).toEqual(Array.from(t.toArray()));
      }
    } finally {
      disposeAll(back);
    }
    const few = await loadSafetensorsDir(sd, { names: ['layers.3.weight'] });
    expect(Object.keys(few)).toEqual(['layers.3.weight']);
    disposeAll(few);

    writeIndex({ ...weightMap, 'layers.9.weight': 'model-00001-of-00002.safetensors' });
    await expectCodeAsync(loadSafetensorsDir(sd), 'CORRUPT_FILE', '"layers.9.weight"', 'model-00001-of-00002');
    writeIndex({ ...weightMap, 'layers.9.weight': 'model-00003-of-00003.safetensors' });
    await expectCodeAsync(loadSafetensorsDir(sd), 'IO_ERROR', 'model-00003-of-00003', 'missing');
    writeIndex({ ...weightMap, 'layers.9.weight': '../escape.safetensors' });
    await expectCodeAsync(loadSafetensorsDir(sd), 'CORRUPT_FILE', 'escape');
    writeIndex(['not', 'a', 'map']);
    await expectCodeAsync(loadSafetensorsDir(sd), 'CORRUPT_FILE', 'weight_map');
    fs.writeFileSync(path.join(sd, 'model.safetensors.index.json'), '{"weight_map": ');
    await expectCodeAsync(loadSafetensorsDir(sd), 'CORRUPT_FILE', 'model.safetensors.index.json');
    fs.unlinkSync(path.join(sd, 'model.safetensors.index.json'));
    await expectCodeAsync(loadSafetensorsDir(sd), 'IO_ERROR', 'model.safetensors');

    await saveSafetensors(path.join(sd, 'model.safetensors'), s2);
    const single = await loadSafetensorsDir(sd);
    expect(Object.keys(single).sort()).toEqual(Object.keys(s2).sort());
    disposeAll(single);
    disposeAll(ts);
  });

  test('large random tensor round trip (multi-MiB, bfloat16 from randn)', async () => {
    const was = setSafetensorsChunkBytes(1 << 20);
    try {
      const t = randn([1537, 1031], { seed: 77, dtype: 'bfloat16' });
      const file = path.join(dir, 'large.safetensors');
      await saveSafetensors(file, { t });
      expect(fs.statSync(file).size).toBeGreaterThan(3 * 1024 * 1024);
      const back = await loadSafetensors(file);
      expect(Buffer.from(bits(back.t)).equals(Buffer.from(bits(t)))).toBe(true);
      back.t.dispose();
      t.dispose();
    } finally {
      setSafetensorsChunkBytes(was);
    }
  });
});

describeGpu('safetensors on CUDA', () => {
  test('CUDA tensors save bit-exactly; load to the GPU', async () => {
    const ts = { a: randn([33, 17], { seed: 5, dtype: 'bfloat16', device: 'cuda' }), b: randn([9], { seed: 6, device: 'cuda' }) };
    const file = path.join(dir, 'cuda.safetensors');
    await saveSafetensors(file, ts);
    const back = await loadSafetensors(file, { device: 'cuda' });
    try {
      expect(back.a.device).toBe('cuda');
      for (const k of ['a', 'b'] as const) {
        const x = back[k].to('cpu'), y = ts[k].to('cpu');
        expect(Buffer.from(bits(x)).equals(Buffer.from(bits(y)))).toBe(true);
        x.dispose();
        y.dispose();
      }
    } finally {
      disposeAll(back);
      disposeAll(ts);
    }
  });
});
