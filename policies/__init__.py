"""Torch models and their safe checkpoints (imports neither `envs` nor `agents`).

- `policies.checkpoint`: save/load checkpoints as plain tensors + JSON metadata, read only
  with `torch.load(weights_only=True)`; `CheckpointError` for every unusable file.
- `policies.detector`: the CenterNet-style bev vehicle detector of the `learned`
  perception, its decode / target encoding / loss; the trained weights ship in
  `policies/checkpoints/detector.pt`.
- `policies.encoders`, `policies.networks`: the end-to-end driving policies (`cnn`, `gru`,
  `lstm`, `transformer`): raw `bev` and `ego` in, bounded `[acceleration, steering]` out,
  recurrent state per env; `policies.registry`: `build(name, obs_spec, **config)`,
  `save_policy` / `load_policy` (checkpoints of kind "policy", shipped as
  `policies/checkpoints/<name>.pt`).
"""
