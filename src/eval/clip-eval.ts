// clip-eval.ts: a trained LLM2CLIP model (trainClip's output directory) embedding images
// and captions, for retrieval and zero-shot evaluation.
import * as fs from 'fs';
import * as path from 'path';
import { fail } from '../errors';
import { noGrad } from '../autograd';
import { tidy } from '../scope';
import { cuda } from '../runtime';
import { Tensor } from '../tensor';
import { LlamaEncoder } from '../models/llama';
import { ClipVisionEncoder } from '../models/clip';
import { loadTextAdapter } from '../models/clip-save';
import { TextAdapter } from '../models/adapter';
import { loadImages } from '../models/image';
import { Tokenizer } from '../tokenizer';

/** A loaded LLM2CLIP model: frozen LLM + adapter on the text side, the ViT on the image side. */
export interface ClipModel {
  encoder: LlamaEncoder;
  tokenizer: Tokenizer;
  adapter: TextAdapter;
  vision: ClipVisionEncoder;
}

/** Loads trainClip's output directory (vision/, text_adapter/, clip_config.json naming the text model). */
export async function loadClipModel(dir: string, options: { textModel?: string; textAdapterDir?: string; device?: string } = {}): Promise<ClipModel> {
  const cfgFile = path.join(dir, 'clip_config.json');
  let cfg: { textModel?: string | null; textAdapterDir?: string | null } = {};
  if (fs.existsSync(cfgFile)) {
    try {
      cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
    } catch (e) {
      fail('CORRUPT_FILE', `${cfgFile}: ${(e as Error).message}`);
    }
  }
  const textModel = options.textModel ?? cfg.textModel;
  if (!textModel) fail('INVALID_ARGUMENT', `loadClipModel(${dir}): the text model is unknown (no clip_config.json entry); pass textModel`);
  const device = options.device ?? (cuda.isAvailable() ? 'cuda' : 'cpu');
  const dtype = device === 'cpu' ? 'float32' : 'bfloat16';
  const encoder = await LlamaEncoder.fromPretrained(textModel, { device, dtype, lmHead: false });
  const adapterDir = options.textAdapterDir ?? cfg.textAdapterDir;
  if (adapterDir) await encoder.loadLora(adapterDir);
  const vision = await ClipVisionEncoder.fromPretrained(path.join(dir, 'vision'), { device, dtype });
  const adapter = await loadTextAdapter(path.join(dir, 'text_adapter'), { device, dtype });
  return { encoder, tokenizer: Tokenizer.fromDir(textModel), adapter, vision };
}

/** The rows of a 2-D tensor as float32 host vectors; disposes the tensor. */
function hostRows(e: Tensor): Float32Array[] {
  const a = e.toArray() as Float32Array; // toArray widens 16-bit dtypes to float32
  const d = e.shape[1];
  e.dispose();
  return Array.from({ length: a.length / d }, (_, i) => a.slice(i * d, (i + 1) * d));
}

/** Image embeddings [N, embedDim] (float32, CPU), images decoded in batches. */
export async function embedImages(m: ClipModel, files: string[], batchSize = 64): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  m.vision.eval();
  for (let s = 0; s < files.length; s += batchSize) {
    const px = await loadImages(files.slice(s, s + batchSize), { size: m.vision.config.imageSize, device: m.vision.parameters()[0].device });
    const e = noGrad(() => tidy(() => m.vision.forward(px).embeds!));
    px.dispose();
    out.push(...hostRows(e));
  }
  return out;
}

/** Caption embeddings [N, embedDim]: the frozen LLM's mean-pooled features through the adapter. */
export function embedTexts(m: ClipModel, texts: string[], batchSize = 64): Float32Array[] {
  const out: Float32Array[] = [];
  m.adapter.eval();
  for (let s = 0; s < texts.length; s += batchSize) {
    const e = noGrad(() =>
      tidy(() => {
        const f: Tensor = m.encoder.encode(m.tokenizer, texts.slice(s, s + batchSize), { pooling: 'mean', maxLength: 128 });
        const dev = m.adapter.parameters()[0].device;
        return m.adapter.forward(f.device === dev ? f : f.to(dev));
      }),
    );
    out.push(...hostRows(e));
  }
  return out;
}
