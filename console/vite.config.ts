import { defineConfig } from 'vite';

// The lead's Rust side embeds console/dist with these exact file names: no content hashes, one
// JS file, one CSS file, no source maps. TALLY_URL is the `tally serve` that `npm run dev` and
// `npm run preview` forward the API to.
const api = process.env.TALLY_URL ?? 'http://127.0.0.1:8080';
const proxy = { '/v1': api, '/metrics': api, '/openapi.json': api };

export default defineConfig({
  base: '/console/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    cssCodeSplit: false,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    rolldownOptions: {
      output: {
        entryFileNames: 'assets/console.js',
        chunkFileNames: 'assets/console-[name].js',
        assetFileNames: (info) => (info.names.some((n) => n.endsWith('.css')) ? 'assets/console.css' : 'assets/[name][extname]'),
        codeSplitting: false,
      },
    },
  },
  server: { proxy },
  preview: { proxy },
});
