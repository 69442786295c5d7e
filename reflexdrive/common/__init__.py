"""Helpers every layer uses: validation, atomic files, thread counts, devices, batching.

The bottom of the import graph: these modules import nothing else of the project, so
`reflexdrive.envs`, `reflexdrive.policies`, `reflexdrive.agents` and the app layer all share
one copy of each helper.
"""
