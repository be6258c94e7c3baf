"""The triage model: features, heads, rules, calibration, explanations, artifacts.

Knows nothing of HTTP or of ledger files; it takes texts and labels."""
