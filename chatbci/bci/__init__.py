"""The BCI engine: datasets, pipelines, benchmarks and exploration.

This package knows nothing about LLMs or workspaces; everything above it
(assistant tools, CLI, notebook UI) calls into these functions.
"""
