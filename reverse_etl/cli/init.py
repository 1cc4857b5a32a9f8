"""``retl init``: scaffold a project's syncs (from a dbt manifest)."""

from __future__ import annotations

from pathlib import Path

import click

from reverse_etl.errors import RetlError


def init_command() -> click.Command:
    @click.command("init")
    @click.option("--from-dbt", "manifest", required=True, metavar="PATH",
                  help="dbt's target/manifest.json (or the dbt project directory).")
    @click.option("--destination", default="braze", show_default=True, help="Destination key for syncs whose meta names none.")
    @click.option("--tag", default="retl", show_default=True, help="Scaffold the dbt models with this tag.")
    @click.option("--out", default="dbt.yml", show_default=True, help="File name under syncs/.")
    @click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
    @click.option("--project-dir", default=None, metavar="DIR", help="The retl project. Default: .")
    @click.pass_context
    def init(ctx: click.Context, manifest: str, destination: str, tag: str, out: str, force: bool, project_dir: str | None) -> None:
        """Write syncs/dbt.yml: a sync per dbt model tagged `retl` (models read as dbt:<name>)."""
        from reverse_etl.dbt.manifest import Manifest
        from reverse_etl.dbt.scaffold import scaffold, write_syncs

        root_obj = ctx.find_root().obj
        root = Path(project_dir or getattr(root_obj, "project_dir", None) or ".")
        try:
            loaded = Manifest.load(Path(manifest))
            syncs = scaffold(loaded, destination=destination, tag=tag)
            if not syncs:
                raise RetlError(f"no dbt model in {loaded.path} has the tag {tag!r}",
                                hint=f"add `tags: ['{tag}']` to the models to sync, run dbt, then this again")
            path = write_syncs(root, syncs, filename=out, force=force)
        except RetlError as exc:
            raise click.ClickException(str(exc) + (f"\n  hint: {exc.hint}" if exc.hint else "")) from None
        dbt_dir = loaded.path.parent.parent
        click.echo(f"wrote {path} with {len(syncs)} sync(s): {', '.join(s['name'] for s in syncs)}")
        click.echo(f"add `dbt_project: {dbt_dir}` to the target in profiles.yml, then `retl diff` to preview")

    return init
