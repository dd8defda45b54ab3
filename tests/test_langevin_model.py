"""LangevinFlow's pieces: potential and force, integrator physics, switches, loss masking, prediction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from nlbkit.errors import NlbkitError
from nlbkit.models.config import LangevinConfig
from nlbkit.models.langevin import LangevinFlow, coordinated_dropout, masked_poisson_nll
from nlbkit.models.potential import (
    CoupledOscillatorPotential,
    StepCoefficients,
    hamiltonian,
    langevin_step,
)

N_IN, N_OUT, FWD, T, B, H = 5, 3, 4, 10, 6, 16


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: tiny tensors gain nothing from more, and lose a lot on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**overrides) -> LangevinConfig:
    return LangevinConfig(**{"hidden": H, "channels": 4, "ff_dim": 32, "dropout": 0.0, **overrides})


def make_model(seed: int = 0, **overrides) -> LangevinFlow:
    torch.manual_seed(seed)
    return LangevinFlow(tiny(**overrides), N_IN, N_OUT, FWD)


def counts(*shape: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.full(shape, 1.5), generator=gen)


def chain_potential(channels: int = 4, sites: int = 8) -> CoupledOscillatorPotential:
    """Every kernel [a, b, a] / norm with gain 1: U = C s^T K s >= 0, K tridiagonal, a bounded chain."""
    pot = CoupledOscillatorPotential(channels * sites, channels, 3, "gain")
    with torch.no_grad():
        pot.direction.copy_(torch.tensor([0.5, 1.0, 0.5]).expand(channels, channels, 3))
        pot.gain.fill_(1.0)
    return pot


def random_potential(mode: str, taps: int = 3, seed: int = 0) -> CoupledOscillatorPotential:
    torch.manual_seed(seed)
    pot = CoupledOscillatorPotential(24, 4, taps, mode)
    if mode == "gain":
        with torch.no_grad():
            pot.gain.normal_()
    return pot


# --- potential ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "taps"), [("gain", 3), ("unit", 3), ("gain", 5)])
def test_force_matches_autograd_of_the_literal_potential(mode, taps):
    pot = random_potential(mode, taps).double()
    z = torch.randn(7, 24, dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(pot.energy(z).sum(), z)
    g = pot.gradient_matrix()
    torch.testing.assert_close(z.detach() @ g, auto, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, g.T)
    # U is the quadratic form z G z^T / 2
    torch.testing.assert_close(pot.energy(z), 0.5 * ((z @ g) * z).sum(1), rtol=1e-12, atol=1e-12)


def test_potential_couples_only_neighbouring_sites():
    pot = random_potential("unit")
    g = pot.gradient_matrix().view(4, 6, 4, 6)  # (channel, site, channel', site')
    sites = torch.arange(6)
    far = (sites[:, None] - sites[None, :]).abs() > 1  # 3 taps reach one site either side
    assert g.permute(1, 3, 0, 2)[far].abs().max() == 0
    assert g.permute(1, 3, 0, 2)[~far].abs().max() > 0


def test_kernels_are_normalised_over_taps():
    unit = random_potential("unit").kernel()
    torch.testing.assert_close(unit.norm(dim=2), torch.ones(4, 4))
    pot = random_potential("gain")
    torch.testing.assert_close(pot.kernel().norm(dim=2), pot.gain.abs())


def test_gain_kernel_starts_uncoupled_with_a_finite_gradient():
    pot = CoupledOscillatorPotential(24, 4, 3, "gain")
    assert pot.kernel().abs().max() == 0
    z = torch.randn(5, 24)
    (z @ pot.gradient_matrix()).pow(2).sum().backward()
    pot.zero_grad()
    (z @ pot.gradient_matrix()).sum().backward()
    assert torch.isfinite(pot.gain.grad).all() and pot.gain.grad.abs().max() > 0


# --- integrator -----------------------------------------------------------------------------------


def run_free(pot, z, v, h, steps, symplectic, damping=0.0):
    g = pot.gradient_matrix().detach()
    coef = StepCoefficients(h, damping)
    grad = z @ g
    energies = [hamiltonian(z, v, pot).detach()]
    for _ in range(steps):
        z, v, grad = langevin_step(z, v, grad, lambda q: q @ g, coef, symplectic=symplectic)
        energies.append(hamiltonian(z, v, pot).detach())
    return torch.stack(energies)  # (steps + 1, B)


@torch.no_grad()
def test_energy_is_conserved_without_damping_or_noise():
    """gamma = 0, no stochastic force, 2,000 steps in a bounded chain potential:
    velocity Verlet keeps |E_t - E_0| / E_0 below 1e-2 at h = 0.02 (40 time units, about 45 periods
    of the fastest mode, omega ~ 7); Euler, whose energy grows by (1 + h^2 omega^2) per step, needs
    h = 1e-4 for that, and at h = 0.02 drifts at least ten times further."""
    pot = chain_potential().double()
    torch.manual_seed(0)
    z, v = torch.randn(4, 32, dtype=torch.float64), torch.randn(4, 32, dtype=torch.float64)

    def drift(h, symplectic):
        e = run_free(pot, z, v, h, 2000, symplectic)
        return ((e - e[0]).abs() / e[0]).max().item()

    assert drift(0.02, True) < 1e-2
    assert drift(1e-4, False) < 1e-2
    assert drift(0.02, False) > 10 * drift(0.02, True)


@pytest.mark.parametrize("symplectic", [False, True])
@torch.no_grad()
def test_damping_dissipates_energy(symplectic):
    pot = chain_potential()
    torch.manual_seed(0)
    e = run_free(pot, torch.randn(4, 32), torch.randn(4, 32), 0.02, 300, symplectic, damping=0.1)
    assert (e[-1] < 1e-2 * e[0]).all()
    # a single Euler step can gain a little (h^2 |grad U|^2 when v ~ 0), any 50 steps lose energy
    assert (e[50:] < e[:-50]).all()


def test_noise_scale_is_the_fluctuation_dissipation_value():
    coef = StepCoefficients(0.01, 0.55, mass=2.0, temperature=3.0)
    assert coef.noise_scale == pytest.approx(math.sqrt(2 * 0.55 * 3.0 / 2.0))
    assert StepCoefficients(0.01, 0.0).noise_scale == 0.0


# --- model ----------------------------------------------------------------------------------------

SWITCHES = [
    {},
    {"variant": "released"},
    {"coupling": False},
    {"dynamics": False},
    {"noise_and_damping": False},
    {"decoder": "gru"},
    {"initial_encoder": "bidirectional"},
    {"symplectic": True, "learn_step_size": True, "learn_damping": True, "controller": True},
]


@pytest.mark.parametrize("overrides", SWITCHES, ids=lambda o: ",".join(o) or "default")
def test_shapes_and_gradients(overrides):
    model = make_model(**overrides)
    out = model(counts(B, T, N_IN))
    assert out.log_rates.shape == (B, T + FWD, N_IN + N_OUT)
    assert out.kl.shape == () and torch.isfinite(out.kl)
    names = {"h"} if overrides.get("dynamics") is False else {"h", "z", "v"}
    assert set(out.latents) == names
    for lat in out.latents.values():
        assert lat.shape == (B, T + FWD, H)
    loss, parts = model.loss(counts(B, T, N_IN), counts(B, T + FWD, N_IN + N_OUT), kl_weight=0.1)
    loss.backward()
    assert parts["loss"] == pytest.approx(parts["nll"] + 0.1 * parts["kl"], rel=1e-5)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)


def test_latents_follow_the_euler_step_and_the_encoder_sees_the_current_bin():
    model = make_model(noise_and_damping=False).eval()
    x = counts(B, T, N_IN)
    out = model(x)
    z, v = out.latents["z"].double(), out.latents["v"].double()
    g = model.potential.gradient_matrix().double()
    h = model.cfg.step_size
    torch.testing.assert_close(z[:, 1:], z[:, :-1] + h * v[:, :-1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v[:, 1:], v[:, :-1] - h * z[:, :-1] @ g, rtol=1e-5, atol=1e-6)
    # h_t depends on x_t: changing the last observed bin changes h_{T-1} but no earlier state
    x2 = x.clone()
    x2[:, -1] += 3.0
    h1, h2 = out.latents["h"], model(x2).latents["h"]
    torch.testing.assert_close(h1[:, : T - 1], h2[:, : T - 1])
    assert (h1[:, T - 1] - h2[:, T - 1]).abs().max() > 1e-4


def test_noise_enters_the_velocity_with_damping_on():
    model = make_model().eval()
    torch.manual_seed(3)
    z, v = (model(counts(B, T, N_IN)).latents[k].double() for k in ("z", "v"))
    g = model.potential.gradient_matrix().double()
    gamma, h = model.cfg.damping, model.cfg.step_size
    residual = v[:, 1:] - (1 - gamma) * (v[:, :-1] - h * z[:, :-1] @ g)
    assert residual.std().item() == pytest.approx(math.sqrt(2 * gamma), rel=0.1)


def test_dropout_acts_on_the_encoder_state_in_training_only():
    model = make_model(dropout=0.5)
    x = counts(B, T, N_IN)
    assert (model.train()(x).latents["h"] == 0).float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert not (model.eval()(x).latents["h"] == 0).any()


def test_coupling_off_means_free_particles():
    model = make_model(coupling=False, noise_and_damping=False).eval()
    assert not list(model.potential.parameters())
    assert model.potential.kernel().abs().max() == 0
    v = model(counts(B, T, N_IN)).latents["v"]
    torch.testing.assert_close(v, v[:, :1].expand_as(v))  # no force, no friction: constant velocity


def test_dynamics_off_decodes_the_encoder_state_only():
    model = make_model(dynamics=False).eval()
    assert not hasattr(model, "potential") and not hasattr(model, "z0_head")
    assert model.decoder.layer.self_attn.embed_dim == H
    x = counts(B, T, N_IN)
    out1, out2 = model(x), model(x)
    torch.testing.assert_close(out1.log_rates, out2.log_rates)  # nothing sampled
    assert out1.kl.item() == 0.0


def test_bidirectional_initial_encoder_lets_the_last_bin_move_the_initial_state():
    x = counts(B, T, N_IN)
    x2 = x.clone()
    x2[:, -1] += 3.0
    for kind, moves in (("forward", False), ("bidirectional", True)):
        model = make_model(initial_encoder=kind, noise_and_damping=False).eval()
        torch.manual_seed(0)
        z1 = model(x).latents["z"][:, 0]
        torch.manual_seed(0)
        z2 = model(x2).latents["z"][:, 0]
        assert ((z1 - z2).abs().max().item() > 1e-5) is moves, kind
    assert model.z0_head.in_features == 2 * H


def test_gru_decoder_replaces_the_transformer():
    model = make_model(decoder="gru")
    assert not any(isinstance(m, nn.TransformerEncoderLayer) for m in model.modules())
    assert any(isinstance(m, nn.GRU) for m in model.modules())


def test_released_variant_has_unit_kernels_and_a_named_velocity_penalty():
    model = make_model(variant="released").eval()
    torch.testing.assert_close(model.potential.kernel().norm(dim=2), torch.ones(4, 4))
    out = model(counts(B, T, N_IN))
    v = out.latents["v"]
    expected = v[:, 1:].pow(2).sum((1, 2)).mean() / (2 * 0.1)
    torch.testing.assert_close(out.kl_terms["velocity_penalty"], expected)
    assert set(out.kl_terms) == {"kl_initial", "velocity_penalty"}
    with pytest.raises(NlbkitError, match="symplectic"):
        tiny(variant="released", symplectic=True)


def test_nlbkit_transition_kl_is_zero_without_controller_and_prices_impulses_with_one():
    assert make_model().eval()(counts(B, T, N_IN)).kl_terms["kl_transition"].item() == 0.0
    model = make_model(controller=True).eval()
    with torch.no_grad():
        model.controller.bias.fill_(0.3)
    out = model(counts(B, T, N_IN))
    sigma2 = 2 * model.cfg.damping
    expected = (T + FWD - 1) * H * 0.3**2 / (2 * sigma2)
    assert out.kl_terms["kl_transition"].item() == pytest.approx(expected, rel=1e-4)


def test_learned_step_and_damping_are_trainable_only_when_switched_on():
    fixed, learned = make_model(), make_model(learn_step_size=True, learn_damping=True)
    assert not fixed.log_step.requires_grad and not fixed.damping_logit.requires_grad
    assert learned.log_step.requires_grad and learned.damping_logit.requires_grad
    coef = learned.coefficients()
    assert coef.step.item() == pytest.approx(0.01) and coef.damping.item() == pytest.approx(0.55)
    assert make_model(noise_and_damping=False).coefficients().damping == 0.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden": 18}, "multiple of channels"),
        ({"variant": "other"}, "variant"),
        ({"controller": True, "noise_and_damping": False}, "controller"),
        ({"damping": 1.0}, "damping"),
        ({"decoder": "lstm"}, "decoder"),
        ({"initial_encoder": "backward"}, "initial_encoder"),
    ],
)
def test_bad_configs_are_rejected(overrides, message):
    with pytest.raises(NlbkitError, match=message):
        tiny(**overrides)


def test_bad_shapes_are_rejected():
    model = make_model()
    with pytest.raises(NlbkitError, match="held-in"):
        model(counts(B, T, N_IN + 1))
    with pytest.raises(NlbkitError, match="target"):
        model.loss(counts(B, T, N_IN), counts(B, T, N_IN + N_OUT), 0.1)


# --- coordinated dropout --------------------------------------------------------------------------


def test_coordinated_dropout_rescales_kept_entries_and_blocks_only_kept_ones():
    torch.manual_seed(0)
    x = counts(40, T, N_IN)
    inputs, blocked = coordinated_dropout(x, 0.4, 0.25)
    kept = inputs != 0
    torch.testing.assert_close(inputs[kept], x[kept] / 0.4)
    assert not (blocked & (inputs == 0) & (x != 0)).any()  # a dropped entry is never blocked
    share = blocked.float().mean().item()
    assert share == pytest.approx(0.4 * 0.75, abs=0.03)
    assert not coordinated_dropout(x, 0.4, 1.0)[1].any()


def test_masked_nll_keeps_the_value_and_cuts_the_gradient_of_blocked_entries():
    log_rates = torch.randn(B, T + FWD, N_IN + N_OUT, requires_grad=True)
    target = counts(B, T + FWD, N_IN + N_OUT)
    blocked = torch.rand(B, T, N_IN) < 0.5
    value = masked_poisson_nll(log_rates, target, blocked)
    torch.testing.assert_close(value, masked_poisson_nll(log_rates, target, None))
    value.backward()
    corner = log_rates.grad[:, :T, :N_IN]
    assert (corner[blocked] == 0).all() and (corner[~blocked] != 0).all()
    assert (log_rates.grad[:, T:] != 0).all() and (log_rates.grad[:, :, N_IN:] != 0).all()


def _log_rate_grad(model: LangevinFlow) -> torch.Tensor:
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["out"] = output

    handle = model.decoder.readout.register_forward_hook(keep)
    loss, _ = model.loss(counts(B, T, N_IN), counts(B, T + FWD, N_IN + N_OUT), kl_weight=0.0)
    loss.backward()
    handle.remove()
    return captured["out"].grad


def test_model_loss_blocks_kept_heldin_entries_in_training_only():
    torch.manual_seed(0)
    grad = _log_rate_grad(make_model(cd_rate=0.5).train())
    zero = grad == 0
    assert zero[:, :T, :N_IN].float().mean().item() == pytest.approx(0.5, abs=0.12)
    assert not zero[:, T:].any() and not zero[:, :, N_IN:].any()  # forward bins, held-out neurons
    assert not (_log_rate_grad(make_model(cd_rate=0.5).eval()) == 0).any()
    assert not (_log_rate_grad(make_model(cd_rate=1.0).train()) == 0).any()


# --- prediction and training ----------------------------------------------------------------------


def test_predict_rates_is_positive_finite_seeded_and_restores_the_mode():
    model = make_model().train()
    x = counts(B, T, N_IN)
    torch.manual_seed(7)
    r1 = model.predict_rates(x, n_samples=5)
    assert r1.shape == (B, T + FWD, N_IN + N_OUT)
    assert (r1 > 0).all() and torch.isfinite(r1).all()
    assert model.training
    torch.manual_seed(7)
    torch.testing.assert_close(model.predict_rates(x, n_samples=5), r1)
    torch.manual_seed(9)
    one = model.eval()(x).log_rates.exp()
    torch.manual_seed(9)
    torch.testing.assert_close(model.predict_rates(x, n_samples=1), one)


def test_predict_rates_averages_log_rates_over_batched_passes():
    """Without latent dynamics nothing is sampled, so every pass gives exp(log r) exactly."""
    model = make_model(dynamics=False)
    x = counts(B, T, N_IN)
    one = model.eval()(x).log_rates.exp()
    torch.testing.assert_close(model.predict_rates(x, n_samples=7, max_rows=2 * B), one)  # 4 passes


@pytest.mark.parametrize("overrides", [{}, {"variant": "released"}], ids=["nlbkit", "released"])
def test_a_few_dozen_steps_fit_a_small_batch(overrides):
    torch.manual_seed(0)
    rates = torch.rand(1, 1, N_IN + N_OUT) * 3 * (1 + torch.sin(torch.linspace(0, 6, T + FWD)))[None, :, None]
    target = torch.poisson(rates.expand(16, -1, -1))
    model = make_model(cd_rate=0.6, **overrides).train()
    model.set_baseline_rates(target.mean((0, 1)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        opt.zero_grad()
        loss, parts = model.loss(target[:, :T, :N_IN], target, kl_weight=1e-3)
        loss.backward()
        opt.step()
        history.append(parts["nll"])
    assert sum(history[-5:]) / 5 < 0.9 * sum(history[:5]) / 5


# --- several bins per step ------------------------------------------------------------------------


@pytest.mark.parametrize("n_bins", [T, T + 1])  # T = 10: a multiple of 2, then one bin of padding
def test_bins_per_step_sums_inputs_and_interpolates_log_rates_to_every_bin(n_bins):
    model = make_model(bins_per_step=2, dynamics=False).eval()
    x = counts(B, n_bins, N_IN)
    out = model(x)
    steps = -(-n_bins // 2) + FWD // 2
    assert out.log_rates.shape == (B, n_bins + FWD, N_IN + N_OUT)
    assert out.latents["h"].shape == (B, steps, H)
    # the encoder sees each step's summed counts only: moving a spike within a step changes nothing
    last = x.clone()
    last[:, -2], last[:, -1] = x[:, -1], x[:, -2]
    torch.testing.assert_close(model(last).log_rates, out.log_rates)
    # each step's log-rate sits at the step's centre and is interpolated linearly to every bin
    steps_lr = torch.randn(1, steps, 1)
    centres = torch.arange(steps) * 2 + 0.5  # in bins, counted from the start of the padding
    pad = -n_bins % 2
    where = torch.arange(n_bins + FWD) + pad
    expected = np.interp(where.numpy(), centres.numpy(), steps_lr[0, :, 0].numpy())
    got = model._unfold_bins(steps_lr, pad, n_bins)[0, :, 0]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_bins_per_step_zero_is_one_for_a_model_built_directly():
    torch.manual_seed(0)
    auto = LangevinFlow(tiny(bins_per_step=0, dynamics=False), N_IN, N_OUT, FWD).eval()
    torch.manual_seed(0)
    one = LangevinFlow(tiny(bins_per_step=1, dynamics=False), N_IN, N_OUT, FWD).eval()
    x = counts(B, T, N_IN)
    torch.testing.assert_close(auto(x).log_rates, one(x).log_rates)


def test_nan_targets_are_left_out_of_the_loss_not_read_as_zero_spikes():
    log_rates = torch.randn(B, T + FWD, N_IN + N_OUT, requires_grad=True)
    target = counts(B, T + FWD, N_IN + N_OUT)
    missing = torch.zeros_like(target, dtype=torch.bool)
    missing[0, T - 3 :] = True  # one trial ended three bins early
    holed = target.masked_fill(missing, float("nan"))
    value = masked_poisson_nll(log_rates, holed, None)
    full = torch.nn.functional.poisson_nll_loss(log_rates, target, log_input=True, reduction="none")
    torch.testing.assert_close(value, full[~missing].mean())
    value.backward()
    assert torch.isfinite(log_rates.grad).all()
    assert (log_rates.grad[missing] == 0).all() and (log_rates.grad[~missing] != 0).all()
