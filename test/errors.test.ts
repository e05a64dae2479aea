// Every error code provoked, with a message naming the argument; no input crashes.
import { tensor, zeros, full, randn, rand, ops, cuda, Llm2ClipError, setNumThreads, setCpuIsa, CpuIsa } from '../src';
import { native } from '../src/binding';
import { expectCode, hasGpu } from './helpers';

describe('error codes', () => {
  test('SHAPE_MISMATCH: data that does not fill the shape, ragged arrays', () => {
    expectCode(() => tensor([1, 2, 3], [2, 2]), 'SHAPE_MISMATCH', /3 values.*\[2,2\]/);
    expectCode(() => tensor([[1, 2], [3]]), 'SHAPE_MISMATCH', /ragged/);
  });

  test('DTYPE_MISMATCH: matmul of float32 and float16, random int32', () => {
    expectCode(() => ops.matmul(zeros([2, 2]), zeros([2, 2], { dtype: 'float16' })), 'DTYPE_MISMATCH', /float32.*float16/);
    expectCode(() => randn([2], { dtype: 'int32' }), 'DTYPE_MISMATCH', /int32/);
  });

  test('DEVICE_UNAVAILABLE: a GPU that is not there', () => {
    const spec = hasGpu ? `cuda:${cuda.deviceCount()}` : 'cuda';
    expectCode(() => zeros([2], { device: spec }), 'DEVICE_UNAVAILABLE', /options\.device/);
    expectCode(() => zeros([2]).to(spec), 'DEVICE_UNAVAILABLE', /to\(device\)/);
    if (!hasGpu) expectCode(() => cuda.deviceName(0), 'DEVICE_UNAVAILABLE');
  });

  // Without a GPU no CUDA tensor can exist; the native test program provokes
  // DEVICE_MISMATCH through the C ABI there (core_status_names_and_last_error).
  (hasGpu ? test : test.skip)('DEVICE_MISMATCH: matmul of a CPU and a CUDA tensor', () => {
    expectCode(() => ops.matmul(zeros([2, 2]), zeros([2, 2], { device: 'cuda' })), 'DEVICE_MISMATCH', /cpu.*cuda/);
  });

  (hasGpu ? test : test.skip)('DEVICE_MISMATCH: a zero-copy view of a CUDA tensor', () => {
    expectCode(() => zeros([2], { device: 'cuda' }).view(), 'DEVICE_MISMATCH', /view/);
  });

  test('OUT_OF_MEMORY: a 4 TB tensor, and the process goes on', () => {
    expectCode(() => zeros([2 ** 40]), 'OUT_OF_MEMORY', /bytes/);
    expect(zeros([4]).size).toBe(4);
  });

  test('DISPOSED: every use of a disposed tensor', () => {
    const t = full([2, 2], 1);
    t.dispose();
    t.dispose(); // twice is fine
    expectCode(() => t.toArray(), 'DISPOSED', /disposed/);
    expectCode(() => t.reshape([4]), 'DISPOSED');
    expectCode(() => t.cast('float16'), 'DISPOSED');
    expectCode(() => t.to('cpu'), 'DISPOSED');
    expectCode(() => t.view(), 'DISPOSED');
    expectCode(() => ops.matmul(t, zeros([2, 2])), 'DISPOSED', /matmul: a/);
    return expect(t.data()).rejects.toMatchObject({ code: 'DISPOSED' });
  });

  test('INVALID_ARGUMENT: bad dtypes, devices, shapes, values, seeds, settings', () => {
    expectCode(() => zeros([2], { dtype: 'float64' as never }), 'INVALID_ARGUMENT', /dtype.*float64/);
    expectCode(() => zeros([2], { device: 'tpu' }), 'INVALID_ARGUMENT', /device.*tpu/);
    expectCode(() => zeros([2, -1]), 'INVALID_ARGUMENT', /shape/);
    expectCode(() => zeros([1.5]), 'INVALID_ARGUMENT', /shape/);
    expectCode(() => zeros(new Array(9).fill(1)), 'INVALID_ARGUMENT', /8 dimensions/);
    expectCode(() => tensor([1, 'x' as never]), 'INVALID_ARGUMENT', /element 1/);
    expectCode(() => tensor([1.5], [1], { dtype: 'int32' }), 'INVALID_ARGUMENT', /int32/);
    expectCode(() => full([2], 2 ** 40, { dtype: 'int32' }), 'INVALID_ARGUMENT', /int32/);
    expectCode(() => randn([2], { seed: -1 }), 'INVALID_ARGUMENT', /seed/);
    expectCode(() => rand([2], { low: 1, high: 1 }), 'INVALID_ARGUMENT', /low < high/);
    expectCode(() => randn([2], { std: -1 }), 'INVALID_ARGUMENT', /std/);
    expectCode(() => setNumThreads(0), 'INVALID_ARGUMENT', /positive/);
    expectCode(() => setCpuIsa('sse9' as CpuIsa), 'INVALID_ARGUMENT', /sse9/);
  });

  test('the native layer re-checks what memory safety depends on', () => {
    const s = new native.Storage(0, 0, 16); // room for 4 float32
    expectCode(() => native.fill(s, 0, [5], 0), 'SHAPE_MISMATCH', /16/); // 20 bytes into 16
    expectCode(() => native.fill({} as never, 0, [1], 0), 'INVALID_ARGUMENT', /storage/);
    expectCode(() => native.fill(s, 9, [1], 0), 'INVALID_ARGUMENT', /dtype/);
    expectCode(() => new native.Storage(0, 0, -1), 'INVALID_ARGUMENT', /bytes/);
    s.free();
    expectCode(() => native.fill(s, 0, [1], 0), 'DISPOSED');
  });

  test('errors are Llm2ClipError instances with name and code', () => {
    const e = expectCode(() => zeros([-1]), 'INVALID_ARGUMENT');
    expect(e).toBeInstanceOf(Error);
    expect(e).toBeInstanceOf(Llm2ClipError);
    expect(e.name).toBe('Llm2ClipError');
  });
});
