// ops/index.ts: the kernel API, one typed wrapper per native op family.
export { matmul } from './matmul';
export type { MatmulOptions } from './matmul';
export * from './attention';
export * from './lora';
export * from './infonce';
export * from './layers';
export * from './train';
