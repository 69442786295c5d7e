"""The worlds: what integrates one substep of the ego's commands and reports the state.

- `base`: the `Backend` protocol (what the clock, sensors and metrics need from a world).
- `highway`: `HighwayBackend`, highway-env's own classes, one world per instance (the
  reference).
- `batched`: `BatchedBackend`, `B` straight-road worlds as torch tensors, with two
  implementations of the substep behind one signature (`batched.torch`, `batched.numba`).
"""
