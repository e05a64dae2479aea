// ops/attention.ts: fused bidirectional / causal attention (flash-style), forward and backward.
export {};
