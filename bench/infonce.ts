// bench/infonce.ts: the infonce suite (filled in by the infonce kernels' work).
export function runInfonce(_args: string[]): void {
  throw new Error('bench infonce: not written yet');
}
