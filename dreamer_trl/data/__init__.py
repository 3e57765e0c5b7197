"""Environments (the DeepMind Control Suite, vector envs) and the sequence replay buffer."""
