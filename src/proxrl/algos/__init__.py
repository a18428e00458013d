"""Algorithms: short compositions of an estimator, a surrogate, a geometry and a solver."""
