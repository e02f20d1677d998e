"""CareChain shared vocabulary: event contract, care plan, alert candidates, settings, storage, CLI."""
