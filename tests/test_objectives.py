"""The world-model loss against hand computations (ActorLoss: tests/test_actor_loss.py; CriticLoss: tests/test_critic_loss.py).

The hand-written math they call (value estimates, representation terms, heads, latents) has its own
reference tests; here the modules' wiring is pinned: which rows, states, weights and reductions enter.
"""
import copy
import math
import re
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY, make_batch
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase
from torch import nn
from torch.distributions import Normal, kl_divergence

from dreamer_trl import keys
from dreamer_trl.builders.networks import make_world_model
from dreamer_trl.model.heads import NormalHead
from dreamer_trl.model.latent import GaussianLatent
from dreamer_trl.objectives import (
    Contrastive,
    RewardOnly,
    WorldModelLoss,
    free_nats_kl,
)

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
A, FEAT = 2, TINY.world_model.latent.state_dim + TINY.world_model.rssm.belief_dim


def test_free_nats_below_the_clamp_gives_constant_and_no_gradient():
    kl = torch.tensor([1.0, 2.0, 2.5], requires_grad=True)
    loss = free_nats_kl(kl, 3.0)
    loss.backward()
    assert loss.item() == 3.0 and kl.grad.abs().sum() == 0


def test_free_nats_above_the_clamp_passes_the_batch_mean_gradient_to_every_element():
    """Mean 4 > 3: every element, including the ones below 3, gets gradient 1/n (a per-element clamp would not)."""
    kl = torch.tensor([1.0, 2.0, 9.0], requires_grad=True)
    loss = free_nats_kl(kl, 3.0)
    loss.backward()
    assert loss.item() == pytest.approx(4.0)
    torch.testing.assert_close(kl.grad, torch.full((3,), 1 / 3))


# ---------------------------------------------------------------------------------------------- WorldModelLoss


class FixedWorldModel(TensorDictModuleBase):
    """Writes given tensors, with the parts WorldModelLoss reads: isolates its arithmetic from the networks.

    The decoder and reward head are identity NormalHeads, so the written "reco_*" and "reward" are the means.
    """

    def __init__(self, values, obs_key="observation", event_dims=1, S=3):
        super().__init__()
        self.values, self.in_keys, self.out_keys = values, [], list(values)
        self.obs_key, self.reco_key = obs_key, keys.RECO_KEYS[obs_key]
        self.rssm = SimpleNamespace(latent=GaussianLatent(S))
        self.decoder, self.reward_head = NormalHead(nn.Identity(), event_dims), NormalHead(nn.Identity())
        self.state_model = None

    def forward(self, td):
        td.update(self.values)
        return td


def fixed_model_batch(obs_key="observation", B=2, T=5, S=3, seed=0):
    """Imperfect predictions with known errors; sequence 1 restarts at row 3."""
    g = torch.Generator().manual_seed(seed)
    if obs_key == "pixels":
        obs = torch.randint(0, 256, (B, T, 3, 4, 2), generator=g, dtype=torch.uint8)
        target = obs.float() / 255 - 0.5
    else:
        obs = torch.randn(B, T, 5, generator=g)
        target = obs
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    is_init[1, 3] = True
    td = TensorDict({obs_key: obs, ("next", "reward"): torch.randn(B, T, 1, generator=g), "is_init": is_init}, [B, T])
    reco_error = torch.randn(target.shape, generator=g)
    reward_error = torch.randn(B, T, 1, generator=g)
    reward_error[1, 3] = 100.0  # the restart row's reward belongs to no transition of this episode
    aligned_reward = torch.cat([torch.zeros(B, 1, 1), td["next", "reward"][:, :-1]], 1)
    values = {"prior_mean": torch.randn(B, T, S, generator=g), "prior_std": torch.rand(B, T, S, generator=g) + 0.1,
              "posterior_mean": torch.randn(B, T, S, generator=g),
              "posterior_std": torch.rand(B, T, S, generator=g) + 0.1,
              keys.RECO_KEYS[obs_key]: target + reco_error, "reward": aligned_reward + reward_error}
    return td, values, reco_error, reward_error


def expected_terms(td, values, reco_error, reward_error, kl_scale=1.0, free_nats=3.0):
    """Dreamer Eq. 10 by hand: 1/2 squared error + 1/2 log 2 pi summed over each observation, mean over rows."""
    B, T = td.batch_size
    reco = sum(sum(0.5 * e**2 + HALF_LOG_2PI for e in reco_error[b, t].flatten().tolist())
               for b in range(B) for t in range(T)) / (B * T)
    reward_rows = [(b, t) for b in range(B) for t in range(1, T) if not td["is_init"][b, t]]
    reward = sum(0.5 * reward_error[b, t].item() ** 2 + HALF_LOG_2PI for b, t in reward_rows) / len(reward_rows)
    kl = kl_divergence(Normal(values["posterior_mean"], values["posterior_std"]),
                       Normal(values["prior_mean"], values["prior_std"])).sum(-1).mean().item()
    return {"reco": reco, "reward": reward, "kl": kl_scale * max(kl, free_nats)}, kl


@pytest.mark.parametrize("kl_scale,free_nats", [(1.0, 3.0), (0.5, 0.0), (2.0, 100.0)])
@pytest.mark.parametrize("obs_key", ["observation", "pixels"])
def test_world_model_loss_terms_by_hand(obs_key, kl_scale, free_nats):
    td, values, reco_error, reward_error = fixed_model_batch(obs_key)
    model = FixedWorldModel(values, obs_key, event_dims=3 if obs_key == "pixels" else 1)
    out, _ = WorldModelLoss(model, kl_scale=kl_scale, free_nats=free_nats)(td)
    expected, kl = expected_terms(td, values, reco_error, reward_error, kl_scale, free_nats)
    for name, value in expected.items():
        assert out[f"loss_model_{name}"].item() == pytest.approx(value, rel=1e-5), name
    assert out["kl"].item() == pytest.approx(kl, rel=1e-5)
    assert out["kl_clamped"].item() == float(kl < free_nats)


def test_world_model_loss_reads_renamed_keys():
    """set_keys renames what the loss reads: the reconstruction only under "my_reco", the reward prediction
    only under "my_reward" (the defaults are absent, so reading them would fail)."""
    td, values, reco_error, reward_error = fixed_model_batch()
    values["my_reco"] = values.pop("reco_observation")
    values["my_reward"] = values.pop("reward")
    loss = WorldModelLoss(FixedWorldModel(values))
    loss.set_keys(reco_observation="my_reco", reward_pred="my_reward")
    out, _ = loss(td)
    values["reco_observation"], values["reward"] = values["my_reco"], values["my_reward"]
    expected, _ = expected_terms(td, values, reco_error, reward_error)
    for name, value in expected.items():
        assert out[f"loss_model_{name}"].item() == pytest.approx(value, rel=1e-5), name


def test_world_model_loss_kl_scale_given_twice_is_refused():
    td, values, *_ = fixed_model_batch()
    with pytest.raises(ValueError, match="not both"):
        WorldModelLoss(FixedWorldModel(values), scales={"reco": 1.0, "reward": 1.0, "kl": 1.0}, kl_scale=2.0)


def test_world_model_loss_scales_multiply_each_term():
    td, values, reco_error, reward_error = fixed_model_batch()
    scales = {"reco": 2.0, "reward": 3.0, "kl": 0.25}
    out, _ = WorldModelLoss(FixedWorldModel(values), scales=scales, free_nats=0.0)(td)
    expected, _ = expected_terms(td, values, reco_error, reward_error, free_nats=0.0)
    assert set(out.keys()) == {"loss_model_reco", "loss_model_reward", "loss_model_kl", "kl", "kl_clamped"}
    for name, scale in scales.items():
        assert out[f"loss_model_{name}"].item() == pytest.approx(scale * expected[name], rel=1e-5), name


@pytest.mark.parametrize("scales", [{"reconstruction": 1.0, "reward": 1.0, "kl": 1.0},  # misnamed
                                    {"reco": 1.0, "reward": 1.0},  # missing
                                    {"reco": 1.0, "reward": 1.0, "kl": 1.0, "contrast": 1.0}])  # extra
def test_world_model_loss_scales_must_name_exactly_the_terms(scales):
    td, values, *_ = fixed_model_batch()
    with pytest.raises(KeyError, match=r"\['kl', 'reco', 'reward'\]"):
        WorldModelLoss(FixedWorldModel(values), scales=scales)(td)


def tiny_world_model(representation="reconstruction", obs_key="observation"):
    torch.manual_seed(0)
    cfg = copy.deepcopy(TINY)
    cfg.world_model.loss.representation = representation
    return make_world_model(obs_key, (3, 64, 64) if obs_key == "pixels" else (3,), A, cfg)


def test_reward_only_representation_has_reward_and_kl_terms_only():
    wm = tiny_world_model("reward")
    out, post = WorldModelLoss(wm, representation=RewardOnly())(make_batch(obs_key="observation"))
    assert {k for k in out.keys() if k.startswith("loss_")} == {"loss_model_reward", "loss_model_kl"}
    assert wm.decoder is None and "reco_observation" not in post.keys()


def test_reconstruction_loss_on_a_world_model_without_decoder_raises():
    with pytest.raises(ValueError, match="decoder"):
        WorldModelLoss(tiny_world_model("reward"))(make_batch(obs_key="observation"))


def test_contrastive_term_trains_the_state_model_and_the_encoder():
    wm = tiny_world_model("contrastive")
    out, _ = WorldModelLoss(wm, representation=Contrastive())(make_batch(obs_key="observation"))
    assert {k for k in out.keys() if k.startswith("loss_")} == {"loss_model_contrast", "loss_model_reward",
                                                                 "loss_model_kl"}
    out["loss_model_contrast"].backward()
    for name, module in (("state_model", wm.state_model), ("encoder", wm.encoder)):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0, name


def test_world_model_loss_on_real_pixel_networks_is_finite_and_differentiable():
    wm = tiny_world_model(obs_key="pixels")
    out, post = WorldModelLoss(wm)(make_batch())
    total = out["loss_model_kl"] + out["loss_model_reco"] + out["loss_model_reward"]
    total.backward()
    assert torch.isfinite(total)
    assert all(p.grad is not None for p in wm.decoder.parameters())
    assert post["state"].shape == (2, 5, TINY.world_model.latent.state_dim) and not post["state"].requires_grad


# ------------------------------------------------------------------------- drop-ins for TorchRL loops (issue 14)


def test_world_model_loss_reads_the_world_models_observation_key_by_default():
    loss = WorldModelLoss(tiny_world_model())
    assert loss.tensor_keys.observation == "observation" and loss.tensor_keys.reco_observation == "reco_observation"
    out, _ = loss(make_batch(obs_key="observation"))
    assert torch.isfinite(out["loss_model_reco"])


@pytest.mark.parametrize("missing,named", [
    ("observation", "'observation'"), ("prev_action", "'prev_action' (from dreamer_trl.policy_carry_transform"),
    ("is_init", "'is_init' (from torchrl.envs.InitTracker"), (("next", "reward"), "('next', 'reward')"),
])
def test_world_model_loss_names_a_missing_key_and_its_source(missing, named):
    batch = make_batch(obs_key="observation").exclude(missing)
    with pytest.raises(KeyError, match=re.escape(named)):
        WorldModelLoss(tiny_world_model())(batch)


def test_world_model_loss_takes_float_pixels_in_the_unit_range_as_their_uint8_frames():
    wm = tiny_world_model(obs_key="pixels")
    batch = make_batch()
    torch.manual_seed(0)
    expected, _ = WorldModelLoss(wm)(batch)
    torch.manual_seed(0)
    got, _ = WorldModelLoss(wm)(batch.clone().set("pixels", batch["pixels"].float() / 255))
    for name in ("loss_model_reco", "loss_model_reward", "loss_model_kl"):
        assert torch.equal(got[name], expected[name]), name
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        WorldModelLoss(wm)(batch.clone().set("pixels", batch["pixels"].float()))


def terminated_episode(n=6, obs_dim=3, action_dim=A, seed=0):
    """Collector rows of one episode of ``n`` agent steps that terminates: row t holds o_t, a_t and
    ``("next", ...)`` = (o_{t+1}, r_{t+1}, flags after a_t); the last row's next observation is the terminal one."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n + 1, obs_dim, generator=g)
    action = torch.rand(n, action_dim, generator=g) * 2 - 1
    ended = torch.zeros(n, 1, dtype=torch.bool)
    ended[-1] = True
    return TensorDict({
        "observation": obs[:-1], "action": action, "prev_action": torch.cat([torch.zeros(1, action_dim), action[:-1]]),
        "is_init": torch.arange(n)[:, None] == 0, ("collector", "traj_ids"): torch.zeros(n, dtype=torch.long),
        ("next", "observation"): obs[1:], ("next", "reward"): torch.randn(n, 1, generator=g),
        ("next", "done"): ended, ("next", "terminated"): ended.clone(),
        ("next", "truncated"): torch.zeros(n, 1, dtype=torch.bool)}, [n])


def test_world_model_loss_gives_the_continue_head_a_zero_target_at_a_termination(tmp_path):
    """Reference: official current ``Agent.loss`` trains ``con = f32(~obs['is_terminal'])`` and the reward on
    every row, the terminal observation being a row of its own. An episode of 6 steps that terminates, stored
    through the replay buffer, is one window of 7 rows ending with the terminal observation; a plain loop over
    rows 1..6 with targets r_t = r of row t-1 and c_t = (1 - 1/333) (1 - terminated of row t-1) (so 0 on row 6)
    gives the reward and continue terms."""
    from dreamer_trl.builders.networks import make_world_model
    from dreamer_trl.config import make_preset
    from dreamer_trl.data.replay import make_replay_buffer
    from dreamer_trl.objectives.kl import DynRepKL

    rows = terminated_episode()
    rb = make_replay_buffer(100, 1, 7, scratch_dir=str(tmp_path))
    rb.extend(rows)
    batch = rb.sample()                                           # the only window: 6 rows and the final one
    assert torch.equal(batch["observation"][0, -1], rows["next", "observation"][-1])
    assert batch["is_last"][0, -1].item() and not batch["is_last"][0, :-1].any()
    torch.manual_seed(0)
    cfg = make_preset("dreamer_v3_proprio_current")  # size1m: 32 x 4 categoricals, a continue head
    wm = make_world_model("observation", (3,), A, cfg)
    disc = 1 - 1 / 333
    loss = WorldModelLoss(wm, scales={"reco": 1.0, "reward": 1.0, "dyn": 1.0, "rep": 0.1, "continue": 1.0},
                          kl_terms=DynRepKL(1.0), continue_discount=disc)
    torch.manual_seed(1)
    out, data = loss(batch)
    reward, cont = [], []
    for t in range(1, 7):  # row t's targets come from row t-1 ("next", .)
        state, belief = data["state"][:, t], data["belief"][:, t]
        r = rows["next", "reward"][t - 1].view(1, 1)
        reward.append(wm.reward_head.nll(wm.reward_head(state, belief), r))
        y = disc * (1.0 - float(rows["next", "terminated"][t - 1]))
        p = torch.sigmoid(wm.continue_head(state, belief)).squeeze()
        cont.append(-(y * torch.log(p) + (1 - y) * torch.log(1 - p)))
    assert y == 0.0  # the terminal observation's row: continue target 0
    torch.testing.assert_close(out["loss_model_reward"], torch.stack(reward).mean())
    torch.testing.assert_close(out["loss_model_continue"], torch.stack(cont).mean())


def _mid_episode_windows(seed=3):
    """Windows that start mid-episode: row 0 is no episode start and carries a real previous action."""
    td = make_batch(B=3, T=6, A=2, obs_key="observation", obs_dim=3, seed=seed)
    td["is_init"][:, 0] = False
    td["is_init"][1, 3] = True  # an episode start inside one window
    td["prev_action"][:, 0] = torch.tensor([0.7, -0.4])
    return td


def test_window_start_episode_start_reads_row_0_as_an_episode_start():
    """Reference: "episode_start" on mid-episode windows gives the loss that the same windows give when their
    row 0 is marked as an episode start and its previous action zeroed by hand (the official replays' is_first
    at row 0); the flags handed on are the ones given."""
    torch.manual_seed(0)
    wm = make_world_model("observation", (3,), 2, TINY)
    td = _mid_episode_windows()
    by_hand = td.clone()
    by_hand["is_init"][:, 0] = True
    by_hand["prev_action"][:, 0] = 0.0
    torch.manual_seed(1)
    out, data = WorldModelLoss(wm, window_start="episode_start")(td.clone())
    torch.manual_seed(1)
    ref, _ = WorldModelLoss(wm)(by_hand)
    for name in ref.keys():
        torch.testing.assert_close(out[name], ref[name])
    assert torch.equal(data["is_init"], td["is_init"])
    torch.manual_seed(1)
    carried, _ = WorldModelLoss(wm)(td.clone())  # V1: the real previous action enters the first step
    assert not torch.allclose(carried["loss_model_reco"], ref["loss_model_reco"])


def test_window_start_is_refused_by_name():
    with pytest.raises(ValueError, match="window_start"):
        WorldModelLoss(make_world_model("observation", (3,), 2, TINY), window_start="zero")


def test_window_start_replay_context_starts_from_row_0s_stored_posterior():
    """Reference (DreamerV3 e3f0224 agent.py ``_apply_replay_context``, K = 1): the filter runs on rows 1..T
    from row 0's stored (s, h) with the stored previous actions; row t's reward target is row t-1's
    ("next", "reward"), so the first training row's comes from the context row; every training row that is no
    episode start is a reward target. Written as a plain loop over rows; the sink gets rows 1..T's posteriors
    with their storage indices."""
    torch.manual_seed(0)
    wm = make_world_model("observation", (3,), 2, TINY)
    S, D = wm.rssm.state_dim, wm.rssm.belief_dim
    td = make_batch(B=3, T=7, A=2, obs_key="observation", obs_dim=3, seed=5, latents=(S, D))
    td["is_init"][:, 0] = False
    td["is_init"][1, 4] = True  # an episode start inside one window (stream windows)
    td["index"] = torch.arange(3 * 7).reshape(3, 7)
    sunk = []
    loss = WorldModelLoss(wm, window_start="replay_context")
    loss.context_sink = lambda index, state, belief: sunk.append((index, state, belief))
    torch.manual_seed(1)
    out, data = loss(td.clone())
    assert data.batch_size == (3, 6)
    torch.manual_seed(1)
    rows = td[:, 1:]
    ref = wm.rssm.observe(wm.encoder(rows["observation"]), rows["prev_action"], rows["is_init"],
                          td["state"][:, 0], td["belief"][:, 0])
    torch.testing.assert_close(data["state"], ref["state"])
    torch.testing.assert_close(data["belief"], ref["belief"])
    head, total, count = wm.reward_head, 0.0, 0
    for b in range(3):
        for t in range(6):
            if rows["is_init"][b, t]:
                continue
            raw = head(ref["state"][b, t], ref["belief"][b, t])
            total = total + head.nll(raw, td["next", "reward"][b, t]).sum()
            count += 1
    assert count == 17
    torch.testing.assert_close(out["loss_model_reward"], total / count)
    (index, state, belief), = sunk
    assert torch.equal(index, td["index"][:, 1:])
    torch.testing.assert_close(state, ref["state"])
    torch.testing.assert_close(belief, ref["belief"])
    with pytest.raises(keys.MissingKeysError, match="'state'.*replay context"):
        loss(td.exclude("state"))
