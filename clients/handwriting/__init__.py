"""Online handwriting recognition devices (Carbune et al. 2020): writers and their ink,
Bezier-curve features, a bidirectional QRNN with CTC, and character-LM beam decoding."""
