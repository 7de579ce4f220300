"""The peer a user would pick instead: the same small MLLM (same shapes, same optimizer)
stepped by PyTorch. Prints one JSON line. Used by `deno task bench:train` (CPU) and by the
GPU check (CUDA). Synthetic inputs: the timing depends only on the shapes.

usage: torch_step.py --config '<ModelConfig JSON>' --batch 16 --steps 10 --device cpu|cuda
       torch_step.py --config … --serve   (after warm-up prints {"ready": …}, then times one step
       per "step" line on stdin and prints its milliseconds; the benchmark interleaves these steps
       with its own, so both see the same machine)
       torch_step.py --config … --profile   (steps under torch.profiler: prints the step and the
       time inside its matmul ops, for `deno task bench:profile --torch-python`)
"""
import sys
import argparse, json, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--config", required=True)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--device", default="cpu")
p.add_argument("--threads", type=int, default=0)
p.add_argument("--serve", action="store_true")
p.add_argument("--profile", action="store_true")
a = p.parse_args()
c = json.loads(a.config)
if a.threads:
    torch.set_num_threads(a.threads)
dev = torch.device(a.device)
torch.manual_seed(0)
if dev.type == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32, as tfjs computes

def gelu(x):
    return F.gelu(x, approximate="tanh")

class Block(nn.Module):
    def __init__(s, d, heads, ratio, causal):
        super().__init__()
        s.ln1, s.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        s.qkv, s.o = nn.Linear(d, 3 * d), nn.Linear(d, d)
        s.fc, s.proj = nn.Linear(d, ratio * d), nn.Linear(ratio * d, d)
        s.h, s.causal = heads, causal
    def forward(s, x):
        B, T, C = x.shape
        q, k, v = s.qkv(s.ln1(x)).split(C, 2)
        sh = lambda t: t.view(B, T, s.h, C // s.h).transpose(1, 2)
        att = (sh(q) @ sh(k).transpose(-2, -1)) / math.sqrt(C // s.h)
        if s.causal:
            att = att.masked_fill(torch.triu(torch.ones(T, T, device=x.device, dtype=torch.bool), 1), float("-inf"))
        y = (att.softmax(-1) @ sh(v)).transpose(1, 2).reshape(B, T, C)
        x = x + s.o(y)
        return x + s.proj(gelu(s.fc(s.ln2(x))))

class VLM(nn.Module):
    def __init__(s, c):
        super().__init__()
        ps, dv, d = c["patchSize"], c["visionDim"], c["dim"]
        s.g = c["imageSize"] // ps
        s.ps, s.dv = ps, dv
        s.patch = nn.Linear(ps * ps * 3, dv)
        s.row, s.col = nn.Parameter(torch.randn(s.g, dv) * 0.02), nn.Parameter(torch.randn(s.g, dv) * 0.02)
        s.vblocks = nn.ModuleList([Block(dv, c["visionHeads"], c["mlpRatio"], False) for _ in range(c["visionLayers"])])
        s.vln = nn.LayerNorm(dv)
        s.fc1, s.fc2 = nn.Linear(4 * dv, d), nn.Linear(d, d)
        s.N = (s.g // 2) ** 2
        s.T = s.N + 2 + c["maxTextLen"]
        s.tok = nn.Embedding(c["vocabSize"], d)
        s.pos = nn.Parameter(torch.randn(s.T, d) * 0.01)
        s.blocks = nn.ModuleList([Block(d, c["heads"], c["mlpRatio"], True) for _ in range(c["layers"])])
        s.ln = nn.LayerNorm(d)
    def forward(s, pixels, ids):
        B, g, ps, dv = pixels.shape[0], s.g, s.ps, s.dv
        x = ((pixels - 0.5) * 2).reshape(B * g, ps, g, ps * 3).permute(0, 2, 1, 3).reshape(B, g * g, ps * ps * 3)
        x = s.patch(x) + (s.row[:, None, :] + s.col[None, :, :]).reshape(1, g * g, dv)
        for b in s.vblocks:
            x = b(x)
        x = s.vln(x)
        h = g // 2
        x = x.reshape(B * h, 2, h, 2 * dv).permute(0, 2, 1, 3).reshape(B, h * h, 4 * dv)
        vis = s.fc2(gelu(s.fc1(x)))
        e = s.tok(ids)
        x = torch.cat([e[:, :1], vis, e[:, s.N + 1:]], 1) + s.pos[: ids.shape[1]]
        for b in s.blocks:
            x = b(x)
        return s.ln(x) @ s.tok.weight.t()

m = VLM(c).to(dev)
opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.01)
B, S = a.batch, c["imageSize"]
pixels = torch.rand(B, S, S, 3, device=dev)
ids = torch.randint(0, c["vocabSize"], (B, m.T), device=dev)
labels = torch.randint(0, c["vocabSize"], (B, m.T), device=dev)

def step():
    logits = m(pixels, ids)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    return loss

for _ in range(a.warmup):
    step().item()
if dev.type == "cuda":
    torch.cuda.synchronize()
if a.serve:
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        t0 = time.perf_counter()
        step().item()
        print((time.perf_counter() - t0) * 1000, flush=True)
    sys.exit(0)
if a.profile:
    # the matmul ops' own time on the calling thread (their intra-op threads run inside it), as
    # bench:profile counts our main thread's sgemm time
    from torch.profiler import ProfilerActivity, profile
    GEMM = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_addmm_activation"}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step().item()
        wall = (time.perf_counter() - t0) * 1000 / a.steps
    ops = [(e.key, e.self_cpu_time_total / 1000 / a.steps, e.count / a.steps) for e in prof.key_averages()]
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "stepMs": wall,
                      "gemmMs": sum(ms for k, ms, _ in ops if k in GEMM),
                      "top": [{"op": k, "ms": ms, "calls": n} for k, ms, n in sorted(ops, key=lambda o: -o[1])[:12]]}))
    sys.exit(0)
times = []
for _ in range(a.steps):
    t0 = time.perf_counter()
    step().item()  # .item() waits for the step (CPU and CUDA)
    times.append((time.perf_counter() - t0) * 1000)
ms = sorted(times)[len(times) // 2]  # the median step: this machine drifts
print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "device": a.device, "threads": torch.get_num_threads(),
                  "params": sum(p.numel() for p in m.parameters()), "stepMs": ms, "stepsMs": times, "tokensPerSecond": B * m.T / (ms / 1000)}))
