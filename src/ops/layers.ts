// ops/layers.ts: elementwise ops, norms, rope, activations, softmax, dropout, reductions, pooling.
export {};
