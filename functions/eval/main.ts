/** Serve only the evaluation function (its own container). */
import { serve } from "../server.ts";

if (import.meta.main) await serve({ functions: ["eval"] });
