// Layers: the native argument checks (native/core/api_layers.cc) called directly, past the
// TypeScript checks, so that what memory safety depends on is proven at the C ABI too:
// every bad call gives a typed error naming the op and the argument, never a crash.
// Plus the ops on CUDA tensors against the CPU where a GPU is present.
import { ops, tensor, Tensor, DType } from '../src';
import { nativeOps } from '../src/ops/util';
import { setPoisonOutputs } from '../src/tensor';
import { describeGpu, expectCode, hasGpu } from './helpers';
import { close, disposeAll, host, rnd } from './layers-ref';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const N = nativeOps<Record<string, (...args: any[]) => void>>();
const f = (shape: number[], dtype: DType = 'float32') => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, { dtype });
const T = (t: Tensor) => t.nat();
/** The tensor's storage described with another shape (fits inside it) or dtype code. */
const as = (t: Tensor, shape: number[], code?: number) => {
  const [s, c] = t.nat();
  return [s, code ?? c, shape];
};

describe('native checks of the layers entries', () => {
  test('elementwise and reductions', () => {
    expectCode(() => N.layersBinary(7, T(f([3])), T(f([3])), T(f([3]))), 'INVALID_ARGUMENT', /unknown op/);
    expectCode(() => N.layersBinary(0, T(f([3])), T(f([3])), T(f([4]))), 'SHAPE_MISMATCH', /add: out float32\[4\] must have the broadcast shape/);
    expectCode(() => N.layersBinary(2, T(f([3, 4])), T(f([3])), T(f([3, 4]))), 'SHAPE_MISMATCH', /do not broadcast/);
    expectCode(() => N.layersBinary(0, T(f([3])), T(f([3], 'bfloat16')), T(f([3]))), 'DTYPE_MISMATCH');
    expectCode(() => N.layersBinary(0, T(f([3])), null, T(f([3]))), 'INVALID_ARGUMENT', /expected a tensor/);
    expectCode(() => N.layersScale(T(f([3, 4])), T(f([4])), 2), 'SHAPE_MISMATCH', /does not broadcast/);
    expectCode(() => N.layersScale(T(f([3])), T(f([3])), Infinity), 'INVALID_ARGUMENT', /finite/);
    expectCode(() => N.layersMulBackward(T(f([3, 4])), T(f([3, 4])), T(f([4])), T(f([4])), null), 'SHAPE_MISMATCH', /da float32\[4\] must hold 12/);
    expectCode(() => N.layersSum(T(f([3, 4])), T(f([5])), 1, 1), 'SHAPE_MISMATCH', /out float32\[5\] must hold 4/);
    expectCode(() => N.layersSum(T(f([3, 4])), T(f([1])), 4, 1), 'INVALID_ARGUMENT', /reduce_mask/);
    expectCode(() => N.layersSum(T(f([3, 4], 'int32')), T(f([4])), 1, 1), 'DTYPE_MISMATCH');
    expectCode(() => N.layersSum(T(f([3, 4])), T(f([4])), 1, NaN), 'INVALID_ARGUMENT', /alpha/);
  });

  test('norms, softmax, pooling', () => {
    const x = f([4, 8]);
    expectCode(() => N.layersRmsNorm(T(x), null, T(f([4, 8])), T(f([3])), 1e-6), 'SHAPE_MISMATCH', /rms_norm: rstd float32\[3\] must hold 4/);
    expectCode(() => N.layersRmsNorm(T(x), null, T(f([4, 8])), T(f([4], 'bfloat16')), 1e-6), 'DTYPE_MISMATCH', /rstd bfloat16\[4\] must be float32/);
    expectCode(() => N.layersRmsNorm(T(x), T(f([8])), T(f([8, 4])), T(f([4])), 1e-6), 'SHAPE_MISMATCH', /y float32\[8,4\]/);
    expectCode(() => N.layersRmsNorm(T(x), null, T(f([4, 8])), T(f([4])), -1), 'INVALID_ARGUMENT', /eps/);
    expectCode(() => N.layersRmsNormBackward(T(x), T(x), T(f([8])), T(f([4])), T(f([4, 8])), null), 'INVALID_ARGUMENT', /dweight must be given exactly when weight is/);
    expectCode(() => N.layersRmsNormBackward(T(x), T(x), T(f([8])), T(f([4])), T(f([4, 8])), T(f([8], 'bfloat16'))), 'DTYPE_MISMATCH', /dweight/);
    expectCode(() => N.layersLayerNorm(T(x), null, T(f([7])), T(f([4, 8])), T(f([4])), T(f([4])), 1e-5), 'SHAPE_MISMATCH', /bias float32\[7\] must be \[8\]/);
    expectCode(() => N.layersLayerNormBackward(T(x), T(x), null, T(f([4])), T(f([5])), T(f([4, 8])), null, null), 'SHAPE_MISMATCH', /rstd/);
    expectCode(() => N.layersLayerNormBackward(T(x), T(x), null, T(f([4])), T(f([4])), T(f([4, 8])), T(f([8])), null), 'INVALID_ARGUMENT', /dweight/);
    expectCode(() => N.layersSoftmax(T(x), T(f([4, 8], 'float16'))), 'DTYPE_MISMATCH', /softmax/);
    expectCode(() => N.layersSoftmax(T(f([])), T(f([]))), 'SHAPE_MISMATCH', /at least one dim/);
    expectCode(() => N.layersSoftmaxBackward(T(x), T(x), T(f([32]))), 'SHAPE_MISMATCH');
    expectCode(() => N.layersL2Normalize(T(x), T(x), NaN), 'INVALID_ARGUMENT', /eps/);
    expectCode(() => N.layersMaskedMeanPool(T(f([2, 3, 4])), T(f([2, 3])), T(f([2, 3]))), 'SHAPE_MISMATCH', /out float32\[2,3\] must be \[B,H\] = \[2,4\]/);
    expectCode(() => N.layersMaskedMeanPool(T(f([2, 3, 4])), T(f([3, 2])), T(f([2, 4]))), 'SHAPE_MISMATCH', /mask/);
    expectCode(() => N.layersMaskedMeanPoolBackward(T(f([2, 4])), T(f([2, 3], 'int32')), T(f([2, 3, 5]))), 'SHAPE_MISMATCH', /dy float32\[2,4\] must be \[B,H\] = \[2,5\]/);
    expectCode(() => N.layersMaskedMeanPoolBackward(T(f([2, 4])), T(f([2, 3], 'int32')), T(f([2, 3, 4], 'bfloat16'))), 'DTYPE_MISMATCH');
  });

  test('rope, activations, swiglu, dropout', () => {
    const x = f([1, 3, 2, 8]), p = f([3], 'int32');
    const rope = (xx: unknown, pp: unknown, o: unknown, theta = 10000, kind = 0, factor = 1, lo = 1, hi = 4, orig = 8192) =>
      N.layersRope(xx, pp, o, false, theta, kind, factor, lo, hi, orig);
    expectCode(() => rope(T(x), T(p), T(f([1, 3, 2, 8])), 10000, 5), 'INVALID_ARGUMENT', /unknown scaling type 5/);
    expectCode(() => rope(T(x), T(p), T(f([1, 3, 2, 8])), -1), 'INVALID_ARGUMENT', /theta/);
    expectCode(() => rope(T(x), T(p), T(f([1, 3, 2, 8])), 10000, 2, 8, 4, 1), 'INVALID_ARGUMENT', /lowFreqFactor < highFreqFactor/);
    expectCode(() => rope(T(x), T(p), T(f([1, 3, 2, 8])), 10000, 2, 8, 1, 4, 0), 'INVALID_ARGUMENT', /originalMaxPositionEmbeddings/);
    expectCode(() => rope(T(x), T(f([2, 3], 'int32')), T(f([1, 3, 2, 8]))), 'SHAPE_MISMATCH', /positions int32\[2,3\]/);
    expectCode(() => rope(T(x), T(f([3])), T(f([1, 3, 2, 8]))), 'DTYPE_MISMATCH', /positions float32\[3\] must be int32/);
    expectCode(() => rope(as(x, [1, 3, 4, 3]), T(p), as(x, [1, 3, 4, 3])), 'SHAPE_MISMATCH', /even/);
    expectCode(() => N.layersActivation(9, T(f([3])), T(f([3]))), 'INVALID_ARGUMENT', /unknown activation 9/);
    expectCode(() => N.layersActivationBackward(0, T(f([3])), T(f([3])), T(f([2]))), 'SHAPE_MISMATCH', /dx/);
    expectCode(() => N.layersSwigluBackward(T(f([3])), T(f([3])), T(f([3])), T(f([3], 'bfloat16')), T(f([3]))), 'DTYPE_MISMATCH', /dgate/);
    expectCode(() => N.layersDropout(T(f([3])), T(f([3])), 1, 1n, false), 'INVALID_ARGUMENT', /p must be in \[0, 1\)/);
    expectCode(() => N.layersDropout(T(f([3])), T(f([3])), 0.5, 1, false), 'INVALID_ARGUMENT', /seed must be a bigint/);
    expectCode(() => N.layersDropout(T(f([3])), T(f([3])), 0.5, -1n, false), 'INVALID_ARGUMENT', /seed/);
    expectCode(() => N.layersDropout(T(f([3])), T(f([4])), 0.5, 1n, true), 'SHAPE_MISMATCH', /dropout_backward: dy float32\[3\] and dx float32\[4\]/);
  });

  test('a descriptor larger than its storage is refused before any kernel runs', () => {
    const x = f([4, 8]);
    expectCode(() => N.layersSoftmax(as(x, [8, 8]), T(f([8, 8]))), 'SHAPE_MISMATCH', /storage/);
    expectCode(() => N.layersRmsNorm(T(x), null, as(f([4, 8]), [4, 8], 0), as(f([2]), [4]), 1e-6), 'SHAPE_MISMATCH', /storage/);
  });
});

describeGpu('the layers ops on CUDA tensors', () => {
  beforeAll(() => setPoisonOutputs(true));
  afterAll(() => setPoisonOutputs(false));

  type Out = Tensor | null | (Tensor | null)[] | { [k: string]: Tensor | null };
  const list = (o: Out): (Tensor | null)[] => (o === null || o instanceof Tensor ? [o] : Array.isArray(o) ? o : Object.values(o));
  let seed = 9000;
  /** A tensor of random values in offset + [-scale, scale), rounded to dtype. */
  const rand = (shape: number[], dtype: DType = 'float32', scale = 1, offset = 0) => rnd(shape, seed++, dtype, scale, offset).t;

  /**
   * fn on the CPU inputs and on their CUDA copies: every output of the CUDA run, read
   * back, within tol of the CPU's (relErr, NaN never passes; exact when tol is 0). The
   * native test program (test_cuda_layers.cc) covers every op, size class and dtype; this
   * checks the TypeScript path end to end.
   */
  function same(what: string, inputs: Tensor[], fn: (...ts: Tensor[]) => Out, tol = 1e-5) {
    const gpuIn = inputs.map((t) => t.to('cuda'));
    const want = list(fn(...inputs)), got = list(fn(...gpuIn));
    expect(got.length).toBe(want.length);
    for (let k = 0; k < want.length; k++) {
      const w = want[k], g = got[k];
      if (w === null || g === null) {
        expect(g).toBe(w);
        continue;
      }
      expect(g.device).toBe('cuda:0');
      expect(g.shape).toEqual(w.shape);
      expect(g.dtype).toBe(w.dtype);
      const gh = host(g), wh = host(w);
      if (tol === 0) expect(Array.from(gh)).toEqual(Array.from(wh));
      else close(gh, wh, tol, `${what} output ${k}`);
    }
    disposeAll(...gpuIn, ...inputs, ...want, ...got);
  }

  test('elementwise with broadcasting, mulBackward, sumToShape, sum / mean', () => {
    same('add', [rand([37, 65]), rand([65])], (a, b) => ops.add(a, b));
    same('sub', [rand([3, 1, 7]), rand([1, 5, 1])], (a, b) => ops.sub(a, b));
    same('mul', [rand([97, 128]), rand([97, 1])], (a, b) => ops.mul(a, b));
    same('scale', [rand([7, 9])], (a) => ops.scale(a, 0.37));
    same('mulBackward', [rand([3, 5, 7]), rand([3, 5, 7]), rand([5, 1])], (dy, a, b) => ops.mulBackward(dy, a, b));
    same('sumToShape', [rand([97, 1000])], (dy) => ops.sumToShape(dy, [1, 1000]));
    same('sum', [rand([37, 65, 7])], (x) => [ops.sum(x), ops.sum(x, { dim: 1 }), ops.sum(x, { dim: [0, 2], keepDim: true })]);
    same('mean', [rand([5, 9000])], (x) => [ops.mean(x, { dim: -1 }), ops.mean(x, { dim: 0 })]);
    same('sum bfloat16', [rand([37, 65], 'bfloat16')], (x) => ops.sum(x, { dim: 0 }), 1e-2);
  });

  test('norms, softmax, l2Normalize (forward and backward)', () => {
    for (const D of [7, 128, 1031]) {
      same(`rmsNorm D ${D}`, [rand([37, D], 'float32', 2), rand([D], 'float32', 0.5, 1), rand([37, D])], (x, w, dy) => {
        const f = ops.rmsNorm(x, w, { eps: 1e-6 });
        return [f.y, f.rstd, ...list(ops.rmsNormBackward(dy, x, w, f.rstd))];
      });
      same(`layerNorm D ${D}`, [rand([37, D], 'float32', 1, 3), rand([D], 'float32', 0.5, 1), rand([D]), rand([37, D])], (x, w, b, dy) => {
        const f = ops.layerNorm(x, w, b, { eps: 1e-5 });
        return [f.y, f.mean, f.rstd, ...list(ops.layerNormBackward(dy, x, w, f.mean, f.rstd))];
      }, 2e-5);
      same(`softmax D ${D}`, [rand([37, D], 'float32', 8), rand([37, D])], (x, dy) => {
        const y = ops.softmax(x);
        return [y, ops.softmaxBackward(dy, y)];
      });
      same(`l2Normalize D ${D}`, [rand([37, D]), rand([37, D])], (x, dy) => [ops.l2Normalize(x), ops.l2NormalizeBackward(dy, x)]);
    }
    same('rmsNorm bfloat16', [rand([97, 1000], 'bfloat16')], (x) => ops.rmsNorm(x, null).y, 1e-2);
    same('softmax float16', [rand([97, 65], 'float16', 4)], (x) => ops.softmax(x), 2e-3);
  });

  test('rope (llama3 scaling, large positions), activations, swiglu, dropout, maskedMeanPool', () => {
    const pos = tensor(Int32Array.from({ length: 2 * 37 }, (_, i) => 100000 + (i % 37)), [2, 37], { dtype: 'int32' });
    const scaling = { type: 'llama3' as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
    same('rope', [rand([2, 37, 3, 128]), pos], (x, p) => [ops.rope(x, p, { theta: 500000, scaling }), ops.ropeBackward(x, p, { theta: 500000, scaling })]);
    for (const approximate of [false, true])
      same(`gelu ${approximate}`, [rand([1000], 'float32', 6), rand([1000])], (x, dy) => [
        ops.gelu(x, { approximate: approximate ? 'tanh' : 'none' }),
        ops.geluBackward(dy, x, { approximate: approximate ? 'tanh' : 'none' }),
      ]);
    same('quickGelu', [rand([1000], 'float32', 6), rand([1000])], (x, dy) => [ops.quickGelu(x), ops.quickGeluBackward(dy, x)]);
    same('swiglu', [rand([7, 65], 'float32', 6), rand([7, 65]), rand([7, 65])], (g, u, dy) => [ops.swiglu(g, u), ...list(ops.swigluBackward(dy, g, u))]);
    for (const dtype of ['float32', 'bfloat16', 'float16'] as const)
      same(`dropout ${dtype} (bit for bit)`, [rand([100003], dtype)], (x) => [ops.dropout(x, { p: 0.3, seed: 42n }), ops.dropoutBackward(x, { p: 0.3, seed: 42n })], 0);
    const mask = tensor(Int32Array.from({ length: 5 * 7 }, (_, i) => (Math.floor(i / 7) === 1 || i % 7 > Math.floor(i / 7) ? 0 : 1)), [5, 7], { dtype: 'int32' });
    same('maskedMeanPool', [rand([5, 7, 65]), mask, rand([5, 65])], (h, m, dy) => [ops.maskedMeanPool(h, m), ops.maskedMeanPoolBackward(dy, m, 7)]);
  });

  test('tensors on two devices: DEVICE_MISMATCH naming the arguments', () => {
    const x = tensor(new Float32Array(32), [4, 8]), w = tensor(new Float32Array(8), [8]).to('cuda');
    expectCode(() => ops.rmsNorm(x, w), 'DEVICE_MISMATCH');
    expectCode(() => ops.add(x, x.to('cuda')), 'DEVICE_MISMATCH');
  });
});

// Without a usable GPU (a build without CUDA, or no device) there are no CUDA tensors:
// asking for one is DEVICE_UNAVAILABLE, and the C ABI refuses CUDA descriptors
// (test_cuda_layers.cc, cuda_layers_device_errors).
(hasGpu ? describe.skip : describe)('without a GPU', () => {
  test('CUDA tensors are DEVICE_UNAVAILABLE', () => {
    expectCode(() => tensor(new Float32Array(32), [4, 8]).to('cuda'), 'DEVICE_UNAVAILABLE');
  });
});
