"""The exact and sampled table world: expert and bandit settings, finite MDPs, softmax tables and their
proximal steps (EW, PG, NPG in every form), API, and the same from sampled trajectories."""
