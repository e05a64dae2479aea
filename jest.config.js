// Jest runs the TypeScript tests through ts-jest (TypeScript is pinned to 5.x, which
// ts-jest supports). Tests import src/ directly, so they are type-checked against it.
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'test/tsconfig.json' }] },
  testTimeout: 60000,
};
