"""The HiFiC family (Mentzer et al. 2020, as Justin-Tan/high-fidelity-generative-compression)."""
