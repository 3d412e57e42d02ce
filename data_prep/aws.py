"""One-line user errors for the AWS calls of geoprep's loaders (kendra-load, kb-load)."""

from __future__ import annotations

from sft.core.errors import UserError


def aws_user_error(e: Exception, tool: str, where: str) -> UserError:
    """``tool``: the command's name in the message; ``where``: the resource (and region) it worked on."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    if isinstance(e, NoRegionError):
        return UserError(f"{tool}: no AWS region (pass --region or set AWS_DEFAULT_REGION)")
    if isinstance(e, NoCredentialsError):
        return UserError(f"{tool}: no AWS credentials (set AWS_PROFILE or the AWS_* variables)")
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return UserError(f"{tool} {e.operation_name} on {where}: {err.get('Code')}: {err.get('Message')}")
    return UserError(f"{tool}: {e}")


def report_failed(failed: list[tuple[str, str]], what: str, rerun: str) -> None:
    """Each failed chunk on stderr, then one error line (exit 1) naming the first five."""
    import typer

    if not failed:
        return
    for cid, reason in failed:
        typer.echo(f"failed: {cid}: {reason}", err=True)
    ids = ", ".join(cid for cid, _ in failed[:5]) + (" ..." if len(failed) > 5 else "")
    raise UserError(f"{len(failed)} chunk(s) {what}: {ids} (reasons above; {rerun})")
