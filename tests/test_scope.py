"""The server-side $filter of a scope: well-formed OData that selects what the contract says."""

from __future__ import annotations

from datetime import datetime, timezone

from ams_emulator.query import parse_query
from exporter.ams.scope import IDS_PER_FILTER, server_filters
from exporter.config.accounts import parse_config

NOW = datetime(2024, 1, 15, 12, 0, tzinfo=timezone.utc).timestamp()


def _jobs_config(jobs_yaml: str = "{}"):
    text = (
        "accounts:\n  - name: a\n    endpoint: https://a.restv2.westeurope.media.azure.net/api/\n"
        "    tenant: t\n    client_id: 00000000-0000-0000-0000-000000000000\n    client_secret: s\n"
        f"    jobs: {jobs_yaml}\n"
    )
    return parse_config(text, {}).accounts[0].jobs


def test_default_scope_is_active_states_or_recently_modified():
    (odata_filter,) = server_filters(_jobs_config(), NOW)
    assert odata_filter == (
        "(State eq 0 or State eq 1 or State eq 2 or State eq 6 "
        "or LastModified ge datetime'2024-01-14T12:00:00')"
    )


def test_every_part_is_anded_and_quotes_are_escaped():
    jobs = _jobs_config("{name_prefix: \"it's\", filter: 'Priority gt 2', finished_window: 0s}")
    (odata_filter,) = server_filters(jobs, NOW)
    assert odata_filter == (
        "startswith(Name,'it''s') and (Priority gt 2) and "
        "(State eq 0 or State eq 1 or State eq 2 or State eq 6)"
    )


def test_without_dates_only_the_users_selection_remains():
    assert server_filters(_jobs_config(), NOW, with_dates=False) == [None]
    jobs = _jobs_config("{name_prefix: enc}")
    assert server_filters(jobs, NOW, with_dates=False) == ["startswith(Name,'enc')"]


def test_many_ids_are_split_into_several_requests():
    ids = [f"nb:jid:UUID:{n:08d}-0000-0000-0000-000000000000" for n in range(IDS_PER_FILTER + 5)]
    jobs = _jobs_config("{ids: [" + ", ".join(f"'{i}'" for i in ids) + "]}")
    filters = server_filters(jobs, NOW)
    assert len(filters) == 2
    assert filters[0].count("Id eq") == IDS_PER_FILTER and filters[1].count("Id eq") == 5


def test_the_emulators_odata_parser_accepts_every_filter_we_build():
    jobs = _jobs_config(
        "{ids: ['nb:jid:UUID:00000001-0000-0000-0000-000000000000'], name_prefix: \"a'b\", filter: 'Priority ge 0', finished_window: 3h}"
    )
    for with_dates in (True, False):
        for odata_filter in server_filters(jobs, NOW, with_dates=with_dates):
            assert odata_filter is not None
            parse_query({"$filter": odata_filter}, "Jobs")
