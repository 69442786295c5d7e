"""The Gymnasium envs: one scenario (`single.DrivingEnv`) and `B` of them batched
(`vector.BatchedDrivingEnv`), with their reward (`reward`) and termination (`termination`)
computed here once, above the backends' step."""
