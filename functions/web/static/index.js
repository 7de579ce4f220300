import { api, nav } from "./common.js";

nav();
const health = document.getElementById("health");
try {
  const h = await api("/healthz");
  const r = await fetch("/readyz").then((r) => r.json());
  health.textContent = `${h.status}, version ${h.version}; ${r.status}` +
    (r.functions ? ` (functions: ${r.functions.join(", ")})` : "");
} catch (e) {
  health.textContent = String(e.message ?? e);
  health.className = "error";
}
const key = document.getElementById("apikey");
key.value = localStorage.getItem("dvsft.apiKey") ?? "";
document.getElementById("savekey").addEventListener("click", () => {
  if (key.value) localStorage.setItem("dvsft.apiKey", key.value);
  else localStorage.removeItem("dvsft.apiKey");
});
