// ops/layers.ts: elementwise ops, norms, rope, activations, softmax, dropout, reductions,
// pooling: each a forward and a backward function (no autograd: later layers build it on
// these pairs). Checks arguments in TypeScript (typed errors naming the op, the argument,
// its dtype and shape), allocates the outputs, makes one native call (native/include/
// l2c_layers.h), and disposes the outputs if that call throws.
//
// Every op takes float32, bfloat16 or float16 tensors, computes in float32 and rounds
// each output once to the input's dtype; saved statistics (mean, rstd) and weight
// gradients are float32.
import type { NativeStorage } from '../binding';
import { toSeed } from '../creation';
import { fail } from '../errors';
import { Tensor, checkShape, shapeSize, shapeStr } from '../tensor';
import { checkFloat, checkNumber, checkSameDType, checkSameDevice, checkTensor, desc, nativeOps, withOutputs } from './util';

type T3 = [NativeStorage, number, number[]];
type OptT3 = T3 | null;

interface LayersNative {
  layersBinary(op: number, a: T3, b: T3, out: T3): void;
  layersScale(x: T3, out: T3, alpha: number): void;
  layersMulBackward(dy: T3, a: T3, b: T3, da: OptT3, db: OptT3): void;
  layersSum(x: T3, out: T3, reduceMask: number, alpha: number): void;
  layersRmsNorm(x: T3, weight: OptT3, y: T3, rstd: T3, eps: number): void;
  layersRmsNormBackward(dy: T3, x: T3, weight: OptT3, rstd: T3, dx: T3, dWeight: OptT3): void;
  layersLayerNorm(x: T3, weight: OptT3, bias: OptT3, y: T3, mean: T3, rstd: T3, eps: number): void;
  layersLayerNormBackward(dy: T3, x: T3, weight: OptT3, mean: T3, rstd: T3, dx: T3, dWeight: OptT3, dBias: OptT3): void;
  layersL2Normalize(x: T3, y: T3, eps: number): void;
  layersL2NormalizeBackward(dy: T3, x: T3, dx: T3, eps: number): void;
  layersSoftmax(x: T3, y: T3): void;
  layersSoftmaxBackward(dy: T3, y: T3, dx: T3): void;
  layersRope(
    x: T3, positions: T3, out: T3, backward: boolean, theta: number, scaling: number, factor: number,
    lowFreqFactor: number, highFreqFactor: number, originalMaxPositionEmbeddings: number,
  ): void;
  layersActivation(kind: number, x: T3, y: T3): void;
  layersActivationBackward(kind: number, dy: T3, x: T3, dx: T3): void;
  layersSwiglu(gate: T3, up: T3, out: T3): void;
  layersSwigluBackward(dy: T3, gate: T3, up: T3, dGate: T3, dUp: T3): void;
  layersDropout(x: T3, y: T3, p: number, seed: bigint, backward: boolean): void;
  layersMaskedMeanPool(hidden: T3, mask: T3, out: T3): void;
  layersMaskedMeanPoolBackward(dy: T3, mask: T3, dHidden: T3): void;
}

const nat = () => nativeOps<LayersNative>();

// ---- shared checks ----

/** A live float tensor (INVALID_ARGUMENT / DISPOSED / DTYPE_MISMATCH otherwise). */
function floatArg(op: string, name: string, t: unknown): Tensor {
  const x = checkTensor(t, op, name);
  checkFloat(op, name, x);
  return x;
}

/** A float tensor of ref's dtype, shape and device. */
function likeArg(op: string, refName: string, ref: Tensor, name: string, t: unknown): Tensor {
  const x = checkTensor(t, op, name);
  checkSameDevice(op, { [refName]: ref, [name]: x });
  checkSameDType(op, { [refName]: ref, [name]: x });
  if (!sameShape(ref.shape, x.shape))
    fail('SHAPE_MISMATCH', `${op}: ${desc(name, x)} must have the shape of ${desc(refName, ref)}`);
  return x;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** [rows, D] of a tensor of at least one dim, D its last dim. */
function rowsOf(op: string, name: string, x: Tensor): [number, number] {
  if (x.ndim < 1) fail('SHAPE_MISMATCH', `${op}: ${desc(name, x)} needs at least one dim (the normalised one)`);
  const D = x.shape[x.ndim - 1];
  return [shapeSize(x.shape.slice(0, -1)), D];
}

/** An optional [D] parameter (weight / bias) beside x. */
function paramArg(op: string, name: string, t: unknown, x: Tensor, D: number): Tensor | null {
  if (t === null || t === undefined) return null;
  const w = floatArg(op, name, t);
  checkSameDevice(op, { x, [name]: w });
  if (w.ndim !== 1 || w.shape[0] !== D) fail('SHAPE_MISMATCH', `${op}: ${desc(name, w)} must be [${D}] (the last dim of ${desc('x', x)})`);
  return w;
}

/** A float32 statistic with one value per row. */
function statArg(op: string, name: string, t: unknown, x: Tensor, rows: number): Tensor {
  const s = checkTensor(t, op, name);
  checkSameDevice(op, { x, [name]: s });
  if (s.dtype !== 'float32') fail('DTYPE_MISMATCH', `${op}: ${desc(name, s)} must be float32`);
  if (s.size !== rows) fail('SHAPE_MISMATCH', `${op}: ${desc(name, s)} must hold ${rows} values (one per row of ${desc('x', x)})`);
  return s;
}

function epsOpt(op: string, eps: unknown, dflt: number): number {
  return eps === undefined ? dflt : checkNumber(op, 'options.eps', eps, 0);
}

function opts<T extends object>(op: string, o: unknown): Partial<T> {
  if (o === undefined || o === null) return {};
  if (typeof o !== 'object') fail('INVALID_ARGUMENT', `${op}: options must be an object (got ${typeof o})`);
  return o as Partial<T>;
}

/** numpy broadcast of two shapes (SHAPE_MISMATCH when they do not broadcast). */
function broadcastShapes(op: string, a: Tensor, b: Tensor): number[] {
  const n = Math.max(a.ndim, b.ndim);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const sa = a.shape[a.ndim - n + i] ?? 1, sb = b.shape[b.ndim - n + i] ?? 1;
    if (sa !== sb && sa !== 1 && sb !== 1)
      fail('SHAPE_MISMATCH', `${op}: ${desc('a', a)} and ${desc('b', b)} do not broadcast (dim ${i - n}: ${sa} vs ${sb})`);
    out.push(sa === 1 ? sb : sa);
  }
  return out;
}

// ---- elementwise ----

function binary(op: string, code: number, a: Tensor, b: Tensor): Tensor {
  a = floatArg(op, 'a', a);
  b = checkTensor(b, op, 'b');
  checkSameDevice(op, { a, b });
  checkSameDType(op, { a, b });
  const shape = broadcastShapes(op, a, b);
  const [out] = withOutputs([Tensor.empty(shape, a.dtype, a.deviceInfo)], (o) => nat().layersBinary(code, a.nat(), b.nat(), o.nat()));
  return out;
}

/**
 * a + b with numpy broadcasting of trailing dims (same shapes, b broadcast along
 * leading dims such as [N,H] + [H], size-1 dims, scalars of shape [] or [1]). a and b of
 * one float dtype; the result has the broadcast shape and that dtype.
 */
export function add(a: Tensor, b: Tensor): Tensor {
  return binary('add', 0, a, b);
}

/** a − b with numpy broadcasting (see add). */
export function sub(a: Tensor, b: Tensor): Tensor {
  return binary('sub', 1, a, b);
}

/** a · b elementwise with numpy broadcasting (see add); backward: mulBackward. */
export function mul(a: Tensor, b: Tensor): Tensor {
  return binary('mul', 2, a, b);
}

/** s · x (s a finite number). Its backward is scale(dy, s). */
export function scale(x: Tensor, s: number): Tensor {
  x = floatArg('scale', 'x', x);
  checkNumber('scale', 's', s);
  const [out] = withOutputs([Tensor.empty(x.shape, x.dtype, x.deviceInfo)], (o) => nat().layersScale(x.nat(), o.nat(), s));
  return out;
}

/**
 * Backward of mul(a, b): da = dy · b and db = dy · a, each summed over the dims its
 * operand was broadcast along (float32 accumulation), so da has a's shape and db b's.
 * dy has the broadcast shape of a and b.
 */
export function mulBackward(dy: Tensor, a: Tensor, b: Tensor): { da: Tensor; db: Tensor } {
  const op = 'mulBackward';
  dy = floatArg(op, 'dy', dy);
  a = checkTensor(a, op, 'a');
  b = checkTensor(b, op, 'b');
  checkSameDevice(op, { dy, a, b });
  checkSameDType(op, { dy, a, b });
  const shape = broadcastShapes(op, a, b);
  if (!sameShape(shape, dy.shape))
    fail('SHAPE_MISMATCH', `${op}: ${desc('dy', dy)} must have the broadcast shape ${shapeStr(shape)} of ${desc('a', a)} and ${desc('b', b)}`);
  const [da, db] = withOutputs(
    [Tensor.empty(a.shape, a.dtype, a.deviceInfo), Tensor.empty(b.shape, b.dtype, b.deviceInfo)],
    (da, db) => nat().layersMulBackward(dy.nat(), a.nat(), b.nat(), da.nat(), db.nat()),
  );
  return { da, db };
}

/**
 * Sums dy down to `shape`, which must broadcast to dy's shape: the reduction that turns
 * the gradient of a broadcast result (add / sub) into the gradient of the smaller
 * operand. Summed dims: dy's leading extra dims and those where shape has 1. float32
 * pairwise accumulation; the result has dy's dtype.
 */
export function sumToShape(dy: Tensor, shape: readonly number[]): Tensor {
  const op = 'sumToShape';
  dy = floatArg(op, 'dy', dy);
  const target = checkShape(shape, `${op}(shape)`);
  const off = dy.ndim - target.length;
  let ok = off >= 0;
  let mask = 0;
  for (let d = 0; ok && d < dy.ndim; d++) {
    const t = d < off ? 1 : target[d - off];
    if (t !== dy.shape[d] && t !== 1) ok = false;
    if (t === 1 && dy.shape[d] !== 1) mask |= 1 << d;
  }
  if (!ok) fail('SHAPE_MISMATCH', `${op}: shape ${shapeStr(target)} does not broadcast to ${desc('dy', dy)}`);
  const [out] = withOutputs([Tensor.empty(target, dy.dtype, dy.deviceInfo)], (o) => nat().layersSum(dy.nat(), o.nat(), mask >>> 0, 1));
  return out;
}

// ---- reductions ----

/** Options of sum / mean and their backward. */
export interface ReduceOptions {
  /** Dim(s) to reduce, negative counting from the end; all dims when undefined. */
  dim?: number | readonly number[];
  /** Keep the reduced dims with size 1 (default false). */
  keepDim?: boolean;
}

interface ReducePlan {
  mask: number;
  count: number;
  outShape: number[];
  keepShape: number[];
}

function reducePlan(op: string, shape: readonly number[], o: ReduceOptions): ReducePlan {
  const nd = shape.length;
  let dims: number[];
  if (o.dim === undefined) dims = shape.map((_, i) => i);
  else {
    const raw = typeof o.dim === 'number' ? [o.dim] : Array.isArray(o.dim) ? [...o.dim] : null;
    if (!raw) fail('INVALID_ARGUMENT', `${op}: options.dim must be a number or an array of numbers (got ${JSON.stringify(o.dim)})`);
    dims = raw.map((d) => {
      if (typeof d !== 'number' || !Number.isInteger(d) || d < -Math.max(nd, 1) || d >= Math.max(nd, 1))
        fail('INVALID_ARGUMENT', `${op}: dim ${String(d)} is out of range for ${nd} dims (${shapeStr(shape)})`);
      return d < 0 ? d + nd : d;
    });
    if (new Set(dims).size !== dims.length) fail('INVALID_ARGUMENT', `${op}: dim ${JSON.stringify(o.dim)} names a dim twice`);
    dims = dims.filter((d) => d < nd); // dim 0 / -1 of a 0-d tensor: nothing to reduce
  }
  let mask = 0, count = 1;
  const outShape: number[] = [], keepShape: number[] = [];
  for (let d = 0; d < nd; d++) {
    if (dims.includes(d)) {
      mask |= 1 << d;
      count *= shape[d];
      keepShape.push(1);
    } else {
      outShape.push(shape[d]);
      keepShape.push(shape[d]);
    }
  }
  return { mask: mask >>> 0, count, outShape: o.keepDim ? keepShape : outShape, keepShape };
}

function reduce(op: string, x: Tensor, o: ReduceOptions | undefined, isMean: boolean): Tensor {
  x = floatArg(op, 'x', x);
  const plan = reducePlan(op, x.shape, opts<ReduceOptions>(op, o));
  const alpha = isMean ? 1 / plan.count : 1;
  const [out] = withOutputs([Tensor.empty(plan.outShape, x.dtype, x.deviceInfo)], (t) => nat().layersSum(x.nat(), t.nat(), plan.mask, alpha));
  return out;
}

/**
 * Sum over `dim` (number, array, negative allowed; all dims by default), optionally
 * keeping the reduced dims. float32 pairwise accumulation (error grows like log n);
 * the result has x's dtype. Backward: sumBackward.
 */
export function sum(x: Tensor, options?: ReduceOptions): Tensor {
  return reduce('sum', x, options, false);
}

/** Mean over `dim` (see sum); the mean over no elements is NaN. Backward: meanBackward. */
export function mean(x: Tensor, options?: ReduceOptions): Tensor {
  return reduce('mean', x, options, true);
}

function reduceBackward(op: string, dy: Tensor, inputShape: readonly number[], o: ReduceOptions | undefined, isMean: boolean): Tensor {
  dy = floatArg(op, 'dy', dy);
  const shape = checkShape(inputShape, `${op}(inputShape)`);
  const plan = reducePlan(op, shape, opts<ReduceOptions>(op, o));
  if (!sameShape(dy.shape, plan.outShape))
    fail('SHAPE_MISMATCH', `${op}: ${desc('dy', dy)} must be ${shapeStr(plan.outShape)}, the ${isMean ? 'mean' : 'sum'} of ${shapeStr(shape)} with these options`);
  const alpha = isMean ? (plan.count > 0 ? 1 / plan.count : 0) : 1;
  const [storage, code] = dy.nat();
  const [out] = withOutputs([Tensor.empty(shape, dy.dtype, dy.deviceInfo)], (t) => nat().layersScale([storage, code, plan.keepShape], t.nat(), alpha));
  return out;
}

/** Backward of sum(x, options): dy broadcast back to inputShape (x's shape). */
export function sumBackward(dy: Tensor, inputShape: readonly number[], options?: ReduceOptions): Tensor {
  return reduceBackward('sumBackward', dy, inputShape, options, false);
}

/** Backward of mean(x, options): dy / count broadcast back to inputShape. */
export function meanBackward(dy: Tensor, inputShape: readonly number[], options?: ReduceOptions): Tensor {
  return reduceBackward('meanBackward', dy, inputShape, options, true);
}

// ---- normalisation ----

/** Options of rmsNorm. */
export interface RmsNormOptions {
  /** Added to mean(x²) (default 1e-6, Llama). */
  eps?: number;
}

/**
 * RMSNorm (Llama) over the last dim: rstd = 1 / sqrt(mean(x²) + eps), y = x · rstd ·
 * weight. weight [D] (any float dtype; null: none). Returns y (x's dtype and shape) and
 * rstd (float32 [rows], rows = x.size / D) for the backward.
 */
export function rmsNorm(x: Tensor, weight: Tensor | null, options?: RmsNormOptions): { y: Tensor; rstd: Tensor } {
  const op = 'rmsNorm';
  x = floatArg(op, 'x', x);
  const [rows, D] = rowsOf(op, 'x', x);
  const w = paramArg(op, 'weight', weight, x, D);
  const eps = epsOpt(op, opts<RmsNormOptions>(op, options).eps, 1e-6);
  const [y, rstd] = withOutputs(
    [Tensor.empty(x.shape, x.dtype, x.deviceInfo), Tensor.empty([rows], 'float32', x.deviceInfo)],
    (y, r) => nat().layersRmsNorm(x.nat(), w ? w.nat() : null, y.nat(), r.nat(), eps),
  );
  return { y, rstd };
}

/**
 * Backward of rmsNorm: dx (x's dtype) and dWeight (float32 [D], summed over rows from
 * per-thread partials; null when weight is null). rstd is the forward's.
 */
export function rmsNormBackward(dy: Tensor, x: Tensor, weight: Tensor, rstd: Tensor): { dx: Tensor; dWeight: Tensor };
export function rmsNormBackward(dy: Tensor, x: Tensor, weight: Tensor | null, rstd: Tensor): { dx: Tensor; dWeight: Tensor | null };
export function rmsNormBackward(dy: Tensor, x: Tensor, weight: Tensor | null, rstd: Tensor): { dx: Tensor; dWeight: Tensor | null } {
  const op = 'rmsNormBackward';
  x = floatArg(op, 'x', x);
  dy = likeArg(op, 'x', x, 'dy', dy);
  const [rows, D] = rowsOf(op, 'x', x);
  const w = paramArg(op, 'weight', weight, x, D);
  rstd = statArg(op, 'rstd', rstd, x, rows);
  const outs = [Tensor.empty(x.shape, x.dtype, x.deviceInfo), ...(w ? [Tensor.empty([D], 'float32', x.deviceInfo)] : [])];
  withOutputs(outs, (dx: Tensor, dw?: Tensor) => nat().layersRmsNormBackward(dy.nat(), x.nat(), w ? w.nat() : null, rstd.nat(), dx.nat(), dw ? dw.nat() : null));
  return { dx: outs[0], dWeight: outs[1] ?? null };
}

/** Options of layerNorm. */
export interface LayerNormOptions {
  /** Added to the variance (default 1e-5, PyTorch / CLIP). */
  eps?: number;
}

/**
 * LayerNorm over the last dim: y = (x − mean) · rstd · weight + bias, rstd = 1 /
 * sqrt(var + eps) (biased variance). weight, bias [D] or null. Returns y and the float32
 * [rows] mean and rstd for the backward.
 */
export function layerNorm(
  x: Tensor, weight: Tensor | null, bias: Tensor | null, options?: LayerNormOptions,
): { y: Tensor; mean: Tensor; rstd: Tensor } {
  const op = 'layerNorm';
  x = floatArg(op, 'x', x);
  const [rows, D] = rowsOf(op, 'x', x);
  const w = paramArg(op, 'weight', weight, x, D), b = paramArg(op, 'bias', bias, x, D);
  const eps = epsOpt(op, opts<LayerNormOptions>(op, options).eps, 1e-5);
  const [y, m, r] = withOutputs(
    [Tensor.empty(x.shape, x.dtype, x.deviceInfo), Tensor.empty([rows], 'float32', x.deviceInfo), Tensor.empty([rows], 'float32', x.deviceInfo)],
    (y, m, r) => nat().layersLayerNorm(x.nat(), w ? w.nat() : null, b ? b.nat() : null, y.nat(), m.nat(), r.nat(), eps),
  );
  return { y, mean: m, rstd: r };
}

/**
 * Backward of layerNorm: dx (x's dtype), dWeight = Σ_rows dy · x̂ and dBias = Σ_rows dy
 * (float32 [D], per-thread partials reduced after). dWeight is null when weight is null;
 * dBias is always returned (the gradient of a bias, if the layer has one).
 */
export function layerNormBackward(
  dy: Tensor, x: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor,
): { dx: Tensor; dWeight: Tensor; dBias: Tensor };
export function layerNormBackward(
  dy: Tensor, x: Tensor, weight: Tensor | null, mean: Tensor, rstd: Tensor,
): { dx: Tensor; dWeight: Tensor | null; dBias: Tensor };
export function layerNormBackward(
  dy: Tensor, x: Tensor, weight: Tensor | null, mean: Tensor, rstd: Tensor,
): { dx: Tensor; dWeight: Tensor | null; dBias: Tensor } {
  const op = 'layerNormBackward';
  x = floatArg(op, 'x', x);
  dy = likeArg(op, 'x', x, 'dy', dy);
  const [rows, D] = rowsOf(op, 'x', x);
  const w = paramArg(op, 'weight', weight, x, D);
  mean = statArg(op, 'mean', mean, x, rows);
  rstd = statArg(op, 'rstd', rstd, x, rows);
  const dev = x.deviceInfo;
  const outs = [Tensor.empty(x.shape, x.dtype, dev), Tensor.empty([D], 'float32', dev), ...(w ? [Tensor.empty([D], 'float32', dev)] : [])];
  withOutputs(outs, (dx: Tensor, db: Tensor, dw?: Tensor) =>
    nat().layersLayerNormBackward(dy.nat(), x.nat(), w ? w.nat() : null, mean.nat(), rstd.nat(), dx.nat(), dw ? dw.nat() : null, db.nat()),
  );
  return { dx: outs[0], dWeight: outs[2] ?? null, dBias: outs[1] };
}

/** Options of l2Normalize and its backward. */
export interface L2NormalizeOptions {
  /** Lower bound of the norm (default 1e-12, as torch.nn.functional.normalize). */
  eps?: number;
}

/** y = x / max(‖x‖₂, eps) over the last dim (torch.nn.functional.normalize). */
export function l2Normalize(x: Tensor, options?: L2NormalizeOptions): Tensor {
  const op = 'l2Normalize';
  x = floatArg(op, 'x', x);
  rowsOf(op, 'x', x);
  const eps = epsOpt(op, opts<L2NormalizeOptions>(op, options).eps, 1e-12);
  const [y] = withOutputs([Tensor.empty(x.shape, x.dtype, x.deviceInfo)], (y) => nat().layersL2Normalize(x.nat(), y.nat(), eps));
  return y;
}

/**
 * Backward of l2Normalize (same options): with n = ‖x‖, dx = (dy − y (y·dy)) / n where
 * n ≥ eps, dx = dy / eps where the norm was clamped.
 */
export function l2NormalizeBackward(dy: Tensor, x: Tensor, options?: L2NormalizeOptions): Tensor {
  const op = 'l2NormalizeBackward';
  x = floatArg(op, 'x', x);
  dy = likeArg(op, 'x', x, 'dy', dy);
  rowsOf(op, 'x', x);
  const eps = epsOpt(op, opts<L2NormalizeOptions>(op, options).eps, 1e-12);
  const [dx] = withOutputs([Tensor.empty(x.shape, x.dtype, x.deviceInfo)], (dx) => nat().layersL2NormalizeBackward(dy.nat(), x.nat(), dx.nat(), eps));
  return dx;
}

// ---- softmax ----

/** Softmax over the last dim (the row maximum subtracted first). */
export function softmax(x: Tensor): Tensor {
  x = floatArg('softmax', 'x', x);
  rowsOf('softmax', 'x', x);
  const [y] = withOutputs([Tensor.empty(x.shape, x.dtype, x.deviceInfo)], (y) => nat().layersSoftmax(x.nat(), y.nat()));
  return y;
}

/** Backward of softmax from its output y: dx = y · (dy − Σ dy·y). */
export function softmaxBackward(dy: Tensor, y: Tensor): Tensor {
  const op = 'softmaxBackward';
  y = floatArg(op, 'y', y);
  dy = likeArg(op, 'y', y, 'dy', dy);
  rowsOf(op, 'y', y);
  const [dx] = withOutputs([Tensor.empty(y.shape, y.dtype, y.deviceInfo)], (dx) => nat().layersSoftmaxBackward(dy.nat(), y.nat(), dx.nat()));
  return dx;
}

// ---- rope ----

/** Llama 3 frequency scaling (Hugging Face rope_type 'llama3'). */
export interface RopeLlama3Scaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}
/** Linear position interpolation: inv_freq / factor. */
export interface RopeLinearScaling {
  type: 'linear';
  factor: number;
}
/** Frequency scaling of rope: llama3 or linear. */
export type RopeScaling = RopeLlama3Scaling | RopeLinearScaling;

/** Options of rope and ropeBackward (pass the same to both). */
export interface RopeOptions {
  /** Base of the frequencies (default 10000; Llama 3: 500000). */
  theta?: number;
  /** Frequency scaling (default none). */
  scaling?: RopeScaling | null;
}

function rope_(op: string, x: Tensor, positions: Tensor, options: RopeOptions | undefined, backward: boolean): Tensor {
  const xn = backward ? 'dy' : 'x';
  x = floatArg(op, xn, x);
  positions = checkTensor(positions, op, 'positions');
  checkSameDevice(op, { [xn]: x, positions });
  if (x.ndim !== 4) fail('SHAPE_MISMATCH', `${op}: ${desc(xn, x)} must be [B,S,H,D]`);
  const [B, S, , D] = x.shape;
  if (D % 2 !== 0) fail('SHAPE_MISMATCH', `${op}: ${desc(xn, x)}: the head dim D = ${D} must be even`);
  if (positions.dtype !== 'int32') fail('DTYPE_MISMATCH', `${op}: ${desc('positions', positions)} must be int32`);
  if (!sameShape(positions.shape, [B, S]) && !sameShape(positions.shape, [S]))
    fail('SHAPE_MISMATCH', `${op}: ${desc('positions', positions)} must be [B,S] = [${B},${S}] or [S] = [${S}]`);
  const o = opts<RopeOptions>(op, options);
  const theta = o.theta === undefined ? 10000 : checkNumber(op, 'options.theta', o.theta, Number.MIN_VALUE);
  let kind = 0, factor = 1, lo = 1, hi = 2, orig = 1;
  const sc = o.scaling;
  if (sc !== undefined && sc !== null) {
    if (typeof sc !== 'object') fail('INVALID_ARGUMENT', `${op}: options.scaling must be an object`);
    if (sc.type === 'linear') {
      kind = 1;
      factor = checkNumber(op, 'options.scaling.factor', sc.factor, Number.MIN_VALUE);
    } else if (sc.type === 'llama3') {
      kind = 2;
      factor = checkNumber(op, 'options.scaling.factor', sc.factor, Number.MIN_VALUE);
      lo = checkNumber(op, 'options.scaling.lowFreqFactor', sc.lowFreqFactor, Number.MIN_VALUE);
      hi = checkNumber(op, 'options.scaling.highFreqFactor', sc.highFreqFactor, Number.MIN_VALUE);
      orig = checkNumber(op, 'options.scaling.originalMaxPositionEmbeddings', sc.originalMaxPositionEmbeddings, Number.MIN_VALUE);
      if (!(hi > lo)) fail('INVALID_ARGUMENT', `${op}: llama3 scaling needs lowFreqFactor < highFreqFactor (got ${lo} and ${hi})`);
    } else {
      fail('INVALID_ARGUMENT', `${op}: unknown options.scaling.type ${JSON.stringify((sc as { type?: unknown }).type)} (expected 'llama3' or 'linear')`);
    }
  }
  const [out] = withOutputs([Tensor.empty(x.shape, x.dtype, x.deviceInfo)], (t) =>
    nat().layersRope(x.nat(), positions.nat(), t.nat(), backward, theta, kind, factor, lo, hi, orig),
  );
  return out;
}

/**
 * Rotary position embedding, Hugging Face Llama convention (rotate_half, pairs (i,
 * i + D/2)): x [B,S,H,D] (D even), positions int32 [B,S] (per sequence, e.g. left padding)
 * or [S]. inv_freq_i = theta^(−2i/D), optionally scaled (llama3 as transformers'
 * _compute_llama3_parameters, or linear); angles in float64, so large positions stay
 * accurate.
 */
export function rope(x: Tensor, positions: Tensor, options?: RopeOptions): Tensor {
  return rope_('rope', x, positions, options, false);
}

/** Backward of rope (same positions and options): dy rotated by −angle. */
export function ropeBackward(dy: Tensor, positions: Tensor, options?: RopeOptions): Tensor {
  return rope_('ropeBackward', dy, positions, options, true);
}

// ---- activations ----

function act(op: string, kind: number, x: Tensor): Tensor {
  x = floatArg(op, 'x', x);
  const [y] = withOutputs([Tensor.empty(x.shape, x.dtype, x.deviceInfo)], (y) => nat().layersActivation(kind, x.nat(), y.nat()));
  return y;
}
function actBackward(op: string, kind: number, dy: Tensor, x: Tensor): Tensor {
  x = floatArg(op, 'x', x);
  dy = likeArg(op, 'x', x, 'dy', dy);
  const [dx] = withOutputs([Tensor.empty(x.shape, x.dtype, x.deviceInfo)], (dx) => nat().layersActivationBackward(kind, dy.nat(), x.nat(), dx.nat()));
  return dx;
}

/** Options of gelu and geluBackward. */
export interface GeluOptions {
  /** 'none' (default): 0.5x(1 + erf(x/√2)); 'tanh': PyTorch's tanh approximation. */
  approximate?: 'none' | 'tanh';
}

function geluKind(op: string, options: GeluOptions | undefined): number {
  const a = opts<GeluOptions>(op, options).approximate ?? 'none';
  if (a !== 'none' && a !== 'tanh') fail('INVALID_ARGUMENT', `${op}: options.approximate must be 'none' or 'tanh' (got ${JSON.stringify(a)})`);
  return a === 'none' ? 0 : 1;
}

/** GELU: 0.5·x·(1 + erf(x/√2)), or with approximate: 'tanh' 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))). */
export function gelu(x: Tensor, options?: GeluOptions): Tensor {
  return act('gelu', geluKind('gelu', options), x);
}

/** Backward of gelu (same options): dx = dy · gelu'(x). */
export function geluBackward(dy: Tensor, x: Tensor, options?: GeluOptions): Tensor {
  return actBackward('geluBackward', geluKind('geluBackward', options), dy, x);
}

/** QuickGELU (OpenAI CLIP): x · sigmoid(1.702 x). */
export function quickGelu(x: Tensor): Tensor {
  return act('quickGelu', 2, x);
}

/** Backward of quickGelu: dx = dy · (s + 1.702 x s (1 − s)), s = sigmoid(1.702 x). */
export function quickGeluBackward(dy: Tensor, x: Tensor): Tensor {
  return actBackward('quickGeluBackward', 2, dy, x);
}

/** SwiGLU gating (Llama MLP): silu(gate) · up, gate and up of one shape and dtype. */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  const op = 'swiglu';
  gate = floatArg(op, 'gate', gate);
  up = likeArg(op, 'gate', gate, 'up', up);
  const [out] = withOutputs([Tensor.empty(gate.shape, gate.dtype, gate.deviceInfo)], (o) => nat().layersSwiglu(gate.nat(), up.nat(), o.nat()));
  return out;
}

/**
 * Backward of swiglu: dUp = dy · silu(gate), dGate = dy · up · s (1 + gate (1 − s)),
 * s = sigmoid(gate).
 */
export function swigluBackward(dy: Tensor, gate: Tensor, up: Tensor): { dGate: Tensor; dUp: Tensor } {
  const op = 'swigluBackward';
  gate = floatArg(op, 'gate', gate);
  up = likeArg(op, 'gate', gate, 'up', up);
  dy = likeArg(op, 'gate', gate, 'dy', dy);
  const [dGate, dUp] = withOutputs(
    [Tensor.empty(gate.shape, gate.dtype, gate.deviceInfo), Tensor.empty(gate.shape, gate.dtype, gate.deviceInfo)],
    (dg, du) => nat().layersSwigluBackward(dy.nat(), gate.nat(), up.nat(), dg.nat(), du.nat()),
  );
  return { dGate, dUp };
}

// ---- dropout ----

/** Options of dropout and dropoutBackward (the same p and seed for both). */
export interface DropoutOptions {
  /** Drop probability in [0, 1) (used as float32). */
  p: number;
  /** Mask seed: a non-negative integer below 2^64 (number or bigint). */
  seed: number | bigint;
}

function dropoutOpts(op: string, options: DropoutOptions | undefined): [number, bigint] {
  const o = opts<DropoutOptions>(op, options);
  const p = checkNumber(op, 'options.p', o.p, 0);
  if (!(p < 1) || !(Math.fround(p) < 1)) fail('INVALID_ARGUMENT', `${op}: options.p must be in [0, 1) (got ${p})`);
  if (o.seed === undefined) fail('INVALID_ARGUMENT', `${op}: options.seed is required (the backward regenerates the mask from it)`);
  return [p, toSeed(o.seed, `${op}(options.seed)`)];
}

/**
 * Dropout: element i (flat index) is kept iff its Philox word for (seed, i) is ≥
 * floor(p·2³²) (native/core/dropout.h, the rule loraLinear and CUDA share), and kept
 * elements are scaled by 1/(1 − p). p = 0 is the identity.
 */
export function dropout(x: Tensor, options: DropoutOptions): Tensor {
  const op = 'dropout';
  x = floatArg(op, 'x', x);
  const [p, seed] = dropoutOpts(op, options);
  const [y] = withOutputs([Tensor.empty(x.shape, x.dtype, x.deviceInfo)], (y) => nat().layersDropout(x.nat(), y.nat(), p, seed, false));
  return y;
}

/** Backward of dropout (same p and seed): the mask is regenerated, dx = mask · dy / (1 − p). */
export function dropoutBackward(dy: Tensor, options: DropoutOptions): Tensor {
  const op = 'dropoutBackward';
  dy = floatArg(op, 'dy', dy);
  const [p, seed] = dropoutOpts(op, options);
  const [dx] = withOutputs([Tensor.empty(dy.shape, dy.dtype, dy.deviceInfo)], (dx) => nat().layersDropout(dy.nat(), dx.nat(), p, seed, true));
  return dx;
}

// ---- pooling ----

function poolMask(op: string, mask: unknown, B: number, S: number, ref: Tensor, refName: string): Tensor {
  const m = checkTensor(mask, op, 'mask');
  checkSameDevice(op, { [refName]: ref, mask: m });
  if (!sameShape(m.shape, [B, S])) fail('SHAPE_MISMATCH', `${op}: ${desc('mask', m)} must be [B,S] = [${B},${S}]`);
  return m;
}

/**
 * Masked mean over the sequence: hidden [B,S,H], mask [B,S] int32 (nonzero = pooled) or
 * float weights (weighted mean Σ w·h / Σ w, LLM2Vec's weighted_mean). A row with nothing
 * pooled (Σ w = 0) gives zeros. Returns [B,H] of hidden's dtype.
 */
export function maskedMeanPool(hidden: Tensor, mask: Tensor): Tensor {
  const op = 'maskedMeanPool';
  hidden = floatArg(op, 'hidden', hidden);
  if (hidden.ndim !== 3) fail('SHAPE_MISMATCH', `${op}: ${desc('hidden', hidden)} must be [B,S,H]`);
  const [B, S, H] = hidden.shape;
  const m = poolMask(op, mask, B, S, hidden, 'hidden');
  const [out] = withOutputs([Tensor.empty([B, H], hidden.dtype, hidden.deviceInfo)], (o) => nat().layersMaskedMeanPool(hidden.nat(), m.nat(), o.nat()));
  return out;
}

/** Backward of maskedMeanPool: dHidden[b,s] = w[b,s] / Σ_s w[b,s] · dy[b] ([B,S,H], zeros where Σ w = 0). */
export function maskedMeanPoolBackward(dy: Tensor, mask: Tensor, S: number): Tensor {
  const op = 'maskedMeanPoolBackward';
  dy = floatArg(op, 'dy', dy);
  if (dy.ndim !== 2) fail('SHAPE_MISMATCH', `${op}: ${desc('dy', dy)} must be [B,H]`);
  if (typeof S !== 'number' || !Number.isSafeInteger(S) || S < 0) fail('INVALID_ARGUMENT', `${op}: S must be a non-negative integer (got ${String(S)})`);
  const [B, H] = dy.shape;
  const m = poolMask(op, mask, B, S, dy, 'dy');
  const [dh] = withOutputs([Tensor.empty([B, S, H], dy.dtype, dy.deviceInfo)], (d) => nat().layersMaskedMeanPoolBackward(dy.nat(), m.nat(), d.nat()));
  return dh;
}
