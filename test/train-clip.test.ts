// train-clip.test.ts: trainClip end to end on generated images (16 colours, captions that
// name them) with a tiny frozen text model and a tiny ViT: the loss falls, the caption
// features are cached and reused, outputs are written, and an interrupted run resumed from
// its checkpoint gives the losses of an uninterrupted one.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { trainClip, TrainClipOptions, LlamaEncoder, trainBpeTokenizer, tinyLlamaConfig, ClipVisionEncoder } from '../src';
import type { ImageCaptionItem } from '../src/data/images';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-clip-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const COLOURS: [string, number, number, number][] = [
  ['red', 220, 30, 30], ['green', 30, 200, 40], ['blue', 30, 40, 220], ['yellow', 230, 220, 30], ['purple', 140, 40, 170], ['orange', 250, 140, 20],
  ['white', 245, 245, 245], ['black', 10, 10, 10], ['grey', 128, 128, 128], ['pink', 250, 160, 190], ['brown', 120, 70, 30], ['cyan', 30, 220, 220],
  ['navy', 10, 20, 90], ['olive', 110, 120, 20], ['teal', 20, 120, 120], ['maroon', 110, 20, 30],
];

let items: ImageCaptionItem[] = [];
let encoder: LlamaEncoder;
let tokenizer: ReturnType<typeof trainBpeTokenizer>;

beforeAll(async () => {
  const dir = path.join(tmp, 'images');
  fs.mkdirSync(dir);
  items = [];
  for (const [i, [name, r, g, b]] of COLOURS.entries())
    for (const v of [0, 1]) {
      const file = path.join(dir, `${name}-${v}.png`);
      await sharp({ create: { width: 20 + v * 7, height: 18, channels: 3, background: { r, g: Math.min(255, g + v * 12), b } } }).png().toFile(file);
      items.push({ image: file, file: path.basename(file), captions: [`a ${name} picture`, `the colour ${name}`] });
      void i;
    }
  tokenizer = trainBpeTokenizer(items.flatMap((it) => it.captions), { vocabSize: 300, minFrequency: 1 });
  encoder = new LlamaEncoder(tinyLlamaConfig({ hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 1, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: tokenizer.vocabSize }), { seed: 5 });
});

function opts(out: string, extra: Partial<TrainClipOptions> = {}): TrainClipOptions {
  return {
    items, textModel: encoder, tokenizer, vision: new ClipVisionEncoder({ hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 2, numAttentionHeads: 4, imageSize: 16, patchSize: 4, projectionDim: 24 }, { seed: 3 }),
    embedDim: 24, adapterBlocks: 1, batchSize: 16, microBatch: 6, epochs: 20, lr: 3e-3, outputDir: out, progress: false, checkpointEvery: 4, seed: 1, ...extra,
  };
}

test('the loss falls; outputs written; caption features cached and reused', async () => {
  const out = path.join(tmp, 'run');
  const r = await trainClip(opts(out));
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  expect(r.steps).toBe(40);
  expect(r.featuresReused).toBe(false);
  expect(mean(r.losses.slice(-5))).toBeLessThan(mean(r.losses.slice(0, 5)) - 0.5);
  expect(r.logitScale).toBeGreaterThan(0);
  expect(r.logitScale).toBeLessThanOrEqual(100);
  for (const f of ['vision/config.json', 'vision/model.safetensors', 'text_adapter/config.json', 'metrics.json', 'log.jsonl', 'checkpoints/LATEST'])
    expect(fs.existsSync(path.join(out, f))).toBe(true);
  const again = await trainClip(opts(out, { epochs: 1 }));
  expect(again.featuresReused).toBe(true);
}, 240000);

test('interrupted and resumed = uninterrupted, loss for loss', async () => {
  const full = await trainClip(opts(path.join(tmp, 'full'), { epochs: 5 }));
  const out = path.join(tmp, 'resumed');
  const ac = new AbortController();
  const a = await trainClip(opts(out, { epochs: 5, signal: ac.signal, onStep: (i) => { if (i.step === 6) ac.abort(); } }));
  expect(a.aborted).toBe(true);
  // The resumed run builds its modules afresh (as a new process would); the checkpoint restores them.
  const b = await trainClip(opts(out, { epochs: 5, resume: true }));
  expect(b.aborted).toBe(false);
  expect(b.losses).toEqual(full.losses);
}, 240000);

describe('caption draw and layer-wise lr decay', () => {
  test('pickCaption: long with probability p where both kinds exist, uniform within a kind', () => {
    const { Rng } = require('../src/data/rng') as typeof import('../src/data/rng');
    const { pickCaption } = require('../src/train/clip') as typeof import('../src/train/clip');
    const rng = new Rng(3, 1);
    const short = [0, 1], long = [5, 6, 7];
    const count = new Map<number, number>();
    const N = 20000;
    for (let i = 0; i < N; i++) {
      const k = pickCaption(rng, short, long, 0.5);
      count.set(k, (count.get(k) ?? 0) + 1);
    }
    const longShare = [5, 6, 7].reduce((s, k) => s + (count.get(k) ?? 0), 0) / N;
    expect(Math.abs(longShare - 0.5)).toBeLessThan(0.015); // ~4 sigma
    for (const k of short) expect(Math.abs((count.get(k) ?? 0) / N - 0.25)).toBeLessThan(0.015);
    for (const k of long) expect(Math.abs((count.get(k) ?? 0) / N - 1 / 6)).toBeLessThan(0.015);
    expect([...count.keys()].sort()).toEqual([0, 1, 5, 6, 7]);
    for (let i = 0; i < 200; i++) expect(long).toContain(pickCaption(rng, short, long, 1));
    for (let i = 0; i < 200; i++) expect(short).toContain(pickCaption(rng, short, long, 0));
    // One kind only: that kind, whatever p.
    for (let i = 0; i < 50; i++) expect(short).toContain(pickCaption(rng, short, [], 1));
    for (let i = 0; i < 50; i++) expect(long).toContain(pickCaption(rng, [], long, 0));
  });

  test('layerDecayScale on the real parameter names; trainClip with layerDecay moves early blocks less', async () => {
    const { layerDecayScale } = require('../src/train/clip') as typeof import('../src/train/clip');
    const vis = new ClipVisionEncoder({ hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 3, numAttentionHeads: 4, imageSize: 16, patchSize: 4, projectionDim: 24 }, { seed: 3 });
    const scales = new Map(vis.namedParameters().map(([n]) => [n, layerDecayScale(`vision.${n}`, 3, 0.5)]));
    expect(scales.get('vision_model.embeddings.patch_embedding.weight')).toBe(0.0625);
    expect(scales.get('vision_model.pre_layrnorm.weight')).toBe(0.0625);
    expect(scales.get('vision_model.encoder.layers.0.self_attn.q_proj.weight')).toBe(0.125);
    expect(scales.get('vision_model.encoder.layers.2.mlp.fc2.bias')).toBe(0.5);
    expect(scales.get('vision_model.post_layernorm.weight')).toBe(1);
    expect(scales.get('visual_projection.weight')).toBe(1);
    expect(layerDecayScale('adapter.blocks.0.fc1.weight', 3, 0.5)).toBe(1);
    expect(layerDecayScale('logit_scale', 3, 0.5)).toBe(1);
    // Same run with and without decay 0.3: the patch embedding moves far less with it
    // (lr x 0.3^4), the projection alike.
    const moved = async (layerDecay: number) => {
      const v = new ClipVisionEncoder({ hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 2, numAttentionHeads: 4, imageSize: 16, patchSize: 4, projectionDim: 24 }, { seed: 3 });
      const w0 = (n: string) => v.namedParameters().find(([k]) => k === n)![1].toArray() as Float32Array;
      const pe0 = w0('vision_model.embeddings.patch_embedding.weight'), pr0 = w0('visual_projection.weight');
      await trainClip(opts(path.join(tmp, `ld-${layerDecay}`), { vision: v, epochs: 2, layerDecay }));
      const d = (a: Float32Array, b: Float32Array) => Math.sqrt(a.reduce((s, x, i) => s + (x - b[i]) ** 2, 0));
      return { pe: d(w0('vision_model.embeddings.patch_embedding.weight'), pe0), pr: d(w0('visual_projection.weight'), pr0) };
    };
    const a = await moved(1), b = await moved(0.3);
    expect(b.pe).toBeLessThan(a.pe * 0.2);
    expect(b.pr).toBeGreaterThan(a.pr * 0.5);
    await expect(trainClip(opts(path.join(tmp, 'ld-bad'), { layerDecay: 0 }))).rejects.toThrow(/layerDecay/);
    await expect(trainClip(opts(path.join(tmp, 'lp-bad'), { longCaptionProbability: 2 }))).rejects.toThrow(/longCaptionProbability/);
  }, 120000);
});

test('gatherPixels: the crop at (x, y); augment option checked', async () => {
  const { gatherPixels } = require('../src/train/clip') as typeof import('../src/train/clip');
  const full = 5, size = 3, N = 2;
  const data = Float32Array.from({ length: N * 3 * full * full }, (_, i) => i);
  const at = (im: number, c: number, y: number, x: number) => ((im * 3 + c) * full + y) * full + x;
  const t = gatherPixels({ data, full, size }, [1, 0], [{ x: 2, y: 1 }, { x: 0, y: 2 }], 'cpu');
  expect(t.shape).toEqual([2, 3, 3, 3]);
  const v = t.toArray() as Float32Array;
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        expect(v[((0 * 3 + c) * size + y) * size + x]).toBe(at(1, c, y + 1, x + 2));
        expect(v[((1 * 3 + c) * size + y) * size + x]).toBe(at(0, c, y + 2, x));
      }
  t.dispose();
  await expect(trainClip(opts(path.join(tmp, 'aug-bad'), { augment: 'yes' as unknown as boolean }))).rejects.toThrow(/augment/);
});
