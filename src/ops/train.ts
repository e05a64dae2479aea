// ops/train.ts: the training support ops, each a forward / backward pair for the autograd
// built on top: embedding, cross-entropy fused with the output projection (chunked over the
// vocabulary), a fused AdamW step with global gradient clipping, layout ops (permute,
// transpose, concat / split, slice) and ViT patchify. Validates in TypeScript (typed errors
// naming the op, the argument and its shape), then makes one native call.
import type { NativeStorage } from '../binding';
import { fail } from '../errors';
import { Tensor, shapeStr } from '../tensor';
import { checkFloat, checkInt, checkNumber, checkSameDevice, checkTensor, desc, nativeOps, withOutputs } from './util';

type T3 = [NativeStorage, number, number[]];

interface TrainNative {
  embeddingForward(weight: T3, ids: T3, out: T3): void;
  embeddingBackward(dy: T3, ids: T3, dweight: T3, paddingIdx: number): void;
  crossEntropyForward(
    hidden: T3, weight: T3, bias: T3 | null, targets: T3, loss: T3, lse: T3,
    ignoreIndex: number, reduction: number, chunkSize: number,
  ): void;
  crossEntropyBackward(
    hidden: T3, weight: T3, bias: T3 | null, targets: T3, lse: T3, dhidden: T3, dweight: T3 | null,
    dbias: T3 | null, ignoreIndex: number, reduction: number, chunkSize: number, gradLoss: number,
  ): void;
  adamw(
    params: T3[], grads: T3[], expAvg: T3[], expAvgSq: T3[], master: (T3 | null)[] | null,
    decay: boolean[] | null, lr: number, beta1: number, beta2: number, eps: number,
    weightDecay: number, step: number, maxGradNorm: number,
  ): [number, boolean];
  gradNorm(grads: T3[]): number;
  permute(x: T3, out: T3, dims: number[]): void;
  concat(parts: T3[], whole: T3, dim: number): void;
  split(whole: T3, parts: T3[], dim: number): void;
  sliceForward(whole: T3, part: T3, dim: number, start: number): void;
  sliceBackward(whole: T3, part: T3, dim: number, start: number): void;
  patchifyForward(images: T3, patches: T3, patchSize: number): void;
  patchifyBackward(images: T3, patches: T3, patchSize: number): void;
}
const native = nativeOps<TrainNative>();

const INT32_MAX = 2147483647;

/** t's native triple seen with another shape of the same size (no new Tensor handle). */
function natAs(t: Tensor, shape: number[], what: string): T3 {
  const [st, dt] = t.nat(what);
  return [st, dt, shape];
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function checkIds(op: string, ids: Tensor): void {
  if (ids.dtype !== 'int32') fail('DTYPE_MISMATCH', `${op}: ${desc('ids', ids)} must be int32`);
  if (ids.ndim > 7) fail('SHAPE_MISMATCH', `${op}: ${desc('ids', ids)} has more than 7 dims`);
}

// ---------------------------------------------------------------- embedding

/**
 * Embedding lookup: `out[..., :] = weight[ids[...], :]`.
 * @param weight float table `[V,H]` (float32, bfloat16 or float16).
 * @param ids int32 ids of any shape `[...]`, each in `[0, V)`; an id outside gives
 *   INVALID_ARGUMENT naming the first one and its position (nothing is written).
 * @returns `[..., H]` of weight's dtype.
 */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  const op = 'embedding';
  checkTensor(weight, op, 'weight');
  checkTensor(ids, op, 'ids');
  checkSameDevice(op, { weight, ids });
  checkFloat(op, 'weight', weight);
  if (weight.ndim !== 2) fail('SHAPE_MISMATCH', `${op}: ${desc('weight', weight)} must be 2-D [V,H]`);
  checkIds(op, ids);
  const [out] = withOutputs([Tensor.empty([...ids.shape, weight.shape[1]], weight.dtype, weight.deviceInfo)], (o) =>
    native.embeddingForward(weight.nat(), ids.nat(), o.nat()),
  );
  return out;
}

/** Options of {@link embeddingBackward}. */
export interface EmbeddingBackwardOptions {
  /** A row that gets no gradient (its dWeight row is zero); negative counts from the end, as in PyTorch. */
  paddingIdx?: number | null;
}

/**
 * Gradient of {@link embedding} with respect to the table: `dWeight[v] = Σ dy[p]` over the
 * positions p with `ids[p] == v` (scatter-add, summed in position order: deterministic and
 * race-free, each vocabulary row owned by one thread; on CUDA the ids are radix-sorted
 * first, same order). Rows never used, and row
 * `paddingIdx`, are zero.
 * @param dy float `[..., H]` (ids' shape followed by H).
 * @param ids the int32 ids of the forward.
 * @param numEmbeddings V, the table's row count.
 * @returns float32 `[V,H]`.
 */
export function embeddingBackward(dy: Tensor, ids: Tensor, numEmbeddings: number, options: EmbeddingBackwardOptions = {}): Tensor {
  const op = 'embeddingBackward';
  checkTensor(dy, op, 'dy');
  checkTensor(ids, op, 'ids');
  checkSameDevice(op, { dy, ids });
  checkFloat(op, 'dy', dy);
  checkIds(op, ids);
  const V = checkInt(op, 'numEmbeddings', numEmbeddings, 0, INT32_MAX);
  if (dy.ndim !== ids.ndim + 1 || !sameShape(dy.shape.slice(0, ids.ndim), ids.shape))
    fail('SHAPE_MISMATCH', `${op}: ${desc('dy', dy)} must be ids' shape ${shapeStr(ids.shape)} followed by H`);
  let pad = -1;
  if (options.paddingIdx !== undefined && options.paddingIdx !== null) {
    pad = checkInt(op, 'paddingIdx', options.paddingIdx, -V, V - 1);
    if (pad < 0) pad += V;
  }
  const H = dy.shape[dy.ndim - 1];
  const [out] = withOutputs([Tensor.empty([V, H], 'float32', dy.deviceInfo)], (o) =>
    native.embeddingBackward(dy.nat(), ids.nat(), o.nat(), pad),
  );
  return out;
}

// ---------------------------------------------------------------- cross-entropy

/** Options of {@link crossEntropy}. */
export interface CrossEntropyOptions {
  /** Rows whose target is this value are ignored (default -100). */
  ignoreIndex?: number;
  /** 'mean' (default: over the non-ignored rows, 0 when there are none) or 'sum'. */
  reduction?: 'mean' | 'sum';
  /**
   * Vocabulary columns per chunk, at most (default 4096; narrower when that evens out the
   * threads' work): memory is O(N + threads x 512 x (chunkSize + H)), never [N,V]. On CUDA:
   * chunks of exactly chunkSize columns and blocks of up to 4096 tokens (fewer for chunks wider
   * than 8192), so O(N + 4096 x (chunkSize + H)).
   */
  chunkSize?: number;
  /** An output-projection bias `[V]` (float), added to the logits. */
  bias?: Tensor | null;
}

/** What {@link crossEntropy} returns. */
export interface CrossEntropyResult {
  /** float32 scalar (shape `[]`): the mean (or sum) over non-ignored rows of lse − logit[target]. */
  loss: Tensor;
  /** float32, targets' shape: logsumexp of each row's logits (0 for ignored rows); the backward's input. */
  lse: Tensor;
}

interface XentArgs {
  hidden: Tensor;
  weight: Tensor;
  targets: Tensor;
  bias: Tensor | null;
  ignoreIndex: number;
  reduction: number;
  chunkSize: number;
  N: number;
  H: number;
}

function checkXent(op: string, hidden: Tensor, weight: Tensor, targets: Tensor, o: CrossEntropyOptions): XentArgs {
  checkTensor(hidden, op, 'hidden');
  checkTensor(weight, op, 'weight');
  checkTensor(targets, op, 'targets');
  const bias = o.bias ?? null;
  if (bias !== null) checkTensor(bias, op, 'options.bias');
  checkSameDevice(op, { hidden, weight, targets, bias });
  checkFloat(op, 'hidden', hidden);
  checkFloat(op, 'weight', weight);
  if (hidden.ndim < 2) fail('SHAPE_MISMATCH', `${op}: ${desc('hidden', hidden)} must be [N,H] (or [..., H])`);
  if (weight.ndim !== 2) fail('SHAPE_MISMATCH', `${op}: ${desc('weight', weight)} must be 2-D [V,H]`);
  const H = hidden.shape[hidden.ndim - 1];
  if (weight.shape[1] !== H)
    fail('SHAPE_MISMATCH', `${op}: ${desc('hidden', hidden)} and ${desc('weight', weight)} must have the same H (last dim)`);
  if (targets.dtype !== 'int32') fail('DTYPE_MISMATCH', `${op}: ${desc('targets', targets)} must be int32`);
  if (!sameShape(targets.shape, hidden.shape.slice(0, -1)))
    fail('SHAPE_MISMATCH', `${op}: ${desc('targets', targets)} must be ${shapeStr(hidden.shape.slice(0, -1))} (hidden's shape without H)`);
  const V = weight.shape[0];
  if (bias !== null) {
    checkFloat(op, 'options.bias', bias);
    if (!sameShape(bias.shape, [V])) fail('SHAPE_MISMATCH', `${op}: ${desc('options.bias', bias)} must be [${V}] (weight's V)`);
  }
  const ignoreIndex = checkInt(op, 'options.ignoreIndex', o.ignoreIndex ?? -100, -(2 ** 53), 2 ** 53);
  const red = o.reduction ?? 'mean';
  if (red !== 'mean' && red !== 'sum') fail('INVALID_ARGUMENT', `${op}: options.reduction must be 'mean' or 'sum' (got ${JSON.stringify(red)})`);
  const chunkSize = checkInt(op, 'options.chunkSize', o.chunkSize ?? 4096, 1, INT32_MAX);
  return { hidden, weight, targets, bias, ignoreIndex, reduction: red === 'mean' ? 0 : 1, chunkSize, N: targets.size, H };
}

/**
 * Cross-entropy of `logits = hidden · weightᵀ (+ bias)` against integer targets, fused with
 * the output projection: the `[tokens, vocab]` logits are never materialised (vocabulary
 * chunks of `chunkSize` columns and blocks of tokens with an online max / sum of exp).
 * @param hidden float `[N,H]` (or `[..., H]`).
 * @param weight float `[V,H]`: the lm head (possibly tied to the embedding).
 * @param targets int32 `[N]` (hidden's shape without H): class ids in `[0, V)` or
 *   `ignoreIndex`; anything else is INVALID_ARGUMENT.
 */
export function crossEntropy(hidden: Tensor, weight: Tensor, targets: Tensor, options: CrossEntropyOptions = {}): CrossEntropyResult {
  const a = checkXent('crossEntropy', hidden, weight, targets, options);
  const [loss, lse] = withOutputs(
    [Tensor.empty([], 'float32', hidden.deviceInfo), Tensor.empty(targets.shape, 'float32', hidden.deviceInfo)],
    (l, s) =>
      native.crossEntropyForward(
        natAs(hidden, [a.N, a.H], 'hidden'), weight.nat(), a.bias ? a.bias.nat() : null, natAs(targets, [a.N], 'targets'),
        l.nat(), natAs(s, [a.N], 'lse'),
        a.ignoreIndex, a.reduction, a.chunkSize,
      ),
  );
  return { loss, lse };
}

/** Options of {@link crossEntropyBackward}: the forward's, plus the incoming gradient. */
export interface CrossEntropyBackwardOptions extends CrossEntropyOptions {
  /** d(final loss) / d(loss): a number or a one-element tensor (default 1). */
  gradLoss?: number | Tensor;
  /** Compute dWeight (default true); false for a frozen head (dWeight is then null). */
  needWeightGrad?: boolean;
}

/** What {@link crossEntropyBackward} returns. */
export interface CrossEntropyGrads {
  /** hidden's dtype and shape (ignored rows: zero). */
  dHidden: Tensor;
  /** float32 `[V,H]`, or null when `needWeightGrad` is false. */
  dWeight: Tensor | null;
  /** float32 `[V]` when a bias was given, else null. */
  dBias: Tensor | null;
}

/**
 * Gradients of {@link crossEntropy}: the logits are recomputed chunk by chunk and turned
 * into `dlogits = s·(softmax − onehot(target))` (s = gradLoss / count for 'mean', gradLoss
 * for 'sum'; ignored rows 0), then `dHidden = dlogits · weight`, `dWeight = dlogitsᵀ ·
 * hidden`, `dBias = Σ_rows dlogits`. Pass the same options as the forward.
 * @param lse the forward's `lse`.
 */
export function crossEntropyBackward(
  hidden: Tensor, weight: Tensor, targets: Tensor, lse: Tensor, options: CrossEntropyBackwardOptions = {},
): CrossEntropyGrads {
  const op = 'crossEntropyBackward';
  const a = checkXent(op, hidden, weight, targets, options);
  checkTensor(lse, op, 'lse');
  checkSameDevice(op, { hidden, lse });
  if (lse.dtype !== 'float32' || !sameShape(lse.shape, targets.shape))
    fail(lse.dtype !== 'float32' ? 'DTYPE_MISMATCH' : 'SHAPE_MISMATCH', `${op}: ${desc('lse', lse)} must be float32 ${shapeStr(targets.shape)} (the forward's lse)`);
  let gradLoss: number;
  const g = options.gradLoss ?? 1;
  if (g instanceof Tensor) {
    checkTensor(g, op, 'options.gradLoss');
    if (g.size !== 1) fail('SHAPE_MISMATCH', `${op}: ${desc('options.gradLoss', g)} must have one element`);
    gradLoss = g.item();
  } else {
    gradLoss = g;
  }
  checkNumber(op, 'options.gradLoss', gradLoss);
  const needW = options.needWeightGrad ?? true;
  const [V, H] = weight.shape;
  const outs: [Tensor, ...Tensor[]] = [Tensor.empty(hidden.shape, hidden.dtype, hidden.deviceInfo)];
  try {
    if (needW) outs.push(Tensor.empty([V, H], 'float32', hidden.deviceInfo));
    if (a.bias) outs.push(Tensor.empty([V], 'float32', hidden.deviceInfo));
  } catch (e) {
    for (const o of outs) o.dispose();
    throw e;
  }
  withOutputs(outs, (dh, ...rest) => {
    const dw = needW ? rest[0] : null;
    const db = a.bias ? rest[needW ? 1 : 0] : null;
    native.crossEntropyBackward(
      natAs(hidden, [a.N, H], 'hidden'), weight.nat(), a.bias ? a.bias.nat() : null, natAs(targets, [a.N], 'targets'),
      natAs(lse, [a.N], 'lse'), natAs(dh, [a.N, H], 'dHidden'), dw ? dw.nat() : null, db ? db.nat() : null,
      a.ignoreIndex, a.reduction, a.chunkSize, gradLoss,
    );
  });
  return { dHidden: outs[0], dWeight: needW ? outs[1] : null, dBias: a.bias ? outs[needW ? 2 : 1] : null };
}

// ---------------------------------------------------------------- AdamW

/** The tensors of {@link adamw}, one entry per parameter (updated in place). */
export interface AdamWTensors {
  /** Model weights: float32, or bfloat16 / float16 with a float32 `master` copy. */
  params: Tensor[];
  /** Gradients (any float dtype), params' shapes. */
  grads: Tensor[];
  /** First moments, float32. */
  expAvg: Tensor[];
  /** Second moments, float32. */
  expAvgSq: Tensor[];
  /** float32 master weights (null entries: the parameter itself is float32). */
  master?: (Tensor | null)[] | null;
}

/** Hyperparameters of {@link adamw} (PyTorch's names and defaults). */
export interface AdamWOptions {
  /** Learning rate (>= 0). */
  lr: number;
  /** First-moment decay (default 0.9), in [0, 1). */
  beta1?: number;
  /** Second-moment decay (default 0.999), in [0, 1). */
  beta2?: number;
  /** Added to the denominator √v̂ (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay (default 0.01): p *= 1 − lr·weightDecay. */
  weightDecay?: number;
  /** The step number, starting at 1 (bias corrections 1 − βᵗ). */
  step: number;
  /** Per parameter: false skips weight decay (biases, norms). Default: all decay. */
  decay?: boolean[];
  /** Clip the global gradient 2-norm to this (torch.nn.utils.clip_grad_norm_); none by default. */
  maxGradNorm?: number | null;
}

/** What {@link adamw} returns. */
export interface AdamWResult {
  /** The global 2-norm of all gradients, before clipping. */
  gradNorm: number;
  /** True when that norm was not finite: nothing was updated. */
  skipped: boolean;
}

/**
 * One fused AdamW step over a list of parameters (PyTorch semantics, one native call):
 * `p *= 1 − lr·wd` (where decay), `m = β1 m + (1−β1) g`, `v = β2 v + (1−β2) g²`,
 * `p −= lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps)`. With master weights the update happens on the
 * float32 master and the parameter becomes its rounding. With `maxGradNorm`, g is first
 * scaled by min(1, maxGradNorm / (norm + 1e-6)), norm being the 2-norm of all gradients
 * together (float64 accumulation). A non-finite norm skips the step (nothing is written) and
 * reports `skipped: true`.
 */
export function adamw(tensors: AdamWTensors, options: AdamWOptions): AdamWResult {
  const op = 'adamw';
  if (!tensors || typeof tensors !== 'object') fail('INVALID_ARGUMENT', `${op}: tensors must be an object`);
  if (!options || typeof options !== 'object') fail('INVALID_ARGUMENT', `${op}: options must be an object`);
  const { params, grads, expAvg, expAvgSq } = tensors;
  const master = tensors.master ?? null;
  for (const [name, list] of [['params', params], ['grads', grads], ['expAvg', expAvg], ['expAvgSq', expAvgSq], ['master', master]] as const) {
    if (list === null && name === 'master') continue;
    if (!Array.isArray(list)) fail('INVALID_ARGUMENT', `${op}: ${name} must be an array of tensors`);
    if (list.length !== params.length)
      fail('INVALID_ARGUMENT', `${op}: ${name} has ${list.length} entries, params ${params.length}`);
  }
  const n = params.length;
  const lr = checkNumber(op, 'options.lr', options.lr, 0);
  const beta1 = checkNumber(op, 'options.beta1', options.beta1 ?? 0.9, 0, 1);
  const beta2 = checkNumber(op, 'options.beta2', options.beta2 ?? 0.999, 0, 1);
  if (beta1 >= 1 || beta2 >= 1) fail('INVALID_ARGUMENT', `${op}: options.beta1 and beta2 must be < 1`);
  const eps = checkNumber(op, 'options.eps', options.eps ?? 1e-8, 0);
  const wd = checkNumber(op, 'options.weightDecay', options.weightDecay ?? 0.01, 0);
  const step = checkInt(op, 'options.step', options.step, 1, Number.MAX_SAFE_INTEGER);
  let maxGradNorm = 0;
  if (options.maxGradNorm !== undefined && options.maxGradNorm !== null) {
    maxGradNorm = checkNumber(op, 'options.maxGradNorm', options.maxGradNorm);
    if (!(maxGradNorm > 0)) fail('INVALID_ARGUMENT', `${op}: options.maxGradNorm must be > 0 (got ${maxGradNorm})`);
  }
  let decay: boolean[] | null = null;
  if (options.decay !== undefined) {
    if (!Array.isArray(options.decay) || options.decay.length !== n || options.decay.some((d) => typeof d !== 'boolean'))
      fail('INVALID_ARGUMENT', `${op}: options.decay must be ${n} booleans (one per parameter)`);
    decay = options.decay;
  }
  const all: Record<string, Tensor> = {};
  for (let i = 0; i < n; i++) {
    const p = checkTensor(params[i], op, `params[${i}]`);
    const g = checkTensor(grads[i], op, `grads[${i}]`);
    const m = checkTensor(expAvg[i], op, `expAvg[${i}]`);
    const v = checkTensor(expAvgSq[i], op, `expAvgSq[${i}]`);
    const ms = master ? master[i] : null;
    if (ms !== null && ms !== undefined) checkTensor(ms, op, `master[${i}]`);
    Object.assign(all, { [`params[${i}]`]: p, [`grads[${i}]`]: g, [`expAvg[${i}]`]: m, [`expAvgSq[${i}]`]: v });
    if (ms) all[`master[${i}]`] = ms;
    checkFloat(op, `params[${i}]`, p);
    checkFloat(op, `grads[${i}]`, g);
    for (const [name, t] of [[`grads[${i}]`, g], [`expAvg[${i}]`, m], [`expAvgSq[${i}]`, v], [`master[${i}]`, ms]] as const) {
      if (!t) continue;
      if (name !== `grads[${i}]` && t.dtype !== 'float32') fail('DTYPE_MISMATCH', `${op}: ${desc(name, t)} must be float32`);
      if (!sameShape(t.shape, p.shape)) fail('SHAPE_MISMATCH', `${op}: ${desc(name, t)} must have the shape of ${desc(`params[${i}]`, p)}`);
    }
    if (!ms && p.dtype !== 'float32')
      fail('DTYPE_MISMATCH', `${op}: ${desc(`params[${i}]`, p)} needs a float32 master copy (master[${i}]) or must be float32`);
  }
  checkSameDevice(op, all);
  const [gradNorm, skipped] = native.adamw(
    params.map((t) => t.nat()), grads.map((t) => t.nat()), expAvg.map((t) => t.nat()), expAvgSq.map((t) => t.nat()),
    master ? master.map((t) => (t ? t.nat() : null)) : null, decay, lr, beta1, beta2, eps, wd, step, maxGradNorm,
  );
  return { gradNorm, skipped };
}

/** The 2-norm of all the tensors together (float64 accumulation, deterministic). */
export function gradNorm(grads: Tensor[]): number {
  const op = 'gradNorm';
  if (!Array.isArray(grads)) fail('INVALID_ARGUMENT', `${op}: grads must be an array of tensors`);
  const all: Record<string, Tensor> = {};
  grads.forEach((g, i) => {
    checkTensor(g, op, `grads[${i}]`);
    checkFloat(op, `grads[${i}]`, g);
    all[`grads[${i}]`] = g;
  });
  checkSameDevice(op, all);
  return native.gradNorm(grads.map((g) => g.nat()));
}

// ---------------------------------------------------------------- layout

function normDim(op: string, dim: unknown, ndim: number, name = 'dim'): number {
  if (typeof dim !== 'number' || !Number.isInteger(dim) || dim < -ndim || dim >= ndim)
    fail('INVALID_ARGUMENT', `${op}: ${name} ${String(dim)} is outside [${-ndim}, ${ndim}) for ${ndim}-D tensors`);
  return dim < 0 ? dim + ndim : dim;
}

function checkPermutation(op: string, dims: unknown, ndim: number): number[] {
  if (!Array.isArray(dims) || dims.length !== ndim)
    fail('INVALID_ARGUMENT', `${op}: dims must list ${ndim} dims (got ${JSON.stringify(dims)})`);
  const out = dims.map((d) => normDim(op, d, ndim, 'dims entry'));
  if (new Set(out).size !== ndim) fail('INVALID_ARGUMENT', `${op}: dims ${JSON.stringify(dims)} is not a permutation`);
  return out;
}

/**
 * A copy of x with its dims reordered: `out.shape[i] = x.shape[dims[i]]` (negative dims
 * count from the end). Any dtype. Its backward is `permute(dy, invertPermutation(dims))`.
 */
export function permute(x: Tensor, dims: number[]): Tensor {
  const op = 'permute';
  checkTensor(x, op, 'x');
  const d = checkPermutation(op, dims, x.ndim);
  const [out] = withOutputs([Tensor.empty(d.map((i) => x.shape[i]), x.dtype, x.deviceInfo)], (o) =>
    native.permute(x.nat(), o.nat(), d),
  );
  return out;
}

/** The permutation that undoes `dims`: `permute(permute(x, dims), invertPermutation(dims))` is x. */
export function invertPermutation(dims: number[]): number[] {
  const d = checkPermutation('invertPermutation', dims, Array.isArray(dims) ? dims.length : 0);
  const inv = new Array<number>(d.length);
  d.forEach((v, i) => (inv[v] = i));
  return inv;
}

/** A copy of x with dims dim0 and dim1 swapped (its own backward with the same dims). */
export function transpose(x: Tensor, dim0: number, dim1: number): Tensor {
  const op = 'transpose';
  checkTensor(x, op, 'x');
  const a = normDim(op, dim0, x.ndim, 'dim0'), b = normDim(op, dim1, x.ndim, 'dim1');
  const dims = Array.from({ length: x.ndim }, (_, i) => i);
  dims[a] = b;
  dims[b] = a;
  return permute(x, dims);
}

/**
 * The tensors joined along dim (same dtype and ndim, equal sizes off dim). Backward:
 * {@link concatBackward} with the parts' sizes along dim.
 */
export function concat(tensors: Tensor[], dim: number): Tensor {
  const op = 'concat';
  if (!Array.isArray(tensors) || tensors.length === 0) fail('INVALID_ARGUMENT', `${op}: tensors must be a non-empty array`);
  const all: Record<string, Tensor> = {};
  tensors.forEach((t, i) => (all[`tensors[${i}]`] = checkTensor(t, op, `tensors[${i}]`)));
  checkSameDevice(op, all);
  const first = tensors[0];
  const d = normDim(op, dim, first.ndim);
  let total = 0;
  tensors.forEach((t, i) => {
    if (t.dtype !== first.dtype) fail('DTYPE_MISMATCH', `${op}: ${desc(`tensors[${i}]`, t)} and ${desc('tensors[0]', first)} must have the same dtype`);
    if (t.ndim !== first.ndim || t.shape.some((s, j) => j !== d && s !== first.shape[j]))
      fail('SHAPE_MISMATCH', `${op}: ${desc(`tensors[${i}]`, t)} and ${desc('tensors[0]', first)} must agree except along dim ${d}`);
    total += t.shape[d];
  });
  const shape = [...first.shape];
  shape[d] = total;
  const [out] = withOutputs([Tensor.empty(shape, first.dtype, first.deviceInfo)], (o) =>
    native.concat(tensors.map((t) => t.nat()), o.nat(), d),
  );
  return out;
}

/**
 * x cut along dim into consecutive pieces: `sizes` lists their lengths (summing to
 * x.shape[dim]), or is one length (pieces of that size, the last one shorter, as
 * torch.split). Copies.
 */
export function split(x: Tensor, sizes: number | number[], dim: number): Tensor[] {
  const op = 'split';
  checkTensor(x, op, 'x');
  const d = normDim(op, dim, x.ndim);
  const D = x.shape[d];
  let list: number[];
  if (typeof sizes === 'number') {
    const s = checkInt(op, 'sizes', sizes, 1, Number.MAX_SAFE_INTEGER);
    list = [];
    for (let o = 0; o < D; o += s) list.push(Math.min(s, D - o));
    if (list.length === 0) list.push(0);
  } else {
    if (!Array.isArray(sizes) || sizes.length === 0) fail('INVALID_ARGUMENT', `${op}: sizes must be a positive integer or a non-empty array`);
    list = sizes.map((s, i) => checkInt(op, `sizes[${i}]`, s, 0, Number.MAX_SAFE_INTEGER));
    const sum = list.reduce((a, b) => a + b, 0);
    if (sum !== D) fail('SHAPE_MISMATCH', `${op}: sizes ${JSON.stringify(list)} add up to ${sum}, but ${desc('x', x)} has ${D} along dim ${d}`);
  }
  const outs: Tensor[] = [];
  try {
    for (const s of list) {
      const shape = [...x.shape];
      shape[d] = s;
      outs.push(Tensor.empty(shape, x.dtype, x.deviceInfo));
    }
  } catch (e) {
    for (const o of outs) o.dispose();
    throw e;
  }
  withOutputs(outs, (...os) => native.split(x.nat(), os.map((o) => o.nat()), d));
  return outs;
}

/** Backward of {@link concat}: dy split along dim into pieces of the inputs' sizes. */
export function concatBackward(dy: Tensor, sizes: number[], dim: number): Tensor[] {
  if (!Array.isArray(sizes)) fail('INVALID_ARGUMENT', 'concatBackward: sizes must be an array');
  return split(dy, sizes, dim);
}

// Python slice bounds: negative counts from the end, then clamped to [0, D]; end < start is empty.
function sliceRange(op: string, D: number, start: number, end: number | undefined | null): [number, number] {
  let s = checkInt(op, 'start', start, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  let e = end === undefined || end === null ? D : checkInt(op, 'end', end, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  if (s < 0) s += D;
  if (e < 0) e += D;
  s = Math.min(Math.max(s, 0), D);
  e = Math.min(Math.max(e, s), D);
  return [s, e];
}

/**
 * A copy of `x[..., start:end, ...]` along dim, with Python's rules (negative dims and
 * indices count from the end, out-of-range bounds clamp; step 1). `end` defaults to the end.
 */
export function slice(x: Tensor, dim: number, start: number, end?: number | null): Tensor {
  const op = 'slice';
  checkTensor(x, op, 'x');
  const d = normDim(op, dim, x.ndim);
  const [s, e] = sliceRange(op, x.shape[d], start, end);
  const shape = [...x.shape];
  shape[d] = e - s;
  const [out] = withOutputs([Tensor.empty(shape, x.dtype, x.deviceInfo)], (o) => native.sliceForward(x.nat(), o.nat(), d, s));
  return out;
}

/**
 * Backward of {@link slice}: a tensor of `inputShape` that is zero except for dy at
 * `[..., start:end, ...]` along dim (same bounds rules as slice).
 */
export function sliceBackward(dy: Tensor, inputShape: readonly number[], dim: number, start: number, end?: number | null): Tensor {
  const op = 'sliceBackward';
  checkTensor(dy, op, 'dy');
  if (!Array.isArray(inputShape) || inputShape.some((v) => !Number.isSafeInteger(v) || v < 0))
    fail('INVALID_ARGUMENT', `${op}: inputShape must be an array of non-negative integers (got ${JSON.stringify(inputShape)})`);
  const d = normDim(op, dim, inputShape.length);
  const [s, e] = sliceRange(op, inputShape[d], start, end);
  const want = [...inputShape];
  want[d] = e - s;
  if (!sameShape(dy.shape, want)) fail('SHAPE_MISMATCH', `${op}: ${desc('dy', dy)} must be ${shapeStr(want)} (the slice of ${shapeStr(inputShape)})`);
  const [out] = withOutputs([Tensor.empty(inputShape, dy.dtype, dy.deviceInfo)], (o) => native.sliceBackward(o.nat(), dy.nat(), d, s));
  return out;
}

// ---------------------------------------------------------------- patchify

/**
 * ViT patches: images `[B,C,H,W]` (H and W multiples of patchSize) -> `[B, (H/p)(W/p), C·p·p]`,
 * patches in row-major grid order, each flattened in (c, py, px) order: exactly a Conv2d
 * weight `[width, C, p, p]` reshaped to `[width, C·p·p]`, so the patch embedding is
 * `patches · Wᵀ`. Any dtype. Backward: {@link unpatchify}.
 */
export function patchify(images: Tensor, patchSize: number): Tensor {
  const op = 'patchify';
  checkTensor(images, op, 'images');
  const p = checkInt(op, 'patchSize', patchSize, 1, INT32_MAX);
  if (images.ndim !== 4) fail('SHAPE_MISMATCH', `${op}: ${desc('images', images)} must be 4-D [B,C,H,W]`);
  const [B, C, H, W] = images.shape;
  if (H % p !== 0 || W % p !== 0)
    fail('SHAPE_MISMATCH', `${op}: ${desc('images', images)}: H = ${H} and W = ${W} must be multiples of patchSize ${p}`);
  const [out] = withOutputs([Tensor.empty([B, (H / p) * (W / p), C * p * p], images.dtype, images.deviceInfo)], (o) =>
    native.patchifyForward(images.nat(), o.nat(), p),
  );
  return out;
}

/** The image geometry for {@link unpatchify}. */
export interface UnpatchifyOptions {
  channels: number;
  height: number;
  width: number;
  patchSize: number;
}

/**
 * The inverse of {@link patchify} (and its backward): patches `[B, (H/p)(W/p), C·p·p]` ->
 * images `[B,C,H,W]`.
 */
export function unpatchify(patches: Tensor, options: UnpatchifyOptions): Tensor {
  const op = 'unpatchify';
  checkTensor(patches, op, 'patches');
  if (!options || typeof options !== 'object') fail('INVALID_ARGUMENT', `${op}: options {channels, height, width, patchSize} are required`);
  const C = checkInt(op, 'options.channels', options.channels, 0, INT32_MAX);
  const H = checkInt(op, 'options.height', options.height, 0, INT32_MAX);
  const W = checkInt(op, 'options.width', options.width, 0, INT32_MAX);
  const p = checkInt(op, 'options.patchSize', options.patchSize, 1, INT32_MAX);
  if (H % p !== 0 || W % p !== 0)
    fail('SHAPE_MISMATCH', `${op}: height ${H} and width ${W} must be multiples of patchSize ${p}`);
  const L = (H / p) * (W / p), D = C * p * p;
  if (patches.ndim !== 3 || patches.shape[1] !== L || patches.shape[2] !== D)
    fail('SHAPE_MISMATCH', `${op}: ${desc('patches', patches)} must be [B,${L},${D}] for ${C}x${H}x${W} images with patchSize ${p}`);
  const [out] = withOutputs([Tensor.empty([patches.shape[0], C, H, W], patches.dtype, patches.deviceInfo)], (o) =>
    native.patchifyBackward(o.nat(), patches.nat(), p),
  );
  return out;
}
