"""Geometries ``D(θ, θ_k)``: Euclidean and KL (with its second-order form, the Fisher metric)."""
