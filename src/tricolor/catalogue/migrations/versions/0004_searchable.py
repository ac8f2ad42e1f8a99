"""searchable pictures: a flag for "answered and with a file that is not missing", leading
every search index

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

Search asked each picture an index range walked whether it was refused and whether it had a
live file (a probe of `ix_files_live`): a count or a deep page at a million pictures cost a
probe per picture. `pictures.searchable` holds that answer (the store's writer keeps it), and
the score-ordered indexes start with it, so a page and its count are one index range; a label
with a dominant colour gets an index of its own (a class's every picture was read for it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BEFORE = [  # the score-ordered indexes as 0001 made them
    ["top_class_id", "top_score"],
    ["top_score"],
    ["color_rgb", "top_score"],
    ["color_ryb", "top_score"],
]
AFTER = [  # led by `searchable`, and a label with a dominant colour has its own
    ["searchable", "top_class_id", "top_score"],
    ["searchable", "top_class_id", "color_rgb", "top_score"],
    ["searchable", "top_class_id", "color_ryb", "top_score"],
    ["searchable", "top_score"],
    ["searchable", "color_rgb", "top_score"],
    ["searchable", "color_ryb", "top_score"],
]


def _swap(dropped: list[list[str]], created: list[list[str]]) -> None:
    for columns in dropped:
        op.drop_index(f"ix_pictures_{'_'.join(columns)}", table_name="pictures")
    for columns in created:
        op.create_index(f"ix_pictures_{'_'.join(columns)}", "pictures", columns)


def upgrade() -> None:
    # plain ALTER TABLE ADD COLUMN, not a batch copy of `pictures`: dropping the old table
    # would break the foreign keys of every stored label, colour and file
    op.add_column(
        "pictures",
        sa.Column("searchable", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute(
        "UPDATE pictures SET searchable = (error IS NULL AND EXISTS (SELECT 1 FROM files "
        "WHERE files.picture_id = pictures.id AND files.missing_since IS NULL))"
    )
    _swap(BEFORE, AFTER)


def downgrade() -> None:
    _swap(AFTER, BEFORE)
    # ALTER TABLE DROP COLUMN (SQLite >= 3.35), not a batch copy, as above
    op.drop_column("pictures", "searchable")
