"""the catalogue: classes, provenances, pictures with their labels and colour shares, files

Revision ID: 0001
Revises: (none: the first table)
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "classes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("class_index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_classes")),
        sa.UniqueConstraint("class_index", "name", name=op.f("uq_classes_class_index_name")),
    )
    with op.batch_alter_table("classes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_classes_name"), ["name"], unique=False)

    op.create_table(
        "provenances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("weights", sa.String(length=300), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provenances")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_provenances_fingerprint")),
    )
    op.create_table(
        "pictures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("provenance_id", sa.Integer(), nullable=False),
        sa.Column("labelled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("top_class_id", sa.Integer(), nullable=True),
        sa.Column("top_score", sa.Float(), nullable=True),
        sa.Column("color_rgb", sa.String(length=7), nullable=True),
        sa.Column("color_ryb", sa.String(length=7), nullable=True),
        sa.Column("second_look", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["provenance_id"],
            ["provenances.id"],
            name=op.f("fk_pictures_provenance_id_provenances"),
        ),
        sa.ForeignKeyConstraint(
            ["top_class_id"], ["classes.id"], name=op.f("fk_pictures_top_class_id_classes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pictures")),
        sa.UniqueConstraint("sha256", name=op.f("uq_pictures_sha256")),
    )
    with op.batch_alter_table("pictures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pictures_color_rgb_top_score"), ["color_rgb", "top_score"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_pictures_color_ryb_top_score"), ["color_ryb", "top_score"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_pictures_provenance_id"), ["provenance_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_pictures_top_class_id_top_score"),
            ["top_class_id", "top_score"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_pictures_top_score"), ["top_score"], unique=False)

    op.create_table(
        "files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("picture_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["picture_id"], ["pictures.id"], name=op.f("fk_files_picture_id_pictures")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
        sa.UniqueConstraint("path", name=op.f("uq_files_path")),
    )
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_files_picture_id"), ["picture_id"], unique=False)

    op.create_table(
        "picture_colours",
        sa.Column("picture_id", sa.Integer(), nullable=False),
        sa.Column("palette", sa.String(length=3), nullable=False),
        sa.Column("colour", sa.SmallInteger(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["picture_id"],
            ["pictures.id"],
            name=op.f("fk_picture_colours_picture_id_pictures"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("picture_id", "palette", "colour", name=op.f("pk_picture_colours")),
    )
    with op.batch_alter_table("picture_colours", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_picture_colours_palette_colour_share"),
            ["palette", "colour", "share"],
            unique=False,
        )

    op.create_table(
        "picture_labels",
        sa.Column("picture_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["class_id"], ["classes.id"], name=op.f("fk_picture_labels_class_id_classes")
        ),
        sa.ForeignKeyConstraint(
            ["picture_id"],
            ["pictures.id"],
            name=op.f("fk_picture_labels_picture_id_pictures"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("picture_id", "rank", name=op.f("pk_picture_labels")),
    )


def downgrade() -> None:
    op.drop_table("picture_labels")
    with op.batch_alter_table("picture_colours", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_picture_colours_palette_colour_share"))

    op.drop_table("picture_colours")
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_files_picture_id"))

    op.drop_table("files")
    with op.batch_alter_table("pictures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pictures_top_score"))
        batch_op.drop_index(batch_op.f("ix_pictures_top_class_id_top_score"))
        batch_op.drop_index(batch_op.f("ix_pictures_provenance_id"))
        batch_op.drop_index(batch_op.f("ix_pictures_color_ryb_top_score"))
        batch_op.drop_index(batch_op.f("ix_pictures_color_rgb_top_score"))

    op.drop_table("pictures")
    op.drop_table("provenances")
    with op.batch_alter_table("classes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_classes_name"))

    op.drop_table("classes")
