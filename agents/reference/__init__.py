"""Reference drivers as stacks: UN R157's careful and competent human driver
(`ReferenceDriver`, stack `reference-driver`) and the regulation's bound on the system
(`RegulationDriver`, stack `r157-regulation`), after esmini's `ControllerALKS_R157SM`.

Both read ground truth only (`info["gt_objects"]`, `info["gt_valid"]`, the ego vector);
their perception and reaction times are behaviour, counted in ticks of simulated time
inside the agent, so the clock should charge them no compute (a `fixed:0` latency).
"""

from reflexdrive.agents.reference.driver import ReferenceDriver, ReferenceDriverConfig
from reflexdrive.agents.reference.regulation import RegulationConfig, RegulationDriver

__all__ = ["ReferenceDriver", "ReferenceDriverConfig", "RegulationConfig", "RegulationDriver"]
