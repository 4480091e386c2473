"""revoked subjects

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 17:05:00.000000

"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "revoked_subjects",
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )
    op.create_index(op.f("ix_revoked_subjects_revoked_at"), "revoked_subjects", ["revoked_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_revoked_subjects_revoked_at"), table_name="revoked_subjects")
    op.drop_table("revoked_subjects")
