"""libraries: a file is its library plus its path relative to the library's root (raw bytes),
and a file a run no longer finds is marked missing

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

Files stored by 0001 held absolute paths; they move into one library named "/" (the file
system's root) with the path below it, so nothing is lost. A run over a folder makes that
folder its own library: its files are found there again as new rows (their pictures are
stored, so nothing is sent), and the "/" rows are marked missing when "/" itself is labelled.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ROOT_LIBRARY = "/"


def upgrade() -> None:
    op.create_table(
        "libraries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("root", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_libraries")),
        sa.UniqueConstraint("name", name=op.f("uq_libraries_name")),
    )
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("library_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("relative_path", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("missing_since", sa.DateTime(timezone=True), nullable=True))

    connection = op.get_bind()
    files = sa.table(
        "files",
        sa.column("id", sa.Integer),
        sa.column("path", sa.Text),
        sa.column("library_id", sa.Integer),
        sa.column("relative_path", sa.LargeBinary),
    )
    rows = connection.execute(sa.select(files.c.id, files.c.path)).all()
    if rows:
        libraries = sa.table(
            "libraries", sa.column("id", sa.Integer), sa.column("name"), sa.column("root")
        )
        connection.execute(libraries.insert().values(name=ROOT_LIBRARY, root=ROOT_LIBRARY))
        library_id = connection.execute(
            sa.select(libraries.c.id).where(libraries.c.name == ROOT_LIBRARY)
        ).scalar_one()
        for row in rows:
            connection.execute(
                files.update()
                .where(files.c.id == row.id)
                .values(library_id=library_id, relative_path=os.fsencode(row.path.lstrip("/")))
            )

    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_constraint("uq_files_path", type_="unique")
        batch_op.drop_column("path")
        batch_op.alter_column("library_id", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("relative_path", existing_type=sa.LargeBinary(), nullable=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_files_library_id_libraries"), "libraries", ["library_id"], ["id"]
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_files_library_id_relative_path"), ["library_id", "relative_path"]
        )


def downgrade() -> None:
    connection = op.get_bind()
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("path", sa.Text(), nullable=True))
    files = sa.table(
        "files",
        sa.column("id", sa.Integer),
        sa.column("path", sa.Text),
        sa.column("library_id", sa.Integer),
        sa.column("relative_path", sa.LargeBinary),
    )
    libraries = sa.table("libraries", sa.column("id", sa.Integer), sa.column("root", sa.Text))
    rows = connection.execute(
        sa.select(files.c.id, files.c.relative_path, libraries.c.root).join(
            libraries, files.c.library_id == libraries.c.id
        )
    ).all()
    for row in rows:
        path = os.fsdecode(os.fsencode(row.root.rstrip("/")) + b"/" + row.relative_path)
        connection.execute(
            files.update()
            .where(files.c.id == row.id)
            .values(path=path.encode("utf-8", "backslashreplace").decode())
        )
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_constraint("uq_files_library_id_relative_path", type_="unique")
        batch_op.drop_constraint("fk_files_library_id_libraries", type_="foreignkey")
        batch_op.drop_column("missing_since")
        batch_op.drop_column("relative_path")
        batch_op.drop_column("library_id")
        batch_op.alter_column("path", existing_type=sa.Text(), nullable=False)
        batch_op.create_unique_constraint("uq_files_path", ["path"])
    op.drop_table("libraries")
