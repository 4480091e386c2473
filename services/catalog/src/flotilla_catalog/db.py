"""The catalog service's database handle."""

from flotilla_kit.db import Database

database = Database()
