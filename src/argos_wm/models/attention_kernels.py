"""Scaled dot-product attention with grouped-query heads and optional logit soft-capping.

Three interchangeable kernels compute the same thing:
- `sdpa`: PyTorch's fused `scaled_dot_product_attention` (used when soft-capping is off);
- `flex`: `flex_attention` with the soft-cap as a `score_mod`, compiled, so the score matrix is never materialised
  (the default on CUDA when soft-capping is on and the scores span at least one of its 128 x 128 tiles);
- `eager`: explicit scores, the fastest correct path on CPU when soft-capping is on, and on CUDA for score matrices
  smaller than one flex tile (temporal layers: a query frame against a window of a few frames). There flex would pad
  every row to a tile, and each new key length of a KV-cached rollout would compile a new kernel.
"""

import torch
import torch.nn.functional as F


ATTENTION_BACKENDS = ("auto", "eager", "sdpa", "flex")
FLEX_TILE = 128  # flex attention's default query and key block size
_compiled_flex_attention = None


def eager_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, softcap: float | None
) -> torch.Tensor:
    """Reference kernel. `query` `[b, H, Lq, d]`, `key`/`value` `[b, Hkv, Lk, d]`, `mask` `[b or 1, Lq, Lk]` (True = attend).

    The scores are materialised, so every pass over them counts: the scale `d^-0.5` (and `1 / softcap`) is folded into
    the query, which is no larger than the scores, the tanh runs in place, and the softmax accumulates in float32
    without a float32 copy of the scores."""
    batch, num_heads, query_length, head_dim = query.shape
    num_kv_heads = key.shape[1]
    # [b, H, Lq, d] -> [b, Hkv, H/Hkv, Lq, d]: each group of query heads shares one key/value head.
    query = query.reshape(batch, num_kv_heads, num_heads // num_kv_heads, query_length, head_dim)
    scale = head_dim**-0.5 if softcap is None else head_dim**-0.5 / softcap
    scores = (query * scale) @ key.unsqueeze(2).transpose(-1, -2)  # [b, Hkv, G, Lq, Lk]
    if softcap is not None:
        scores = scores.tanh_() * softcap  # softcap * tanh(s / softcap); bmm's backward does not need its output
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None], float("-inf"))
    probs = scores.softmax(dim=-1, dtype=torch.float32).to(value.dtype)
    output = probs @ value.unsqueeze(2)  # [b, Hkv, G, Lq, d]
    return output.reshape(batch, num_heads, query_length, head_dim)


def flex_attention_kernel(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, softcap: float | None
) -> torch.Tensor:
    """`flex_attention` with the soft-cap as a score modification and the mask as a block mask; same layout as eager."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    global _compiled_flex_attention
    if query.is_cuda and _compiled_flex_attention is None:
        _compiled_flex_attention = torch.compile(flex_attention, dynamic=False)
    kernel = _compiled_flex_attention if query.is_cuda else flex_attention

    def softcap_scores(score, batch, head, query_index, key_index):
        return softcap * torch.tanh(score / softcap)

    block_mask = None
    if mask is not None:
        per_batch = mask.shape[0] > 1

        def mask_mod(batch, head, query_index, key_index):
            return mask[batch if per_batch else 0, query_index, key_index]

        block_mask = create_block_mask(
            mask_mod, mask.shape[0] if per_batch else None, None, query.shape[2], key.shape[2], device=query.device
        )
    return kernel(
        query,
        key,
        value,
        score_mod=softcap_scores if softcap is not None else None,
        block_mask=block_mask,
        enable_gqa=key.shape[1] != query.shape[1],
    )


def sdpa_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, softcap: float | None
) -> torch.Tensor:
    """PyTorch's fused kernel; it has no soft-capping, so `softcap` must be None."""
    if softcap is not None:
        raise ValueError(f"The 'sdpa' attention backend cannot soft-cap logits; got attention_logit_softcap={softcap}.")
    attn_mask = mask[:, None] if mask is not None else None
    return F.scaled_dot_product_attention(
        query, key, value, attn_mask=attn_mask, enable_gqa=key.shape[1] != query.shape[1]
    )


def auto_attention_backend(device_type: str, query_length: int, key_length: int, softcap: float | None) -> str:
    """The kernel `"auto"` picks: SDPA without soft-capping; with it, flex on CUDA for score matrices of at least one
    flex tile, eager otherwise."""
    if softcap is None:
        return "sdpa"
    if device_type == "cuda" and query_length * key_length >= FLEX_TILE * FLEX_TILE:
        return "flex"
    return "eager"


def dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    softcap: float | None,
    backend: str = "auto",
) -> torch.Tensor:
    """Dispatches to a kernel. Returns `[b, H, Lq, d]`."""
    if backend == "auto":
        backend = auto_attention_backend(query.device.type, query.shape[2], key.shape[2], softcap)
    if backend == "sdpa":
        return sdpa_attention(query, key, value, mask, softcap)
    if backend == "flex":
        return flex_attention_kernel(query, key, value, mask, softcap)
    return eager_attention(query, key, value, mask, softcap)
