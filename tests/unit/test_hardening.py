"""Hardening of what users hand promote (issue 19), as pure logic: no secret in an error, bounded and
strictly decoded input, rendered objects checked before anything is planned, writeOnly values masked
whatever kind renders them, saved plans private."""

from __future__ import annotations

import os
import shutil
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from promote import diff, pin, saved, yamlio
from promote import values as vals
from promote.cluster import ApiError
from promote.engine.syncing import ensure_namespace
from promote.errors import ChartError, ConfigError, LockError
from promote.lock import EnvLock, holder_of
from promote.plan import FieldChange, Plan
from promote.render import checked
from tests.support.cli import cli
from tests.support.repo import CHART, DEFINITION, make_repo

# --- --set: no value in any error ----------------------------------------------------------------


@pytest.mark.parametrize(
    "assignment",
    ["db.password=hunter2,oops", "db.password=hunter2,=1", "a[x]=hunter2", "[0]=hunter2"],
)
def test_a_set_error_names_keys_never_values(assignment: str) -> None:
    with pytest.raises(ConfigError) as e:
        vals.parse_set([assignment])
    assert "hunter2" not in str(e.value)
    assert "cannot parse --set" in str(e.value)


def test_a_huge_list_index_is_refused_before_any_list_grows() -> None:
    start = time.process_time()
    with pytest.raises(ConfigError, match=r"list index \[99999999\] is above 65536"):
        vals.parse_set(["a[99999999]=1"])
    assert time.process_time() - start < 1.0  # no 99,999,999-item list was built first
    assert vals.parse_set(["a[2]=1"]) == {"a": [None, None, 1]}


# --- files and YAML ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "byte"),
    [("é".encode("latin-1"), 0), ("ok: é".encode("cp1252"), 4), ("a: 1".encode("utf-16"), 0)],
)
def test_text_that_is_not_utf8_is_refused_naming_file_and_byte(encoded: bytes, byte: int) -> None:
    with pytest.raises(ConfigError, match=rf"env\.yaml: not UTF-8 text \(byte {byte} is 0x"):
        yamlio.decode(encoded, name="env.yaml")


def test_a_utf8_bom_is_fine() -> None:
    assert yamlio.load(yamlio.decode(b"\xef\xbb\xbfa: 1\n", name="x"), name="x") == {"a": 1}


def test_a_huge_file_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(yamlio.MAX_FILE_BYTES + 10)
    with pytest.raises(ConfigError, match="more than the"):
        yamlio.read_text(big)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[a, b]: 1\n", "a key must be a string or number, not a list"),
        ("{a: 1}: 1\n", "a key must be a string or number, not a dict"),
        ("a: !!binary aGVsbG8=\n", "tag:yaml.org,2002:binary has no JSON form"),
        ("a: !!set {x: null}\n", "tag:yaml.org,2002:set has no JSON form"),
        ("a: !!omap [{x: 1}]\n", "tag:yaml.org,2002:omap has no JSON form"),
    ],
)
def test_yaml_that_json_cannot_carry_is_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"values\.yaml:1: .*" + message.replace(".", r"\.")):
        yamlio.load(text, name="values.yaml")


def test_a_date_stays_the_text_it_was_written_as() -> None:
    assert yamlio.load("released: 2026-12-07\n", name="x") == {"released": "2026-12-07"}


def test_an_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    start = time.process_time()
    with pytest.raises(ConfigError, match="expands to more than"):
        yamlio.load("\n".join(lines), name="bomb.yaml")
    assert time.process_time() - start < 5.0


# --- rendered objects ----------------------------------------------------------------------------

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"apiVersion": "v1", "metadata": {"name": "c"}}, "rendered document 2 has no kind"),
        ({"kind": "ConfigMap", "metadata": {"name": "c"}}, "rendered document 2 has no apiVersion"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": None}, "rendered document 2 has no metadata.name"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}, "rendered document 2 has no metadata.name"),
        (["a", "list"], "rendered document 2 is a list, not an object"),
        (dict(CM), "ConfigMap c is rendered twice"),
    ],
)
def test_rendered_objects_are_checked(doc: object, message: str) -> None:
    with pytest.raises(ChartError, match=message):
        checked([dict(CM), doc], "chart c")


def test_empty_documents_are_skipped_and_good_ones_kept() -> None:
    other = {**CM, "metadata": {"name": "d"}}
    assert checked([dict(CM), {}, other], "chart c") == [CM, other]


# --- writeOnly values in any kind ----------------------------------------------------------------

SCHEMA = {
    "properties": {
        "db": {"properties": {"password": {"type": "string", "writeOnly": True}}},
        "tokens": {"writeOnly": True},
    }
}


def test_the_values_a_schema_hides_are_collected_below_their_path() -> None:
    values = {"db": {"password": "hunter22", "host": "db"}, "tokens": ["t0ken-a", {"b": "t0ken-b"}], "x": "y"}
    hidden = vals.values_at(values, vals.sensitive_paths(SCHEMA, values))
    assert hidden == frozenset({"hunter22", "t0ken-a", "t0ken-b"})


def test_a_hidden_value_in_a_config_map_field_is_masked_as_a_secret_is() -> None:
    hidden = frozenset({"hunter22"})
    fields = [
        FieldChange("data.url", "postgres://app:old@db", "postgres://app:hunter22@db", segments=("data", "url")),
        FieldChange("data.level", "info", "debug", segments=("data", "level")),
    ]
    masked = diff.mask_fields(fields, hidden)
    assert [(f.path, f.before, f.after, f.sensitive) for f in masked] == [
        ("data.url", diff.SENSITIVE, diff.SENSITIVE, True),
        ("data.level", "info", "debug", False),
    ]
    obj = {"kind": "ConfigMap", "data": {"url": "postgres://app:hunter22@db", "n": 3}}
    assert diff.mask_values(obj, hidden) == {"kind": "ConfigMap", "data": {"url": diff.SENSITIVE, "n": 3}}


def test_a_short_hidden_value_is_masked_only_where_it_is_the_whole_value() -> None:
    assert diff.holds("abc", frozenset({"abc"}))
    assert not diff.holds("xabcx", frozenset({"abc"}))
    assert diff.holds("xabcdx", frozenset({"abcd"}))


# --- saved plans ---------------------------------------------------------------------------------


def test_a_saved_plan_is_private_even_over_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("old")
    os.chmod(path, 0o644)
    saved.write(Plan(target="prod", revision="abc", environments=()), str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved.write(Plan(target="prod", revision="abc", environments=()), str(tmp_path / "new.json"))
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o600


# --- the namespace race --------------------------------------------------------------------------


class _LostRace:
    """A cluster where another apply created the namespace between our look and our create."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.created = 0

    def namespace_exists(self, namespace: str) -> bool:
        return False

    def create(self, obj: dict[str, object], namespace: str | None) -> dict[str, object]:
        self.created += 1
        raise ApiError("cannot create Namespace", self.status)


def test_a_namespace_created_by_a_concurrent_apply_is_fine() -> None:
    lost = _LostRace(409)
    ensure_namespace(lost, "prod")  # type: ignore[arg-type]
    assert lost.created == 1


def test_any_other_failure_to_create_the_namespace_is_reported() -> None:
    with pytest.raises(ApiError):
        ensure_namespace(_LostRace(403), "prod")  # type: ignore[arg-type]


# --- the lock: judged on our own clock -----------------------------------------------------------


def _lease(renewed: datetime, ttl: int, version: str) -> dict[str, object]:
    stamp = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "metadata": {"resourceVersion": version},
        "spec": {"holderIdentity": "ci@runner/1", "leaseDurationSeconds": ttl, "renewTime": stamp},
    }


def test_a_lease_that_looks_expired_to_a_clock_running_ahead_is_still_live_until_seen_unchanged() -> None:
    lock = EnvLock(None, "ns", "prod", "me@host/2")  # type: ignore[arg-type]  # no request is made here
    now = datetime.now(UTC)
    skewed = _lease(now - timedelta(seconds=45), ttl=1, version="7")  # "45 s old" for a 1 s lease
    assert holder_of(skewed, now) is None  # what the timestamps alone say
    assert lock._live_holder(skewed, now) == "ci@runner/1"  # first seen: live
    renewed = _lease(now - timedelta(seconds=45), ttl=1, version="8")
    time.sleep(0.6)
    assert lock._live_holder(renewed, now) == "ci@runner/1"  # it moved: live again, timer restarts
    time.sleep(0.6)
    assert lock._live_holder(renewed, now) == "ci@runner/1"  # 0.6 s unchanged < 1 s
    time.sleep(0.5)
    assert lock._live_holder(renewed, now) is None  # unchanged for its whole duration on our clock


def test_a_lease_stale_by_far_more_than_any_clock_skew_is_taken_at_once() -> None:
    lock = EnvLock(None, "ns", "prod", "me@host/2")  # type: ignore[arg-type]
    now = datetime.now(UTC)
    assert lock._live_holder(_lease(now - timedelta(hours=1), ttl=30, version="1"), now) is None


def test_a_holder_that_lost_its_lease_stops_before_the_next_change() -> None:
    lock = EnvLock(None, "ns", "prod", "me@host/2", ttl=30)  # type: ignore[arg-type]
    lock.ensure_held()  # not started: nothing to say
    lock.lost = "the lease was taken by ci@runner/1"
    with pytest.raises(LockError, match=r"lost the lock of environment prod .*taken by ci@runner/1"):
        lock.ensure_held()


# --- bad input through the command line, no cluster needed ---------------------------------------


def _validate(repo: Path) -> tuple[int, str]:
    result = cli(repo, "validate")
    assert "Traceback" not in result.output and "unexpected" not in result.output, result.output
    return result.exit_code, result.stderr


def test_a_definition_in_latin1_is_refused_naming_file_and_byte(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "t-a", "t-b")
    (repo / DEFINITION).write_bytes((repo / DEFINITION).read_bytes() + "# café\n".encode("latin-1"))
    code, err = _validate(repo)
    assert code == 1 and f"{DEFINITION}: not UTF-8 text (byte" in err, err


def test_a_definition_with_a_list_as_a_key_is_refused_by_name(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "t-a", "t-b")
    (repo / DEFINITION).write_text((repo / DEFINITION).read_text() + "[a, b]: 1\n")
    code, err = _validate(repo)
    assert code == 1 and "a key must be a string or number, not a list" in err, err


def test_a_chart_symlinked_from_outside_the_repository_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "t-a", "t-b")
    outside = tmp_path / "elsewhere"
    shutil.move(str(repo / CHART), outside)
    (repo / CHART).symlink_to(outside, target_is_directory=True)
    code, err = _validate(repo)
    assert code == 1 and "resolves outside the repository" in err, err


def test_a_file_in_a_chart_linking_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "t-a", "t-b")
    (tmp_path / "secret.yaml").write_text("kind: ConfigMap\n")
    (repo / CHART / "templates" / "x.yaml").symlink_to(tmp_path / "secret.yaml")
    code, err = _validate(repo)
    assert code == 1 and "templates/x.yaml is a symlink out of the repository" in err, err


def test_a_shared_file_naming_a_missing_policy_is_an_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "t-a", "t-b")
    (repo / "environments" / "_shared.yaml").write_text(
        "environments:\n  - name: prod\n    policy: ../schemas/no-such.policy.json\n"
    )
    code, err = _validate(repo)
    assert code == 1 and "policy '../schemas/no-such.policy.json' not found" in err, err


def test_a_hidden_value_inside_a_structured_field_is_found() -> None:
    hidden = frozenset({'pä"ss', "abc"})
    env_var = [{"name": "DB", "value": 'pä"ss'}]
    assert diff.holds(env_var, hidden) and diff.holds({"k": "abc"}, hidden)
    (masked,) = diff.mask_fields([FieldChange("spec.env", None, env_var, segments=("spec", "env"))], hidden)
    assert masked.sensitive and masked.after == diff.SENSITIVE


def test_an_error_quoting_a_hidden_value_is_masked() -> None:
    message = 'Secret "x" is invalid: data[password]: Invalid value: "hunter22": too short'
    assert diff.mask_text(message, frozenset({"hunter22"})) == message.replace("hunter22", diff.SENSITIVE)


def test_yaml_merge_keys_are_read_as_helm_reads_them() -> None:
    doc = yamlio.load("base: &b {a: 1, b: 2}\nx:\n  <<: *b\n  b: 3\n", name="v.yaml")
    assert doc["x"] == {"a": 1, "b": 3}
    with pytest.raises(ConfigError, match="found duplicate key 'a'"):
        yamlio.load("x:\n  a: 1\n  a: 2\n", name="v.yaml")


class _PinMap:
    def __init__(self, data: dict[str, str]) -> None:
        self.data = data

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, object]:
        return {"data": self.data}


@pytest.mark.parametrize("text", ['{"blocked": ["x"]}', '{"by": 3}', "[]", "not json"])
def test_a_damaged_pin_is_still_a_pin(text: str) -> None:
    p = pin.read(_PinMap({"pin.json": text}), "ns", "prod")  # type: ignore[arg-type]
    assert p is not None and "unreadable pin ConfigMap promote-pin-prod" in p.describe()
