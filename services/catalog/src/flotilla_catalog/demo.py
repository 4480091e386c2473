"""Demo products for ``make run``; seeding is idempotent (matched by name)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from flotilla_catalog.models import Product

DEMO_PRODUCTS = (
    {
        "name": "Espresso beans, 1 kg",
        "description": "Dark roast, whole beans.",
        "price_cents": 2450,
        "stock": 40,
    },
    {"name": "Pour-over kettle", "description": "Gooseneck, 1 litre.", "price_cents": 3900, "stock": 15},
    {"name": "Ceramic mug", "description": "350 ml, dishwasher safe.", "price_cents": 1200, "stock": 100},
    {"name": "Hand grinder", "description": "Conical burrs, 40 settings.", "price_cents": 6900, "stock": 8},
    {"name": "Paper filters (100)", "description": "Size 02, unbleached.", "price_cents": 550, "stock": 250},
)


def seed_demo_products(session: Session, currency: str = "EUR") -> int:
    """Add each demo product that is not there yet; returns how many were added."""
    existing = set(session.scalars(select(Product.name)))
    added = 0
    for product in DEMO_PRODUCTS:
        if product["name"] not in existing:
            session.add(Product(currency=currency, **product))
            added += 1
    session.commit()
    return added
