// gradcache.ts: gradient caching (Gao et al. 2021), the large-batch step both training
// stages use: a batch's embeddings are computed in chunks without a graph, the loss is
// taken over the whole batch on them, then each chunk is re-run with the graph and
// back-propagates its slice of the embedding gradient. Activation memory is one chunk's.
import { noGrad } from '../autograd';
import { getSeedState, setSeedState } from '../creation';
import { keep, tidy } from '../scope';
import { Tensor } from '../tensor';
import * as ops from '../ops';

/** One group of rows embedded chunk by chunk (e.g. the queries, or the documents). */
export interface GradCacheGroup {
  /** Rows in the group. */
  n: number;
  /** Embeddings [end − start, d] of rows start..end (differentiable in the model's parameters). */
  embed: (start: number, end: number) => Tensor;
}

/**
 * One gradient-cached step: lossFn gets every group's embeddings [n, d] (leaves requiring
 * grad) and returns a scalar loss; parameters reached by lossFn directly and through the
 * groups' embed get their gradients accumulated in .grad. The re-runs rewind the seed
 * sequence, so dropout masks match the first pass exactly. Returns the loss.
 */
export function gradCache(groups: GradCacheGroup[], chunk: number, lossFn: (reps: Tensor[]) => Tensor): number {
  const seeds: bigint[][] = groups.map(() => []);
  const reps = groups.map((g, gi) => {
    const parts: Tensor[] = [];
    for (let s = 0; s < g.n; s += chunk) {
      seeds[gi].push(getSeedState());
      parts.push(noGrad(() => tidy(() => g.embed(s, Math.min(g.n, s + chunk)))));
    }
    const all = parts.length === 1 ? parts[0] : ops.concat(parts, 0);
    if (parts.length > 1) for (const p of parts) p.dispose();
    return keep(all.setRequiresGrad(true));
  });
  const after = getSeedState();
  const loss = tidy(() => {
    const l = lossFn(reps);
    const v = l.item();
    l.backward();
    return v;
  });
  groups.forEach((g, gi) => {
    const grad = reps[gi].grad!;
    seeds[gi].forEach((seed, k) => {
      const s = k * chunk, e = Math.min(g.n, s + chunk);
      setSeedState(seed);
      tidy(() => g.embed(s, e).backward(ops.slice(grad, 0, s, e)));
    });
  });
  setSeedState(after);
  for (const r of reps) r.dispose();
  return loss;
}
