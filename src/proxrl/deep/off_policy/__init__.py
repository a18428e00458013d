"""Replay-based actor-critics: DPG, DDPG, TD3, SAC and the lecture's discrete off-policy actor-critic
(shared pieces in ``common``)."""
