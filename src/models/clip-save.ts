// clip-save.ts: writing a ClipVisionEncoder as a Hugging Face CLIPVisionModelWithProjection
// directory, and saving / loading a TextAdapter (LLM2CLIP stage 2's trained modules).
import * as fs from 'fs';
import * as path from 'path';
import { DType, checkDType } from '../dtype';
import { Llm2ClipError, fail } from '../errors';
import { loadSafetensors, saveSafetensors } from '../io/safetensors';
import { Tensor, shapeStr } from '../tensor';
import { ClipVisionConfig, ClipVisionEncoder } from './clip';
import { TextAdapter } from './adapter';
import { writeTextAtomic } from '../io/atomic';


function mkdir(dir: string, what: string): void {
  if (typeof dir !== 'string' || dir.length === 0) fail('INVALID_ARGUMENT', `${what}(dir): dir must be a non-empty string`);
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    fail('IO_ERROR', `${what}: cannot create ${dir}: ${(e as Error).message}`);
  }
}

/** A Hugging Face CLIPVisionConfig (config.json, model_type 'clip_vision_model') of a config. */
export function clipVisionConfigToHf(c: ClipVisionConfig, dtype: DType = 'float32'): Record<string, unknown> {
  return {
    architectures: ['CLIPVisionModelWithProjection'],
    model_type: 'clip_vision_model',
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads,
    image_size: c.imageSize,
    patch_size: c.patchSize,
    num_channels: c.numChannels,
    // Hugging Face's name of the tanh approximation.
    hidden_act: c.hiddenAct === 'gelu_tanh' ? 'gelu_pytorch_tanh' : c.hiddenAct,
    layer_norm_eps: c.layerNormEps,
    projection_dim: c.projectionDim,
    initializer_range: c.initializerRange,
    initializer_factor: c.initializerFactor,
    attention_dropout: 0,
    dropout: 0,
    torch_dtype: dtype,
  };
}

/**
 * Writes encoder as a Hugging Face CLIPVisionModelWithProjection directory: config.json
 * (every CLIPVisionConfig field) and model.safetensors (the encoder's Hugging Face names:
 * `vision_model.*`, `visual_projection.weight` when it has one), each written atomically.
 * ClipVisionEncoder.fromPretrained(dir) reads it back identically, as does transformers.
 */
export async function saveClipVisionPretrained(encoder: ClipVisionEncoder, dir: string): Promise<void> {
  const what = 'saveClipVisionPretrained';
  if (!(encoder instanceof ClipVisionEncoder)) fail('INVALID_ARGUMENT', `${what}(encoder): encoder must be a ClipVisionEncoder`);
  mkdir(dir, what);
  const sd = encoder.stateDict();
  const dtype = Object.values(sd)[0]?.dtype ?? 'float32';
  await saveSafetensors(path.join(dir, 'model.safetensors'), sd, { format: 'pt' });
  writeTextAtomic(path.join(dir, 'config.json'), JSON.stringify(clipVisionConfigToHf(encoder.config, dtype), null, 2), what);
}

/** config.json of a saved {@link TextAdapter}. */
export interface TextAdapterConfig {
  /** Always 'llm2clip_text_adapter'. */
  type: 'llm2clip_text_adapter';
  /** Width of the LLM embedding. */
  inDim: number;
  /** Output width (CLIP's joint space). */
  embedDim: number;
  /** Residual blocks. */
  numBlocks: number;
  /** Hidden width of each block as a multiple of inDim. */
  hiddenMultiplier: number;
  /** dtype of the saved parameters. */
  dtype: DType;
}

/**
 * Writes adapter to dir: config.json ({@link TextAdapterConfig}) and model.safetensors (its
 * parameter names: `blocks.N.fc1.weight`, `norm.weight`, `proj.bias`, ...), each atomically.
 */
export async function saveTextAdapter(adapter: TextAdapter, dir: string): Promise<void> {
  const what = 'saveTextAdapter';
  if (!(adapter instanceof TextAdapter)) fail('INVALID_ARGUMENT', `${what}(adapter): adapter must be a TextAdapter`);
  mkdir(dir, what);
  const sd = adapter.stateDict();
  const cfg: TextAdapterConfig = {
    type: 'llm2clip_text_adapter',
    inDim: adapter.inDim,
    embedDim: adapter.embedDim,
    numBlocks: adapter.numBlocks,
    hiddenMultiplier: adapter.hiddenDim / adapter.inDim,
    dtype: Object.values(sd)[0]?.dtype ?? 'float32',
  };
  await saveSafetensors(path.join(dir, 'model.safetensors'), sd, { format: 'pt' });
  writeTextAtomic(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2), what);
}

/** Options of {@link loadTextAdapter}. */
export interface LoadTextAdapterOptions {
  /** Where the parameters go (default 'cpu'). */
  device?: string;
  /** Parameter dtype (default: the saved one). */
  dtype?: DType;
}

/**
 * Reads a TextAdapter written by {@link saveTextAdapter}. IO_ERROR when a file cannot be
 * read; CORRUPT_FILE (naming the file and the field or tensor) for a bad config.json, a
 * missing, extra or misshapen tensor.
 */
export async function loadTextAdapter(dir: string, options: LoadTextAdapterOptions = {}): Promise<TextAdapter> {
  const what = `loadTextAdapter(${JSON.stringify(dir)})`;
  if (typeof dir !== 'string' || dir.length === 0) fail('INVALID_ARGUMENT', 'loadTextAdapter(dir): dir must be a non-empty string');
  if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', `${what}: options must be an object`);
  const cfgFile = path.join(dir, 'config.json');
  let text: string;
  try {
    text = fs.readFileSync(cfgFile, 'utf8');
  } catch (e) {
    throw new Llm2ClipError('IO_ERROR', `${what}: cannot read ${cfgFile}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Llm2ClipError('CORRUPT_FILE', `${what}: ${cfgFile} is not valid JSON: ${(e as Error).message}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail('CORRUPT_FILE', `${what}: ${cfgFile} must be a JSON object`);
  const j = json as Record<string, unknown>;
  if (j.type !== 'llm2clip_text_adapter') fail('CORRUPT_FILE', `${what}: ${cfgFile}: type is ${JSON.stringify(j.type)}; expected "llm2clip_text_adapter"`);
  const int = (k: string, min: number): number => {
    const v = j[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) fail('CORRUPT_FILE', `${what}: ${cfgFile}: ${k} must be an integer >= ${min} (got ${JSON.stringify(v)})`);
    return v;
  };
  const inDim = int('inDim', 1), embedDim = int('embedDim', 1), numBlocks = int('numBlocks', 0);
  const m = j.hiddenMultiplier;
  if (typeof m !== 'number' || !(m > 0) || !Number.isSafeInteger(m * inDim))
    fail('CORRUPT_FILE', `${what}: ${cfgFile}: hiddenMultiplier must be positive with hiddenMultiplier·inDim an integer (got ${JSON.stringify(m)})`);
  let saved: DType = 'float32';
  if (j.dtype !== undefined) {
    try {
      saved = checkDType(j.dtype as DType, 'dtype');
    } catch {
      fail('CORRUPT_FILE', `${what}: ${cfgFile}: dtype ${JSON.stringify(j.dtype)} is not a dtype`);
    }
  }
  const dtype = options.dtype ?? (saved === 'int32' ? 'float32' : saved);
  const weights = path.join(dir, 'model.safetensors');
  const loaded = await loadSafetensors(weights, { dtype, device: options.device });
  let adapter: TextAdapter | null = null;
  try {
    adapter = new TextAdapter(inDim, embedDim, { numBlocks, hiddenMultiplier: m, dtype, device: options.device, seed: 0 });
    const own = adapter.stateDict();
    const missing = Object.keys(own).filter((k) => !(k in loaded));
    const extra = Object.keys(loaded).filter((k) => !(k in own));
    if (missing.length || extra.length)
      fail('CORRUPT_FILE', `${what}: ${weights} does not match config.json:${missing.length ? ` missing ${missing.slice(0, 6).join(', ')}` : ''}${extra.length ? ` unexpected ${extra.slice(0, 6).join(', ')}` : ''}`);
    for (const [k, p] of Object.entries(own)) {
      const t: Tensor = loaded[k];
      if (t.shape.length !== p.shape.length || t.shape.some((v, i) => v !== p.shape[i]))
        fail('CORRUPT_FILE', `${what}: ${k} is ${shapeStr(t.shape)} in ${weights}; config.json implies ${shapeStr(p.shape)}`);
    }
    adapter.loadStateDict(loaded);
    return adapter;
  } catch (e) {
    adapter?.dispose();
    throw e;
  } finally {
    for (const t of Object.values(loaded)) t.dispose();
  }
}
