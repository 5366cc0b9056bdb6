"""Shared plumbing for every stage: params, I/O, metrics, progress, CLI helpers."""
