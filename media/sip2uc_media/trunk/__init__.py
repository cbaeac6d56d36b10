"""The trunks a sidecar carries: outbound registration, OPTIONS keep-alive, resolution."""
