"""The worlds: what integrates one substep of the ego's commands and reports the state.

- `base`: the `Backend` protocol (what the clock, sensors and metrics need from a world).
- `highway`: `HighwayBackend`, highway-env's own classes, one world per instance (the
  reference).
- `regulation`: the intersection's right-of-way rules (highway-env's `RegulatedRoad`),
  which the highway backend runs at highway-env's cadence and the batched kernel mirrors.
- `batched`: `BatchedBackend`, `B` straight-road worlds as torch tensors, with two
  implementations of the substep behind one signature (`batched.torch`, `batched.numba`).
"""
