"""The project's scripts; ``scripts.services`` is importable for the tests."""
