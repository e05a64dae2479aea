// ops/infonce.ts: the InfoNCE / CLIP contrastive loss without the N x M logits, forward and
// backward. Validates in TypeScript (typed errors naming the argument), allocates the
// outputs, then makes one native call (native/core/api_infonce.cc re-checks).
import { fail } from '../errors';
import { NativeStorage } from '../binding';
import { Tensor, shapeStr } from '../tensor';
import { checkFloat, checkSameDType, checkSameDevice, checkTensor, desc, nativeOps, withOutputs } from './util';

type T3 = [NativeStorage, number, number[]];

interface InfonceNative {
  infonceForward(a: T3, b: T3, scale: number, scaleTensor: T3 | null, symmetric: boolean,
    loss: T3, lseRows: T3, lseCols: T3 | null): void;
  infonceBackward(a: T3, b: T3, scale: number, scaleTensor: T3 | null, symmetric: boolean,
    lseRows: T3, lseCols: T3 | null, gradLoss: number, gradLossTensor: T3 | null,
    da: T3, db: T3, dScale: T3): void;
}

/** Options of {@link infoNCE}. */
export interface InfoNCEOptions {
  /**
   * Logit scale (CLIP's exp(logit_scale), e.g. 100): a finite number, or a one-element
   * float32 tensor on the inputs' device (a learnable scale, read natively without a
   * round trip through JavaScript).
   */
  scale: number | Tensor;
  /**
   * The CLIP loss: the mean of the row-wise (a -> b) and column-wise (b -> a) InfoNCE
   * losses. Requires as many rows in b as in a. Default false.
   */
  symmetric?: boolean;
}

/** What {@link infoNCE} returns. The caller owns (and disposes) the tensors. */
export interface InfoNCEResult {
  /** The loss: a one-element (0-d) float32 tensor on the inputs' device; `.item()` reads it. */
  loss: Tensor;
  /** float32 [N]: logsumexp over the M columns of each row of the logits (for the backward). */
  lseRows: Tensor;
  /** float32 [M]: logsumexp over the rows of each column (symmetric only, else null). */
  lseCols: Tensor | null;
}

/** Options of {@link infoNCEBackward}. */
export interface InfoNCEBackwardOptions {
  /** The forward's scale (number or one-element float32 tensor). */
  scale: number | Tensor;
  /** As in the forward. Default false. */
  symmetric?: boolean;
  /** The forward's `lseRows` (float32 [N]). */
  lseRows: Tensor;
  /** The forward's `lseCols` (float32 [M]): required when symmetric, null / absent otherwise. */
  lseCols?: Tensor | null;
  /** Upstream gradient d(objective)/d(loss): a number or a one-element float32 tensor. Default 1. */
  gradLoss?: number | Tensor;
}

/** What {@link infoNCEBackward} returns. The caller owns (and disposes) the tensors. */
export interface InfoNCEGrads {
  /** d/da, [N,d] in a's dtype. */
  da: Tensor;
  /** d/db, [M,d] in b's dtype. */
  db: Tensor;
  /** d/d scale: a one-element (0-d) float32 tensor. */
  dScale: Tensor;
}

interface Checked {
  N: number;
  M: number;
  d: number;
  symmetric: boolean;
  scale: number;
  scaleTensor: Tensor | null;
}

/** A finite number, or a one-element float32 tensor on `device`'s device. */
function checkScalar(op: string, name: string, v: unknown, like: Tensor): [number, Tensor | null] {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) fail('INVALID_ARGUMENT', `${op}: ${name} must be a finite number (got ${v})`);
    return [v, null];
  }
  if (v instanceof Tensor) {
    checkTensor(v, op, name);
    checkSameDevice(op, { a: like, [name]: v });
    if (v.dtype !== 'float32') fail('DTYPE_MISMATCH', `${op}: ${desc(name, v)} must be float32`);
    if (v.size !== 1) fail('SHAPE_MISMATCH', `${op}: ${desc(name, v)} must hold exactly one element`);
    return [0, v];
  }
  return fail('INVALID_ARGUMENT', `${op}: ${name} must be a finite number or a one-element float32 Tensor (got ${String(v)})`);
}

function checkInputs(op: string, a: unknown, b: unknown, options: { scale?: unknown; symmetric?: unknown } | undefined): Checked {
  const ta = checkTensor(a, op, 'a'), tb = checkTensor(b, op, 'b');
  checkSameDevice(op, { a: ta, b: tb });
  checkFloat(op, 'a', ta);
  checkSameDType(op, { a: ta, b: tb });
  if (!options || typeof options !== 'object') fail('INVALID_ARGUMENT', `${op}: options with a scale are required`);
  if (ta.ndim !== 2 || tb.ndim !== 2)
    fail('SHAPE_MISMATCH', `${op}: ${desc('a', ta)} and ${desc('b', tb)} must be 2-D ([N,d] and [M,d])`);
  const [N, d] = ta.shape, [M, db] = tb.shape;
  if (d !== db) fail('SHAPE_MISMATCH', `${op}: ${desc('a', ta)} and ${desc('b', tb)} must have the same d`);
  if (M < N)
    fail('SHAPE_MISMATCH', `${op}: ${desc('a', ta)}, ${desc('b', tb)}: b needs at least as many rows as a (row i's positive is b row i)`);
  const symmetric = options.symmetric ?? false;
  if (typeof symmetric !== 'boolean') fail('INVALID_ARGUMENT', `${op}: symmetric must be a boolean (got ${String(symmetric)})`);
  if (symmetric && M !== N)
    fail('SHAPE_MISMATCH', `${op}: ${desc('a', ta)}, ${desc('b', tb)}: the symmetric loss needs as many rows in b as in a`);
  const [scale, scaleTensor] = checkScalar(op, 'scale', options.scale, ta);
  return { N, M, d, symmetric, scale, scaleTensor };
}

function checkLse(op: string, name: string, t: unknown, n: number, like: Tensor): Tensor {
  const l = checkTensor(t, op, name);
  checkSameDevice(op, { a: like, [name]: l });
  if (l.dtype !== 'float32') fail('DTYPE_MISMATCH', `${op}: ${desc(name, l)} must be float32`);
  if (l.ndim !== 1 || l.shape[0] !== n) fail('SHAPE_MISMATCH', `${op}: ${desc(name, l)} must be ${shapeStr([n])}`);
  return l;
}

/**
 * InfoNCE loss of a [N,d] against b [M,d] (M >= N), computed without materialising the
 * N x M logits L = scale · a · bᵀ: row i's positive is column i, the other M−1 columns
 * (in-batch and hard negatives) are its negatives.
 *
 *     loss = mean_i (logsumexp_j L[i,j] − L[i,i])
 *
 * With `symmetric` (M = N, the CLIP loss) the mean of that and the same over columns.
 * Inputs float32, bfloat16 or float16 (alike), computed in float32 with online
 * log-sum-exp (stable at any scale), the loss accumulated in double. Keep `lseRows` /
 * `lseCols` for {@link infoNCEBackward}. CPU and CUDA tensors (on CUDA the loss stays on
 * the device: no host synchronisation until it is read).
 */
export function infoNCE(a: Tensor, b: Tensor, options: InfoNCEOptions): InfoNCEResult {
  const op = 'infoNCE';
  const c = checkInputs(op, a, b, options);
  const dev = a.deviceInfo;
  const outs: Tensor[] = [Tensor.empty([], 'float32', dev), Tensor.empty([c.N], 'float32', dev)];
  if (c.symmetric) outs.push(Tensor.empty([c.M], 'float32', dev));
  withOutputs(outs, (loss: Tensor, lseRows: Tensor, lseCols?: Tensor) => {
    nativeOps<InfonceNative>().infonceForward(a.nat(), b.nat(), c.scale, c.scaleTensor?.nat() ?? null, c.symmetric,
      loss.nat(), lseRows.nat(), lseCols ? lseCols.nat() : null);
  });
  return { loss: outs[0], lseRows: outs[1], lseCols: c.symmetric ? outs[2] : null };
}

/**
 * Gradients of `gradLoss · loss` for {@link infoNCE}'s loss: the logits are recomputed tile
 * by tile (never stored) from the forward's `lseRows` / `lseCols`. With
 * G = dloss/dL: da = scale · G · b, db = scale · Gᵀ · a, dScale = Σ G ∘ (a · bᵀ).
 * da / db come in a / b's dtype, dScale as a one-element float32 tensor.
 */
export function infoNCEBackward(a: Tensor, b: Tensor, options: InfoNCEBackwardOptions): InfoNCEGrads {
  const op = 'infoNCEBackward';
  const c = checkInputs(op, a, b, options);
  const lseRows = checkLse(op, 'lseRows', options.lseRows, c.N, a);
  let lseCols: Tensor | null = null;
  if (c.symmetric) {
    if (options.lseCols == null) fail('INVALID_ARGUMENT', `${op}: lseCols (from the forward) is required for the symmetric loss`);
    lseCols = checkLse(op, 'lseCols', options.lseCols, c.M, a);
  } else if (options.lseCols != null) {
    fail('INVALID_ARGUMENT', `${op}: lseCols must be null or absent when the loss is not symmetric`);
  }
  const [gradLoss, gradLossTensor] = checkScalar(op, 'gradLoss', options.gradLoss ?? 1, a);
  const dev = a.deviceInfo;
  const [da, db, dScale] = withOutputs(
    [Tensor.empty([c.N, c.d], a.dtype, dev), Tensor.empty([c.M, c.d], b.dtype, dev), Tensor.empty([], 'float32', dev)],
    (da, db, ds) => {
      nativeOps<InfonceNative>().infonceBackward(a.nat(), b.nat(), c.scale, c.scaleTensor?.nat() ?? null, c.symmetric,
        lseRows.nat(), lseCols ? lseCols.nat() : null, gradLoss, gradLossTensor?.nat() ?? null,
        da.nat(), db.nat(), ds.nat());
    },
  );
  return { da, db, dScale };
}
