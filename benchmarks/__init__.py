"""MeDiM speed and quality benchmarks: each module prints a side-by-side table and writes benchmarks/results/."""
