"""The function-approximation world: networks and distribution heads, environments (gymnax traced,
Gymnasium host-side), the collect loop, normalisation, replay, and the on-policy and off-policy algorithms."""
