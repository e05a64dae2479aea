// feature-cache.test.ts: caption features are extracted once, reused on rerun, and rebuilt
// when the texts, the model id or the file change.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { LlamaEncoder, trainBpeTokenizer, Tensor, Llm2ClipError } from '../src';
import { tinyLlamaConfig } from '../src/models/llama-save';
import { tensorCounts } from '../src/tensor';
import { cachedTextFeatures, encoderFingerprint, TextFeatureEncoder } from '../src/train/feature-cache';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-fcache-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const corpus = ['a dog runs on the grass', 'two cats sleep on a red sofa', 'a man rides a bike', 'the girl holds a kite', 'a boat on a lake'];
const tok = trainBpeTokenizer(corpus, { vocabSize: 300, minFrequency: 1 });
const cfg = tinyLlamaConfig({ hiddenSize: 24, intermediateSize: 40, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: tok.vocabSize, bosTokenId: tok.bosId, eosTokenId: tok.eosId, padTokenId: tok.padId });
const enc = new LlamaEncoder(cfg, { seed: 11 });
afterAll(() => enc.dispose());

/** Wraps enc, counting encode calls and the texts they saw. */
function spy(): TextFeatureEncoder & { calls: number; texts: number; modes: boolean[] } {
  const s = {
    calls: 0,
    texts: 0,
    modes: [] as boolean[],
    get training() { return enc.training; },
    set training(v: boolean) { enc.training = v; },
    train(on?: boolean) { enc.train(on); return s; },
    encode(t: typeof tok, xs: string[], o: Parameters<LlamaEncoder['encode']>[2]) {
      s.calls++;
      s.texts += xs.length;
      s.modes.push(enc.training);
      return enc.encode(t, xs, o);
    },
  };
  return s;
}

const texts = Array.from({ length: 11 }, (_, i) => `${corpus[i % corpus.length]} ${i % 3 === 0 ? 'at night' : ''} ${i}`);

function expectEqualTensors(a: Tensor, b: Tensor): void {
  expect(a.shape).toEqual(b.shape);
  const x = a.toArray(), y = b.toArray();
  expect(x.every((v) => Number.isFinite(v))).toBe(true);
  expect(Array.from(x)).toEqual(Array.from(y));
}

test('extracts once, reuses on rerun, equals encoder.encode', async () => {
  const dir = path.join(tmp, 'a');
  const s = spy();
  enc.train(true);
  const progress: [number, number][] = [];
  const r1 = await cachedTextFeatures({ encoder: s, tokenizer: tok, modelId: 'm1', texts, cacheDir: dir, maxLength: 16, batchSize: 4, onProgress: (d, t) => progress.push([d, t]) });
  expect(r1.reused).toBe(false);
  expect(s.calls).toBe(3);
  expect(s.texts).toBe(11);
  expect(s.modes).toEqual([false, false, false]);
  expect(enc.training).toBe(true); // restored
  expect(progress).toEqual([[4, 11], [8, 11], [11, 11]]);
  expect(r1.features.shape).toEqual([11, 24]);
  expect(r1.features.device).toBe('cpu');
  expect(path.basename(r1.file)).toMatch(/^text-features-[0-9a-f]{16}\.safetensors$/);
  const direct = enc.encode(tok, texts, { maxLength: 16, pooling: 'mean' });
  expectEqualTensors(r1.features, direct);

  const s2 = spy();
  const r2 = await cachedTextFeatures({ encoder: s2, tokenizer: tok, modelId: 'm1', texts, cacheDir: dir, maxLength: 16, batchSize: 5 });
  expect(r2.reused).toBe(true);
  expect(s2.calls).toBe(0);
  expect(r2.file).toBe(r1.file);
  expectEqualTensors(r2.features, direct);
  expect(fs.readdirSync(dir)).toEqual([path.basename(r1.file)]); // no temp files left
  for (const t of [r1.features, r2.features, direct]) t.dispose();
});

test('invalidated by other texts, modelId, pooling or maxLength', async () => {
  const dir = path.join(tmp, 'b');
  const base = { tokenizer: tok, texts, cacheDir: dir, modelId: 'm1', maxLength: 16, batchSize: 8 };
  const r0 = await cachedTextFeatures({ ...base, encoder: spy() });
  r0.features.dispose();
  const variants = [
    { texts: [...texts.slice(0, 10), texts[10] + '!'] },
    { texts: texts.slice(0, 10) },
    { modelId: 'm2' },
    { pooling: 'eos' as const },
    { maxLength: 8 },
  ];
  const files = new Set([r0.file]);
  for (const v of variants) {
    const s = spy();
    const o = { ...base, ...v };
    const r = await cachedTextFeatures({ ...o, encoder: s });
    expect(r.reused).toBe(false);
    expect(s.calls).toBeGreaterThan(0);
    const direct = enc.encode(tok, o.texts, { maxLength: o.maxLength, pooling: o.pooling ?? 'mean' });
    expectEqualTensors(r.features, direct);
    files.add(r.file);
    r.features.dispose();
    direct.dispose();
  }
  expect(files.size).toBe(variants.length + 1);
  // the original is still reused
  const s = spy();
  const again = await cachedTextFeatures({ ...base, encoder: s });
  expect(again.reused).toBe(true);
  expect(s.calls).toBe(0);
  again.features.dispose();
});

test('a corrupt, truncated or stale file is rebuilt, not a crash', async () => {
  const dir = path.join(tmp, 'c');
  const base = { tokenizer: tok, texts, cacheDir: dir, modelId: 'm1', maxLength: 16 };
  const r0 = await cachedTextFeatures({ ...base, encoder: spy() });
  const good = fs.readFileSync(r0.file);
  const direct = enc.encode(tok, texts, { maxLength: 16 });
  const damage: [string, (b: Buffer) => Buffer][] = [
    ['flipped data byte', (b) => { const c = Buffer.from(b); c[c.length - 7] ^= 0x40; return c; }],
    ['truncated', (b) => b.subarray(0, b.length - 20)],
    ['garbage header', (b) => { const c = Buffer.from(b); c.fill(0x7b, 8, 40); return c; }],
    ['empty', () => Buffer.alloc(0)],
    ['wrong metadata', (b) => Buffer.from(b.toString('latin1').replace('"modelId":"m1"', '"modelId":"m9"'), 'latin1')],
  ];
  for (const [, f] of damage) {
    fs.writeFileSync(r0.file, f(good));
    const s = spy();
    const r = await cachedTextFeatures({ ...base, encoder: s });
    expect(r.reused).toBe(false);
    expect(s.calls).toBe(1);
    expectEqualTensors(r.features, direct);
    expect(fs.readFileSync(r.file).equals(good)).toBe(true);
    r.features.dispose();
  }
  r0.features.dispose();
  direct.dispose();
});

test('bad options are INVALID_ARGUMENT naming the option', async () => {
  const base = { encoder: spy(), tokenizer: tok, texts, cacheDir: path.join(tmp, 'd'), modelId: 'm' };
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ texts: [] }, /options\.texts/],
    [{ texts: ['a', 3] }, /options\.texts\[1\]/],
    [{ modelId: '' }, /options\.modelId/],
    [{ batchSize: 0 }, /options\.batchSize/],
    [{ maxLength: 1.5 }, /options\.maxLength/],
    [{ pooling: 'max' }, /options\.pooling/],
    [{ encoder: {} }, /options\.encoder/],
  ];
  for (const [o, re] of cases) {
    const p = cachedTextFeatures({ ...base, ...o } as unknown as Parameters<typeof cachedTextFeatures>[0]);
    await expect(p).rejects.toThrow(Llm2ClipError);
    await expect(p).rejects.toThrow(re);
  }
});

test('encoderFingerprint: stable, sensitive to any parameter change, sampled mode', () => {
  const a = new LlamaEncoder(cfg, { seed: 5 });
  const b = new LlamaEncoder(cfg, { seed: 5 });
  const c = new LlamaEncoder(cfg, { seed: 6 });
  const fa = encoderFingerprint(a);
  expect(fa).toMatch(/^[0-9a-f]{64}$/);
  expect(encoderFingerprint(b)).toBe(fa);
  expect(encoderFingerprint(c)).not.toBe(fa);
  // one element of the last layer changed
  const [, p] = b.namedParameters().slice(-2)[0];
  (p.view() as Float32Array)[3] += 1e-3;
  expect(encoderFingerprint(b)).not.toBe(fa);
  const sa = encoderFingerprint(a, { maxBytesPerTensor: 256 });
  expect(sa).not.toBe(fa);
  expect(encoderFingerprint(a, { maxBytesPerTensor: 256 })).toBe(sa);
  expect(() => encoderFingerprint(a, { maxBytesPerTensor: 3 })).toThrow(/maxBytesPerTensor/);
  // LoRA: same weights (B starts at zero), different alpha -> different fingerprint
  const la = new LlamaEncoder(cfg, { seed: 5 }).withLora({ r: 2, alpha: 8, seed: 1 });
  const lb = new LlamaEncoder(cfg, { seed: 5 }).withLora({ r: 2, alpha: 16, seed: 1 });
  const lc = new LlamaEncoder(cfg, { seed: 5 }).withLora({ r: 2, alpha: 8, seed: 1 });
  expect(encoderFingerprint(la)).not.toBe(fa);
  expect(encoderFingerprint(lc)).toBe(encoderFingerprint(la));
  expect(encoderFingerprint(lb)).not.toBe(encoderFingerprint(la));
  for (const m of [a, b, c, la, lb, lc]) m.dispose();
});

test('an encoder failing mid-way restores its mode, writes nothing and leaks nothing', async () => {
  const dir = path.join(tmp, 'e');
  const before = tensorCounts().liveTensors;
  const s = spy();
  const inner = s.encode;
  s.encode = (t, xs, o) => {
    if (s.calls === 2) throw new Error('boom');
    return inner(t, xs, o);
  };
  enc.train(true);
  await expect(cachedTextFeatures({ encoder: s, tokenizer: tok, modelId: 'm', texts, cacheDir: dir, maxLength: 16, batchSize: 4 })).rejects.toThrow('boom');
  expect(enc.training).toBe(true);
  expect(fs.existsSync(dir) ? fs.readdirSync(dir) : []).toEqual([]);
  expect(tensorCounts().liveTensors).toBe(before);
  // a full run and a reuse leave exactly the returned tensor alive
  for (let i = 0; i < 2; i++) {
    const r = await cachedTextFeatures({ encoder: spy(), tokenizer: tok, modelId: 'm', texts, cacheDir: dir, maxLength: 16, batchSize: 4 });
    expect(tensorCounts().liveTensors).toBe(before + 1);
    expect(r.reused).toBe(i === 1);
    r.features.dispose();
  }
  expect(tensorCounts().liveTensors).toBe(before);
});

test('mappedTextFeatures: memory-mapped rows equal the extracted ones; reused in place; corrupt files rebuilt; writes never reach the file', async () => {
  const { mappedTextFeatures } = await import('../src/train/feature-cache');
  const dir = path.join(tmp, 'mapped');
  const base = { tokenizer: tok, texts, cacheDir: dir, modelId: 'mm', maxLength: 16 };
  const direct = enc.encode(tok, texts, { maxLength: 16 });
  const want = direct.toArray() as Float32Array;
  const s1 = spy();
  const m1 = await mappedTextFeatures({ ...base, encoder: s1 });
  expect(m1.reused).toBe(false);
  expect(s1.calls).toBe(1);
  expect([m1.count, m1.hidden]).toEqual([11, 24]);
  expect(Array.from(m1.data)).toEqual(Array.from(want));
  const s2 = spy();
  const m2 = await mappedTextFeatures({ ...base, encoder: s2 });
  expect(m2.reused).toBe(true);
  expect(s2.calls).toBe(0);
  expect(m2.file).toBe(m1.file);
  expect(Array.from(m2.data)).toEqual(Array.from(want));
  // The same cache serves cachedTextFeatures and mappedTextFeatures alike.
  const c = await cachedTextFeatures({ ...base, encoder: spy() });
  expect(c.reused).toBe(true);
  c.features.dispose();
  // Private mapping: writing to the array leaves the file (and a fresh mapping) unchanged.
  const bytes = fs.readFileSync(m2.file);
  m2.data.fill(123);
  expect(fs.readFileSync(m2.file).equals(bytes)).toBe(true);
  const m3 = await mappedTextFeatures({ ...base, encoder: spy() });
  expect(Array.from(m3.data)).toEqual(Array.from(want));
  // A flipped data byte fails the checksum: rebuilt, then mapped.
  const c2 = Buffer.from(bytes);
  c2[c2.length - 5] ^= 0x20;
  fs.writeFileSync(m2.file, c2);
  const s4 = spy();
  const m4 = await mappedTextFeatures({ ...base, encoder: s4 });
  expect([m4.reused, s4.calls]).toEqual([false, 1]);
  expect(Array.from(m4.data)).toEqual(Array.from(want));
  // Bad options are named as by cachedTextFeatures.
  await expect(mappedTextFeatures({ ...base, encoder: spy(), texts: [] })).rejects.toThrow(/options\.texts/);
  direct.dispose();
});

test('mapFile: the whole file, empty files, typed errors for missing paths and folders', () => {
  const { native } = require('../src/binding') as typeof import('../src/binding');
  const f = path.join(tmp, 'map.bin');
  fs.writeFileSync(f, Buffer.from([1, 2, 3, 250]));
  expect(Array.from(new Uint8Array(native.mapFile(f)))).toEqual([1, 2, 3, 250]);
  fs.writeFileSync(f, Buffer.alloc(0));
  expect(native.mapFile(f).byteLength).toBe(0);
  expect(() => native.mapFile(path.join(tmp, 'nope.bin'))).toThrow(Llm2ClipError);
  expect(() => native.mapFile(path.join(tmp, 'nope.bin'))).toThrow(/nope\.bin/);
  expect(() => native.mapFile(tmp)).toThrow(/not a regular file/);
  expect(() => (native.mapFile as unknown as (x: number) => void)(3)).toThrow(/path must be a string/);
});
