"""The lecture's experiments as commands that write plots, metrics and a summary."""
