"""Policies: the softmax table (π, ∇log π, Fisher blocks) and neural policy heads."""
