"""search served by indexes: each picture's files that are not missing, and colour shares
that answer `--min-share` without reading the table

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

`ix_files_live` (partial: files not missing) answers "has this picture a file?" and "which is
its first?" from the index alone, so a page and its count never aggregate over `files`.
`ix_picture_colours_palette_colour_share_picture_id` replaces the index without `picture_id`:
a share filter finds its pictures in the index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LIVE = sa.text("missing_since IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.create_index(
            "ix_files_live", ["picture_id", "id"], sqlite_where=LIVE, postgresql_where=LIVE
        )
    with op.batch_alter_table("picture_colours", schema=None) as batch_op:
        batch_op.drop_index("ix_picture_colours_palette_colour_share")
        batch_op.create_index(
            "ix_picture_colours_palette_colour_share_picture_id",
            ["palette", "colour", "share", "picture_id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("picture_colours", schema=None) as batch_op:
        batch_op.drop_index("ix_picture_colours_palette_colour_share_picture_id")
        batch_op.create_index(
            "ix_picture_colours_palette_colour_share", ["palette", "colour", "share"]
        )
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index("ix_files_live")
