// clip-ref.ts: a plain float64 reference of Hugging Face's CLIPVisionModel /
// CLIPVisionModelWithProjection and a writer of HF-format directories. Test-only code.
//
// API
//   interface ClipVisionRefConfig        HF CLIPVisionConfig fields (snake_case)
//   randomClipVisionConfig(opts?)        tiny config: hidden 32, intermediate 56, 2 layers,
//                                        4 heads, image 20, patch 5 (16 patches + CLS),
//                                        3 channels, quick_gelu, eps 1e-5, projection_dim 24
//   randomClipVisionWeights(config, seed) RefWeights with full HF names:
//       vision_model.embeddings.class_embedding [H]
//       vision_model.embeddings.patch_embedding.weight [H, 3, p, p] (no bias)
//       vision_model.embeddings.position_embedding.weight [P + 1, H] (row 0: CLS)
//       vision_model.pre_layrnorm.{weight,bias}            (HF's spelling)
//       vision_model.encoder.layers.N.self_attn.{q,k,v,out}_proj.{weight,bias}
//       vision_model.encoder.layers.N.layer_norm{1,2}.{weight,bias}
//       vision_model.encoder.layers.N.mlp.fc{1,2}.{weight,bias}
//       vision_model.post_layernorm.{weight,bias}
//       visual_projection.weight [projection_dim, H] (no bias)
//   clipVisionForwardRef(config, weights, pixels [B,3,Hpx,Wpx], B)
//       -> { lastHidden [B, P+1, H], pooled [B, H], imageEmbeds [B, proj] }
//   writeHfClipVisionDir(dir, config, weights, dtype, { full?, includePositionIds? })
//       -> RefWeights as stored
//
// Semantics (HF CLIPVisionTransformer): patches = conv2d(pixels, patch_embedding, stride p)
// flattened row-major over the (Hpx/p) x (Wpx/p) grid; tokens = [class_embedding, patches]
// + position_embedding; h = pre_layrnorm(tokens); per layer:
// h += out_proj(MHA(layer_norm1(h))) (no mask, scale head_dim^-0.5, biases on q/k/v/out),
// h += fc2(act(fc1(layer_norm2(h)))), act quick_gelu (x σ(1.702x)) or gelu (erf-exact).
// last_hidden_state = h (NO post_layernorm); pooler_output = post_layernorm(h[:, 0]);
// image_embeds = visual_projection(pooler_output). LayerNorms use layer_norm_eps.
import * as fs from 'fs';
import * as path from 'path';
import { StDtype } from './safetensors-writer';
import { RefWeights, makeRng, randTensor, roundWeights, toStTensors, getW, linear, layerNormRow, gelu, quickGelu, softmaxInPlace } from './common';
import { writeShardedSafetensors } from './llama-ref';

/** HF CLIPVisionConfig fields. */
export interface ClipVisionRefConfig {
  model_type: 'clip_vision_model';
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  image_size: number;
  patch_size: number;
  num_channels: number;
  hidden_act: 'quick_gelu' | 'gelu';
  layer_norm_eps: number;
  projection_dim: number;
  [extra: string]: unknown;
}

/** A tiny CLIPVisionConfig (defaults in the file header; any field can be overridden). */
export function randomClipVisionConfig(opts: Partial<ClipVisionRefConfig> = {}): ClipVisionRefConfig {
  return {
    model_type: 'clip_vision_model',
    hidden_size: 32,
    intermediate_size: 56,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    image_size: 20,
    patch_size: 5,
    num_channels: 3,
    hidden_act: 'quick_gelu',
    layer_norm_eps: 1e-5,
    projection_dim: 24,
    attention_dropout: 0,
    initializer_factor: 1,
    initializer_range: 0.02,
    ...opts,
  };
}

/** Number of patches of the configured image size. */
export function clipNumPatches(config: ClipVisionRefConfig): number {
  return (config.image_size / config.patch_size) ** 2;
}

/**
 * Random weights with HF names, activations O(1): projections U * sqrt(3 / fan_in)
 * (out_proj / fc2 half), norms weight 1 + 0.2 U and bias 0.2 U, biases 0.2 U,
 * class / position embeddings 0.5 U.
 */
export function randomClipVisionWeights(config: ClipVisionRefConfig, seed: number): RefWeights {
  const rng = makeRng(seed);
  const H = config.hidden_size, I = config.intermediate_size, p = config.patch_size, C = config.num_channels;
  const P = clipNumPatches(config);
  const w: RefWeights = {};
  const lin = (name: string, out: number, inn: number, gain = 1, bias = true) => {
    w[name + '.weight'] = randTensor(rng, [out, inn], gain * Math.sqrt(3 / inn));
    if (bias) w[name + '.bias'] = randTensor(rng, [out], 0.2);
  };
  const norm = (name: string) => {
    w[name + '.weight'] = randTensor(rng, [H], 0.2, 1);
    w[name + '.bias'] = randTensor(rng, [H], 0.2);
  };
  const e = 'vision_model.embeddings.';
  w[e + 'class_embedding'] = randTensor(rng, [H], 0.5);
  w[e + 'patch_embedding.weight'] = randTensor(rng, [H, C, p, p], Math.sqrt(3 / (C * p * p)));
  w[e + 'position_embedding.weight'] = randTensor(rng, [P + 1, H], 0.5);
  norm('vision_model.pre_layrnorm');
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const L = `vision_model.encoder.layers.${l}.`;
    norm(L + 'layer_norm1');
    lin(L + 'self_attn.q_proj', H, H);
    lin(L + 'self_attn.k_proj', H, H);
    lin(L + 'self_attn.v_proj', H, H);
    lin(L + 'self_attn.out_proj', H, H, 0.5);
    norm(L + 'layer_norm2');
    lin(L + 'mlp.fc1', I, H);
    lin(L + 'mlp.fc2', H, I, 0.5);
  }
  norm('vision_model.post_layernorm');
  lin('visual_projection', config.projection_dim, H, 1, false);
  return w;
}

/** Outputs of clipVisionForwardRef. */
export interface ClipVisionRefOutput {
  /** [B, P + 1, H] encoder output (before post_layernorm). */
  lastHidden: Float64Array;
  /** [B, H] post_layernorm of the CLS row. */
  pooled: Float64Array;
  /** [B, projection_dim] visual_projection(pooled). */
  imageEmbeds: Float64Array;
}

/** HF CLIPVisionModel(WithProjection) forward on pixels [B, C, image_size, image_size]. */
export function clipVisionForwardRef(config: ClipVisionRefConfig, weights: RefWeights, pixels: Float64Array, B: number): ClipVisionRefOutput {
  const H = config.hidden_size, I = config.intermediate_size, p = config.patch_size, C = config.num_channels;
  const S = config.image_size, G = S / p, P = G * G, T = P + 1;
  const nh = config.num_attention_heads, hd = H / nh, eps = config.layer_norm_eps;
  if (pixels.length !== B * C * S * S) throw new Error(`clip-ref: pixels has ${pixels.length} values, want ${B}x${C}x${S}x${S}`);
  const act = config.hidden_act === 'gelu' ? gelu : quickGelu;
  const e = 'vision_model.embeddings.';
  const cls = getW(weights, e + 'class_embedding'), pw = getW(weights, e + 'patch_embedding.weight');
  const pos = getW(weights, e + 'position_embedding.weight');
  const lastHidden = new Float64Array(B * T * H), pooled = new Float64Array(B * H);
  const imageEmbeds = new Float64Array(B * config.projection_dim);
  const scale = 1 / Math.sqrt(hd);
  for (let b = 0; b < B; b++) {
    const h = new Float64Array(T * H);
    for (let c = 0; c < H; c++) h[c] = cls[c] + pos[c];
    for (let gy = 0; gy < G; gy++)
      for (let gx = 0; gx < G; gx++) {
        const t = 1 + gy * G + gx;
        for (let c = 0; c < H; c++) {
          let s = 0;
          for (let ch = 0; ch < C; ch++)
            for (let ky = 0; ky < p; ky++)
              for (let kx = 0; kx < p; kx++)
                s += pw[((c * C + ch) * p + ky) * p + kx] * pixels[((b * C + ch) * S + gy * p + ky) * S + gx * p + kx];
          h[t * H + c] = s + pos[t * H + c];
        }
      }
    const preW = getW(weights, 'vision_model.pre_layrnorm.weight'), preB = getW(weights, 'vision_model.pre_layrnorm.bias');
    for (let t = 0; t < T; t++) h.set(layerNormRow(h.subarray(t * H, (t + 1) * H), preW, preB, eps), t * H);
    for (let l = 0; l < config.num_hidden_layers; l++) {
      const L = `vision_model.encoder.layers.${l}.`;
      const g = (n: string) => getW(weights, L + n);
      const q = new Float64Array(T * H), k = new Float64Array(T * H), v = new Float64Array(T * H);
      for (let t = 0; t < T; t++) {
        const x = layerNormRow(h.subarray(t * H, (t + 1) * H), g('layer_norm1.weight'), g('layer_norm1.bias'), eps);
        q.set(linear(x, 0, g('self_attn.q_proj.weight'), g('self_attn.q_proj.bias'), H, H), t * H);
        k.set(linear(x, 0, g('self_attn.k_proj.weight'), g('self_attn.k_proj.bias'), H, H), t * H);
        v.set(linear(x, 0, g('self_attn.v_proj.weight'), g('self_attn.v_proj.bias'), H, H), t * H);
      }
      const ctx = new Float64Array(T * H);
      for (let hh = 0; hh < nh; hh++)
        for (let i = 0; i < T; i++) {
          const sc = new Float64Array(T);
          for (let j = 0; j < T; j++) {
            let d = 0;
            for (let d0 = 0; d0 < hd; d0++) d += q[i * H + hh * hd + d0] * k[j * H + hh * hd + d0];
            sc[j] = d * scale;
          }
          softmaxInPlace(sc);
          for (let j = 0; j < T; j++)
            for (let d0 = 0; d0 < hd; d0++) ctx[i * H + hh * hd + d0] += sc[j] * v[j * H + hh * hd + d0];
        }
      for (let t = 0; t < T; t++) {
        const o = linear(ctx, t * H, g('self_attn.out_proj.weight'), g('self_attn.out_proj.bias'), H, H);
        for (let c = 0; c < H; c++) h[t * H + c] += o[c];
      }
      for (let t = 0; t < T; t++) {
        const x = layerNormRow(h.subarray(t * H, (t + 1) * H), g('layer_norm2.weight'), g('layer_norm2.bias'), eps);
        const f = linear(x, 0, g('mlp.fc1.weight'), g('mlp.fc1.bias'), I, H);
        for (let j = 0; j < I; j++) f[j] = act(f[j]);
        const o = linear(f, 0, g('mlp.fc2.weight'), g('mlp.fc2.bias'), H, I);
        for (let c = 0; c < H; c++) h[t * H + c] += o[c];
      }
    }
    lastHidden.set(h, b * T * H);
    const pl = layerNormRow(h.subarray(0, H), getW(weights, 'vision_model.post_layernorm.weight'), getW(weights, 'vision_model.post_layernorm.bias'), eps);
    pooled.set(pl, b * H);
    imageEmbeds.set(linear(pl, 0, getW(weights, 'visual_projection.weight'), undefined, config.projection_dim, H), b * config.projection_dim);
  }
  return { lastHidden, pooled, imageEmbeds };
}

/** Options of writeHfClipVisionDir. */
export interface WriteHfClipOpts {
  /**
   * true: config.json is a full CLIPConfig ({model_type: 'clip', architectures:
   * ['CLIPModel'], projection_dim, vision_config: {...}, text_config: {...}}, the text tower's
   * weights NOT written); false (default): a CLIPVisionConfig with architectures
   * ['CLIPVisionModelWithProjection'].
   */
  full?: boolean;
  /** Also write vision_model.embeddings.position_ids (I64 [1, P+1]) as older checkpoints do. */
  includePositionIds?: boolean;
  /** Shards as in writeShardedSafetensors (default 1). */
  shards?: number;
}

/** Writes config.json + safetensors of a CLIP vision tower; returns the weights as stored. */
export function writeHfClipVisionDir(dir: string, config: ClipVisionRefConfig, weights: RefWeights, dtype: StDtype, opts: WriteHfClipOpts = {}): RefWeights {
  fs.mkdirSync(dir, { recursive: true });
  const torchDtype = { F32: 'float32', BF16: 'bfloat16', F16: 'float16', I64: 'int64' }[dtype];
  const cfg = opts.full
    ? {
        model_type: 'clip',
        architectures: ['CLIPModel'],
        projection_dim: config.projection_dim,
        logit_scale_init_value: 2.6592,
        torch_dtype: torchDtype,
        vision_config: { ...config },
        text_config: {
          model_type: 'clip_text_model', hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
          num_attention_heads: 4, vocab_size: 99, max_position_embeddings: 16, hidden_act: 'quick_gelu',
          layer_norm_eps: 1e-5, projection_dim: config.projection_dim,
        },
      }
    : { ...config, architectures: ['CLIPVisionModelWithProjection'], torch_dtype: torchDtype };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  const t = toStTensors(weights, dtype);
  if (opts.includePositionIds) {
    const T = clipNumPatches(config) + 1;
    t['vision_model.embeddings.position_ids'] = { dtype: 'I64', shape: [1, T], data: Array.from({ length: T }, (_, i) => i) };
  }
  writeShardedSafetensors(dir, t, opts.shards ?? 1);
  return roundWeights(weights, dtype);
}
