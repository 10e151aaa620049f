"""What ``--config.check`` prints: the resolved configuration as YAML-like text.

Every value is shown as the exporter understood it, defaults filled in; secrets and keys appear as
``<redacted>`` next to the file they came from.
"""

from __future__ import annotations

import json

import yaml

from exporter.config.durations import format_duration
from exporter.config.model import (
    CLOUDS,
    OTHER_GROUP,
    AccountConfig,
    ClientCertificate,
    ClientSecret,
    Config,
    Credential,
    JobsConfig,
    ManagedIdentity,
    is_legacy_root,
)

__all__ = ["describe_config"]


def _scalar(value: object) -> str:
    """A value as YAML would show it: plain when YAML reads it back unchanged, else double-quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if text.isprintable() and text == text.strip() and _reads_back(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _reads_back(text: str) -> bool:
    """Whether ``key: text`` means the string ``text`` to YAML (not ``no``, ``1.0``, ``a #b``)."""
    try:
        return bool(yaml.safe_load(f"key: {text}") == {"key": text})
    except yaml.YAMLError:
        return False


def _describe_credential(credential: Credential) -> list[str]:
    match credential:
        case ClientSecret(file=None):
            return ["credential: client_secret", "client_secret: <redacted>"]
        case ClientSecret(file=file):
            return [
                "credential: client_secret",
                f"client_secret_file: {_scalar(file)}  # contents <redacted>",
            ]
        case ClientCertificate(file=file):
            return [
                "credential: client_certificate",
                f"client_certificate_file: {_scalar(file)}  # key <redacted>",
            ]
        case ManagedIdentity():
            return ["credential: managed_identity", "managed_identity: true"]


def _describe_redirect_hosts(account: AccountConfig) -> list[str]:
    """The key, and for a legacy root what else its 301 may lead to."""
    note = ""
    if is_legacy_root(account.endpoint):
        cloud = CLOUDS[account.cloud]
        note = f"  # and the endpoint's host, {', '.join(cloud.redirect_hosts)}"
    if not account.redirect_hosts:
        return [f"redirect_hosts: []{note}"]
    return [f"redirect_hosts:{note}", *(f"  - {_scalar(host)}" for host in account.redirect_hosts)]


def _describe_account(account: AccountConfig) -> list[str]:
    jobs = account.jobs
    ca_file = _scalar(account.ca_file) if account.ca_file else "null  # system trust store"
    client_id = _scalar(account.client_id)
    if account.client_id is None and isinstance(account.credential, ManagedIdentity):
        client_id += "  # system-assigned identity"
    return [
        f"name: {_scalar(account.name)}",
        f"endpoint: {_scalar(account.endpoint)}",
        *_describe_redirect_hosts(account),
        f"cloud: {account.cloud}",
        f"authority_host: {_scalar(account.authority_host)}",
        f"resource: {_scalar(account.resource)}",
        f"tenant: {_scalar(account.tenant)}",
        f"client_id: {client_id}",
        *_describe_credential(account.credential),
        f"ca_file: {ca_file}",
        f"timeout: {format_duration(account.timeout)}",
        "jobs:",
        f"  ids: {'[]' if not jobs.ids else ''}".rstrip(),
        *(f"    - {_scalar(job_id)}" for job_id in jobs.ids),
        f"  name_prefix: {_scalar(jobs.name_prefix)}",
        f"  filter: {_scalar(jobs.filter)}",
        f"  finished_window: {format_duration(jobs.finished_window)}",
        f"  max_jobs: {jobs.max_jobs}",
        f"  tasks: {_scalar(jobs.tasks)}",
        f"  capacity_interval: {format_duration(jobs.capacity_interval)}",
        f"  full_listing_interval: {format_duration(jobs.full_listing_interval)}",
        *_describe_groups(jobs),
        "  history:",
        f"    duration_buckets: {_durations(jobs.history.duration_buckets)}",
        f"    queue_wait_buckets: {_durations(jobs.history.queue_wait_buckets)}",
    ]


def _describe_groups(jobs: JobsConfig) -> list[str]:
    """The groups in matching order, and the one the other jobs fall in."""
    if not jobs.groups:
        return [f"  groups: []  # every job in {OTHER_GROUP}"]
    lines = [f"  groups:  # first match wins; the other jobs are in {OTHER_GROUP}"]
    for group in jobs.groups:
        lines.append(f"    - name: {_scalar(group.name)}")
        lines.append(f"      name_regex: {_scalar(group.name_regex.pattern)}")
    return lines


def _durations(seconds: tuple[float, ...]) -> str:
    return f"[{', '.join(format_duration(bound) for bound in seconds)}]"


def describe_config(config: Config) -> str:
    """Every resolved value of every account, defaults included, as YAML-like text.

    This is what ``--config.check`` prints. Secrets and certificate keys appear as
    ``<redacted>``; the files they came from are shown.
    """
    lines = ["accounts:"]
    for account in config.accounts:
        body = _describe_account(account)
        lines.append(f"  - {body[0]}")
        lines.extend(f"    {line}" for line in body[1:])
    return "\n".join(lines) + "\n"
