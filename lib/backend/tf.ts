/**
 * The one tfjs import of the project. `@tensorflow/tfjs` (not tfjs-core alone) because its
 * Node build registers the gradients of every op on the same engine the backends use.
 */
import * as tf from "@tensorflow/tfjs";

// production mode: no "install tfjs-node" banner, no debug-only checks
tf.env().set("PROD", true);

export { tf };
