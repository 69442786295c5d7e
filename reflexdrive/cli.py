"""`reflexdrive`: the command line.

    reflexdrive scenarios
    reflexdrive run --scenario lead-brake --stack staged --episodes 20 --seed 0 \\
        --mode realtime --latency fixed:0.03 --budget 0.1 --envs 2 --out runs/x
    reflexdrive compare --stacks staged,cnn --episodes 20 --extra-latency 0,0.1 \\
        --out runs/compare
    reflexdrive protocol --suite ncap-ccr --stacks staged,cnn --latency fixed:0.03 \\
        --out runs/ncap

Bad input exits with status 2 and one line naming the field and the allowed values.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from reflexdrive.common.validation import ConfigError, field_default, field_help
from reflexdrive.policies.checkpoint import CheckpointError
from reflexdrive.train.cli import cmd_train

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line `reflexdrive: error: ...` (exit 2)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _stage_budgets(text: str) -> dict[str, float]:
    """Parse `perception=0.02,planning=0.01` into a dict of seconds."""
    budgets: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, equals, value = part.partition("=")
        try:
            if not equals:
                raise ValueError
            budgets[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r}: expected STAGE=SECONDS[,STAGE=SECONDS...]") from None
    return budgets


def _scenario_overrides(values: Sequence[str]) -> dict[str, object]:
    """Parse repeated `--set FIELD=VALUE` (VALUE in JSON: 8, [1, 2], true) into overrides."""
    overrides: dict[str, object] = {}
    for item in values:
        name, equals, raw = item.partition("=")
        if not equals or not name:
            raise ConfigError("--set", item, "expected FIELD=VALUE, e.g. --set duration_s=8")
        try:
            value: object = json.loads(raw)
        except ValueError:
            value = raw                              # a bare string, e.g. a lane name
        if isinstance(value, list):
            value = tuple(value)
        overrides[name.strip()] = value
    return overrides


def build_parser() -> argparse.ArgumentParser:
    from reflexdrive.agents.registry import (
        END_TO_END_STACKS,
        PERCEPTIONS,
        PLANNERS,
        TRACKERS,
        stack_names,
    )
    from reflexdrive.agents.staged import CONTROLLERS
    from reflexdrive.compare.config import (
        DEMO_EPISODES,
        DEMO_EXTRA_LATENCY_S,
        DEMO_OUT,
        DEMO_SWEEP_STACKS,
        CompareConfig,
    )
    from reflexdrive.envs.scenarios import SCENARIOS
    from reflexdrive.run.profile import ProfileConfig
    from reflexdrive.run.runner import RunConfig

    def run_default(name: str) -> object:
        return field_default(RunConfig, name)

    def profile_default(name: str) -> object:
        return field_default(ProfileConfig, name)

    def compare_default(name: str) -> object:
        return field_default(CompareConfig, name)

    parser = _Parser(
        prog="reflexdrive",
        description="Driving stacks on a clock: while an agent thinks, the world keeps "
                    "moving. Run scenarios, measure reaction times and what latency costs.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    commands.add_parser("scenarios", help="list the scenarios, one line each")
    stacks = (*stack_names(), "package.module:factory (docs/your-stack.md)")
    stage = ", or package.module:factory"

    run = commands.add_parser(
        "run", help="roll out a stack on a scenario and write episodes.csv and ticks.csv",
        description="Roll out a driving stack over seeded episodes of one scenario, on the "
                    "tick clock, and write one row per episode (reaction time, outcomes, "
                    "latency) to OUT/episodes.csv and one row per tick to OUT/ticks.csv. "
                    "Re-running with the same --out resumes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    run.add_argument("--scenario", default=run_default("scenario"),
                     help="scenario: " + ", ".join(SCENARIOS))
    run.add_argument("--stack", default=run_default("stack"),
                     help="driving stack: " + ", ".join(stacks))
    run.add_argument("--perception", default=run_default("perception"),
                     help="perception of the staged stack: " + ", ".join(PERCEPTIONS) + stage)
    run.add_argument("--tracker", default=run_default("tracker"),
                     help="tracker of the staged stack: " + ", ".join(TRACKERS) + stage)
    run.add_argument("--planner", default=run_default("planner"),
                     help="planner of the staged stack: " + ", ".join(PLANNERS) + stage)
    run.add_argument("--controller", default=run_default("controller"),
                     help="steering controller of the staged stack: " + ", ".join(CONTROLLERS)
                          + stage)
    run.add_argument("--episodes", type=int, default=run_default("episodes"),
                     help="number of episodes")
    run.add_argument("--seed", type=int, default=run_default("seed"),
                     help="first scenario seed; episode i uses seed+i")
    run.add_argument("--mode", default=run_default("mode"),
                     help="realtime: the world moves while the agent computes; "
                          "lockstep: the world waits (the zero-latency baseline)")
    run.add_argument("--latency", default=run_default("latency"),
                     help="latency model: fixed:SECONDS, fixed:STAGE=SECONDS,..., "
                          "profile:PATH (see docs/latency-profile.md), measured (wall clock); "
                          "any may end in *K, then +SECONDS or +LOW..HIGH (an extra delay "
                          "drawn per episode)")
    run.add_argument("--budget", type=float, default=run_default("budget_s"),
                     help="compute budget per tick [s] (default: one tick)")
    run.add_argument("--stage-budgets", type=_stage_budgets, default=None,
                     metavar="STAGE=S,...", help="per-stage budgets [s]")
    run.add_argument("--on-overrun", default=run_default("on_overrun"),
                     help="what an overrun does: record, terminate, raise")
    run.add_argument("--execution", default=run_default("execution"),
                     help="sequential: a decision's stages run one after another; pipelined: "
                          "each stage on its own processor (ROS nodes), frames overlap")
    run.add_argument("--envs", type=int, default=run_default("envs"),
                     help="envs run side by side (highway backend: worker processes; "
                          "batched backend: one torch batch)")
    run.add_argument("--backend", default=run_default("backend"),
                     help="world backend: highway (highway-env), batched (torch, straight "
                          "roads: highway, lead-brake, cut-in, stopped-vehicle), auto "
                          "(batched where the scenario has it)")
    run.add_argument("--device", default=run_default("device"),
                     help="torch device of the batched backend and of the stack's networks: "
                          "cpu, cuda, auto")
    run.add_argument("--checkpoint", default=run_default("checkpoint"), metavar="PATH",
                     help="policy checkpoint of an end-to-end stack ("
                          + ", ".join(END_TO_END_STACKS) + "); default: the shipped "
                          "policies/checkpoints/STACK.pt")
    run.add_argument("--simulation-frequency", type=int,
                     default=run_default("simulation_frequency"), help="substeps per second")
    run.add_argument("--policy-frequency", type=int, default=run_default("policy_frequency"),
                     help="ticks per second")
    run.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                     help="override a scenario config field (repeatable; JSON values), e.g. "
                          "duration_s=8 or onset_s=[2,3]")
    run.add_argument("--no-twins", action="store_true",
                     help="do not run the hazard-removed twin of each hazard episode: only "
                          "brake_onset_s is measured, reaction_time_s (the departure from "
                          "the twin's commands) stays empty; halves the simulation")
    run.add_argument("--out", required=True, help="output directory")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    demo = commands.add_parser(
        "demo", help="the main job, small: compare the staged stack with the shipped "
                     "end-to-end policies on the hazard scenarios, write report.html",
        description="A `reflexdrive compare` sized to answer: the staged stack "
                    "(sequential and pipelined), every end-to-end policy with a shipped "
                    "checkpoint (cnn, gru, transformer) and the two UN R157 reference "
                    "drivers (reference-driver, r157-regulation) on lead-brake, cut-in and "
                    "stopped-vehicle, realtime, at their profiled latency, with at least "
                    "100 critical episodes per cell (9 s episodes); plus the staged "
                    "stack's latency cost curve over the extra latencies. Writes "
                    "OUT/episodes.csv, OUT/summary.csv, OUT/report.html and prints the "
                    "headline table and the report's sentences. Re-running resumes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--episodes", type=int, default=DEMO_EPISODES, help="episodes per cell")
    demo.add_argument("--seed", type=int, default=compare_default("seed"),
                      help="first scenario seed")
    demo.add_argument("--extra-latency", default=shown(DEMO_EXTRA_LATENCY_S),
                      help="extra latencies [s] on top of the own latency of "
                           + ", ".join(DEMO_SWEEP_STACKS) + " (its latency cost curve)")
    demo.add_argument("--video", type=int, default=compare_default("video"),
                      help="record the first K episodes of each stack x scenario x mode")
    demo.add_argument("--out", default=DEMO_OUT, help="output directory")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    profile = commands.add_parser(
        "profile", help="time each stage of a stack at batch size 1; write a latency profile",
        description="Drive seeded episodes with one env (lockstep, batch size 1, as on a "
                    "car's computer), time every stage of every decision on this machine "
                    "(CUDA-synchronised on a GPU), print p50/p99 per stage and write the "
                    "samples as a latency profile the clock replays with "
                    "--latency profile:OUT.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    profile.add_argument("--stack", default=profile_default("stack"),
                         help="stack: " + ", ".join(stacks))
    profile.add_argument("--perception", default=run_default("perception"),
                         help="perception of the staged stack: " + ", ".join(PERCEPTIONS)
                              + stage)
    profile.add_argument("--tracker", default=run_default("tracker"),
                         help="tracker of the staged stack: " + ", ".join(TRACKERS) + stage)
    profile.add_argument("--planner", default=run_default("planner"),
                         help="planner of the staged stack: " + ", ".join(PLANNERS) + stage)
    profile.add_argument("--controller", default=run_default("controller"),
                         help="steering controller of the staged stack: "
                              + ", ".join(CONTROLLERS) + stage)
    profile.add_argument("--scenario", default=profile_default("scenario"),
                         help="scenario driven while timing")
    profile.add_argument("--episodes", type=int, default=profile_default("episodes"),
                         help="episodes driven")
    profile.add_argument("--seed", type=int, default=profile_default("seed"),
                         help="first scenario seed")
    profile.add_argument("--warmup", type=int, default=profile_default("warmup"),
                         help="decisions dropped at the start (JIT, caches)")
    profile.add_argument("--execution", default=profile_default("execution"),
                         help="how the stages will run: sequential or pipelined (adds the "
                              "slowest stage, which sets the pipelined decision rate)")
    profile.add_argument("--device", default=profile_default("device"),
                         help="torch device: cpu, cuda, auto")
    profile.add_argument("--checkpoint", default=run_default("checkpoint"), metavar="PATH",
                         help="policy checkpoint of an end-to-end stack (default: the shipped "
                              "one)")
    profile.add_argument("--threads", type=int, default=1,
                         help="torch CPU threads of the profiled stack (a car's computer "
                              "gives the stack a core; more only contend on a shared "
                              "machine)")
    profile.add_argument("--out", required=True, help="profile file to write (JSON)")
    profile.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_compare_parser(commands, stacks, SCENARIOS)
    _add_protocol_parser(commands, stacks, PERCEPTIONS, CONTROLLERS)
    from reflexdrive.train.cli import add_train_parser
    add_train_parser(commands)
    return parser


def shown(value: object) -> str:
    """A default as the command line spells it: a tuple comma-separated, floats as `%g`."""
    if isinstance(value, (tuple, list)):
        return ",".join(shown(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def compare_help(name: str, text: str | None = None, default: str | None = None) -> str:
    """The help of the compare option of `CompareConfig` field `name`: `text` (else the
    field's help) and "(default X)", X the field's default (or `default`, a sentence for
    a None that means something)."""
    from reflexdrive.compare.config import CompareConfig

    text = field_help(CompareConfig, name) if text is None else text
    if default is None:
        default = shown(field_default(CompareConfig, name))
    return f"{text} (default {default})"


def _add_compare_parser(commands, stacks, scenarios) -> None:
    """`reflexdrive compare`. Every option's parser default is None (the flag was not given,
    so a --config file's value or `CompareConfig`'s default applies); the help shows
    `CompareConfig`'s default."""
    from reflexdrive.compare.config import (
        BATCHED_ENVS,
        EXECUTORS,
        HIGHWAY_ENVS,
        MODES,
        PROFILED_ENVS,
    )
    from reflexdrive.run.runner import BACKENDS

    compare = commands.add_parser(
        "compare", help="every stack on the same seeds, scenarios, modes and extra "
                        "latencies: episodes.csv and summary.csv",
        description="Run every stack on the same seeded episodes of every scenario, in "
                    "lockstep and realtime, at its own latency plus each extra latency, "
                    "and write OUT/episodes.csv (one row per episode), OUT/decisions.csv "
                    "(one row per decision) and OUT/summary.csv (per stack x scenario x "
                    "mode x extra latency: reaction time with bootstrap 95% intervals, "
                    "collision rate with its Wilson interval, min TTC, progress, jerk, "
                    "latency p50/p99, overrun rate). Each cell runs into "
                    "OUT/cells/STACK/SCENARIO/MODE+EXTRAs/; re-running with the same "
                    "--out resumes. Flags override --config (TOML with the same keys as "
                    "reflexdrive.compare.config.CompareConfig); each option says its "
                    "default. Columns: docs/compare.md.")
    compare.add_argument("--config", default=None, metavar="TOML",
                         help="read the settings from a TOML file (keys: the "
                              "CompareConfig fields; unknown keys are an error)")
    compare.add_argument("--stacks", default=None, metavar="A,B,..",
                         help=compare_help("stacks", "stacks, from: " + ", ".join(stacks)))
    compare.add_argument("--scenarios", default=None, metavar="A,B,..",
                         help=compare_help("scenarios",
                                           "scenarios, from: " + ", ".join(scenarios)))
    compare.add_argument("--episodes", type=int, default=None, help=compare_help("episodes"))
    compare.add_argument("--seed", type=int, default=None, help=compare_help("seed"))
    compare.add_argument("--modes", default=None, metavar="A,B",
                         help=compare_help("modes", "clock modes: " + ", ".join(MODES)))
    compare.add_argument("--latency", default=None, help=compare_help("latency"))
    compare.add_argument("--latency-scale", default=None, metavar="K,K,..",
                         help=compare_help("latency_scale", "factors K of each stack's own "
                                           "latency (a computer K times slower), one cell "
                                           "each; with --extra-latency: every pair"))
    compare.add_argument("--extra-latency", default=None, metavar="S,S,..",
                         help=compare_help("extra_latency_s", "extra delays [s] on top of "
                                           "each stack's latency, one cell each"))
    compare.add_argument("--budget", type=float, default=None, help=compare_help("budget_s"))
    compare.add_argument("--execution", default=None, metavar="A,B",
                         help=compare_help("execution", "sequential and/or pipelined (each "
                                           "stage on its own processor), one cell each; "
                                           "pipelined only in realtime, for stacks with "
                                           "several stages"))
    compare.add_argument("--envs", type=int, default=None,
                         help=compare_help("envs", default=f"1 with measured latency, else "
                                           f"{PROFILED_ENVS} (profiled) or {BATCHED_ENVS} "
                                           f"batched / {HIGHWAY_ENVS} highway"))
    compare.add_argument("--backend", default=None,
                         help=compare_help("backend", "world backend: " + ", ".join(BACKENDS)))
    compare.add_argument("--device", default=None,
                         help=compare_help("device", "torch device: cpu, cuda, auto"))
    compare.add_argument("--perception", default=None, help=compare_help("perception"))
    compare.add_argument("--tracker", default=None, help=compare_help("tracker"))
    compare.add_argument("--planner", default=None, help=compare_help("planner"))
    compare.add_argument("--controller", default=None, help=compare_help("controller"))
    compare.add_argument("--checkpoint", action="append", default=None,
                         metavar="STACK=PATH",
                         help="policy checkpoint of an end-to-end stack (repeatable; "
                              "default: the shipped policies/checkpoints/STACK.pt)")
    compare.add_argument("--set", action="append", default=None, metavar="FIELD=VALUE",
                         help="override a scenario config field in every scenario "
                              "(repeatable; JSON values), e.g. duration_s=8")
    compare.add_argument("--sweep-lockstep", action="store_true", default=None,
                         help=compare_help("sweep_lockstep", default="off: lockstep at 0 "
                                           "only; lockstep driving ignores latency"))
    compare.add_argument("--executor", default=None,
                         help=compare_help("executor", "where episodes run: "
                                           + ", ".join(EXECUTORS)))
    compare.add_argument("--address", default=None, metavar="HOST:PORT",
                         help="Ray cluster to join (default: start a local Ray instance)")
    compare.add_argument("--ray-cpus", type=int, default=None,
                         help=compare_help("ray_cpus", default="all"))
    compare.add_argument("--chunk-episodes", type=int, default=None,
                         help=compare_help("chunk_episodes", default="--envs of the cell"))
    compare.add_argument("--threads", type=int, default=None, help=compare_help("threads"))
    compare.add_argument("--video", type=int, default=None, metavar="K",
                         help=compare_help("video"))
    compare.add_argument("--out", default=None, help="output directory (required here or "
                                                     "in the config file)")
    compare.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_protocol_parser(commands, stacks, perceptions, controllers) -> None:
    """`reflexdrive protocol`; defaults are `ProtocolConfig`'s."""
    from reflexdrive.protocol.harness import REFERENCE_STACK, SUITES, ProtocolConfig

    def default(name: str) -> object:
        return field_default(ProtocolConfig, name)

    protocol = commands.add_parser(
        "protocol", help="Euro NCAP AEB car-to-car or UN R157 ALKS test grids: "
                         "protocol.csv and protocol_report.html",
        description="Run a protocol suite's grid (ncap-ccr: Euro NCAP AEB CCRs/CCRm/CCRb; "
                    "r157: UN R157 ALKS lead-brake, cut-in and stationary-obstacle scenarios "
                    "as OSC-ALKS parametrises them) for every stack, each grid point with its "
                    "hazard-removed twin, all in one batched env. The rig holds the test "
                    "speed and lets the stack brake and steer below it. Writes "
                    "OUT/protocol.csv (one row per stack x grid point: collision, relative "
                    "impact speed, counterfactual reaction time, score) and "
                    "OUT/protocol_report.html (score tables, impact-speed heat maps). r157 "
                    f"also runs the {REFERENCE_STACK} stack where registered: a collision "
                    "fails only where it avoids one. Rules and sources: docs/protocol.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    protocol.add_argument("--suite", default=default("suite"),
                          help="protocol suite: " + ", ".join(SUITES))
    protocol.add_argument("--stacks", default=shown(default("stacks")), metavar="A,B,..",
                          help="stacks, from: " + ", ".join(stacks))
    protocol.add_argument("--points", default=None, metavar="ID,ID,..",
                          help="run only these grid points (ids as in protocol.csv's point "
                               "column, e.g. CCRs-v20); default: the whole grid")
    protocol.add_argument("--latency", default=default("latency"),
                          help="latency model of every stack: fixed:SECONDS, "
                               "fixed:STAGE=SECONDS,..., profile:PATH (not measured: the "
                               "stacks share one batch)")
    protocol.add_argument("--mode", default=default("mode"), help="realtime or lockstep")
    protocol.add_argument("--perception", default=default("perception"),
                          help="perception of the staged stack: " + ", ".join(perceptions))
    protocol.add_argument("--controller", default=default("controller"),
                          help="steering controller of the staged stack: "
                               + ", ".join(controllers))
    protocol.add_argument("--device", default=default("device"),
                          help="torch device: cpu, cuda, auto")
    protocol.add_argument("--seed", type=int, default=default("seed"),
                          help="sensor-noise seed of the first grid point (point i: seed+i)")
    protocol.add_argument("--simulation-frequency", type=int,
                          default=default("simulation_frequency"), help="substeps per second")
    protocol.add_argument("--policy-frequency", type=int, default=default("policy_frequency"),
                          help="ticks per second")
    protocol.add_argument("--out", required=True, help="output directory")


def _cmd_protocol(args: argparse.Namespace) -> int:
    from reflexdrive.protocol.harness import ProtocolConfig, run_protocol
    from reflexdrive.protocol.report import score_table, write_protocol

    points = None if args.points is None else tuple(_names_list("--points", args.points))
    config = ProtocolConfig(
        suite=args.suite, stacks=tuple(_names_list("--stacks", args.stacks)), points=points,
        mode=args.mode, latency=args.latency, simulation_frequency=args.simulation_frequency,
        policy_frequency=args.policy_frequency, perception=args.perception,
        controller=args.controller, device=args.device, seed=args.seed)
    frame = run_protocol(config)
    settings = (f"latency {config.latency}, {config.mode}, perception {config.perception}, "
                f"{config.policy_frequency} Hz decisions, seed {config.seed}")
    csv_path, html_path = write_protocol(frame, config.grid(), config.suite, args.out,
                                         settings)
    print(score_table(frame).to_string(index=False))
    print(f"wrote {csv_path} ({len(frame)} rows) and {html_path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from reflexdrive.agents.registry import REFERENCE_STACKS
    from reflexdrive.compare.config import (
        DEMO_EXECUTION,
        DEMO_MIN_CRITICAL,
        DEMO_MODES,
        DEMO_SCENARIO_CONFIG,
        DEMO_SWEEP_STACKS,
        CompareConfig,
    )
    from reflexdrive.policies.registry import shipped_checkpoint

    policies = [name for name in ("cnn", "gru", "transformer")
                if shipped_checkpoint(name).exists()]
    missing = sorted({"cnn", "gru", "transformer"} - set(policies))
    if missing:
        print("demo: no shipped checkpoint for " + ", ".join(missing) + " (train with "
              "`reflexdrive train --policy NAME --method dagger`); comparing the others")
    if args.episodes < 1:
        raise ConfigError("--episodes", args.episodes, "must be an integer >= 1")
    config = CompareConfig(stacks=("staged", *policies, *REFERENCE_STACKS),
                           episodes=args.episodes, seed=args.seed, modes=DEMO_MODES,
                           execution=DEMO_EXECUTION, envs=args.episodes,
                           extra_latency_s=_seconds_list("--extra-latency", args.extra_latency),
                           sweep_stacks=DEMO_SWEEP_STACKS,
                           scenario_config=DEMO_SCENARIO_CONFIG, video=args.video,
                           out=args.out)
    return _compare_and_report(config, progress=not args.no_progress,
                               min_critical=DEMO_MIN_CRITICAL)


def few_critical(summary, least: int) -> list[str]:
    """The rows of a compare summary (`compare.summary`) that rate fewer than `least`
    critical episodes, as "STACK SCENARIO MODE EXECUTION +EXTRA ms: K" (hazard scenarios
    only: a hazard-free one rates all its episodes)."""
    rows = summary[summary["rates_over"] == "critical"]
    rows = rows[rows["rated_episodes"] < least]
    return [f"{r.stack} {r.scenario} {r.mode} {r.execution} +{r.extra_latency_s * 1e3:g} ms"
            f"{'' if r.latency_scale == 1 else f' x{r.latency_scale:g}'}: "
            f"{int(r.rated_episodes)}" for r in rows.itertuples()]


def _cmd_profile(args: argparse.Namespace) -> int:
    from reflexdrive.envs.latency import save_profile
    from reflexdrive.run.profile import ProfileConfig, percentile_table, profile_stack

    device = _resolve_device(args.device)
    if args.threads < 1:
        raise ConfigError("--threads", args.threads, "must be an integer >= 1")
    import torch

    torch.set_num_threads(args.threads)
    if os.path.isdir(args.out):
        raise ConfigError("--out", args.out, "is a directory; give a file path, e.g. "
                                             "profile.json")
    config = ProfileConfig(stack=args.stack, agent_options=_agent_options(args),
                           scenario=args.scenario, episodes=args.episodes, seed=args.seed,
                           warmup=args.warmup, device=device, execution=args.execution)
    profile = profile_stack(config, progress=not args.no_progress)
    save_profile(profile, args.out)
    print(f"{profile.stack} on {profile.device}, batch size 1, {profile.rows} decisions")
    print(percentile_table(profile, config.execution))
    print(f"wrote {args.out} (use it with --latency profile:{args.out})")
    return 0


def _agent_options(args: argparse.Namespace) -> tuple[tuple[str, object], ...]:
    """The stack options given on the command line, as `make_agent` keywords."""
    names = ("perception", "tracker", "planner", "controller", "checkpoint")
    return tuple((name, getattr(args, name)) for name in names
                 if getattr(args, name, None) is not None)


def _resolve_device(device: str) -> str:
    from reflexdrive.common.devices import resolve_device

    return str(resolve_device(device))


def _cmd_scenarios(_: argparse.Namespace) -> int:
    from reflexdrive.envs.scenarios import SCENARIOS

    width = max(len(name) for name in SCENARIOS)
    for spec in SCENARIOS.values():
        print(f"{spec.name:<{width}}  {spec.env_id:<28}  {spec.description}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from reflexdrive.report.tables import reaction_table
    from reflexdrive.run.runner import RunConfig, run

    config = RunConfig(
        scenario=args.scenario, stack=args.stack, episodes=args.episodes, seed=args.seed,
        mode=args.mode, latency=args.latency, budget_s=args.budget,
        stage_budgets_s=args.stage_budgets or {}, on_overrun=args.on_overrun,
        execution=args.execution, envs=args.envs,
        simulation_frequency=args.simulation_frequency, policy_frequency=args.policy_frequency,
        perception=args.perception, tracker=args.tracker, planner=args.planner,
        controller=args.controller, backend=args.backend,
        device=args.device, checkpoint=args.checkpoint,
        scenario_config=_scenario_overrides(args.set), twins=not args.no_twins)
    episodes, _ = run(config, out=args.out, progress=not args.no_progress)
    print(reaction_table(episodes))
    print(f"wrote {args.out}/episodes.csv ({len(episodes)} episodes) and {args.out}/ticks.csv")
    return 0


def _names_list(flag: str, text: str) -> list[str]:
    """`a,b,c` -> ["a", "b", "c"] (ConfigError on an empty item)."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or not all(items):
        raise ConfigError(flag, text, "must be a comma-separated list of names, e.g. "
                          "staged,cnn")
    return items


def _seconds_list(flag: str, text: str, what: str = "seconds, e.g. 0,0.05,0.1"
                  ) -> list[float]:
    """`0,0.05,0.1` -> [0.0, 0.05, 0.1] (ConfigError when malformed, saying `what` a
    valid value is)."""
    try:
        values = [float(item) for item in text.split(",")]
    except ValueError:
        values = []
    if not values or any(item.strip() == "" for item in text.split(",")):
        raise ConfigError(flag, text, "must be comma-separated " + what)
    return values


def _checkpoints(values: Sequence[str]) -> dict[str, str]:
    checkpoints: dict[str, str] = {}
    for item in values:
        stack, equals, path = item.partition("=")
        if not equals or not stack.strip() or not path.strip():
            raise ConfigError("--checkpoint", item, "expected STACK=PATH, e.g. "
                              "cnn=policies/checkpoints/cnn.pt")
        checkpoints[stack.strip()] = path.strip()
    return checkpoints


def compare_settings(args: argparse.Namespace) -> dict[str, object]:
    """The CompareConfig fields the command line sets (flags left out are absent)."""
    settings: dict[str, object] = {}
    if args.stacks is not None:
        settings["stacks"] = _names_list("--stacks", args.stacks)
    if args.scenarios is not None:
        settings["scenarios"] = _names_list("--scenarios", args.scenarios)
    if args.modes is not None:
        settings["modes"] = _names_list("--modes", args.modes)
    if args.extra_latency is not None:
        settings["extra_latency_s"] = _seconds_list("--extra-latency", args.extra_latency)
    if args.latency_scale is not None:
        settings["latency_scale"] = _seconds_list("--latency-scale", args.latency_scale,
                                                  "factors, e.g. 1,2,4")
    if args.execution is not None:
        settings["execution"] = _names_list("--execution", args.execution)
    if args.checkpoint is not None:
        settings["checkpoints"] = _checkpoints(args.checkpoint)
    if args.set is not None:
        settings["scenario_config"] = _scenario_overrides(args.set)
    for flag, name in (("episodes", "episodes"), ("seed", "seed"), ("latency", "latency"),
                       ("budget", "budget_s"), ("envs", "envs"),
                       ("backend", "backend"),
                       ("device", "device"), ("perception", "perception"),
                       ("tracker", "tracker"), ("planner", "planner"),
                       ("controller", "controller"), ("sweep_lockstep", "sweep_lockstep"),
                       ("executor", "executor"), ("address", "address"),
                       ("ray_cpus", "ray_cpus"), ("chunk_episodes", "chunk_episodes"),
                       ("threads", "threads"), ("video", "video"), ("out", "out")):
        if getattr(args, flag) is not None:
            settings[name] = getattr(args, flag)
    return settings


def _cmd_compare(args: argparse.Namespace) -> int:
    from reflexdrive.compare.config import CompareConfig

    settings = compare_settings(args)
    if args.config is not None:
        config = CompareConfig.from_toml(args.config, **settings)
    else:
        config = CompareConfig(**settings)
    return _compare_and_report(config, progress=not args.no_progress)


def _compare_and_report(config, progress: bool, min_critical: int | None = None) -> int:
    """Run a compare, record its videos, write its report; print where it all is (and,
    with `min_critical`, the cells that rated fewer critical episodes)."""
    from reflexdrive.compare.experiment import compare
    from reflexdrive.compare.summary import headline

    result = compare(config, progress=progress)
    print(headline(result.summary))
    print(f"wrote {result.out}/episodes.csv ({len(result.episodes)} episodes, "
          f"{result.ran} run now), summary.csv and decisions.csv in {result.wall_s:.0f} s")
    if config.video:
        from reflexdrive.report.video import record_compare_videos

        videos = record_compare_videos(config)
        print(f"videos: {len(videos)} in {result.out}/videos")
    from reflexdrive.report.document import write_report

    report = write_report(result.out)
    for sentence in report.sentences:
        print(sentence)
    short = few_critical(result.summary, min_critical) if min_critical else []
    if short:
        print(f"Fewer than {min_critical} critical episodes (raise --episodes): "
              + "; ".join(short) + ".")
    elif min_critical:
        print(f"Every cell rated at least {min_critical} critical episodes.")
    print(f"report: {report.html} (and {report.markdown.name})")
    return 0


COMMANDS = {"scenarios": _cmd_scenarios, "run": _cmd_run, "demo": _cmd_demo,
            "profile": _cmd_profile, "compare": _cmd_compare, "protocol": _cmd_protocol,
            "train": cmd_train}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, CheckpointError) as error:
        print(f"reflexdrive: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("reflexdrive: interrupted; finished episodes are saved, run again to resume",
              file=sys.stderr)
        return 130
    except RuntimeError as error:
        from reflexdrive.compare.executors import TaskLostError

        if not isinstance(error, TaskLostError):
            raise
        print(f"reflexdrive: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
