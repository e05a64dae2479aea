// cc.ts: ccFinetune(), stage 1 of LLM2CLIP: caption-contrastive fine-tuning of an LLM
// encoder (LLM2Vec): an optional masked next-token prediction (MNTP) stage, then
// supervised SimCSE with LoRA over caption pairs of the same image, with GradCache-style
// large batches, atomic checkpoints and exact resume.
import * as fs from 'fs';
import * as path from 'path';
import { fail } from '../errors';
import { tensor, getSeedState, setSeedState, manualSeed } from '../creation';
import { cuda } from '../runtime';
import { tidy } from '../scope';
import { Tensor } from '../tensor';
import type { DType } from '../dtype';
import * as F from '../functional';
import { AdamW } from '../optim';
import { LlamaEncoder, LlamaPooling } from '../models/llama';
import { saveLlamaPretrained, tinyLlamaConfig, TinyLlamaSizes } from '../models/llama-save';
import { Tokenizer, trainBpeTokenizer } from '../tokenizer';
import { loadCaptionsSplit } from '../data/captions';
import type { CaptionDataset, CaptionFormat, CaptionSplit } from '../data/types';
import { PairSampler, PairSamplerState } from '../data/pairs';
import { Rng, RngState } from '../data/rng';
import { disposeCheckpoint, loadLatestCheckpoint, nextTurn, restoreParams, saveCheckpoint } from './checkpoint';
import { NanPolicy, checkNanPolicy, lossesFromJson, nonFiniteError, stepFault } from './nan';
import { gradCache } from './gradcache';
import { Progress, trimLog } from './progress';
import { ensureDir, writeText } from './files';

/** The LLM2CLIP / LLM2Vec default query instruction (attended, not pooled). */
export const DEFAULT_CC_INSTRUCTION = 'Given a caption, retrieve a caption of the same image: ';

/** One training step's report (onStep, log.jsonl). */
export interface CcStepInfo {
  stage: 'mntp' | 'simcse';
  step: number;
  totalSteps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** Sequences (MNTP) or pairs (SimCSE) per second over this step. */
  throughput: number;
  elapsedMs: number;
  /** True when the step was skipped (non-finite loss or gradient norm, nanPolicy 'skip'): nothing was updated. */
  skipped?: boolean;
}

/** Options of {@link ccFinetune}. Every field but data has a default. */
export interface CcFinetuneOptions {
  /**
   * A Hugging Face directory (config.json, safetensors, tokenizer.json), a LlamaEncoder
   * (pass its tokenizer too), or a from-scratch preset: 'tiny' (default) or 'small'.
   */
  model?: string | LlamaEncoder | 'tiny' | 'small';
  /** Overrides of the preset's sizes (hiddenSize, numHiddenLayers, vocabSize, ...). */
  presetSizes?: Partial<TinyLlamaSizes>;
  /** The tokenizer: a Tokenizer, or a tokenizer.json path (default: the model directory's; presets learn one). */
  tokenizer?: Tokenizer | string;
  /** Caption source: a file (any format of loadCaptions) or a loaded dataset. */
  data: string | CaptionDataset;
  format?: CaptionFormat;
  /** Split of the source to train on (default: 'train' where the source has splits). */
  split?: CaptionSplit;
  /** Query instruction (LLM2Vec; attended but not pooled); default {@link DEFAULT_CC_INSTRUCTION}, '' (none) for presets. */
  instruction?: string;
  pooling?: LlamaPooling;
  /** Longest sequence in tokens (default 64). */
  maxLength?: number;
  /** MNTP steps (default: 0 for a given model, 1 epoch of captions for a preset). */
  mntpSteps?: number;
  mntpBatchSize?: number;
  mntpLr?: number;
  /** Fraction of tokens masked (default 0.2). */
  mntpMaskRatio?: number;
  /** SimCSE steps (default: one pass over the images; presets 700). */
  steps?: number;
  /** Pairs per SimCSE step (default 128; presets 64). */
  batchSize?: number;
  /** Sequences per forward chunk (GradCache; default 64): bounds activation memory. */
  chunkSize?: number;
  /** SimCSE learning rate (default 2e-4; presets 5e-3). */
  lr?: number;
  /** Warm-up steps of each stage (default 10% of it). */
  warmupSteps?: number;
  weightDecay?: number;
  /** Logit scale of the InfoNCE over cosine similarities (default 50: temperature 0.02; presets 20). */
  scale?: number;
  /** Add a hard negative (a caption of another image) per pair (default true; presets false). */
  hardNegatives?: boolean;
  lora?: { r?: number; alpha?: number; dropout?: number; targets?: string[] };
  /** Default 'cuda' when available, else 'cpu'. */
  device?: string;
  /** Parameter dtype (default bfloat16 on CUDA, float32 on the CPU). */
  dtype?: DType;
  seed?: number;
  /** Where base/, adapter/, log.jsonl, metrics.json and checkpoints/ go (default ./llm2clip-cc). */
  outputDir?: string;
  /** Checkpoint every N steps (default 100; 0: only at the end and on abort). */
  checkpointEvery?: number;
  /** Continue from outputDir/checkpoints (default false). */
  resume?: boolean;
  onStep?: (info: CcStepInfo) => void;
  /** Called with the base encoder (after MNTP, before LoRA) e.g. to measure CRA before fine-tuning. */
  onBaseReady?: (encoder: LlamaEncoder, tokenizer: Tokenizer) => void | Promise<void>;
  signal?: AbortSignal;
  /** Progress bar on a TTY, JSON lines otherwise; false: silent (default true). */
  progress?: boolean;
  /**
   * A NaN / Infinity loss or gradient norm: 'stop' (default) throws Llm2ClipError
   * NON_FINITE and writes nothing (the last good checkpoint stays; resume: true continues
   * from it); 'skip' leaves parameters and optimizer state as they were, counts the step
   * in skippedSteps and logs it with skipped: true (its loss is NaN in losses).
   */
  nanPolicy?: NanPolicy;
}

/** What {@link ccFinetune} returns. */
export interface CcFinetuneResult {
  /** The fine-tuned encoder (LoRA attached, not merged) and its tokenizer. */
  encoder: LlamaEncoder;
  tokenizer: Tokenizer;
  outputDir: string;
  /** outputDir/base when the base encoder was written (from scratch or after MNTP), else the input directory. */
  baseDir: string | null;
  adapterDir: string;
  mntpSteps: number;
  steps: number;
  mntpLosses: number[];
  losses: number[];
  /** Steps (MNTP and SimCSE) skipped for a non-finite loss or gradient norm (nanPolicy 'skip'). */
  skippedSteps: number;
  aborted: boolean;
  elapsedMs: number;
}

const PRESETS = {
  tiny: { hiddenSize: 256, intermediateSize: 688, numHiddenLayers: 4, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: 4096 },
  small: { hiddenSize: 384, intermediateSize: 1024, numHiddenLayers: 6, numAttentionHeads: 6, numKeyValueHeads: 2, vocabSize: 8192 },
} as const;
/** The sizes of ccFinetune's from-scratch presets ('tiny', 'small'); bench/train-step.ts times steps of them. */
export const CC_PRESETS = PRESETS;

const MASK_NAMES = ['<|mask|>', '<mask>', '[MASK]', '_'];

function checkPosInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) fail('INVALID_ARGUMENT', `ccFinetune: options.${name} must be a positive integer (got ${String(v)})`);
  return v;
}

function linearLr(step: number, total: number, warmup: number, lr: number): number {
  if (step < warmup) return (lr * (step + 1)) / warmup;
  return lr * Math.max(0, (total - step) / Math.max(1, total - warmup));
}

/** Mean of rows of ids, mask to per-row embeddings (differentiable). */
function embed(encoder: LlamaEncoder, ids: Tensor, mask: Tensor, embedMask: Tensor, pooling: LlamaPooling): Tensor {
  return tidy(() => encoder.pool(encoder.forward(ids, mask), embedMask, pooling));
}

interface Encoded {
  ids: Int32Array;
  mask: Int32Array;
  embed: Int32Array;
  S: number;
  n: number;
}

function encodeRows(tok: Tokenizer, texts: string[], instruction: string, maxLength: number): Encoded {
  const b = tidy(() => {
    const r = tok.encodeWithInstruction(texts.map((text) => ({ instruction, text })), { maxLength, padding: 'right' });
    return [r.inputIds.toArray() as Int32Array, r.attentionMask.toArray() as Int32Array, r.embedMask.toArray() as Int32Array, r.inputIds.shape[1]] as const;
  });
  return { ids: b[0], mask: b[1], embed: b[2], S: b[3], n: texts.length };
}

function rowsTensor(e: Encoded, which: 'ids' | 'mask' | 'embed', start: number, end: number, device: string): Tensor {
  return tensor(e[which].subarray(start * e.S, end * e.S), [end - start, e.S], { dtype: 'int32', device });
}

/**
 * Stage 1 of LLM2CLIP: fine-tunes an LLM encoder so that captions of the same image embed
 * close together. See {@link CcFinetuneOptions} for the recipe and its defaults.
 */
export async function ccFinetune(options: CcFinetuneOptions): Promise<CcFinetuneResult> {
  const t0 = Date.now();
  if (!options || typeof options !== 'object') fail('INVALID_ARGUMENT', 'ccFinetune(options): an options object is required');
  if (options.data === undefined) fail('INVALID_ARGUMENT', 'ccFinetune: options.data (a caption file or dataset) is required');
  const device = options.device ?? (cuda.isAvailable() ? 'cuda' : 'cpu');
  const dtype: DType = options.dtype ?? (device.startsWith('cuda') ? 'bfloat16' : 'float32');
  const seed = options.seed ?? 0;
  const outDir = path.resolve(options.outputDir ?? 'llm2clip-cc');
  const ckDir = path.join(outDir, 'checkpoints');
  const modelOpt = options.model ?? 'tiny';
  const preset = modelOpt === 'tiny' || modelOpt === 'small' ? modelOpt : null;
  const isPreset = preset !== null;
  // A from-scratch model follows no instruction and starts from a weak representation:
  // its defaults (see CcFinetuneOptions) differ from the pretrained-LLM recipe.
  const instruction = options.instruction ?? (isPreset ? '' : DEFAULT_CC_INSTRUCTION);
  const pooling = options.pooling ?? 'mean';
  const maxLength = checkPosInt('maxLength', options.maxLength ?? 64);
  const scale = options.scale ?? (isPreset ? 20 : 50);
  const hardNeg = options.hardNegatives ?? !isPreset;
  const every = options.checkpointEvery ?? 100;
  const nanPolicy = checkNanPolicy(options.nanPolicy, 'ccFinetune');
  ensureDir(outDir, 'ccFinetune: options.outputDir');

  // ---- data
  const dataset = typeof options.data === 'string'
    ? await loadCaptionsSplit(options.data, { format: options.format, split: options.split }, 'train')
    : options.data;
  const captions = dataset.images.flatMap((im) => im.captions);
  if (dataset.pairs) for (const p of dataset.pairs) captions.push(p.anchor, p.positive, ...(p.negative ? [p.negative] : []));
  if (captions.length < 2) fail('INVALID_ARGUMENT', `ccFinetune: the data (${dataset.source}) holds ${captions.length} captions; at least 2 are needed`);

  // ---- resume?
  const ck = options.resume ? await loadLatestCheckpoint(ckDir, ['params', 'optim']) : null;
  if (options.resume && !ck && options.progress !== false) process.stderr.write(`ccFinetune: no checkpoint in ${ckDir}; starting fresh\n`);

  // ---- tokenizer and model
  manualSeed(seed);
  let tokenizer: Tokenizer;
  let encoder: LlamaEncoder;
  const tokFile = path.join(outDir, 'tokenizer.json');
  if (options.tokenizer instanceof Tokenizer) tokenizer = options.tokenizer;
  else if (typeof options.tokenizer === 'string') tokenizer = Tokenizer.fromFile(options.tokenizer);
  else if (preset) {
    if (ck && fs.existsSync(tokFile)) tokenizer = Tokenizer.fromFile(tokFile);
    else {
      tokenizer = trainBpeTokenizer(captions, { vocabSize: options.presetSizes?.vocabSize ?? PRESETS[preset].vocabSize, specialTokens: ['<|bos|>', '<|eos|>', '<|pad|>', '<|mask|>'] });
      tokenizer.save(tokFile);
    }
  } else if (typeof modelOpt === 'string') tokenizer = Tokenizer.fromDir(modelOpt);
  else fail('INVALID_ARGUMENT', 'ccFinetune: pass options.tokenizer with a LlamaEncoder model');

  const mntpSteps = options.mntpSteps ?? (preset ? Math.ceil(captions.length / (options.mntpBatchSize ?? 64)) : 0);
  const ckState = ck?.state as CcState | undefined;
  const resumeInSimcse = !!ckState && ckState.stage === 'simcse';
  const baseDir = path.join(outDir, 'base');
  let wroteBase = false;
  if (resumeInSimcse && ckState!.baseWritten) {
    encoder = await LlamaEncoder.fromPretrained(baseDir, { device, dtype, lmHead: false });
    wroteBase = true;
  } else if (preset) {
    const p = { ...PRESETS[preset], ...options.presetSizes };
    encoder = new LlamaEncoder(tinyLlamaConfig({ ...p, vocabSize: tokenizer.vocabSize, bosTokenId: tokenizer.bosId, eosTokenId: tokenizer.eosId, padTokenId: tokenizer.padId }), { seed, device, dtype });
  } else if (typeof modelOpt === 'string') encoder = await LlamaEncoder.fromPretrained(modelOpt, { device, dtype });
  else encoder = modelOpt as LlamaEncoder;
  encoder.train();

  const progress = new Progress(options.progress !== false);
  const logFile = path.join(outDir, 'log.jsonl');
  if (!ck) writeText(logFile, '', 'ccFinetune');
  else trimLog(logFile, ckState!.mntpLosses.length + ckState!.losses.length);
  const log = (info: CcStepInfo) => {
    writeText(logFile, JSON.stringify(info) + '\n', 'ccFinetune', true);
    options.onStep?.(info);
    progress.update(info);
  };
  let aborted = false;
  const mntpLosses: number[] = ckState ? lossesFromJson(ckState.mntpLosses) : [];
  const losses: number[] = ckState ? lossesFromJson(ckState.losses) : [];
  let skippedSteps = ckState?.skippedSteps ?? 0;
  /** nanPolicy for a step whose loss or gradient norm is not finite; true when it is skipped. */
  const nonFinite = (loss: number, r: { gradNorm: number; skipped: boolean }, where: string, cleanup: () => void): boolean => {
    if (Number.isFinite(loss) && !r.skipped) return false;
    if (nanPolicy === 'stop') {
      progress.stop();
      cleanup();
      disposeCheckpoint(ck);
      if (!(modelOpt instanceof LlamaEncoder)) encoder.dispose(); // ours (a preset or loaded here); a caller's model stays theirs
      throw nonFiniteError('ccFinetune', where, loss, r.gradNorm, ckDir);
    }
    skippedSteps++;
    return true;
  };
  /** The optimizer step, unless the loss is already non-finite (then nothing is updated). */
  const optStep = (opt: AdamW, loss: number) => (Number.isFinite(loss) ? opt.step() : { gradNorm: NaN, skipped: true, step: opt.stepCount });

  // ---- stage 1: MNTP
  const maskId = findMaskId(tokenizer);
  if (mntpSteps > 0 && !resumeInSimcse) {
    const fromScratch = !!preset;
    if (!fromScratch) encoder.withLora({ r: options.lora?.r ?? 16, alpha: options.lora?.alpha ?? 32, dropout: options.lora?.dropout ?? 0.05, seed: seed + 1 });
    else encoder.requiresGrad_(true);
    const named = encoder.namedParameters().filter(([, t]) => t.requiresGrad);
    const lr = options.mntpLr ?? (fromScratch ? 1e-3 : 5e-5);
    const opt = new AdamW(named, { lr, weightDecay: 0.01, maxGradNorm: 1 });
    const B = checkPosInt('mntpBatchSize', options.mntpBatchSize ?? 64);
    const warm = options.warmupSteps ?? Math.ceil(mntpSteps * 0.1);
    let step = 0;
    const rng = ckState?.mntpRng ? Rng.fromState(ckState.mntpRng) : new Rng(seed, 17);
    let order = ckState?.mntpOrder ?? null;
    let pos = ckState?.mntpPos ?? 0;
    if (ckState && ckState.stage === 'mntp') {
      step = ckState.step;
      restoreParams(named, ck!.tensors.params, 'ccFinetune resume');
      opt.loadStateDict({ step: ckState.optimStep, tensors: ck!.tensors.optim ?? {} });
      setSeedState(BigInt(ckState.seedState));
      disposeCheckpoint(ck);
    }
    const ratio = options.mntpMaskRatio ?? 0.2;
    progress.start('mntp', mntpSteps, step);
    const save = async (): Promise<void> => {
      await saveCheckpoint(ckDir, `mntp-${String(step).padStart(7, '0')}`, {
        state: { stage: 'mntp', step, optimStep: opt.stepCount, seedState: getSeedState().toString(), mntpRng: rng.state(), mntpOrder: order, mntpPos: pos, mntpLosses, losses, skippedSteps, baseWritten: false } satisfies CcState,
        tensors: { params: Object.fromEntries(named), optim: opt.stateDict().tensors },
      });
    };
    while (step < mntpSteps) {
      await nextTurn();
      if (options.signal?.aborted) { aborted = true; await save(); break; }
      const ts = Date.now();
      if (!order || pos >= order.length) {
        order = rng.shuffle(Array.from({ length: captions.length }, (_, i) => i));
        pos = 0;
      }
      const texts = order.slice(pos, pos + B).map((i) => captions[i]);
      pos += B;
      const enc = encodeRows(tokenizer, texts, '', maxLength);
      const { ids, labels } = mntpMask(enc, ratio, rng, maskId, tokenizer.vocabSize, tokenizer);
      opt.lr = linearLr(step, mntpSteps, warm, lr);
      const loss = stepFault({ stage: 'mntp', step: step + 1, params: named, optimizer: opt, loss: tidy(() => {
        const it = tensor(ids, [enc.n, enc.S], { dtype: 'int32', device });
        const mt = rowsTensor(enc, 'mask', 0, enc.n, device);
        const lt = tensor(labels, [enc.n, enc.S], { dtype: 'int32', device });
        const l = encoder.mntpLoss(encoder.forward(it, mt), lt);
        const v = l.item();
        l.backward();
        return v;
      }) });
      const r = optStep(opt, loss);
      opt.zeroGrad();
      const skipped = nonFinite(loss, r, `MNTP step ${step + 1}`, () => opt.dispose());
      step++;
      mntpLosses.push(loss);
      log({ stage: 'mntp', step, totalSteps: mntpSteps, loss, lr: opt.lr, gradNorm: r.gradNorm, throughput: (B * 1000) / Math.max(1, Date.now() - ts), elapsedMs: Date.now() - t0, ...(skipped ? { skipped } : {}) });
      if (every > 0 && step % every === 0 && step < mntpSteps) await save();
    }
    progress.stop();
    opt.dispose();
    if (!aborted) {
      if (!fromScratch) encoder.mergeAndUnloadLora();
      encoder.requiresGrad_(false);
    }
  }
  const needBase = !aborted && !resumeInSimcse && (!!preset || mntpSteps > 0);
  if (needBase) {
    await saveLlamaPretrained(encoder, baseDir, tokenizer);
    wroteBase = true;
  }

  if (!aborted && options.onBaseReady) {
    encoder.eval();
    await options.onBaseReady(encoder, tokenizer);
    encoder.train();
  }

  // ---- stage 2: supervised SimCSE with LoRA, GradCache batches
  const defaultBatch = preset ? 64 : 128;
  const steps = options.steps ?? (preset ? 700 : Math.max(1, Math.floor(Math.max(dataset.images.length, dataset.pairs?.length ?? 0) / defaultBatch)));
  if (!aborted) {
    encoder.requiresGrad_(false);
    const loraOpts = { r: options.lora?.r ?? 16, alpha: options.lora?.alpha ?? 32, dropout: options.lora?.dropout ?? 0.05, seed: seed + 2 };
    encoder.withLora(loraOpts as Parameters<LlamaEncoder['withLora']>[0]);
    const named = encoder.namedParameters().filter(([, t]) => t.requiresGrad);
    const lr = options.lr ?? (preset ? 5e-3 : 2e-4);
    const opt = new AdamW(named, { lr, weightDecay: options.weightDecay ?? 0.01, maxGradNorm: 1 });
    const B = checkPosInt('batchSize', options.batchSize ?? defaultBatch);
    const chunk = checkPosInt('chunkSize', options.chunkSize ?? 64);
    const warm = options.warmupSteps ?? Math.ceil(steps * 0.1);
    let sampler = new PairSampler(dataset, { seed, hardNegatives: hardNeg });
    let step = 0;
    if (resumeInSimcse) {
      step = ckState!.step;
      restoreParams(named, ck!.tensors.params, 'ccFinetune resume');
      opt.loadStateDict({ step: ckState!.optimStep, tensors: ck!.tensors.optim ?? {} });
      sampler = PairSampler.fromState(dataset, { seed, hardNegatives: hardNeg }, ckState!.sampler as PairSamplerState);
      setSeedState(BigInt(ckState!.seedState));
      disposeCheckpoint(ck);
    }
    const save = async (): Promise<void> => {
      await saveCheckpoint(ckDir, `simcse-${String(step).padStart(7, '0')}`, {
        state: { stage: 'simcse', step, optimStep: opt.stepCount, seedState: getSeedState().toString(), sampler: sampler.state(), mntpLosses, losses, skippedSteps, baseWritten: wroteBase } satisfies CcState,
        tensors: { params: Object.fromEntries(named), optim: opt.stateDict().tensors },
      });
    };
    // maxLength bounds the caption; the instruction's tokens come on top (a long instruction
    // must not truncate the text away: its pooled embedding would be empty).
    const instLen = instruction ? tokenizer.encode(instruction.trim() + ' ', { addSpecialTokens: false }).length : 0;
    progress.start('simcse', steps, step);
    while (step < steps) {
      await nextTurn();
      if (options.signal?.aborted) { aborted = true; await save(); break; }
      const ts = Date.now();
      const pairs = sampler.nextBatch(B);
      const q = encodeRows(tokenizer, pairs.map((p) => p.anchor), instruction, maxLength + instLen);
      const docs = [...pairs.map((p) => p.positive), ...(hardNeg ? pairs.filter((p) => p.negative).map((p) => p.negative!) : [])];
      const d = encodeRows(tokenizer, docs, '', maxLength);
      opt.lr = linearLr(step, steps, warm, lr);
      const loss = stepFault({
        stage: 'simcse', step: step + 1, params: named, optimizer: opt,
        loss: gradCacheStep(encoder, [q, d], chunk, pooling, device, (reps) => F.infoNCE(F.l2Normalize(reps[0]), F.l2Normalize(reps[1]), { scale })),
      });
      const r = optStep(opt, loss);
      opt.zeroGrad();
      const skipped = nonFinite(loss, r, `SimCSE step ${step + 1}`, () => opt.dispose());
      step++;
      losses.push(loss);
      log({ stage: 'simcse', step, totalSteps: steps, loss, lr: opt.lr, gradNorm: r.gradNorm, throughput: (pairs.length * 1000) / Math.max(1, Date.now() - ts), elapsedMs: Date.now() - t0, ...(skipped ? { skipped } : {}) });
      if (every > 0 && step % every === 0 && step < steps) await save();
    }
    progress.stop();
    if (!aborted) await save();
    opt.dispose();
  }

  const adapterDir = path.join(outDir, 'adapter');
  if (!aborted) {
    await encoder.saveLora(adapterDir, { baseModelNameOrPath: wroteBase ? baseDir : typeof modelOpt === 'string' && !preset ? modelOpt : null });
    writeText(
      path.join(outDir, 'metrics.json'),
      JSON.stringify({ mntpSteps: mntpLosses.length, steps: losses.length, finalMntpLoss: mntpLosses.at(-1) ?? null, finalLoss: losses.at(-1) ?? null, skippedSteps, elapsedMs: Date.now() - t0 }, null, 1),
      'ccFinetune',
    );
  }
  disposeCheckpoint(ck);
  encoder.eval();
  return {
    encoder, tokenizer, outputDir: outDir, baseDir: wroteBase ? baseDir : typeof modelOpt === 'string' && !preset ? modelOpt : null, adapterDir,
    mntpSteps: mntpLosses.length, steps: losses.length, mntpLosses, losses, skippedSteps, aborted, elapsedMs: Date.now() - t0,
  };
}

interface CcState {
  stage: 'mntp' | 'simcse';
  step: number;
  optimStep: number;
  seedState: string;
  mntpRng?: RngState;
  mntpOrder?: number[] | null;
  mntpPos?: number;
  sampler?: unknown;
  mntpLosses: number[];
  losses: number[];
  skippedSteps?: number;
  baseWritten: boolean;
}





function findMaskId(tok: Tokenizer): number {
  for (const n of MASK_NAMES) {
    const id = tok.tokenToId(n);
    if (id !== null && id !== undefined) return id;
  }
  return tok.padId ?? tok.eosId ?? 0;
}

/**
 * BERT-style masking for MNTP: ratio of the text tokens (never special or padding tokens)
 * are chosen; 80% become the mask token, 10% a random token, 10% stay. labels hold the
 * original token at chosen positions, -100 elsewhere.
 */
function mntpMask(e: Encoded, ratio: number, rng: Rng, maskId: number, vocab: number, tok: Tokenizer): { ids: Int32Array; labels: Int32Array } {
  const ids = e.ids.slice();
  const labels = new Int32Array(ids.length).fill(-100);
  const special = new Set([tok.bosId, tok.eosId, tok.padId].filter((v): v is number => v !== null));
  for (let i = 0; i < ids.length; i++) {
    if (!e.mask[i] || special.has(ids[i])) continue;
    if (rng.float() >= ratio) continue;
    labels[i] = ids[i];
    const u = rng.float();
    if (u < 0.8) ids[i] = maskId;
    else if (u < 0.9) ids[i] = rng.below(vocab);
  }
  return { ids, labels };
}

/** One GradCache step of the encoder over groups of encoded rows (see {@link gradCache}). */
export function gradCacheStep(
  encoder: LlamaEncoder, groups: Encoded[], chunk: number, pooling: LlamaPooling, device: string, lossFn: (reps: Tensor[]) => Tensor,
): number {
  return gradCache(
    groups.map((g) => ({
      n: g.n,
      embed: (s: number, e: number) => embed(encoder, rowsTensor(g, 'ids', s, e, device), rowsTensor(g, 'mask', s, e, device), rowsTensor(g, 'embed', s, e, device), pooling),
    })),
    chunk,
    lossFn,
  );
}
