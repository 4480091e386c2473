"""Orders and their lines."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from flotilla_kit.db import UtcDateTime, utcnow

PENDING = "pending"
CONFIRMED = "confirmed"
REJECTED = "rejected"
FAILED = "failed"


class Base(DeclarativeBase):
    """The orders service's tables."""


class Order(Base):
    """A customer's order; one per (customer, Idempotency-Key)."""

    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("user_id", "idempotency_key", name="uq_orders_user_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    user_id: Mapped[str] = mapped_column(String(100), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default=PENDING)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    total: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    failure: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order",
        order_by="OrderItem.product_id",
        lazy="selectin",
        cascade="all, delete-orphan",
    )

    @property
    def reservation_key(self) -> str:
        """The catalog reservation of this attempt (a new attempt never reuses a released one)."""
        return f"order-{self.id}-{self.attempt}"


class OrderItem(Base):
    """A product line; name and price are filled in from the reservation."""

    __tablename__ = "order_items"

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True)
    product_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(200))
    unit_price_cents: Mapped[int | None] = mapped_column(Integer)
    order: Mapped[Order] = relationship(back_populates="items")
