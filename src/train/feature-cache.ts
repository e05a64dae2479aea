// feature-cache.ts: caption features extracted once by a frozen text encoder and cached on
// disk (LLM2CLIP stage 2 trains only the adapter and the vision side, so the LLM's
// sentence embeddings of the captions never change and are computed once).
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { fail, Llm2ClipError } from '../errors';
import { noGrad } from '../autograd';
import { zeros } from '../creation';
import { Tensor } from '../tensor';
import { LoRALinear, Module } from '../nn';
import type { Tokenizer } from '../tokenizer';
import type { LlamaEncodeOptions, LlamaPooling } from '../models/llama';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors, SafetensorsHeader } from '../io/safetensors';
import { native } from '../binding';

/**
 * What {@link cachedTextFeatures} needs of a text encoder (a LlamaEncoder satisfies it):
 * encode() of a batch of texts into float32 [n, hidden], and a training flag.
 */
export interface TextFeatureEncoder {
  /** Encodes texts into float32 [texts.length, hidden] (any device). */
  encode(tokenizer: Tokenizer, texts: string[], options: LlamaEncodeOptions): Tensor;
  /** Training mode; set to false during extraction and restored afterwards. */
  training: boolean;
  /** Sets training mode. */
  train(on?: boolean): unknown;
}

/** Options of {@link cachedTextFeatures}. */
export interface CachedTextFeaturesOptions {
  /** The frozen text encoder. */
  encoder: TextFeatureEncoder;
  /** Its tokenizer. */
  tokenizer: Tokenizer;
  /**
   * Identifies the encoder's weights (part of the cache key): e.g. the model and adapter
   * directories with their files' mtimes and sizes, or {@link encoderFingerprint}(encoder).
   * A different modelId never reuses a cache file.
   */
  modelId: string;
  /** The captions, in order; row i of the features is texts[i]. */
  texts: string[];
  /** Folder of the cache files (created when missing). */
  cacheDir: string;
  /** Pooling of the encoder (default 'mean'). */
  pooling?: LlamaPooling;
  /** Longest token sequence (default 512, as LlamaEncoder.encode). */
  maxLength?: number;
  /** Texts per encoder call (default 32). */
  batchSize?: number;
  /** Called after each batch with (texts done, total); not called when the cache is reused. */
  onProgress?: (done: number, total: number) => void;
}

/** What {@link cachedTextFeatures} returns. */
export interface CachedTextFeatures {
  /** float32 [texts.length, hidden] on the CPU; the caller owns (disposes) it. */
  features: Tensor;
  /** The cache file. */
  file: string;
  /** true: read from an existing valid cache file; false: extracted (and written) now. */
  reused: boolean;
}

const DEFAULT_MAX_LENGTH = 512;
const DEFAULT_BATCH = 32;
const FORMAT = 'llm2clip-text-features-v1';

/** The cache key: sha256 over the format, modelId, pooling, maxLength and the texts (JSON). */
function cacheKey(modelId: string, pooling: string, maxLength: number, texts: string[]): string {
  const h = crypto.createHash('sha256');
  // Every piece is JSON-encoded: JSON strings are self-delimiting, so distinct inputs
  // never hash the same byte stream (as JSON.stringify of the whole array, but streamed).
  h.update(JSON.stringify([FORMAT, modelId, pooling, maxLength, texts.length]));
  for (const t of texts) h.update(JSON.stringify(t) + ',');
  return h.digest('hex');
}

function sha256Of(t: Tensor): string {
  const v = t.view();
  return crypto.createHash('sha256').update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)).digest('hex');
}

/** The cache file of these features and the metadata a valid one holds. */
function cacheLocation(modelId: string, pooling: string, maxLength: number, texts: string[], cacheDir: string): { file: string; meta: Record<string, string> } {
  const key = cacheKey(modelId, pooling, maxLength, texts);
  return {
    file: path.join(cacheDir, `text-features-${key.slice(0, 16)}.safetensors`),
    meta: { format: FORMAT, key, count: String(texts.length), modelId, pooling, maxLength: String(maxLength) },
  };
}

/** Reads a cache file when it is valid and matches; null otherwise (absent, corrupt, stale). */
async function tryLoad(file: string, meta: Record<string, string>): Promise<Tensor | null> {
  if (!fs.existsSync(file)) return null;
  let features: Tensor | null = null;
  try {
    const h = await readSafetensorsHeader(file);
    for (const k of ['format', 'key', 'count', 'modelId', 'pooling', 'maxLength'])
      if (h.metadata[k] !== meta[k]) return null;
    const e = h.tensors.features;
    const n = Number(meta.count), hidden = Number(h.metadata.hidden);
    if (!e || e.dtype !== 'F32' || e.shape.length !== 2 || e.shape[0] !== n || e.shape[1] !== hidden || Object.keys(h.tensors).length !== 1) return null;
    const loaded = await loadSafetensors(file, { names: ['features'] });
    features = loaded.features;
    if (sha256Of(features) !== h.metadata.sha256) {
      features.dispose();
      return null;
    }
    return features;
  } catch (e) {
    features?.dispose();
    if (e instanceof Llm2ClipError && (e.code === 'CORRUPT_FILE' || e.code === 'IO_ERROR' || e.code === 'DTYPE_MISMATCH')) return null;
    throw e;
  }
}

/**
 * Caption features of a frozen text encoder, extracted once and cached on disk.
 *
 * The cache file is `<cacheDir>/text-features-<key16>.safetensors`, key = sha256 of
 * (modelId, pooling, maxLength, the texts as JSON); it holds one float32 tensor `features`
 * [N, hidden] and metadata (format, key, count, hidden, modelId, pooling, maxLength and
 * the sha256 of the feature bytes). It is reused when present and its metadata, shape and
 * checksum match; otherwise (absent, stale, truncated, corrupt) the features are extracted
 * again and the file rewritten. Writes are atomic (temporary file renamed over the target),
 * so an interrupted run leaves either the old file or none.
 *
 * Extraction runs batch by batch (batchSize texts per encoder.encode call) under noGrad()
 * with the encoder in eval mode (its training flag is restored afterwards, also on error);
 * each batch is copied into one preallocated CPU float32 tensor [N, hidden], so peak memory
 * is the features plus one batch. Loading reads the file in chunks with loadSafetensors
 * into a fresh CPU tensor, so the whole feature matrix is resident: N × hidden × 4 bytes;
 * {@link mappedTextFeatures} memory-maps it instead.
 *
 * Throws INVALID_ARGUMENT for bad options (naming the option) and IO_ERROR when cacheDir
 * cannot be created or the file cannot be written.
 */
export async function cachedTextFeatures(options: CachedTextFeaturesOptions): Promise<CachedTextFeatures> {
  const what = 'cachedTextFeatures';
  if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', `${what}(options): an options object is required`);
  const { encoder, tokenizer, modelId, texts, cacheDir, onProgress } = options;
  if (encoder === null || typeof encoder !== 'object' || typeof encoder.encode !== 'function' || typeof encoder.train !== 'function')
    fail('INVALID_ARGUMENT', `${what}: options.encoder must be a text encoder with encode() and train() (a LlamaEncoder)`);
  if (tokenizer === null || typeof tokenizer !== 'object') fail('INVALID_ARGUMENT', `${what}: options.tokenizer must be a Tokenizer`);
  if (typeof modelId !== 'string' || modelId.length === 0) fail('INVALID_ARGUMENT', `${what}: options.modelId must be a non-empty string`);
  if (!Array.isArray(texts) || texts.length === 0) fail('INVALID_ARGUMENT', `${what}: options.texts must be a non-empty array of strings`);
  const badText = texts.findIndex((t) => typeof t !== 'string');
  if (badText >= 0) fail('INVALID_ARGUMENT', `${what}: options.texts[${badText}] is not a string`);
  if (typeof cacheDir !== 'string' || cacheDir.length === 0) fail('INVALID_ARGUMENT', `${what}: options.cacheDir must be a non-empty string`);
  const pooling = options.pooling ?? 'mean';
  if (!['mean', 'weighted_mean', 'eos', 'bos'].includes(pooling)) fail('INVALID_ARGUMENT', `${what}: options.pooling must be mean, weighted_mean, eos or bos (got ${String(pooling)})`);
  const maxLength = options.maxLength ?? DEFAULT_MAX_LENGTH;
  if (!Number.isSafeInteger(maxLength) || maxLength < 1) fail('INVALID_ARGUMENT', `${what}: options.maxLength must be a positive integer (got ${String(maxLength)})`);
  const batchSize = options.batchSize ?? DEFAULT_BATCH;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) fail('INVALID_ARGUMENT', `${what}: options.batchSize must be a positive integer (got ${String(batchSize)})`);
  if (onProgress !== undefined && typeof onProgress !== 'function') fail('INVALID_ARGUMENT', `${what}: options.onProgress must be a function`);

  const { file, meta } = cacheLocation(modelId, pooling, maxLength, texts, cacheDir);
  const cached = await tryLoad(file, meta);
  if (cached) return { features: cached, file, reused: true };

  try {
    fs.mkdirSync(cacheDir, { recursive: true });
  } catch (e) {
    fail('IO_ERROR', `${what}: cannot create options.cacheDir ${cacheDir}: ${(e as Error).message}`);
  }
  const N = texts.length;
  let out: Tensor | null = null;
  const wasTraining = encoder.training;
  encoder.train(false);
  try {
    for (let i = 0; i < N; i += batchSize) {
      const chunk = texts.slice(i, i + batchSize);
      const b = noGrad(() => encoder.encode(tokenizer, chunk, { pooling, maxLength, batchSize }));
      try {
        if (b.ndim !== 2 || b.shape[0] !== chunk.length || b.dtype !== 'float32')
          fail('INTERNAL', `${what}: the encoder returned ${b.dtype}[${b.shape.join(',')}] for ${chunk.length} texts; expected float32 [${chunk.length}, hidden]`);
        if (out && b.shape[1] !== out.shape[1]) fail('INTERNAL', `${what}: the encoder's width changed from ${out.shape[1]} to ${b.shape[1]}`);
        out ??= zeros([N, b.shape[1]]);
        const host = b.device === 'cpu' ? b : b.to('cpu');
        try {
          (out.view() as Float32Array).set(host.view() as Float32Array, i * b.shape[1]);
        } finally {
          if (host !== b) host.dispose();
        }
      } finally {
        b.dispose();
      }
      onProgress?.(Math.min(i + batchSize, N), N);
    }
    const features = out!;
    meta.hidden = String(features.shape[1]);
    meta.sha256 = sha256Of(features);
    await saveSafetensors(file, { features }, meta);
    return { features, file, reused: false };
  } catch (e) {
    out?.dispose();
    throw e;
  } finally {
    encoder.train(wasTraining);
  }
}

/** Options of {@link encoderFingerprint}. */
export interface EncoderFingerprintOptions {
  /**
   * Hash at most this many bytes of each parameter (default: all). Larger tensors are
   * sampled: 16 evenly spaced windows plus the last bytes. Faster, but a change outside
   * the sampled windows goes unnoticed.
   */
  maxBytesPerTensor?: number;
}

/**
 * A hex sha256 of a module's parameters: every parameter's name, dtype, shape and bytes
 * (the module's LoRA adapters included, as they are parameters, with each LoRA layer's r,
 * alpha and scale), for {@link cachedTextFeatures}' modelId. CPU tensors are hashed in place through their
 * zero-copy view(); CUDA tensors are copied to the host one at a time. Full hashing runs at
 * about the speed of sha256 (roughly 1 GB/s per core); pass maxBytesPerTensor to sample large
 * tensors instead. Other hyperparameters that are not parameters (e.g. an encoder's
 * rope scaling) are not covered: add them to modelId yourself.
 */
export function encoderFingerprint(encoder: Module, options: EncoderFingerprintOptions = {}): string {
  if (encoder === null || typeof encoder !== 'object' || typeof encoder.namedParameters !== 'function')
    fail('INVALID_ARGUMENT', 'encoderFingerprint(encoder): encoder must be a Module');
  const max = options.maxBytesPerTensor ?? Infinity;
  if (!(max === Infinity || (Number.isSafeInteger(max) && max >= 64)))
    fail('INVALID_ARGUMENT', `encoderFingerprint: options.maxBytesPerTensor must be an integer >= 64 (got ${String(max)})`);
  const h = crypto.createHash('sha256');
  h.update(`${max}\n`);
  for (const [name, m] of encoder.namedModules())
    if (m instanceof LoRALinear) h.update(`lora ${JSON.stringify(name)} r=${m.r} alpha=${m.alpha} scale=${m.scale}\n`);
  for (const [name, t] of encoder.namedParameters()) {
    h.update(`${JSON.stringify(name)} ${t.dtype} [${t.shape.join(',')}]\n`);
    const host = t.device === 'cpu' ? t : t.to('cpu');
    try {
      const v = host.view();
      const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      if (bytes.length <= max) {
        h.update(bytes);
      } else {
        const windows = 17, w = Math.max(1, Math.floor(max / windows));
        for (let i = 0; i < windows - 1; i++) {
          const at = Math.floor(((bytes.length - w) * i) / (windows - 1));
          h.update(bytes.subarray(at, at + w));
        }
        h.update(bytes.subarray(bytes.length - w));
      }
    } finally {
      if (host !== t) host.dispose();
    }
  }
  return h.digest('hex');
}

/** What {@link mappedTextFeatures} returns. */
export interface MappedTextFeatures {
  /**
   * Row-major float32 [count, hidden] over the memory-mapped cache file (private,
   * copy-on-write: writing to it never changes the file). Pages are read as they are
   * touched, so the features need not fit in memory; the mapping lives as long as this array.
   */
  data: Float32Array;
  count: number;
  hidden: number;
  /** The cache file. */
  file: string;
  /** true: an existing valid cache file; false: extracted (and written) now. */
  reused: boolean;
}

/** The features of a valid, matching cache file, memory-mapped; null otherwise. */
function tryMap(file: string, meta: Record<string, string>, h: SafetensorsHeader): MappedTextFeatures | null {
  for (const k of ['format', 'key', 'count', 'modelId', 'pooling', 'maxLength'])
    if (h.metadata[k] !== meta[k]) return null;
  const e = h.tensors.features;
  const n = Number(meta.count), hidden = Number(h.metadata.hidden);
  if (!e || e.dtype !== 'F32' || e.shape.length !== 2 || e.shape[0] !== n || e.shape[1] !== hidden || Object.keys(h.tensors).length !== 1) return null;
  const [b, end] = e.offsets;
  if (end - b !== n * hidden * 4) return null;
  const buf = native.mapFile(file);
  const at = h.dataStart + b;
  if (at + n * hidden * 4 > buf.byteLength) return null;
  const bytes = new Uint8Array(buf, at, n * hidden * 4);
  if (crypto.createHash('sha256').update(bytes).digest('hex') !== h.metadata.sha256) return null;
  // Float32Array needs 4-byte alignment: our writer pads the header to 8 bytes; a file
  // from elsewhere may not be, and is then copied.
  const data = at % 4 === 0 ? new Float32Array(buf, at, n * hidden) : new Float32Array(bytes.slice().buffer);
  return { data, count: n, hidden, file, reused: true };
}

/**
 * {@link cachedTextFeatures}, with the features memory-mapped from the cache file rather
 * than read into memory: for feature sets larger than RAM (LLM2CLIP's 15M captions at
 * 4096 dims are 245 GB). A valid cache is checked (metadata, shape, sha256 over the mapped
 * bytes) and used in place; otherwise the features are extracted and written as
 * cachedTextFeatures does, then mapped. Same options and errors.
 */
export async function mappedTextFeatures(options: CachedTextFeaturesOptions): Promise<MappedTextFeatures> {
  const { modelId, texts, cacheDir } = options ?? ({} as CachedTextFeaturesOptions);
  if (typeof modelId === 'string' && Array.isArray(texts) && texts.length > 0 && typeof cacheDir === 'string' && texts.every((t) => typeof t === 'string')) {
    const { file, meta } = cacheLocation(modelId, options.pooling ?? 'mean', options.maxLength ?? DEFAULT_MAX_LENGTH, texts, cacheDir);
    if (fs.existsSync(file)) {
      try {
        const m = tryMap(file, meta, await readSafetensorsHeader(file));
        if (m) return m;
      } catch (e) {
        if (!(e instanceof Llm2ClipError && (e.code === 'CORRUPT_FILE' || e.code === 'IO_ERROR'))) throw e;
      }
    }
  }
  // Absent, stale or corrupt (or bad options: cachedTextFeatures names them).
  const r = await cachedTextFeatures(options);
  r.features.dispose();
  const h = await readSafetensorsHeader(r.file);
  const m = tryMap(r.file, h.metadata, h);
  if (!m) fail('IO_ERROR', `mappedTextFeatures: the cache file ${r.file} just written does not read back`);
  return { ...m, reused: false };
}
