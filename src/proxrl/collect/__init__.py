"""Collectors: turn a policy into data (sampled trajectories in a finite MDP, environment rollouts)."""
