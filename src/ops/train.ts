// ops/train.ts: embedding, chunked cross-entropy fused with the output projection, adamw with clipping, layout ops, patchify.
export {};
