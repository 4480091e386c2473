"""``make bench``: Flotilla's speed and memory, each measured beside its baseline in one run."""
