"""Training: task adapters built from the method's own prompts (``dpl tune``) and per-user
adapters on top of them."""
