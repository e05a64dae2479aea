// fuzz-safetensors.test.ts: a small seeded run of scripts/fuzz-safetensors.js (the full
// 10,000-file run is `node scripts/fuzz-safetensors.js` on dist/): every mutated file
// is refused with an Llm2ClipError naming it, or loads exactly what its header says.
import * as lib from '../src';

interface FuzzSummary {
  files: number;
  correctLoads: number;
  errors: Record<string, number>;
  kinds: Record<string, number>;
  failures: { what: string; kind: string; file: string }[];
  seconds: number;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const fuzz = require('../scripts/fuzz-safetensors.js') as {
  runFuzz: (l: typeof lib, o: { files: number; seed: number }) => Promise<FuzzSummary>;
  formatSummary: (s: FuzzSummary) => string;
};

describe('safetensors fuzz', () => {
  it.each([11, 12])('seed %i: 300 mutated files, never a crash, always Llm2ClipError or a correct load', async (seed) => {
    const s = await fuzz.runFuzz(lib, { files: 300, seed });
    if (s.failures.length) console.log(fuzz.formatSummary(s));
    expect(s.failures).toEqual([]);
    expect(s.files).toBeGreaterThanOrEqual(300);
    // both outcomes occur, and the refusals are typed
    expect(s.correctLoads).toBeGreaterThan(10);
    expect(s.errors.CORRUPT_FILE).toBeGreaterThan(100);
    expect(s.errors.IO_ERROR).toBeGreaterThan(0);
    expect(Object.keys(s.kinds).length).toBeGreaterThan(15);
  });
});

describe('safetensors header hardening (bugs the fuzzer found)', () => {
  const fs = require('fs') as typeof import('fs');
  const os = require('os') as typeof import('os');
  const path = require('path') as typeof import('path');
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-sthard-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  let k = 0;
  const file = (header: string, data: Buffer): string => {
    const j = Buffer.from(header, 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(j.length));
    const f = path.join(dir, `h${k++}.safetensors`);
    fs.writeFileSync(f, Buffer.concat([len, j, data]));
    return f;
  };
  const codeOf = async (p: Promise<unknown>): Promise<[string, string]> => {
    try {
      await p;
    } catch (e) {
      expect(e).toBeInstanceOf(lib.Llm2ClipError);
      return [(e as lib.Llm2ClipError).code, (e as Error).message];
    }
    return ['loaded', ''];
  };

  it('a dtype named like an Object.prototype member ("toString", "constructor") is an unknown dtype, not a crash in allocation', async () => {
    for (const dt of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      const f = file(`{"a":{"dtype":"${dt}","shape":[2],"data_offsets":[0,8]}}`, Buffer.alloc(8));
      const [code, msg] = await codeOf(lib.loadSafetensors(f));
      expect(code).toBe('CORRUPT_FILE');
      expect(msg).toContain(path.basename(f));
      expect(msg).toMatch(/unknown dtype/);
    }
  });

  it('a tensor named "__proto__" is refused (it was silently dropped)', async () => {
    const f = file('{"__proto__":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', Buffer.alloc(8));
    const [code, msg] = await codeOf(lib.loadSafetensors(f));
    expect(code).toBe('CORRUPT_FILE');
    expect(msg).toMatch(/reserved/);
    // names that merely shadow Object.prototype members load as ordinary tensors
    const g = file('{"constructor":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"toString":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}}', Buffer.from([0, 0, 128, 63, 7, 0, 0, 0]));
    const out = await lib.loadSafetensors(g);
    expect(Object.keys(out).sort()).toEqual(['constructor', 'toString']);
    expect(Array.from(out['constructor'].toArray())).toEqual([1]);
    expect(Array.from(out['toString'].toArray())).toEqual([7]);
    for (const t of Object.values(out)) t.dispose();
  });

  it('duplicate keys in a header or an index are refused (JSON.parse kept the last one silently)', async () => {
    const f = file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', Buffer.alloc(8));
    const [code, msg] = await codeOf(lib.loadSafetensors(f));
    expect(code).toBe('CORRUPT_FILE');
    expect(msg).toMatch(/"a" twice/);
    const m = file('{"__metadata__":{"format":"pt","format":"np"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', Buffer.alloc(4));
    expect((await codeOf(lib.loadSafetensors(m)))[0]).toBe('CORRUPT_FILE');
    // the same key in different objects is fine; escaped spellings of one key are the same key
    const ok = file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', Buffer.alloc(8));
    const out = await lib.loadSafetensors(ok);
    expect(Object.keys(out).sort()).toEqual(['a', 'b']);
    for (const t of Object.values(out)) t.dispose();
    const esc = file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\\u0061":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', Buffer.alloc(8));
    expect((await codeOf(lib.loadSafetensors(esc)))[0]).toBe('CORRUPT_FILE');

    const sd = fs.mkdtempSync(path.join(dir, 'shards-'));
    fs.copyFileSync(ok, path.join(sd, 's1.safetensors'));
    fs.writeFileSync(path.join(sd, 'model.safetensors.index.json'), '{"weight_map":{"a":"s1.safetensors","b":"s1.safetensors","a":"s1.safetensors"}}');
    const [dcode, dmsg] = await codeOf(lib.loadSafetensorsDir(sd));
    expect(dcode).toBe('CORRUPT_FILE');
    expect(dmsg).toMatch(/index\.json.*"a" occurs twice/);
    // an index naming a tensor "constructor" that the shard lacks: CORRUPT_FILE, not a lookup on Object.prototype
    fs.writeFileSync(path.join(sd, 'model.safetensors.index.json'), '{"weight_map":{"a":"s1.safetensors","constructor":"s1.safetensors"}}');
    const [ccode, cmsg] = await codeOf(lib.loadSafetensorsDir(sd));
    expect(ccode).toBe('CORRUPT_FILE');
    expect(cmsg).toMatch(/"constructor" to s1\.safetensors, which does not hold it/);
  });
});
