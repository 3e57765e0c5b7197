"""PlaNet's CEM planner: on a toy latent model with a known optimum, batched, bounded, noise-free in
evaluation, seeded; in a TorchRL collector on a real DMC env; and TorchRL's CEMPlanner over our
imagination env on the same toy problem."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import TINY  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from torch import nn  # noqa: E402
from torchrl.collectors import Collector  # noqa: E402
from torchrl.envs.utils import ExplorationType, set_exploration_type  # noqa: E402
from torchrl.modules.planners import CEMPlanner  # noqa: E402

from dreamer_trl.behavior.imagination import make_imagination_env  # noqa: E402
from dreamer_trl.behavior.planner import LatentCEMPlanner, make_planner  # noqa: E402
from dreamer_trl.behavior.policy import make_policy, policy_carry_transform  # noqa: E402
from dreamer_trl.builders.networks import (
    make_actor,  # noqa: E402
    make_world_model,  # noqa: E402
)
from dreamer_trl.data.dmc import make_dmc_env  # noqa: E402

H, A = 4, 2
TARGET = torch.tensor([[0.5, -0.3], [0.2, 0.7], [-0.6, 0.1], [0.9, -0.8]])  # [H, A], the optimal plan


class ToyLatentModel(nn.Module):
    """A latent model whose imagined reward is a known function of the action sequence: the state s_t is
    the last action, the belief h_t counts the steps, so sum_t r_t = -||a_{0:H} - TARGET||^2.
    Has the RSSM's prior_step interface and counts its calls and rows."""

    state_dim, belief_dim, action_dim = A, 1, A

    def __init__(self):
        super().__init__()
        self.calls, self.rows = 0, []

    def prior_step(self, state, belief, action, noise=None):
        self.calls += 1
        self.rows.append(state.shape[0])
        return {"mean": action, "std": torch.ones_like(action)}, action.clone(), belief + 1


class ToyReward(nn.Module):
    """r(s_t, h_t) = -||s_t - TARGET[h_t - 1]||^2, as a head with ``pred``."""

    def forward(self, state, belief):
        target = TARGET[belief[..., 0].long() - 1]
        return -((state - target) ** 2).sum(-1, keepdim=True)

    def pred(self, raw):
        return raw


def toy_planner(**kwargs) -> LatentCEMPlanner:
    kwargs = {"horizon": H, "candidates": 1000, "top_k": 100, "iterations": 10, "seed": 0, **kwargs}
    return LatentCEMPlanner(ToyLatentModel(), ToyReward(), A, **kwargs)


def start(n=1):
    return torch.zeros(n, A), torch.zeros(n, 1)


def plan_return(plan: torch.Tensor) -> torch.Tensor:
    """The objective written out step by step: sum_t -||a_t - target_t||^2 for a plan ``[H, A]``."""
    total = torch.tensor(0.0)
    for t in range(H):
        total = total - sum((plan[t, i] - TARGET[t, i]) ** 2 for i in range(A))
    return total


def test_first_action_is_the_optimum_after_ten_iterations():
    planner = toy_planner()
    action = planner.plan(*start())
    torch.testing.assert_close(action[0], TARGET[0], atol=0.05, rtol=0)


def test_the_toy_objective_is_what_the_planner_scores():
    planner = toy_planner()
    plans = torch.rand(3, H, A) * 2 - 1
    states, beliefs = planner.rollout(*(x.repeat(3, 1) for x in start()), plans, None)
    returns = planner.score(states, beliefs)
    torch.testing.assert_close(returns, torch.stack([plan_return(p) for p in plans]))


def test_elite_return_improves_monotonically():
    planner = toy_planner()
    planner.plan(*start())
    elite = planner.last_elite_returns[:, 0]
    assert elite.shape == (10,)
    assert (elite[1:] > elite[:-1]).all(), elite
    assert elite[-1] > -0.05 and elite[-1] <= 0  # the optimum's return is 0


def test_all_candidates_of_all_envs_in_one_prior_call_per_imagined_step():
    planner = toy_planner(candidates=50, top_k=5, iterations=3)
    n_envs = 8
    action = planner.plan(*start(n_envs))
    model = planner.rssm
    assert action.shape == (n_envs, A)
    assert model.calls == 3 * H  # iterations x horizon, whatever the number of envs and candidates
    assert set(model.rows) == {n_envs * 50}


def test_actions_respect_the_bounds():
    # The optimum lies outside the box: every candidate and the returned action stay inside.
    planner = toy_planner(action_low=torch.tensor([-0.2, -0.1]), action_high=torch.tensor([0.3, 0.4]))
    seen = []
    planner.rssm.prior_step = lambda s, b, a, noise=None: (seen.append(a), ToyLatentModel.prior_step(
        planner.rssm, s, b, a, noise))[1]
    action = planner.plan(*start())[0]
    all_actions = torch.stack(seen)
    assert (all_actions[..., 0] >= -0.2).all() and (all_actions[..., 0] <= 0.3).all()
    assert (all_actions[..., 1] >= -0.1).all() and (all_actions[..., 1] <= 0.4).all()
    torch.testing.assert_close(action, torch.tensor([0.3, -0.1]), atol=0.02, rtol=0)  # TARGET[0] clipped


def test_deterministic_given_a_seed_and_independent_of_the_global_stream():
    a = toy_planner(iterations=2, seed=7).plan(*start(3))
    torch.manual_seed(123)
    b = toy_planner(iterations=2, seed=7).plan(*start(3))
    c = toy_planner(iterations=2, seed=8).plan(*start(3))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_without_a_seed_the_global_stream_reproduces_the_plan():
    torch.manual_seed(5)
    a = toy_planner(iterations=2, seed=None).plan(*start())
    torch.manual_seed(5)
    b = toy_planner(iterations=2, seed=None).plan(*start())
    assert torch.equal(a, b)


def test_value_bootstrap_adds_the_value_at_the_horizon():
    class Value(nn.Module):
        def forward(self, state, belief):
            return state.sum(-1, keepdim=True) * 10

    plans = torch.rand(5, H, A) * 2 - 1
    plain, boot = toy_planner(), toy_planner(value=Value(), discount=0.5)
    rollout = plain.rollout(*(x.repeat(5, 1) for x in start()), plans, None)
    rewards = torch.stack([torch.stack([-((p[t] - TARGET[t]) ** 2).sum() for t in range(H)]) for p in plans])
    expected = sum(0.5**t * rewards[:, t] for t in range(H)) + 0.5**H * 10 * plans[:, -1].sum(-1)
    torch.testing.assert_close(boot.score(*rollout), expected)


def test_warm_start_shifts_the_previous_plan_and_resets_at_episode_starts():
    planner = toy_planner(warm_start=True, iterations=1, candidates=20, top_k=5)
    planner.plan(*start(2))
    previous = planner._plan.clone()
    mean = planner.initial_mean(2, torch.tensor([[False], [True]]), previous)
    torch.testing.assert_close(mean[0, :-1], previous[0, 1:])
    assert (mean[0, -1] == 0).all() and (mean[1] == 0).all()
    assert (toy_planner().initial_mean(2, None, previous) == 0).all()  # default: N(0, I) at every step


def test_refuses_more_elites_than_candidates():
    with pytest.raises(ValueError, match="top_k"):
        toy_planner(candidates=10, top_k=11)


# --- as a behaviour in the acting policy, on a real env ----------------------------------------------


def dmc_policy(behaviour_factory, noise=0.3):
    torch.manual_seed(0)
    env = make_dmc_env("cartpole", "swingup", from_pixels=False, episode_frames=40, seed=0)
    A_env = env.action_spec.shape[-1]
    env.append_transform(policy_carry_transform(TINY.world_model.latent.state_dim, TINY.world_model.rssm.belief_dim, A_env))
    wm = make_world_model("observation", tuple(env.observation_spec["observation"].shape), A_env, TINY)
    return env, wm, make_policy(wm, behaviour_factory(wm, env), env.action_spec, noise)


def small_planner(wm, env):
    return make_planner(wm, env.action_spec, horizon=3, candidates=16, top_k=4, iterations=2)


def test_planner_drives_a_torchrl_collector_with_the_actors_keys():
    env, wm, policy = dmc_policy(small_planner)
    collector = Collector(env, policy, frames_per_batch=6, total_frames=6, exploration_type=ExplorationType.RANDOM)
    data = next(iter(collector))
    collector.shutdown()
    assert data.shape == (6,) and data["action"].shape == (6, 1)
    assert (data["action"].abs() <= 1).all() and torch.isfinite(data["next", "reward"]).all()
    assert not torch.equal(data["belief"][1], data["belief"][2])  # the filter carries the latent

    env2, _, actor_policy = dmc_policy(lambda wm, env: make_actor(TINY.world_model.latent.state_dim + TINY.world_model.rssm.belief_dim,
                                                                  env.action_spec.shape[-1], TINY))
    actor_data = env2.rollout(2, actor_policy)
    assert set(data.exclude("collector").keys(True, True)) == set(actor_data.keys(True, True))


def test_planner_policy_is_noise_free_in_evaluation():
    env, wm, policy = dmc_policy(lambda wm, env: make_planner(wm, env.action_spec, horizon=3, candidates=16,
                                                              top_k=4, iterations=2, seed=0))
    td = env.reset()

    def act(kind, global_seed):
        torch.manual_seed(global_seed)  # the filter samples its posterior from the global stream
        with set_exploration_type(kind):
            out = policy(td.clone())
        policy.module[1].module._generator = None  # the planner's seeded stream restarts
        return out["action"]

    evaluation = act(ExplorationType.DETERMINISTIC, 0)
    torch.testing.assert_close(act(ExplorationType.DETERMINISTIC, 0), evaluation)
    noisy = act(ExplorationType.RANDOM, 0)
    assert not torch.allclose(noisy, evaluation)


# --- TorchRL's own CEMPlanner over our imagination env -------------------------------------------------


class ToyWorldModel(nn.Module):
    """The two parts make_imagination_env reads: ``rssm`` and ``reward_head``."""

    def __init__(self):
        super().__init__()
        self.rssm, self.reward_head = ToyLatentModel(), ToyReward()


def test_torchrl_cem_planner_over_our_imagination_env_finds_the_same_optimum():
    torch.manual_seed(0)
    env = make_imagination_env(ToyWorldModel())
    trl = CEMPlanner(env, planning_horizon=H, optim_steps=10, num_candidates=1000, top_k=100)
    td = TensorDict({"state": torch.zeros(3, A), "belief": torch.zeros(3, 1)}, [3])
    trl_action = trl(td.clone())["action"]
    ours = make_planner(ToyWorldModel(), horizon=H, candidates=1000, top_k=100, iterations=10, seed=0)
    our_action = ours(td.clone())["action"]
    expected = TARGET[0].expand(3, A)
    torch.testing.assert_close(trl_action, expected, atol=0.05, rtol=0)
    torch.testing.assert_close(our_action, expected, atol=0.05, rtol=0)


def test_torchrl_cem_planner_is_a_behaviour_of_our_acting_policy():
    """Swapping the other way: TorchRL's planner over our imagination env, after our filter, on a real env."""
    env, wm, policy = dmc_policy(lambda wm, env: CEMPlanner(make_imagination_env(wm), planning_horizon=3,
                                                            optim_steps=2, num_candidates=16, top_k=4))
    with set_exploration_type(ExplorationType.RANDOM):
        td = env.rollout(3, policy)
    assert td["action"].shape == (3, 1) and (td["action"].abs() <= 1).all()
