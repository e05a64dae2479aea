// ops/lora.ts: linear layers with a LoRA adapter fused in, forward and backward; merge / unmerge.
export {};
