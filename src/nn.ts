// nn.ts: modules (PyTorch's torch.nn shape): parameters by dotted name, train / eval,
// stateDict / loadStateDict, and the layers the models are built from.
import { native } from './binding';
import { DType, checkDType } from './dtype';
import { fail } from './errors';
import { noGrad } from './autograd';
import { rand, randn, zeros, ones, nextRandomSeed } from './creation';
import { keep } from './scope';
import { Tensor, shapeStr } from './tensor';
import * as F from './functional';
import * as ops from './ops';

/** Where and how a module's parameters are made. */
export interface ModuleOptions {
  /** Parameter dtype (default float32). */
  dtype?: DType;
  /** 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: string;
  /** Seed of the random initialisation (default: the next of the global seed sequence). */
  seed?: number | bigint;
}

/** Options of {@link Module.loadStateDict}. */
export interface LoadStateDictOptions {
  /** Every parameter must be given and no unknown name may appear (default true). */
  strict?: boolean;
}

/** What {@link Module.loadStateDict} did not match. */
export interface LoadStateDictResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

/**
 * The base of every layer and model. Subclasses register parameters (leaf tensors) and
 * child modules; names are dotted paths (`layers.0.self_attn.q_proj.weight`). A module
 * owns its parameters: dispose() frees them.
 */
export abstract class Module {
  /** Training mode (dropout active); see train() / eval(). */
  training = true;
  private readonly params_ = new Map<string, Tensor | null>();
  private readonly children_ = new Map<string, Module>();

  /** Registers (or replaces, disposing the old one) a parameter; null: an absent optional one. */
  protected registerParameter(name: string, t: Tensor | null, requiresGrad = true): Tensor | null {
    const old = this.params_.get(name);
    if (old && old !== t) old.dispose();
    if (t) {
      keep(t);
      if (t.dtype !== 'int32' && !t.gradFn) t.requiresGrad = requiresGrad;
    }
    this.params_.set(name, t);
    return t;
  }

  /** Registers a child module under name. */
  protected registerModule<M extends Module>(name: string, m: M): M {
    this.children_.set(name, m);
    return m;
  }

  /** The optional parameter registered under name (null when absent). */
  protected optionalParam(name: string): Tensor | null {
    return this.params_.get(name) ?? null;
  }

  /** The parameter registered under name (its own, not a child's). */
  protected param(name: string): Tensor {
    const t = this.params_.get(name);
    if (!t) fail('INVALID_ARGUMENT', `${this.constructor.name}: no parameter ${name}`);
    return t;
  }

  /** Child modules by name. */
  namedChildren(): [string, Module][] {
    return [...this.children_.entries()];
  }

  /** Every module of the tree (this one first, name ''), by dotted path. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, m] of this.children_) out.push(...m.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  /** Every parameter of the tree by dotted path (registration order). */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.params_) if (t) out.push([prefix ? `${prefix}.${n}` : n, t]);
    for (const [n, m] of this.children_) out.push(...m.namedParameters(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  /** Every parameter of the tree. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** The parameters that require grad (what an optimiser updates). */
  trainableParameters(): Tensor[] {
    return this.parameters().filter((t) => t.requiresGrad);
  }

  /** Number of parameter elements (all, or only the trainable ones). */
  numParameters(trainableOnly = false): number {
    return (trainableOnly ? this.trainableParameters() : this.parameters()).reduce((s, t) => s + t.size, 0);
  }

  /** Sets training mode on the whole tree (default true); returns this. */
  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }

  /** Evaluation mode (dropout off); returns this. */
  eval(): this {
    return this.train(false);
  }

  /** Sets requiresGrad on every parameter (freeze with false); returns this. */
  requiresGrad_(on = true): this {
    for (const t of this.parameters()) t.requiresGrad = on;
    return this;
  }

  /** Drops every parameter's gradient. */
  zeroGrad(): void {
    for (const t of this.parameters()) t.zeroGrad();
  }

  /**
   * The parameters by dotted name (the module's own tensors, not copies, as in PyTorch:
   * do not dispose them).
   */
  stateDict(): Record<string, Tensor> {
    return Object.fromEntries(this.namedParameters());
  }

  /**
   * Copies values into the parameters (in place: optimisers holding them see the new
   * values), converting dtype and device as needed. Shapes must match.
   */
  loadStateDict(state: Record<string, Tensor>, options: LoadStateDictOptions = {}): LoadStateDictResult {
    if (state === null || typeof state !== 'object') fail('INVALID_ARGUMENT', 'loadStateDict(state): state must be an object of tensors');
    const strict = options.strict ?? true;
    const own = new Map(this.namedParameters());
    const missingKeys = [...own.keys()].filter((k) => !(k in state));
    const unexpectedKeys = Object.keys(state).filter((k) => !own.has(k));
    if (strict && (missingKeys.length || unexpectedKeys.length))
      fail('INVALID_ARGUMENT', `loadStateDict: ${missingKeys.length ? `missing ${missingKeys.slice(0, 5).join(', ')}${missingKeys.length > 5 ? ` (+${missingKeys.length - 5} more)` : ''}` : ''}${missingKeys.length && unexpectedKeys.length ? '; ' : ''}${unexpectedKeys.length ? `unexpected ${unexpectedKeys.slice(0, 5).join(', ')}${unexpectedKeys.length > 5 ? ` (+${unexpectedKeys.length - 5} more)` : ''}` : ''}`);
    for (const [k, p] of own) {
      const src = state[k];
      if (!src) continue;
      if (!(src instanceof Tensor)) fail('INVALID_ARGUMENT', `loadStateDict: ${k} is not a Tensor`);
      if (src.shape.length !== p.shape.length || src.shape.some((v, i) => v !== p.shape[i]))
        fail('SHAPE_MISMATCH', `loadStateDict: ${k} is ${src.dtype}${shapeStr(src.shape)}; the module's parameter is ${p.dtype}${shapeStr(p.shape)}`);
      copyInto(p, src);
    }
    return { missingKeys, unexpectedKeys };
  }

  /** Moves / converts every parameter (replacing the tensors); returns this. */
  to(options: { device?: string; dtype?: DType }): this {
    if (options.dtype !== undefined) checkDType(options.dtype, 'Module.to(options.dtype)');
    for (const [, m] of this.namedModules())
      for (const [n, t] of m.params_) {
        if (!t) continue;
        let u = t.detach();
        if (options.device !== undefined) { const v = u.to(options.device); u.dispose(); u = v; }
        if (options.dtype !== undefined && t.dtype !== 'int32') { const v = u.cast(options.dtype); u.dispose(); u = v; }
        const rg = t.requiresGrad;
        m.registerParameter(n, u, rg);
      }
    return this;
  }

  /** Frees every parameter (and gradient) of the tree. */
  dispose(): void {
    for (const t of this.parameters()) t.dispose();
  }
}

/** Copies src's values into dst's memory (dtype / device converted). */
export function copyInto(dst: Tensor, src: Tensor): void {
  noGrad(() => {
    let s = src.detach();
    if (s.device !== dst.device) { const t = s.to(dst.device); s.dispose(); s = t; }
    if (s.dtype !== dst.dtype) { const t = s.cast(dst.dtype); s.dispose(); s = t; }
    try {
      native.copy(...dst.nat('loadStateDict'), ...s.nat());
    } finally {
      s.dispose();
    }
  });
}

function opts(o: ModuleOptions = {}): { dtype: DType; device: string; seed: bigint | number } {
  return { dtype: o.dtype ?? 'float32', device: o.device ?? 'cpu', seed: o.seed ?? nextRandomSeed() };
}

/** Uniform(-bound, bound) in the given dtype / device. */
function uniform(shape: number[], bound: number, o: { dtype: DType; device: string; seed: bigint | number }): Tensor {
  return rand(shape, { low: -bound, high: bound, dtype: o.dtype, device: o.device, seed: o.seed });
}

function checkDim(cls: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) fail('INVALID_ARGUMENT', `${cls}: ${name} must be a positive integer (got ${String(v)})`);
  return v;
}

/** y = x·Wᵀ + b; W [out, in] and b [out] initialised like torch.nn.Linear (U(±1/√in)). */
export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  constructor(inFeatures: number, outFeatures: number, options: ModuleOptions & { bias?: boolean } = {}) {
    super();
    this.inFeatures = checkDim('Linear', 'inFeatures', inFeatures);
    this.outFeatures = checkDim('Linear', 'outFeatures', outFeatures);
    const o = opts(options);
    const bound = 1 / Math.sqrt(inFeatures);
    this.registerParameter('weight', uniform([outFeatures, inFeatures], bound, o));
    const seed2 = typeof o.seed === 'bigint' ? o.seed + 1n : o.seed + 1;
    this.registerParameter('bias', options.bias === false ? null : uniform([outFeatures], bound, { ...o, seed: seed2 }));
  }
  get weight(): Tensor {
    return this.param('weight');
  }
  get bias(): Tensor | null {
    return this.optionalParam('bias');
  }
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
}

/** Options of {@link LoRALinear}. */
export interface LoraOptions {
  /** Rank (default 8). */
  r?: number;
  /** Scaling numerator: scale = alpha / r (default 8, PEFT's). */
  alpha?: number;
  /** Dropout on the LoRA path's input (default 0). */
  dropout?: number;
  /** rsLoRA: scale = alpha / sqrt(r). */
  useRslora?: boolean;
  /** Adapter dtype (default float32, whatever the base's). */
  dtype?: DType;
  /** Seed of lora_A's initialisation. */
  seed?: number | bigint;
}

/**
 * A frozen Linear with a LoRA adapter (PEFT's LoraLayer): y = base(x) + scale·B·A·drop(x),
 * A [r, in] initialised like PEFT (Kaiming-uniform, a = √5: U(±1/√in)), B [out, r] zeros,
 * so a fresh adapter changes nothing. The base weight and bias stay frozen; merge() folds
 * the adapter into the base weight (forward then runs the plain layer), unmerge() takes it
 * back out.
 */
export class LoRALinear extends Module {
  readonly base: Linear;
  readonly r: number;
  readonly alpha: number;
  readonly dropoutP: number;
  readonly scale: number;
  private merged_ = false;
  constructor(base: Linear, options: LoraOptions = {}) {
    super();
    if (!(base instanceof Linear)) fail('INVALID_ARGUMENT', 'LoRALinear(base): base must be a Linear');
    this.base = this.registerModule('base_layer', base);
    base.requiresGrad_(false);
    this.r = checkDim('LoRALinear', 'options.r', options.r ?? 8);
    this.alpha = options.alpha ?? 8;
    if (typeof this.alpha !== 'number' || !Number.isFinite(this.alpha)) fail('INVALID_ARGUMENT', `LoRALinear: options.alpha must be a finite number (got ${String(options.alpha)})`);
    this.dropoutP = options.dropout ?? 0;
    if (typeof this.dropoutP !== 'number' || !(this.dropoutP >= 0 && this.dropoutP < 1))
      fail('INVALID_ARGUMENT', `LoRALinear: options.dropout must be in [0, 1) (got ${String(options.dropout)})`);
    this.scale = options.useRslora ? this.alpha / Math.sqrt(this.r) : this.alpha / this.r;
    const dtype = options.dtype ?? 'float32';
    const o = { dtype, device: base.weight.device, seed: options.seed ?? nextRandomSeed() };
    this.registerParameter('lora_A', uniform([this.r, base.inFeatures], 1 / Math.sqrt(base.inFeatures), o));
    this.registerParameter('lora_B', zeros([base.outFeatures, this.r], { dtype, device: o.device }));
  }
  get loraA(): Tensor {
    return this.param('lora_A');
  }
  get loraB(): Tensor {
    return this.param('lora_B');
  }
  get merged(): boolean {
    return this.merged_;
  }
  forward(x: Tensor): Tensor {
    if (this.merged_) return this.base.forward(x);
    return F.loraLinear(x, this.base.weight, this.loraA, this.loraB, {
      scale: this.scale, bias: this.base.bias, dropout: this.training ? this.dropoutP : 0,
    });
  }
  /** Folds the adapter into the base weight (in place). */
  merge(): void {
    if (this.merged_) return;
    noGrad(() => ops.mergeLora(this.base.weight, this.loraA, this.loraB, { scale: this.scale }));
    this.merged_ = true;
  }
  /** Takes the adapter back out of the base weight (up to rounding in the weight's dtype). */
  unmerge(): void {
    if (!this.merged_) return;
    noGrad(() => ops.unmergeLora(this.base.weight, this.loraA, this.loraB, { scale: this.scale }));
    this.merged_ = false;
  }
}

/** A lookup table [num, dim] initialised N(0, 1) like torch.nn.Embedding (or as given by std). */
export class Embedding extends Module {
  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, options: ModuleOptions & { std?: number } = {}) {
    super();
    checkDim('Embedding', 'numEmbeddings', numEmbeddings);
    checkDim('Embedding', 'embeddingDim', embeddingDim);
    const o = opts(options);
    const std = options.std ?? 1;
    this.registerParameter('weight', randnLike([numEmbeddings, embeddingDim], std, o));
  }
  get weight(): Tensor {
    return this.param('weight');
  }
  forward(ids: Tensor): Tensor {
    return F.embedding(this.weight, ids);
  }
}

function randnLike(shape: number[], std: number, o: { dtype: DType; device: string; seed: bigint | number }): Tensor {
  return randn(shape, { std, dtype: o.dtype, device: o.device, seed: o.seed });
}

/** RMSNorm with a learnable weight (ones), eps default 1e-6. */
export class RMSNorm extends Module {
  constructor(readonly dim: number, readonly eps = 1e-6, options: ModuleOptions = {}) {
    super();
    checkDim('RMSNorm', 'dim', dim);
    this.registerParameter('weight', ones([dim], { dtype: options.dtype, device: options.device }));
  }
  get weight(): Tensor {
    return this.param('weight');
  }
  forward(x: Tensor): Tensor {
    return F.rmsNorm(x, this.weight, this.eps);
  }
}

/** LayerNorm with learnable weight (ones) and bias (zeros), eps default 1e-5. */
export class LayerNorm extends Module {
  constructor(readonly dim: number, readonly eps = 1e-5, options: ModuleOptions = {}) {
    super();
    checkDim('LayerNorm', 'dim', dim);
    this.registerParameter('weight', ones([dim], { dtype: options.dtype, device: options.device }));
    this.registerParameter('bias', zeros([dim], { dtype: options.dtype, device: options.device }));
  }
  get weight(): Tensor {
    return this.param('weight');
  }
  get bias(): Tensor {
    return this.param('bias');
  }
  forward(x: Tensor): Tensor {
    return F.layerNorm(x, this.weight, this.bias, this.eps);
  }
}

/** Dropout with probability p, active in training mode only. */
export class Dropout extends Module {
  constructor(readonly p: number) {
    super();
    if (typeof p !== 'number' || !(p >= 0 && p < 1)) fail('INVALID_ARGUMENT', `Dropout: p must be in [0, 1) (got ${String(p)})`);
  }
  forward(x: Tensor): Tensor {
    return F.dropout(x, this.p, { training: this.training });
  }
}

/** Activation names of {@link MLP}. */
export type Activation = 'gelu' | 'gelu_tanh' | 'quick_gelu';

/** Applies a named activation. */
export function activation(x: Tensor, act: Activation): Tensor {
  switch (act) {
    case 'gelu': return F.gelu(x);
    case 'gelu_tanh': return F.gelu(x, { approximate: 'tanh' });
    case 'quick_gelu': return F.quickGelu(x);
    default: fail('INVALID_ARGUMENT', `activation: unknown activation ${String(act)}`);
  }
}

/** Two linear layers with an activation between: fc2(act(fc1(x))) (CLIP's MLP). */
export class MLP extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(dim: number, hidden: number, readonly act: Activation = 'gelu', options: ModuleOptions & { outDim?: number; bias?: boolean } = {}) {
    super();
    const o = opts(options);
    const s2 = typeof o.seed === 'bigint' ? o.seed + 7n : o.seed + 7;
    this.fc1 = this.registerModule('fc1', new Linear(dim, hidden, { ...o, bias: options.bias }));
    this.fc2 = this.registerModule('fc2', new Linear(hidden, options.outDim ?? dim, { ...o, seed: s2, bias: options.bias }));
  }
  forward(x: Tensor): Tensor {
    const h = this.fc1.forward(x);
    const a = activation(h, this.act);
    h.dispose();
    const y = this.fc2.forward(a);
    a.dispose();
    return y;
  }
}
