"""CFM attention: the chunked form is the dense function without an N x N matrix."""

from __future__ import annotations

import pytest
import torch

from mtcp.errors import MtcpError
from mtcp.models.attention import (
    CBAM,
    CoherenceAttention,
    chunked_attention,
    coherence_attention,
    dense_attention,
)
from mtcp.models.coherence import CoherenceFusion


def _qkv(b=2, n=37, cq=6, cv=5, dtype=torch.float64, scale=3.0):
    # scale > 1 makes the softmax peaky, where a wrong max/log-sum-exp would show
    q, k, v = (
        (torch.randn(b, n, c, dtype=dtype) * s).requires_grad_()
        for c, s in ((cq, scale), (cq, scale), (cv, 1.0))
    )
    return q, k, v


def _reference(q, k, v):
    """softmax(Q Kᵀ) V written out, no 1/sqrt(d) scale (as released)."""
    logits = torch.einsum("bic,bjc->bij", q, k)
    return torch.einsum("bij,bjc->bic", torch.softmax(logits, dim=-1), v)


@pytest.mark.parametrize("chunk", [1, 8, 36, 37, 100])
def test_chunked_equals_dense_float64_outputs_and_gradients(chunk):
    q, k, v = _qkv()
    grad = torch.randn(2, 37, 5, dtype=torch.float64)
    ref = _reference(q, k, v)
    ref_grads = torch.autograd.grad(ref, (q, k, v), grad)
    for fn in (dense_attention, lambda a, b, c: chunked_attention(a, b, c, chunk)):
        out = fn(q, k, v)
        grads = torch.autograd.grad(out, (q, k, v), grad)
        assert (out - ref).abs().max() < 1e-10
        for g, r in zip(grads, ref_grads):
            assert (g - r).abs().max() < 1e-10


def test_chunked_attention_passes_gradcheck():
    q, k, v = _qkv(b=1, n=11, cq=3, cv=2, scale=1.0)
    assert torch.autograd.gradcheck(lambda a, b, c: chunked_attention(a, b, c, 4), (q, k, v))


def test_chunked_saves_no_quadratic_tensor_for_backward():
    n = 64
    q, k, v = _qkv(b=2, n=n, cq=4, cv=3, dtype=torch.float32)

    def largest_saved(fn):
        sizes = []

        def pack(t):
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(q, k, v).sum().backward()
        return max(sizes)

    assert largest_saved(dense_attention) >= 2 * n * n  # the dense form keeps softmax(QKᵀ)
    assert largest_saved(lambda a, b, c: chunked_attention(a, b, c, 16)) < 2 * n * 16


def test_dispatch_auto_dense_and_chunked_agree_and_reject_unknown():
    q, k, v = _qkv(n=20)
    outs = [coherence_attention(q, k, v, impl, chunk_size=8) for impl in ("auto", "dense")]
    outs.append(CoherenceAttention("chunked", 3)(q, k, v))
    for out in outs[1:]:
        assert torch.allclose(out, outs[0], atol=1e-12)
    with pytest.raises(MtcpError, match="accepted: auto, dense, chunked"):
        CoherenceAttention("flash")
    with pytest.raises(MtcpError, match="positive"):
        CoherenceAttention("chunked", 0)


def test_chunked_attention_under_bf16_autocast_matches_fp32():
    q, k, v = _qkv(n=40, dtype=torch.float32, scale=1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = coherence_attention(q, k, v, "chunked", chunk_size=16)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.float32
    assert torch.allclose(out.float(), dense_attention(q, k, v), atol=0.1)


def test_cbam_gates_without_residual():
    cbam = CBAM(32, reduction=16)
    x = torch.randn(2, 32, 9, 11)
    y = cbam(x)
    assert y.shape == x.shape
    ratio = y / x  # product of two sigmoid gates, each in (0, 1)
    assert ((ratio > 0) & (ratio < 1)).all()


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_cfm_attends_over_pooled_tokens(factor):
    cfm = CoherenceFusion(16, num_partners=2, reduction=4, stride_factor=factor)
    seen = []
    cfm.attention.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape))
    x = torch.randn(2, 16, 16, 24)
    y = cfm(x, [torch.randn_like(x), torch.randn_like(x)])
    assert y.shape == (2, 16, 16 // factor, 24 // factor)
    assert seen == [torch.Size([2, (16 // factor) * (24 // factor), 32])]  # Q is [B, N, C k]
