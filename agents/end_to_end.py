"""The end-to-end stacks: one network from sensors to controls, one forward pass per tick.

`EndToEndAgent(policy)` drives `N` envs with a `policies.networks.DrivingPolicy` (`cnn`,
`gru`, `lstm`, `transformer`): each tick, the observations the policy reads (`bev`, `ego`
and, for policies trained with it, `lidar`) of all envs go to the device together (through
pinned staging buffers on CUDA) and one forward pass under `torch.inference_mode` returns
the `(N, 2)` actions. The recurrent state lives on the device, one column per env, zeroed
per env by `reset(done)`. Its single stage, "policy", is timed from the observations in
host memory to the actions back there (CUDA-synchronised, `StageTimer`). On the CPU, a
batch of whole 64-row chunks runs its byte-identical rows once (`agents.distinct_rows`:
a twin before its hazard is its real episode's row), with the bits of every row.

On CUDA two options make the call cheaper: `bf16` (autocast to bfloat16; the actions stay
float32 and inside their bounds) and `cuda_graph` (the forward pass captured once per
batch size in a `torch.cuda.CUDAGraph` with static input, state and output buffers, then
replayed: no per-kernel launch cost; a new batch size captures a new graph).

`explain = True` adds what the policy can show of its decision to `Decision.products`
(the transformer: `"attention"`, `(N, H / p, W / p)` float32, its last layer's attention
over the bev patches); it runs the eager path, so leave it off when timing.

`policy_spec(sensors)` is the observation spec a policy checkpoint records and is checked
against: the `bev`, `ego` and `lidar` shapes and dtypes, the sensor fields that place the
raster in the ego frame, and the ego feature names (a checkpoint is checked on the entries
it records: one trained without the lidar records none). `build_end_to_end` is the
registry's factory (`make_agent("cnn", checkpoint=...)`) for every end-to-end stack: an
architecture's name or a named variant with its own shipped checkpoint (`cnn-blind`,
`policies.registry.POLICY_STACKS`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from reflexdrive.agents.base import Decision, Info, Observation, StageTimer
from reflexdrive.agents.distinct_rows import distinct_rows, padded_rows
from reflexdrive.agents.staged.learned_perception import SPEC_SENSOR_FIELDS
from reflexdrive.envs.clock.timing import TIMING_FEATURES
from reflexdrive.envs.config import EGO_FEATURES, SensorConfig
from reflexdrive.envs.road_map import ROUTE_TARGETS_M
from reflexdrive.policies.checkpoint import Checkpoint, CheckpointError
from reflexdrive.policies.encoders import ROW_CHUNK
from reflexdrive.policies.networks import DrivingPolicy, State
from reflexdrive.policies.registry import POLICY_STACKS as _POLICY_STACKS
from reflexdrive.policies.registry import (
    check_stack_policy,
    load_policy,
    missing_checkpoint,
    shipped_checkpoint,
)

from reflexdrive.common.devices import resolve_device
from reflexdrive.common.validation import ConfigError

POLICY_STACKS = tuple(_POLICY_STACKS)
"""The end-to-end stacks: cnn, gru, lstm, transformer (one per registry policy) and the
named variants of `policies.registry.POLICY_STACKS` (cnn-blind)."""

_WARMUP_RUNS = 3
"""Eager runs on a side stream before a CUDA graph is captured (cuDNN / cuBLAS set-up)."""


def policy_spec(sensors: SensorConfig | None = None) -> dict[str, Any]:
    """The observation spec of an end-to-end policy for envs with these sensors::

        {"observation": {"bev": {"shape": [C, H, W], "dtype": "uint8"},
                         "ego": {"shape": [8], "dtype": "float32"},
                         "lidar": {"shape": [beams, 2], "dtype": "float32"},
                         "route": {"shape": [K, 2], "dtype": "float32"},
                         "timing": {"shape": [4], "dtype": "float32"}},
         "sensors": {"range_m": ., "bev_behind_m": ., "bev_half_width_m": .,
                     "bev_m_per_px": .},
         "ego_features": ["speed_mps", ...]}

    Save training checkpoints with it (`policies.registry.save_policy(path, policy,
    policy_spec(sensors), meta)`); `load_policy(path, spec=policy_spec(sensors))` then
    refuses a checkpoint trained on other observations.
    """
    sensors = SensorConfig() if sensors is None else sensors
    return {"observation": {"bev": {"shape": list(sensors.bev_shape), "dtype": "uint8"},
                            "ego": {"shape": [len(EGO_FEATURES)], "dtype": "float32"},
                            "lidar": {"shape": [sensors.lidar_beams, 2],
                                      "dtype": "float32"},
                            "route": {"shape": [len(ROUTE_TARGETS_M), 2],
                                      "dtype": "float32"},
                            "timing": {"shape": [len(TIMING_FEATURES)], "dtype": "float32"}},
            "sensors": {name: float(getattr(sensors, name)) for name in SPEC_SENSOR_FIELDS},
            "ego_features": list(EGO_FEATURES)}


class EndToEndAgent:
    """A `DrivingPolicy` driving `N` envs: one batched forward pass per tick.

    Args:
        policy: the network (moved to `device`, put in eval mode).
        device: "auto" (CUDA when available, else CPU), "cpu" or "cuda".
        bf16: bfloat16 autocast (CUDA only).
        cuda_graph: capture the forward pass in a CUDA graph per batch size (CUDA only).
        name: the stack's name (default: the policy's registry name).
        checkpoint: the checkpoint the policy came from (its path names errors; its
            `meta` says how it was trained), if any.

    Attributes:
        explain: when True, `act` returns the policy's explanation products (e.g. the
            transformer's `"attention"`); eager path, slower.
        state: the recurrent state, `(layers, N, hidden)` tensors on the device (`()` for
            feed-forward policies, None before the first `act`).
    """

    stage_names = ("policy",)

    def __init__(self, policy: DrivingPolicy, device: str = "auto", bf16: bool = False,
                 cuda_graph: bool = False, name: str | None = None,
                 checkpoint: Checkpoint | None = None):
        if not isinstance(policy, DrivingPolicy):
            raise ConfigError("policy", type(policy).__name__,
                              "must be a policies.networks.DrivingPolicy")
        self.device = resolve_device(device)
        for option, value in (("bf16", bf16), ("cuda_graph", cuda_graph)):
            if not isinstance(value, bool):
                raise ConfigError(option, value, "must be True or False")
            if value and self.device.type != "cuda":
                raise ConfigError(option, value, f"needs a CUDA device (device is "
                                                 f"{self.device.type}); use device='cuda'")
        self.policy = policy.to(self.device).eval()
        self.bf16 = bf16
        self.cuda_graph = cuda_graph
        self.name = name or policy.name
        self.checkpoint = checkpoint
        self.explain = False
        self.state: State | None = None
        self._inputs = {key: (tuple(entry["shape"]), np.dtype(entry["dtype"]))
                        for key, entry in policy.obs_spec.items()}
        self._pinned: dict[str, torch.Tensor] = {}
        self._graph: _CapturedStep | None = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "auto",
                        sensors: SensorConfig | None = None, **options: Any
                        ) -> "EndToEndAgent":
        """The agent of the policy saved at `path` (see `policies.registry.load_policy`).

        Args:
            path: a policy checkpoint.
            device: "auto", "cpu" or "cuda".
            sensors: the env's sensors: the checkpoint must have been trained on the same
                observations (`policy_spec(sensors)`). None checks only the observation
                shapes, at each tick.
            **options: `bf16`, `cuda_graph`, `name` (see the class).

        Raises:
            CheckpointError: see `load_policy`.
            ConfigError: a bad device or option.
        """
        resolved = resolve_device(device)
        spec = None if sensors is None else policy_spec(sensors)
        policy, checkpoint = load_policy(path, spec=spec, device=resolved)
        return cls(policy, device=device, checkpoint=checkpoint, **options)

    # -- Agent protocol -------------------------------------------------------------------

    def reset(self, done: np.ndarray) -> None:
        """Zero the recurrent state of the envs where `done` `(N,)` is True (only those)."""
        done = np.asarray(done, dtype=bool)
        if not self.state or self.state[0].shape[1] != done.shape[0] or not done.any():
            return                       # stateless, or a new batch size: zeros at next act
        with torch.inference_mode():
            mask = torch.from_numpy(done).to(self.device)
            for buffer, value in zip(self.state, self.policy.reset_state(self.state, mask)):
                buffer.copy_(value)

    def act(self, obs: Observation, info: Info) -> Decision:
        """Actions `(N, 2)` float32 for all envs from one forward pass; `info` is unused
        (an end-to-end policy sees only its sensors)."""
        arrays = self._arrays(obs)
        n = arrays["bev"].shape[0]
        timer = StageTimer()
        products: dict[str, Any] = {}
        with timer("policy"), torch.inference_mode():
            if self.state is None or (self.state and self.state[0].shape[1] != n):
                self.state = self.policy.initial_state(n, self.device)
                self._graph = None
            if self.cuda_graph and not self.explain:
                action = self._graph_step(arrays)
            elif self.explain:
                inputs = {key: self._to_device(key, array) for key, array in arrays.items()}
                with self._autocast():
                    action, state, explained = self.policy.explain(inputs, self.state)
                for buffer, value in zip(self.state, state):
                    buffer.copy_(value)
                products = {key: value.float().cpu().numpy() for key, value in explained.items()}
            else:
                action = self._eager_step(arrays)
            actions = action.float().cpu().numpy()
        return Decision(actions=actions.astype(np.float32, copy=False),
                        stage_latency_s=timer.latencies, products=products)

    # -- internals ------------------------------------------------------------------------

    def _arrays(self, obs: Observation) -> dict[str, np.ndarray]:
        """The arrays the policy reads (`policy.obs_keys`), contiguous, checked against
        its spec: `(N, *shape)` each, the same `N`; bev uint8, the others cast to float32."""
        arrays = {key: np.asarray(obs[key]) for key in self._inputs if key in obs}
        n = arrays["bev"].shape[0] if "bev" in arrays and arrays["bev"].ndim else -1
        bad = [key for key, (shape, dtype) in self._inputs.items()
               if key not in arrays or tuple(arrays[key].shape) != (n, *shape)
               or (dtype == np.uint8 and arrays[key].dtype != np.uint8)]
        if bad:
            wanted = ", ".join(f"{dtype} {key} (N, {', '.join(map(str, shape))})"
                               for key, (shape, dtype) in self._inputs.items())
            got = ", ".join(f"{arrays[key].dtype} {key} {tuple(arrays[key].shape)}"
                            if key in arrays else f"no {key}" for key in self._inputs)
            problem = f"the {self.policy.name} policy reads {wanted}; got {got}"
            if self.checkpoint is not None:
                raise CheckpointError(self.checkpoint.path, "trained on other observations: "
                                      + problem)
            raise ValueError(problem)
        return {key: np.ascontiguousarray(array, dtype=self._inputs[key][1])
                for key, array in arrays.items()}

    def _eager_step(self, arrays: dict[str, np.ndarray]) -> torch.Tensor:
        """The forward pass for all rows, the state updated in place.

        On the CPU, when the batch is whole `ROW_CHUNK`-row chunks and some rows repeat
        others (`distinct_rows`: byte-identical in every input the policy reads and in
        the state), it runs each distinct row once, padded with copies to whole chunks,
        and copies the outputs and states to the repeats; where that saves no chunk,
        every row runs. The rows' bits are those of the call with every row: the encoder
        runs chunks of `ROW_CHUNK` rows either way (the same kernel shapes), and its
        kernels, the recurrent cell's and the head's compute each row alone for any
        number of rows that is a multiple of `ROW_CHUNK` (tests pin it). Other row counts
        do not: a chunk of 1-3 rows, or at two threads of 5-7 or 9-11, takes kernel paths
        with other last bits, hence whole chunks only. On CUDA the kernels chosen depend
        on the batch size: every row runs.
        """
        rows = arrays["bev"].shape[0]
        selection = None
        if self.device.type == "cpu" and rows and rows % ROW_CHUNK == 0:
            selection = self._distinct(arrays, rows)
        if selection is None:
            inputs = {key: self._to_device(key, array) for key, array in arrays.items()}
            with self._autocast():
                action, state = self.policy(inputs, self.state)
            for buffer, value in zip(self.state, state):
                buffer.copy_(value)
            return action
        computed, inverse = selection
        inputs = {key: torch.from_numpy(array[computed]) for key, array in arrays.items()}
        index = torch.from_numpy(computed)
        action, state = self.policy(inputs, tuple(s[:, index] for s in self.state))
        back = torch.from_numpy(inverse)
        for buffer, value in zip(self.state, state):
            torch.index_select(value, 1, back, out=buffer)
        return action[back]

    def _distinct(self, arrays: dict[str, np.ndarray], rows: int
                  ) -> tuple[np.ndarray, np.ndarray] | None:
        """`(rows to compute, inverse)`: `distinct_rows` of the inputs and the state's rows,
        `padded_rows` to whole chunks; None when that is every row's chunks."""
        keyed = [array for key, array in arrays.items() if key != "bev"]
        keyed += [s.transpose(0, 1).reshape(rows, -1).numpy() for s in self.state]
        first, inverse = distinct_rows(keyed, checked=[arrays["bev"]])
        computed = padded_rows(first, ROW_CHUNK)
        if computed.size >= rows:
            return None
        return computed, inverse

    def _staged(self, key: str, array: np.ndarray) -> torch.Tensor:
        """`array` in a pinned host buffer (reused while the shape holds; the previous
        tick's copy out of it has finished: `act` waits for its actions)."""
        tensor = torch.from_numpy(array)
        pinned = self._pinned.get(key)
        if pinned is None or pinned.shape != tensor.shape:
            pinned = self._pinned[key] = torch.empty(tensor.shape, dtype=tensor.dtype,
                                                     pin_memory=True)
        pinned.copy_(tensor)
        return pinned

    def _to_device(self, key: str, array: np.ndarray) -> torch.Tensor:
        """`array` on the device: as is on the CPU, through pinned memory on CUDA."""
        if self.device.type != "cuda":
            return torch.from_numpy(array)
        return self._staged(key, array).to(self.device, non_blocking=True)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.bf16:
            return contextlib.nullcontext()
        # the autocast weight cache must stay off while a graph is captured
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=not self.cuda_graph)

    def _graph_step(self, arrays: dict[str, np.ndarray]) -> torch.Tensor:
        """Replay the captured forward pass (capturing it first for a new batch size)."""
        batch = arrays["bev"].shape[0]
        if self._graph is None or self._graph.batch != batch:
            self._graph = _CapturedStep(self, batch)
        graph = self._graph
        for key, array in arrays.items():
            graph.inputs[key].copy_(self._staged(key, array), non_blocking=True)
        graph.graph.replay()
        return graph.action


class _CapturedStep:
    """One forward pass of `agent.policy` for `batch` envs captured in a CUDA graph.

    Static buffers: `inputs` (the observations on the device), the agent's state tensors (read and
    updated in place by the graph) and `action` (written by each replay).
    """

    def __init__(self, agent: EndToEndAgent, batch: int):
        device = agent.device
        self.batch = batch
        self.inputs = {key: torch.zeros((batch, *shape), device=device,
                                        dtype=torch.from_numpy(np.zeros(0, dtype)).dtype)
                       for key, (shape, dtype) in agent._inputs.items()}
        state = agent.state
        saved = tuple(s.clone() for s in state)

        def step() -> torch.Tensor:
            with agent._autocast():
                action, new_state = agent.policy(self.inputs, state)
            for buffer, value in zip(state, new_state):
                buffer.copy_(value)
            return action

        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(_WARMUP_RUNS):
                step()
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.action = step()
        for buffer, value in zip(state, saved):       # the warm-up runs advanced the state
            buffer.copy_(value)


def build_end_to_end(policy: str, checkpoint: str | os.PathLike | None = None,
                     device: str = "auto", bf16: bool = False, cuda_graph: bool = False,
                     sensors: SensorConfig | None = None, seed: int = 0,
                     **_: Any) -> EndToEndAgent:
    """The end-to-end stack `policy` ("cnn", "gru", "lstm", "transformer", "cnn-blind").

    Args:
        policy: the stack (`policies.registry.POLICY_STACKS`); the checkpoint must hold its
            architecture (and, for a variant such as cnn-blind, read `obs["timing"]` as
            the variant says). The agent is named after the stack.
        checkpoint: a policy checkpoint file; None loads the shipped
            `policies/checkpoints/<policy>.pt`.
        device, bf16, cuda_graph: see `EndToEndAgent`.
        sensors: the env's sensors, checked against the checkpoint (None: shapes only).
        seed: unused (inference is deterministic); accepted like every stack's options.
        **_: the staged stack's options (perception, controller, ...), ignored.

    Raises:
        CheckpointError: the shipped checkpoint is missing (how to make it is in the
            message), or the file cannot be used (see `load_policy`), or it holds another
            policy than the stack's.
        ConfigError: an unknown stack or a bad device option.
    """
    if policy not in POLICY_STACKS:
        raise ConfigError("stack", policy, "allowed end-to-end stacks are "
                          + ", ".join(POLICY_STACKS))
    if checkpoint is None:
        path = shipped_checkpoint(policy)
        problem = missing_checkpoint(policy)
        if problem is not None:
            raise CheckpointError(path, problem)
    else:
        path = Path(checkpoint)
    agent = EndToEndAgent.from_checkpoint(path, device=device, sensors=sensors, bf16=bf16,
                                          cuda_graph=cuda_graph, name=policy)
    check_stack_policy(policy, agent.policy, path)
    return agent
