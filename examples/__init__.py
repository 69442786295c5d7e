"""Examples of stacks of your own (docs/your-stack.md); run from the repository root as
`reflexdrive run --stack examples.headway_agent:make ...`."""
