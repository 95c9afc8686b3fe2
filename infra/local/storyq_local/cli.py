"""The `storyq` command line: local stack and operator verbs.

Every verb reads the same Settings as the functions (environment, then .env), so a token from
`storyq token` works against the stack `make dev` started, with no configuration at all.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from storyq.config import Settings
from storyq_local.config import LocalSettings, project_root
from storyq_local.stack.tokens import parse_duration

Command = Callable[[argparse.Namespace], int]


def _cmd_migrate(args: argparse.Namespace) -> int:
    from storyq_local.stack.migrate import migrate
    from storyq_local.stack.services import ensure_postgres

    local = LocalSettings()
    database_url = args.database_url or local.database_url
    if not args.database_url:
        database_url = ensure_postgres(database_url, local.state_dir)
    applied = migrate(database_url, Path(args.dir))
    for migration in applied:
        print(f"applied {migration.version}_{migration.name}")
    print(f"{len(applied)} migration(s) applied; the database is up to date")
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    from storyq_local.stack.users import dev_token

    settings = Settings()
    database_url = None if args.no_user else LocalSettings().database_url
    token = dev_token(
        settings,
        database_url=database_url,
        user_id=args.user,
        admin=args.admin,
        expires_in=parse_duration(args.expires),
    )
    print(token)
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    from storyq_local.devstack import run

    settings = Settings()
    if args.generator:
        settings = settings.model_copy(update={"generator": args.generator})
    run(settings, LocalSettings())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storyq", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    migrate = verbs.add_parser("migrate", help="bootstrap and apply supabase/migrations")
    migrate.add_argument("--database-url", help="default: DATABASE_URL (local stack)")
    migrate.add_argument("--dir", default=str(project_root() / "supabase" / "migrations"))
    migrate.set_defaults(run=_cmd_migrate)

    token = verbs.add_parser("token", help="print a dev access token signed with the local secret")
    token.add_argument("--user", type=uuid.UUID, required=True, metavar="UUID")
    token.add_argument("--admin", action="store_true", help="app_metadata.role = admin")
    token.add_argument("--expires", default="1h", help="lifetime: 3600, 15m, 1h, 7d (default 1h)")
    token.add_argument(
        "--no-user", action="store_true", help="do not record the user in auth.users"
    )
    token.set_defaults(run=_cmd_token)

    dev = verbs.add_parser("dev", help="run the whole service locally (what `make dev` runs)")
    dev.add_argument(
        "--generator",
        choices=["template", "openai"],
        help="default: GENERATOR; openai with no OPENAI_API_KEY or OPENAI_BASE_URL writes"
        " through the local OpenAI emulator",
    )
    dev.set_defaults(run=_cmd_dev)

    from storyq_local import cli_admin, cli_worker

    cli_worker.register(verbs)
    cli_admin.register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Command = args.run
    try:
        return command(args)
    except ValueError as exc:
        print(f"storyq {args.verb}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `storyq stats | head`: the reader left, which is fine
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
