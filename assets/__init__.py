"""Dagster assets and asset checks, grouped by stage. Thin: read config, call tamiyo_models, attach metadata."""
