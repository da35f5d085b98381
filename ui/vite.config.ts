import { defineConfig } from "vite";

// The shell embeds ui/dist and serves it from its own origin, so every asset path is relative.
export default defineConfig({
  base: "./",
  clearScreen: false,
  server: { host: "127.0.0.1", port: 5173, strictPort: true },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2021",
    // The CSP allows no inline script: keep Vite from injecting its preload polyfill.
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
});
