"""Ray Tune search spaces and the paper's ablation sweeps."""
