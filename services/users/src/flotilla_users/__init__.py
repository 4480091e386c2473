"""Flotilla users service: accounts, login, service clients and the token issuer."""
