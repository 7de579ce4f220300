/** Serve only the training function (its own container). */
import { serve } from "../server.ts";

if (import.meta.main) await serve({ functions: ["train"] });
