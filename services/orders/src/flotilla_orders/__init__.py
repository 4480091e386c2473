"""Flotilla orders service: customers' orders, reserving stock in the catalog."""
