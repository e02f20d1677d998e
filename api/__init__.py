"""api stage of the CareChain data flow."""
