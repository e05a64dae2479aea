// scope.ts: tidy() scopes. Every tensor created inside tidy(fn) is disposed when fn
// returns, except the tensors fn returns (found in arrays and plain objects) and those
// passed to keep(); survivors move to the enclosing scope.

export interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
}

const scopes: Set<Disposable>[] = [];

/** Called by every tensor at creation. */
export function track(t: Disposable): void {
  if (scopes.length) scopes[scopes.length - 1].add(t);
}

/** Exempts t from the enclosing tidy() scopes' cleanup. */
export function keep<T extends Disposable>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

function collect(value: unknown, out: Set<unknown>, seen: Set<unknown>): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  out.add(value);
  if (Array.isArray(value)) for (const v of value) collect(v, out, seen);
  else if (Object.getPrototypeOf(value) === Object.prototype || value instanceof Map) {
    const vals = value instanceof Map ? [...value.values()] : Object.values(value);
    for (const v of vals) collect(v, out, seen);
  }
}

/** Runs fn; disposes the tensors it created that it does not return. fn must be synchronous. */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Disposable>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw new TypeError('tidy(fn): fn must be synchronous (it returned a Promise)');
  }
  const returned = new Set<unknown>();
  collect(result, returned, new Set());
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (returned.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}
