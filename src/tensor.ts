// tensor.ts: Tensor, a typed handle on contiguous row-major native memory.
// Tensors made by reshape(), or by to()/cast() to what they already are, share their
// storage; the memory is freed when the last tensor on it is disposed. A
// FinalizationRegistry releases what is garbage-collected undisposed (a safety net only).
import { native, NativeStorage } from './binding';
import { DType, Device, dtypeCode, dtypeSize, deviceName, deviceTypeCode, parseDevice, sameDevice, checkDType } from './dtype';
import { fail } from './errors';
import { track } from './scope';

// `using` needs Symbol.dispose: Node 20 defines it, but not every context does (jest's
// vm sandbox, older embedders). Define the registered symbol TypeScript's helpers use.
if (typeof Symbol.dispose !== 'symbol') Object.defineProperty(Symbol, 'dispose', { value: Symbol.for('Symbol.dispose') });

/** A block of memory shared by the tensors that view it. */
export class StorageRef {
  refs = 0;
  constructor(
    readonly native: NativeStorage,
    readonly device: Device,
  ) {}
  static allocate(device: Device, bytes: number): StorageRef {
    return new StorageRef(new native.Storage(deviceTypeCode(device.type), device.index, bytes), device);
  }
  release(): void {
    if (--this.refs === 0) this.native.free();
  }
}

const stats = { live: 0, collected: 0 };
const registry = new FinalizationRegistry<StorageRef>((s) => {
  stats.collected++;
  stats.live--;
  s.release();
});

export type Shape = readonly number[];

export function shapeSize(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeStr(shape: Shape): string {
  return `[${shape.join(',')}]`;
}

export function checkShape(shape: unknown, what: string): number[] {
  if (!Array.isArray(shape) || shape.length > 8)
    fail('INVALID_ARGUMENT', `${what}: shape must be an array of at most 8 dimensions (got ${JSON.stringify(shape)})`);
  for (const d of shape)
    if (!Number.isSafeInteger(d) || d < 0)
      fail('INVALID_ARGUMENT', `${what}: shape ${JSON.stringify(shape)} must hold non-negative integers`);
  return [...shape];
}

export type HostArray = Float32Array | Int32Array;

let poison = false;
/**
 * @internal Test hook: fill every new op output with NaN (int32: -2^31) before the op
 * writes it. Returns the previous setting.
 */
export function setPoisonOutputs(on: boolean): boolean {
  const was = poison;
  poison = on;
  return was;
}

/** @internal The autograd record of an op output (see autograd.ts). */
export interface GradNode {
  readonly name: string;
  /** The op's tensor inputs, in order (null where an input is absent or not differentiable). */
  readonly inputs: readonly (Tensor | null)[];
  /** Gradients of the inputs from the output's gradient (null where none is needed). */
  backward(grad: Tensor): (Tensor | null)[];
  /** Frees the tensors saved for the backward. */
  release(): void;
  released: boolean;
}

/** @internal Hooks autograd.ts installs (it imports this file, not the reverse). */
export const autogradHooks: {
  backward: ((t: Tensor, grad: Tensor | null, retainGraph: boolean) => void) | null;
  /** Records reshape / cast / to on a tensor that requires grad. */
  view: ((input: Tensor, out: Tensor, kind: 'reshape' | 'cast' | 'to') => Tensor) | null;
} = { backward: null, view: null };

export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** @internal */ readonly storage: StorageRef;
  private disposed = false;
  private requiresGrad_ = false;
  /**
   * The gradient accumulated by backward() into a leaf tensor that requires grad (null
   * until then). The tensor owns it: dispose() disposes it; zeroGrad() drops it.
   */
  grad: Tensor | null = null;
  /** @internal The op that made this tensor (null for leaves and outside autograd). */
  gradFn: GradNode | null = null;

  /**
   * Whether gradients flow to this tensor. Settable on leaf tensors (parameters); op
   * outputs require grad when an input does (and grad mode is on, see noGrad()).
   */
  get requiresGrad(): boolean {
    return this.requiresGrad_;
  }
  set requiresGrad(on: boolean) {
    if (typeof on !== 'boolean') fail('INVALID_ARGUMENT', `requiresGrad: a boolean is required (got ${typeof on})`);
    if (this.gradFn && !on)
      fail('INVALID_ARGUMENT', `requiresGrad: ${this.toString()} is the output of ${this.gradFn.name}; use detach() to stop gradients`);
    if (on && this.dtype === 'int32') fail('DTYPE_MISMATCH', `requiresGrad: an int32 tensor cannot require grad`);
    this.requiresGrad_ = on;
  }
  /** Sets requiresGrad (default true) and returns this tensor. */
  setRequiresGrad(on = true): this {
    this.requiresGrad = on;
    return this;
  }
  /** A leaf: made by the user (not by a recorded op). */
  get isLeaf(): boolean {
    return this.gradFn === null;
  }

  /**
   * Back-propagates from this tensor: accumulates d(this)/d(leaf) · grad into .grad of
   * every leaf that requires grad. grad defaults to 1 for a one-element tensor. The graph's
   * saved tensors are freed afterwards unless retainGraph is true.
   */
  backward(grad: Tensor | null = null, options: { retainGraph?: boolean } = {}): void {
    if (!autogradHooks.backward) fail('INTERNAL', 'backward(): autograd is not loaded');
    autogradHooks.backward(this, grad, !!options.retainGraph);
  }

  /** A tensor sharing this one's memory, cut from the graph (requiresGrad false). */
  detach(): Tensor {
    this.nat('detach()');
    return new Tensor(this.storage, this.shape, this.dtype);
  }

  /** Drops (disposes) the accumulated gradient. */
  zeroGrad(): void {
    this.grad?.dispose();
    this.grad = null;
  }

  /** @internal Use tensor(), zeros(), randn(), ... to make tensors. */
  constructor(storage: StorageRef, shape: readonly number[], dtype: DType) {
    this.storage = storage;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    storage.refs++;
    stats.live++;
    registry.register(this, storage, this);
    track(this);
  }

  /**
   * @internal A fresh uninitialised tensor (every op output is made here). With
   * poisoning on (setPoisonOutputs, for tests) it is filled with NaN (int32: -2^31)
   * first, so an element an op forgets to write shows up.
   */
  static empty(shape: readonly number[], dtype: DType, device: Device): Tensor {
    const t = new Tensor(StorageRef.allocate(device, shapeSize(shape) * dtypeSize(dtype)), shape, dtype);
    if (poison && t.size > 0) native.fill(...t.nat(), dtype === 'int32' ? -2147483648 : NaN);
    return t;
  }

  /** 'cpu' or 'cuda' ('cuda:N' past the first GPU). */
  get device(): string {
    return deviceName(this.storage.device);
  }
  /** @internal */ get deviceInfo(): Device {
    return this.storage.device;
  }
  get size(): number {
    return shapeSize(this.shape);
  }
  get ndim(): number {
    return this.shape.length;
  }
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** @internal Throws DISPOSED if this tensor was disposed; returns the addon's (storage, dtype, shape). */
  nat(what = 'tensor'): [NativeStorage, number, number[]] {
    if (this.disposed || this.storage.native.freed)
      fail('DISPOSED', `${what}: the tensor ${this.dtype}${shapeStr(this.shape)} was disposed`);
    return [this.storage.native, dtypeCode(this.dtype), this.shape as number[]];
  }

  /** Frees the memory now (when no other tensor shares it). Safe to call twice. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.grad?.dispose();
    this.grad = null;
    registry.unregister(this);
    stats.live--;
    this.storage.release();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * CPU only: a zero-copy typed array over this tensor's memory (Float32Array, Int32Array,
   * or Uint16Array of raw bits for bfloat16/float16). Writes change the tensor; the array
   * is detached (length 0) once the memory is freed.
   */
  view(): Float32Array | Int32Array | Uint16Array {
    this.nat('view()');
    if (this.storage.device.type !== 'cpu')
      fail('DEVICE_MISMATCH', `view(): the tensor is on ${this.device}; only CPU tensors can be viewed (use toArray())`);
    const ab = this.storage.native.arrayBuffer();
    if (this.dtype === 'float32') return new Float32Array(ab, 0, this.size);
    if (this.dtype === 'int32') return new Int32Array(ab, 0, this.size);
    return new Uint16Array(ab, 0, this.size);
  }

  /** A host copy: Float32Array for float dtypes (bfloat16/float16 widened), Int32Array for int32. */
  toArray(): HostArray {
    this.nat('toArray()');
    const wide = this.dtype === 'int32' ? 'int32' : 'float32';
    if (this.dtype === wide && this.storage.device.type === 'cpu') return (this.view() as HostArray).slice();
    const onCpu = this.to('cpu');
    try {
      const cast = onCpu.cast(wide);
      try {
        return (cast.view() as HostArray).slice();
      } finally {
        cast.dispose();
      }
    } finally {
      onCpu.dispose();
    }
  }

  /** Like toArray(), without blocking the event loop on a device-to-host copy. */
  async data(): Promise<HostArray> {
    this.nat('data()');
    if (this.storage.device.type === 'cpu') return this.toArray();
    const host = Tensor.empty(this.shape, this.dtype, { type: 'cpu', index: 0 });
    try {
      await native.copyAsync(...host.nat(), ...this.nat('data()'));
      return host.toArray();
    } finally {
      host.dispose();
    }
  }

  /** The value of a one-element tensor. */
  item(): number {
    if (this.size !== 1)
      fail('SHAPE_MISMATCH', `item(): the tensor has shape ${shapeStr(this.shape)} (${this.size} elements); item() needs exactly one`);
    return this.toArray()[0];
  }

  /** A copy on another device; a tensor sharing this one's memory if it is there already. */
  to(device: string): Tensor {
    const dev = parseDevice(device, 'to(device)');
    this.nat('to()');
    let out: Tensor;
    if (sameDevice(dev, this.storage.device)) out = new Tensor(this.storage, this.shape, this.dtype);
    else {
      out = Tensor.empty(this.shape, this.dtype, dev);
      native.copy(...out.nat(), ...this.nat());
    }
    return this.recordView(out, 'to');
  }

  /** A copy with its own memory (same dtype, shape and device; not recorded by autograd). */
  clone(): Tensor {
    this.nat('clone()');
    const out = Tensor.empty(this.shape, this.dtype, this.storage.device);
    native.copy(...out.nat(), ...this.nat());
    return out;
  }

  /** A copy converted to dtype (round to nearest even for bfloat16/float16; NaN and Inf kept). */
  cast(dtype: DType): Tensor {
    checkDType(dtype, 'cast(dtype)');
    this.nat('cast()');
    if (dtype === this.dtype) return this.recordView(new Tensor(this.storage, this.shape, this.dtype), 'cast');
    const out = Tensor.empty(this.shape, dtype, this.storage.device);
    native.cast(...out.nat(), ...this.nat());
    return this.recordView(out, 'cast');
  }

  /** The same memory seen with another shape (one dimension may be -1). */
  reshape(shape: readonly number[]): Tensor {
    this.nat('reshape()');
    if (!Array.isArray(shape)) fail('INVALID_ARGUMENT', `reshape(shape): shape must be an array (got ${JSON.stringify(shape)})`);
    const inferred = shape.filter((d) => d === -1).length;
    if (inferred > 1) fail('INVALID_ARGUMENT', `reshape(${shapeStr(shape)}): at most one dimension may be -1`);
    const known = shape.filter((d) => d !== -1);
    checkShape(known, `reshape(${shapeStr(shape)})`);
    const knownSize = shapeSize(known);
    let out = [...shape];
    if (inferred) {
      if (knownSize === 0 || this.size % knownSize !== 0)
        fail('SHAPE_MISMATCH', `reshape(${shapeStr(shape)}): cannot reshape ${shapeStr(this.shape)} (${this.size} elements)`);
      out = shape.map((d) => (d === -1 ? this.size / knownSize : d));
    }
    if (shapeSize(out) !== this.size)
      fail('SHAPE_MISMATCH', `reshape(${shapeStr(shape)}): ${shapeStr(this.shape)} has ${this.size} elements, the new shape ${shapeSize(out)}`);
    return this.recordView(new Tensor(this.storage, out, this.dtype), 'reshape');
  }

  private recordView(out: Tensor, kind: 'reshape' | 'cast' | 'to'): Tensor {
    return this.requiresGrad_ && autogradHooks.view ? autogradHooks.view(this, out, kind) : out;
  }

  toString(): string {
    return `Tensor(${this.dtype}${shapeStr(this.shape)}, ${this.device}${this.disposed ? ', disposed' : ''})`;
  }
}

/** Live tensor handles (created and not yet disposed or collected), and those collected undisposed. */
export function tensorCounts(): { liveTensors: number; collectedUndisposed: number } {
  return { liveTensors: stats.live, collectedUndisposed: stats.collected };
}
