// optim.ts: the AdamW optimiser over parameters with .grad (one fused native step per
// call, float32 moments, float32 master weights for 16-bit parameters) and learning-rate
// schedules.
import { fail } from './errors';
import { noGrad } from './autograd';
import { zeros } from './creation';
import { keep, tidy } from './scope';
import { Tensor, shapeStr } from './tensor';
import * as ops from './ops';
import { copyInto } from './nn';

/** Hyperparameters of {@link AdamW} (PyTorch's names and defaults). */
export interface AdamWConfig {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this before the step (none by default). */
  maxGradNorm?: number | null;
  /**
   * Which parameters decay (default: those with two or more dims: weights decay, biases,
   * norms and embeddings' 1-D vectors do not). Given by name when params are named.
   */
  decay?: (name: string, p: Tensor) => boolean;
  /**
   * Per-parameter multiplier of the learning rate (default 1 for all; e.g. layer-wise lr
   * decay). Parameters of equal multiplier are updated together; clipping stays global.
   */
  lrScale?: (name: string, p: Tensor) => number;
}

/** What {@link AdamW.step} reports. */
export interface StepResult {
  /** Global gradient 2-norm before clipping. */
  gradNorm: number;
  /** True when the norm was not finite: no parameter changed. */
  skipped: boolean;
  /** The step count after this call (unchanged when skipped). */
  step: number;
}

interface Slot {
  name: string;
  p: Tensor;
  m: Tensor;
  v: Tensor;
  master: Tensor | null;
  decay: boolean;
  lrScale: number;
}

/**
 * AdamW (torch.optim.AdamW semantics) over the given parameters (an array, or [name,
 * tensor] pairs from Module.namedParameters()). step() updates every parameter that has a
 * gradient, in one native call; parameters without a gradient are left alone. 16-bit
 * parameters are updated through float32 master copies.
 */
export class AdamW {
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly maxGradNorm: number | null;
  private slots: Slot[];
  private step_ = 0;

  constructor(params: Tensor[] | [string, Tensor][], config: AdamWConfig = {}) {
    if (!Array.isArray(params) || params.length === 0) fail('INVALID_ARGUMENT', 'AdamW(params): a non-empty array of parameters is required');
    const named: [string, Tensor][] = params.map((e, i) => (Array.isArray(e) ? e : [`param${i}`, e]));
    this.lr = config.lr ?? 1e-3;
    [this.beta1, this.beta2] = config.betas ?? [0.9, 0.999];
    this.eps = config.eps ?? 1e-8;
    this.weightDecay = config.weightDecay ?? 0.01;
    this.maxGradNorm = config.maxGradNorm ?? null;
    for (const [k, v] of [['lr', this.lr], ['eps', this.eps], ['weightDecay', this.weightDecay]] as const)
      if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) fail('INVALID_ARGUMENT', `AdamW: ${k} must be a finite number >= 0 (got ${String(v)})`);
    for (const b of [this.beta1, this.beta2])
      if (typeof b !== 'number' || !(b >= 0 && b < 1)) fail('INVALID_ARGUMENT', `AdamW: betas must be in [0, 1) (got ${String(config.betas)})`);
    const decay = config.decay ?? ((_n: string, p: Tensor) => p.ndim >= 2);
    const seen = new Set<Tensor>();
    this.slots = named.map(([name, p]) => {
      if (!(p instanceof Tensor)) fail('INVALID_ARGUMENT', `AdamW: ${name} is not a Tensor`);
      if (p.dtype === 'int32') fail('DTYPE_MISMATCH', `AdamW: ${name} is int32`);
      if (seen.has(p)) fail('INVALID_ARGUMENT', `AdamW: ${name} is listed twice`);
      seen.add(p);
      const dev = { device: p.device };
      const scale = config.lrScale ? config.lrScale(name, p) : 1;
      if (typeof scale !== 'number' || !(scale >= 0) || !Number.isFinite(scale)) fail('INVALID_ARGUMENT', `AdamW: lrScale(${name}) must be a finite number >= 0 (got ${String(scale)})`);
      return {
        name, p, decay: decay(name, p), lrScale: scale,
        m: keep(zeros(p.shape, dev)),
        v: keep(zeros(p.shape, dev)),
        master: p.dtype === 'float32' ? null : keep(noGrad(() => tidy(() => p.detach().cast('float32')))),
      };
    });
  }

  /** Number of steps taken. */
  get stepCount(): number {
    return this.step_;
  }

  /** One update of every parameter with a gradient (lr: this.lr, settable per step). */
  step(): StepResult {
    const live = this.slots.filter((s) => s.p.grad);
    if (live.length === 0) return { gradNorm: 0, skipped: false, step: this.step_ };
    const update = (group: Slot[], grads: Tensor[], lr: number, maxGradNorm: number | null) =>
      noGrad(() =>
        ops.adamw(
          {
            params: group.map((s) => s.p), grads, expAvg: group.map((s) => s.m),
            expAvgSq: group.map((s) => s.v), master: group.map((s) => s.master),
          },
          {
            lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay,
            step: this.step_ + 1, decay: group.map((s) => s.decay), maxGradNorm,
          },
        ),
      );
    const scales = [...new Set(live.map((s) => s.lrScale))];
    if (scales.length === 1) {
      // One group: one native call, clipping inside it.
      const r = update(live, live.map((s) => s.p.grad!), this.lr * scales[0], this.maxGradNorm);
      if (!r.skipped) this.step_++;
      return { ...r, step: this.step_ };
    }
    // Several lr groups: the global norm first (clipping and the skip on a non-finite norm
    // see every gradient, as with one group), then one update per group.
    const norm = ops.gradNorm(live.map((s) => s.p.grad!));
    if (!Number.isFinite(norm)) return { gradNorm: norm, skipped: true, step: this.step_ };
    const clip = this.maxGradNorm !== null ? Math.min(1, this.maxGradNorm / (norm + 1e-6)) : 1;
    for (const sc of scales) {
      const group = live.filter((s) => s.lrScale === sc);
      const grads = clip < 1 ? group.map((s) => noGrad(() => ops.scale(s.p.grad!, clip))) : group.map((s) => s.p.grad!);
      try {
        update(group, grads, this.lr * sc, null);
      } finally {
        if (clip < 1) grads.forEach((g) => g.dispose());
      }
    }
    this.step_++;
    return { gradNorm: norm, skipped: false, step: this.step_ };
  }

  /** Drops every parameter's gradient. */
  zeroGrad(): void {
    for (const s of this.slots) s.p.zeroGrad();
  }

  /** The optimiser state for a checkpoint: moments (and masters) by parameter name, plus the step. */
  stateDict(): { step: number; tensors: Record<string, Tensor> } {
    const tensors: Record<string, Tensor> = {};
    for (const s of this.slots) {
      tensors[`${s.name}.exp_avg`] = s.m;
      tensors[`${s.name}.exp_avg_sq`] = s.v;
      if (s.master) tensors[`${s.name}.master`] = s.master;
    }
    return { step: this.step_, tensors };
  }

  /** Restores a {@link stateDict} (values copied in place; names and shapes must match). */
  loadStateDict(state: { step: number; tensors: Record<string, Tensor> }): void {
    if (!state || typeof state.step !== 'number' || !Number.isSafeInteger(state.step) || state.step < 0 || typeof state.tensors !== 'object')
      fail('INVALID_ARGUMENT', 'AdamW.loadStateDict: { step, tensors } expected');
    const copy = (dst: Tensor, key: string) => {
      const src = state.tensors[key];
      if (!(src instanceof Tensor)) fail('INVALID_ARGUMENT', `AdamW.loadStateDict: ${key} is missing`);
      if (src.size !== dst.size) fail('SHAPE_MISMATCH', `AdamW.loadStateDict: ${key} is ${shapeStr(src.shape)}, expected ${shapeStr(dst.shape)}`);
      noGrad(() => copyTo(dst, src));
    };
    for (const s of this.slots) {
      copy(s.m, `${s.name}.exp_avg`);
      copy(s.v, `${s.name}.exp_avg_sq`);
      if (s.master) copy(s.master, `${s.name}.master`);
    }
    this.step_ = state.step;
  }

  /** Frees the optimiser's state (not the parameters). */
  dispose(): void {
    for (const s of this.slots) {
      s.m.dispose();
      s.v.dispose();
      s.master?.dispose();
    }
  }
}

function copyTo(dst: Tensor, src: Tensor): void {
  copyInto(dst, src.reshape(dst.shape));
}

/**
 * Learning rate at `step` (0-based) for linear warmup then cosine decay to
 * minLr (the schedule of CLIP / LLM2CLIP training); constant after totalSteps.
 */
export function cosineSchedule(step: number, o: { lr: number; warmupSteps: number; totalSteps: number; minLr?: number }): number {
  const min = o.minLr ?? 0;
  if (step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps;
  const span = Math.max(1, o.totalSteps - o.warmupSteps);
  const t = Math.min(1, (step - o.warmupSteps) / span);
  return min + 0.5 * (o.lr - min) * (1 + Math.cos(Math.PI * t));
}
