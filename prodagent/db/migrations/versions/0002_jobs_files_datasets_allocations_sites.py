"""Jobs, files, datasets, allocations, sites

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pa_allocation",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=100), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("request_name", sa.String(length=200), nullable=False),
        sa.Column("lease_token", sa.String(length=100), nullable=False),
        sa.Column("lease_expires_at", sa.Double(), nullable=False),
        sa.Column(
            "workflow",
            sa.Text()
            .with_variant(mysql.LONGTEXT(), "mariadb")
            .with_variant(mysql.LONGTEXT(), "mysql"),
            nullable=False,
        ),
        sa.Column("first_event", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("n_events", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("run", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("seed", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("job_index", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "input_files",
            sa.Text()
            .with_variant(mysql.LONGTEXT(), "mariadb")
            .with_variant(mysql.LONGTEXT(), "mysql"),
            nullable=True,
        ),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("events_reported", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("acquired_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pa_allocation", schema=None) as batch_op:
        batch_op.create_index("ix_pa_allocation_state", ["agent", "state"], unique=False)

    op.create_table(
        "pa_dataset",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agent", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("tier", sa.String(length=100), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column(
            "merge_policy",
            sa.Text()
            .with_variant(mysql.LONGTEXT(), "mariadb")
            .with_variant(mysql.LONGTEXT(), "mysql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agent", "name", name="uq_pa_dataset_name"),
    )
    op.create_table(
        "pa_file",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("lfn", sa.String(length=500), nullable=False),
        sa.Column("pfn", sa.String(length=500), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("adler32", sa.String(length=8), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("first_event", sa.BigInteger(), nullable=True),
        sa.Column("run", sa.BigInteger(), nullable=True),
        sa.Column("merge_job_id", sa.Integer(), nullable=True),
        sa.Column("reported", sa.Boolean(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("lfn"),
    )
    with op.batch_alter_table("pa_file", schema=None) as batch_op:
        batch_op.create_index(
            "ix_pa_file_dataset_state", ["dataset_id", "kind", "state"], unique=False
        )
        batch_op.create_index("ix_pa_file_merge_job", ["merge_job_id"], unique=False)

    op.create_table(
        "pa_file_parent",
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("file_id", "parent_id"),
    )
    op.create_table(
        "pa_job",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agent", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("job_type", sa.String(length=20), nullable=False),
        sa.Column("allocation_id", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("retry", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_retries", sa.Integer(), server_default="3", nullable=False),
        sa.Column("first_event", sa.BigInteger(), nullable=True),
        sa.Column("n_events", sa.BigInteger(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("job_index", sa.Integer(), nullable=True),
        sa.Column("run", sa.BigInteger(), nullable=True),
        sa.Column("site", sa.String(length=100), nullable=True),
        sa.Column("memory_mb", sa.Integer(), server_default="2000", nullable=False),
        sa.Column("time_s", sa.Integer(), server_default="3600", nullable=False),
        sa.Column("workdir", sa.String(length=500), nullable=False),
        sa.Column("batch_id", sa.String(length=100), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_class", sa.String(length=100), nullable=True),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("events_done", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("wall_s", sa.Double(), nullable=True),
        sa.Column("cpu_s", sa.Double(), nullable=True),
        sa.Column("max_rss_mb", sa.Double(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("pa_job", schema=None) as batch_op:
        batch_op.create_index("ix_pa_job_allocation", ["allocation_id"], unique=False)
        batch_op.create_index("ix_pa_job_request", ["request_id", "state"], unique=False)
        batch_op.create_index("ix_pa_job_state", ["agent", "state"], unique=False)

    op.create_table(
        "pa_job_transition",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("from_state", sa.String(length=20), nullable=True),
        sa.Column("to_state", sa.String(length=20), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("retry", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pa_job_transition", schema=None) as batch_op:
        batch_op.create_index("ix_pa_job_transition_job", ["job_id", "id"], unique=False)

    op.create_table(
        "pa_site",
        sa.Column("agent", sa.String(length=100), nullable=False),
        sa.Column("site", sa.String(length=100), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("agent", "site"),
    )


def downgrade() -> None:
    op.drop_table("pa_site")
    with op.batch_alter_table("pa_job_transition", schema=None) as batch_op:
        batch_op.drop_index("ix_pa_job_transition_job")

    op.drop_table("pa_job_transition")
    with op.batch_alter_table("pa_job", schema=None) as batch_op:
        batch_op.drop_index("ix_pa_job_state")
        batch_op.drop_index("ix_pa_job_request")
        batch_op.drop_index("ix_pa_job_allocation")

    op.drop_table("pa_job")
    op.drop_table("pa_file_parent")
    with op.batch_alter_table("pa_file", schema=None) as batch_op:
        batch_op.drop_index("ix_pa_file_merge_job")
        batch_op.drop_index("ix_pa_file_dataset_state")

    op.drop_table("pa_file")
    op.drop_table("pa_dataset")
    with op.batch_alter_table("pa_allocation", schema=None) as batch_op:
        batch_op.drop_index("ix_pa_allocation_state")

    op.drop_table("pa_allocation")
