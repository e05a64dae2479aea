#!/usr/bin/env node
// `npm test`: runs the native test program (C++, no Node) and the jest suite, then
// prints one line "N passed, N failed, N skipped" over both (CI reads that line).
// The native program comes from the cmake-js build; after a node-gyp build (which
// makes only the addon) it is built CPU-only into build-native-tests/ first.
// Flags: --native-only, --js-only; other arguments go to jest.
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.join(__dirname, '..');
const argv = process.argv.slice(2);
const nativeOnly = argv.includes('--native-only');
const jsOnly = argv.includes('--js-only');
const jestArgs = argv.filter((a) => a !== '--native-only' && a !== '--js-only');
const totals = { passed: 0, failed: 0, skipped: 0 };

function run(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { cwd: root, encoding: 'utf8', ...opts });
}

function nativeProgram() {
  const exe = path.join(root, 'build', 'Release', 'l2c_native_tests');
  if (fs.existsSync(exe)) return exe;
  const dir = path.join(root, 'build-native-tests');
  console.log('native tests: no cmake-js build found; building them CPU-only in build-native-tests/');
  const jobs = String(os.cpus().length);
  let r = run('cmake', ['-S', root, '-B', dir, '-DLLM2CLIP_CUDA=off', '-DCMAKE_BUILD_TYPE=Release'], { stdio: 'inherit' });
  if (r.status === 0) r = run('cmake', ['--build', dir, '--target', 'l2c_native_tests', '-j', jobs], { stdio: 'inherit' });
  return r.status === 0 ? path.join(dir, 'Release', 'l2c_native_tests') : null;
}

function runNative() {
  const exe = nativeProgram();
  if (!exe) {
    console.log('native tests: build failed');
    totals.failed++;
    return;
  }
  const r = run(exe, [], { stdio: ['ignore', 'pipe', 'inherit'] });
  process.stdout.write(r.stdout || '');
  const m = /(\d+) passed, (\d+) failed, (\d+) skipped/.exec(r.stdout || '');
  if (!m) {
    console.log(`native tests: no summary (exit ${r.status}, signal ${r.signal})`);
    totals.failed++;
    return;
  }
  totals.passed += +m[1];
  totals.failed += +m[2];
  totals.skipped += +m[3];
  if (r.status !== 0 && +m[2] === 0) totals.failed++;  // crashed after its summary
}

function runJest() {
  const out = path.join(os.tmpdir(), `llm2clip-jest-${process.pid}.json`);
  const jest = require.resolve('jest/bin/jest');
  const r = run(process.execPath, ['--expose-gc', jest, '--json', `--outputFile=${out}`, ...jestArgs], { stdio: 'inherit' });
  let report = null;
  try {
    report = JSON.parse(fs.readFileSync(out, 'utf8'));
    fs.unlinkSync(out);
  } catch {
    /* jest died before writing its report */
  }
  if (!report) {
    console.log(`jest: no report (exit ${r.status})`);
    totals.failed++;
    return;
  }
  totals.passed += report.numPassedTests;
  totals.failed += report.numFailedTests + (report.numRuntimeErrorTestSuites || 0);
  totals.skipped += report.numPendingTests + report.numTodoTests;
  if (report.numTotalTests === 0) {
    console.log('jest: no tests ran');
    totals.failed++;
  }
}

if (!jsOnly) runNative();
if (!nativeOnly) runJest();
console.log(`\n${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(totals.failed ? 1 : 0);
