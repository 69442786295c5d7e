"""The Gymnasium envs: one scenario (`single.DrivingEnv`) and `B` of them batched
(`vector.BatchedDrivingEnv`)."""
