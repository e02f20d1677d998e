"""Local services harness: Mosquitto, Kafka (KRaft) and PostgreSQL on loopback.

``carechain services up|down|status`` installs what is missing, starts each
service detached (so it outlives the CLI), waits until it answers a real
client, and stops it again. Each service is one module (``postgres``,
``mosquitto``, ``kafka``) with the same small interface (``Service``).
"""
