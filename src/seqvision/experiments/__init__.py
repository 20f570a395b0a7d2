"""Experiments drive training and evaluation: train-then-test (`seqvision.train`), compare, cross-validate,
and tune hyper-parameters (Optuna)."""
