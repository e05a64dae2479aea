// clip-save.test.ts: ClipVisionEncoder saved as a Hugging Face directory and a TextAdapter
// saved to a folder read back identically; the from-scratch ViT presets construct, run
// forward and backward.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ClipVisionEncoder, TextAdapter, loadClipVisionConfig, tensor, noGrad, tidy, F, Llm2ClipError, Tensor } from '../src';
import { clipVisionPreset } from '../src/models/clip-presets';
import { saveClipVisionPretrained, saveTextAdapter, loadTextAdapter, clipVisionConfigToHf } from '../src/models/clip-save';
import { hostRandom } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-clip-save-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function same(a: Tensor | null, b: Tensor | null): void {
  expect(a).not.toBeNull();
  const x = a!.toArray(), y = b!.toArray();
  expect(x.every((v) => Number.isFinite(v))).toBe(true);
  expect(Array.from(y)).toEqual(Array.from(x));
}

test.each([
  ['with projection, gelu_tanh', { hiddenSize: 24, intermediateSize: 40, numHiddenLayers: 2, numAttentionHeads: 3, imageSize: 15, patchSize: 5, projectionDim: 7, hiddenAct: 'gelu_tanh' as const, layerNormEps: 1e-6 }, true],
  ['without projection, quick_gelu', { hiddenSize: 16, intermediateSize: 20, numHiddenLayers: 1, numAttentionHeads: 2, imageSize: 12, patchSize: 4, projectionDim: 9, numChannels: 1 }, false],
])('vision save -> fromPretrained round trip (%s)', async (_n, cfg, projection) => {
  const enc = new ClipVisionEncoder(cfg, { seed: 21, projection });
  const dir = path.join(tmp, `v-${projection}`);
  await saveClipVisionPretrained(enc, dir);
  expect(fs.readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  expect(json.model_type).toBe('clip_vision_model');
  expect(json.architectures).toEqual(['CLIPVisionModelWithProjection']);
  expect(json).toEqual(clipVisionConfigToHf(enc.config));
  expect(loadClipVisionConfig(dir)).toEqual(enc.config);
  const back = await ClipVisionEncoder.fromPretrained(dir);
  expect(back.config).toEqual(enc.config);
  expect(back.hasProjection).toBe(projection);
  expect(Object.keys(back.stateDict()).sort()).toEqual(Object.keys(enc.stateDict()).sort());
  const c = enc.config;
  const px = tensor(hostRandom(3 * c.numChannels * c.imageSize * c.imageSize, 77), [3, c.numChannels, c.imageSize, c.imageSize]);
  const a = enc.encode(px), b = back.encode(px);
  same(a.pooled, b.pooled);
  same(a.lastHidden, b.lastHidden);
  if (projection) same(a.embeds, b.embeds);
  else expect(b.embeds).toBeNull();
  for (const t of [px, a.lastHidden, a.pooled, a.embeds, b.lastHidden, b.pooled, b.embeds]) t?.dispose();
  enc.dispose();
  back.dispose();
});

test('adapter save -> load round trip, dtype and errors', async () => {
  const ad = new TextAdapter(12, 5, { numBlocks: 3, hiddenMultiplier: 1.5, seed: 4 });
  const dir = path.join(tmp, 'adapter');
  await saveTextAdapter(ad, dir);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  expect(cfg).toEqual({ type: 'llm2clip_text_adapter', inDim: 12, embedDim: 5, numBlocks: 3, hiddenMultiplier: 1.5, dtype: 'float32' });
  const back = await loadTextAdapter(dir);
  expect(back.hiddenDim).toBe(18);
  const x = tensor(hostRandom(7 * 12, 91), [7, 12]);
  const ya = noGrad(() => ad.forward(x)), yb = noGrad(() => back.forward(x));
  same(ya, yb);
  const bf = await loadTextAdapter(dir, { dtype: 'bfloat16' });
  expect(bf.stateDict()['proj.weight'].dtype).toBe('bfloat16');
  // errors: missing dir, bad config, mismatched weights
  await expect(loadTextAdapter(path.join(tmp, 'nope'))).rejects.toMatchObject({ code: 'IO_ERROR' });
  const bad = path.join(tmp, 'bad');
  fs.mkdirSync(bad);
  fs.copyFileSync(path.join(dir, 'model.safetensors'), path.join(bad, 'model.safetensors'));
  fs.writeFileSync(path.join(bad, 'config.json'), JSON.stringify({ ...cfg, inDim: 'x' }));
  await expect(loadTextAdapter(bad)).rejects.toMatchObject({ code: 'CORRUPT_FILE', message: expect.stringMatching(/inDim/) });
  fs.writeFileSync(path.join(bad, 'config.json'), JSON.stringify({ ...cfg, numBlocks: 2 }));
  await expect(loadTextAdapter(bad)).rejects.toMatchObject({ code: 'CORRUPT_FILE', message: expect.stringMatching(/unexpected blocks\.2/) });
  fs.writeFileSync(path.join(bad, 'config.json'), JSON.stringify({ ...cfg, embedDim: 6 }));
  await expect(loadTextAdapter(bad)).rejects.toMatchObject({ code: 'CORRUPT_FILE', message: expect.stringMatching(/proj\.weight/) });
  fs.writeFileSync(path.join(bad, 'config.json'), '{');
  await expect(loadTextAdapter(bad)).rejects.toBeInstanceOf(Llm2ClipError);
  await expect(saveTextAdapter({} as TextAdapter, bad)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  for (const t of [x, ya, yb]) t.dispose();
  for (const m of [ad, back, bf]) m.dispose();
});

test('presets construct, run forward + backward, and check their options', () => {
  for (const [name, side, patches] of [['tiny', 64, 64], ['small', 112, 49]] as const) {
    const cfg = clipVisionPreset(name, { projectionDim: 32 });
    expect(cfg.imageSize).toBe(side);
    const enc = new ClipVisionEncoder(cfg, { seed: 2 });
    expect(enc.numPatches).toBe(patches);
    const px = tensor(hostRandom(2 * 3 * side * side, 5), [2, 3, side, side]);
    tidy(() => {
      const o = enc.forward(px);
      expect(o.embeds!.shape).toEqual([2, 32]);
      F.sum(F.mul(o.embeds!, o.embeds!)).backward();
    });
    const g = enc.stateDict()['vision_model.embeddings.patch_embedding.weight'].grad;
    expect(g).not.toBeNull();
    const ga = g!.toArray();
    expect(ga.every(Number.isFinite) && ga.some((v) => v !== 0)).toBe(true);
    px.dispose();
    enc.dispose();
  }
  expect(clipVisionPreset('tiny', { projectionDim: 8, imageSize: 32 }).imageSize).toBe(32);
  expect(() => clipVisionPreset('tiny', { projectionDim: 8, imageSize: 30 })).toThrow(/imageSize/);
  expect(() => clipVisionPreset('huge' as 'tiny', { projectionDim: 8 })).toThrow(/name/);
  expect(() => clipVisionPreset('small', { projectionDim: 0 })).toThrow(/projectionDim/);
});
