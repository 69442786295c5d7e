"""One substep of `B` worlds in torch: `step(params, state, commands, active=None) -> state`.

Vectorised over worlds and vehicle slots, on any torch device and float dtype. Files:
`dynamics` (the substep's phases and `step`), `vehicle` (bicycle, steering), `traffic` (IDM,
MOBIL, neighbours), `collision` (separating axes), `road` (lanes of straight roads).
"""

from reflexdrive.envs.backends.batched.torch.dynamics import step

__all__ = ["step"]
