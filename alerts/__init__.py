"""alerts stage of the CareChain data flow."""
