"""Comparing stacks (`reflexdrive compare`): the config and its grid of cells, the executors
that run the cells (this process or Ray tasks), the experiment driver and the summary
statistics (bootstrap and Wilson intervals)."""
