/** Serve only the labeling function (its own container). */
import { serve } from "../server.ts";

if (import.meta.main) await serve({ functions: ["label"] });
