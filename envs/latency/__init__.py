"""Latency models: how long the agent's compute took at each tick, per stage [s].

- `models`: the `LatencyModel` protocol (`sample` for one env, `sample_batch` for `B`)
  and its models `FixedLatency`, `ProfileLatency`, `MeasuredLatency`, `ScaledLatency`,
  `ShiftedLatency`, `EpisodeExtraLatency` (an extra delay drawn per episode,
  `draw_episode_extra`);
- `spec`: `parse_latency`, the `ClockConfig.latency` spec string -> a model, and the
  `*K` / `+SECONDS` / `+LOW..HIGH` suffix helpers (`split_scale`, `with_scale`,
  `split_extra`, `with_extra`, `split_extra_range`, `has_extra_range`, `base_spec`,
  `unshifted`);
- `profile_file`: `LatencyProfile` and its JSON file (`load_profile`, `save_profile`;
  format: docs/latency-profile.md);
- `errors`: reserved stage names, limits, `LatencySpecError` and `ProfileError`.
"""

from reflexdrive.envs.latency.errors import (
    ALLOWED_FORMS,
    EXTRA_STAGE,
    MAX_LATENCY_S,
    MAX_LATENCY_SCALE,
    TOTAL_STAGE,
    LatencySpecError,
    ProfileError,
)
from reflexdrive.envs.latency.models import (
    EpisodeExtraLatency,
    FixedLatency,
    LatencyModel,
    MeasuredLatency,
    ProfileLatency,
    ScaledLatency,
    ShiftedLatency,
    draw_episode_extra,
    synchronize_cuda,
)
from reflexdrive.envs.latency.profile_file import (
    PROFILE_FORMAT,
    PROFILE_VERSION,
    LatencyProfile,
    load_profile,
    save_profile,
)
from reflexdrive.envs.latency.spec import (
    base_spec,
    has_extra_range,
    parse_latency,
    split_extra,
    split_extra_range,
    split_scale,
    unshifted,
    with_extra,
    with_scale,
)

__all__ = [
    "ALLOWED_FORMS",
    "EXTRA_STAGE",
    "MAX_LATENCY_S",
    "MAX_LATENCY_SCALE",
    "PROFILE_FORMAT",
    "PROFILE_VERSION",
    "TOTAL_STAGE",
    "EpisodeExtraLatency",
    "FixedLatency",
    "LatencyModel",
    "LatencyProfile",
    "LatencySpecError",
    "MeasuredLatency",
    "ProfileError",
    "ProfileLatency",
    "ScaledLatency",
    "ShiftedLatency",
    "base_spec",
    "draw_episode_extra",
    "has_extra_range",
    "load_profile",
    "parse_latency",
    "save_profile",
    "split_extra",
    "split_extra_range",
    "split_scale",
    "synchronize_cuda",
    "unshifted",
    "with_extra",
    "with_scale",
]
