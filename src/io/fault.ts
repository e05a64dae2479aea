// fault.ts: a test hook that simulates failing writes (a full disk, a dying device) in the
// writers of safetensors files and training checkpoints, which otherwise need a real
// full file system to exercise their error paths.

/**
 * Called before each write of `bytes` bytes to `file` (the final path, not the temp file
 * it goes through); throwing makes that write fail as an fs error would (e.g. an Error
 * with code 'ENOSPC').
 */
export type WriteFaultHook = (file: string, bytes: number) => void;

let hook: WriteFaultHook | null = null;

/**
 * @internal Test hook: installs (or with null removes) the {@link WriteFaultHook} of
 * saveSafetensors and saveCheckpoint. Returns the previous hook.
 */
export function setWriteFaultHook(h: WriteFaultHook | null): WriteFaultHook | null {
  const was = hook;
  hook = h;
  return was;
}

/** @internal Runs the installed hook, if any, before a write. */
export function beforeWrite(file: string, bytes: number): void {
  if (hook) hook(file, bytes);
}
