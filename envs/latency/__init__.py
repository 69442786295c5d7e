"""Latency models: how long the agent's compute took at each tick, per stage [s].

- `models`: the `LatencyModel` protocol (`sample` for one env, `sample_batch` for `B`)
  and its models `FixedLatency`, `ProfileLatency`, `MeasuredLatency`, `ScaledLatency`,
  `ShiftedLatency`;
- `spec`: `parse_latency`, the `ClockConfig.latency` spec string -> a model, and the
  `*K` / `+SECONDS` suffix helpers (`split_scale`, `with_scale`, `split_extra`,
  `with_extra`, `base_spec`, `unshifted`);
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
    FixedLatency,
    LatencyModel,
    MeasuredLatency,
    ProfileLatency,
    ScaledLatency,
    ShiftedLatency,
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
    parse_latency,
    split_extra,
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
    "load_profile",
    "parse_latency",
    "save_profile",
    "split_extra",
    "split_scale",
    "synchronize_cuda",
    "unshifted",
    "with_extra",
    "with_scale",
]
