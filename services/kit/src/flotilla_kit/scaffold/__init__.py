"""``flotilla``: make a service from the kit's template, keep it current, check what is behind."""
