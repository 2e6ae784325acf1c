"""Benchmarks: timings and memory, measured on the local stack and printed as tables.

Run with `scripts/bench [suite ...]`. Nothing here asserts: these machines are shared and noisy, so
figures are compared side by side within one run and quoted as ratios.
"""
