"""Rollup tables filled by the consolidation jobs."""
