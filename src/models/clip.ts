// clip.ts: the CLIP vision tower (Hugging Face CLIPVisionModelWithProjection) on the
// autograd ops: patch embedding (patchify + linear), class token, position embeddings,
// pre-LayerNorm transformer encoder, post-LayerNorm of the class token, visual projection.
// Parameter names are exactly Hugging Face's, so checkpoints load by name.
import * as fs from 'fs';
import * as path from 'path';
import { DType, checkDType } from '../dtype';
import { Llm2ClipError, fail } from '../errors';
import { checkpoint, noGrad } from '../autograd';
import { randn, zeros, nextRandomSeed, toSeed } from '../creation';
import { tidy } from '../scope';
import { Tensor, shapeStr } from '../tensor';
import { Module, LayerNorm, activation, Activation } from '../nn';
import * as F from '../functional';
import { loadSafetensorsDir } from '../io/safetensors';

export { preprocessImage, loadImages, clipResizeGeometry, resizeBicubicPil, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD } from './image';
export type { PreprocessOptions, LoadImagesOptions } from './image';

// ---------------------------------------------------------------- config

/** A CLIP vision tower's shape (Hugging Face CLIPVisionConfig, camel-cased). */
export interface ClipVisionConfig {
  /** Width of the transformer (hidden_size). */
  hiddenSize: number;
  /** MLP width (intermediate_size). */
  intermediateSize: number;
  /** Number of encoder layers (num_hidden_layers). */
  numHiddenLayers: number;
  /** Attention heads (num_attention_heads); hiddenSize must be a multiple. */
  numAttentionHeads: number;
  /** Input side in pixels (image_size); a multiple of patchSize. */
  imageSize: number;
  /** Patch side in pixels (patch_size). */
  patchSize: number;
  /** Input channels (num_channels, 3). */
  numChannels: number;
  /** MLP activation (hidden_act): quick_gelu (OpenAI CLIP), gelu (erf) or gelu_tanh. */
  hiddenAct: Activation;
  /** Epsilon of every LayerNorm (layer_norm_eps). */
  layerNormEps: number;
  /** Output width of visual_projection (projection_dim). */
  projectionDim: number;
  /** Std of the random initialisation (initializer_range, default 0.02). */
  initializerRange: number;
  /** Scale of the random initialisation (initializer_factor, default 1). */
  initializerFactor: number;
}

/** Hugging Face CLIPVisionConfig's defaults (ViT-B/32), used for fields a config.json omits. */
export const CLIP_VISION_DEFAULTS: Readonly<ClipVisionConfig> = Object.freeze({
  hiddenSize: 768,
  intermediateSize: 3072,
  numHiddenLayers: 12,
  numAttentionHeads: 12,
  imageSize: 224,
  patchSize: 32,
  numChannels: 3,
  hiddenAct: 'quick_gelu',
  layerNormEps: 1e-5,
  projectionDim: 512,
  initializerRange: 0.02,
  initializerFactor: 1,
});

const ACTS: Record<string, Activation> = {
  quick_gelu: 'quick_gelu',
  gelu: 'gelu',
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_tanh: 'gelu_tanh',
};

/** Checks a config's consistency; code and where name the failure (argument or file). */
function validateConfig(c: ClipVisionConfig, code: 'INVALID_ARGUMENT' | 'CORRUPT_FILE', where: string, field: (camel: keyof ClipVisionConfig) => string): ClipVisionConfig {
  const bad = (k: keyof ClipVisionConfig, why: string): never => fail(code, `${where}: ${field(k)} ${why} (got ${JSON.stringify(c[k])})`);
  const ints: (keyof ClipVisionConfig)[] = ['hiddenSize', 'intermediateSize', 'numHiddenLayers', 'numAttentionHeads', 'imageSize', 'patchSize', 'numChannels', 'projectionDim'];
  for (const k of ints) {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > 1 << 20) bad(k, 'must be a positive integer');
  }
  if (c.hiddenSize % c.numAttentionHeads !== 0) bad('hiddenSize', `must be a multiple of ${field('numAttentionHeads')} = ${c.numAttentionHeads}`);
  if (c.hiddenSize / c.numAttentionHeads > 256) bad('numAttentionHeads', `gives a head dim of ${c.hiddenSize / c.numAttentionHeads}; the attention kernels take at most 256`);
  if (c.imageSize % c.patchSize !== 0) bad('imageSize', `must be a multiple of ${field('patchSize')} = ${c.patchSize}`);
  if (!Object.values(ACTS).includes(c.hiddenAct)) bad('hiddenAct', `must be one of quick_gelu, gelu, gelu_tanh`);
  for (const k of ['layerNormEps', 'initializerRange', 'initializerFactor'] as const) {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (k === 'layerNormEps' && v === 0)) bad(k, 'must be a finite positive number');
  }
  return c;
}

const SNAKE: Record<keyof ClipVisionConfig, string> = {
  hiddenSize: 'hidden_size',
  intermediateSize: 'intermediate_size',
  numHiddenLayers: 'num_hidden_layers',
  numAttentionHeads: 'num_attention_heads',
  imageSize: 'image_size',
  patchSize: 'patch_size',
  numChannels: 'num_channels',
  hiddenAct: 'hidden_act',
  layerNormEps: 'layer_norm_eps',
  projectionDim: 'projection_dim',
  initializerRange: 'initializer_range',
  initializerFactor: 'initializer_factor',
};

/**
 * A ClipVisionConfig from a parsed config.json: a CLIPVisionConfig (model_type
 * 'clip_vision_model') or a CLIPConfig (model_type 'clip', with vision_config; its
 * top-level projection_dim wins, as CLIPModel's visual_projection uses it). Fields the
 * JSON omits take Hugging Face's defaults ({@link CLIP_VISION_DEFAULTS}); hidden_act
 * quick_gelu, gelu, gelu_new / gelu_pytorch_tanh (tanh approximation). A field of the wrong
 * type or an inconsistent shape gives CORRUPT_FILE naming the field and `file`.
 */
export function parseClipVisionConfig(json: unknown, file = 'config.json'): ClipVisionConfig {
  const where = `CLIP vision config ${file}`;
  const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObj(json)) fail('CORRUPT_FILE', `${where}: must be a JSON object`);
  let v: Record<string, unknown> = json;
  let prefix = '';
  let projection: unknown = undefined;
  if ('vision_config' in json) {
    if (!isObj(json.vision_config)) fail('CORRUPT_FILE', `${where}: vision_config must be an object`);
    v = json.vision_config;
    prefix = 'vision_config.';
    projection = json.projection_dim;
  } else if (json.model_type === 'clip') {
    fail('CORRUPT_FILE', `${where}: a CLIPConfig (model_type 'clip') without vision_config`);
  }
  const mt = v.model_type;
  if (mt !== undefined && mt !== 'clip_vision_model')
    fail('CORRUPT_FILE', `${where}: ${prefix}model_type is ${JSON.stringify(mt)}; expected 'clip_vision_model'`);
  const out = { ...CLIP_VISION_DEFAULTS } as ClipVisionConfig;
  const field = (k: keyof ClipVisionConfig): string => (k === 'projectionDim' && projection !== undefined ? 'projection_dim' : prefix + SNAKE[k]);
  for (const k of Object.keys(SNAKE) as (keyof ClipVisionConfig)[]) {
    const raw = k === 'projectionDim' && projection !== undefined ? projection : v[SNAKE[k]];
    if (raw === undefined || raw === null) continue;
    if (k === 'hiddenAct') {
      if (typeof raw !== 'string' || !(raw in ACTS))
        fail('CORRUPT_FILE', `${where}: ${field(k)} must be one of ${Object.keys(ACTS).join(', ')} (got ${JSON.stringify(raw)})`);
      out.hiddenAct = ACTS[raw];
    } else {
      if (typeof raw !== 'number') fail('CORRUPT_FILE', `${where}: ${field(k)} must be a number (got ${JSON.stringify(raw)})`);
      (out as unknown as Record<string, number>)[k] = raw;
    }
  }
  return validateConfig(out, 'CORRUPT_FILE', where, field);
}

/** Reads and parses `<dir>/config.json` (IO_ERROR if unreadable, CORRUPT_FILE if not valid). */
export function loadClipVisionConfig(dir: string): ClipVisionConfig {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Llm2ClipError('IO_ERROR', `cannot read CLIP config ${file}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Llm2ClipError('CORRUPT_FILE', `CLIP config ${file} is not valid JSON: ${(e as Error).message}`);
  }
  return parseClipVisionConfig(json, file);
}

// ---------------------------------------------------------------- modules

interface Init {
  dtype: DType;
  device: string;
  /** null: parameters are zeros (they are about to be overwritten by a checkpoint). */
  seed: bigint | null;
  counter: number;
}

function normal(shape: number[], std: number, init: Init): Tensor {
  if (init.seed === null) return zeros(shape, { dtype: init.dtype, device: init.device });
  const seed = (init.seed + BigInt(++init.counter) * 0x9e3779b97f4a7c15n) & ((1n << 64n) - 1n);
  return randn(shape, { std, dtype: init.dtype, device: init.device, seed });
}

/** A module holding named parameters (HF's nn.Parameter / Conv2d / Embedding leaves). */
class Params extends Module {
  constructor(params: Record<string, Tensor>) {
    super();
    for (const [n, t] of Object.entries(params)) this.registerParameter(n, t);
  }
  get(name: string): Tensor {
    return this.param(name);
  }
}

/** A Linear with a given initialisation (normal weight, zero bias, HF CLIP's _init_weights). */
class ClipLinear extends Module {
  constructor(inF: number, outF: number, std: number, init: Init, bias = true) {
    super();
    this.registerParameter('weight', normal([outF, inF], std, init));
    this.registerParameter('bias', bias ? zeros([outF], { dtype: init.dtype, device: init.device }) : null);
  }
  forward(x: Tensor): Tensor {
    const b = this.namedParameters().find(([n]) => n === 'bias')?.[1] ?? null;
    return F.linear(x, this.param('weight'), b);
  }
}

function layerNorm(dim: number, eps: number, init: Init): LayerNorm {
  return new LayerNorm(dim, eps, { dtype: init.dtype, device: init.device });
}

class ClipAttention extends Module {
  readonly q: ClipLinear;
  readonly k: ClipLinear;
  readonly v: ClipLinear;
  readonly out: ClipLinear;
  constructor(private readonly c: ClipVisionConfig, init: Init) {
    super();
    const H = c.hiddenSize, f = c.initializerFactor;
    const inStd = H ** -0.5 * (2 * c.numHiddenLayers) ** -0.5 * f, outStd = H ** -0.5 * f;
    this.q = this.registerModule('q_proj', new ClipLinear(H, H, inStd, init));
    this.k = this.registerModule('k_proj', new ClipLinear(H, H, inStd, init));
    this.v = this.registerModule('v_proj', new ClipLinear(H, H, inStd, init));
    this.out = this.registerModule('out_proj', new ClipLinear(H, H, outStd, init));
  }
  forward(x: Tensor): Tensor {
    const [B, T, H] = x.shape;
    const nh = this.c.numAttentionHeads, hd = H / nh;
    const heads = (l: ClipLinear) => l.forward(x).reshape([B, T, nh, hd]);
    const a = F.attention(heads(this.q), heads(this.k), heads(this.v), { scale: hd ** -0.5 });
    return this.out.forward(a.reshape([B, T, H]));
  }
}

class ClipMlp extends Module {
  readonly fc1: ClipLinear;
  readonly fc2: ClipLinear;
  constructor(private readonly c: ClipVisionConfig, init: Init) {
    super();
    const H = c.hiddenSize, f = c.initializerFactor;
    this.fc1 = this.registerModule('fc1', new ClipLinear(H, c.intermediateSize, (2 * H) ** -0.5 * f, init));
    this.fc2 = this.registerModule('fc2', new ClipLinear(c.intermediateSize, H, H ** -0.5 * (2 * c.numHiddenLayers) ** -0.5 * f, init));
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(activation(this.fc1.forward(x), this.c.hiddenAct));
  }
}

/** One pre-LN encoder layer: h + attn(ln1(h)), then + mlp(ln2(·)). */
class ClipEncoderLayer extends Module {
  readonly attn: ClipAttention;
  readonly ln1: LayerNorm;
  readonly mlp: ClipMlp;
  readonly ln2: LayerNorm;
  constructor(c: ClipVisionConfig, init: Init) {
    super();
    this.attn = this.registerModule('self_attn', new ClipAttention(c, init));
    this.ln1 = this.registerModule('layer_norm1', layerNorm(c.hiddenSize, c.layerNormEps, init));
    this.mlp = this.registerModule('mlp', new ClipMlp(c, init));
    this.ln2 = this.registerModule('layer_norm2', layerNorm(c.hiddenSize, c.layerNormEps, init));
  }
  forward(h: Tensor): Tensor {
    return tidy(() => {
      const h1 = F.add(h, this.attn.forward(this.ln1.forward(h)));
      return F.add(h1, this.mlp.forward(this.ln2.forward(h1)));
    });
  }
}

/** Children named 0, 1, ... (torch.nn.ModuleList). */
class ModuleList<M extends Module> extends Module {
  readonly items: M[];
  constructor(items: M[]) {
    super();
    this.items = items.map((m, i) => this.registerModule(String(i), m));
  }
}

class ClipEncoder extends Module {
  readonly layers: ModuleList<ClipEncoderLayer>;
  constructor(c: ClipVisionConfig, init: Init) {
    super();
    this.layers = this.registerModule('layers', new ModuleList(Array.from({ length: c.numHiddenLayers }, () => new ClipEncoderLayer(c, init))));
  }
}

class ClipEmbeddings extends Module {
  readonly patch: Params;
  readonly position: Params;
  constructor(c: ClipVisionConfig, init: Init) {
    super();
    const H = c.hiddenSize, p = c.patchSize, P = (c.imageSize / p) ** 2, f = c.initializerFactor;
    this.registerParameter('class_embedding', normal([H], H ** -0.5 * f, init));
    this.patch = this.registerModule('patch_embedding', new Params({ weight: normal([H, c.numChannels, p, p], c.initializerRange * f, init) }));
    this.position = this.registerModule('position_embedding', new Params({ weight: normal([P + 1, H], c.initializerRange * f, init) }));
  }
  get classEmbedding(): Tensor {
    return this.param('class_embedding');
  }
}

class ClipVisionTransformer extends Module {
  readonly embeddings: ClipEmbeddings;
  readonly preLn: LayerNorm;
  readonly encoder: ClipEncoder;
  readonly postLn: LayerNorm;
  constructor(c: ClipVisionConfig, init: Init) {
    super();
    this.embeddings = this.registerModule('embeddings', new ClipEmbeddings(c, init));
    this.preLn = this.registerModule('pre_layrnorm', layerNorm(c.hiddenSize, c.layerNormEps, init));
    this.encoder = this.registerModule('encoder', new ClipEncoder(c, init));
    this.postLn = this.registerModule('post_layernorm', layerNorm(c.hiddenSize, c.layerNormEps, init));
  }
}

// ---------------------------------------------------------------- the encoder

/** Options of the {@link ClipVisionEncoder} constructor. */
export interface ClipVisionEncoderOptions {
  /** Seed of the random initialisation (default: the next of the global seed sequence). */
  seed?: number | bigint;
  /** Parameter dtype (default float32). */
  dtype?: DType;
  /** 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: string;
  /** Whether visual_projection exists (default true). */
  projection?: boolean;
  /** @internal Skip the random initialisation (zeros; fromPretrained overwrites them). */
  skipInit?: boolean;
}

/** Options of {@link ClipVisionEncoder.fromPretrained}. */
export interface ClipFromPretrainedOptions {
  /** Where the parameters go (default 'cpu'). */
  device?: string;
  /** Parameter dtype (default float32, whatever the checkpoint stores). */
  dtype?: DType;
}

/** Options of {@link ClipVisionEncoder.forward}. */
export interface ClipForwardOptions {
  /**
   * Activation checkpointing per encoder layer (default: the encoder's
   * gradientCheckpointing): each layer's activations are recomputed in the backward.
   */
  checkpointLayers?: boolean;
}

/** What {@link ClipVisionEncoder.forward} returns. */
export interface ClipVisionOutput {
  /** [B, P + 1, hidden]: the encoder's last hidden state (no post_layernorm, as HF). */
  lastHidden: Tensor;
  /** [B, hidden]: post_layernorm of the class token (HF's pooler_output). */
  pooled: Tensor;
  /** [B, projectionDim]: visual_projection(pooled) (HF's image_embeds); null without a projection. */
  embeds: Tensor | null;
}

/** Vision weights of a CLIP checkpoint that the encoder does not own (buffers). */
const IGNORED = new Set(['vision_model.embeddings.position_ids']);

/**
 * The CLIP vision tower with projection (Hugging Face CLIPVisionModelWithProjection), its
 * parameters named exactly as Hugging Face's (`vision_model.embeddings.patch_embedding.weight`,
 * `vision_model.encoder.layers.N.self_attn.q_proj.weight`, `visual_projection.weight`, ...).
 * Pixels [B, C, imageSize, imageSize] -> last hidden state, pooled class token and image
 * embedding. Differentiable end to end (parameters and pixels), with optional per-layer
 * activation checkpointing.
 */
export class ClipVisionEncoder extends Module {
  /** The validated configuration (omitted fields filled with {@link CLIP_VISION_DEFAULTS}). */
  readonly config: Readonly<ClipVisionConfig>;
  /** Per-layer activation checkpointing in forward() (default false). */
  gradientCheckpointing = false;
  private readonly vm: ClipVisionTransformer;
  private readonly proj: ClipLinear | null;

  /**
   * A randomly initialised encoder, Hugging Face CLIP's _init_weights: class embedding
   * N(0, hidden^-0.5), patch and position embeddings N(0, initializer_range), q/k/v and fc2
   * N(0, hidden^-0.5 (2L)^-0.5), out_proj and visual_projection N(0, hidden^-0.5), fc1
   * N(0, (2 hidden)^-0.5), biases 0, LayerNorms 1 / 0 (all times initializer_factor).
   * Fields the config omits take Hugging Face's defaults ({@link CLIP_VISION_DEFAULTS}).
   */
  constructor(config: Partial<ClipVisionConfig>, options: ClipVisionEncoderOptions = {}) {
    super();
    if (config === null || typeof config !== 'object') fail('INVALID_ARGUMENT', 'ClipVisionEncoder(config): config must be a ClipVisionConfig object');
    const c = validateConfig({ ...CLIP_VISION_DEFAULTS, ...config }, 'INVALID_ARGUMENT', 'ClipVisionEncoder(config)', (k) => `config.${k}`);
    this.config = Object.freeze(c);
    const dtype = checkDType(options.dtype ?? 'float32', 'ClipVisionEncoder(options.dtype)');
    if (dtype === 'int32') fail('DTYPE_MISMATCH', 'ClipVisionEncoder(options.dtype): must be a float dtype');
    const seed = options.skipInit ? null : options.seed === undefined ? nextRandomSeed() : toSeed(options.seed, 'ClipVisionEncoder(options.seed)');
    const init: Init = { dtype, device: options.device ?? 'cpu', seed, counter: 0 };
    this.vm = this.registerModule('vision_model', new ClipVisionTransformer(c, init));
    this.proj = options.projection === false ? null : this.registerModule('visual_projection', new ClipLinear(c.hiddenSize, c.projectionDim, c.hiddenSize ** -0.5 * c.initializerFactor, init, false));
  }

  /** Whether the encoder has visual_projection. */
  get hasProjection(): boolean {
    return this.proj !== null;
  }

  /** Number of patch tokens ((imageSize / patchSize)²); the sequence has one more (CLS). */
  get numPatches(): number {
    return (this.config.imageSize / this.config.patchSize) ** 2;
  }

  /**
   * Loads a Hugging Face CLIP checkpoint folder (config.json + model.safetensors or a
   * sharded index): a CLIPVisionModel(WithProjection) or a full CLIPModel (text_model.*,
   * text_projection and logit_scale are ignored). Missing vision weights give CORRUPT_FILE
   * naming them; a checkpoint without visual_projection.weight gives an encoder without a
   * projection (embeds null). Shapes must match config.json (CORRUPT_FILE naming the tensor).
   */
  static async fromPretrained(dir: string, options: ClipFromPretrainedOptions = {}): Promise<ClipVisionEncoder> {
    if (typeof dir !== 'string' || dir.length === 0) fail('INVALID_ARGUMENT', 'ClipVisionEncoder.fromPretrained(dir): dir must be a non-empty string');
    const config = loadClipVisionConfig(dir);
    const isVision = (n: string) => (n.startsWith('vision_model.') || n === 'visual_projection.weight' || n === 'visual_projection.bias') && !IGNORED.has(n);
    const loaded = await loadSafetensorsDir(dir, { names: isVision });
    let model: ClipVisionEncoder | null = null;
    try {
      model = new ClipVisionEncoder(config, { ...options, skipInit: true, projection: 'visual_projection.weight' in loaded });
      const own = model.stateDict();
      const missing = Object.keys(own).filter((k) => !(k in loaded));
      if (missing.length)
        fail('CORRUPT_FILE', `ClipVisionEncoder.fromPretrained(${JSON.stringify(dir)}): the checkpoint lacks ${missing.length} vision weight(s): ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''}`);
      const extra = Object.keys(loaded).filter((k) => !(k in own));
      if (extra.length)
        fail('CORRUPT_FILE', `ClipVisionEncoder.fromPretrained(${JSON.stringify(dir)}): vision weight(s) not in a model of this config.json: ${extra.slice(0, 8).join(', ')}${extra.length > 8 ? ', ...' : ''}`);
      for (const [k, p] of Object.entries(own)) {
        const t = loaded[k];
        if (t.shape.length !== p.shape.length || t.shape.some((v, i) => v !== p.shape[i]))
          fail('CORRUPT_FILE', `ClipVisionEncoder.fromPretrained(${JSON.stringify(dir)}): ${k} is ${shapeStr(t.shape)} in the checkpoint; config.json implies ${shapeStr(p.shape)}`);
      }
      model.loadStateDict(loaded);
      return model;
    } catch (e) {
      model?.dispose();
      throw e;
    } finally {
      for (const t of Object.values(loaded)) t.dispose();
    }
  }

  /**
   * pixels [B, numChannels, imageSize, imageSize] (any float dtype; cast to the parameters'
   * dtype) -> {@link ClipVisionOutput}. Records the graph when grad mode is on and the
   * parameters or pixels require grad.
   */
  forward(pixels: Tensor, options: ClipForwardOptions = {}): ClipVisionOutput {
    if (!(pixels instanceof Tensor)) fail('INVALID_ARGUMENT', 'ClipVisionEncoder.forward(pixels): pixels must be a Tensor');
    const c = this.config;
    if (pixels.ndim !== 4 || pixels.shape[1] !== c.numChannels || pixels.shape[2] !== c.imageSize || pixels.shape[3] !== c.imageSize)
      fail('SHAPE_MISMATCH', `ClipVisionEncoder.forward: pixels ${pixels.dtype}${shapeStr(pixels.shape)} must be [B,${c.numChannels},${c.imageSize},${c.imageSize}]`);
    if (pixels.dtype === 'int32') fail('DTYPE_MISMATCH', 'ClipVisionEncoder.forward: pixels must be a float tensor (got int32)');
    const emb = this.vm.embeddings;
    const pw = emb.patch.get('weight');
    if (pixels.device !== pw.device)
      fail('DEVICE_MISMATCH', `ClipVisionEncoder.forward: pixels are on ${pixels.device}, the parameters on ${pw.device}`);
    const ck = options.checkpointLayers ?? this.gradientCheckpointing;
    const B = pixels.shape[0], H = c.hiddenSize, T = this.numPatches + 1;
    return tidy(() => {
      const px = pixels.dtype === pw.dtype ? pixels : pixels.cast(pw.dtype);
      // Conv2d(kernel = stride = p, no bias) as patchify (c, py, px order) · Wᵀ.
      const patches = F.linear(F.patchify(px, c.patchSize), pw.reshape([H, -1])); // [B, P, H]
      const cls = F.add(zeros([B, 1, H], { dtype: pw.dtype, device: pw.device }), emb.classEmbedding.reshape([1, 1, H]));
      const tokens = F.add(F.concat([cls, patches], 1), emb.position.get('weight').reshape([1, T, H]));
      let h = this.vm.preLn.forward(tokens);
      for (const layer of this.vm.encoder.layers.items) h = ck ? checkpoint((x) => layer.forward(x), h) : layer.forward(h);
      const pooled = this.vm.postLn.forward(F.slice(h, 1, 0, 1).reshape([B, H]));
      const embeds = this.proj ? this.proj.forward(pooled) : null;
      return { lastHidden: h, pooled, embeds };
    });
  }

  /** forward() under noGrad(): inference only. */
  encode(pixels: Tensor): ClipVisionOutput {
    return noGrad(() => this.forward(pixels));
  }
}
