"""The quantum layer: BB84 (weak coherent pulses, decoy states) and BBM92/E91, with post-processing
(sifting, parameter estimation, Cascade, verification, privacy amplification) and the key rate."""
