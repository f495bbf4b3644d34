"""The machine: hardware samplers, the environment fingerprint, out-of-memory classification."""
