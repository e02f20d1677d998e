"""Welfare, safety and technical rules from the care plan: one small detector per module."""
