// encoder-cra.ts: caption retrieval accuracy of a LlamaEncoder (its pooled embeddings),
// the measure ccFinetune() is judged by.
import { fail } from '../errors';
import type { LlamaEncoder, LlamaPooling } from '../models/llama';
import type { Tokenizer } from '../tokenizer';
import type { CaptionDataset } from '../data/types';
import { evaluateCRA, CRAResult } from './cra';

/** Options of {@link evaluateEncoderCRA}. */
export interface EncoderCRAOptions {
  encoder: LlamaEncoder;
  tokenizer: Tokenizer;
  /** Images with their captions (e.g. loadCaptions(flickr8k, {split: 'test'})). */
  dataset: CaptionDataset;
  /** Instruction put before every caption (attended, not pooled); default '' (none). */
  instruction?: string;
  pooling?: LlamaPooling;
  /** Longest caption in tokens (default 128). */
  maxLength?: number;
  /** Captions per forward (default 64). */
  batchSize?: number;
  /** Also the all-pairs variant (default true). */
  allPairs?: boolean;
}

/**
 * CRA as in the LLM2CLIP paper (each image's first caption retrieves among every image's
 * second caption; top-1 hit when it is its own image's) and the all-pairs variant, with the
 * encoder's pooled embeddings (eval mode, no graph) compared by cosine similarity.
 */
export async function evaluateEncoderCRA(o: EncoderCRAOptions): Promise<CRAResult> {
  if (!o || !o.encoder || !o.tokenizer || !o.dataset) fail('INVALID_ARGUMENT', 'evaluateEncoderCRA: encoder, tokenizer and dataset are required');
  const instruction = o.instruction ?? '';
  const opts = { pooling: o.pooling ?? 'mean', maxLength: o.maxLength ?? 128, batchSize: o.batchSize ?? 64 } as const;
  return evaluateCRA({
    dataset: o.dataset,
    batchSize: 256,
    allPairs: o.allPairs ?? true,
    embed: (texts) => (instruction ? o.encoder.encode(o.tokenizer, texts.map((text) => ({ instruction, text })), opts) : o.encoder.encode(o.tokenizer, texts, opts)),
  });
}
