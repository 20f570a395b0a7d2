"""Evaluation: test metrics, plots and summaries of a run."""
