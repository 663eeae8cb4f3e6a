"""The DPL method, step by step: retrieval, comparison users, differences, profile and the
final prompt, with the prompts, context budget, presets and artifact cache they share.

Nothing here knows about evaluation or training; ``dpl_engine.engine`` runs these steps over a
store and two models.
"""
