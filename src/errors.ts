// errors.ts: the one error type of llm2clip. Every misuse throws Llm2ClipError with a
// machine-readable code; native failures arrive as the same class (the addon builds them
// through the factory registered in binding.ts).

export type ErrorCode =
  | 'SHAPE_MISMATCH'
  | 'DTYPE_MISMATCH'
  | 'DEVICE_UNAVAILABLE'
  | 'DEVICE_MISMATCH'
  | 'OUT_OF_MEMORY'
  | 'DISPOSED'
  | 'INVALID_ARGUMENT'
  /** A file could not be read or written (missing, permissions, disk full). */
  | 'IO_ERROR'
  /** A file's contents break its format (safetensors, config.json, tokenizer.json, checkpoints). */
  | 'CORRUPT_FILE'
  /** Training met a NaN / Infinity loss or gradient norm (nanPolicy 'stop'). */
  | 'NON_FINITE'
  | 'INTERNAL';

export class Llm2ClipError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'Llm2ClipError';
    this.code = code;
  }
}

export function fail(code: ErrorCode, message: string): never {
  throw new Llm2ClipError(code, message);
}
