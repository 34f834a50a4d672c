"""The CFM attention in isolation: dense, chunked and SDPA forms, and the matmul roofline."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mtcp.benchmark.timing import PeakMemory, summarise_runs, time_runs
from mtcp.errors import MtcpError


def matmul_tflops(device: str, dtype: torch.dtype = torch.bfloat16, n: int = 8192) -> float:
    """Measured dense ``n x n @ n x n`` matmul rate in TFLOP/s (median of 10 after warm-up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    runs = time_runs(lambda: torch.matmul(a, b), device, warmup=3, repeats=10)
    return 2 * n**3 / (statistics.median(runs["ms"]) / 1000) / 1e12


def attention_benchmark(
    impl: str,
    batch: int = 2,
    tokens: int = 19_200,
    query_channels: int = 512,
    value_channels: int = 256,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    backward: bool = True,
    chunk_size: int | None = None,
    warmup: int = 1,
    repeats: int = 3,
) -> dict[str, Any]:
    """Time and peak memory of one CFM attention ``softmax(Q Kᵀ) V`` (no scale).

    ``impl``: ``"dense"``, ``"chunked"`` (mtcp's exact recomputing form, ``chunk_size=None`` =
    automatic) or ``"sdpa"`` (``scaled_dot_product_attention``, scale 1). The memory figure
    includes the inputs (and their gradients with ``backward``).
    """
    from mtcp.models.attention import auto_chunk_size, chunked_attention, dense_attention

    def sdpa(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=1.0)
        return out[:, 0]

    fns: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
        "dense": dense_attention,
        "chunked": lambda q, k, v: chunked_attention(q, k, v, chunk_size),
        "sdpa": sdpa,
    }
    if impl not in fns:
        raise MtcpError(f"attention impl must be one of {sorted(fns)}, got {impl!r}")
    with PeakMemory(device) as mem:
        shapes = [(query_channels, 0.05), (query_channels, 0.05), (value_channels, 1.0)]
        q, k, v = (
            (torch.randn(batch, tokens, c, device=device) * s).to(dtype).requires_grad_(backward)
            for c, s in shapes
        )
        grad = torch.randn(batch, tokens, value_channels, device=device, dtype=dtype)

        def run() -> None:
            if backward:
                fns[impl](q, k, v).backward(grad)
                q.grad = k.grad = v.grad = None
            else:
                with torch.no_grad():
                    fns[impl](q, k, v)

        runs = time_runs(run, device, warmup, repeats)
    out = {
        "impl": impl,
        "batch": batch,
        "tokens": tokens,
        "dtype": str(dtype).removeprefix("torch."),
        "backward": backward,
        **summarise_runs(runs, 1),
        "peak_memory_gib": mem.gib,
        "added_memory_gib": mem.added_gib,  # inputs, gradients and the op's working memory
        "memory": mem.kind,
    }
    if impl == "chunked":
        out["chunk_size"] = chunk_size or auto_chunk_size(batch, tokens, device)
    for key in ("img_per_s", "ms_per_image"):
        out.pop(key)
    return out
