"""The emulator's OData query options: ``$filter`` semantics and errors, ``$select``, ``$orderby``,
``$top``/``$skip``, and the options it refuses."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ams_emulator.entities import EmuJob, EmuTask, JobState
from ams_emulator.query import ODataQueryError, QueryOptions, parse_query

UTC = timezone.utc
CREATED = datetime(2024, 3, 1, 10, 30, 15, 250000, tzinfo=UTC)


def _job(**overrides: object) -> EmuJob:
    values: dict[str, object] = {
        "id": "nb:jid:UUID:00000000-0000-4000-8000-000000000001",
        "name": "ingest-2024-03-01-keynote-1080p.mp4",
        "created": CREATED,
        "last_modified": datetime(2024, 3, 1, 11, 0, tzinfo=UTC),
        "start_time": datetime(2024, 3, 1, 10, 31, tzinfo=UTC),
        "end_time": None,
        "priority": 5,
        "running_duration_ms": 0.0,
        "state": JobState.PROCESSING,
    }
    values.update(overrides)
    return EmuJob(**values)  # type: ignore[arg-type]


def _task(**overrides: object) -> EmuTask:
    values: dict[str, object] = {
        "id": "nb:tid:UUID:00000000-0000-4000-8000-000000000002",
        "job_id": "nb:jid:UUID:00000000-0000-4000-8000-000000000001",
        "name": "Adaptive Streaming",
        "configuration": "Adaptive Streaming",
        "media_processor_id": "nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56",
        "state": JobState.PROCESSING,
        "progress": 42.5,
        "running_duration_ms": 0.0,
        "start_time": None,
        "end_time": None,
        "priority": 0,
    }
    values.update(overrides)
    return EmuTask(**values)  # type: ignore[arg-type]


def matches(text: str, entity: EmuJob | EmuTask | None = None) -> bool:
    """Whether ``entity`` (default: the sample job) passes ``$filter=text``."""
    target = entity if entity is not None else _job()
    entity_set = "Jobs" if isinstance(target, EmuJob) else "Tasks"
    options = parse_query({"$filter": text}, entity_set)
    assert options.filter is not None
    return options.filter.matches(target)


def error_of(params: dict[str, str], entity_set: str = "Jobs") -> str:
    with pytest.raises(ODataQueryError) as caught:
        parse_query(params, entity_set)
    return str(caught.value)


# --- comparison operators ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Priority eq 5", True),
        ("Priority eq 4", False),
        ("Priority ne 5", False),
        ("Priority ne 4", True),
        ("Priority gt 4", True),
        ("Priority gt 5", False),
        ("Priority ge 5", True),
        ("Priority ge 6", False),
        ("Priority lt 6", True),
        ("Priority lt 5", False),
        ("Priority le 5", True),
        ("Priority le 4", False),
        ("State eq 2", True),
        ("5 eq Priority", True),
        ("4 lt Priority", True),
        ("6 lt Priority", False),
    ],
)
def test_integer_comparisons(text: str, expected: bool) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Name eq 'ingest-2024-03-01-keynote-1080p.mp4'", True),
        ("Name eq 'ingest'", False),
        ("Name ne 'ingest'", True),
        ("Name gt 'a'", True),
        ("Name lt 'a'", False),
        ("Id eq 'nb:jid:UUID:00000000-0000-4000-8000-000000000001'", True),
    ],
)
def test_string_comparisons(text: str, expected: bool) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Created eq datetime'2024-03-01T10:30:15.25'", True),
        ("Created eq datetime'2024-03-01T10:30:15.2500000'", True),
        ("Created eq datetime'2024-03-01T10:30:15.25Z'", True),
        ("Created eq datetime'2024-03-01T11:30:15.25+01:00'", True),
        ("Created gt datetime'2024-03-01T10:30:15'", True),
        ("Created gt datetime'2024-03-01T10:30'", True),
        ("Created lt datetime'2024-03-01T10:30:15Z'", False),
        ("Created ge datetime'2024-03-01T10:30:15.250'", True),
        ("LastModified le datetime'2024-03-01T11:00:00'", True),
        ("StartTime lt LastModified", True),
        ("StartTime gt Created", True),
        ("datetimeoffset'2024-03-01T10:30:15.25Z' eq Created", True),
    ],
)
def test_datetime_literals_with_and_without_fraction_and_zone(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_integer_and_double_compare_with_each_other() -> None:
    job = _job(running_duration_ms=286974.0)
    assert matches("RunningDuration eq 286974", job)
    assert matches("RunningDuration gt 286973.5", job)
    assert matches("RunningDuration lt 3e5", job)
    assert not matches("RunningDuration ge 286975L", job)
    assert matches("Progress gt 42", _task())
    assert matches("Progress eq 42.5", _task())
    assert matches("Progress le 42.5d", _task())


# --- null ---------------------------------------------------------------------------------------


def test_null_equals_null_and_nothing_else() -> None:
    assert matches("EndTime eq null")
    assert not matches("EndTime ne null")
    assert matches("StartTime ne null")
    assert not matches("StartTime eq null")
    assert matches("null eq EndTime")
    assert matches("Name ne null")
    assert matches("Name eq null", _job(name=None))


def test_ordering_comparisons_with_null_are_false() -> None:
    assert not matches("EndTime gt datetime'2000-01-01T00:00:00'")
    assert not matches("EndTime lt datetime'2100-01-01T00:00:00'")
    assert not matches("EndTime le null")
    assert not matches("Priority gt null")
    assert not matches("EndTime lt StartTime")


# --- logic and precedence ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("State eq 2 and Priority eq 5", True),
        ("State eq 2 and Priority eq 4", False),
        ("State eq 3 or Priority eq 5", True),
        ("State eq 3 or Priority eq 4", False),
        ("not (State eq 3)", True),
        ("not (State eq 2)", False),
        ("not startswith(Name,'x')", True),
        # and binds tighter than or: true or (false and false)
        ("State eq 2 or State eq 3 and Priority eq 0", True),
        # parentheses change it: (true or false) and false
        ("(State eq 2 or State eq 3) and Priority eq 0", False),
        ("((State eq 2))", True),
        ("not not (State eq 2)", True),
        ("startswith(Name,'ingest') eq true", True),
        ("endswith(Name,'mp4') eq false", False),
        ("true", True),
        ("false or State eq 2", True),
    ],
)
def test_logical_operators_and_precedence(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_not_binds_tighter_than_comparison() -> None:
    # As in OData, ``not State eq 2`` is ``(not State) eq 2`` - a type error, not ``not (...)``.
    message = error_of({"$filter": "not State eq 2"})
    assert message == "Operator 'not' incompatible with operand type 'Edm.Int32' at position 0."


# --- functions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("startswith(Name,'ingest-2024')", True),
        ("startswith(Name, 'keynote')", False),
        ("endswith(Name,'1080p.mp4')", True),
        ("endswith(Name, 'ism')", False),
        ("substringof('keynote',Name)", True),
        ("substringof('Keynote',Name)", False),
        ("substringof('keynote', tolower(Name))", True),
        ("substringof('KEYNOTE', toupper(Name))", True),
        ("length(Name) eq 35", True),
        ("trim(' x ') eq 'x'", True),
        ("startswith(Id,'nb:jid:UUID:')", True),
    ],
)
def test_string_functions(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_string_functions_are_false_on_a_null_name() -> None:
    nameless = _job(name=None)
    assert not matches("startswith(Name,'a')", nameless)
    assert not matches("endswith(Name,'a')", nameless)
    assert not matches("substringof('a',Name)", nameless)
    assert matches("tolower(Name) eq null", nameless)


# --- literals and escaping -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "literal"),
    [
        ("O'Brien", "'O''Brien'"),
        ("''", "''''''"),
        ('say "hi"', "'say \"hi\"'"),
        ("C:\\media\\clip.mp4", "'C:\\media\\clip.mp4'"),
        ("新闻联播.mp4", "'新闻联播.mp4'"),
        ("line one\nline two", "'line one\nline two'"),
        ("", "''"),
        ("a eq 'b' or true", "'a eq ''b'' or true'"),
    ],
)
def test_string_literals_round_trip_hard_characters(name: str, literal: str) -> None:
    job = _job(name=name)
    assert matches(f"Name eq {literal}", job)
    assert not matches(f"Name ne {literal}", job)


def test_negative_integer_literals() -> None:
    job = _job(priority=-3)
    assert matches("Priority eq -3", job)
    assert matches("Priority lt -2", job)


# --- tasks ----------------------------------------------------------------------------------------


def test_task_properties_can_be_filtered() -> None:
    task = _task()
    assert matches("Progress ge 40 and State eq 2", task)
    assert matches("RunningDuration eq 0", task)
    assert matches("MediaProcessorId eq 'nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56'", task)
    assert matches("StartTime eq null and EndTime eq null", task)


def test_task_only_properties_do_not_exist_on_jobs() -> None:
    assert error_of({"$filter": "Progress gt 5"}) == (
        "No property 'Progress' exists in type "
        "'Microsoft.Cloud.Media.Vod.Rest.Data.Models.Job' at position 0."
    )


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Foo eq 1",
            "No property 'Foo' exists in type "
            "'Microsoft.Cloud.Media.Vod.Rest.Data.Models.Job' at position 0.",
        ),
        (
            "State eq 1 and name eq 'x'",
            "No property 'name' exists in type "
            "'Microsoft.Cloud.Media.Vod.Rest.Data.Models.Job' at position 15.",
        ),
        ("State eq", "Expression expected at position 8 in 'State eq'."),
        ("State eq 1 and", "Expression expected at position 14 in 'State eq 1 and'."),
        ("(State eq 1", "')' or operator expected at position 11 in '(State eq 1'."),
        ("State eq 1)", "Syntax error at position 10 in 'State eq 1)'."),
        ("State Eq 1", "Syntax error at position 6 in 'State Eq 1'."),
        ("State eq 1 State eq 2", "Syntax error at position 11 in 'State eq 1 State eq 2'."),
        ("Name eq 'abc", "Unterminated string literal at position 8 in 'Name eq 'abc'."),
        ("State eq #", "Syntax error: unexpected character '#' at position 9 in 'State eq #'."),
        (
            "Name eq 1",
            "Operator 'eq' incompatible with operand types 'Edm.String' and 'Edm.Int32' "
            "at position 5.",
        ),
        (
            "Created gt '2024-01-01'",
            "Operator 'gt' incompatible with operand types 'Edm.DateTime' and 'Edm.String' "
            "at position 8.",
        ),
        (
            "State eq 1 and Priority",
            "Operator 'and' incompatible with operand types 'Edm.Boolean' and 'Edm.Int32' "
            "at position 11.",
        ),
        (
            "State",
            "Expression of type 'Edm.Int32' cannot be used as a filter; expected 'Edm.Boolean' "
            "in 'State'.",
        ),
        (
            "Created gt datetime'2024-13-01T00:00:00'",
            "Unrecognized 'Edm.DateTime' literal 'datetime'2024-13-01T00:00:00'' at position 11: "
            "month must be in 1..12.",
        ),
        (
            "Created gt datetime'yesterday'",
            "Unrecognized 'Edm.DateTime' literal 'datetime'yesterday'' at position 11.",
        ),
        ("Id eq guid'0000'", "Unrecognized 'Edm.Guid' literal 'guid'0000'' at position 6."),
        (
            "Id eq guid'0123abcd-4567-89ab-cdef-0123456789ab'",
            "Operator 'eq' incompatible with operand types 'Edm.String' and 'Edm.Guid' at "
            "position 3.",
        ),
        ("Id eq binary'00ff'", "Unrecognized literal 'binary'00ff'' at position 6."),
        ("contains(Name,'x')", "Unknown function 'contains' at position 0."),
        (
            "startswith(Name)",
            "Function 'startswith' at position 0 takes 2 argument(s), not 1.",
        ),
        (
            "startswith(Name,1)",
            "No applicable function found for 'startswith' at position 0 with the argument "
            "types 'Edm.Int32'; expected 'Edm.String'.",
        ),
        ("startswith(Name 'x')", "')' or ',' expected at position 16 in 'startswith(Name 'x')'."),
        (
            "Tasks eq null",
            "Property 'Tasks' at position 0 is not a primitive property and cannot be used "
            "in $filter.",
        ),
        ("Priority add 1 eq 2", "Operator 'add' at position 9 is not supported by this service."),
        (
            "Priority eq 1.5.2",
            "Syntax error: unexpected character '.' at position 15 in 'Priority eq 1.5.2'.",
        ),
        (
            "Priority eq 99999999999999999999",
            "Integer literal '99999999999999999999' out of range at position 12.",
        ),
    ],
)
def test_filter_errors_name_the_problem_and_position(text: str, message: str) -> None:
    assert error_of({"$filter": text}) == message


def test_empty_filter_means_no_filter() -> None:
    assert parse_query({"$filter": "  "}, "Jobs").filter is None


# --- $select ----------------------------------------------------------------------------------


def test_select_lists_properties_once_in_the_given_spelling() -> None:
    options = parse_query({"$select": "Id, Name,Priority ,State,Id"}, "Jobs")
    assert options.select == ("Id", "Name", "Priority", "State")


def test_select_star_means_every_property() -> None:
    assert parse_query({"$select": "*"}, "Jobs").select is None
    assert parse_query({}, "Jobs").select is None


def test_select_accepts_navigation_and_collection_properties() -> None:
    options = parse_query({"$select": "Tasks,JobNotificationSubscriptions"}, "Jobs")
    assert options.select == ("Tasks", "JobNotificationSubscriptions")


@pytest.mark.parametrize(
    ("raw", "entity_set", "message"),
    [
        (
            "Id,Foo",
            "Jobs",
            "No property 'Foo' exists in type 'Microsoft.Cloud.Media.Vod.Rest.Data.Models.Job' "
            "(in '$select=Id,Foo').",
        ),
        (
            "Progress",
            "Jobs",
            "No property 'Progress' exists in type "
            "'Microsoft.Cloud.Media.Vod.Rest.Data.Models.Job' (in '$select=Progress').",
        ),
        (
            "TemplateId",
            "Tasks",
            "No property 'TemplateId' exists in type "
            "'Microsoft.Cloud.Media.Vod.Rest.Data.Models.Task' (in '$select=TemplateId').",
        ),
        ("Id,,Name", "Jobs", "Syntax error in '$select=Id,,Name': empty property name."),
    ],
)
def test_select_errors(raw: str, entity_set: str, message: str) -> None:
    assert error_of({"$select": raw}, entity_set) == message


# --- $orderby ----------------------------------------------------------------------------------


def test_orderby_items_with_directions() -> None:
    options = parse_query({"$orderby": "Priority desc, Created,Name asc"}, "Jobs")
    assert [(key.prop.name, key.descending) for key in options.orderby] == [
        ("Priority", True),
        ("Created", False),
        ("Name", False),
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            "Foo",
            "No property 'Foo' exists in type 'Microsoft.Cloud.Media.Vod.Rest.Data.Models.Job' "
            "(in '$orderby=Foo').",
        ),
        (
            "Created down",
            "Syntax error in '$orderby=Created down': expected 'asc' or 'desc', got 'down'.",
        ),
        (
            "Created asc extra",
            "Syntax error in '$orderby=Created asc extra' near 'Created asc extra'.",
        ),
        ("Created,", "Syntax error in '$orderby=Created,' near ''."),
        (
            "Tasks",
            "Property 'Tasks' is not a primitive property and cannot be used in $orderby.",
        ),
    ],
)
def test_orderby_errors(raw: str, message: str) -> None:
    assert error_of({"$orderby": raw}) == message


# --- $top / $skip ------------------------------------------------------------------------------


def test_top_and_skip_are_parsed() -> None:
    options = parse_query({"$top": "1000", "$skip": "2000"}, "Jobs")
    assert (options.top, options.skip) == (1000, 2000)
    assert parse_query({"$top": "0"}, "Jobs").top == 0
    assert parse_query({}, "Jobs") == QueryOptions()


def test_top_above_the_cap_is_accepted_and_left_to_the_store() -> None:
    assert parse_query({"$top": "5000"}, "Jobs").top == 5000


@pytest.mark.parametrize("name", ["$top", "$skip"])
@pytest.mark.parametrize("raw", ["-1", "abc", "1.5", "", "1e3"])
def test_top_and_skip_must_be_non_negative_integers(name: str, raw: str) -> None:
    assert error_of({name: raw}) == (
        f"Invalid value '{raw}' for the query option '{name}': a non-negative integer is required."
    )


# --- other options ----------------------------------------------------------------------------


def test_expand_is_not_supported() -> None:
    assert error_of({"$expand": "Tasks"}) == (
        "The query option '$expand' is not supported by Media Services."
    )


def test_unknown_system_options_are_refused() -> None:
    assert error_of({"$frobnicate": "1"}) == (
        "The query parameter '$frobnicate' begins with a system-reserved '$' character but is "
        "not recognized."
    )


def test_parameters_without_a_dollar_are_ignored() -> None:
    options = parse_query({"api-version": "2.19", "foo": "bar", "$top": "3"}, "Jobs")
    assert options == QueryOptions(top=3)


def test_unknown_entity_set_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown entity set 'Assets'"):
        parse_query({}, "Assets")


def test_a_compiled_filter_keeps_its_text() -> None:
    options = parse_query({"$filter": " State eq 2 "}, "Jobs")
    assert options.filter is not None
    assert options.filter.text == "State eq 2"


# --- Id lookups ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("Id eq 'a'", {"a"}),
        ("'a' eq Id", {"a"}),
        ("Id eq 'a' or Id eq 'b'", {"a", "b"}),
        ("(Id eq 'a' or Id eq 'b') and State eq 2", {"a", "b"}),
        ("State eq 2 and (Id eq 'a' or Id eq 'b')", {"a", "b"}),
        ("Id eq 'a' and Id eq 'b'", set()),
        ("Id eq 'a' or State eq 2", None),
        ("not (Id eq 'a')", None),
        ("Id ne 'a'", None),
        ("Id gt 'a'", None),
        ("Name eq 'a'", None),
        ("startswith(Id,'a')", None),
    ],
)
def test_filters_that_pin_ids_expose_them(text: str, keys: set[str] | None) -> None:
    options = parse_query({"$filter": text}, "Jobs")
    assert options.filter is not None
    assert options.filter.keys == (frozenset(keys) if keys is not None else None)


# --- size and nesting limits ----------------------------------------------------------------------


def test_long_chains_of_or_and_and_evaluate_without_nesting() -> None:
    many_or = " or ".join(f"Priority eq {i}" for i in range(100, 2100)) + " or Priority eq 5"
    assert matches(many_or)
    assert not matches(many_or, _job(priority=-1))
    many_and = " and ".join(["Priority eq 5"] * 2000)
    assert matches(many_and)
    ids = " or ".join(f"Id eq 'nb:jid:UUID:{i}'" for i in range(1500))
    options = parse_query({"$filter": f"({ids}) and State eq 2"}, "Jobs")
    assert options.filter is not None and options.filter.keys is not None
    assert len(options.filter.keys) == 1500


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert matches("(" * 64 + "State eq 2" + ")" * 64)
    # 62 times not (an even number) plus the comparison: 64 levels of evaluation.
    assert matches("not " * 62 + "(State eq 2)")


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("(" * 65 + "State eq 2" + ")" * 65, 64),
        ("not " * 65 + "(State eq 2)", 256),
        ("tolower(" * 65 + "Name" + ")" * 65, 519),
        (" eq ".join(["true"] * 70), 509),
    ],
)
def test_deeper_nesting_is_refused(text: str, position: int) -> None:
    assert error_of({"$filter": text}) == (
        f"The expression is nested too deeply (more than 64 levels) at position {position}."
    )


ALPHABET = [
    "State", "Name", "Id", "Created", "Priority", "EndTime", "Foo", "eq", "ne", "gt", "lt",
    "and", "or", "not", "(", ")", ",", "'x'", "'it''s'", "'", "1", "-2", "3.5", "null",
    "true", "datetime'2024-01-01T00:00:00'", "datetime'bad'", "startswith", "substringof",
    "tolower", "length", "add", "guid'1'", "#", " ",
]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(ALPHABET), max_size=12))
def test_any_filter_text_either_compiles_or_gets_a_query_error(words: list[str]) -> None:
    text = " ".join(words)
    try:
        options = parse_query({"$filter": text}, "Jobs")
    except ODataQueryError as exc:
        assert str(exc)
        return
    if options.filter is not None:
        assert options.filter.matches(_job()) in (True, False)
        assert options.filter.matches(_job(name=None, start_time=None)) in (True, False)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_any_string_literal_round_trips(name: str) -> None:
    literal = "'" + name.replace("'", "''") + "'"
    assert matches(f"Name eq {literal}", _job(name=name))
    assert matches(f"substringof({literal}, Name)", _job(name=f"<{name}>"))


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        keys=st.sampled_from(["$filter", "$select", "$orderby", "$top", "$skip", "$x", "api"]),
        values=st.text(max_size=30),
    ),
    st.sampled_from(["Jobs", "Tasks"]),
)
def test_any_query_options_either_parse_or_get_a_query_error(
    params: dict[str, str], entity_set: str
) -> None:
    try:
        parse_query(params, entity_set)
    except ODataQueryError as exc:
        assert str(exc)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"$top": "²"},
            "Invalid value '²' for the query option '$top': a non-negative integer is required.",
        ),
        ({"$filter": "Priority eq ²"}, "Syntax error: unexpected character '²' at position 12"),
        ({"$filter": "Namé eq 'x'"}, "Syntax error: unexpected character 'é' at position 3"),
        ({"$filter": "Priority eq - 1"}, "Syntax error: unexpected character '-' at position 12"),
        (
            {"$filter": "Created lt datetime'9999-12-31T23:59:59-01:00'"},
            "Unrecognized 'Edm.DateTime' literal 'datetime'9999-12-31T23:59:59-01:00'' at "
            "position 11: date value out of range.",
        ),
        (
            {"$filter": "Created lt datetime'2024-01-01T00:00:00+99:00'"},
            "Unrecognized 'Edm.DateTime' literal 'datetime'2024-01-01T00:00:00+99:00'' at "
            "position 11: offset must be a timedelta strictly between",
        ),
    ],
)
def test_unusual_characters_and_dates_get_clear_errors(
    params: dict[str, str], message: str
) -> None:
    assert error_of(params).startswith(message)
