"""CBAM and the memory-exact attention of the Coherence Fusion Module (SPEC §3.3).

The CFM attends with 512-wide queries over every token of a 1/4-resolution map
(N = 19,200 at 480x640), so the dense form ``softmax(Q Kᵀ) V`` needs an N x N matrix per image,
and its backward keeps that matrix (11.5 GiB for batch 2 in fp32, SPEC §8). The chunked form
here computes exactly the same function one block of queries at a time; its backward recomputes
each block's probabilities (same kernels, same values) instead of storing them, so memory grows
with ``N * chunk_size`` instead of ``N²``, for one extra ``Q Kᵀ`` product in the backward.

Token-major layout throughout: ``[B, N, C]`` (as ``scaled_dot_product_attention`` without heads),
so a fused kernel can replace :func:`coherence_attention` without touching the callers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtcp.errors import MtcpError

ATTENTION_IMPLS = ("auto", "dense", "chunked")
# Elements of one [B, chunk, N] block when the chunk size is chosen automatically. About three
# such fp32 blocks live in the backward. CUDA: chunks of 4096 at B=2, N=19,200 (bf16 fwd+bwd
# 13.7 ms / 1.55 GiB on an H100 against 9.7 ms / 5.8 GiB dense, SPEC §8). CPU: 64 MiB blocks;
# the time hardly depends on the chunk there (the matmuls run at the same rate), memory does.
CHUNK_BUDGET = {"cuda": 2 * 4096 * 19_200, "cpu": 2**24}
CHUNK_MULTIPLE = 64
#: BatchNorm momentum of the CBAM spatial gates in the released network
RELEASE_CBAM_MOMENTUM = 0.01


def check_attention_impl(impl: str) -> None:
    """Raise :class:`MtcpError` unless ``impl`` is one of :data:`ATTENTION_IMPLS`."""
    if impl not in ATTENTION_IMPLS:
        raise MtcpError(f"unknown attention_impl {impl!r}; accepted: {', '.join(ATTENTION_IMPLS)}")


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel gate, then spatial gate; no residual.

    Channel gate: a shared MLP ``C -> C/r -> C`` on the average- and max-pooled features,
    summed, sigmoid. Spatial gate: a 7x7 conv on ``[max, mean]`` over channels, BN, sigmoid.

    ``bn_momentum``: momentum of the spatial gate's BatchNorm running statistics (training
    only); the release uses 0.01 (:data:`RELEASE_CBAM_MOMENTUM`), PyTorch's default is 0.1.

    Shapes: ``[B, C, h, w] -> [B, C, h, w]``.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        kernel_size: int = 7,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(1, momentum=bn_momentum),
        )

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))])  # [2B, C]
        gate = self.mlp(pooled).view(2, b, c).sum(dim=0)  # shared MLP on avg and max
        x = x * torch.sigmoid(gate).view(b, c, 1, 1)
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


def auto_chunk_size(batch: int, tokens: int, device_type: str) -> int:
    """Query chunk for ``batch`` images of ``tokens`` tokens on ``device_type``: the largest
    multiple of 64 whose ``[batch, chunk, tokens]`` block fits :data:`CHUNK_BUDGET`."""
    budget = CHUNK_BUDGET.get(device_type, CHUNK_BUDGET["cuda"])
    return max(CHUNK_MULTIPLE, budget // max(batch * tokens, 1) // CHUNK_MULTIPLE * CHUNK_MULTIPLE)


def dense_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``softmax(q kᵀ) v`` with the full ``[B, N, N]`` matrix (no ``1/sqrt(d)`` scale).

    Shapes: q, k ``[B, N, Cq]``, v ``[B, N, Cv]`` -> ``[B, N, Cv]``.
    """
    return torch.matmul(torch.softmax(torch.matmul(q, k.transpose(1, 2)), dim=-1), v)


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    # softmax and gradient sums in at least fp32 (bf16/fp16 inputs); fp64 stays fp64
    return torch.promote_types(dtype, torch.float32)


def _chunk_probs(q_chunk: Tensor, kt: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``softmax(q_chunk kᵀ)`` ``[B, n, N]`` in ``dtype`` (default: the accumulation dtype).

    The softmax always computes in at least fp32; asking for the input dtype directly (the
    forward in bf16) saves writing and re-reading an fp32 block. ``dtype=`` is only passed when
    it differs from the input's, as the CPU kernel is twice as slow with it.
    """
    logits = torch.matmul(q_chunk, kt)
    dtype = dtype or _accumulation_dtype(kt.dtype)
    if dtype == logits.dtype:
        return torch.softmax(logits, dim=-1)
    return torch.softmax(logits, dim=-1, dtype=dtype)


class _ChunkedAttention(torch.autograd.Function):
    """Exact ``softmax(q kᵀ) v`` over query chunks; backward recomputes each chunk.

    Saved for backward: q, k and v only — never a probability matrix. The backward recomputes
    each chunk's probabilities with the same kernels as the forward (bitwise the same values in
    fp32 and fp64; in bf16/fp16 the forward rounds the fp32-computed softmax to the input dtype in
    the same kernel, which equals the backward's fp32 values cast down except for a rare one-ulp
    difference), so peak extra memory is about three ``[B, chunk, N]`` blocks. Matmuls run in the
    input dtype, softmax and the sums over chunks in at least fp32.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, chunk_size: int) -> Tensor:  # type: ignore[override]
        kt = k.transpose(1, 2)
        outs = [
            torch.matmul(_chunk_probs(q[:, i : i + chunk_size], kt, v.dtype), v)
            for i in range(0, q.shape[1], chunk_size)
        ]
        ctx.save_for_backward(q, k, v)
        ctx.chunk_size = chunk_size
        return torch.cat(outs, dim=1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        q, k, v = ctx.saved_tensors
        chunk = ctx.chunk_size
        acc = _accumulation_dtype(q.dtype)
        kt, vt = k.transpose(1, 2), v.transpose(1, 2)
        dq = torch.empty_like(q)
        dk = torch.zeros_like(k, dtype=acc)
        dv = torch.zeros_like(v, dtype=acc)
        for i in range(0, q.shape[1], chunk):
            q_c, do_c = q[:, i : i + chunk], grad_out[:, i : i + chunk]
            probs = _chunk_probs(q_c, kt)
            dv += torch.matmul(probs.to(v.dtype).transpose(1, 2), do_c)
            dprobs = torch.matmul(do_c, vt).to(acc)
            # fused softmax backward: probs * (dprobs - rowsum(dprobs * probs))
            dlogits = torch._softmax_backward_data(dprobs, probs, -1, acc).to(q.dtype)
            del probs, dprobs
            dq[:, i : i + chunk] = torch.matmul(dlogits, k)
            dk += torch.matmul(dlogits.transpose(1, 2), q_c)
        return dq, dk.to(k.dtype), dv.to(v.dtype), None


def chunked_attention(q: Tensor, k: Tensor, v: Tensor, chunk_size: int | None = None) -> Tensor:
    """Same function as :func:`dense_attention`, memory ``O(B * chunk_size * N)`` incl. backward.

    ``chunk_size=None`` picks :func:`auto_chunk_size` for the batch, token count and device.

    Shapes: q, k ``[B, N, Cq]``, v ``[B, N, Cv]`` -> ``[B, N, Cv]``.
    """
    if chunk_size is None:
        chunk_size = auto_chunk_size(q.shape[0], q.shape[1], q.device.type)
    return _ChunkedAttention.apply(q, k, v, int(chunk_size))


def coherence_attention(
    q: Tensor, k: Tensor, v: Tensor, impl: str = "auto", chunk_size: int | None = None
) -> Tensor:
    """Dispatch ``softmax(q kᵀ) v`` to the dense or the chunked implementation.

    ``impl="auto"`` uses the dense form while ``N <= chunk_size`` (same memory bound, no
    recomputation) and the chunked form above; ``chunk_size=None`` picks
    :func:`auto_chunk_size`. Under autocast the inputs are cast to the autocast dtype once, so
    forward and backward of the chunked form agree on precision.
    """
    device_type = q.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    if chunk_size is None:
        chunk_size = auto_chunk_size(q.shape[0], q.shape[1], device_type)
    if impl == "dense" or (impl == "auto" and q.shape[1] <= chunk_size):
        return dense_attention(q, k, v)
    check_attention_impl(impl)
    with torch.autocast(device_type, enabled=False):
        return chunked_attention(q, k, v, chunk_size)


class CoherenceAttention(nn.Module):
    """Parameter-free module around :func:`coherence_attention` (a hook/swap point).

    Shapes: q, k ``[B, N, Cq]``, v ``[B, N, Cv]`` -> ``[B, N, Cv]``.
    """

    def __init__(self, impl: str = "auto", chunk_size: int | None = None) -> None:
        super().__init__()
        check_attention_impl(impl)
        if chunk_size is not None and chunk_size < 1:
            raise MtcpError(
                f"attention_chunk must be a positive integer or None (automatic), got {chunk_size}"
            )
        self.impl = impl
        self.chunk_size = None if chunk_size is None else int(chunk_size)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return coherence_attention(q, k, v, self.impl, self.chunk_size)

    def extra_repr(self) -> str:
        return f"impl={self.impl!r}, chunk_size={self.chunk_size}"
