// ops/lora.ts: linear layers with a LoRA adapter fused in, forward and backward; merge / unmerge.
// Validates in TypeScript (typed errors naming the op and argument), allocates the
// outputs, then makes one native call (native/include/l2c_lora.h).
import { toSeed } from '../creation';
import { fail } from '../errors';
import { NativeStorage } from '../binding';
import { Tensor, shapeStr } from '../tensor';
import { checkFloat, checkNumber, checkSameDType, checkSameDevice, checkTensor, desc, nativeOps, withOutputs } from './util';

type Nat = [NativeStorage, number, number[]];

interface LoraNative {
  loraForward(x: Nat, weight: Nat, a: Nat, b: Nat, bias: Nat | null, y: Nat, scale: number, p: number, seed: bigint): void;
  loraBackward(dy: Nat, x: Nat, weight: Nat, a: Nat, b: Nat, dx: Nat | null, dA: Nat, dB: Nat, scale: number, p: number, seed: bigint): void;
  loraMerge(weight: Nat, a: Nat, b: Nat, scale: number, unmerge: boolean): void;
}

/**
 * Dropout on the LoRA path (as PEFT's `lora_dropout`): element i (flat index n·in + k of
 * x) is kept iff its Philox word for (seed, i) is ≥ ⌊p·2³²⌋, and kept values are scaled
 * by 1/(1−p) — the rule of `ops.dropout(x, {p, seed})` and of the CUDA kernels. Pass the
 * same `{p, seed}` to the backward: it regenerates the mask (nothing is stored).
 */
export interface LoraDropout {
  /** Drop probability in [0, 1); 0 is exactly no dropout. */
  p: number;
  /** Non-negative integer below 2^64 (number or bigint); may be omitted when p is 0. */
  seed?: number | bigint;
}

/** Options of {@link loraLinear}. */
export interface LoraLinearOptions {
  /** PEFT's scaling = lora_alpha / r. Required, finite. */
  scale: number;
  /** Bias `[out]` in x's dtype, added to the base output. */
  bias?: Tensor | null;
  /** Dropout on the LoRA path's input (default: none). */
  dropout?: LoraDropout | null;
}

/** Options of {@link loraLinearBackward}. */
export interface LoraLinearBackwardOptions {
  /** The forward's scale. Required, finite. */
  scale: number;
  /** The forward's dropout (same p and seed). */
  dropout?: LoraDropout | null;
  /** Compute dx (default true); false skips dy·W and returns dx = null. */
  needInputGrad?: boolean;
}

/** Gradients of {@link loraLinear} with respect to x and the adapters. */
export interface LoraGrads {
  /** dL/dx in x's shape and dtype, or null when `needInputGrad` is false. */
  dx: Tensor | null;
  /** dL/dloraA `[r, in]` in the adapters' dtype. */
  dA: Tensor;
  /** dL/dloraB `[out, r]` in the adapters' dtype. */
  dB: Tensor;
}

/** Options of {@link mergeLora} / {@link unmergeLora}. */
export interface LoraMergeOptions {
  /** PEFT's scaling = lora_alpha / r. Required, finite. */
  scale: number;
}

interface Checked {
  in: number;
  out: number;
  r: number;
}

function checkScale(op: string, options: unknown): number {
  if (options === null || typeof options !== 'object')
    fail('INVALID_ARGUMENT', `${op}: options with a scale (lora_alpha / r) are required`);
  const s = (options as { scale?: unknown }).scale;
  if (s === undefined) fail('INVALID_ARGUMENT', `${op}: options.scale (lora_alpha / r) is required`);
  return checkNumber(op, 'options.scale', s);
}

function checkDropout(op: string, d: LoraDropout | null | undefined): { p: number; seed: bigint } {
  if (d === undefined || d === null) return { p: 0, seed: 0n };
  if (typeof d !== 'object') fail('INVALID_ARGUMENT', `${op}: options.dropout must be {p, seed}`);
  const p = d.p;
  // The kernels take p as float32: it must stay below 1 there too.
  if (typeof p !== 'number' || !(p >= 0 && Math.fround(p) < 1))
    fail('INVALID_ARGUMENT', `${op}: options.dropout.p must be a number in [0, 1) (got ${String(p)})`);
  if (p === 0) return { p: 0, seed: d.seed === undefined ? 0n : toSeed(d.seed, `${op}(options.dropout.seed)`) };
  if (d.seed === undefined) fail('INVALID_ARGUMENT', `${op}: options.dropout.seed is required when p > 0 (the backward regenerates the mask from it)`);
  return { p, seed: toSeed(d.seed, `${op}(options.dropout.seed)`) };
}

/** Checks weight [out, in], loraA [r, in], loraB [out, r] against in; dtypes of the adapters alike. */
function checkAdapter(op: string, weight: Tensor, loraA: Tensor, loraB: Tensor, inDim: number): Checked {
  if (weight.ndim !== 2) fail('SHAPE_MISMATCH', `${op}: ${desc('weight', weight)} must be 2-D [out, in]`);
  const [out, win] = weight.shape;
  if (win !== inDim) fail('SHAPE_MISMATCH', `${op}: ${desc('weight', weight)} must have in = ${inDim} columns`);
  if (loraA.ndim !== 2 || loraA.shape[1] !== inDim)
    fail('SHAPE_MISMATCH', `${op}: ${desc('loraA', loraA)} must be [r, in] with in = ${inDim}`);
  const r = loraA.shape[0];
  if (loraB.ndim !== 2 || loraB.shape[0] !== out || loraB.shape[1] !== r)
    fail('SHAPE_MISMATCH', `${op}: ${desc('loraB', loraB)} must be [out, r] = [${out},${r}]`);
  checkFloat(op, 'loraA', loraA);
  checkFloat(op, 'loraB', loraB);
  checkSameDType(op, { loraA, loraB });
  return { in: inDim, out, r };
}

function inDimOf(op: string, name: string, x: Tensor): number {
  if (x.ndim < 1) fail('SHAPE_MISMATCH', `${op}: ${desc(name, x)} must have at least one dim ([..., in])`);
  return x.shape[x.ndim - 1];
}

/**
 * A linear layer with a LoRA adapter, fused:
 * `y = x·weightᵀ + bias + scale·(drop(x)·loraAᵀ)·loraBᵀ`.
 *
 * x `[..., in]` (any leading dims; y is `[..., out]`), weight `[out, in]` (the frozen base
 * layer), loraA `[r, in]` and loraB `[out, r]` (PEFT's layout), bias `[out]`. x, weight,
 * bias share one dtype (float32 / bfloat16 / float16), which y has; loraA and loraB share
 * one dtype that may differ (float32 adapters over a bfloat16 base). Everything
 * accumulates in float32 and each output is rounded once. Dropout applies to the LoRA
 * path only; drop(x) stays float32 (not rounded to x's dtype). On the CPU x is read once:
 * its packed blocks feed the base and the LoRA products. On CUDA (all tensors on one GPU)
 * the LoRA path is one pass over x for drop(x)·loraAᵀ and an epilogue of the base GEMM
 * (tensor cores for 16-bit x); the dropout mask is the same as on the CPU.
 */
export function loraLinear(x: Tensor, weight: Tensor, loraA: Tensor, loraB: Tensor, options: LoraLinearOptions): Tensor {
  const op = 'loraLinear';
  checkTensor(x, op, 'x');
  checkTensor(weight, op, 'weight');
  checkTensor(loraA, op, 'loraA');
  checkTensor(loraB, op, 'loraB');
  const scale = checkScale(op, options);
  const bias = options.bias ?? null;
  if (bias !== null) checkTensor(bias, op, 'bias');
  const drop = checkDropout(op, options.dropout);
  checkSameDevice(op, { x, weight, loraA, loraB, bias });
  checkFloat(op, 'x', x);
  checkSameDType(op, { x, weight, bias });
  const d = checkAdapter(op, weight, loraA, loraB, inDimOf(op, 'x', x));
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== d.out))
    fail('SHAPE_MISMATCH', `${op}: ${desc('bias', bias)} must be [${d.out}]`);
  const yShape = [...x.shape.slice(0, -1), d.out];
  const [y] = withOutputs([Tensor.empty(yShape, x.dtype, x.deviceInfo)], (y) =>
    nativeOps<LoraNative>().loraForward(x.nat(), weight.nat(), loraA.nat(), loraB.nat(), bias ? bias.nat() : null, y.nat(), scale, drop.p, drop.seed),
  );
  return y;
}

/**
 * Gradients of {@link loraLinear} given dy = dL/dy `[..., out]` (x's dtype), with the
 * forward's scale and dropout (the mask is regenerated from the seed):
 * `t = drop(x)·loraAᵀ`, `g = scale·dy·loraB`, `dB = scale·dyᵀ·t`, `dA = gᵀ·drop(x)`,
 * `dx = dy·weight + drop'(g·loraA)` (drop' = the same mask and 1/(1−p)). dx only when
 * `needInputGrad` (default true). The base weight and bias are frozen (no gradients).
 * dy is read once for dy·weight and g; x once for t and dA.
 */
export function loraLinearBackward(
  dy: Tensor, x: Tensor, weight: Tensor, loraA: Tensor, loraB: Tensor, options: LoraLinearBackwardOptions,
): LoraGrads {
  const op = 'loraLinearBackward';
  checkTensor(dy, op, 'dy');
  checkTensor(x, op, 'x');
  checkTensor(weight, op, 'weight');
  checkTensor(loraA, op, 'loraA');
  checkTensor(loraB, op, 'loraB');
  const scale = checkScale(op, options);
  const drop = checkDropout(op, options.dropout);
  const need = options.needInputGrad ?? true;
  if (typeof need !== 'boolean') fail('INVALID_ARGUMENT', `${op}: options.needInputGrad must be a boolean`);
  checkSameDevice(op, { dy, x, weight, loraA, loraB });
  checkFloat(op, 'x', x);
  checkSameDType(op, { x, weight, dy });
  const d = checkAdapter(op, weight, loraA, loraB, inDimOf(op, 'x', x));
  const dyShape = [...x.shape.slice(0, -1), d.out];
  if (dy.ndim !== dyShape.length || dy.shape.some((v, i) => v !== dyShape[i]))
    fail('SHAPE_MISMATCH', `${op}: ${desc('dy', dy)} must be ${shapeStr(dyShape)} (x's leading dims, out)`);
  const dev = x.deviceInfo;
  const outs: Tensor[] = [];
  try {
    outs.push(Tensor.empty([d.r, d.in], loraA.dtype, dev));
    outs.push(Tensor.empty([d.out, d.r], loraA.dtype, dev));
    if (need) outs.push(Tensor.empty(x.shape, x.dtype, dev));
  } catch (e) {
    for (const o of outs) o.dispose();
    throw e;
  }
  const [dA, dB] = outs;
  const dx = need ? outs[2] : null;
  withOutputs(outs, (..._outs: Tensor[]) =>
    nativeOps<LoraNative>().loraBackward(dy.nat(), x.nat(), weight.nat(), loraA.nat(), loraB.nat(), dx ? dx.nat() : null, dA.nat(), dB.nat(), scale, drop.p, drop.seed),
  );
  return { dx, dA, dB };
}

function merge(op: string, weight: Tensor, loraA: Tensor, loraB: Tensor, options: LoraMergeOptions, unmerge: boolean): Tensor {
  checkTensor(weight, op, 'weight');
  checkTensor(loraA, op, 'loraA');
  checkTensor(loraB, op, 'loraB');
  const scale = checkScale(op, options);
  checkSameDevice(op, { weight, loraA, loraB });
  checkFloat(op, 'weight', weight);
  if (weight.ndim !== 2) fail('SHAPE_MISMATCH', `${op}: ${desc('weight', weight)} must be 2-D [out, in]`);
  checkAdapter(op, weight, loraA, loraB, weight.shape[1]);
  nativeOps<LoraNative>().loraMerge(weight.nat(), loraA.nat(), loraB.nat(), scale, unmerge);
  return weight;
}

/**
 * Folds the adapter into the base weight, in place: `weight += scale·loraB·loraA`;
 * returns weight. loraB·loraA accumulates in float32, then each weight element is
 * updated with one rounding to its dtype. Not exactly invertible: {@link unmergeLora}
 * after mergeLora gives the weight back up to that rounding (for a bfloat16 weight,
 * elements can differ by an ulp of bfloat16).
 */
export function mergeLora(weight: Tensor, loraA: Tensor, loraB: Tensor, options: LoraMergeOptions): Tensor {
  return merge('mergeLora', weight, loraA, loraB, options, false);
}

/**
 * The inverse of {@link mergeLora}, in place: `weight -= scale·loraB·loraA` (same
 * arithmetic; not bit-exact after a merge, see there); returns weight.
 */
export function unmergeLora(weight: Tensor, loraA: Tensor, loraB: Tensor, options: LoraMergeOptions): Tensor {
  return merge('unmergeLora', weight, loraA, loraB, options, true);
}
