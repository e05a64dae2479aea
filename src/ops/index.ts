// ops/index.ts: the kernel API, one typed wrapper per native op family.
export { matmul } from './matmul';
export type { MatmulOptions } from './matmul';
