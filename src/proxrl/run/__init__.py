"""Running experiments: run directories, metrics, statistics over seeds, plots."""
