"""streams stage of the CareChain data flow."""
