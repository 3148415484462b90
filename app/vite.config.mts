// The consumer app: built into consumer/static/app/, which Django serves (the shell at /app/).
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/static/app/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "../consumer/static/app",
    emptyOutDir: true,
    target: "es2022",
    assetsDir: "assets",
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
