// nan.ts: what the trainers do with a non-finite loss or gradient norm (nanPolicy), and a
// test hook that injects one.
import * as fs from 'fs';
import * as path from 'path';
import { fail, Llm2ClipError } from '../errors';
import type { Tensor } from '../tensor';
import type { AdamW } from '../optim';

/**
 * What a trainer does when a step's loss or global gradient norm is NaN or ±Infinity:
 * 'stop' (default) throws Llm2ClipError NON_FINITE and writes nothing (the last good
 * checkpoint stays LATEST; resume: true continues from it); 'skip' drops the step (no
 * parameter, optimizer-state or optimizer-step-count update), counts it in the result's
 * skippedSteps and logs it with skipped: true.
 */
export type NanPolicy = 'stop' | 'skip';

/** What the step fault hook sees (after backward, before the optimizer step). */
export interface StepFault {
  stage: string;
  /** The step being taken (1-based, as in onStep). */
  step: number;
  loss: number;
  /** The trained parameters (their .grad set). */
  params: [string, Tensor][];
  optimizer: AdamW;
}

let stepHook: ((f: StepFault) => number | void) | null = null;

/**
 * @internal Test hook: called in every training step of ccFinetune and trainClip after the
 * backward pass; it may poison a gradient (e.g. write NaN into a parameter's .grad) or
 * return a number that replaces the step's loss. null removes it. Returns the previous hook.
 */
export function setStepFaultHook(h: ((f: StepFault) => number | void) | null): ((f: StepFault) => number | void) | null {
  const was = stepHook;
  stepHook = h;
  return was;
}

/** @internal Runs the hook; returns the (possibly replaced) loss. */
export function stepFault(f: StepFault): number {
  if (!stepHook) return f.loss;
  const r = stepHook(f);
  return typeof r === 'number' ? r : f.loss;
}

/** Checks options.nanPolicy; returns it or the default 'stop'. */
export function checkNanPolicy(v: unknown, what: string): NanPolicy {
  if (v === undefined) return 'stop';
  if (v !== 'stop' && v !== 'skip') fail('INVALID_ARGUMENT', `${what}: options.nanPolicy must be 'stop' or 'skip' (got ${JSON.stringify(v)})`);
  return v;
}

/** The NON_FINITE error of nanPolicy 'stop', naming the step, the value and the last good checkpoint. */
export function nonFiniteError(what: string, where: string, loss: number, gradNorm: number | null, ckDir: string): Llm2ClipError {
  let last = 'no checkpoint was written yet';
  try {
    const name = fs.readFileSync(path.join(ckDir, 'LATEST'), 'utf8').trim();
    last = `the last good checkpoint is ${path.join(ckDir, name)} (resume: true continues from it)`;
  } catch {
    // no LATEST
  }
  const value = !Number.isFinite(loss) ? `the loss is ${loss}` : `the gradient norm is ${gradNorm}`;
  return new Llm2ClipError(
    'NON_FINITE',
    `${what}: ${value} at ${where}; training stopped and nothing was written: ${last}. ` +
      `Lower the learning rate, check the data, or pass nanPolicy: 'skip' to skip such steps`,
  );
}

/** JSON turns NaN into null: losses read back from a checkpoint get their NaNs back. */
export function lossesFromJson(a: unknown): number[] {
  return Array.isArray(a) ? a.map((v) => (typeof v === 'number' ? v : NaN)) : [];
}
