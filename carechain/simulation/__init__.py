"""Simulated homes: a resident's day, incidents with ground truth, and gateways.

The generator is pure (a deterministic function of seed, home and time range),
so ``carechain evaluate`` runs it without a broker; only ``publisher.py``
speaks MQTT (paho-mqtt).
"""
