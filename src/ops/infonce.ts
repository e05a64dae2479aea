// ops/infonce.ts: the InfoNCE / CLIP contrastive loss without the N x M logits, forward and backward.
export {};
