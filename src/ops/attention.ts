// ops/attention.ts: fused bidirectional / causal attention (flash-style), forward and backward.
// Validates in TypeScript (typed errors naming the argument, its dtype and shape), then
// makes one native call (l2c_attention_forward / l2c_attention_backward).
import { NativeStorage } from '../binding';
import { fail } from '../errors';
import { Tensor, shapeStr } from '../tensor';
import { checkFloat, checkSameDevice, checkSameDType, checkTensor, desc, nativeOps, withOutputs } from './util';

type Nat = [NativeStorage, number, number[]];

interface AttentionNative {
  attentionForward(q: Nat, k: Nat, v: Nat, mask: Nat | null, out: Nat, lse: Nat, causal: boolean, scale: number): void;
  attentionBackward(
    dout: Nat, q: Nat, k: Nat, v: Nat, out: Nat, lse: Nat, mask: Nat | null,
    dq: Nat, dk: Nat, dv: Nat, causal: boolean, scale: number,
  ): void;
}

/** Options of {@link attention} and {@link attentionBackward} (pass the same to both). */
export interface AttentionOptions {
  /** Query i attends only keys j <= i (combined with the padding mask). Default false. */
  causal?: boolean;
  /** Factor applied to q·k before the softmax. Default 1/sqrt(D). Must be finite. */
  scale?: number;
  /**
   * int32 [B,S]: nonzero where the key may be attended (covers left and right padding).
   * Default: every key.
   */
  keyPaddingMask?: Tensor | null;
}

/** What {@link attention} returns. */
export interface AttentionResult {
  /** [B,S,Hq,D] in q's dtype. */
  out: Tensor;
  /**
   * float32 [B,Hq,S]: natural log of each query row's softmax denominator, scale
   * included: lse_i = log Σ_j exp(scale·q_i·k_j) over the attendable keys; -Infinity
   * for a row with no attendable key. {@link attentionBackward} needs it.
   */
  lse: Tensor;
}

/** What {@link attentionBackward} returns: gradients shaped and typed like q, k, v. */
export interface AttentionGrads {
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
}

interface Checked {
  B: number;
  S: number;
  Hq: number;
  D: number;
  causal: boolean;
  scale: number;
  mask: Tensor | null;
}

function checkInputs(op: string, q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Checked {
  if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', `${op}: options must be an object`);
  const mask = options.keyPaddingMask == null ? null : checkTensor(options.keyPaddingMask, op, 'keyPaddingMask');
  checkSameDevice(op, { q, k, v, keyPaddingMask: mask });
  checkFloat(op, 'q', q);
  checkSameDType(op, { q, k, v });
  const all = () => `${desc('q', q)}, ${desc('k', k)}, ${desc('v', v)}`;
  if (q.ndim !== 4 || k.ndim !== 4 || v.ndim !== 4)
    fail('SHAPE_MISMATCH', `${op}: ${all()} must be 4-D: q [B,S,Hq,D], k and v [B,S,Hkv,D]`);
  const [B, S, Hq, D] = q.shape;
  const Hkv = k.shape[2];
  if (shapeStr(k.shape) !== shapeStr(v.shape) || k.shape[0] !== B || k.shape[1] !== S || k.shape[3] !== D)
    fail('SHAPE_MISMATCH', `${op}: ${all()}: k and v must be [B,S,Hkv,D] with q's B, S and D`);
  if (Hkv < 1 || Hq % Hkv !== 0)
    fail('SHAPE_MISMATCH', `${op}: ${all()}: the query heads (${Hq}) must be a multiple of the key/value heads (${Hkv})`);
  if (D < 1 || D > 256) fail('SHAPE_MISMATCH', `${op}: ${desc('q', q)}: head dim ${D} outside [1, 256]`);
  if (mask) {
    if (mask.dtype !== 'int32') fail('DTYPE_MISMATCH', `${op}: ${desc('keyPaddingMask', mask)} must be int32`);
    if (mask.ndim !== 2 || mask.shape[0] !== B || mask.shape[1] !== S)
      fail('SHAPE_MISMATCH', `${op}: ${desc('keyPaddingMask', mask)} must be [${B},${S}] (q is ${shapeStr(q.shape)})`);
  }
  const scale = options.scale ?? 1 / Math.sqrt(D);
  if (typeof scale !== 'number' || !Number.isFinite(scale))
    fail('INVALID_ARGUMENT', `${op}: options.scale must be a finite number (got ${String(options.scale)})`);
  if (!Number.isFinite(Math.fround(scale)))
    fail('INVALID_ARGUMENT', `${op}: options.scale ${scale} overflows float32`);
  return { B, S, Hq, D, causal: !!options.causal, scale, mask };
}

/**
 * Fused scaled dot-product attention, flash-style (no [S,S] matrix is materialised):
 * out_i = Σ_j softmax_j(scale·q_i·k_j) v_j over the keys query i may attend.
 *
 * q [B,S,Hq,D]; k, v [B,S,Hkv,D] with Hq a multiple of Hkv (grouped-query attention:
 * query head h reads key/value head floor(h / (Hq/Hkv))); 1 <= D <= 256. q, k, v share
 * one dtype (float32, bfloat16 or float16), computed in float32. A query row with no
 * attendable key gets zeros and lse = -Infinity. Runs on the tensors' device: the CPU, or
 * a CUDA GPU (FlashAttention-2-style kernels, tensor cores for bfloat16 / float16 with
 * D <= 128 on sm_80+).
 *
 * @returns out [B,S,Hq,D] (q's dtype) and lse [B,Hq,S] (float32), which
 * {@link attentionBackward} takes back.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): AttentionResult {
  const op = 'attention';
  checkTensor(q, op, 'q');
  checkTensor(k, op, 'k');
  checkTensor(v, op, 'v');
  const c = checkInputs(op, q, k, v, options);
  const [out, lse] = withOutputs(
    [Tensor.empty(q.shape, q.dtype, q.deviceInfo), Tensor.empty([c.B, c.Hq, c.S], 'float32', q.deviceInfo)],
    (out, lse) => {
      nativeOps<AttentionNative>().attentionForward(
        q.nat(), k.nat(), v.nat(), c.mask ? c.mask.nat() : null, out.nat(), lse.nat(), c.causal, c.scale,
      );
    },
  );
  return { out, lse };
}

/**
 * Gradients of {@link attention} (FlashAttention-2 backward: the probabilities are
 * recomputed per tile from lse). dOut is dL/dout; q, k, v, out and lse as given to /
 * returned by the forward, with the same options. Rows with no attendable key, and
 * keys nobody attends, get zero gradients.
 *
 * @returns dq, dk, dv with the shapes and dtypes of q, k, v.
 */
export function attentionBackward(
  dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, options: AttentionOptions = {},
): AttentionGrads {
  const op = 'attentionBackward';
  for (const [name, t] of [['dOut', dOut], ['q', q], ['k', k], ['v', v], ['out', out], ['lse', lse]] as const)
    checkTensor(t, op, name);
  const c = checkInputs(op, q, k, v, options);
  checkSameDevice(op, { q, dOut, out, lse });
  for (const [name, t] of [['dOut', dOut], ['out', out]] as const) {
    if (t.dtype !== q.dtype) fail('DTYPE_MISMATCH', `${op}: ${desc(name, t)} must be ${q.dtype} like q`);
    if (shapeStr(t.shape) !== shapeStr(q.shape)) fail('SHAPE_MISMATCH', `${op}: ${desc(name, t)} must be ${shapeStr(q.shape)} like q`);
  }
  if (lse.dtype !== 'float32') fail('DTYPE_MISMATCH', `${op}: ${desc('lse', lse)} must be float32`);
  const lseShape = [c.B, c.Hq, c.S];
  if (shapeStr(lse.shape) !== shapeStr(lseShape)) fail('SHAPE_MISMATCH', `${op}: ${desc('lse', lse)} must be ${shapeStr(lseShape)} ([B,Hq,S])`);
  const [dq, dk, dv] = withOutputs(
    [
      Tensor.empty(q.shape, q.dtype, q.deviceInfo),
      Tensor.empty(k.shape, k.dtype, k.deviceInfo),
      Tensor.empty(v.shape, v.dtype, v.deviceInfo),
    ],
    (dq, dk, dv) => {
      nativeOps<AttentionNative>().attentionBackward(
        dOut.nat(), q.nat(), k.nat(), v.nat(), out.nat(), lse.nat(), c.mask ? c.mask.nat() : null,
        dq.nat(), dk.nat(), dv.nat(), c.causal, c.scale,
      );
    },
  );
  return { dq, dk, dv };
}
