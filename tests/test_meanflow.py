"""Study 5: every MeanFlowLoss variant against the naive one, JVPs against finite differences,
PyTorch against JAX with copied weights, model-call counts, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import perflab.meanflow as mf
from perflab import variants

# torch is the optional dependency (the ``torch`` extra); the study's own modules are imported
# plainly, so that a broken perflab.meanflow.torch or .jax fails here instead of skipping.
torch = pytest.importorskip("torch", reason="the PyTorch half of the study needs torch (the 'torch' extra)")
from torch.autograd import forward_ad as fwAD  # noqa: E402

import perflab.meanflow.jax as mj  # noqa: E402
import perflab.meanflow.torch as mt  # noqa: E402
from perflab.meanflow.convert import torch_to_equinox  # noqa: E402

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (cuda_graph captures CUDA graphs)")
EAGER = ["naive", "primal_reuse", "full_batch", "forward_ad", "custom_jvp", "stacked", "bf16"]
BATCH = 2


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _problem(model, dtype=torch.float64, batch=BATCH, ratio=0.5, seed=0):
    net = mt.make_model(model, dtype=dtype, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    config, _ = mf.model_config(model)
    x = torch.randn(batch, config.channels, config.image_size, config.image_size, generator=gen, dtype=dtype)
    t, r, e = mt.MeanFlowLoss(net, ratio=ratio).sample(x, gen)
    return net, x, t, r, e


def _loss_and_grads(net, variant, x, t, r, e, **kw):
    net.zero_grad(set_to_none=True)
    loss = mt.MeanFlowLoss(net, variant=variant, p=0.5, **kw).loss(x, t, r, e)
    loss.backward()
    return loss.detach(), torch.cat([p.grad.flatten() for p in net.parameters()])


# compiled runs on the DiT only (not collected for the UNet, rather than skipped): one compiled
# model keeps the module fast, and the DiT exercises the same code path.
@pytest.mark.parametrize(
    "model,variant",
    [
        (m, v)
        for v in [v for v in EAGER if v != "naive"] + ["compiled"]
        for m in ("unet", "dit")
        if (m, v) != ("unet", "compiled")
    ],
)
def test_variant_matches_naive(model, variant):
    dtype = torch.float32 if variant in ("bf16", "compiled") else torch.float64
    net, x, t, r, e = _problem(model, dtype)
    ref_loss, ref_grads = _loss_and_grads(net, "naive", x, t, r, e)
    kw = {"compile_backend": "aot_eager"} if variant == "compiled" else {}
    loss, grads = _loss_and_grads(net, variant, x, t, r, e, **kw)
    if variant == "bf16":
        # bfloat16 keeps 8 bits of mantissa: compare to ~1e-2 and by direction.
        assert abs(loss - ref_loss) <= 2e-2 * abs(ref_loss)
        assert torch.nn.functional.cosine_similarity(grads, ref_grads, dim=0) > 0.99
    else:
        tol = 1e-5 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(loss, ref_loss, rtol=tol, atol=tol)
        torch.testing.assert_close(grads, ref_grads, rtol=tol, atol=tol * float(ref_grads.abs().max()))


def _count_calls(net):
    counter = {"n": 0}
    forward = net.forward

    def counted(*args, **kwargs):
        counter["n"] += 1
        return forward(*args, **kwargs)

    net.forward = counted
    return counter


@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("variant", EAGER)
def test_model_calls_per_variant(variant, ratio):
    net, x, t, r, e = _problem("dit", torch.float32, ratio=ratio)
    counter = _count_calls(net)
    mt.MeanFlowLoss(net, variant=variant).loss(x, t, r, e).backward()
    some, all_ = ratio > 0, ratio == 1.0
    expected = {
        "naive": 1 + some,  # forward, plus the JVP when any r != t
        "primal_reuse": some + (not all_),  # JVP on r != t, forward on the rest
    }.get(variant, 1)
    assert counter["n"] == expected


def _u(net, z, t, r):
    return net(z, t, t - r)


@pytest.mark.parametrize("model", ["unet", "dit"])
@pytest.mark.parametrize("variant", ["full_batch", "forward_ad", "custom_jvp", "stacked"])
def test_dudt_matches_central_differences(model, variant):
    net, x, t, r, e = _problem(model)
    tb = t[:, None, None, None]
    z, v = (1 - tb) * x + tb * e, e - x
    dudt = mt.MeanFlowLoss(net, variant=variant).jvp(z, t, r, v)
    step = 1e-5
    with torch.no_grad():
        fd = (_u(net, z + step * v, t + step, r) - _u(net, z - step * v, t - step, r)) / (2 * step)
        # The same difference with h = t - r held fixed: the coupling must show.
        h = t - r
        uncoupled = (net(z + step * v, t + step, h) - net(z - step * v, t - step, h)) / (2 * step)
    torch.testing.assert_close(dudt, fd, rtol=1e-5, atol=1e-6 * float(fd.abs().max()))
    assert (fd - uncoupled).abs().max() > 1e-3 * fd.abs().max()


def test_jax_dudt_matches_central_differences():
    # The DiT: op-by-op JAX on the UNet takes minutes here, and XLA compiles it just as slowly.
    net = mj.make_model("dit", key=jax.random.key(0), dtype=jnp.float64)
    k = jax.random.split(jax.random.key(1), 3)
    z, v = jax.random.normal(k[0], (2, 3, 16, 16)), jax.random.normal(k[1], (2, 3, 16, 16))
    t = jnp.array([0.7, 0.4])
    r = jnp.array([0.2, 0.4])
    _, dudt = mj.jvp(net, z, t, r, v)
    u = jax.vmap(lambda z, t, r: net(z, t, t - r))
    step = 1e-5
    fd = (u(z + step * v, t + step, r) - u(z - step * v, t - step, r)) / (2 * step)
    np.testing.assert_allclose(dudt, fd, rtol=1e-5, atol=1e-6 * float(jnp.abs(fd).max()))


@pytest.mark.parametrize("model", ["unet", "dit"])
def test_jax_matches_torch_with_copied_weights(model):
    net, x, t, r, e = _problem(model)
    enet = torch_to_equinox(net, mj.make_model(model, key=jax.random.key(0)), dtype=jnp.float64)
    tb = t[:, None, None, None]
    u, u_tgt = mt.MeanFlowLoss(net, variant="full_batch")._loss_full_batch((1 - tb) * x + tb * e, t, r, e - x)
    ju, ju_tgt = mj.target(enet, *(jnp.asarray(a.numpy()) for a in (x, t, r, e)))
    np.testing.assert_allclose(ju, u.detach().numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ju_tgt, u_tgt.numpy(), rtol=1e-9, atol=1e-9)
    loss, grads = _loss_and_grads(net, "full_batch", x, t, r, e)
    jx = tuple(jnp.asarray(a.numpy()) for a in (x, t, r, e))
    jloss, jgrads = eqx_value_and_grad(enet, jx)
    np.testing.assert_allclose(float(jloss), float(loss), rtol=1e-10)
    first = "conv_in" if model == "unet" else "patch_embed"
    np.testing.assert_allclose(
        getattr(jgrads, first).weight, getattr(net, first).weight.grad.numpy(), rtol=1e-8, atol=1e-12
    )


def eqx_value_and_grad(enet, args):
    import equinox as eqx

    return eqx.filter_value_and_grad(lambda m: mj.meanflow_loss(m, *args, p=0.5))(enet)


def test_weight_copy_rejects_other_architectures():
    net = mt.make_model("dit", dtype=torch.float64)
    with pytest.raises(KeyError, match="no parameter"):
        torch_to_equinox(net, mj.make_model("unet", key=jax.random.key(0)))


def _count_ops(fn, names):
    from torch.profiler import profile

    with profile() as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key in names)


def test_custom_jvp_convolves_once_per_tangent():
    net, x, t, r, e = _problem("unet", torch.float32)
    tb = t[:, None, None, None]
    z, v = (1 - tb) * x + tb * e, e - x
    convs = {"aten::convolution"}
    n_fwd = _count_ops(lambda: mt.MeanFlowLoss(net).forward(z, t, r), convs)
    n_ad = _count_ops(lambda: mt.MeanFlowLoss(net, variant="forward_ad").jvp(z, t, r, v), convs)
    n_custom = _count_ops(lambda: mt.MeanFlowLoss(net, variant="custom_jvp").jvp(z, t, r, v), convs)
    assert n_ad == 3 * n_fwd  # primal, conv(x_t, w) and conv(x, 0) for the absent weight tangent
    assert n_custom == 2 * n_fwd


def test_stacked_convolves_once_on_the_stacked_batch():
    from torch.profiler import profile

    net, x, t, r, e = _problem("unet", torch.float32)
    tb = t[:, None, None, None]
    z, v = (1 - tb) * x + tb * e, e - x
    n_fwd = _count_ops(lambda: mt.MeanFlowLoss(net).forward(z, t, r), {"aten::convolution"})
    with profile(record_shapes=True) as prof:
        mt.MeanFlowLoss(net, variant="stacked").jvp(z, t, r, v)
    convs = [e for e in prof.events() if e.name == "aten::convolution"]
    assert len(convs) == n_fwd
    assert {ev.input_shapes[0][0] for ev in convs} == {2 * BATCH}
    # The explicit pass never enters forward AD.
    assert not any("forward_ad" in ev.name or ev.name == "aten::_fw_primal" for ev in prof.events())


@pytest.mark.parametrize("model", ["unet", "dit"])
def test_stacked_value_is_the_forward(model):
    net, x, t, r, e = _problem(model)
    u, _ = mt.stacked_jvp(net, x, t, t - r, e)
    with torch.no_grad():
        torch.testing.assert_close(u, net(x, t, t - r), rtol=1e-12, atol=1e-12)


def test_stacked_rejects_bad_input():
    net, x, t, r, e = _problem("unet")
    with pytest.raises(ValueError, match="tz must have z's shape"):
        mt.stacked_jvp(net, x, t, t - r, e[:, :2])
    with pytest.raises(TypeError, match="net must be a perflab.meanflow.torch UNet or DiT"):
        mt.stacked_jvp(torch.nn.Identity(), x, t, t - r, e)
    with pytest.raises(TypeError, match="variant='stacked'.*UNet and DiT.*Identity"):
        mt.MeanFlowLoss(torch.nn.Identity(), variant="stacked")


@pytest.mark.parametrize("impl", ["fused", "decomposed"])
def test_group_norm_implementations_agree_in_value_jvp_and_grad(impl):
    gen = torch.Generator().manual_seed(0)
    norm = mt.GroupNorm(4, 8).double()
    with torch.no_grad():
        norm.weight.normal_(generator=gen)
        norm.bias.normal_(generator=gen)
    x, tx = (torch.randn(3, 8, 5, 5, generator=gen, dtype=torch.float64) for _ in range(2))
    tw, tb = torch.randn(8, generator=gen, dtype=torch.float64), torch.randn(8, generator=gen, dtype=torch.float64)

    def run(name):
        with mt.implementation(group_norm=name), fwAD.dual_level():
            out = torch.nn.functional.group_norm  # noqa: F841  (the module reads the switch)
            w = fwAD.make_dual(norm.weight.detach(), tw)
            b = fwAD.make_dual(norm.bias.detach(), tb)
            saved = norm.weight, norm.bias
            del norm.weight, norm.bias
            norm.weight, norm.bias = w, b
            try:
                y = fwAD.unpack_dual(norm(fwAD.make_dual(x, tx)))
            finally:
                del norm.weight, norm.bias
                norm.weight, norm.bias = saved
        xg = x.clone().requires_grad_()
        with mt.implementation(group_norm=name):
            (norm(xg) * tx).sum().backward()
        grads = (xg.grad, norm.weight.grad.clone(), norm.bias.grad.clone())
        norm.zero_grad(set_to_none=True)
        return y.primal, y.tangent, grads

    ref, got = run("builtin"), run(impl)
    torch.testing.assert_close(got[0], ref[0])
    torch.testing.assert_close(got[1], ref[1])
    for a, b in zip(got[2], ref[2]):
        torch.testing.assert_close(a, b)


# -- bad input ----------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    net, x, t, r, e = _problem("dit", torch.float32)
    with pytest.raises(ValueError, match="ratio"):
        mt.MeanFlowLoss(net, ratio=1.5)
    with pytest.raises(ValueError, match="ratio"):
        mt.MeanFlowLoss(net, ratio=-0.1)
    with pytest.raises(ValueError, match="variant='fast'"):
        mt.MeanFlowLoss(net, variant="fast")
    with pytest.raises(ValueError, match="JAX loss"):
        mt.MeanFlowLoss(net, variant="jax")
    loss = mt.MeanFlowLoss(net)
    with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
        loss.loss(x, t[:1], r, e)
    with pytest.raises(ValueError, match="e must have x's shape"):
        loss.loss(x, t, r, e[:, :2])
    with pytest.raises(ValueError, match="r must be torch.float32"):
        loss.loss(x, t, r.double(), e)
    with pytest.raises(ValueError, match=r"x must be a \(batch"):
        loss.loss(x[0], t, r, e)
    with pytest.raises(ValueError, match="group_norm='fast'"):
        with mt.implementation(group_norm="fast"):
            pass
    with pytest.raises(ValueError, match="model='vit'"):
        mf.model_config("vit")


@pytest.mark.parametrize(
    "t_new,r_new,match",
    [
        ([0.5, 0.3], [0.6, 0.1], r"r must be <= t \(r is the earlier time.*r\[0\] = 0.6.* > t\[0\] = 0.5"),
        ([1.5, 0.3], [0.2, 0.1], r"t must lie in \[0, 1\]; t\[0\] = 1.5"),
        ([0.5, 0.3], [0.2, -0.1], r"r must lie in \[0, 1\]; r\[1\] = -0.1"),
        ([0.5, float("nan")], [0.2, 0.1], r"t must lie in \[0, 1\]; t\[1\] = nan"),
    ],
)
def test_times_are_checked(t_new, r_new, match):
    net, x, _, _, e = _problem("dit", torch.float64)
    t, r = torch.tensor(t_new, dtype=x.dtype), torch.tensor(r_new, dtype=x.dtype)
    for variant in ("naive", "full_batch"):
        with pytest.raises(ValueError, match=match):
            mt.MeanFlowLoss(net, variant=variant).loss(x, t, r, e)
    # Opting out of the check (it reads a value back from the device) runs the loss anyway.
    assert mt.MeanFlowLoss(net, check_times=False).loss(x, t, r, e).shape == ()
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        mt.fm_loss(net, x, torch.tensor([1.5, 0.3], dtype=x.dtype), e)


def test_edge_times_are_accepted():
    # r = t (flow matching for that sample) and the interval's ends are legal.
    net, x, _, _, e = _problem("dit", torch.float64)
    t, r = torch.tensor([1.0, 0.4], dtype=x.dtype), torch.tensor([0.0, 0.4], dtype=x.dtype)
    assert torch.isfinite(mt.MeanFlowLoss(net).loss(x, t, r, e))


def test_integer_data_is_rejected():
    net, x, t, r, e = _problem("dit", torch.float64)
    xi, ti, ri, ei = (a.to(torch.int64) for a in (x, t, r, e))
    with pytest.raises(TypeError, match="x must be a floating-point tensor.*torch.int64"):
        mt.MeanFlowLoss(net).loss(xi, ti, ri, ei)
    with pytest.raises(TypeError, match="x must be a floating-point tensor.*torch.int64"):
        mt.MeanFlowLoss(net)(xi)
    with pytest.raises(TypeError, match="x must be a floating-point tensor.*torch.int64"):
        mt.fm_loss(net, xi, ti, ei)


def test_jax_times_and_dtype_are_checked():
    import equinox as eqx

    net = mj.make_model("dit", key=jax.random.key(0), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (2, 3, 16, 16))
    e = jax.random.normal(jax.random.key(2), (2, 3, 16, 16))
    good_t, good_r = jnp.array([0.7, 0.4]), jnp.array([0.2, 0.4])
    cases = [
        (good_t, jnp.array([0.8, 0.1]), r"r must be <= t \(r is the earlier time.*r\[0\] = 0.8 > t\[0\] = 0.7"),
        (jnp.array([1.2, 0.4]), good_r, r"t must lie in \[0, 1\]; t\[0\] = 1.2"),
        (good_t, jnp.array([-0.2, 0.4]), r"r must lie in \[0, 1\]; r\[0\] = -0.2"),
    ]
    for t, r, match in cases:
        with pytest.raises(ValueError, match=match):
            mj.meanflow_loss(net, x, t, r, e)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        mj.fm_loss(net, x, jnp.array([1.2, 0.4]), e)
    # Under jit the values are unknown at trace time: the compiled program checks them.
    jitted = eqx.filter_jit(mj.meanflow_loss)
    assert jnp.isfinite(jitted(net, x, good_t, good_r, e))
    with pytest.raises(Exception, match=r"t and r must lie in \[0, 1\] and r must be <= t"):
        jax.block_until_ready(jitted(net, x, good_t, jnp.array([0.8, 0.1]), e))
    with pytest.raises(TypeError, match="x must be a floating-point array.*int"):
        mj.meanflow_loss(net, x.astype(jnp.int64), *(a.astype(jnp.int64) for a in (good_t, good_r, e)))
    with pytest.raises(TypeError, match="x must be a floating-point array.*int"):
        mj.sample(jax.random.key(0), x.astype(jnp.int64), 0.5)


def test_cuda_graph_on_cpu_tensors_raises():
    net, x, t, r, e = _problem("dit", torch.float32)
    with pytest.raises(ValueError, match="cuda_graph.*CUDA tensors.*cpu"):
        mt.MeanFlowLoss(net, variant="cuda_graph").loss(x, t, r, e)
    tb = t[:, None, None, None]
    with pytest.raises(ValueError, match="CUDA tensors"):
        mt.MeanFlowLoss(net, variant="cuda_graph").jvp((1 - tb) * x + tb * e, t, r, e - x)


def test_jax_bad_inputs_raise_clear_errors():
    net = mj.make_model("dit", key=jax.random.key(0))
    x = jnp.zeros((4, 3, 16, 16), jnp.float32)
    with pytest.raises(ValueError, match="ratio"):
        mj.sample(jax.random.key(0), x, 2.0)
    t, r, e = mj.sample(jax.random.key(0), x, 0.5)
    with pytest.raises(ValueError, match=r"r must have shape \(4,\)"):
        mj.meanflow_loss(net, x, t, r[:2], e)
    with pytest.raises(ValueError, match="e must have x's shape"):
        mj.meanflow_loss(net, x, t, r, e[:2])


@needs_cuda
def test_cuda_graph_matches_naive_and_refuses_a_new_batch():
    net, x, t, r, e = (a.cuda() if isinstance(a, torch.Tensor) else a.cuda() for a in _problem("unet", torch.float32))
    ref_loss, ref_grads = _loss_and_grads(net, "naive", x, t, r, e)
    loss_fn = mt.MeanFlowLoss(net, variant="cuda_graph", p=0.5)
    counter = _count_calls(net)
    for _ in range(2):  # capture, then replay
        net.zero_grad(set_to_none=True)
        loss = loss_fn.loss(x, t, r, e)
        loss.backward()
    grads = torch.cat([p.grad.flatten() for p in net.parameters()])
    torch.testing.assert_close(loss.detach(), ref_loss, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grads, ref_grads, rtol=1e-3, atol=1e-3 * float(ref_grads.abs().max()))
    assert counter["n"] == 2 + 3 + 1  # capture: 2 warm-up JVPs + the captured one + forward; replay: forward
    with pytest.raises(ValueError, match="captured its graph for inputs of shape"):
        loss_fn.loss(x[:2], t[:2], r[:2], e[:2])


# -- registry ---------------------------------------------------------------------------
def test_registry_roles():
    op = variants.get("meanflow", "meanflow_loss")
    assert (op.baseline, op.optimised, op.default) == ("naive", "stacked", "full_batch")


def test_benchmark_grids_hold_distinct_codes():
    # Registered = benchmarked is checked for every study in test_benchmarks.py; here, the
    # study's own grid: every loss variant in both loss classes, one row per distinct code.
    from benchmarks import bench_meanflow as bench
    from benchmarks._interleave import CONTROL, INJECTED

    op = variants.get("meanflow", "meanflow_loss")
    for cls in (bench.MeanFlowStep, bench.MeanFlowOverhead):
        values = dict(zip(cls.param_names, cls.params))
        assert set(op.names) == set(values["variant"]) - {CONTROL, *INJECTED}
        assert values["model"] == ["unet", "dit"]
    assert dict(zip(bench.MeanFlowStep.param_names, bench.MeanFlowStep.params))["ratio"] == ["0", "0.25", "1.0"]
    assert set(mf.TORCH_VARIANTS) == set(op.names) - {"jax"}
    # No grid has a framework axis (the variant implies it), so no cell is n/a by construction.
    for cls in (bench.MeanFlowStep, bench.MeanFlowOverhead, bench.JVPCost, bench.Forward, bench.FMStep):
        assert "framework" not in cls.param_names
    # JVPCost rows are distinct JVP codes; every loss variant's JVP is one of them.
    assert set(bench.JVPS.values()) <= set(op.names)
    assert len(set(bench.JVPS.values())) == len(bench.JVPS)
    assert set(op.names) - set(bench.JVPS.values()) == {"naive", "primal_reuse"}


def test_naive_and_primal_reuse_share_full_batch_jvp():
    # Why JVPCost times one func_jvp row for the three: their `jvp` is the same code, so the
    # same bits; forward_ad, a different code path, is not required to match bit for bit.
    net, x, t, r, e = _problem("dit", torch.float32)
    tb = t[:, None, None, None]
    z, v = (1 - tb) * x + tb * e, e - x
    out = {name: mt.MeanFlowLoss(net, variant=name).jvp(z, t, r, v) for name in ("naive", "primal_reuse", "full_batch")}
    assert torch.equal(out["naive"], out["full_batch"]) and torch.equal(out["primal_reuse"], out["full_batch"])
