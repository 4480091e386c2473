"""Flotilla service kit: what every Flotilla service is built from."""
