"""Flotilla catalog service: products, stock and stock reservations."""
