// autograd.ts: reverse-mode automatic differentiation over the kernel ops.
//
// A differentiable op (see functional.ts) computes its output with the plain kernels,
// then record() attaches a GradNode to it when grad mode is on and an input requires grad.
// The node keeps aliases of the tensors its backward needs (sharing their memory, exempt
// from tidy() scopes), so intermediate tensors may be disposed or tidied freely after the
// forward. backward() walks the nodes in reverse topological order, runs each node's
// backward (in a tidy scope, with grad mode off), and accumulates into the .grad of leaf
// tensors that require grad. Gradients always have their input's dtype and shape.
import { fail } from './errors';
import { tidy, keep } from './scope';
import { GradNode, Tensor, autogradHooks, shapeStr } from './tensor';
import * as ops from './ops';
import { full, getSeedState, setSeedState } from './creation';

let gradEnabled = true;

/** Whether ops record the graph now (true unless inside noGrad()). */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

function withGradMode<T>(on: boolean, fn: () => T): T {
  const was = gradEnabled;
  gradEnabled = on;
  try {
    const r = fn();
    if (r instanceof Promise) fail('INVALID_ARGUMENT', 'noGrad(fn) / enableGrad(fn): fn must be synchronous (it returned a Promise)');
    return r;
  } finally {
    gradEnabled = was;
  }
}

/** Runs fn without recording the graph (inference, evaluation, parameter updates). */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

/** Runs fn with graph recording on (inside a noGrad() region). */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}

/** An alias of t (same memory), owned by a graph node, exempt from tidy() scopes. */
function alias(t: Tensor): Tensor {
  return keep(t.detach());
}

type BackwardFn = (grad: Tensor, saved: Tensor[], needs: boolean[]) => (Tensor | null)[];

class Node implements GradNode {
  released = false;
  private saved: Tensor[];
  constructor(
    readonly name: string,
    readonly inputs: readonly (Tensor | null)[],
    saved: (Tensor | null)[],
    private readonly fn: BackwardFn,
  ) {
    this.saved = saved.map((t) => (t ? alias(t) : (null as unknown as Tensor)));
  }
  backward(grad: Tensor): (Tensor | null)[] {
    if (this.released)
      fail('INVALID_ARGUMENT', `backward(): the graph through ${this.name} was already freed by an earlier backward(); pass { retainGraph: true } to the first one`);
    const needs = this.inputs.map((t) => !!t && t.requiresGrad);
    return this.fn(grad, this.saved, needs);
  }
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const t of this.saved) t?.dispose();
    this.saved = [];
  }
}

/**
 * @internal Attaches the graph record of an op to its output: when grad mode is on and
 * some input requires grad, out requires grad and its gradFn runs `backward(grad, saved,
 * needs)` = the inputs' gradients (null where `needs[i]` is false or there is none).
 * `save` lists the tensors the backward reads (kept alive by the node).
 */
export function record(
  name: string, out: Tensor, inputs: readonly (Tensor | null | undefined)[], save: readonly (Tensor | null | undefined)[], backward: BackwardFn,
): Tensor {
  if (!gradEnabled || out.dtype === 'int32') return out;
  const ins = inputs.map((t) => t ?? null);
  if (!ins.some((t) => t && t.requiresGrad)) return out;
  out.gradFn = new Node(name, ins, save.map((t) => t ?? null), backward);
  out.requiresGrad = true;
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** g shaped and typed like t (a backward may return float32 or a reshaped gradient). */
function conform(g: Tensor, t: Tensor, node: string): Tensor {
  if (g.size !== t.size)
    fail('INTERNAL', `backward of ${node}: gradient ${g.dtype}${shapeStr(g.shape)} does not fit input ${t.dtype}${shapeStr(t.shape)}`);
  let out = g;
  if (!sameShape(g.shape, t.shape)) out = out.reshape(t.shape);
  if (out.dtype !== t.dtype) out = out.cast(t.dtype);
  if (out.device !== t.device) out = out.to(t.device);
  return out;
}

function accumulate(prev: Tensor | null | undefined, g: Tensor): Tensor {
  if (!prev) return g;
  const sum = ops.add(prev, g);
  prev.dispose();
  g.dispose();
  return sum;
}

/**
 * @internal The engine: back-propagates the given (output, gradient) pairs. Leaves that
 * require grad get their gradient added to .grad, except those in `capture`, whose
 * gradients are returned in capture's order instead (null where none arrived).
 */
export function runBackward(roots: [Tensor, Tensor][], retainGraph: boolean, capture: Tensor[] = []): (Tensor | null)[] {
  const captured = new Map<Tensor, Tensor | null>(capture.map((t) => [t, null]));
  // Dependency counts over the nodes reachable from the roots.
  const deps = new Map<GradNode, number>();
  const stack: GradNode[] = [];
  for (const [t] of roots) if (t.gradFn && !deps.has(t.gradFn)) { deps.set(t.gradFn, 0); stack.push(t.gradFn); }
  while (stack.length) {
    const n = stack.pop()!;
    for (const inp of n.inputs) {
      const m = inp?.gradFn;
      if (!m || !inp!.requiresGrad) continue;
      if (!deps.has(m)) { deps.set(m, 0); stack.push(m); }
      deps.set(m, deps.get(m)! + 1);
    }
  }
  const pending = new Map<GradNode, Tensor>();
  const toLeaf = (t: Tensor, g: Tensor): void => {
    if (captured.has(t)) captured.set(t, keep(accumulate(captured.get(t), g)));
    else t.grad = keep(accumulate(t.grad, g));
  };
  withGradMode(false, () => {
    for (const [t, g0] of roots) {
      const g = tidy(() => conform(g0.detach(), t, 'the root'));
      if (t.gradFn) pending.set(t.gradFn, keep(accumulate(pending.get(t.gradFn), g)));
      else if (t.requiresGrad) toLeaf(t, keep(g));
      else g.dispose();
    }
    const ready = [...deps.entries()].filter(([, c]) => c === 0).map(([n]) => n);
    while (ready.length) {
      const n = ready.pop()!;
      const g = pending.get(n);
      pending.delete(n);
      let grads: (Tensor | null)[] = [];
      if (g) {
        try {
          grads = tidy(() =>
            n.backward(g).map((gi, i) => {
              if (!gi || !n.inputs[i]?.requiresGrad) return null;
              const c = conform(gi, n.inputs[i]!, n.name);
              return c === g ? g.detach() : c; // g itself is disposed below
            }),
          );
        } finally {
          g.dispose();
        }
        for (const gi of grads) if (gi) keep(gi);
      }
      if (!retainGraph) n.release();
      n.inputs.forEach((inp, i) => {
        if (!inp || !inp.requiresGrad) return;
        const gi = grads[i] ?? null;
        const m = inp.gradFn;
        if (m) {
          if (gi) pending.set(m, keep(accumulate(pending.get(m), gi)));
          const c = deps.get(m)! - 1;
          deps.set(m, c);
          if (c === 0) ready.push(m);
        } else if (gi) toLeaf(inp, gi);
      });
    }
  });
  for (const g of pending.values()) g.dispose();
  return capture.map((t) => captured.get(t) ?? null);
}

autogradHooks.backward = (t: Tensor, grad: Tensor | null, retainGraph: boolean): void => {
  t.nat('backward()');
  if (!t.requiresGrad) fail('INVALID_ARGUMENT', `backward(): ${t.toString()} does not require grad (no input of the ops that made it requires grad, or it was made under noGrad())`);
  let g = grad;
  if (g === null) {
    if (t.size !== 1) fail('SHAPE_MISMATCH', `backward(): ${t.toString()} has ${t.size} elements; pass its gradient (backward(grad)) unless it has exactly one`);
    g = keep(full(t.shape, 1, { dtype: t.dtype, device: t.device }));
  } else {
    if (!(g instanceof Tensor)) fail('INVALID_ARGUMENT', 'backward(grad): grad must be a Tensor');
    g.nat('backward(grad)');
    if (!sameShape(g.shape, t.shape)) fail('SHAPE_MISMATCH', `backward(grad): grad ${g.dtype}${shapeStr(g.shape)} must have the shape of ${t.toString()}`);
  }
  try {
    runBackward([[t, g]], retainGraph);
  } finally {
    if (g !== grad) g.dispose();
  }
};

autogradHooks.view = (input: Tensor, out: Tensor, kind: 'reshape' | 'cast' | 'to'): Tensor => {
  const shape = input.shape, dtype = input.dtype, device = input.device;
  return record(kind, out, [input], [], (g) => {
    if (kind === 'reshape') return [g.reshape(shape)];
    if (kind === 'cast') return [g.cast(dtype)];
    return [g.to(device)];
  });
};

/**
 * Activation checkpointing: runs fn(...inputs) without keeping its intermediate tensors;
 * the backward runs fn again (same random seeds: the seed sequence is rewound) to
 * rebuild them. Trades one more forward for the memory of fn's activations (use one
 * checkpoint per transformer layer). fn must be deterministic given its inputs and the
 * seed sequence, and return one tensor.
 */
export function checkpoint(fn: (...inputs: Tensor[]) => Tensor, ...inputs: Tensor[]): Tensor {
  if (typeof fn !== 'function') fail('INVALID_ARGUMENT', 'checkpoint(fn, ...inputs): fn must be a function');
  inputs.forEach((t, i) => {
    if (!(t instanceof Tensor)) fail('INVALID_ARGUMENT', `checkpoint: input ${i} is not a Tensor`);
  });
  if (!gradEnabled) return fn(...inputs);
  const seedState = getSeedState();
  const out = withGradMode(false, () => fn(...inputs));
  if (!(out instanceof Tensor)) fail('INVALID_ARGUMENT', 'checkpoint: fn must return a Tensor');
  // The parameters fn reads are not known until it re-runs, so the output is recorded
  // as requiring grad even when no input does (the backward then just fills .grad).
  const node = new Node('checkpoint', inputs, inputs, (g, saved, needs) => {
    const after = getSeedState();
    setSeedState(seedState);
    try {
      const leaves = saved.map((t, i) => t.detach().setRequiresGrad(needs[i]));
      const y = withGradMode(true, () => fn(...leaves));
      if (!(y instanceof Tensor) || !sameShape(y.shape, g.shape))
        fail('INVALID_ARGUMENT', 'checkpoint: fn returned a different shape when re-run (it must be deterministic)');
      if (!y.requiresGrad) return saved.map(() => null);
      const want = leaves.filter((_, i) => needs[i]);
      const got = runBackward([[y, g]], false, want);
      let k = 0;
      return leaves.map((_, i) => (needs[i] ? got[k++] : null));
    } finally {
      setSeedState(after);
    }
  });
  out.gradFn = node;
  out.requiresGrad = true;
  return out;
}
