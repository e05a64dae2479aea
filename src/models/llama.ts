// models/llama.ts: a Llama-family decoder (Llama 2/3, Mistral, Qwen2) used as an LLM2Vec text
// encoder: bidirectional attention (or the original causal one), Hugging Face weights and
// names, LLM2Vec pooling, LoRA with PEFT's adapter files, and the masked-next-token loss.
import * as fs from 'fs';
import * as path from 'path';
import { DType, checkDType, isFloat } from '../dtype';
import { fail } from '../errors';
import { checkpoint as checkpointFn, noGrad } from '../autograd';
import { nextRandomSeed, randn, tensor, toSeed } from '../creation';
import { tidy } from '../scope';
import { Tensor, shapeStr } from '../tensor';
import * as F from '../functional';
import { Module, Linear, LoRALinear, Embedding, RMSNorm, copyInto } from '../nn';
import * as ops from '../ops';
import type { RopeOptions } from '../ops';
import type { Tokenizer, InstructionPair } from '../tokenizer';
import { loadSafetensorsDir } from '../io/safetensors';
import { loadPeftAdapter, savePeftAdapter, peftName, parsePeftName } from '../io/peft';
import { LlamaConfig, checkLlamaConfig, parseLlamaConfig } from './llama-config';

export { parseLlamaConfig } from './llama-config';
export type { LlamaConfig, LlamaModelType } from './llama-config';

/** Names of the projections LoRA can target (PEFT's target_modules for Llama). */
export type LlamaLoraTarget = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj';

const ATTN_PROJ = ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const;
const MLP_PROJ = ['gate_proj', 'up_proj', 'down_proj'] as const;
const ALL_TARGETS: readonly LlamaLoraTarget[] = [...ATTN_PROJ, ...MLP_PROJ];

/** Options of the LlamaEncoder constructor. */
export interface LlamaEncoderOptions {
  /** Seed of the random initialisation (default: the next of the global seed sequence). */
  seed?: number | bigint;
  /** Parameter dtype (default float32). */
  dtype?: DType;
  /** 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: string;
  /**
   * Whether an untied model gets its own lm_head.weight (default true; fromPretrained sets
   * it from the checkpoint: LLM2Vec's saved encoders have none). Ignored when tied.
   */
  lmHead?: boolean;
  /**
   * 'normal' (default): Hugging Face's init (weights N(0, initializer_range), biases 0,
   * norms 1). 'fast': torch.nn.Linear's uniform init for the projections (one random pass
   * less; used by fromPretrained, which overwrites everything).
   */
  init?: 'normal' | 'fast';
}

/** Options of {@link LlamaEncoder.fromPretrained}. */
export interface LlamaFromPretrainedOptions {
  /** Where the parameters go (default 'cpu'). */
  device?: string;
  /** Parameter dtype (default float32); bfloat16 / float16 / float32 on disk are converted. */
  dtype?: DType;
  /**
   * Load lm_head.weight of an untied model: true requires it, false skips it; default:
   * loaded when the checkpoint has it.
   */
  lmHead?: boolean;
}

/** Options of {@link LlamaEncoder.forward}. */
export interface LlamaForwardOptions {
  /** The decoder's original causal attention instead of LLM2Vec's bidirectional one (default false). */
  causal?: boolean;
  /**
   * int32 [B,S] position ids (default: cumsum(attentionMask) − 1 per row, clamped at 0;
   * see {@link LlamaEncoder.forward}).
   */
  positionIds?: Tensor | null;
  /** Activation checkpointing per decoder layer (recompute in the backward; default false). */
  checkpoint?: boolean;
}

/** LLM2Vec pooling modes of {@link LlamaEncoder.pool}. */
export type LlamaPooling = 'mean' | 'weighted_mean' | 'eos' | 'bos';

/** Options of {@link LlamaEncoder.withLora}. */
export interface LlamaLoraOptions {
  /** Rank (default 8). */
  r?: number;
  /** scale = alpha / r (default 8, PEFT's; LLM2Vec trains with r 16, alpha 32). */
  alpha?: number;
  /** Dropout on the LoRA path's input in training mode (default 0). */
  dropout?: number;
  /** Which projections get adapters (default all seven). */
  targets?: LlamaLoraTarget[];
  /** Only these layer indices (PEFT's layers_to_transform; default all). */
  layers?: number[] | null;
  /** rsLoRA scaling alpha / sqrt(r) (default false). */
  useRslora?: boolean;
  /** Adapter dtype (default float32, whatever the base's). */
  dtype?: DType;
  /** Seed of the lora_A initialisations (default: the next of the global seed sequence). */
  seed?: number | bigint;
}

/** The LoRA configuration of a model (what adapter_config.json records). */
export interface LlamaLoraConfig {
  r: number;
  alpha: number;
  dropout: number;
  targets: LlamaLoraTarget[];
  layers: number[] | null;
  useRslora: boolean;
}

/** Options of {@link LlamaEncoder.encode}. */
export interface LlamaEncodeOptions {
  /** Pooling mode (default 'mean'). */
  pooling?: LlamaPooling;
  /** Longest token sequence (default 512). */
  maxLength?: number;
  /** Texts per forward (default 32). */
  batchSize?: number;
  /** Append the tokenizer's EOS token to every text (default false). */
  appendEos?: boolean;
  /** Causal attention instead of bidirectional (default false). */
  causal?: boolean;
}

/** Options of {@link LlamaEncoder.mntpLoss}. */
export interface MntpLossOptions {
  /**
   * Shift as a causal LM (and LLM2Vec's MNTP) does: hidden[:, t] predicts labels[:, t+1]
   * (default true). false: labels are already aligned with hidden.
   */
  shift?: boolean;
  /** Vocabulary chunk width of the fused cross-entropy (see ops.crossEntropy). */
  chunkSize?: number;
  /** Label value that is ignored (default -100). */
  ignoreIndex?: number;
}

const U64 = (1n << 64n) - 1n;

/** The given seed, or the next of the global sequence (masked to 64 bits). */
function seedOrNext(seed: number | bigint | undefined, what: string): bigint {
  return seed === undefined ? nextRandomSeed() & U64 : toSeed(seed, what);
}

function deriveSeed(base: bigint, k: number): bigint {
  return (base * 0x9e3779b97f4a7c15n + BigInt(k) * 0xbf58476d1ce4e5b9n + 1n) & ((1n << 64n) - 1n);
}

type Proj = Linear | LoRALinear;

/** A module holding named projections that may be swapped for LoRA layers. */
class ProjGroup extends Module {
  private readonly projs = new Map<string, Proj>();
  setProj(name: string, m: Proj): Proj {
    this.projs.set(name, m);
    return this.registerModule(name, m);
  }
  proj(name: string): Proj {
    return this.projs.get(name)!;
  }
  projNames(): string[] {
    return [...this.projs.keys()];
  }
}

/** Numbered children (`layers.0`, `layers.1`, ...). */
class ModuleList<M extends Module> extends Module {
  readonly items: M[] = [];
  push(m: M): M {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
    return m;
  }
}

class LlamaDecoderLayer extends Module {
  readonly selfAttn: ProjGroup;
  readonly mlp: ProjGroup;
  readonly inputLayernorm: RMSNorm;
  readonly postAttentionLayernorm: RMSNorm;
  constructor(c: LlamaConfig, mk: (inF: number, outF: number, bias: boolean) => Linear, o: { dtype: DType; device: string }) {
    super();
    const H = c.hiddenSize, qd = c.numAttentionHeads * c.headDim, kvd = c.numKeyValueHeads * c.headDim;
    this.selfAttn = this.registerModule('self_attn', new ProjGroup());
    this.selfAttn.setProj('q_proj', mk(H, qd, c.attentionBias));
    this.selfAttn.setProj('k_proj', mk(H, kvd, c.attentionBias));
    this.selfAttn.setProj('v_proj', mk(H, kvd, c.attentionBias));
    this.selfAttn.setProj('o_proj', mk(qd, H, c.oProjBias));
    this.mlp = this.registerModule('mlp', new ProjGroup());
    this.mlp.setProj('gate_proj', mk(H, c.intermediateSize, c.mlpBias));
    this.mlp.setProj('up_proj', mk(H, c.intermediateSize, c.mlpBias));
    this.mlp.setProj('down_proj', mk(c.intermediateSize, H, c.mlpBias));
    this.inputLayernorm = this.registerModule('input_layernorm', new RMSNorm(H, c.rmsNormEps, o));
    this.postAttentionLayernorm = this.registerModule('post_attention_layernorm', new RMSNorm(H, c.rmsNormEps, o));
  }
}

/** Per-call state of a forward shared by the layers. */
interface ForwardCtx {
  B: number;
  S: number;
  mask: Tensor;
  positions: Tensor;
  causal: boolean;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    fail('IO_ERROR', `${what}: cannot read ${file} (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    fail('CORRUPT_FILE', `${what}: ${file} is not valid JSON (${(e as Error).message})`);
  }
}

function listSome(names: string[], n = 8): string {
  return names.slice(0, n).join(', ') + (names.length > n ? ` (+${names.length - n} more)` : '');
}

/**
 * A Llama-family transformer (Hugging Face's LlamaModel: embeddings, decoder layers, final
 * RMSNorm; Mistral and Qwen2 are the same block) as an LLM2Vec text encoder.
 *
 * Parameter names are exactly Hugging Face's without the `model.` prefix
 * (`embed_tokens.weight`, `layers.N.self_attn.q_proj.weight`, `layers.N.mlp.gate_proj.weight`,
 * `layers.N.input_layernorm.weight`, `norm.weight`, `lm_head.weight` when untied), so
 * stateDict() keys are HF names. After {@link withLora} an adapted projection becomes PEFT's
 * layout: `...q_proj.base_layer.weight`, `...q_proj.lora_A`, `...q_proj.lora_B`.
 */
export class LlamaEncoder extends Module {
  readonly config: LlamaConfig;
  readonly embedTokens: Embedding;
  readonly layers: LlamaDecoderLayer[];
  readonly norm: RMSNorm;
  /** Weight names of the checkpoint that fromPretrained ignored (rotary buffers, a tied lm_head, ...). */
  unexpectedWeights: string[] = [];
  private lmHead_: Linear | null = null;
  private lora_: LlamaLoraConfig | null = null;

  /**
   * A randomly initialised model (Hugging Face's init: weights N(0, initializer_range),
   * biases zeros, norm weights ones). config: a LlamaConfig (see parseLlamaConfig).
   */
  constructor(config: LlamaConfig, options: LlamaEncoderOptions = {}) {
    super();
    const what = 'new LlamaEncoder';
    this.config = { ...checkLlamaConfig(config, what) };
    if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', `${what}: options must be an object`);
    const dtype = checkDType(options.dtype ?? 'float32', `${what}(options.dtype)`);
    if (!isFloat(dtype)) fail('INVALID_ARGUMENT', `${what}: options.dtype must be a float dtype (got ${dtype})`);
    const device = options.device ?? 'cpu';
    const init = options.init ?? 'normal';
    if (init !== 'normal' && init !== 'fast') fail('INVALID_ARGUMENT', `${what}: options.init must be 'normal' or 'fast' (got ${String(init)})`);
    const base = seedOrNext(options.seed, `${what}(options.seed)`);
    let k = 0;
    const seed = (): bigint => deriveSeed(base, k++);
    const o = { dtype, device };
    const c = this.config;
    const std = c.initializerRange;
    const mk = (inF: number, outF: number, bias: boolean): Linear => {
      const lin = new Linear(inF, outF, { ...o, seed: seed(), bias });
      if (init === 'normal')
        noGrad(() =>
          tidy(() => {
            copyInto(lin.weight, randn([outF, inF], { ...o, std, seed: seed() }));
            if (lin.bias) copyInto(lin.bias, tensor(new Float32Array(outF), [outF]));
          }),
        );
      return lin;
    };
    try {
      this.embedTokens = this.registerModule('embed_tokens', new Embedding(c.vocabSize, c.hiddenSize, { ...o, std, seed: seed() }));
      const list = this.registerModule('layers', new ModuleList<LlamaDecoderLayer>());
      for (let l = 0; l < c.numHiddenLayers; l++) list.push(new LlamaDecoderLayer(c, mk, o));
      this.layers = list.items;
      this.norm = this.registerModule('norm', new RMSNorm(c.hiddenSize, c.rmsNormEps, o));
      if (!c.tieWordEmbeddings && (options.lmHead ?? true)) this.lmHead_ = this.registerModule('lm_head', mk(c.hiddenSize, c.vocabSize, false));
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** The model's parameter dtype (embed_tokens'). */
  get dtype(): DType {
    return this.embedTokens.weight.dtype;
  }

  /** The model's device (embed_tokens'). */
  get device(): string {
    return this.embedTokens.weight.device;
  }

  /** The RoPE options of ops.rope for this config. */
  get ropeOptions(): RopeOptions {
    return { theta: this.config.ropeTheta, scaling: this.config.ropeScaling };
  }

  /**
   * Loads a Hugging Face checkpoint folder: config.json plus model.safetensors or its shards
   * (model.safetensors.index.json). Weight names may carry the `model.` prefix
   * (LlamaForCausalLM) or not (LlamaModel, LLM2Vec's saved encoders). Checkpoint names the
   * model does not have (rotary inv_freq buffers, lm_head.weight of a tied model, ...) are
   * ignored and listed in `unexpectedWeights`; a missing weight is CORRUPT_FILE naming it, a
   * weight of the wrong shape CORRUPT_FILE naming it and both shapes. Weights stored as
   * float32 / bfloat16 / float16 are converted to options.dtype (default float32). Loads
   * layer by layer (peak memory: the model plus one layer). Returns the model in eval mode
   * (as transformers does); call train() before training with dropout.
   */
  static async fromPretrained(dir: string, options: LlamaFromPretrainedOptions = {}): Promise<LlamaEncoder> {
    const what = `LlamaEncoder.fromPretrained(${JSON.stringify(dir)})`;
    if (typeof dir !== 'string' || dir.length === 0) fail('INVALID_ARGUMENT', 'LlamaEncoder.fromPretrained(dir): dir must be a non-empty string');
    if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', `${what}: options must be an object`);
    const dtype = checkDType(options.dtype ?? 'float32', `${what}: options.dtype`);
    if (!isFloat(dtype)) fail('INVALID_ARGUMENT', `${what}: options.dtype must be a float dtype (got ${dtype})`);
    const device = options.device ?? 'cpu';
    const cfgPath = path.join(dir, 'config.json');
    const config = parseLlamaConfig(readJson(cfgPath, what), cfgPath);
    // The checkpoint's names, from the headers only.
    const fileNames: string[] = [];
    await loadSafetensorsDir(dir, { names: (n) => { fileNames.push(n); return false; } });
    const toFile = new Map<string, string>(); // model name -> checkpoint name
    const unexpected: string[] = [];
    for (const n of fileNames) {
      const m = n.startsWith('model.') ? n.slice(6) : n;
      if (toFile.has(m)) fail('CORRUPT_FILE', `${what}: the checkpoint holds both ${toFile.get(m)} and ${n}`);
      toFile.set(m, n);
    }
    const lmHead = config.tieWordEmbeddings ? false : options.lmHead ?? toFile.has('lm_head.weight');
    const model = new LlamaEncoder(config, { dtype, device, lmHead, init: 'fast' });
    try {
      const own = new Map(model.namedParameters());
      const missing = [...own.keys()].filter((k) => !toFile.has(k));
      if (missing.length) fail('CORRUPT_FILE', `${what}: the checkpoint lacks ${missing.length} weight(s) the config implies: ${listSome(missing)}`);
      for (const [m, n] of toFile) if (!own.has(m)) unexpected.push(n);
      // Groups: everything outside the layers, then one group per layer.
      const groups = new Map<string, string[]>();
      for (const m of own.keys()) {
        const g = /^layers\.(\d+)\./.exec(m)?.[1] ?? 'top';
        if (!groups.has(g)) groups.set(g, []);
        groups.get(g)!.push(m);
      }
      for (const names of groups.values()) {
        const loaded = await loadSafetensorsDir(dir, { names: names.map((m) => toFile.get(m)!), dtype, device });
        try {
          for (const m of names) {
            const n = toFile.get(m)!;
            const src = loaded[n], dst = own.get(m)!;
            if (!isFloat(src.dtype)) fail('CORRUPT_FILE', `${what}: weight ${n} is ${src.dtype}; a float dtype is required`);
            if (!sameShape(src.shape, dst.shape))
              fail('CORRUPT_FILE', `${what}: weight ${n} is ${shapeStr(src.shape)} in the checkpoint; config.json implies ${shapeStr(dst.shape)}`);
            copyInto(dst, src);
          }
        } finally {
          for (const t of Object.values(loaded)) t.dispose();
        }
      }
    } catch (e) {
      model.dispose();
      throw e;
    }
    model.unexpectedWeights = unexpected;
    return model.eval();
  }

  // ------------------------------------------------------------------ forward

  private checkBatch(inputIds: Tensor, attentionMask: Tensor, what: string): { B: number; S: number } {
    if (!(inputIds instanceof Tensor)) fail('INVALID_ARGUMENT', `${what}: inputIds must be a Tensor`);
    if (!(attentionMask instanceof Tensor)) fail('INVALID_ARGUMENT', `${what}: attentionMask must be a Tensor`);
    inputIds.nat(`${what}(inputIds)`);
    attentionMask.nat(`${what}(attentionMask)`);
    if (inputIds.dtype !== 'int32') fail('DTYPE_MISMATCH', `${what}: inputIds ${inputIds.dtype}${shapeStr(inputIds.shape)} must be int32`);
    if (attentionMask.dtype !== 'int32') fail('DTYPE_MISMATCH', `${what}: attentionMask ${attentionMask.dtype}${shapeStr(attentionMask.shape)} must be int32`);
    if (inputIds.ndim !== 2 || inputIds.shape[0] < 1 || inputIds.shape[1] < 1)
      fail('SHAPE_MISMATCH', `${what}: inputIds ${shapeStr(inputIds.shape)} must be [B,S] with B, S >= 1`);
    if (!sameShape(attentionMask.shape, inputIds.shape))
      fail('SHAPE_MISMATCH', `${what}: attentionMask ${shapeStr(attentionMask.shape)} must have inputIds' shape ${shapeStr(inputIds.shape)}`);
    return { B: inputIds.shape[0], S: inputIds.shape[1] };
  }

  /** t on the model's device (the tensor itself when it is there already). */
  private onDevice(t: Tensor): Tensor {
    return t.device === this.device ? t : t.to(this.device);
  }

  /**
   * The last hidden state after the final norm, [B,S,hidden] in the model's dtype.
   *
   * inputIds and attentionMask are int32 [B,S] (1 = token, 0 = padding; left or right
   * padding). Attention is LLM2Vec's bidirectional one (no causal mask, padded keys masked;
   * padded query rows still attend to the tokens, so they stay finite), or the original
   * causal one with `causal: true` (a padded row with no visible key gets a zero attention
   * output, still finite). Grouped-query attention runs natively.
   *
   * Positions: by default cumsum(attentionMask) − 1 per row, clamped at 0. With right
   * padding (or none) that is 0..L−1 over the tokens, what Hugging Face uses by default,
   * so the token rows equal HF's; with left padding the tokens also get 0..L−1 (padding
   * invariant), i.e. HF's output when called with those position_ids. (LLM2Vec calls HF
   * without position_ids, i.e. arange(S) with left padding: RoPE depends on position
   * differences only, so token rows agree up to rounding.) Pass options.positionIds
   * (int32 [B,S]) to override. options.checkpoint recomputes each layer in the backward.
   */
  forward(inputIds: Tensor, attentionMask: Tensor, options: LlamaForwardOptions = {}): Tensor {
    const what = 'LlamaEncoder.forward';
    const { B, S } = this.checkBatch(inputIds, attentionMask, what);
    if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', `${what}: options must be an object`);
    const maskHost = attentionMask.toArray() as Int32Array;
    let positions: Tensor;
    if (options.positionIds != null) {
      const p = options.positionIds;
      if (!(p instanceof Tensor) || p.dtype !== 'int32' || !sameShape(p.shape, [B, S]))
        fail('INVALID_ARGUMENT', `${what}: options.positionIds must be an int32 Tensor [${B},${S}]${p instanceof Tensor ? ` (got ${p.dtype}${shapeStr(p.shape)})` : ''}`);
      positions = this.onDevice(p);
    } else {
      const pos = new Int32Array(B * S);
      for (let b = 0; b < B; b++) {
        let c = 0;
        for (let s = 0; s < S; s++) {
          if (maskHost[b * S + s] !== 0) c++;
          pos[b * S + s] = Math.max(c - 1, 0);
        }
      }
      positions = tensor(pos, [B, S], { device: this.device });
    }
    const ids = this.onDevice(inputIds);
    const mask = this.onDevice(attentionMask);
    const ctx: ForwardCtx = { B, S, mask, positions, causal: !!options.causal };
    try {
      let h = F.embedding(this.embedTokens.weight, ids);
      for (const layer of this.layers) {
        const next = options.checkpoint
          ? checkpointFn((x: Tensor, pos: Tensor, msk: Tensor) => this.layerForward(layer, x, { ...ctx, positions: pos, mask: msk }), h, positions, mask)
          : this.layerForward(layer, h, ctx);
        h.dispose();
        h = next;
      }
      const out = F.rmsNorm(h, this.norm.weight, this.config.rmsNormEps);
      h.dispose();
      return out;
    } finally {
      if (positions !== options.positionIds) positions.dispose();
      if (ids !== inputIds) ids.dispose();
      if (mask !== attentionMask) mask.dispose();
    }
  }

  private layerForward(layer: LlamaDecoderLayer, h: Tensor, ctx: ForwardCtx): Tensor {
    const c = this.config;
    const { B, S } = ctx;
    const Hq = c.numAttentionHeads, Hkv = c.numKeyValueHeads, D = c.headDim;
    const rope = this.ropeOptions;
    const at = layer.selfAttn, mlp = layer.mlp;
    return tidy(() => {
      const x = F.rmsNorm(h, layer.inputLayernorm.weight, c.rmsNormEps);
      const q = F.rope(F.reshape(at.proj('q_proj').forward(x), [B, S, Hq, D]), ctx.positions, rope);
      const k = F.rope(F.reshape(at.proj('k_proj').forward(x), [B, S, Hkv, D]), ctx.positions, rope);
      const v = F.reshape(at.proj('v_proj').forward(x), [B, S, Hkv, D]);
      const a = F.attention(q, k, v, { causal: ctx.causal, keyPaddingMask: ctx.mask });
      const h1 = F.add(h, at.proj('o_proj').forward(F.reshape(a, [B, S, Hq * D])));
      const x2 = F.rmsNorm(h1, layer.postAttentionLayernorm.weight, c.rmsNormEps);
      const m = F.swiglu(mlp.proj('gate_proj').forward(x2), mlp.proj('up_proj').forward(x2));
      return F.add(h1, mlp.proj('down_proj').forward(m));
    });
  }

  // ------------------------------------------------------------------ pooling

  /**
   * LLM2Vec pooling of hidden [B,S,H] over the tokens where mask (int32 [B,S]) is nonzero:
   * the attention mask, or an embed mask that leaves an instruction prefix out (attended,
   * not pooled). Modes: 'mean'; 'weighted_mean' (LLM2Vec's: the k-th pooled token of a row
   * weighs k, normalised to sum 1, so later tokens weigh more); 'eos' (the last pooled
   * token: LLM2Vec's last_token / eos_token with left padding); 'bos' (the first pooled
   * token). A row with nothing pooled gives zeros. Differentiable; returns [B,H].
   */
  pool(hidden: Tensor, mask: Tensor, mode: LlamaPooling = 'mean'): Tensor {
    const what = 'LlamaEncoder.pool';
    if (!(hidden instanceof Tensor) || hidden.ndim !== 3)
      fail('SHAPE_MISMATCH', `${what}: hidden must be a Tensor [B,S,H]${hidden instanceof Tensor ? ` (got ${shapeStr(hidden.shape)})` : ''}`);
    if (!(mask instanceof Tensor) || mask.dtype !== 'int32' || !sameShape(mask.shape, hidden.shape.slice(0, 2)))
      fail('SHAPE_MISMATCH', `${what}: mask must be an int32 Tensor [${hidden.shape.slice(0, 2)}]${mask instanceof Tensor ? ` (got ${mask.dtype}${shapeStr(mask.shape)})` : ''}`);
    const [B, S] = hidden.shape;
    const m = mask.device === hidden.device ? mask : mask.to(hidden.device);
    try {
      if (mode === 'mean') return F.maskedMeanPool(hidden, m);
      if (mode !== 'weighted_mean' && mode !== 'eos' && mode !== 'bos')
        fail('INVALID_ARGUMENT', `${what}: mode must be 'mean', 'weighted_mean', 'eos' or 'bos' (got ${JSON.stringify(mode)})`);
      const mh = mask.toArray();
      const w = new Float32Array(B * S);
      for (let b = 0; b < B; b++) {
        let k = 0, first = -1, last = -1;
        for (let s = 0; s < S; s++) {
          if (mh[b * S + s] === 0) continue;
          k++;
          if (first < 0) first = s;
          last = s;
          if (mode === 'weighted_mean') w[b * S + s] = k;
        }
        if (mode === 'eos' && last >= 0) w[b * S + last] = 1;
        if (mode === 'bos' && first >= 0) w[b * S + first] = 1;
      }
      const wt = tensor(w, [B, S], { device: hidden.device });
      try {
        return F.maskedMeanPool(hidden, wt);
      } finally {
        wt.dispose();
      }
    } finally {
      if (m !== mask) m.dispose();
    }
  }

  /**
   * Embeds texts (noGrad, eval mode; the training mode is restored after): strings via
   * tokenizer.encodeBatch (right padding, pooled over the attention mask), or LLM2Vec's
   * {instruction, text} pairs via tokenizer.encodeWithInstruction (left padding, the
   * instruction attended but not pooled). Batches of options.batchSize (default 32),
   * truncated to options.maxLength (default 512); pooling options.pooling (default
   * 'mean'); options.appendEos passes to the tokenizer (LLM2Vec appends EOS for eos
   * pooling). Returns float32 [N, hidden] on the model's device, rows in input order.
   */
  encode(tokenizer: Tokenizer, inputs: string[] | InstructionPair[], options: LlamaEncodeOptions = {}): Tensor {
    const what = 'LlamaEncoder.encode';
    if (tokenizer === null || typeof tokenizer !== 'object' || typeof tokenizer.encodeBatch !== 'function')
      fail('INVALID_ARGUMENT', `${what}: tokenizer must be a Tokenizer`);
    if (!Array.isArray(inputs) || inputs.length === 0) fail('INVALID_ARGUMENT', `${what}: inputs must be a non-empty array of strings or {instruction, text}`);
    const pairs = typeof inputs[0] !== 'string';
    if (inputs.some((x) => (typeof x === 'string') === pairs))
      fail('INVALID_ARGUMENT', `${what}: inputs must be all strings or all {instruction, text} pairs`);
    const bs = options.batchSize ?? 32;
    if (!Number.isSafeInteger(bs) || bs < 1) fail('INVALID_ARGUMENT', `${what}: options.batchSize must be a positive integer (got ${String(bs)})`);
    const maxLength = options.maxLength ?? 512;
    const pooling = options.pooling ?? 'mean';
    const wasTraining = this.training;
    this.eval();
    const parts: Tensor[] = [];
    try {
      for (let i = 0; i < inputs.length; i += bs) {
        const chunk = inputs.slice(i, i + bs);
        parts.push(noGrad(() => tidy(() => {
          const o = { maxLength, device: this.device, appendEos: options.appendEos };
          const batch = pairs ? tokenizer.encodeWithInstruction(chunk as InstructionPair[], o) : tokenizer.encodeBatch(chunk as string[], o);
          const poolMask = 'embedMask' in batch ? (batch as { embedMask: Tensor }).embedMask : batch.attentionMask;
          const h = this.forward(batch.inputIds, batch.attentionMask, { causal: options.causal });
          const p = this.pool(h, poolMask, pooling);
          return p.dtype === 'float32' ? p : p.cast('float32');
        })));
      }
      if (parts.length === 1) return parts.pop()!;
      return ops.concat(parts, 0);
    } finally {
      for (const t of parts) t.dispose();
      this.train(wasTraining);
    }
  }

  // ------------------------------------------------------------------ lm head, MNTP

  /** Whether the model has an lm head (tied, or its own lm_head.weight). */
  get hasLmHead(): boolean {
    return this.config.tieWordEmbeddings || this.lmHead_ !== null;
  }

  /** The lm head's weight [vocab, hidden]: embed_tokens.weight when tied, else lm_head.weight. */
  get lmHeadWeight(): Tensor {
    if (this.config.tieWordEmbeddings) return this.embedTokens.weight;
    if (!this.lmHead_)
      fail('INVALID_ARGUMENT', 'LlamaEncoder: this model has no lm_head.weight (the checkpoint had none; load it with { lmHead: true } from a checkpoint that has one)');
    return this.lmHead_.weight;
  }

  /** Logits hidden·lm_headᵀ [..., vocab] (materialised: for small checks; train with mntpLoss). */
  logits(hidden: Tensor): Tensor {
    return F.linear(hidden, this.lmHeadWeight);
  }

  /**
   * Masked next-token prediction loss (LLM2Vec's MNTP): the mean cross-entropy of the lm
   * head's logits against labels (int32 [B,S], the original token at masked positions,
   * ignoreIndex (-100) elsewhere). With shift (default, as LLM2Vec trains) the
   * representation at t predicts the label at t+1. The [tokens, vocab] logits are never
   * materialised (F.crossEntropy, chunked). A float32 scalar; 0 when no label counts.
   */
  mntpLoss(hidden: Tensor, labels: Tensor, options: MntpLossOptions = {}): Tensor {
    const what = 'LlamaEncoder.mntpLoss';
    if (!(hidden instanceof Tensor) || hidden.ndim !== 3) fail('SHAPE_MISMATCH', `${what}: hidden must be a Tensor [B,S,H]`);
    if (!(labels instanceof Tensor) || labels.dtype !== 'int32' || !sameShape(labels.shape, hidden.shape.slice(0, 2)))
      fail('SHAPE_MISMATCH', `${what}: labels must be an int32 Tensor [${hidden.shape.slice(0, 2)}]${labels instanceof Tensor ? ` (got ${labels.dtype}${shapeStr(labels.shape)})` : ''}`);
    const [B, S, H] = hidden.shape;
    const shift = options.shift ?? true;
    const ignoreIndex = options.ignoreIndex ?? -100;
    const xo = { ignoreIndex, chunkSize: options.chunkSize };
    const W = this.lmHeadWeight;
    if (!shift) {
      const t = labels.device === hidden.device ? labels : labels.to(hidden.device);
      try {
        return F.crossEntropy(F.reshape(hidden, [B * S, H]), W, t.reshape([B * S]), xo);
      } finally {
        if (t !== labels) t.dispose();
      }
    }
    if (S < 2) {
      const l = new Int32Array(B).fill(ignoreIndex);
      return tidy(() => F.crossEntropy(F.reshape(hidden, [B * S, H]), W, tensor(l, [B], { device: hidden.device }), xo));
    }
    const lh = labels.toArray();
    const sh = new Int32Array(B * (S - 1));
    for (let b = 0; b < B; b++) for (let s = 1; s < S; s++) sh[b * (S - 1) + s - 1] = lh[b * S + s];
    return tidy(() => {
      const hs = F.reshape(F.slice(hidden, 1, 0, S - 1), [B * (S - 1), H]);
      return F.crossEntropy(hs, W, tensor(sh, [B * (S - 1)], { device: hidden.device }), xo);
    });
  }

  // ------------------------------------------------------------------ LoRA

  /** The LoRA configuration, or null without adapters. */
  get loraConfig(): LlamaLoraConfig | null {
    return this.lora_ ? { ...this.lora_, targets: [...this.lora_.targets], layers: this.lora_.layers ? [...this.lora_.layers] : null } : null;
  }

  /** The LoRA layers by module path (`layers.0.self_attn.q_proj`). */
  loraModules(): [string, LoRALinear][] {
    return this.namedModules().filter((e): e is [string, LoRALinear] => e[1] instanceof LoRALinear);
  }

  /**
   * Adds LoRA adapters (nn.LoRALinear, PEFT's layout and init: lora_A Kaiming-uniform, lora_B
   * zeros, so the output is unchanged) to the target projections of every layer (or of
   * options.layers), and freezes every other parameter: only lora_A / lora_B require
   * grad. Returns this.
   */
  withLora(options: LlamaLoraOptions = {}): this {
    const what = 'LlamaEncoder.withLora';
    if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', `${what}: options must be an object`);
    if (this.lora_) fail('INVALID_ARGUMENT', `${what}: the model already has LoRA adapters (mergeAndUnloadLora() first to stack another)`);
    const targets = options.targets ?? [...ALL_TARGETS];
    if (!Array.isArray(targets) || targets.length === 0 || targets.some((t) => !ALL_TARGETS.includes(t)))
      fail('INVALID_ARGUMENT', `${what}: options.targets must be a non-empty list of ${ALL_TARGETS.join(', ')} (got ${JSON.stringify(targets)})`);
    const L = this.layers.length;
    const layers = options.layers ?? null;
    if (layers !== null && (!Array.isArray(layers) || layers.some((l) => !Number.isSafeInteger(l) || l < 0 || l >= L)))
      fail('INVALID_ARGUMENT', `${what}: options.layers must be layer indices in [0, ${L}) (got ${JSON.stringify(layers)})`);
    const r = options.r ?? 8, alpha = options.alpha ?? 8, dropout = options.dropout ?? 0;
    const base = seedOrNext(options.seed, `${what}(options.seed)`);
    this.requiresGrad_(false);
    const made: [ProjGroup, string, Linear][] = [];
    try {
      let k = 0;
      this.layers.forEach((layer, l) => {
        if (layers && !layers.includes(l)) return;
        for (const [grp, names] of [[layer.selfAttn, ATTN_PROJ], [layer.mlp, MLP_PROJ]] as const)
          for (const n of names) {
            if (!targets.includes(n)) continue;
            const lin = grp.proj(n) as Linear;
            const lr = new LoRALinear(lin, { r, alpha, dropout, useRslora: options.useRslora, dtype: options.dtype, seed: deriveSeed(base, k++) });
            lr.train(this.training);
            grp.setProj(n, lr);
            made.push([grp, n, lin]);
          }
      });
    } catch (e) {
      for (const [grp, n, lin] of made) {
        const lr = grp.proj(n);
        if (lr instanceof LoRALinear) { lr.loraA.dispose(); lr.loraB.dispose(); }
        grp.setProj(n, lin);
      }
      this.requiresGrad_(true);
      throw e;
    }
    this.lora_ = { r, alpha, dropout, targets: [...targets], layers: layers ? [...layers] : null, useRslora: !!options.useRslora };
    return this;
  }

  private needLora(what: string): LoRALinear[] {
    if (!this.lora_) fail('INVALID_ARGUMENT', `${what}: the model has no LoRA adapters (withLora() or loadLora() first)`);
    return this.loraModules().map(([, m]) => m);
  }

  /** Folds every adapter into its base weight (forward then runs the plain layers); reversible with unmergeLora(). */
  mergeLora(): void {
    for (const m of this.needLora('LlamaEncoder.mergeLora')) m.merge();
  }

  /** Takes the adapters back out of the base weights (up to rounding in the weights' dtype). */
  unmergeLora(): void {
    for (const m of this.needLora('LlamaEncoder.unmergeLora')) m.unmerge();
  }

  /**
   * PEFT's merge_and_unload(): folds the adapters into the base weights, removes them (the
   * projections become plain Linear layers with HF names again) and makes every parameter
   * trainable again. LLM2Vec stacks adapters so: MNTP adapter merged, then a new one.
   */
  mergeAndUnloadLora(): void {
    for (const [, layer] of this.layers.entries())
      for (const grp of [layer.selfAttn, layer.mlp])
        for (const n of grp.projNames()) {
          const m = grp.proj(n);
          if (!(m instanceof LoRALinear)) continue;
          m.merge();
          m.loraA.dispose();
          m.loraB.dispose();
          grp.setProj(n, m.base);
        }
    this.lora_ = null;
    this.requiresGrad_(true);
  }

  /** The adapters' tensors by parameter name (`layers.0.self_attn.q_proj.lora_A`); the model's own tensors. */
  loraStateDict(): Record<string, Tensor> {
    this.needLora('LlamaEncoder.loraStateDict');
    return Object.fromEntries(this.namedParameters().filter(([n]) => /\.lora_[AB]$/.test(n)));
  }

  /**
   * Writes a PEFT adapter folder: adapter_config.json (peft_type LORA, r, lora_alpha,
   * lora_dropout, target_modules, use_rslora, bias 'none', ...) and
   * adapter_model.safetensors with PEFT's names for a LlamaModel base
   * (`base_model.model.layers.0.self_attn.q_proj.lora_A.weight`), as LLM2Vec saves them.
   */
  async saveLora(dir: string, options: { baseModelNameOrPath?: string | null } = {}): Promise<void> {
    const what = `LlamaEncoder.saveLora(${JSON.stringify(dir)})`;
    if (typeof dir !== 'string' || dir.length === 0) fail('INVALID_ARGUMENT', 'LlamaEncoder.saveLora(dir): dir must be a non-empty string');
    this.needLora(what);
    const cfg = this.lora_!;
    const tensors: Record<string, Tensor> = {};
    for (const [n, t] of Object.entries(this.loraStateDict())) tensors[peftName(n.replace(/\.lora_[AB]$/, ''), n.endsWith('A') ? 'A' : 'B')] = t;
    await savePeftAdapter(dir, tensors, {
      r: cfg.r, loraAlpha: cfg.alpha, loraDropout: cfg.dropout, targetModules: [...cfg.targets], useRslora: cfg.useRslora,
      baseModelNameOrPath: options.baseModelNameOrPath ?? null,
    });
    if (cfg.layers) {
      // savePeftAdapter writes layers_to_transform: null; record the layer subset.
      const cfgPath = path.join(dir, 'adapter_config.json');
      try {
        const j = JSON.parse(fs.readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
        j.layers_to_transform = [...cfg.layers];
        fs.writeFileSync(cfgPath, JSON.stringify(j, null, 2) + '\n');
      } catch (e) {
        fail('IO_ERROR', `${what}: cannot update ${cfgPath} (${(e as Error).message})`);
      }
    }
  }

  /**
   * Loads a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors):
   * injects adapters per its config when the model has none (and checks r / alpha /
   * targets / layers match otherwise), then loads every lora_A / lora_B. Names may be
   * `base_model.model.layers...` (LlamaModel base) or `base_model.model.model.layers...`
   * (LlamaForCausalLM base). A missing, unexpected or wrongly shaped tensor, or a config
   * this model cannot honour (DoRA, fan_in_fan_out, bias training, modules_to_save,
   * rank/alpha patterns, other targets), is CORRUPT_FILE naming it. Returns this.
   */
  async loadLora(dir: string): Promise<this> {
    const what = `LlamaEncoder.loadLora(${JSON.stringify(dir)})`;
    if (typeof dir !== 'string' || dir.length === 0) fail('INVALID_ARGUMENT', 'LlamaEncoder.loadLora(dir): dir must be a non-empty string');
    const cfgPath = path.join(dir, 'adapter_config.json');
    // Reads and checks the folder (config fields, A/B pairs and ranks): io/peft.
    const adapter = await loadPeftAdapter(dir);
    const loaded = adapter.tensors;
    const injected = !this.lora_;
    try {
      const want = parseAdapterConfig(adapter.rawConfig, cfgPath, this.layers.length);
      if (this.lora_) {
        const have = this.lora_;
        const same = have.r === want.r && have.alpha === want.alpha && have.useRslora === want.useRslora
          && [...have.targets].sort().join() === [...want.targets].sort().join()
          && JSON.stringify(have.layers) === JSON.stringify(want.layers);
        if (!same)
          fail('INVALID_ARGUMENT', `${what}: the model's adapters (r ${have.r}, alpha ${have.alpha}, targets ${have.targets.join(',')}) differ from ${cfgPath} (r ${want.r}, alpha ${want.alpha}, targets ${want.targets.join(',')}); mergeAndUnloadLora() first`);
        if (this.loraModules().some(([, m]) => m.merged)) fail('INVALID_ARGUMENT', `${what}: the adapters are merged; unmergeLora() first`);
      }
      const file = path.join(dir, 'adapter_model.safetensors');
      if (injected) this.withLora({ r: want.r, alpha: want.alpha, dropout: want.dropout, targets: want.targets, layers: want.layers, useRslora: want.useRslora });
      const own = new Map(Object.entries(this.loraStateDict()));
      const got = new Map<string, Tensor>();
      const unexpected: string[] = [];
      for (const [n, t] of Object.entries(loaded)) {
        const p = parsePeftName(n);
        const mod = p ? (p.modulePath.startsWith('model.') ? p.modulePath.slice(6) : p.modulePath) : null;
        const key = p ? `${mod}.lora_${p.which}` : n;
        if (!own.has(key) || got.has(key)) unexpected.push(n);
        else got.set(key, t);
      }
      if (unexpected.length) fail('CORRUPT_FILE', `${what}: ${file} holds tensors this model's adapters do not have: ${listSome(unexpected)}`);
      const missing = [...own.keys()].filter((k) => !got.has(k));
      if (missing.length) fail('CORRUPT_FILE', `${what}: ${file} lacks ${missing.length} adapter tensor(s): ${listSome(missing.map((k) => `base_model.model.${k}.weight`))}`);
      for (const [k, dst] of own) {
        const src = got.get(k)!;
        if (!isFloat(src.dtype) || !sameShape(src.shape, dst.shape))
          fail('CORRUPT_FILE', `${what}: adapter tensor base_model.model.${k}.weight is ${src.dtype}${shapeStr(src.shape)} in ${file}; the model needs ${shapeStr(dst.shape)}`);
      }
      for (const [k, dst] of own) copyInto(dst, got.get(k)!);
    } catch (e) {
      if (injected && this.lora_) this.dropLora();
      throw e;
    } finally {
      for (const t of Object.values(loaded)) t.dispose();
    }
    return this;
  }

  /** Removes the adapters without merging (the base weights untouched). */
  private dropLora(): void {
    for (const layer of this.layers)
      for (const grp of [layer.selfAttn, layer.mlp])
        for (const n of grp.projNames()) {
          const m = grp.proj(n);
          if (!(m instanceof LoRALinear)) continue;
          m.unmerge();
          m.loraA.dispose();
          m.loraB.dispose();
          grp.setProj(n, m.base);
        }
    this.lora_ = null;
    this.requiresGrad_(true);
  }
}

/** adapter_config.json -> the LoRA options it stands for (CORRUPT_FILE naming the field). */
function parseAdapterConfig(json: unknown, file: string, numLayers: number): LlamaLoraConfig {
  const bad = (field: string, msg: string): never => fail('CORRUPT_FILE', `PEFT adapter config ${file}: field "${field}" ${msg}`);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail('CORRUPT_FILE', `PEFT adapter config ${file}: not a JSON object`);
  const o = json as Record<string, unknown>;
  const got = (k: string) => (o[k] === undefined ? 'missing' : JSON.stringify(o[k]));
  if (o.peft_type !== undefined && o.peft_type !== 'LORA') bad('peft_type', `must be "LORA" (got ${got('peft_type')})`);
  const r = o.r;
  if (typeof r !== 'number' || !Number.isSafeInteger(r) || r < 1) bad('r', `must be a positive integer (got ${got('r')})`);
  const alpha = o.lora_alpha ?? 8;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) bad('lora_alpha', `must be a number (got ${got('lora_alpha')})`);
  const dropout = o.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) bad('lora_dropout', `must be in [0, 1) (got ${got('lora_dropout')})`);
  let targets: string[] = [];
  const tm = o.target_modules;
  if (typeof tm === 'string') {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${tm})$`);
    } catch {
      bad('target_modules', `is not a valid regular expression (${tm})`);
    }
    // PEFT full-matches the regex against module paths; tried on layer 0's paths.
    const grp = (t: string) => ((ATTN_PROJ as readonly string[]).includes(t) ? 'self_attn' : 'mlp');
    targets = ALL_TARGETS.filter((t) => re.test(t) || re.test(`layers.0.${grp(t)}.${t}`) || re.test(`model.layers.0.${grp(t)}.${t}`));
    if (targets.length === 0) bad('target_modules', `matches none of ${ALL_TARGETS.join(', ')} (got ${got('target_modules')})`);
  } else if (Array.isArray(tm) && tm.length > 0 && tm.every((t) => typeof t === 'string')) {
    targets = [...new Set(tm as string[])];
    const other = targets.filter((t) => !ALL_TARGETS.includes(t as LlamaLoraTarget));
    if (other.length) bad('target_modules', `names modules this model cannot adapt: ${other.join(', ')} (supported: ${ALL_TARGETS.join(', ')})`);
  } else bad('target_modules', `must be a non-empty list of module names (got ${got('target_modules')})`);
  const flag = (k: string, ok: unknown[]) => {
    if (o[k] !== undefined && !ok.includes(o[k])) bad(k, `is ${got(k)}: not supported (supported: ${ok.map((v) => JSON.stringify(v)).join(' or ')})`);
  };
  flag('use_dora', [false, null]);
  flag('fan_in_fan_out', [false, null]);
  flag('bias', ['none', null]);
  const useRslora = o.use_rslora ?? false;
  if (typeof useRslora !== 'boolean') bad('use_rslora', `must be true or false (got ${got('use_rslora')})`);
  const mts = o.modules_to_save;
  if (mts !== undefined && mts !== null && !(Array.isArray(mts) && mts.length === 0)) bad('modules_to_save', `is ${got('modules_to_save')}: not supported`);
  for (const k of ['rank_pattern', 'alpha_pattern']) {
    const v = o[k];
    if (v !== undefined && v !== null && !(typeof v === 'object' && Object.keys(v as object).length === 0)) bad(k, `is ${got(k)}: per-module ranks are not supported`);
  }
  let layers: number[] | null = null;
  const lt = o.layers_to_transform;
  if (lt !== undefined && lt !== null) {
    const arr = typeof lt === 'number' ? [lt] : lt;
    if (!Array.isArray(arr) || arr.some((l) => !Number.isSafeInteger(l) || l < 0 || l >= numLayers))
      bad('layers_to_transform', `must be layer indices in [0, ${numLayers}) (got ${got('layers_to_transform')})`);
    layers = [...(arr as number[])];
  }
  return { r: r as number, alpha: alpha as number, dropout: dropout as number, targets: targets as LlamaLoraTarget[], layers, useRslora: useRslora as boolean };
}
