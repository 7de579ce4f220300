/**
 * dvsft: serve every function in one process, or run the quick-start demo.
 *
 *   deno task serve          # HTTP API on PORT (default 8000), docs at /docs
 *   deno task demo           # render → label (exact and OCR) → overlays, no server
 */
import { serve } from "./functions/server.ts";
import { demo } from "./functions/demo.ts";

if (import.meta.main) {
  const [command = "serve", ...rest] = Deno.args;
  switch (command) {
    case "serve":
      await serve();
      break;
    case "demo":
      await demo(rest[0]);
      break;
    default:
      console.error(`Unknown command '${command}'. Use: serve | demo [outDir]`);
      Deno.exit(2);
  }
}
