"""LangevinFlow under autocast: the Langevin integration and the potential stay in float32.

Measured on CPU bfloat16 with the model below (30 Adam steps): with the float32 region the
trajectories equal float32's exactly and the losses differ by at most 1.3e-4 relative (the
encoder and decoder still run in bfloat16); without it the trajectories are bfloat16 and differ
by up to 0.05, the losses by 8.9e-4.
"""

import copy
import os

import numpy as np
import pytest
import torch

from nlbkit.models.langevin import LangevinConfig, LangevinFlow

# benchmarks/gpu_check.sh adds cuda (NLBKIT_TEST_DEVICES=cpu,cuda); CI has no GPU.
DEVICES = os.environ.get("NLBKIT_TEST_DEVICES", "cpu").split(",")


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def bf16(device: str) -> dict:
    return {"device_type": device, "dtype": torch.bfloat16}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine, two threads of small ops mostly wait."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(device: str = "cpu") -> LangevinFlow:
    torch.manual_seed(0)
    cfg = LangevinConfig(hidden=16, channels=4, ff_dim=32, heads=2, bins_per_step=1, dropout=0.1)
    return LangevinFlow(cfg, 6, 3, 4).to(device)


def test_bfloat16_loses_the_small_latent_updates():
    """Why the integration must not autocast: z + h v with h = 0.01 rounds back to z."""
    z, v = torch.randn(10_000).bfloat16(), torch.randn(10_000).bfloat16()
    assert ((z + 0.01 * v) == z).float().mean() > 0.1
    assert ((z.float() + 0.01 * v.float()) == z.float()).float().mean() < 1e-3


def test_trajectories_under_bf16_autocast_match_float32(device):
    model = _model(device)
    states = torch.randn(24, 8, 16, device=device)  # (steps, trials, hidden), as the encoder gives them
    torch.manual_seed(1)
    z32, v32, kl32 = model._integrate(states, states[0])
    with torch.autocast(**bf16(device)):
        torch.manual_seed(1)
        z16, v16, kl16 = model._integrate(states, states[0])
    assert z16.dtype == v16.dtype == torch.float32
    torch.testing.assert_close(z16, z32, rtol=0, atol=1e-6)
    torch.testing.assert_close(v16, v32, rtol=0, atol=1e-6)
    torch.testing.assert_close(kl16["kl_initial"], kl32["kl_initial"], rtol=1e-6, atol=0)


def test_log_rates_and_training_loss_under_bf16_autocast_match_float32(device):
    model = _model(device)
    heldin = torch.poisson(torch.full((8, 20, 6), 1.0), generator=torch.Generator().manual_seed(4))
    target = torch.poisson(torch.full((8, 24, 9), 1.0), generator=torch.Generator().manual_seed(5))
    heldin, target = heldin.to(device), target.to(device)
    model.eval()
    torch.manual_seed(2)
    fp32 = model(heldin).log_rates
    with torch.autocast(**bf16(device)):
        torch.manual_seed(2)
        out = model(heldin)
    assert out.log_rates.dtype == out.latents["z"].dtype == torch.float32
    assert (out.log_rates - fp32).abs().max() < 0.02  # bfloat16 encoder and decoder

    def losses(autocast: bool) -> np.ndarray:
        net = copy.deepcopy(model).train()
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        torch.manual_seed(3)
        values = []
        for _ in range(30):
            with torch.autocast(**bf16(device), enabled=autocast):
                loss, _ = net.loss(heldin, target, kl_weight=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            values.append(loss.item())
        return np.array(values)

    fp32_losses, bf16_losses = losses(False), losses(True)
    assert fp32_losses[-1] < fp32_losses[0]  # it trains
    np.testing.assert_allclose(bf16_losses, fp32_losses, rtol=1e-3)
