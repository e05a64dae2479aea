#!/usr/bin/env node
// fuzz-safetensors.js: a seeded fuzzer for llm2clip's safetensors loader (issue 9).
//
// It writes valid safetensors files (several dtypes and shapes, single files and sharded
// folders with a model.safetensors.index.json), mutates each (random byte flips,
// truncation, a huge or off-by-some header length, header JSON mutations: overlapping and
// out-of-range data_offsets, wrong dtype strings, shapes that do not match the byte
// length, non-object JSON, duplicate keys, "__metadata__" of the wrong type, negative and
// fractional numbers, prototype-named keys, invalid UTF-8, index.json mutations) and loads
// each with loadSafetensors / loadSafetensorsDir, asserting that every load either
//   - throws an Llm2ClipError whose message names the file (or folder), or
//   - returns exactly the tensors the header describes: names, shapes, dtypes and the
//     bytes at data_offsets (F64 / I64 narrowed as documented),
// never a crash, a hang (each load has a deadline), another error type, or a leaked tensor.
//
// Run (after `npm run build:ts`, which compiles src/ into dist/):
//   node scripts/fuzz-safetensors.js [--files 10000] [--seed 1] [--keep-failures DIR]
// It prints a summary (files, errors by code, correct loads, seconds) and exits 1 on any
// failure. test/fuzz-safetensors.test.ts runs a smaller seeded fuzz against src/.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

/** mulberry32: a small seeded PRNG (floats in [0, 1)). */
function makeRng(seed) {
  let a = seed >>> 0 || 0x9e3779b9;
  const float = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const below = (n) => Math.floor(float() * n);
  const pick = (xs) => xs[below(xs.length)];
  return { float, below, pick };
}

const ITEMSIZE = { F32: 4, BF16: 2, F16: 2, I32: 4, F64: 8, I64: 8, U8: 1, BOOL: 1, I16: 2 };
// The dtypes the loader returns as tensors (others throw DTYPE_MISMATCH when selected).
const LOADS_AS = { F32: 'float32', BF16: 'bfloat16', F16: 'float16', I32: 'int32', F64: 'float32', I64: 'int32' };
const NAMES = ['w', 'b', 'model.embed_tokens.weight', 'layers.0.attn.q_proj.weight', 'norm.weight', 'lm_head.weight', 'x', 'y.z', 'ünï.çødé', 'a b'];

/** Random tensor specs: dtype, shape, bytes. */
function randomTensors(rng) {
  const n = 1 + rng.below(5);
  const names = new Set();
  while (names.size < n) names.add(rng.pick(NAMES) + (rng.float() < 0.3 ? `.${rng.below(100)}` : ''));
  return [...names].map((name) => {
    const r = rng.float();
    const dtype = r < 0.3 ? 'F32' : r < 0.45 ? 'BF16' : r < 0.6 ? 'F16' : r < 0.75 ? 'I32' : r < 0.85 ? 'F64' : r < 0.95 ? 'I64' : rng.pick(['U8', 'BOOL', 'I16']);
    const rank = rng.below(5);
    const shape = Array.from({ length: rank }, () => (rng.float() < 0.07 ? 0 : 1 + rng.below(7)));
    const numel = shape.reduce((a, b) => a * b, 1);
    const data = Buffer.alloc(numel * ITEMSIZE[dtype]);
    if (dtype === 'I64') {
      // int32-range values (a few out of range, which the loader must refuse as DTYPE_MISMATCH)
      for (let i = 0; i < numel; i++) data.writeBigInt64LE(rng.float() < 0.02 ? 2n ** 40n : BigInt(rng.below(2 ** 32) - 2 ** 31), i * 8);
    } else if (dtype === 'F64') {
      for (let i = 0; i < numel; i++) data.writeDoubleLE((rng.float() - 0.5) * 10 ** rng.below(8), i * 8);
    } else for (let i = 0; i < data.length; i++) data[i] = rng.below(256);
    return { name, dtype, shape, data };
  });
}

/** Builds a valid safetensors file (contiguous, or with gaps; header space-padded or not). */
function buildFile(rng, tensors) {
  const header = {};
  if (rng.float() < 0.5) header.__metadata__ = rng.float() < 0.5 ? { format: 'pt' } : { format: 'pt', note: 'fuzz', total: String(tensors.length) };
  const parts = [];
  let off = 0;
  const gaps = rng.float() < 0.2;
  for (const t of tensors) {
    if (gaps && rng.float() < 0.5) {
      const g = 1 + rng.below(9);
      parts.push(Buffer.alloc(g, 0xee));
      off += g;
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    parts.push(t.data);
    off += t.data.length;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  if (rng.float() < 0.5) json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, ...parts]);
}

function splitHeader(buf) {
  if (buf.length < 8) return null;
  const n = Number(buf.readBigUInt64LE(0));
  if (8 + n > buf.length) return null;
  let obj;
  try {
    obj = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + n)));
  } catch {
    return null;
  }
  return { obj, data: buf.subarray(8 + n) };
}

/**
 * Whether a JSON text (valid) repeats a key within one object, found independently of the
 * loader: in valid JSON a string followed by ':' is a key, so the keys written in the
 * text outnumber the parsed object's keys exactly when some object repeats one.
 */
function hasDuplicateKeys(text) {
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    return false;
  }
  const count = (v) => (v === null || typeof v !== 'object' ? 0 : Array.isArray(v) ? v.reduce((a, x) => a + count(x), 0) : Object.keys(v).reduce((a, k) => a + 1 + count(v[k]), 0));
  const written = (text.match(/"(?:[^"\\]|\\.)*"\s*:/g) ?? []).length;
  return written > count(parsed);
}

function headerText(buf) {
  if (buf.length < 8) return null;
  const n = Number(buf.readBigUInt64LE(0));
  if (8 + n > buf.length) return null;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + n));
  } catch {
    return null;
  }
}

function withHeader(text, data) {
  const json = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

const BAD_DTYPES = ['F33', 'f32', '', 'FLOAT', 'float32', 'toString', '__proto__', 'constructor', 'hasOwnProperty', 'valueOf', 123, null, true, ['F32'], { F32: 1 }, 'F32 ', 'BF16\u0000'];
const BAD_NUMBERS = [-1, -8, 0.5, 1.5, 2 ** 53, 2 ** 53 + 2, 1e300, -0.0, NaN, Infinity, '4', null, true, [], {}, 2 ** 31, 2 ** 32 + 4];

/** Header-level mutations of a parsed header object; returns [kind, text, dup]. */
function mutateHeader(rng, obj, dataLen) {
  const names = Object.keys(obj).filter((k) => k !== '__metadata__');
  const name = names.length ? rng.pick(names) : null;
  const e = name ? obj[name] : null;
  const kinds = ['overlap', 'out-of-range', 'dtype', 'shape', 'non-object', 'duplicate', 'metadata', 'number', 'entry', 'proto-name', 'fields', 'swap-offsets', 'utf8', 'text'];
  const kind = rng.pick(kinds);
  let dup = false;
  switch (kind) {
    case 'overlap': {
      if (names.length >= 2) {
        const other = obj[rng.pick(names.filter((n) => n !== name))];
        const [s, t] = other.data_offsets;
        const len = e.data_offsets[1] - e.data_offsets[0];
        const start = s + (t > s ? rng.below(t - s) : 0);
        e.data_offsets = [start, start + len];
      } else if (e) e.data_offsets = [0, e.data_offsets[1] + 1];
      break;
    }
    case 'out-of-range': {
      if (!e) break;
      const r = rng.below(4);
      if (r === 0) e.data_offsets = [e.data_offsets[0], dataLen + 1 + rng.below(100)];
      else if (r === 1) e.data_offsets = [dataLen + rng.below(50), dataLen + rng.below(50) + 8];
      else if (r === 2) e.data_offsets = [e.data_offsets[1], e.data_offsets[0]];
      else e.data_offsets = [2 ** 53 - 8, 2 ** 53];
      break;
    }
    case 'dtype':
      if (e) e.dtype = rng.pick(BAD_DTYPES.concat(['F32', 'BF16', 'F16', 'I32', 'F64', 'I64', 'U8', 'F8_E4M3', 'F4', 'C64']));
      break;
    case 'shape': {
      if (!e) break;
      const r = rng.below(5);
      if (r === 0) e.shape = [...e.shape, 2];
      else if (r === 1) e.shape = e.shape.slice(1);
      else if (r === 2 && e.shape.length) e.shape[rng.below(e.shape.length)] += 1;
      else if (r === 3) e.shape = [2 ** 26, 2 ** 26, 2 ** 26];
      else e.shape = Array.from({ length: 9 + rng.below(4) }, () => 1);
      break;
    }
    case 'non-object':
      return [kind, rng.pick(['[]', '[1,2]', '42', '"x"', 'null', 'true', '{', '', ' ', '{"a":', '{}x', `[${JSON.stringify(obj)}]`]), false];
    case 'duplicate': {
      if (!name) break;
      const text = JSON.stringify(obj);
      const entry = JSON.stringify({ [name]: rng.pick(names.map((n) => obj[n])) }).slice(1, -1);
      dup = true;
      return [kind, text.slice(0, -1) + (text.length > 2 ? ',' : '') + entry + '}', dup];
    }
    case 'metadata':
      obj.__metadata__ = rng.pick([[], 'pt', 7, null, true, { format: 1 }, { format: null }, { format: ['pt'] }, { format: { a: 'b' } }]);
      break;
    case 'number': {
      if (!e) break;
      const v = rng.pick(BAD_NUMBERS);
      if (rng.float() < 0.5 && e.shape.length) e.shape[rng.below(e.shape.length)] = v;
      else e.data_offsets[rng.below(2)] = v;
      break;
    }
    case 'entry':
      if (name) obj[name] = rng.pick([null, 1, 'F32', [], [e.dtype, e.shape, e.data_offsets], { dtype: e.dtype }, { shape: e.shape, data_offsets: e.data_offsets }]);
      break;
    case 'proto-name': {
      if (!name) break;
      const nn = rng.pick(['__proto__', 'constructor', 'toString', 'hasOwnProperty', '']);
      const text = JSON.stringify(obj).replace(JSON.stringify(name) + ':', JSON.stringify(nn) + ':');
      return [kind, text, false];
    }
    case 'fields':
      if (e) {
        if (rng.float() < 0.5) e.data_offsets = rng.pick([[0], [0, 1, 2], 'x', null, { 0: 0, 1: 4 }]);
        else e.shape = rng.pick(['x', null, 4, { 0: 1 }, [[1]], ['1']]);
      }
      break;
    case 'swap-offsets':
      if (names.length >= 2) {
        const other = obj[rng.pick(names.filter((n) => n !== name))];
        [e.data_offsets, other.data_offsets] = [other.data_offsets, e.data_offsets];
      }
      break;
    case 'utf8': {
      const text = Buffer.from(JSON.stringify(obj), 'utf8');
      const at = rng.below(text.length);
      text[at] = rng.pick([0xff, 0xc0, 0x80, 0xed]);
      return [kind, text.toString('latin1'), false, text];
    }
    case 'text': {
      const text = JSON.stringify(obj);
      const r = rng.below(4);
      if (r === 0) return [kind, text + '\u0000'.repeat(1 + rng.below(8)), false];
      if (r === 1) return [kind, text + ' '.repeat(1 + rng.below(8)), false];
      if (r === 2) return [kind, text.slice(0, rng.below(text.length)), false];
      return [kind, text + '{}', false];
    }
  }
  return [kind, JSON.stringify(obj), dup];
}

/** One mutation of a safetensors file's bytes; returns { kind, buf, dup }. */
function mutateFile(rng, buf) {
  const r = rng.float();
  if (r < 0.25) {
    const out = Buffer.from(buf);
    const n = 1 + rng.below(8);
    const headerOnly = rng.float() < 0.5;
    const hl = Math.min(out.length, 8 + Number(out.readBigUInt64LE(0)));
    for (let i = 0; i < n; i++) {
      const at = headerOnly ? rng.below(hl) : rng.below(out.length);
      out[at] ^= 1 << rng.below(8);
    }
    return { kind: 'byte-flip', buf: out, dup: false };
  }
  if (r < 0.4) return { kind: 'truncate', buf: buf.subarray(0, rng.below(buf.length)), dup: false };
  if (r < 0.5) {
    const out = Buffer.from(buf);
    const n = Number(buf.readBigUInt64LE(0));
    const v = rng.pick([2n ** 64n - 1n, 2n ** 63n, 2n ** 53n, 100n * 1024n * 1024n + 1n, 100n * 1024n * 1024n, BigInt(buf.length), BigInt(buf.length - 7), BigInt(n + 1), BigInt(Math.max(0, n - 1)), 0n, 1n]);
    out.writeBigUInt64LE(BigInt.asUintN(64, v), 0);
    return { kind: 'header-length', buf: out, dup: false };
  }
  const h = splitHeader(buf);
  if (!h) return { kind: 'truncate', buf: buf.subarray(0, rng.below(buf.length)), dup: false };
  let m;
  try {
    // (a header already mutated by an earlier round may not have the fields a mutation edits)
    m = mutateHeader(rng, h.obj, h.data.length);
  } catch {
    return { kind: 'truncate', buf: buf.subarray(0, rng.below(buf.length)), dup: false };
  }
  const [kind, text, dup, raw] = m;
  if (raw) {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(raw.length));
    return { kind: 'header-' + kind, buf: Buffer.concat([len, raw, h.data]), dup };
  }
  return { kind: 'header-' + kind, buf: withHeader(text, h.data), dup };
}

/** What a correct load of buf (one file) must return; null when the file must be refused. */
function expectedTensors(buf) {
  const h = splitHeader(buf);
  if (!h || h.obj === null || typeof h.obj !== 'object' || Array.isArray(h.obj)) return null;
  const out = new Map();
  for (const name of Object.keys(h.obj)) {
    if (name === '__metadata__') continue;
    const e = h.obj[name];
    out.set(name, { dtype: e.dtype, shape: e.shape, bytes: h.data.subarray(e.data_offsets[0], e.data_offsets[1]), offsets: e.data_offsets });
  }
  return out;
}

/** Compares a loaded tensor with what the header says; returns a problem or null. */
function checkTensor(t, exp, name) {
  if (!exp) return `loaded tensor "${name}" that the header does not list`;
  if (!Array.isArray(exp.shape) || JSON.stringify(t.shape) !== JSON.stringify(exp.shape)) return `"${name}": shape ${JSON.stringify(t.shape)} vs header ${JSON.stringify(exp.shape)}`;
  if (t.dtype !== LOADS_AS[exp.dtype]) return `"${name}": dtype ${t.dtype} for header dtype ${JSON.stringify(exp.dtype)}`;
  const numel = exp.shape.reduce((a, b) => a * b, 1);
  if (exp.bytes.length !== numel * ITEMSIZE[exp.dtype] || exp.offsets[1] - exp.offsets[0] !== exp.bytes.length)
    return `"${name}": ${exp.dtype}${JSON.stringify(exp.shape)} loaded from a ${exp.offsets[1] - exp.offsets[0]}-byte range (${exp.bytes.length} in the file)`;
  const v = t.view();
  const got = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (exp.dtype === 'F64' || exp.dtype === 'I64') {
    for (let i = 0; i < numel; i++) {
      if (exp.dtype === 'F64') {
        const want = Math.fround(exp.bytes.readDoubleLE(i * 8));
        if (!(Object.is(want, v[i]) || (Number.isNaN(want) && Number.isNaN(v[i])) || want === v[i])) return `"${name}"[${i}] = ${v[i]}, file has ${want}`;
      } else {
        const want = exp.bytes.readBigInt64LE(i * 8);
        if (BigInt(v[i]) !== want) return `"${name}"[${i}] = ${v[i]}, file has ${want}`;
      }
    }
  } else if (!got.equals(exp.bytes)) return `"${name}": bytes differ from the file's data_offsets range`;
  return null;
}

function withDeadline(p, ms) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`no answer in ${ms} ms`), { hang: true })), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Runs the fuzzer. lib: { loadSafetensors, loadSafetensorsDir, Llm2ClipError, memoryStats }
 * (from dist/src or src). Returns a summary; failures lists every violated expectation.
 */
async function runFuzz(lib, opts = {}) {
  const files = opts.files ?? 10000;
  const seed = opts.seed ?? 1;
  const rng = makeRng(seed);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-fuzz-'));
  const t0 = Date.now();
  const summary = { files: 0, correctLoads: 0, errors: {}, kinds: {}, failures: [], seed, seconds: 0, sharded: 0, unmutatedChecked: 0 };
  const fail = (what, kind, file, buf) => {
    summary.failures.push({ what, kind, file });
    if (opts.keepFailures) {
      fs.mkdirSync(opts.keepFailures, { recursive: true });
      if (buf) fs.writeFileSync(path.join(opts.keepFailures, `fail-${summary.failures.length}.safetensors`), buf);
    }
  };
  const baseLive = lib.memoryStats().liveTensors;
  const dispose = (out) => {
    for (const t of Object.values(out)) t.dispose();
  };
  /** Loads, classifies and checks one case; expect(out) returns a problem or null. */
  const attempt = async (kind, load, target, expectFn, buf) => {
    summary.files++;
    summary.kinds[kind] = (summary.kinds[kind] ?? 0) + 1;
    let out = null;
    try {
      out = await withDeadline(load(), opts.deadlineMs ?? 10000);
    } catch (e) {
      if (e && e.hang) return fail(`hang: ${e.message}`, kind, target, buf);
      if (!(e instanceof lib.Llm2ClipError)) return fail(`not an Llm2ClipError: ${e && e.stack ? e.stack : String(e)}`, kind, target, buf);
      summary.errors[e.code] = (summary.errors[e.code] ?? 0) + 1;
      if (!e.message.includes(path.basename(target))) fail(`${e.code} message does not name ${path.basename(target)}: ${e.message}`, kind, target, buf);
      const live = lib.memoryStats().liveTensors;
      if (live !== baseLive) fail(`a failed load left ${live - baseLive} tensors alive`, kind, target, buf);
      return;
    }
    try {
      const problem = expectFn(out);
      if (problem) fail(`accepted but wrong: ${problem}`, kind, target, buf);
      else summary.correctLoads++;
    } finally {
      dispose(out);
    }
  };
  const checkSingle = (buf) => (out) => {
    const ht = headerText(buf);
    if (ht !== null && hasDuplicateKeys(ht)) return 'a header with a duplicate key was accepted';
    const exp = expectedTensors(buf);
    if (!exp) return 'the header does not parse as a JSON object, yet the file loaded';
    for (const name of exp.keys()) if (!Object.prototype.hasOwnProperty.call(out, name)) return `tensor "${name}" listed in the header is missing`;
    for (const [name, t] of Object.entries(out)) {
      const p = checkTensor(t, exp.get(name), name);
      if (p) return p;
    }
    return null;
  };

  try {
    let n = 0;
    while (n < files) {
      const sharded = rng.float() < 0.15;
      const caseDir = path.join(dir, `c${n}`);
      fs.mkdirSync(caseDir);
      if (!sharded) {
        const file = path.join(caseDir, 'model.safetensors');
        const good = buildFile(rng, randomTensors(rng));
        if (n % 50 === 0) {
          // the unmutated file must load exactly
          fs.writeFileSync(file, good);
          summary.unmutatedChecked++;
          await attempt('unmutated', () => lib.loadSafetensors(file), file, checkSingle(good), good);
          n++;
        }
        let buf = good, kind = '';
        const rounds = rng.float() < 0.85 ? 1 : 2 + rng.below(2);
        for (let r = 0; r < rounds && buf.length >= 8; r++) {
          const m = mutateFile(rng, buf);
          buf = m.buf;
          kind = kind ? kind + '+' + m.kind : m.kind;
        }
        if (rounds > 1) kind = 'multi';
        fs.writeFileSync(file, buf);
        await attempt(kind, () => lib.loadSafetensors(file), file, checkSingle(buf), buf);
      } else {
        summary.sharded++;
        const shards = 2 + rng.below(3);
        const all = randomTensors(rng).concat(randomTensors(rng));
        const seen = new Set();
        const uniq = all.filter((t) => (seen.has(t.name) ? false : (seen.add(t.name), true)));
        const byShard = Array.from({ length: shards }, () => []);
        uniq.forEach((t, i) => byShard[i < shards ? i : rng.below(shards)].push(t));
        const weightMap = {};
        const bufs = new Map();
        byShard.forEach((ts, i) => {
          const f = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
          bufs.set(f, buildFile(rng, ts));
          for (const t of ts) weightMap[t.name] = f;
        });
        let index = { metadata: { total_size: 0 }, weight_map: weightMap };
        let indexText = JSON.stringify(index);
        let kind, target;
        const r = rng.float();
        if (r < 0.55) {
          const f = rng.pick([...bufs.keys()]);
          const m = mutateFile(rng, bufs.get(f));
          bufs.set(f, m.buf);
          kind = 'shard-' + m.kind;
          target = f;
        } else if (r < 0.85) {
          const names = Object.keys(weightMap);
          const nm = rng.pick(names);
          const mk = rng.pick(['missing-map', 'map-type', 'absent-shard', 'traversal', 'non-string', 'bad-json', 'extra-name', 'proto-name', 'drop-name']);
          if (mk === 'missing-map') index = { metadata: {} };
          else if (mk === 'map-type') index.weight_map = rng.pick([[], 'x', null, 3]);
          else if (mk === 'absent-shard') weightMap[nm] = 'model-99999-of-99999.safetensors';
          else if (mk === 'traversal') weightMap[nm] = rng.pick(['../model.safetensors', '/etc/passwd', '..', '.', 'sub/x.safetensors', 'a\\b']);
          else if (mk === 'non-string') weightMap[nm] = rng.pick([1, null, [], {}, '']);
          else if (mk === 'extra-name') weightMap['not.in.any.shard'] = rng.pick([...bufs.keys()]);
          else if (mk === 'drop-name') delete weightMap[nm];
          indexText = mk === 'bad-json' ? JSON.stringify(index).slice(0, -1 - rng.below(5)) : JSON.stringify(index);
          if (mk === 'proto-name') indexText = indexText.replace(JSON.stringify(nm) + ':', JSON.stringify(rng.pick(['__proto__', 'constructor', 'toString'])) + ':');
          kind = 'index-' + mk;
          target = 'model.safetensors.index.json';
        } else if (r < 0.92) {
          const f = rng.pick([...bufs.keys()]);
          bufs.delete(f);
          kind = 'shard-deleted';
          target = f;
        } else {
          kind = 'sharded-unmutated';
          target = 'model.safetensors.index.json';
        }
        fs.writeFileSync(path.join(caseDir, 'model.safetensors.index.json'), indexText);
        for (const [f, b] of bufs) fs.writeFileSync(path.join(caseDir, f), b);
        const checkDir = (out) => {
          if (hasDuplicateKeys(indexText)) return 'an index with a duplicate key was accepted';
          for (const [f, b] of bufs) {
            const ht = headerText(b);
            if (ht !== null && hasDuplicateKeys(ht) && Object.values(JSON.parse(indexText).weight_map ?? {}).includes(f)) return `shard ${f} with a duplicate header key was accepted`;
          }
          let parsed;
          try {
            parsed = JSON.parse(indexText);
          } catch {
            return 'an index.json that is not JSON was accepted';
          }
          const wm = parsed && parsed.weight_map;
          if (!wm || typeof wm !== 'object' || Array.isArray(wm)) return 'an index without a weight_map object was accepted';
          const want = Object.keys(wm);
          const gotNames = Object.keys(out);
          if (want.length !== gotNames.length) return `loaded ${gotNames.length} tensors, the weight_map lists ${want.length}`;
          for (const name of want) {
            const shard = wm[name];
            if (typeof shard !== 'string' || !bufs.has(shard)) return `tensor "${name}" loaded from absent shard ${JSON.stringify(shard)}`;
            if (!Object.prototype.hasOwnProperty.call(out, name)) return `tensor "${name}" of the weight_map is missing`;
            const exp = expectedTensors(bufs.get(shard));
            if (!exp) return `shard ${shard} does not parse, yet loaded`;
            const p = checkTensor(out[name], exp.get(name), name);
            if (p) return `${shard}: ${p}`;
          }
          return null;
        };
        // A refusal may name the folder, the index or the shard; the folder name is in all.
        await attempt(kind, () => lib.loadSafetensorsDir(caseDir), caseDir, checkDir, null);
      }
      fs.rmSync(caseDir, { recursive: true, force: true });
      n++;
    }
    // Files that are not there or not readable as files: IO_ERROR.
    await attempt('missing-file', () => lib.loadSafetensors(path.join(dir, 'nope.safetensors')), 'nope.safetensors', () => 'a missing file loaded', null);
    await attempt('directory', () => lib.loadSafetensors(dir), dir, () => 'a directory loaded', null);
    await attempt('empty-dir', () => lib.loadSafetensorsDir(dir), dir, () => 'an empty folder loaded', null);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  summary.seconds = (Date.now() - t0) / 1000;
  return summary;
}

function formatSummary(s) {
  const errs = Object.entries(s.errors).sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(', ');
  const kinds = Object.entries(s.kinds).sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(', ');
  return [
    `safetensors fuzz (seed ${s.seed}): ${s.files} files (${s.sharded} sharded folders, ${s.unmutatedChecked} unmutated checks) in ${s.seconds.toFixed(1)} s`,
    `  correct loads: ${s.correctLoads}`,
    `  Llm2ClipError by code: ${errs}`,
    `  failures: ${s.failures.length}`,
    `  mutations: ${kinds}`,
    ...s.failures.slice(0, 20).map((f) => `  FAIL [${f.kind}] ${f.file}: ${f.what}`),
  ].join('\n');
}

module.exports = { runFuzz, formatSummary, makeRng };

if (require.main === module) {
  const args = process.argv.slice(2);
  const arg = (name, def) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : def;
  };
  let lib;
  try {
    lib = require(path.join(__dirname, '..', 'dist', 'src'));
  } catch (e) {
    console.error(`fuzz-safetensors: cannot load dist/src (run \`npm run build:ts\` first): ${e.message}`);
    process.exit(2);
  }
  runFuzz(lib, { files: Number(arg('--files', '10000')), seed: Number(arg('--seed', '1')), keepFailures: arg('--keep-failures', undefined) })
    .then((s) => {
      console.log(formatSummary(s));
      process.exit(s.failures.length ? 1 : 0);
    })
    .catch((e) => {
      console.error(e);
      process.exit(1);
    });
}
