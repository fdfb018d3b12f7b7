"""The study's operations and their variants, declared without importing torch."""

from __future__ import annotations

from ..variants import register

LOSS = register(
    "meanflow",
    "meanflow_loss",
    {
        "naive": "separate forward with grad, then torch.func.jvp on the r != t samples (two model calls, host sync)",
        "primal_reuse": "torch.func.jvp on the r != t samples serves as their prediction; plain forward on the rest",
        "full_batch": (
            "one torch.func.jvp over the whole batch (tangent on t only moves h for r = t); no branch, no sync"
        ),
        "forward_ad": "as full_batch with torch.autograd.forward_ad dual tensors instead of torch.func.jvp",
        "custom_jvp": (
            "as forward_ad with hand-written JVP rules: GroupNorm reusing its forward "
            "statistics, conv skipping the zero weight tangent"
        ),
        "stacked": (
            "hybrid: detached JVP by an explicit tangent pass with primal and tangent "
            "stacked along the batch (one conv/Linear call of batch 2B), plus a normal forward"
        ),
        "cuda_graph": "hybrid: detached full-batch JVP replayed from a CUDA graph plus a normal forward (CUDA only)",
        "compiled": "hybrid: detached full-batch JVP through torch.compile plus a normal forward",
        "bf16": "as full_batch under bfloat16 autocast, with scaled_dot_product_attention where forward AD supports it",
        "jax": "JAX/equinox: jax.jvp under jit, gradient through the JVP's primal output",
    },
    # The default stays full_batch: it works for any model, where stacked is written for
    # perflab's UNet and DiT only. The reports compare naive (the seed's loss) with stacked, the
    # best PyTorch variant of the study (docs/meanflow.md).
    default="full_batch",
    baseline="naive",
    optimised="stacked",
)
"""`meanflow_loss`: the MeanFlow loss and its parameter gradients, per variant."""

TORCH_VARIANTS = tuple(v for v in LOSS.names if v != "jax")
"""The variants `perflab.meanflow.torch.MeanFlowLoss` accepts."""

SIZES = ("cpu", "gpu")
"""Model sizes: ``"cpu"`` fits a 2-core benchmark, ``"gpu"`` is CIFAR-size (32x32, batch 64)."""

MODELS = ("unet", "dit")
"""Denoiser architectures, the same in PyTorch and equinox."""
