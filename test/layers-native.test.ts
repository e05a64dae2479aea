// Layers: the native argument checks (native/core/api_layers.cc) called directly, past the
// TypeScript checks, so that what memory safety depends on is proven at the C ABI too:
// every bad call gives a typed error naming the op and the argument, never a crash.
// Plus the CUDA refusal (DEVICE_UNAVAILABLE) where a GPU is present.
import { ops, tensor, Tensor, DType } from '../src';
import { nativeOps } from '../src/ops/util';
import { describeGpu, expectCode } from './helpers';

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

describeGpu('CUDA tensors', () => {
  test('the layers kernels are CPU-only for now: DEVICE_UNAVAILABLE naming the op', () => {
    const x = f([4, 8]).to('cuda');
    expectCode(() => ops.rmsNorm(x, null), 'DEVICE_UNAVAILABLE', /rms_norm/);
    expectCode(() => ops.softmax(x), 'DEVICE_UNAVAILABLE', /softmax/);
    expectCode(() => ops.add(x, x), 'DEVICE_UNAVAILABLE', /add/);
    expectCode(() => ops.rmsNorm(f([4, 8]), f([8]).to('cuda')), 'DEVICE_MISMATCH');
  });
});
