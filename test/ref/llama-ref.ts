// llama-ref.ts: a plain float64 reference of Hugging Face's LlamaModel (and the Mistral /
// Qwen2 variants, which differ only in config fields and q/k/v biases), LLM2Vec pooling, and
// a writer of HF-format model directories. Test-only code; nested loops, tiny sizes.
//
// API
//   interface LlamaRefConfig            HF config.json fields (snake_case, as HF writes them)
//   randomLlamaConfig(opts?)            tiny config: hidden 48, intermediate 80, 2 layers,
//                                       4 heads, 2 kv heads, head_dim 16 (q_proj out 64 != 48),
//                                       vocab 97, rope_theta 10000, rope_scaling llama3
//                                       (factor 8, low 1, high 4, original 64: with head_dim
//                                       16 and theta 1e4 that is one high, two medium and
//                                       five low frequencies) unless opts.ropeScaling === null;
//                                       model_type 'llama' | 'mistral' | 'qwen2'; any field
//                                       can be overridden.
//   randomLlamaWeights(config, seed)    RefWeights with HF names WITHOUT the 'model.' prefix:
//                                       embed_tokens.weight [V, H];
//                                       layers.N.self_attn.{q,k,v,o}_proj.weight (torch Linear
//                                       layout [out, in]); .bias on q/k/v/o when
//                                       attention_bias (llama), on q/k/v only for qwen2;
//                                       layers.N.mlp.{gate,up,down}_proj.weight;
//                                       layers.N.{input,post_attention}_layernorm.weight;
//                                       norm.weight; lm_head.weight unless tie_word_embeddings.
//   llamaInvFreq(config)                inverse RoPE frequencies [head_dim/2] (default or
//                                       llama3-scaled, as HF's rope_init_fn)
//   applyRope(x, off, headDim, pos, invFreq)   rotate one head vector in place (rotate_half)
//   arangePositionIds(B, S)             0..S-1 per row (HF LlamaModel.forward's default)
//   positionIdsFromMask(mask, padValue=1)  cumsum(mask) − 1, pads set to padValue (as HF's
//                                       generate() prepare_inputs_for_generation)
//   llamaForwardRef(config, weights, inputIds, attentionMask, { bidirectional, positionIds? })
//       -> Float64Array [B, S, H]: last hidden state AFTER the final RMSNorm
//   llamaLogitsRef(config, weights, hidden, B, S) -> Float64Array [B, S, V]
//   poolRef(hidden, mask, B, S, H, mode)  LLM2Vec pooling -> Float64Array [B, H]
//   writeHfLlamaDir(dir, config, weights, { prefix, dtype, shards? }) -> RefWeights as stored
//
// Semantics (HF transformers LlamaModel, eager math):
//   h = embed_tokens[ids]; per layer: h += o_proj(attn(input_layernorm(h)));
//   h += down(silu(gate(x)) * up(x)) with x = post_attention_layernorm(h); out = norm(h).
//   RMSNorm: x * rsqrt(mean(x²) + rms_norm_eps) * w.
//   q/k/v per head, RoPE on q and k with the rotate_half convention on the HF weight
//   layout: for i < d/2, (x_i, x_{i+d/2}) -> (x_i cos θ_i − x_{i+d/2} sin θ_i,
//   x_{i+d/2} cos θ_i + x_i sin θ_i), θ_i = pos * inv_freq_i, inv_freq_i =
//   rope_theta^(−2i/d) (llama3 scaling per _compute_llama3_parameters when configured).
//   GQA: head h uses kv head floor(h / (heads / kv_heads)). Scores scaled by 1/sqrt(head_dim).
//   Masks: key j is visible to query i iff attentionMask[b][j] = 1 and (bidirectional or
//   j <= i). Bidirectional is LLM2Vec's: no causal part, key padding only, so padded query
//   rows still attend to the valid keys. A query row with NO visible key (causal + left
//   padding: pads before the first valid token) is implementation-defined in HF (eager adds
//   the dtype minimum everywhere, SDPA's _unmask_unattended unmasks the row); the reference
//   lets such a row attend to all keys (the _unmask_unattended choice): compare only rows
//   with attentionMask = 1 there. Pad rows never influence valid rows (they are masked as
//   keys), so valid rows are well defined in every mode.
//   Position ids: default arange(S) per row, which is what HF LlamaModel.forward uses when
//   position_ids is not passed, whatever the padding (LLM2Vec calls the model so, with left
//   padding). RoPE depends only on position differences between query and key, so for the
//   valid rows any per-row constant shift (e.g. positionIdsFromMask with left padding) gives
//   the same result up to rounding; only pad rows differ.
import * as fs from 'fs';
import * as path from 'path';
import { StDtype, writeSafetensorsFile, dtypeBytes } from './safetensors-writer';
import { RefWeights, makeRng, randTensor, roundWeights, toStTensors, getW, linear, rmsNormRow, silu, softmaxInPlace, numel } from './common';

/** llama3 rope_scaling block of a HF config. */
export interface Llama3RopeScaling {
  rope_type: 'llama3';
  factor: number;
  low_freq_factor: number;
  high_freq_factor: number;
  original_max_position_embeddings: number;
}

/** The HF config.json fields the reference reads (plus the usual extras HF writes). */
export interface LlamaRefConfigFields {
  model_type: 'llama' | 'mistral' | 'qwen2';
  architectures: string[];
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  hidden_act: 'silu';
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling: Llama3RopeScaling | null;
  max_position_embeddings: number;
  vocab_size: number;
  tie_word_embeddings: boolean;
  attention_bias: boolean;
  mlp_bias: boolean;
  bos_token_id: number;
  eos_token_id: number;
  pad_token_id: number | null;
  torch_dtype: string;
}

/** A HF Llama-family config: the known fields plus any extra ones (sliding_window, ...). */
export interface LlamaRefConfig extends LlamaRefConfigFields {
  [extra: string]: unknown;
}

/** Options of randomLlamaConfig: any config field, plus the model type and rope scaling. */
export interface RandomLlamaConfigOpts extends Partial<Omit<LlamaRefConfigFields, 'rope_scaling'>> {
  modelType?: 'llama' | 'mistral' | 'qwen2';
  /** null: no rope scaling; an object: those llama3 parameters; default llama3 (8, 1, 4, 64). */
  ropeScaling?: Llama3RopeScaling | null;
}

/** A tiny HF-like config (see the file header for the defaults). */
export function randomLlamaConfig(opts: RandomLlamaConfigOpts = {}): LlamaRefConfig {
  const { modelType, ropeScaling, ...rest } = opts;
  const mt = modelType ?? rest.model_type ?? 'llama';
  const arch = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' }[mt];
  const cfg: LlamaRefConfig = {
    model_type: mt,
    architectures: [arch],
    hidden_size: 48,
    intermediate_size: 80,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 16,
    hidden_act: 'silu',
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    rope_scaling:
      ropeScaling === undefined
        ? { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 }
        : ropeScaling,
    max_position_embeddings: 256,
    vocab_size: 97,
    tie_word_embeddings: false,
    attention_bias: mt === 'qwen2',
    mlp_bias: false,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 0,
    torch_dtype: 'float32',
    ...rest,
  };
  cfg.model_type = mt;
  if (mt === 'mistral') cfg.sliding_window = null;
  if (mt === 'qwen2') {
    cfg.use_sliding_window = false;
    cfg.sliding_window = null;
  }
  return cfg;
}

/** Which q/k/v/o projections carry a bias: llama per attention_bias (all four), qwen2 q/k/v. */
export function attnBiases(config: LlamaRefConfig): { qkv: boolean; o: boolean } {
  if (config.model_type === 'qwen2') return { qkv: true, o: false };
  return { qkv: config.attention_bias, o: config.attention_bias };
}

/**
 * Random weights with HF names (no 'model.' prefix), scaled so activations stay O(1):
 * embeddings U[-1,1); projections U[-1,1) * sqrt(3 / fan_in) (unit-variance outputs),
 * o_proj / down_proj half that; norm weights 1 + 0.2 U; biases 0.2 U.
 */
export function randomLlamaWeights(config: LlamaRefConfig, seed: number): RefWeights {
  const rng = makeRng(seed);
  const H = config.hidden_size, I = config.intermediate_size, V = config.vocab_size;
  const nh = config.num_attention_heads, nkv = config.num_key_value_heads, hd = config.head_dim;
  const w: RefWeights = {};
  const lin = (out: number, inn: number, gain = 1) => randTensor(rng, [out, inn], gain * Math.sqrt(3 / inn));
  w['embed_tokens.weight'] = randTensor(rng, [V, H], 1);
  const b = attnBiases(config);
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `layers.${l}.`;
    w[p + 'input_layernorm.weight'] = randTensor(rng, [H], 0.2, 1);
    w[p + 'self_attn.q_proj.weight'] = lin(nh * hd, H);
    w[p + 'self_attn.k_proj.weight'] = lin(nkv * hd, H);
    w[p + 'self_attn.v_proj.weight'] = lin(nkv * hd, H);
    w[p + 'self_attn.o_proj.weight'] = lin(H, nh * hd, 0.5);
    if (b.qkv) {
      w[p + 'self_attn.q_proj.bias'] = randTensor(rng, [nh * hd], 0.2);
      w[p + 'self_attn.k_proj.bias'] = randTensor(rng, [nkv * hd], 0.2);
      w[p + 'self_attn.v_proj.bias'] = randTensor(rng, [nkv * hd], 0.2);
    }
    if (b.o) w[p + 'self_attn.o_proj.bias'] = randTensor(rng, [H], 0.2);
    w[p + 'post_attention_layernorm.weight'] = randTensor(rng, [H], 0.2, 1);
    w[p + 'mlp.gate_proj.weight'] = lin(I, H);
    w[p + 'mlp.up_proj.weight'] = lin(I, H);
    w[p + 'mlp.down_proj.weight'] = lin(H, I, 0.5);
  }
  w['norm.weight'] = randTensor(rng, [H], 0.2, 1);
  if (!config.tie_word_embeddings) w['lm_head.weight'] = lin(V, H);
  return w;
}

/**
 * Inverse RoPE frequencies [head_dim / 2]: rope_theta^(−2i / head_dim), then, for
 * rope_type 'llama3', HF's _compute_llama3_parameters: wavelen = 2π / f; wavelen >
 * original / low_freq_factor -> f / factor; wavelen < original / high_freq_factor -> f;
 * in between (both bounds included) -> (1 − s) f / factor + s f with
 * s = (original / wavelen − low_freq_factor) / (high_freq_factor − low_freq_factor).
 */
export function llamaInvFreq(config: LlamaRefConfig): Float64Array {
  const d = config.head_dim;
  const inv = new Float64Array(d / 2);
  for (let i = 0; i < d / 2; i++) inv[i] = 1 / Math.pow(config.rope_theta, (2 * i) / d);
  const rs = config.rope_scaling;
  if (!rs) return inv;
  if (rs.rope_type !== 'llama3') throw new Error(`llama-ref: rope_type ${String(rs.rope_type)} not supported`);
  const lowWl = rs.original_max_position_embeddings / rs.low_freq_factor;
  const highWl = rs.original_max_position_embeddings / rs.high_freq_factor;
  for (let i = 0; i < inv.length; i++) {
    const f = inv[i];
    const wl = (2 * Math.PI) / f;
    if (wl < highWl) continue;
    if (wl > lowWl) {
      inv[i] = f / rs.factor;
      continue;
    }
    const s = (rs.original_max_position_embeddings / wl - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
    inv[i] = ((1 - s) * f) / rs.factor + s * f;
  }
  return inv;
}

/** RoPE (rotate_half convention) of x[off .. off+headDim) at position pos, in place. */
export function applyRope(x: Float64Array, off: number, headDim: number, pos: number, invFreq: Float64Array): void {
  const half = headDim / 2;
  for (let i = 0; i < half; i++) {
    const th = pos * invFreq[i];
    const c = Math.cos(th), s = Math.sin(th);
    const a = x[off + i], b = x[off + i + half];
    x[off + i] = a * c - b * s;
    x[off + i + half] = b * c + a * s;
  }
}

/** Position ids 0..S-1 for each of B rows (HF LlamaModel.forward's default). */
export function arangePositionIds(B: number, S: number): number[][] {
  return Array.from({ length: B }, () => Array.from({ length: S }, (_, s) => s));
}

/** cumsum(mask) − 1 per row, pad positions set to padValue (HF generate's convention: 1). */
export function positionIdsFromMask(mask: number[][], padValue = 1): number[][] {
  return mask.map((row) => {
    let c = 0;
    return row.map((m) => {
      c += m;
      return m ? c - 1 : padValue;
    });
  });
}

/** Options of llamaForwardRef. */
export interface LlamaForwardOpts {
  /** LLM2Vec bidirectional attention (key padding mask only) instead of causal. */
  bidirectional: boolean;
  /** [B][S] position ids; default arangePositionIds (see the file header). */
  positionIds?: number[][];
}

function checkBatch(inputIds: number[][], attentionMask: number[][]): { B: number; S: number } {
  const B = inputIds.length;
  const S = B ? inputIds[0].length : 0;
  if (attentionMask.length !== B) throw new Error('llama-ref: attentionMask rows != inputIds rows');
  for (let b = 0; b < B; b++)
    if (inputIds[b].length !== S || attentionMask[b].length !== S) throw new Error(`llama-ref: row ${b} length differs`);
  return { B, S };
}

/** Last hidden state after the final norm, [B, S, hidden] (semantics in the file header). */
export function llamaForwardRef(
  config: LlamaRefConfig, weights: RefWeights, inputIds: number[][], attentionMask: number[][], opts: LlamaForwardOpts,
): Float64Array {
  const { B, S } = checkBatch(inputIds, attentionMask);
  const H = config.hidden_size, I = config.intermediate_size, V = config.vocab_size;
  const nh = config.num_attention_heads, nkv = config.num_key_value_heads, hd = config.head_dim;
  if (nh % nkv !== 0) throw new Error('llama-ref: heads not a multiple of kv heads');
  const group = nh / nkv;
  const eps = config.rms_norm_eps;
  const pos = opts.positionIds ?? arangePositionIds(B, S);
  const invFreq = llamaInvFreq(config);
  const emb = getW(weights, 'embed_tokens.weight');
  const bias = attnBiases(config);
  const out = new Float64Array(B * S * H);
  const scale = 1 / Math.sqrt(hd);

  for (let b = 0; b < B; b++) {
    // hidden state of this row, [S, H]
    const h = new Float64Array(S * H);
    for (let s = 0; s < S; s++) {
      const id = inputIds[b][s];
      if (!(id >= 0 && id < V)) throw new Error(`llama-ref: token id ${id} out of range`);
      for (let j = 0; j < H; j++) h[s * H + j] = emb[id * H + j];
    }
    for (let l = 0; l < config.num_hidden_layers; l++) {
      const p = `layers.${l}.`;
      const wq = getW(weights, p + 'self_attn.q_proj.weight'), wk = getW(weights, p + 'self_attn.k_proj.weight');
      const wv = getW(weights, p + 'self_attn.v_proj.weight'), wo = getW(weights, p + 'self_attn.o_proj.weight');
      const bq = bias.qkv ? getW(weights, p + 'self_attn.q_proj.bias') : undefined;
      const bk = bias.qkv ? getW(weights, p + 'self_attn.k_proj.bias') : undefined;
      const bv = bias.qkv ? getW(weights, p + 'self_attn.v_proj.bias') : undefined;
      const bo = bias.o ? getW(weights, p + 'self_attn.o_proj.bias') : undefined;
      const wIn = getW(weights, p + 'input_layernorm.weight');
      const wPost = getW(weights, p + 'post_attention_layernorm.weight');
      // attention block
      const q = new Float64Array(S * nh * hd), k = new Float64Array(S * nkv * hd), v = new Float64Array(S * nkv * hd);
      for (let s = 0; s < S; s++) {
        const x = rmsNormRow(h.subarray(s * H, (s + 1) * H), wIn, eps);
        q.set(linear(x, 0, wq, bq, nh * hd, H), s * nh * hd);
        k.set(linear(x, 0, wk, bk, nkv * hd, H), s * nkv * hd);
        v.set(linear(x, 0, wv, bv, nkv * hd, H), s * nkv * hd);
        for (let hh = 0; hh < nh; hh++) applyRope(q, (s * nh + hh) * hd, hd, pos[b][s], invFreq);
        for (let hh = 0; hh < nkv; hh++) applyRope(k, (s * nkv + hh) * hd, hd, pos[b][s], invFreq);
      }
      const ctx = new Float64Array(S * nh * hd);
      for (let hh = 0; hh < nh; hh++) {
        const kvh = Math.floor(hh / group);
        for (let i = 0; i < S; i++) {
          const sc = new Float64Array(S);
          let any = false;
          for (let j = 0; j < S; j++) {
            const visible = attentionMask[b][j] === 1 && (opts.bidirectional || j <= i);
            if (!visible) {
              sc[j] = -Infinity;
              continue;
            }
            any = true;
          }
          for (let j = 0; j < S; j++) {
            if (any && sc[j] === -Infinity) continue;
            let d = 0;
            for (let e = 0; e < hd; e++) d += q[(i * nh + hh) * hd + e] * k[(j * nkv + kvh) * hd + e];
            sc[j] = d * scale;
          }
          softmaxInPlace(sc);
          for (let j = 0; j < S; j++) {
            if (sc[j] === 0) continue;
            for (let e = 0; e < hd; e++) ctx[(i * nh + hh) * hd + e] += sc[j] * v[(j * nkv + kvh) * hd + e];
          }
        }
      }
      for (let s = 0; s < S; s++) {
        const o = linear(ctx, s * nh * hd, wo, bo, H, nh * hd);
        for (let j = 0; j < H; j++) h[s * H + j] += o[j];
      }
      // MLP block
      const wg = getW(weights, p + 'mlp.gate_proj.weight'), wu = getW(weights, p + 'mlp.up_proj.weight');
      const wd = getW(weights, p + 'mlp.down_proj.weight');
      for (let s = 0; s < S; s++) {
        const x = rmsNormRow(h.subarray(s * H, (s + 1) * H), wPost, eps);
        const g = linear(x, 0, wg, undefined, I, H), u = linear(x, 0, wu, undefined, I, H);
        for (let j = 0; j < I; j++) g[j] = silu(g[j]) * u[j];
        const dn = linear(g, 0, wd, undefined, H, I);
        for (let j = 0; j < H; j++) h[s * H + j] += dn[j];
      }
    }
    const wn = getW(weights, 'norm.weight');
    for (let s = 0; s < S; s++) out.set(rmsNormRow(h.subarray(s * H, (s + 1) * H), wn, eps), (b * S + s) * H);
  }
  return out;
}

/** Logits [B, S, vocab] = hidden · lm_head.weightᵀ (embed_tokens.weightᵀ when tied). */
export function llamaLogitsRef(config: LlamaRefConfig, weights: RefWeights, hidden: Float64Array, B: number, S: number): Float64Array {
  const H = config.hidden_size, V = config.vocab_size;
  const W = config.tie_word_embeddings ? getW(weights, 'embed_tokens.weight') : getW(weights, 'lm_head.weight');
  const out = new Float64Array(B * S * V);
  for (let r = 0; r < B * S; r++) out.set(linear(hidden, r * H, W, undefined, V, H), r * V);
  return out;
}

/** LLM2Vec pooling modes. */
export type PoolMode = 'mean' | 'weighted_mean' | 'eos' | 'bos';

/**
 * LLM2Vec pooling (LLM2Vec.get_pooling) over hidden [B, S, H] with a 0/1 mask [B][S] of the
 * pooled tokens (the attention mask, or LLM2Vec's embed_mask when an instruction prefix is
 * skipped), generalised from LLM2Vec's left-padding-only code to any padding:
 *   mean:          average of the rows where mask = 1 (LLM2Vec: the last sum(mask) rows).
 *   weighted_mean: Σ w_t h_t, the masked positions taking weights 1, 2, ..., L in order,
 *                  normalised to sum 1 (later tokens weigh more).
 *   eos:           the last position where mask = 1 (LLM2Vec 'eos_token' / 'last_token'
 *                  takes row S-1, which is that position with left padding; with right
 *                  padding it is the last valid token).
 *   bos:           the first position where mask = 1 (LLM2Vec selects input_ids ==
 *                  bos_token_id, the first valid token when the tokenizer adds BOS).
 * A row with no masked token pools to zeros (LLM2Vec: weights clamped, mean of nothing
 * is NaN there; never compare such rows).
 */
export function poolRef(hidden: Float64Array, mask: number[][], B: number, S: number, H: number, mode: PoolMode): Float64Array {
  const out = new Float64Array(B * H);
  for (let b = 0; b < B; b++) {
    const idx: number[] = [];
    for (let s = 0; s < S; s++) if (mask[b][s] === 1) idx.push(s);
    if (idx.length === 0) continue;
    const acc = (s: number, w: number) => {
      for (let j = 0; j < H; j++) out[b * H + j] += w * hidden[(b * S + s) * H + j];
    };
    if (mode === 'mean') for (const s of idx) acc(s, 1 / idx.length);
    else if (mode === 'weighted_mean') {
      const L = idx.length, tot = (L * (L + 1)) / 2;
      idx.forEach((s, t) => acc(s, (t + 1) / tot));
    } else if (mode === 'eos') acc(idx[idx.length - 1], 1);
    else if (mode === 'bos') acc(idx[0], 1);
    else throw new Error(`llama-ref: pool mode ${String(mode)}`);
  }
  return out;
}

/** Options of writeHfLlamaDir. */
export interface WriteHfLlamaOpts {
  /** 'model.' (LlamaForCausalLM: lm_head.weight stays unprefixed) or '' (bare LlamaModel). */
  prefix: 'model.' | '';
  dtype: StDtype;
  /** Split into this many model-0000k-of-0000n.safetensors shards plus an index (default 1: model.safetensors). */
  shards?: number;
  /** Extra config fields to write (merged over the config). */
  configExtra?: Record<string, unknown>;
}

/** HF name of a reference weight name under the prefix (lm_head.weight never prefixed). */
export function hfLlamaName(name: string, prefix: string): string {
  return name === 'lm_head.weight' ? name : prefix + name;
}

/**
 * Writes config.json and model.safetensors (or shards + model.safetensors.index.json with
 * metadata.total_size = the data bytes and weight_map name -> shard file) into dir (created
 * if needed). torch_dtype in config.json follows dtype. Returns the weights as stored
 * (rounded to dtype), with the reference's (unprefixed) names.
 */
export function writeHfLlamaDir(dir: string, config: LlamaRefConfig, weights: RefWeights, opts: WriteHfLlamaOpts): RefWeights {
  fs.mkdirSync(dir, { recursive: true });
  const torchDtype = { F32: 'float32', BF16: 'bfloat16', F16: 'float16', I64: 'int64' }[opts.dtype];
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, torch_dtype: torchDtype, ...(opts.configExtra ?? {}) }, null, 2));
  const all = toStTensors(weights, opts.dtype);
  const named: Record<string, (typeof all)[string]> = {};
  for (const [k, t] of Object.entries(all)) named[hfLlamaName(k, opts.prefix)] = t;
  writeShardedSafetensors(dir, named, opts.shards ?? 1);
  return roundWeights(weights, opts.dtype);
}

/**
 * Writes tensors as model.safetensors (shards = 1) or as n shards
 * model-0000k-of-0000n.safetensors (names split in order into n nearly equal groups) plus
 * model.safetensors.index.json.
 */
export function writeShardedSafetensors(dir: string, tensors: Record<string, { dtype: StDtype; shape: number[]; data: ArrayLike<number> }>, shards: number): void {
  const names = Object.keys(tensors);
  if (shards <= 1) {
    writeSafetensorsFile(path.join(dir, 'model.safetensors'), tensors);
    return;
  }
  if (shards > names.length) throw new Error('writeShardedSafetensors: more shards than tensors');
  const pad = (k: number) => String(k).padStart(5, '0');
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let k = 0; k < shards; k++) {
    const part = names.slice(Math.floor((k * names.length) / shards), Math.floor(((k + 1) * names.length) / shards));
    const file = `model-${pad(k + 1)}-of-${pad(shards)}.safetensors`;
    const sub: typeof tensors = {};
    for (const n of part) {
      sub[n] = tensors[n];
      weightMap[n] = file;
      total += numel(tensors[n].shape) * dtypeBytes(tensors[n].dtype);
    }
    writeSafetensorsFile(path.join(dir, file), sub);
  }
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
}
