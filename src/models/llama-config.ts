// models/llama-config.ts: the Llama-family configuration (Llama 2/3, Mistral, Qwen2) parsed
// from a Hugging Face config.json and validated field by field.
import { fail, ErrorCode } from '../errors';
import type { RopeScaling } from '../ops';

/** Model families whose decoder LlamaEncoder runs (same block; they differ in config and biases). */
export type LlamaModelType = 'llama' | 'mistral' | 'qwen2';

/**
 * A Llama-family configuration (the fields of Hugging Face's LlamaConfig / MistralConfig /
 * Qwen2Config that the forward needs, camelCased).
 */
export interface LlamaConfig {
  /** config.json `model_type`. */
  modelType: LlamaModelType;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** Key/value heads (grouped-query attention); divides numAttentionHeads. */
  numKeyValueHeads: number;
  /** Per-head dim: config `head_dim` when present, else hiddenSize / numAttentionHeads. Need not equal that ratio. */
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** RoPE frequency scaling (llama3 or linear), as ops.rope takes it; null: none. */
  ropeScaling: RopeScaling | null;
  vocabSize: number;
  /** The lm head shares embed_tokens.weight. */
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  /** One id, or several (Llama 3.1 lists its end tokens). */
  eosTokenId: number | number[] | null;
  padTokenId: number | null;
  /** q/k/v projections carry a bias (config `attention_bias`; always true for qwen2). */
  attentionBias: boolean;
  /** o_proj carries a bias (llama / mistral: = attention_bias; qwen2: never). */
  oProjBias: boolean;
  /** gate/up/down projections carry a bias (llama `mlp_bias`, default false). */
  mlpBias: boolean;
  /** Std of the random normal initialisation (config `initializer_range`, default 0.02). */
  initializerRange: number;
  /** config `max_position_embeddings` (informational; not enforced), or null. */
  maxPositionEmbeddings: number | null;
}

const MODEL_TYPES: readonly string[] = ['llama', 'mistral', 'qwen2'];

class ConfigReader {
  constructor(
    private readonly obj: Record<string, unknown>,
    private readonly source: string | undefined,
  ) {}
  get code(): ErrorCode {
    return this.source === undefined ? 'INVALID_ARGUMENT' : 'CORRUPT_FILE';
  }
  where(): string {
    return this.source === undefined ? 'parseLlamaConfig' : `Llama config ${this.source}`;
  }
  bad(field: string, want: string): never {
    const v = this.obj[field];
    fail(this.code, `${this.where()}: field "${field}" must be ${want} (got ${v === undefined ? 'nothing: the field is missing' : JSON.stringify(v)})`);
  }
  has(field: string): boolean {
    return this.obj[field] !== undefined && this.obj[field] !== null;
  }
  posInt(field: string, dflt?: number): number {
    const v = this.obj[field];
    if ((v === undefined || v === null) && dflt !== undefined) return dflt;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) this.bad(field, 'a positive integer');
    return v;
  }
  posNum(field: string, dflt: number, raw: unknown = this.obj[field]): number {
    if (raw === undefined || raw === null) return dflt;
    if (typeof raw !== 'number' || !Number.isFinite(raw) || raw <= 0) this.bad(field, 'a positive finite number');
    return raw;
  }
  bool(field: string, dflt: boolean): boolean {
    const v = this.obj[field];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') this.bad(field, 'true or false');
    return v;
  }
  tokenId(field: string, allowList: boolean): number | number[] | null {
    const v = this.obj[field];
    if (v === undefined || v === null) return null;
    const ok = (x: unknown) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
    if (ok(v)) return v as number;
    if (allowList && Array.isArray(v) && v.length > 0 && v.every(ok)) return [...(v as number[])];
    this.bad(field, allowList ? 'a non-negative integer, a list of them, or null' : 'a non-negative integer or null');
  }
}

function parseRopeScaling(r: ConfigReader, raw: unknown): RopeScaling | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) r.bad('rope_scaling', 'an object or null');
  const o = raw as Record<string, unknown>;
  const type = o.rope_type ?? o.type;
  const num = (k: string): number => {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
      fail(r.code, `${r.where()}: field "rope_scaling.${k}" must be a positive finite number (got ${v === undefined ? 'nothing: the field is missing' : JSON.stringify(v)})`);
    return v;
  };
  if (type === 'default') return null;
  if (type === 'linear') return { type: 'linear', factor: num('factor') };
  if (type === 'llama3') {
    const s = {
      type: 'llama3' as const,
      factor: num('factor'),
      lowFreqFactor: num('low_freq_factor'),
      highFreqFactor: num('high_freq_factor'),
      originalMaxPositionEmbeddings: num('original_max_position_embeddings'),
    };
    if (!(s.highFreqFactor > s.lowFreqFactor))
      fail(r.code, `${r.where()}: rope_scaling needs low_freq_factor < high_freq_factor (got ${s.lowFreqFactor} and ${s.highFreqFactor})`);
    return s;
  }
  fail(r.code, `${r.where()}: field "rope_scaling.rope_type" ${JSON.stringify(type)} is not supported (supported: 'default', 'linear', 'llama3')`);
}

/**
 * Parses and validates a Hugging Face config.json object of a Llama, Mistral or Qwen2
 * model. Defaults follow transformers (num_key_value_heads = num_attention_heads,
 * head_dim = hidden_size / num_attention_heads, rms_norm_eps 1e-6, rope_theta 10000,
 * tie_word_embeddings false, attention_bias false (qwen2: q/k/v biases always),
 * mlp_bias false). Required: model_type, hidden_size, intermediate_size,
 * num_hidden_layers, num_attention_heads, vocab_size. hidden_act must be 'silu'.
 *
 * @param json the parsed config.json.
 * @param source the file it came from: errors are then CORRUPT_FILE naming it; without
 *   it (a config built in code) they are INVALID_ARGUMENT. Every message names the field.
 */
export function parseLlamaConfig(json: unknown, source?: string): LlamaConfig {
  const r0 = new ConfigReader({}, source);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail(r0.code, `${r0.where()}: the config must be a JSON object`);
  const r = new ConfigReader(json as Record<string, unknown>, source);
  const obj = json as Record<string, unknown>;
  const mt = obj.model_type;
  if (typeof mt !== 'string' || !MODEL_TYPES.includes(mt)) r.bad('model_type', `one of ${MODEL_TYPES.map((m) => `'${m}'`).join(', ')}`);
  const modelType = mt as LlamaModelType;
  const hiddenSize = r.posInt('hidden_size');
  const intermediateSize = r.posInt('intermediate_size');
  const numHiddenLayers = r.posInt('num_hidden_layers');
  const numAttentionHeads = r.posInt('num_attention_heads');
  const numKeyValueHeads = r.posInt('num_key_value_heads', numAttentionHeads);
  if (numAttentionHeads % numKeyValueHeads !== 0)
    fail(r.code, `${r.where()}: field "num_attention_heads" (${numAttentionHeads}) must be a multiple of "num_key_value_heads" (${numKeyValueHeads})`);
  let headDim: number;
  if (r.has('head_dim')) headDim = r.posInt('head_dim');
  else {
    if (hiddenSize % numAttentionHeads !== 0)
      fail(r.code, `${r.where()}: field "hidden_size" (${hiddenSize}) is not a multiple of "num_attention_heads" (${numAttentionHeads}) and there is no "head_dim"`);
    headDim = hiddenSize / numAttentionHeads;
  }
  if (headDim % 2 !== 0 || headDim > 256) r.bad(r.has('head_dim') ? 'head_dim' : 'hidden_size', `such that the head dim (${headDim}) is even and at most 256`);
  const act = obj.hidden_act;
  if (act !== undefined && act !== null && act !== 'silu') r.bad('hidden_act', "'silu'");
  const vocabSize = r.posInt('vocab_size');
  const attentionBias = modelType === 'qwen2' ? true : r.bool('attention_bias', false);
  const oProjBias = modelType === 'qwen2' ? false : attentionBias;
  const bos = r.tokenId('bos_token_id', false) as number | null;
  const eos = r.tokenId('eos_token_id', true);
  const pad = r.tokenId('pad_token_id', false) as number | null;
  const maxPos = r.has('max_position_embeddings') ? r.posInt('max_position_embeddings') : null;
  return {
    modelType,
    hiddenSize,
    intermediateSize,
    numHiddenLayers,
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    rmsNormEps: r.posNum('rms_norm_eps', 1e-6),
    ropeTheta: r.posNum('rope_theta', 10000),
    ropeScaling: parseRopeScaling(r, obj.rope_scaling),
    vocabSize,
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
    bosTokenId: bos,
    eosTokenId: eos,
    padTokenId: pad,
    attentionBias,
    oProjBias,
    mlpBias: r.bool('mlp_bias', false),
    initializerRange: r.posNum('initializer_range', 0.02),
    maxPositionEmbeddings: maxPos,
  };
}

/** Checks a LlamaConfig built in code (INVALID_ARGUMENT naming the field). */
export function checkLlamaConfig(c: LlamaConfig, what: string): LlamaConfig {
  if (c === null || typeof c !== 'object') fail('INVALID_ARGUMENT', `${what}: config must be a LlamaConfig object (see parseLlamaConfig)`);
  const posInt = (k: keyof LlamaConfig) => {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) fail('INVALID_ARGUMENT', `${what}: config.${k} must be a positive integer (got ${String(v)})`);
  };
  const posNum = (k: keyof LlamaConfig) => {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail('INVALID_ARGUMENT', `${what}: config.${k} must be a positive number (got ${String(v)})`);
  };
  (['hiddenSize', 'intermediateSize', 'numHiddenLayers', 'numAttentionHeads', 'numKeyValueHeads', 'headDim', 'vocabSize'] as const).forEach(posInt);
  (['rmsNormEps', 'ropeTheta', 'initializerRange'] as const).forEach(posNum);
  if (c.numAttentionHeads % c.numKeyValueHeads !== 0)
    fail('INVALID_ARGUMENT', `${what}: config.numAttentionHeads (${c.numAttentionHeads}) must be a multiple of config.numKeyValueHeads (${c.numKeyValueHeads})`);
  if (c.headDim % 2 !== 0 || c.headDim > 256) fail('INVALID_ARGUMENT', `${what}: config.headDim (${c.headDim}) must be even and at most 256`);
  if (!MODEL_TYPES.includes(c.modelType)) fail('INVALID_ARGUMENT', `${what}: config.modelType must be one of ${MODEL_TYPES.join(', ')} (got ${String(c.modelType)})`);
  for (const k of ['tieWordEmbeddings', 'attentionBias', 'oProjBias', 'mlpBias'] as const)
    if (typeof c[k] !== 'boolean') fail('INVALID_ARGUMENT', `${what}: config.${k} must be a boolean (got ${String(c[k])})`);
  return c;
}
