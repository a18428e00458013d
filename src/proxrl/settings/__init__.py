"""Settings: where the data comes from — reward models, finite MDPs, environments."""
