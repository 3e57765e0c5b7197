"""TensorDict key names, defined once.

They follow TorchRL's Dreamer components so that pieces can be swapped:
``"state"`` is the stochastic state s_t, ``"belief"`` the deterministic GRU state h_t.

Data layout (one row per agent step t, time the last batch dimension ``[*B, T]``):

- ``PIXELS`` / ``OBSERVATION``: the observation o_t the agent saw at step t;
- ``ACTION``: the action a_t taken at step t (after exploration noise);
- ``PREV_ACTION``: a_{t-1} (zeros at an episode start), carried by the env for the policy;
- ``IS_INIT``: True on the first row of an episode;
- ``IS_LAST``: True on the row of an episode's final observation o_T, stored by the replay buffer after the row
  whose ``("next", "done")`` ended the episode (as the official drivers store the last step of an episode): its
  "prev_action" is a_{T-1}, its "action" zeros and its ``("next", ...)`` fields inert (zero reward, flags
  False), since no action follows; the final reward and terminal flag stay on row T-1, the targets of row T;
- ``("next", "reward")``: r_{t+1}, the reward summed over the repeated frames of a_t;
- ``("next", "done" | "terminated" | "truncated")``: end-of-episode flags after a_t;
- ``STREAM_IDS``: the env a row came from (its index in the collector's batch), stored by the replay buffer
  when windows follow each env's stream across episode ends (``schedule.replay_windows = "stream"``).

The next observation o_{t+1} is not stored: it is row t+1's observation (the final one o_T its own row).
"""

PIXELS = "pixels"
OBSERVATION = "observation"
ACTION = "action"
PREV_ACTION = "prev_action"
IS_INIT = "is_init"
IS_LAST = "is_last"
REWARD = "reward"
NEXT_REWARD = ("next", "reward")
DONE = "done"
TERMINATED = "terminated"
TRUNCATED = "truncated"
TRAJ_IDS = ("collector", "traj_ids")
STREAM_IDS = ("collector", "stream_ids")

ENCODED_LATENTS = "encoded_latents"
# the start carry of a replay window under ``world_model.loss.window_start = "replay_context"``: the stored
# posterior of the window's context row, read by the world model's observe
CONTEXT_STATE = ("context", "state")
CONTEXT_BELIEF = ("context", "belief")
STATE = "state"
BELIEF = "belief"
PRIOR_MEAN = "prior_mean"
PRIOR_STD = "prior_std"
POSTERIOR_MEAN = "posterior_mean"
POSTERIOR_STD = "posterior_std"
RECO_PIXELS = "reco_pixels"
RECO_OBSERVATION = "reco_observation"
STATE_VALUE = "state_value"
LAMBDA_TARGET = "lambda_target"

RECO_KEYS = {PIXELS: RECO_PIXELS, OBSERVATION: RECO_OBSERVATION}


class MissingKeysError(KeyError):
    """A TensorDict lacks keys a module reads; the message names them and what provides each.

    A KeyError (so ``except KeyError`` still catches it) whose message prints as written, not quoted.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
