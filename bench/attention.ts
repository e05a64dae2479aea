// bench/attention.ts: the attention suite (filled in by the attention kernels' work).
export function runAttention(_args: string[]): void {
  throw new Error('bench attention: not written yet');
}
