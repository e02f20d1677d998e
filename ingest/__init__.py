"""ingest stage of the CareChain data flow."""
