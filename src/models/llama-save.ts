// llama-save.ts: writing a LlamaEncoder as a Hugging Face directory (config.json,
// model.safetensors, tokenizer.json), and the configuration of small from-scratch models.
import * as fs from 'fs';
import * as path from 'path';
import { fail } from '../errors';
import { saveSafetensors } from '../io/safetensors';
import { Tensor } from '../tensor';
import type { Tokenizer } from '../tokenizer';
import type { LlamaConfig } from './llama-config';
import type { LlamaEncoder } from './llama';

/** config.json (Hugging Face LlamaConfig / Qwen2Config / MistralConfig fields) of a config. */
export function llamaConfigToHf(c: LlamaConfig, dtype = 'float32'): Record<string, unknown> {
  const rs = c.ropeScaling;
  return {
    architectures: ['LlamaModel'],
    model_type: c.modelType,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads,
    num_key_value_heads: c.numKeyValueHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: !rs
      ? null
      : rs.type === 'llama3'
        ? { rope_type: 'llama3', factor: rs.factor, low_freq_factor: rs.lowFreqFactor, high_freq_factor: rs.highFreqFactor, original_max_position_embeddings: rs.originalMaxPositionEmbeddings }
        : { rope_type: 'linear', factor: rs.factor },
    vocab_size: c.vocabSize,
    tie_word_embeddings: c.tieWordEmbeddings,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    pad_token_id: c.padTokenId,
    attention_bias: c.attentionBias,
    mlp_bias: c.mlpBias,
    initializer_range: c.initializerRange,
    max_position_embeddings: c.maxPositionEmbeddings ?? 2048,
    torch_dtype: dtype,
  };
}

/**
 * Writes encoder (without LoRA adapters: merge or leave them out first) as a Hugging Face
 * directory that LlamaEncoder.fromPretrained and transformers' LlamaModel read: config.json,
 * model.safetensors (names with the `model.` prefix, as LlamaForCausalLM, lm_head.weight when
 * untied) and, when given, tokenizer.json. Files are written atomically.
 */
export async function saveLlamaPretrained(encoder: LlamaEncoder, dir: string, tokenizer?: Tokenizer | null): Promise<void> {
  if (encoder.loraModules().length > 0)
    fail('INVALID_ARGUMENT', `saveLlamaPretrained(${dir}): the encoder has LoRA adapters; merge them (mergeAndUnloadLora) or save them with saveLora`);
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    fail('IO_ERROR', `saveLlamaPretrained: cannot create ${dir}: ${(e as Error).message}`);
  }
  const sd = encoder.stateDict();
  const tensors: Record<string, Tensor> = {};
  let dtype = 'float32';
  for (const [k, t] of Object.entries(sd)) {
    tensors[k === 'lm_head.weight' ? k : `model.${k}`] = t;
    dtype = t.dtype;
  }
  await saveSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  const cfg = path.join(dir, 'config.json');
  fs.writeFileSync(cfg + '.tmp', JSON.stringify(llamaConfigToHf(encoder.config, dtype), null, 2));
  fs.renameSync(cfg + '.tmp', cfg);
  if (tokenizer) tokenizer.save(path.join(dir, 'tokenizer.json'));
}

/** Sizes of a small from-scratch Llama. */
export interface TinyLlamaSizes {
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  vocabSize: number;
  bosTokenId?: number | null;
  eosTokenId?: number | null;
  padTokenId?: number | null;
}

/** A full LlamaConfig for a small from-scratch model (rope theta 10000, tied embeddings). */
export function tinyLlamaConfig(s: TinyLlamaSizes): LlamaConfig {
  return {
    modelType: 'llama',
    hiddenSize: s.hiddenSize,
    intermediateSize: s.intermediateSize,
    numHiddenLayers: s.numHiddenLayers,
    numAttentionHeads: s.numAttentionHeads,
    numKeyValueHeads: s.numKeyValueHeads,
    headDim: s.hiddenSize / s.numAttentionHeads,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: null,
    vocabSize: s.vocabSize,
    tieWordEmbeddings: true,
    bosTokenId: s.bosTokenId ?? null,
    eosTokenId: s.eosTokenId ?? null,
    padTokenId: s.padTokenId ?? null,
    attentionBias: false,
    oProjBias: false,
    mlpBias: false,
    initializerRange: 0.02,
    maxPositionEmbeddings: 512,
  };
}
