// clip.ts: trainClip(), stage 2 of LLM2CLIP: the LLM frozen and its caption features
// cached, a text adapter and the vision encoder trained with the symmetric CLIP loss over
// large batches (the vision tower runs in micro-batches; gradient caching), with a
// learnable, clamped logit scale, atomic checkpoints and exact resume.
import * as fs from 'fs';
import * as path from 'path';
import { fail } from '../errors';
import { noGrad, record } from '../autograd';
import { tensor, getSeedState, setSeedState, manualSeed } from '../creation';
import { cuda } from '../runtime';
import { keep } from '../scope';
import { Tensor } from '../tensor';
import type { DType } from '../dtype';
import * as F from '../functional';
import * as ops from '../ops';
import { AdamW, cosineSchedule } from '../optim';
import { copyInto } from '../nn';
import { LlamaEncoder } from '../models/llama';
import { ClipVisionEncoder } from '../models/clip';
import { clipVisionPreset } from '../models/clip-presets';
import { saveClipVisionPretrained, saveTextAdapter } from '../models/clip-save';
import { TextAdapter } from '../models/adapter';
import { loadImages } from '../models/image';
import { Tokenizer } from '../tokenizer';
import { Rng, RngState } from '../data/rng';
import type { ImageCaptionItem } from '../data/images';
import { mappedTextFeatures, encoderFingerprint } from './feature-cache';
import { disposeCheckpoint, loadLatestCheckpoint, nextTurn, restoreParams, saveCheckpoint } from './checkpoint';
import { NanPolicy, checkNanPolicy, lossesFromJson, nonFiniteError, stepFault } from './nan';
import { gradCache } from './gradcache';
import { Progress, trimLog } from './progress';
import { ensureDir, writeText } from './files';

/** One step's report (onStep, log.jsonl). */
export interface ClipStepInfo {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  lr: number;
  logitScale: number;
  gradNorm: number;
  /** Images per second over this step. */
  throughput: number;
  elapsedMs: number;
  /** True when the step was skipped (non-finite loss or gradient norm, nanPolicy 'skip'): nothing was updated. */
  skipped?: boolean;
}

/** Options of {@link trainClip}. */
export interface TrainClipOptions {
  /** Training images with their captions (see loadImageCaptions / splitByFile). */
  items: ImageCaptionItem[];
  /** The frozen text encoder: a LlamaEncoder or a Hugging Face directory (with tokenizer.json). */
  textModel: string | LlamaEncoder;
  /** A PEFT adapter directory applied to the text encoder (e.g. ccFinetune's adapter/). */
  textAdapterDir?: string;
  tokenizer?: Tokenizer;
  /** The vision encoder: a checkpoint directory, an instance, or a from-scratch preset (default 'tiny'). */
  vision?: string | ClipVisionEncoder | 'tiny' | 'small';
  /** Image size for presets (default the preset's). */
  imageSize?: number;
  /** Shared embedding dim (default 256); a new vision projection and the adapter map to it. */
  embedDim?: number;
  /** Residual blocks of the text adapter (default 4). */
  adapterBlocks?: number;
  epochs?: number;
  /** Images per step (default 256): the loss covers the whole batch. */
  batchSize?: number;
  /** Images per vision forward (default 64): bounds activation memory. */
  microBatch?: number;
  lr?: number;
  /** Warm-up steps (default 5% of all). */
  warmupSteps?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  device?: string;
  dtype?: DType;
  seed?: number;
  /** Where vision/, text_adapter/, metrics.json, log.jsonl, checkpoints/ and cache/ go (default ./llm2clip-clip). */
  outputDir?: string;
  checkpointEvery?: number;
  resume?: boolean;
  /**
   * Where an image has both short and long captions (ImageCaptionItem.kinds), the chance of
   * drawing a long one for a step (default 0.5, as LLM2CLIP); uniform otherwise.
   */
  longCaptionProbability?: number;
  /**
   * Training augmentation (default true): images are preprocessed at 8/7 of the model's
   * size (as "resize 256, crop 224") and each step takes a random size×size crop of each.
   * No flips: captions may say left and right (open_clip does not flip either). false:
   * the centre crop at the model's size, as at evaluation.
   */
  augment?: boolean;
  /**
   * Layer-wise lr decay of the vision tower (default 1: none): block i of L gets
   * lr · layerDecay^(L − i), the embeddings (and pre-norm) lr · layerDecay^(L + 1), the
   * post-norm, the projection, the adapter and the logit scale lr (BEiT / EVA-CLIP).
   */
  layerDecay?: number;
  onStep?: (info: ClipStepInfo) => void;
  signal?: AbortSignal;
  progress?: boolean;
  /**
   * A NaN / Infinity loss or gradient norm: 'stop' (default) throws Llm2ClipError
   * NON_FINITE and writes nothing (the last good checkpoint stays; resume: true continues
   * from it); 'skip' leaves parameters, logit scale and optimizer state as they were,
   * counts the step in skippedSteps and logs it with skipped: true (its loss is NaN in losses).
   */
  nanPolicy?: NanPolicy;
}

/** What {@link trainClip} returns. */
export interface TrainClipResult {
  vision: ClipVisionEncoder;
  adapter: TextAdapter;
  /** exp of the final learnable logit scale. */
  logitScale: number;
  losses: number[];
  steps: number;
  /** Steps skipped for a non-finite loss or gradient norm (nanPolicy 'skip'). */
  skippedSteps: number;
  aborted: boolean;
  outputDir: string;
  /** Whether the caption features came from the cache. */
  featuresReused: boolean;
  elapsedMs: number;
}

const LN_MAX_SCALE = Math.log(100);

/** exp(x) of a one-element tensor, differentiable (for the learnable logit scale). */
function expScalar(x: Tensor): Tensor {
  const v = Math.exp(noGrad(() => x.item()));
  const y = tensor([v], [], { device: x.device });
  return record('exp', y, [x], [], (g) => [ops.scale(g, v)]);
}

/**
 * Stage 2 of LLM2CLIP: trains a vision encoder and a text adapter on top of a frozen,
 * caption-fine-tuned LLM whose caption features are extracted once and cached.
 */
export async function trainClip(options: TrainClipOptions): Promise<TrainClipResult> {
  const t0 = Date.now();
  if (!options || !Array.isArray(options.items) || options.items.length < 2) fail('INVALID_ARGUMENT', 'trainClip: options.items must list at least 2 images');
  const items = options.items;
  for (const [i, it] of items.entries())
    if (!it || typeof it.image !== 'string' || !Array.isArray(it.captions) || it.captions.length === 0)
      fail('INVALID_ARGUMENT', `trainClip: items[${i}] needs an image path and at least one caption`);
  const device = options.device ?? (cuda.isAvailable() ? 'cuda' : 'cpu');
  const dtype: DType = options.dtype ?? (device.startsWith('cuda') ? 'bfloat16' : 'float32');
  const seed = options.seed ?? 0;
  const outDir = path.resolve(options.outputDir ?? 'llm2clip-clip');
  const ckDir = path.join(outDir, 'checkpoints');
  const embedDim = options.embedDim ?? 256;
  const B = Math.min(options.batchSize ?? 256, items.length);
  const micro = options.microBatch ?? 64;
  const epochs = options.epochs ?? 10;
  for (const [k, v] of [['batchSize', B], ['microBatch', micro], ['epochs', epochs], ['embedDim', embedDim]] as const)
    if (!Number.isSafeInteger(v) || v < 1) fail('INVALID_ARGUMENT', `trainClip: options.${k} must be a positive integer (got ${String(v)})`);
  const nanPolicy = checkNanPolicy(options.nanPolicy, 'trainClip');
  ensureDir(outDir, 'trainClip: options.outputDir');
  manualSeed(seed);

  // ---- text features (frozen encoder, cached)
  let encoder: LlamaEncoder;
  let tokenizer: Tokenizer;

  if (typeof options.textModel === 'string') {
    encoder = await LlamaEncoder.fromPretrained(options.textModel, { device, dtype, lmHead: false });
    tokenizer = options.tokenizer ?? Tokenizer.fromDir(options.textModel);
  } else {
    encoder = options.textModel;
    if (!options.tokenizer) fail('INVALID_ARGUMENT', 'trainClip: pass options.tokenizer with a LlamaEncoder');
    tokenizer = options.tokenizer;
  }
  if (options.textAdapterDir) await encoder.loadLora(options.textAdapterDir);
  const modelId = encoderFingerprint(encoder);
  const texts: string[] = [];
  const textIndex = new Map<string, number>();
  // Per image, the indices of its short and its long captions (all short without kinds).
  const kindOf = (it: ImageCaptionItem, j: number): 'short' | 'long' => (it.kinds && it.kinds.length === it.captions.length ? it.kinds[j] : 'short');
  const capIds = items.map((it) =>
    it.captions.map((c) => {
      let k = textIndex.get(c);
      if (k === undefined) {
        k = texts.length;
        textIndex.set(c, k);
        texts.push(c);
      }
      return k;
    }),
  );
  const shortIds = capIds.map((ids, i) => ids.filter((_, j) => kindOf(items[i], j) === 'short'));
  const longIds = capIds.map((ids, i) => ids.filter((_, j) => kindOf(items[i], j) === 'long'));
  const longP = options.longCaptionProbability ?? 0.5;
  if (typeof longP !== 'number' || !(longP >= 0 && longP <= 1)) fail('INVALID_ARGUMENT', `trainClip: options.longCaptionProbability must be in [0, 1] (got ${String(longP)})`);
  // Memory-mapped: rows are paged in as batches touch them, so the feature set need not fit in RAM.
  const feats = await mappedTextFeatures({ encoder, tokenizer, modelId, texts, cacheDir: path.join(outDir, 'cache'), maxLength: 128 });
  const featView = feats.data;
  const hidden = feats.hidden;
  if (typeof options.textModel === 'string') encoder.dispose();

  // ---- vision encoder and adapter
  let vision: ClipVisionEncoder;
  const v = options.vision ?? 'tiny';
  if (v === 'tiny' || v === 'small') vision = new ClipVisionEncoder(clipVisionPreset(v, { imageSize: options.imageSize, projectionDim: embedDim }), { seed, device, dtype });
  else if (typeof v === 'string') vision = await ClipVisionEncoder.fromPretrained(v, { device, dtype });
  else vision = v;
  if (vision.config.projectionDim !== embedDim)
    fail('INVALID_ARGUMENT', `trainClip: the vision encoder projects to ${vision.config.projectionDim}, embedDim is ${embedDim}`);
  const adapter = new TextAdapter(hidden, embedDim, { numBlocks: options.adapterBlocks ?? 4, seed: seed + 1, device, dtype });
  const logitScale = keep(tensor([Math.log(1 / 0.07)], [], { device })).setRequiresGrad(true);
  vision.requiresGrad_(true).train();
  adapter.requiresGrad_(true).train();

  // ---- pixels: decoded and preprocessed once (CPU float32), gathered per micro-batch
  const size = vision.config.imageSize;
  const augment = options.augment ?? true;
  if (typeof augment !== 'boolean') fail('INVALID_ARGUMENT', `trainClip: options.augment must be a boolean (got ${String(augment)})`);
  const full = augment ? Math.round((size * 8) / 7) : size;
  const pixels = await loadImages(items.map((it) => it.image), { size: full });
  const pix: Pixels = { data: pixels.toArray() as Float32Array, full, size };
  pixels.dispose();

  const named: [string, Tensor][] = [
    ...vision.namedParameters().map(([n, t]) => [`vision.${n}`, t] as [string, Tensor]),
    ...adapter.namedParameters().map(([n, t]) => [`adapter.${n}`, t] as [string, Tensor]),
    ['logit_scale', logitScale],
  ];
  const lr = options.lr ?? 5e-4;
  const layerDecay = options.layerDecay ?? 1;
  if (typeof layerDecay !== 'number' || !(layerDecay > 0 && layerDecay <= 1)) fail('INVALID_ARGUMENT', `trainClip: options.layerDecay must be in (0, 1] (got ${String(layerDecay)})`);
  const opt = new AdamW(named, {
    lr, weightDecay: options.weightDecay ?? 0.05, maxGradNorm: options.maxGradNorm ?? 1,
    decay: (n, p) => n !== 'logit_scale' && p.ndim >= 2,
    lrScale: layerDecay === 1 ? undefined : (n) => layerDecayScale(n, vision.config.numHiddenLayers, layerDecay),
  });
  const stepsPerEpoch = Math.floor(items.length / B);
  const total = Math.max(1, epochs * stepsPerEpoch);
  const warm = options.warmupSteps ?? Math.ceil(total * 0.05);

  // ---- resume
  let step = 0;
  let rng = new Rng(seed, 29);
  let order: number[] = [];
  let pos = 0;
  const losses: number[] = [];
  let skippedSteps = 0;
  const ck = options.resume ? await loadLatestCheckpoint(ckDir, ['params', 'optim']) : null;
  if (ck) {
    const st = ck.state as unknown as ClipState;
    step = st.step;
    rng = Rng.fromState(st.rng);
    order = st.order;
    pos = st.pos;
    losses.push(...lossesFromJson(st.losses));
    skippedSteps = st.skippedSteps ?? 0;
    restoreParams(named, ck.tensors.params, 'trainClip resume');
    opt.loadStateDict({ step: st.optimStep, tensors: ck.tensors.optim ?? {} });
    setSeedState(BigInt(st.seedState));
    disposeCheckpoint(ck);
    trimLog(path.join(outDir, 'log.jsonl'), st.losses.length);
  } else writeText(path.join(outDir, 'log.jsonl'), '', 'trainClip');
  const save = async (): Promise<void> => {
    await saveCheckpoint(ckDir, `step-${String(step).padStart(7, '0')}`, {
      state: { step, optimStep: opt.stepCount, rng: rng.state(), order, pos, losses, skippedSteps, seedState: getSeedState().toString() } satisfies ClipState as unknown as Record<string, unknown>,
      tensors: { params: Object.fromEntries(named), optim: opt.stateDict().tensors },
    });
  };

  const progress = new Progress(options.progress !== false);
  progress.start('clip', total, step);
  let aborted = false;
  while (step < total) {
    await nextTurn();
    if (options.signal?.aborted) {
      aborted = true;
      await save();
      break;
    }
    const ts = Date.now();
    if (pos + B > order.length) {
      order = rng.shuffle(Array.from({ length: items.length }, (_, i) => i));
      pos = 0;
    }
    const batch = order.slice(pos, pos + B);
    pos += B;
    // One caption per image: where it has both kinds, a long one with probability
    // longCaptionProbability (0.5), else a short one; uniform within the kind.
    const textRows = new Float32Array(B * hidden);
    batch.forEach((im, r) => {
      const k = pickCaption(rng, shortIds[im], longIds[im], longP);
      textRows.set(featView.subarray(k * hidden, (k + 1) * hidden), r * hidden);
    });
    opt.lr = cosineSchedule(step, { lr, warmupSteps: warm, totalSteps: total });
    // Per image: the crop's corner (0, 0 without augmentation).
    const views = batch.map(() => ({ x: rng.below(full - size + 1), y: rng.below(full - size + 1) }));
    const loss = stepFault({ stage: 'clip', step: step + 1, params: named, optimizer: opt, loss: clipStep(vision, adapter, logitScale, batch, views, pix, textRows, hidden, micro, device) });
    // A non-finite loss: no optimizer step at all; a non-finite gradient norm: the optimizer skipped it.
    const r = Number.isFinite(loss) ? opt.step() : { gradNorm: NaN, skipped: true, step: opt.stepCount };
    opt.zeroGrad();
    if (r.skipped) {
      if (nanPolicy === 'stop') {
        progress.stop();
        opt.dispose();
        logitScale.dispose();
        adapter.dispose();
        if (!(v instanceof ClipVisionEncoder)) vision.dispose(); // ours; a caller's encoder stays theirs
        throw nonFiniteError('trainClip', `step ${step + 1}`, loss, r.gradNorm, ckDir);
      }
      skippedSteps++;
    }
    // Clamp the logit scale to [0, ln 100] (CLIP).
    noGrad(() => {
      const ls = logitScale.item();
      const c = Math.min(LN_MAX_SCALE, Math.max(0, ls));
      if (c !== ls) {
        const t = tensor([c], []);
        copyInto(logitScale, t);
        t.dispose();
      }
    });
    step++;
    losses.push(loss);
    const info: ClipStepInfo = {
      step, totalSteps: total, epoch: Math.floor((step - 1) / Math.max(1, stepsPerEpoch)), loss, lr: opt.lr, logitScale: Math.exp(noGrad(() => logitScale.item())),
      gradNorm: r.gradNorm, throughput: (B * 1000) / Math.max(1, Date.now() - ts), elapsedMs: Date.now() - t0, ...(r.skipped ? { skipped: true } : {}),
    };
    writeText(path.join(outDir, 'log.jsonl'), JSON.stringify(info) + '\n', 'trainClip', true);
    options.onStep?.(info);
    progress.update({ stage: 'clip', step, totalSteps: total, loss, lr: opt.lr, throughput: info.throughput });
    if ((options.checkpointEvery ?? 100) > 0 && step % (options.checkpointEvery ?? 100) === 0 && step < total) await save();
  }
  progress.stop();
  const scaleNow = Math.exp(noGrad(() => logitScale.item()));
  if (!aborted) {
    await save();
    await saveClipVisionPretrained(vision, path.join(outDir, 'vision'));
    await saveTextAdapter(adapter, path.join(outDir, 'text_adapter'));
    writeText(
      path.join(outDir, 'clip_config.json'),
      JSON.stringify({ textModel: typeof options.textModel === 'string' ? path.resolve(options.textModel) : null, textAdapterDir: options.textAdapterDir ? path.resolve(options.textAdapterDir) : null, embedDim, logitScale: scaleNow }, null, 1),
      'trainClip',
    );
    writeText(path.join(outDir, 'metrics.json'), JSON.stringify({ steps: step, finalLoss: losses.at(-1) ?? null, logitScale: scaleNow, skippedSteps, elapsedMs: Date.now() - t0 }, null, 1), 'trainClip');
  }
  opt.dispose();
  vision.eval();
  adapter.eval();
  logitScale.dispose();
  return { vision, adapter, logitScale: scaleNow, losses, steps: losses.length, skippedSteps, aborted, outputDir: outDir, featuresReused: feats.reused, elapsedMs: Date.now() - t0 };
}

interface ClipState {
  step: number;
  optimStep: number;
  rng: RngState;
  order: number[];
  pos: number;
  losses: number[];
  skippedSteps?: number;
  seedState: string;
}


/**
 * One caption index for an image with short captions `short` and long ones `long`: where
 * it has both, a long one with probability pLong, else a short one; uniform within the
 * kind (uniform over all where only one kind exists).
 */
export function pickCaption(rng: Rng, short: readonly number[], long: readonly number[], pLong: number): number {
  const ids = short.length > 0 && long.length > 0 ? (rng.float() < pLong ? long : short) : short.length > 0 ? short : long;
  return ids[rng.below(ids.length)];
}

/**
 * The lr multiplier of a parameter under layer-wise decay d with L vision blocks:
 * `vision.vision_model.encoder.layers.i.*` d^(L − i); the embeddings and the pre-norm
 * d^(L + 1); everything else (post-norm, projection, adapter, logit scale) 1.
 */
export function layerDecayScale(name: string, numLayers: number, d: number): number {
  const m = /^vision\.vision_model\.encoder\.layers\.(\d+)\./.exec(name);
  if (m) return Math.pow(d, numLayers - Number(m[1]));
  if (/^vision\.vision_model\.(embeddings|pre_layrnorm)\./.test(name)) return Math.pow(d, numLayers + 1);
  return 1;
}

/** Preprocessed training pixels: float32 [N, 3, full, full], cropped to size × size per step. */
interface Pixels {
  data: Float32Array;
  full: number;
  size: number;
}

/** A crop of one image: its top-left corner in the full image. */
interface View {
  x: number;
  y: number;
}

/** The crops `views` of images `idx` as a [n, 3, size, size] batch on `device`. */
export function gatherPixels(pix: Pixels, idx: readonly number[], views: readonly View[], device: string): Tensor {
  const { data, full, size } = pix;
  const out = new Float32Array(idx.length * 3 * size * size);
  idx.forEach((im, r) => {
    const v = views[r];
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < size; y++) {
        const src = ((im * 3 + c) * full + y + v.y) * full + v.x;
        const dst = ((r * 3 + c) * size + y) * size;
        out.set(data.subarray(src, src + size), dst);
      }
  });
  return tensor(out, [idx.length, 3, size, size], { device });
}

/**
 * One CLIP step with gradient caching: image embeddings of the whole batch computed in
 * micro-batches without a graph, the symmetric InfoNCE over the whole batch (its gradient
 * reaches the adapter and the logit scale directly), then each micro-batch re-run with the
 * graph and its slice of the embedding gradient. Returns the loss.
 */
function clipStep(
  vision: ClipVisionEncoder, adapter: TextAdapter, logitScale: Tensor, batch: number[], views: View[], pix: Pixels,
  textRows: Float32Array, hidden: number, micro: number, device: string,
): number {
  const B = batch.length;
  const images = { n: B, embed: (s: number, e: number) => vision.forward(gatherPixels(pix, batch.slice(s, e), views.slice(s, e), device)).embeds! };
  return gradCache([images], micro, ([img]) => {
    const txt = adapter.forward(tensor(textRows, [B, hidden], { device }));
    return F.infoNCE(F.l2Normalize(img), F.l2Normalize(txt), { scale: expScalar(logitScale), symmetric: true });
  });
}
