"""On-policy actor-critics: REINFORCE, NPG/TRPO, Q actor-critic, A2C, PPO (shared pieces in ``common``)."""
