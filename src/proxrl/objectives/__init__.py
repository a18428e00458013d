"""Surrogates ``L_k(θ)`` built from an advantage estimate."""
