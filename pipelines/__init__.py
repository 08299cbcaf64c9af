"""Dagster definitions and resources of the tamiyo project (`pipelines.definitions.defs`)."""
