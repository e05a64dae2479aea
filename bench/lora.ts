// bench/lora.ts: the lora suite (filled in by the lora kernels' work).
export function runLora(_args: string[]): void {
  throw new Error('bench lora: not written yet');
}
