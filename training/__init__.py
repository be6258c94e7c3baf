"""Training: reading ledgers, validating them, fitting, evaluating, the corpus generator."""
