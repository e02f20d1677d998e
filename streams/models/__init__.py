"""Clinical risk models, learned online per resident with river (kept apart from the welfare rules)."""
