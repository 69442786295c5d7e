"""Protocol suites: the standard tests AEB and lane-keeping systems are rated by.

Euro NCAP AEB Car-to-Car rear tests (`ncap`) and UN R157 ALKS scenarios as ASAM's
OSC-ALKS-scenarios parametrise them (`r157`), as grids of `envs.scenarios.ScenarioInit`s
(`grid`), driven on the test rig that holds the test speed (`hold_speed`) by the harness
(`harness`), reported as `protocol.csv` and `protocol_report.html` (`report`).
docs/protocol.md states the rules and their sources.
"""
