"""The catalogue's tables, as SQLAlchemy Core defines them: what the queries of `store` and
`search` read and write. The Alembic migrations beside this module (`migrations/versions/`) make
the same schema in a database, step by step; a change here needs a migration that makes it
(`tests/integration/test_catalogue.py` compares the two)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

classes = Table(
    "classes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("class_index", Integer, nullable=False),  # the model's class id (labels.txt line)
    Column("name", String(300), nullable=False),  # ImageNet has two "crane"s: not unique
    UniqueConstraint("class_index", "name"),
    Index(None, "name"),
)

provenances = Table(
    "provenances",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("models", JSON, nullable=False),  # {"classify": "1", "preprocess": "1", ...}
    Column("weights", String(300), nullable=False),  # the WEIGHTS output
    Column("settings", JSON, nullable=False),  # each model's config parameters and backend
    Column("first_seen", DateTime(timezone=True), nullable=False),
)

pictures = Table(
    "pictures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("width", Integer),  # upright (after EXIF orientation); NULL if the header is unreadable
    Column("height", Integer),
    Column("provenance_id", ForeignKey("provenances.id"), nullable=False),
    Column("labelled_at", DateTime(timezone=True), nullable=False),
    Column("error", Text),  # the server's reason when it refused the picture, else NULL
    Column("top_class_id", ForeignKey("classes.id")),
    Column("top_score", Float),
    Column("color_rgb", String(7)),
    Column("color_ryb", String(7)),
    Column("second_look", Boolean),
    # what search lists: answered (not refused) and with a file that is not missing. Kept by
    # the store's writer wherever either changes; leading every search index, so a page and
    # its count walk one index range without a probe of `files` per picture
    Column("searchable", Boolean, nullable=False, server_default=false()),
    Index(None, "searchable", "top_class_id", "top_score"),
    # a label with a dominant colour: its matches alone, in score order (not a class's every
    # picture checked for the colour, nor every picture of that colour checked for the class)
    Index(None, "searchable", "top_class_id", "color_rgb", "top_score"),
    Index(None, "searchable", "top_class_id", "color_ryb", "top_score"),
    Index(None, "searchable", "top_score"),
    Index(None, "searchable", "color_rgb", "top_score"),
    Index(None, "searchable", "color_ryb", "top_score"),
    Index(None, "provenance_id"),
)

picture_labels = Table(
    "picture_labels",
    metadata,
    Column("picture_id", ForeignKey("pictures.id", ondelete="CASCADE"), primary_key=True),
    Column("rank", SmallInteger, primary_key=True),  # 0: the top-1
    Column("class_id", ForeignKey("classes.id"), nullable=False),
    Column("score", Float, nullable=False),
)

picture_colours = Table(
    "picture_colours",
    metadata,
    Column("picture_id", ForeignKey("pictures.id", ondelete="CASCADE"), primary_key=True),
    Column("palette", String(3), primary_key=True),  # "rgb" or "ryb"
    Column("colour", SmallInteger, primary_key=True),  # index into the palette
    Column("share", Float, nullable=False),  # only shares > 0 are stored
    Index(None, "palette", "colour", "share", "picture_id"),  # a share filter, index-only
)

libraries = Table(
    "libraries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),  # --library NAME, or the root's path
    Column("root", Text, nullable=False),  # where the last run found it (paths are shown there)
)

files = Table(
    "files",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("library_id", ForeignKey("libraries.id"), nullable=False),
    Column("relative_path", LargeBinary, nullable=False),  # the file system's bytes, "/"-joined
    Column("picture_id", ForeignKey("pictures.id"), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),  # with size: unchanged files skip hashing
    Column("seen_at", DateTime(timezone=True), nullable=False),
    Column("missing_since", DateTime(timezone=True)),  # NULL while the file is where it was
    UniqueConstraint("library_id", "relative_path"),
    Index(None, "picture_id"),
    # a picture's files that are not missing, first (lowest id) first: search reads only this
    Index(
        "ix_files_live",
        "picture_id",
        "id",
        sqlite_where=text("missing_since IS NULL"),
        postgresql_where=text("missing_since IS NULL"),
    ),
)
