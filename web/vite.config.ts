import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// `npm run build` writes dist/, which the API serves at / (web.dir). `npm run dev` serves the
// client on :5173 with the API's paths proxied to a running `make run-api`.
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: 'dist',
    // livekit-client is one large module; a chunk per vendor keeps the app's own code small.
    chunkSizeWarningLimit: 1024,
    rollupOptions: {
      output: {
        manualChunks(id: string) {
          if (id.includes('node_modules/livekit-client')) return 'livekit';
          if (id.includes('node_modules/react')) return 'react';
          return undefined;
        },
      },
    },
  },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8080',
      '/bbodok-websocket': { target: 'ws://127.0.0.1:8080', ws: true },
    },
  },
});
