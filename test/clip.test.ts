// clip.test.ts: the CLIP vision encoder (src/models/clip.ts) against the float64 reference
// of Hugging Face's CLIPVisionModelWithProjection (test/ref/clip-ref.ts) on tiny random
// ViTs written in HF format, its gradients against finite differences, config and
// checkpoint errors, and the sharp-based image preprocessing (src/models/image.ts).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createHash } from 'crypto';
import sharp from 'sharp';
import { ClipVisionEncoder, ClipVisionConfig, CLIP_VISION_DEFAULTS, parseClipVisionConfig, loadClipVisionConfig, preprocessImage, loadImages, clipResizeGeometry, resizeBicubicPil, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, F, Tensor, tensor, tidy, noGrad } from '../src';
import { expectCode, hostRandom, relErr, describeGpu, expectCodeAsync } from './helpers';
import { tensorCounts } from '../src/tensor';
import { ClipVisionRefConfig, randomClipVisionConfig, randomClipVisionWeights, writeHfClipVisionDir, clipVisionForwardRef } from './ref/clip-ref';
import { toStTensors } from './ref/common';
import { writeSafetensorsFile } from './ref/safetensors-writer';

const tmpDirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'llm2clip-clip-'));
  tmpDirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

function pixelsOf(cfg: ClipVisionRefConfig, B: number, seed: number): Float32Array {
  return hostRandom(B * cfg.num_channels * cfg.image_size * cfg.image_size, seed);
}

// ---------------------------------------------------------------- patch embedding

describe('patch embedding', () => {
  test('patchify (c, py, px order) · W[hidden, C·p·p]ᵀ equals a stride-p Conv2d with weight [hidden, C, p, p]', () => {
    const B = 2, C = 3, Hh = 6, Ww = 9, p = 3, hidden = 5;
    const x = hostRandom(B * C * Hh * Ww, 11), w = hostRandom(hidden * C * p * p, 12);
    const got = tidy(() => F.linear(F.patchify(tensor(x, [B, C, Hh, Ww]), p), tensor(w, [hidden, C, p, p]).reshape([hidden, -1])).toArray());
    const gh = Hh / p, gw = Ww / p;
    const want = new Float64Array(B * gh * gw * hidden);
    for (let b = 0; b < B; b++)
      for (let gy = 0; gy < gh; gy++)
        for (let gx = 0; gx < gw; gx++)
          for (let o = 0; o < hidden; o++) {
            let s = 0;
            for (let c = 0; c < C; c++)
              for (let ky = 0; ky < p; ky++)
                for (let kx = 0; kx < p; kx++)
                  s += w[((o * C + c) * p + ky) * p + kx] * x[((b * C + c) * Hh + gy * p + ky) * Ww + gx * p + kx];
            want[((b * gh + gy) * gw + gx) * hidden + o] = s;
          }
    expect(relErr(got, want)).toBeLessThan(1e-6);
  });
});

// ---------------------------------------------------------------- forward vs reference

describe('ClipVisionEncoder.fromPretrained + forward vs the float64 HF reference', () => {
  const cases: { name: string; cfg: Partial<ClipVisionRefConfig>; st: 'F32' | 'BF16'; full: boolean; posIds?: boolean; shards?: number; B: number }[] = [
    { name: 'CLIPVisionConfig, quick_gelu, F32', cfg: {}, st: 'F32', full: false, B: 2 },
    { name: 'CLIPConfig with vision_config, gelu, F32, position_ids buffer, 2 shards', cfg: { hidden_act: 'gelu', hidden_size: 24, num_attention_heads: 3, intermediate_size: 40, image_size: 21, patch_size: 7, num_hidden_layers: 3, projection_dim: 10 }, st: 'F32', full: true, posIds: true, shards: 2, B: 3 },
    { name: 'CLIPVisionConfig, gelu, BF16 on disk (exact once widened to float32)', cfg: { hidden_act: 'gelu', layer_norm_eps: 1e-6 }, st: 'BF16', full: false, B: 1 },
    { name: 'CLIPConfig, quick_gelu, BF16 on disk', cfg: { num_channels: 3, image_size: 12, patch_size: 4 }, st: 'BF16', full: true, B: 2 },
  ];
  test.each(cases)('$name', async ({ cfg: over, st, full, posIds, shards, B }) => {
    const cfg = randomClipVisionConfig(over);
    const dir = tmpDir();
    const stored = writeHfClipVisionDir(dir, cfg, randomClipVisionWeights(cfg, 100 + B), st, { full, includePositionIds: posIds, shards });
    const model = await ClipVisionEncoder.fromPretrained(dir);
    try {
      expect(model.config.hiddenSize).toBe(cfg.hidden_size);
      expect(model.config.hiddenAct).toBe(cfg.hidden_act);
      expect(model.config.layerNormEps).toBe(cfg.layer_norm_eps);
      expect(model.hasProjection).toBe(true);
      // Every HF vision weight is a parameter under its HF name, and nothing else is.
      expect(Object.keys(model.stateDict()).sort()).toEqual(Object.keys(stored).sort());
      const px = pixelsOf(cfg, B, 7 + B);
      const ref = clipVisionForwardRef(cfg, stored, Float64Array.from(px), B);
      const out = noGrad(() => model.forward(tensor(px, [B, cfg.num_channels, cfg.image_size, cfg.image_size])));
      const T = (cfg.image_size / cfg.patch_size) ** 2 + 1;
      expect(out.lastHidden.shape).toEqual([B, T, cfg.hidden_size]);
      expect(out.pooled.shape).toEqual([B, cfg.hidden_size]);
      expect(out.embeds!.shape).toEqual([B, cfg.projection_dim]);
      // float32 compute from exactly the stored weights (BF16 values are exact in float32,
      // so the same tolerance holds): ~1e-7 rounding per op over a few layers.
      expect(relErr(out.lastHidden.toArray(), ref.lastHidden)).toBeLessThan(1e-5);
      expect(relErr(out.pooled.toArray(), ref.pooled)).toBeLessThan(1e-5);
      expect(relErr(out.embeds!.toArray(), ref.imageEmbeds)).toBeLessThan(1e-5);
      for (const t of [out.lastHidden, out.pooled, out.embeds!]) t.dispose();
    } finally {
      model.dispose();
    }
  });

  test('bfloat16 parameters and compute: close to the reference within bfloat16 precision', async () => {
    const cfg = randomClipVisionConfig({ hidden_act: 'gelu' });
    const dir = tmpDir();
    const stored = writeHfClipVisionDir(dir, cfg, randomClipVisionWeights(cfg, 5), 'BF16');
    const model = await ClipVisionEncoder.fromPretrained(dir, { dtype: 'bfloat16' });
    try {
      expect(model.parameters().every((p) => p.dtype === 'bfloat16')).toBe(true);
      const B = 2, px = pixelsOf(cfg, B, 21);
      const ref = clipVisionForwardRef(cfg, stored, Float64Array.from(px), B);
      // float32 pixels are cast to the parameters' dtype.
      const out = noGrad(() => model.forward(tensor(px, [B, 3, cfg.image_size, cfg.image_size])));
      expect(out.embeds!.dtype).toBe('bfloat16');
      // bfloat16 keeps 8 significant bits (unit roundoff 2^-9 ≈ 2e-3); every op's output is
      // rounded to it, and the errors add up over ~20 rounded ops (observed ~5e-3). The
      // bound 1.2e-2 still catches small mistakes: a 10% error in the attention scale
      // gives ~2e-2.
      expect(relErr(out.lastHidden.toArray(), ref.lastHidden)).toBeLessThan(1.2e-2);
      expect(relErr(out.pooled.toArray(), ref.pooled)).toBeLessThan(1.2e-2);
      expect(relErr(out.embeds!.toArray(), ref.imageEmbeds)).toBeLessThan(1.2e-2);
      for (const t of [out.lastHidden, out.pooled, out.embeds!]) t.dispose();
    } finally {
      model.dispose();
    }
  });

  test('a checkpoint without visual_projection gives an encoder without a projection (embeds null)', async () => {
    const cfg = randomClipVisionConfig({ num_hidden_layers: 1 });
    const w = randomClipVisionWeights(cfg, 9);
    delete w['visual_projection.weight'];
    const dir = tmpDir();
    const stored = writeHfClipVisionDir(dir, cfg, w, 'F32');
    const model = await ClipVisionEncoder.fromPretrained(dir);
    try {
      expect(model.hasProjection).toBe(false);
      const px = pixelsOf(cfg, 1, 3);
      const ref = clipVisionForwardRef(cfg, { ...stored, 'visual_projection.weight': { shape: [cfg.projection_dim, cfg.hidden_size], data: new Float64Array(cfg.projection_dim * cfg.hidden_size) } }, Float64Array.from(px), 1);
      const out = noGrad(() => model.forward(tensor(px, [1, 3, cfg.image_size, cfg.image_size])));
      expect(out.embeds).toBeNull();
      expect(relErr(out.pooled.toArray(), ref.pooled)).toBeLessThan(1e-5);
      out.lastHidden.dispose();
      out.pooled.dispose();
    } finally {
      model.dispose();
    }
  });
});

// ---------------------------------------------------------------- gradients

describe('gradients', () => {
  /** Central differences (h = 1e-2 on O(1) values) of loss() at the given elements of float32 CPU tensors. */
  function numeric(loss: () => number, picks: [Tensor, number[]][], h = 1e-2): number[] {
    const out: number[] = [];
    for (const [t, idx] of picks) {
      const v = t.view() as Float32Array;
      for (const i of idx) {
        const x = v[i];
        v[i] = x + h;
        const fp = loss();
        v[i] = x - h;
        const fm = loss();
        v[i] = x;
        out.push((fp - fm) / (2 * h));
      }
    }
    return out;
  }

  test('parameters and pixels: backward vs finite differences; per-layer checkpointing gives the same gradients', async () => {
    const cfg = randomClipVisionConfig({ num_hidden_layers: 2, hidden_act: 'quick_gelu', image_size: 10, patch_size: 5, hidden_size: 16, intermediate_size: 20, num_attention_heads: 2, projection_dim: 6 });
    const dir = tmpDir();
    writeHfClipVisionDir(dir, cfg, randomClipVisionWeights(cfg, 31), 'F32');
    const model = await ClipVisionEncoder.fromPretrained(dir);
    const B = 2;
    const pixels = tensor(pixelsOf(cfg, B, 41), [B, 3, 10, 10]).setRequiresGrad();
    const T = 5, Hd = 16;
    const r1 = tensor(hostRandom(B * T * Hd, 42), [B, T, Hd]);
    const r2 = tensor(hostRandom(B * 6, 43), [B, 6]);
    const r3 = tensor(hostRandom(B * Hd, 44), [B, Hd]);
    // A loss touching all three outputs.
    const build = (ck: boolean) => {
      const o = model.forward(pixels, { checkpointLayers: ck });
      return F.add(F.add(F.sum(F.mul(o.lastHidden, r1)), F.sum(F.mul(o.embeds!, r2))), F.sum(F.mul(o.pooled, r3)));
    };
    const sd = model.stateDict();
    const names = [
      'vision_model.embeddings.patch_embedding.weight',
      'vision_model.embeddings.class_embedding',
      'vision_model.embeddings.position_embedding.weight',
      'vision_model.pre_layrnorm.weight',
      'vision_model.encoder.layers.0.self_attn.q_proj.weight',
      'vision_model.encoder.layers.0.self_attn.v_proj.bias',
      'vision_model.encoder.layers.1.self_attn.out_proj.weight',
      'vision_model.encoder.layers.1.layer_norm1.bias',
      'vision_model.encoder.layers.0.mlp.fc1.weight',
      'vision_model.encoder.layers.1.mlp.fc2.bias',
      'vision_model.post_layernorm.weight',
      'visual_projection.weight',
    ];
    const pick = (t: Tensor, n: number, seed: number): number[] => Array.from(hostRandom(n, seed), (u) => Math.floor(((u + 1) / 2) * t.size));
    const picks: [Tensor, number[]][] = names.map((n, i) => [sd[n], pick(sd[n], 4, 200 + i)]);
    picks.push([pixels, pick(pixels, 10, 300)]);
    const analytic = (ck: boolean): number[] => {
      model.zeroGrad();
      pixels.zeroGrad();
      tidy(() => build(ck).backward());
      return picks.flatMap(([t, idx]) => {
        expect(t.grad).not.toBeNull();
        const g = t.grad!.toArray();
        return idx.map((i) => g[i]);
      });
    };
    const plain = analytic(false);
    const num = numeric(() => noGrad(() => tidy(() => build(false).item())), picks);
    // h = 1e-2: truncation O(h²) ~ 1e-4 relative, float32 rounding of the loss ~1e-6 / h.
    expect(relErr(plain, num)).toBeLessThan(3e-3);
    const ck = analytic(true);
    expect(relErr(ck, plain)).toBeLessThan(1e-6);
    // Every parameter gets a gradient.
    expect(model.parameters().every((p) => p.grad !== null)).toBe(true);
    model.dispose();
    for (const t of [pixels, r1, r2, r3]) t.dispose();
  });
});

describe('memory', () => {
  test('forward + backward in a loop (plain and checkpointed) leaks no tensor; fromPretrained failures free what they loaded', async () => {
    const cfg = randomClipVisionConfig({ num_hidden_layers: 2 });
    const dir = tmpDir();
    writeHfClipVisionDir(dir, cfg, randomClipVisionWeights(cfg, 8), 'F32');
    const model = await ClipVisionEncoder.fromPretrained(dir);
    const px = tensor(pixelsOf(cfg, 2, 9), [2, 3, cfg.image_size, cfg.image_size]);
    const step = (ck: boolean) => {
      model.zeroGrad();
      tidy(() => F.sum(model.forward(px, { checkpointLayers: ck }).embeds!).backward());
    };
    step(false); // grads allocated once
    const live = tensorCounts().liveTensors;
    for (let i = 0; i < 3; i++) { step(false); step(true); }
    expect(tensorCounts().liveTensors).toBe(live);
    const o = noGrad(() => model.forward(px));
    for (const t of [o.lastHidden, o.pooled, o.embeds!]) t.dispose();
    expect(tensorCounts().liveTensors).toBe(live);
    model.dispose();
    px.dispose();
    const base = tensorCounts().liveTensors;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: 60 }));
    await expectCodeAsync(ClipVisionEncoder.fromPretrained(dir), 'CORRUPT_FILE');
    expect(tensorCounts().liveTensors).toBe(base);
  });
});

describeGpu('CUDA', () => {
  test('encoder on cuda matches the CPU (outputs and gradients); loadImages to cuda', async () => {
    const cfg = randomClipVisionConfig({ hidden_act: 'gelu' });
    const dir = tmpDir();
    writeHfClipVisionDir(dir, cfg, randomClipVisionWeights(cfg, 12), 'F32');
    const cpu = await ClipVisionEncoder.fromPretrained(dir);
    const gpu = await ClipVisionEncoder.fromPretrained(dir, { device: 'cuda' });
    const raw = pixelsOf(cfg, 3, 13);
    const pc = tensor(raw, [3, 3, cfg.image_size, cfg.image_size]).setRequiresGrad();
    const pg = tensor(raw, [3, 3, cfg.image_size, cfg.image_size], { device: 'cuda' }).setRequiresGrad();
    const run = (m: ClipVisionEncoder, p: Tensor) => tidy(() => {
      const o = m.forward(p, { checkpointLayers: true });
      F.sum(F.mul(o.embeds!, o.embeds!)).backward();
      return o.lastHidden.toArray();
    });
    expect(relErr(run(gpu, pg), run(cpu, pc))).toBeLessThan(1e-4);
    expect(relErr(pg.grad!.toArray(), pc.grad!.toArray())).toBeLessThan(1e-3);
    const name = 'vision_model.encoder.layers.1.self_attn.k_proj.weight';
    expect(relErr(gpu.stateDict()[name].grad!.toArray(), cpu.stateDict()[name].grad!.toArray())).toBeLessThan(1e-3);
    const img = await sharp(pattern(30, 20, 3, 1), { raw: { width: 30, height: 20, channels: 3 } }).png().toBuffer();
    const t = await loadImages([img, img], { size: 16, device: 'cuda' });
    expect(t.device).toMatch(/^cuda/);
    expect(Array.from(t.toArray().subarray(0, 768))).toEqual(Array.from(await preprocessImage(img, { size: 16 })));
    for (const x of [t, pc, pg]) x.dispose();
    cpu.dispose();
    gpu.dispose();
  });
});

// ---------------------------------------------------------------- random init, config, errors

describe('construction and configs', () => {
  const tiny: ClipVisionConfig = { ...CLIP_VISION_DEFAULTS, hiddenSize: 16, intermediateSize: 24, numHiddenLayers: 2, numAttentionHeads: 2, imageSize: 8, patchSize: 4, projectionDim: 5 };

  test('random init: HF names and shapes, HF-like statistics, deterministic per seed', () => {
    const m = new ClipVisionEncoder(tiny, { seed: 3 });
    const sd = m.stateDict();
    expect(sd['vision_model.embeddings.patch_embedding.weight'].shape).toEqual([16, 3, 4, 4]);
    expect(sd['vision_model.embeddings.class_embedding'].shape).toEqual([16]);
    expect(sd['vision_model.embeddings.position_embedding.weight'].shape).toEqual([5, 16]);
    expect(sd['vision_model.encoder.layers.1.mlp.fc1.weight'].shape).toEqual([24, 16]);
    expect(sd['visual_projection.weight'].shape).toEqual([5, 16]);
    expect(Object.keys(sd).filter((k) => k.endsWith('.bias')).every((k) => !k.startsWith('visual_projection'))).toBe(true);
    expect(Object.keys(sd)).toHaveLength(5 + 16 * 2 + 2 + 1);
    const std = (t: Tensor) => { const a = Array.from(t.toArray()); const mu = a.reduce((s, v) => s + v, 0) / a.length; return Math.sqrt(a.reduce((s, v) => s + (v - mu) ** 2, 0) / a.length); };
    expect(std(sd['vision_model.embeddings.position_embedding.weight'])).toBeGreaterThan(0.01);
    expect(std(sd['vision_model.embeddings.position_embedding.weight'])).toBeLessThan(0.04);
    expect(std(sd['vision_model.embeddings.patch_embedding.weight'])).toBeGreaterThan(0.014);
    expect(std(sd['vision_model.embeddings.patch_embedding.weight'])).toBeLessThan(0.026);
    expect(Array.from(sd['vision_model.encoder.layers.0.self_attn.q_proj.bias'].toArray()).every((v) => v === 0)).toBe(true);
    expect(Array.from(sd['vision_model.pre_layrnorm.weight'].toArray()).every((v) => v === 1)).toBe(true);
    // Different tensors get different draws; the same seed gives the same model.
    const m2 = new ClipVisionEncoder(tiny, { seed: 3 });
    expect(relErr(m2.stateDict()['visual_projection.weight'].toArray(), sd['visual_projection.weight'].toArray())).toBe(0);
    expect(sd['vision_model.encoder.layers.0.self_attn.q_proj.weight'].toArray()[0]).not.toBe(sd['vision_model.encoder.layers.0.self_attn.k_proj.weight'].toArray()[0]);
    const out = noGrad(() => m.forward(tensor(hostRandom(2 * 3 * 64, 5), [2, 3, 8, 8])));
    expect(out.embeds!.shape).toEqual([2, 5]);
    expect(Array.from(out.embeds!.toArray()).every(Number.isFinite)).toBe(true);
    for (const t of [out.lastHidden, out.pooled, out.embeds!]) t.dispose();
    m.dispose();
    m2.dispose();
  });

  test('forward and constructor errors', () => {
    const m = new ClipVisionEncoder(tiny, { seed: 1 });
    const bad = tensor(hostRandom(3 * 64, 1), [1, 3, 8, 8]).reshape([1, 3, 4, 16]);
    expectCode(() => m.forward(bad), 'SHAPE_MISMATCH', /pixels .*\[B,3,8,8\]/);
    expectCode(() => m.forward(tensor(hostRandom(64, 2), [1, 1, 8, 8])), 'SHAPE_MISMATCH', /pixels/);
    expectCode(() => m.forward({} as Tensor), 'INVALID_ARGUMENT', /pixels/);
    m.dispose();
    expectCode(() => new ClipVisionEncoder({ ...tiny, hiddenSize: 15 }), 'INVALID_ARGUMENT', /config.hiddenSize .*multiple of config.numAttentionHeads/);
    expectCode(() => new ClipVisionEncoder({ ...tiny, imageSize: 9 }), 'INVALID_ARGUMENT', /config.imageSize/);
    expectCode(() => new ClipVisionEncoder({ ...tiny, hiddenAct: 'relu' as 'gelu' }), 'INVALID_ARGUMENT', /config.hiddenAct/);
    expectCode(() => new ClipVisionEncoder({ ...tiny, numHiddenLayers: 0 }), 'INVALID_ARGUMENT', /config.numHiddenLayers/);
    expectCode(() => new ClipVisionEncoder({ ...tiny, layerNormEps: -1 }), 'INVALID_ARGUMENT', /config.layerNormEps/);
    expectCode(() => new ClipVisionEncoder(tiny, { dtype: 'int32' }), 'DTYPE_MISMATCH');
  });

  test('parseClipVisionConfig: both layouts, HF defaults for omitted fields, typed errors naming field and file', () => {
    const v = parseClipVisionConfig({ model_type: 'clip_vision_model', hidden_size: 64, num_attention_heads: 4, patch_size: 16, hidden_act: 'gelu' }, 'a/config.json');
    expect(v).toEqual({ ...CLIP_VISION_DEFAULTS, hiddenSize: 64, numAttentionHeads: 4, patchSize: 16, hiddenAct: 'gelu' });
    const full = parseClipVisionConfig({ model_type: 'clip', projection_dim: 77, vision_config: { hidden_size: 64, num_attention_heads: 2, projection_dim: 512, hidden_act: 'gelu_pytorch_tanh' } });
    expect(full.projectionDim).toBe(77);
    expect(full.hiddenAct).toBe('gelu_tanh');
    expectCode(() => parseClipVisionConfig([], 'x.json'), 'CORRUPT_FILE', /x\.json.*JSON object/);
    expectCode(() => parseClipVisionConfig({ hidden_size: '768' }, 'x.json'), 'CORRUPT_FILE', /x\.json: hidden_size must be a number/);
    expectCode(() => parseClipVisionConfig({ vision_config: { hidden_size: 100, num_attention_heads: 12 } }, 'y.json'), 'CORRUPT_FILE', /y\.json: vision_config\.hidden_size .*multiple of vision_config\.num_attention_heads/);
    expectCode(() => parseClipVisionConfig({ image_size: 225 }, 'z.json'), 'CORRUPT_FILE', /z\.json: image_size must be a multiple of patch_size = 32/);
    expectCode(() => parseClipVisionConfig({ hidden_act: 'silu' }), 'CORRUPT_FILE', /hidden_act must be one of/);
    expectCode(() => parseClipVisionConfig({ model_type: 'clip', text_config: {} }), 'CORRUPT_FILE', /without vision_config/);
    expectCode(() => parseClipVisionConfig({ vision_config: 3 }), 'CORRUPT_FILE', /vision_config must be an object/);
    expectCode(() => parseClipVisionConfig({ model_type: 'siglip_vision_model' }), 'CORRUPT_FILE', /model_type/);
    expectCode(() => parseClipVisionConfig({ model_type: 'clip', projection_dim: 0, vision_config: {} }), 'CORRUPT_FILE', /: projection_dim must be a positive integer/);
    expectCode(() => parseClipVisionConfig({ layer_norm_eps: 0 }), 'CORRUPT_FILE', /layer_norm_eps/);
    expectCode(() => parseClipVisionConfig({ num_attention_heads: 1, hidden_size: 512 }), 'CORRUPT_FILE', /head dim of 512/);
  });

  test('checkpoint folder errors: config.json missing or broken, weights missing or mis-shaped', async () => {
    const cfg = randomClipVisionConfig({ num_hidden_layers: 1 });
    const w = randomClipVisionWeights(cfg, 77);
    const d0 = tmpDir();
    expectCode(() => loadClipVisionConfig(d0), 'IO_ERROR', /config\.json/);
    await expectCodeAsync(ClipVisionEncoder.fromPretrained(d0), 'IO_ERROR', /config\.json/);
    fs.writeFileSync(path.join(d0, 'config.json'), '{"hidden_size": 32,');
    await expectCodeAsync(ClipVisionEncoder.fromPretrained(d0), 'CORRUPT_FILE', /config\.json is not valid JSON/);
    // No weights at all.
    fs.writeFileSync(path.join(d0, 'config.json'), JSON.stringify(cfg));
    await expectCodeAsync(ClipVisionEncoder.fromPretrained(d0), 'IO_ERROR', /model\.safetensors/);
    // A missing weight is named.
    const d1 = tmpDir();
    writeHfClipVisionDir(d1, cfg, w, 'F32', { full: true });
    const t = toStTensors(w, 'F32');
    delete t['vision_model.encoder.layers.0.mlp.fc2.bias'];
    t['text_model.embeddings.token_embedding.weight'] = { dtype: 'F32', shape: [4, 2], data: new Float64Array(8) };
    writeSafetensorsFile(path.join(d1, 'model.safetensors'), t);
    await expectCodeAsync(ClipVisionEncoder.fromPretrained(d1), 'CORRUPT_FILE', /lacks 1 vision weight\(s\): vision_model\.encoder\.layers\.0\.mlp\.fc2\.bias/);
    // config.json disagreeing with the weights' shapes.
    const d2 = tmpDir();
    writeHfClipVisionDir(d2, cfg, w, 'F32');
    fs.writeFileSync(path.join(d2, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: 60 }));
    await expectCodeAsync(ClipVisionEncoder.fromPretrained(d2), 'CORRUPT_FILE', /mlp\.fc1\.weight is \[56,32\] in the checkpoint; config\.json implies \[60,32\]/);
    // More layers in the checkpoint than config.json says.
    fs.writeFileSync(path.join(d2, 'config.json'), JSON.stringify({ ...cfg, num_hidden_layers: 0 }));
    await expectCodeAsync(ClipVisionEncoder.fromPretrained(d2), 'CORRUPT_FILE', /num_hidden_layers must be a positive integer/);
    const cfg2 = randomClipVisionConfig({ num_hidden_layers: 2 });
    const d3 = tmpDir();
    writeHfClipVisionDir(d3, cfg2, randomClipVisionWeights(cfg2, 1), 'F32');
    fs.writeFileSync(path.join(d3, 'config.json'), JSON.stringify({ ...cfg2, num_hidden_layers: 1 }));
    await expectCodeAsync(ClipVisionEncoder.fromPretrained(d3), 'CORRUPT_FILE', /not in a model of this config\.json: vision_model\.encoder\.layers\.1\./);
  });
});

// ---------------------------------------------------------------- preprocessing

/** The shared Flickr8k sample (../shared/data/...), looked up in the ancestors of the repo. */
function findFlickr(): string | null {
  let d = path.resolve(__dirname, '..');
  for (let i = 0; i < 5; i++) {
    const p = path.join(d, 'shared', 'data', 'flickr8k_images_1k', 'images');
    if (fs.existsSync(p)) return p;
    d = path.dirname(d);
  }
  return null;
}

/** A w x h RGB image with a smooth pattern plus a hash (so resampling errors show). */
function pattern(w: number, h: number, ch: number, seed: number): Buffer {
  const b = Buffer.alloc(w * h * ch);
  const r = hostRandom(w * h * ch, seed);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < ch; c++) b[(y * w + x) * ch + c] = Math.max(0, Math.min(255, Math.round(128 + 60 * Math.sin((x + 2 * c) / 5) + 40 * Math.cos(y / 4) + 20 * r[(y * w + x) * ch + c])));
  return b;
}

async function png(raw: Buffer, w: number, h: number, ch: 1 | 2 | 3 | 4): Promise<Buffer> {
  return sharp(raw, { raw: { width: w, height: h, channels: ch } }).png().toBuffer();
}

/**
 * Normalised CHW from HWC uint8 RGB, by hand, in transformers' float32 arithmetic
 * (rescale: float64 v · (1/255) stored as float32; normalize: (x − mean) / std on float32).
 */
function byHand(rgb: Uint8Array, size: number, mean = CLIP_IMAGE_MEAN, std = CLIP_IMAGE_STD): Float32Array {
  const out = new Float32Array(3 * size * size);
  const f = Math.fround;
  for (let c = 0; c < 3; c++) for (let i = 0; i < size * size; i++) out[c * size * size + i] = f(f(rgb[i * 3 + c] * (1 / 255)) - f(mean[c])) / f(std[c]);
  return out;
}

/** The integer test pattern of the Pillow fixtures (sharp edges from the wrap-around). */
function intPattern(w: number, h: number): Uint8Array {
  const b = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++) b[(y * w + x) * 3 + c] = (x * 37 + y * 91 + c * 53 + ((x * y) % 17) * 11) % 256;
  return b;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Uint8 RGB (HWC) back from a preprocessImage output made with mean 0, std 1. */
function toBytes(chw: Float32Array, size: number): Uint8Array {
  const n = size * size, out = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) out[i * 3 + c] = Math.round(chw[c * n + i] * 255);
  return out;
}

describe('image preprocessing', () => {
  test('geometry: shorter side to size (longer side floored, as transformers), centre crop', () => {
    expect(clipResizeGeometry(640, 480, 224)).toEqual({ width: 298, height: 224, left: 37, top: 0 });
    expect(clipResizeGeometry(375, 500, 224)).toEqual({ width: 224, height: 298, left: 0, top: 37 });
    expect(clipResizeGeometry(37, 23, 16)).toEqual({ width: 25, height: 16, left: 4, top: 0 });
    expect(clipResizeGeometry(100, 100, 224)).toEqual({ width: 224, height: 224, left: 0, top: 0 });
  });

  test('resizeBicubicPil equals Pillow 12 Image.resize(BICUBIC) bit for bit (down, up, one axis, strong downscale)', () => {
    // [w, h, outW, outH, sha256 of Pillow's output bytes, its first 6 bytes], made with
    // Image.new('RGB', (w, h)) filled with intPattern, .resize((outW, outH), Image.BICUBIC, reducing_gap=None).
    const fixtures: [number, number, number, number, string, number[]][] = [
      [23, 17, 13, 9, '2a3c3524218009ac105da67c584f5baf4771ae3cf3477843f5e76bca9124044c', [73, 121, 160, 133, 146, 145]],
      [23, 17, 40, 29, 'd1081c20b300a09c83b54dc41516147dbcb347fd254821fdda5082d92e3edeab', [0, 43, 96, 3, 56, 108]],
      [23, 17, 23, 30, 'c5b33b1cab866c822a89fdd41b6a763e3546a94383ef40bae9640e2f752ebbe3', [0, 46, 99, 29, 82, 135]],
      [23, 17, 7, 17, '75dfdb2e401ef8efd404e7ed30ac35b1b894b25ad9b0b383c65f5bb5c4ffafb0', [47, 105, 163, 158, 165, 147]],
      [101, 67, 11, 7, '16d6db2b85248d3ae0173866cc243b05abcd5d48c49030732bc588925328b82f', [125, 118, 136, 132, 116, 128]],
      [64, 48, 85, 64, '03a688aab2d7d7e75dae0bc46762ac707056a33bbfb7e35f3947d83782411053', [0, 46, 99, 16, 69, 121]],
    ];
    for (const [w, h, ow, oh, hash, head] of fixtures) {
      const out = resizeBicubicPil(intPattern(w, h), w, h, ow, oh);
      expect(out.length).toBe(ow * oh * 3);
      expect(Array.from(out.subarray(0, 6))).toEqual(head);
      expect(sha256(out)).toBe(hash);
    }
    // Same size: a copy.
    const p = intPattern(5, 4);
    expect(Array.from(resizeBicubicPil(p, 5, 4, 5, 4))).toEqual(Array.from(p));
  });

  test('synthetic PNGs: hand-computed geometry, crop and normalisation, for both resamplers', async () => {
    for (const [w, h, size, seed] of [[37, 23, 16, 1], [19, 41, 12, 2], [30, 30, 30, 3], [9, 7, 20, 4]] as const) {
      const raw = pattern(w, h, 3, seed);
      const file = await png(raw, w, h, 3);
      // Independent geometry: short side -> size, long side floor(size * long / short).
      const rw = w <= h ? size : Math.floor((size * w) / h), rh = w <= h ? Math.floor((size * h) / w) : size;
      const left = Math.floor((rw - size) / 2), top = Math.floor((rh - size) / 2);
      for (const resample of ['pil', 'sharp'] as const) {
        const got = await preprocessImage(file, { size, resample });
        const resized = resample === 'pil'
          ? resizeBicubicPil(raw, w, h, rw, rh)
          : await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).resize(rw, rh, { kernel: 'cubic', fit: 'fill' }).raw().toBuffer();
        const crop = new Uint8Array(size * size * 3);
        for (let y = 0; y < size; y++) crop.set(resized.subarray(((top + y) * rw + left) * 3, ((top + y) * rw + left + size) * 3), y * size * 3);
        expect(got.length).toBe(3 * size * size);
        expect(Array.from(got)).toEqual(Array.from(byHand(crop, size)));
      }
    }
  });

  test('bicubic resampling reproduces a linear ramp (pixel-centre alignment, no offset) within 8-bit rounding', async () => {
    // Downscale (both resamplers) and upscale (Pillow's; libvips aligns upscales differently).
    for (const [W, H, size, resample] of [[50, 30, 12, 'pil'], [50, 30, 12, 'sharp'], [10, 6, 15, 'pil']] as const) {
      const raw = Buffer.alloc(W * H * 3);
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) raw.set([40 + 3 * x, 20 + 2 * y, 100], (y * W + x) * 3);
      const out = await preprocessImage(await png(raw, W, H, 3), { size, mean: [0, 0, 0], std: [1, 1, 1], resample });
      // Output pixel x samples input x' = (x + left + ½)·s − ½, s = H / size.
      const s = H / size, rw = Math.floor((size * W) / H), left = Math.floor((rw - size) / 2);
      let worst = 0;
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const r = out[y * size + x] * 255, b = out[2 * size * size + y * size + x] * 255;
          worst = Math.max(worst, Math.abs(r - (40 + 3 * ((x + left + 0.5) * s - 0.5))), Math.abs(b - 100));
          if (y >= 3 && y < size - 3) worst = Math.max(worst, Math.abs(out[size * size + y * size + x] * 255 - (20 + 2 * ((y + 0.5) * s - 0.5))));
        }
      expect(worst).toBeLessThanOrEqual(0.5 + 1e-4);
    }
  });

  test('greyscale and RGBA inputs: grey replicated to RGB, alpha dropped (not composited)', async () => {
    const w = 21, h = 17, size = 9;
    const grey = pattern(w, h, 1, 8);
    const grey3 = Buffer.alloc(w * h * 3);
    for (let i = 0; i < w * h; i++) grey3.fill(grey[i], i * 3, i * 3 + 3);
    const a = await preprocessImage(await png(grey, w, h, 1), { size });
    const b = await preprocessImage(await png(grey3, w, h, 3), { size });
    expect(Array.from(a)).toEqual(Array.from(b));
    // Channels agree once un-normalised.
    const n = size * size;
    for (let i = 0; i < n; i++) expect(Math.abs(a[i] * CLIP_IMAGE_STD[0] + CLIP_IMAGE_MEAN[0] - (a[n + i] * CLIP_IMAGE_STD[1] + CLIP_IMAGE_MEAN[1]))).toBeLessThan(1e-6);
    const rgb = pattern(w, h, 3, 9), alpha = pattern(w, h, 1, 10);
    const rgba = Buffer.alloc(w * h * 4);
    for (let i = 0; i < w * h; i++) rgba.set([rgb[i * 3], rgb[i * 3 + 1], rgb[i * 3 + 2], alpha[i]], i * 4);
    const c = await preprocessImage(await png(rgba, w, h, 4), { size });
    const d = await preprocessImage(await png(rgb, w, h, 3), { size });
    expect(Array.from(c)).toEqual(Array.from(d));
    // Grey + alpha.
    const ga = Buffer.alloc(w * h * 2);
    for (let i = 0; i < w * h; i++) ga.set([grey[i], alpha[i]], i * 2);
    expect(Array.from(await preprocessImage(await png(ga, w, h, 2), { size }))).toEqual(Array.from(a));
    // CMYK JPEG: converted to RGB (lossy, so only close).
    const cmyk = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer();
    expect((await sharp(cmyk).metadata()).space).toBe('cmyk');
    const e = await preprocessImage(cmyk, { size });
    expect(relErr(e, d)).toBeLessThan(0.15);
  });

  test('corrupt, truncated and missing files: CORRUPT_FILE / IO_ERROR naming the file; option errors', async () => {
    const dir = tmpDir();
    const junk = path.join(dir, 'junk.jpg');
    fs.writeFileSync(junk, 'this is not an image');
    await expectCodeAsync(preprocessImage(junk), 'CORRUPT_FILE', /junk\.jpg/);
    const good = await sharp(pattern(40, 30, 3, 4), { raw: { width: 40, height: 30, channels: 3 } }).jpeg().toBuffer();
    const cut = path.join(dir, 'cut.jpg');
    fs.writeFileSync(cut, good.subarray(0, Math.floor(good.length / 2)));
    await expectCodeAsync(preprocessImage(cut), 'CORRUPT_FILE', /cut\.jpg/);
    const missing = path.join(dir, 'nope.png');
    await expectCodeAsync(preprocessImage(missing), 'IO_ERROR', /nope\.png/);
    const ok = path.join(dir, 'ok.jpg');
    fs.writeFileSync(ok, good);
    await expectCodeAsync(loadImages([ok, ok, junk, ok], { size: 8 }), 'CORRUPT_FILE', /junk\.jpg/);
    await expectCodeAsync(loadImages([ok, missing], { size: 8, concurrency: 1 }), 'IO_ERROR', /nope\.png/);
    await expectCodeAsync(preprocessImage(ok, { size: 0 }), 'INVALID_ARGUMENT', /options\.size/);
    await expectCodeAsync(preprocessImage(ok, { std: [1, 0, 1] }), 'INVALID_ARGUMENT', /options\.std/);
    await expectCodeAsync(preprocessImage(ok, { mean: [1, 2] }), 'INVALID_ARGUMENT', /options\.mean/);
    await expectCodeAsync(preprocessImage(ok, { resample: 'lanczos' as 'pil' }), 'INVALID_ARGUMENT', /options\.resample/);
    await expectCodeAsync(loadImages([]), 'INVALID_ARGUMENT', /non-empty/);
    await expectCodeAsync(loadImages([ok], { concurrency: 0 }), 'INVALID_ARGUMENT', /concurrency/);
    await expectCodeAsync(loadImages([ok], { dtype: 'int32' }), 'DTYPE_MISMATCH');
  });

  const flickr = findFlickr();
  if (!flickr) {
    test.skip('real JPEGs (../shared/data/flickr8k_images_1k/images not found: SKIPPED)', () => undefined);
    // eslint-disable-next-line no-console
    console.warn('clip.test.ts: ../shared/data/flickr8k_images_1k/images not found; the real-JPEG test is skipped');
  } else {
    test('real Flickr8k JPEGs: shape, normalisation range, loadImages == preprocessImage, through a tiny encoder', async () => {
      const files = fs.readdirSync(flickr).filter((f) => f.endsWith('.jpg')).sort().slice(0, 5).map((f) => path.join(flickr, f));
      expect(files.length).toBe(5);
      const batch = await loadImages(files, { concurrency: 3 });
      expect(batch.shape).toEqual([5, 3, 224, 224]);
      expect(batch.dtype).toBe('float32');
      const all = batch.toArray();
      const n = 224 * 224;
      for (let b = 0; b < 5; b++)
        for (let c = 0; c < 3; c++) {
          const lo = (0 - CLIP_IMAGE_MEAN[c]) / CLIP_IMAGE_STD[c] - 1e-5, hi = (1 - CLIP_IMAGE_MEAN[c]) / CLIP_IMAGE_STD[c] + 1e-5;
          let mn = Infinity, mx = -Infinity, sum = 0;
          for (let i = 0; i < n; i++) {
            const v = all[(b * 3 + c) * n + i];
            mn = Math.min(mn, v);
            mx = Math.max(mx, v);
            sum += v;
          }
          expect(mn).toBeGreaterThanOrEqual(lo);
          expect(mx).toBeLessThanOrEqual(hi);
          expect(mx - mn).toBeGreaterThan(1); // a photo, not a flat image
          expect(Math.abs(sum / n)).toBeLessThan(1.5); // roughly centred by CLIP's statistics
        }
      const one = await preprocessImage(files[3]);
      expect(Array.from(all.subarray(3 * 3 * n, 4 * 3 * n))).toEqual(Array.from(one));
      // transformers' pipeline (Pillow 12: convert('RGB'), resize BICUBIC, centre crop) gave
      // exactly these 224 x 224 RGB bytes (sha256).
      const pilCrops: Record<string, string> = {
        '1000268201_693b08cb0e.jpg': 'ae045396f8a4d1fc03a7bdcfdf3a3bbe2f604c6d5ba5f660b0a7c0285af085d4',
        '1007320043_627395c3d8.jpg': '17518a5167632cb529d0e8962ced842f78ed18f130899b14d5d72514b96fb3af',
      };
      for (const [f, hash] of Object.entries(pilCrops)) {
        const p = path.join(flickr, f);
        if (!fs.existsSync(p)) continue;
        expect(sha256(toBytes(await preprocessImage(p, { mean: [0, 0, 0], std: [1, 1, 1] }), 224))).toBe(hash);
      }
      // bfloat16 output and a forward through a small random encoder at 224 px.
      const half = await loadImages(files.slice(0, 2), { dtype: 'bfloat16', size: 32 });
      expect(half.dtype).toBe('bfloat16');
      const m = new ClipVisionEncoder({ ...CLIP_VISION_DEFAULTS, hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 1, numAttentionHeads: 2, imageSize: 32, patchSize: 16, projectionDim: 8 }, { seed: 2 });
      const o = noGrad(() => m.forward(half));
      expect(o.embeds!.shape).toEqual([2, 8]);
      expect(Array.from(o.embeds!.toArray()).every(Number.isFinite)).toBe(true);
      for (const t of [o.lastHidden, o.pooled, o.embeds!, half, batch]) t.dispose();
      m.dispose();
    });
  }
});
