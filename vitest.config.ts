import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    setupFiles: ['test/helpers/on-failure.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // End-to-end files start real processes; two cores run them one file at a time.
    fileParallelism: false,
    reporters: ['default'],
  },
});
