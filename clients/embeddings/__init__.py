"""Non-semantic speech embeddings trained inside devices: TRILL (Shor et al. 2020, "Towards
Learning a Universal Non-Semantic Representation of Speech") and its NOSS-style evaluation.

Modules: ``frontend`` (log-mel windows), ``noss`` (task corpus), ``trill`` (model and
triplet loss), ``task`` (the engine task), ``evaluate`` (NOSS protocol).
"""
