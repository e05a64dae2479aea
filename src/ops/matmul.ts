// ops/matmul.ts: matrix products. Validates in TypeScript (typed errors naming the
// arguments and shapes), then makes one native call.
import { native } from '../binding';
import { DType, checkDType, sameDevice } from '../dtype';
import { fail } from '../errors';
import { Tensor, shapeStr } from '../tensor';

export interface MatmulOptions {
  /** Use aᵀ: a is stored [K,M] ([B,K,M] batched). */
  transA?: boolean;
  /** Use bᵀ: b is stored [N,K] ([B,N,K] batched). */
  transB?: boolean;
  /** Output dtype: the inputs' dtype (default) or 'float32'. */
  outDtype?: DType;
}

/**
 * op(a) · op(b) with float32 accumulation. 2-D: [M,K]·[K,N] -> [M,N]. 3-D: batched
 * [B,M,K]·[B,K,N] -> [B,M,N]; a batch of 1, or a 2-D operand beside a 3-D one, is
 * broadcast over the batch. Inputs float32, bfloat16 or float16 (both alike).
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  if (!(a instanceof Tensor)) fail('INVALID_ARGUMENT', 'matmul(a, b): a is not a Tensor');
  if (!(b instanceof Tensor)) fail('INVALID_ARGUMENT', 'matmul(a, b): b is not a Tensor');
  a.nat('matmul: a');
  b.nat('matmul: b');
  const transA = !!options.transA;
  const transB = !!options.transB;
  const desc = () =>
    `a ${a.dtype}${shapeStr(a.shape)}${transA ? 'ᵀ' : ''}, b ${b.dtype}${shapeStr(b.shape)}${transB ? 'ᵀ' : ''}`;
  if (!sameDevice(a.deviceInfo, b.deviceInfo))
    fail('DEVICE_MISMATCH', `matmul: a is on ${a.device} and b on ${b.device}; move one with to()`);
  if (a.dtype !== b.dtype) fail('DTYPE_MISMATCH', `matmul: ${desc()}: the dtypes must match`);
  if (a.dtype === 'int32') fail('DTYPE_MISMATCH', `matmul: ${desc()}: int32 is not supported (float32, bfloat16, float16)`);
  const outDtype = checkDType(options.outDtype ?? a.dtype, 'matmul(options.outDtype)');
  if (outDtype !== a.dtype && outDtype !== 'float32')
    fail('DTYPE_MISMATCH', `matmul(options.outDtype): ${outDtype} must be ${a.dtype} or float32`);
  const ra = a.ndim, rb = b.ndim;
  if (ra < 2 || ra > 3 || rb < 2 || rb > 3)
    fail('SHAPE_MISMATCH', `matmul: ${desc()}: operands must be 2-D or 3-D`);
  const batched = ra === 3 || rb === 3;
  const [ba, ma, ka] = ra === 3 ? a.shape : [1, ...a.shape];
  const [bb, kb, nb] = rb === 3 ? b.shape : [1, ...b.shape];
  const M = transA ? ka : ma, Ka = transA ? ma : ka;
  const Kb = transB ? nb : kb, N = transB ? kb : nb;
  if (Ka !== Kb) fail('SHAPE_MISMATCH', `matmul: ${desc()}: inner dimensions differ (${Ka} vs ${Kb})`);
  if (ba !== bb && ba !== 1 && bb !== 1)
    fail('SHAPE_MISMATCH', `matmul: ${desc()}: batch sizes ${ba} and ${bb} do not broadcast`);
  const batch = Math.max(ba, bb);
  const outShape = batched ? [batch, M, N] : [M, N];
  const out = Tensor.empty(outShape, outDtype, a.deviceInfo);
  try {
    const a3 = [ba, a.shape[ra - 2], a.shape[ra - 1]];
    const b3 = [bb, b.shape[rb - 2], b.shape[rb - 1]];
    const [sa, da] = a.nat();
    const [sb, db] = b.nat();
    const [so, dout] = out.nat();
    native.matmul(sa, da, a3, sb, db, b3, so, dout, [batch, M, N], transA, transB);
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}
