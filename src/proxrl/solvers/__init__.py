"""Solvers of the proximal step: closed forms, natural (Fisher) solves, and inner gradient steps."""
