"""Measuring the method the paper's way: the split of users and targets, the runner that
generates and scores every method, the metrics, the report and the portable run file."""
