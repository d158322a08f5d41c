"""The environment model: durations, definition files, shared settings and the chain across apps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from promote import model
from promote.errors import ConfigError
from promote.source import Source


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h30m", 5400), ("1.5h", 5400), ("250ms", 0.25), (" 2m ", 120), ("1h1m1s", 3661)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert model.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "m", "1d", "-1s", "1h 30m", "30s10", "1.h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        model.parse_duration(text)


def _repo(tmp_path: Path, files: dict[str, Any]) -> Source:
    """A directory (not a Git repo) with a chart, schemas and the given environments/ files."""
    chart = tmp_path / "charts" / "app"
    chart.mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: app\nversion: 0.1.0\n")
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "policy.json").write_text("{}")
    (tmp_path / "values").mkdir()
    (tmp_path / "values" / "common.yaml").write_text("a: 1\n")
    (tmp_path / "environments").mkdir()
    for name, doc in files.items():
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
        (tmp_path / "environments" / name).write_text(text)
    return Source(tmp_path)


def _app(name: str, *envs: str | dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "app": name,
        "chart": "../charts/app",
        "environments": [e if isinstance(e, dict) else {"name": e} for e in envs],
        **extra,
    }


def test_environment_defaults(tmp_path: Path) -> None:
    defs = model.load(_repo(tmp_path, {"web.yaml": _app("web", "dev")}))
    (app,) = defs.apps
    (env,) = app.environments
    assert (app.name, app.file, app.chart.local) == ("web", "environments/web.yaml", "charts/app")
    assert (env.namespace, env.release, env.context, env.policy, env.soak_seconds) == ("dev", "web", None, None, 0.0)
    assert defs.files == ("environments/web.yaml",)


def test_chain_order_across_apps(tmp_path: Path) -> None:
    files = {
        "a.yaml": _app("a", "dev", "prod"),
        "b.yaml": _app("b", "dev", "staging", "prod"),
        "c.yaml": _app("c", "staging", "prod"),
    }
    defs = model.load(_repo(tmp_path, files))
    assert defs.chain == ("dev", "staging", "prod")
    assert defs.chain_to("staging") == ("dev", "staging")
    assert defs.upstream_of("prod") == "staging"
    assert defs.upstream_of("dev") is None
    assert [a.name for a in defs.select(("c",))] == ["c"]


def test_apps_that_contradict_the_chain_are_an_error(tmp_path: Path) -> None:
    files = {"a.yaml": _app("a", "dev", "prod"), "b.yaml": _app("b", "prod", "dev")}
    with pytest.raises(ConfigError, match="contradicts the chain dev → prod"):
        model.load(_repo(tmp_path, files))


def test_shared_settings_apply_to_every_app_and_set_the_order(tmp_path: Path) -> None:
    shared = {
        "environments": [
            {"name": "dev", "soak": "1m", "values": {"shared": True, "over": "shared"}},
            {"name": "prod", "context": "prod-ctx", "policy": "../schemas/policy.json", "namespace": "live"},
        ]
    }
    files = {
        "_shared.yaml": shared,
        "web.yaml": _app(
            "web", {"name": "dev", "values": {"over": "app"}}, "prod", valuesFiles=["../values/common.yaml"]
        ),
    }
    defs = model.load(_repo(tmp_path, files))
    (app,) = defs.apps
    dev, prod = app.environments
    assert defs.chain == ("dev", "prod")
    assert dev.soak_seconds == 60 and dev.values == {"shared": True, "over": "app"}
    assert (prod.context, prod.policy, prod.namespace) == ("prod-ctx", "schemas/policy.json", "live")
    assert app.values_files == ("values/common.yaml",)
    assert defs.files == ("environments/_shared.yaml", "environments/web.yaml")


def test_unknown_environment_and_app(tmp_path: Path) -> None:
    defs = model.load(_repo(tmp_path, {"web.yaml": _app("web", "dev")}))
    with pytest.raises(ConfigError, match="unknown environment 'prod': the chain defines dev"):
        defs.chain_to("prod")
    with pytest.raises(ConfigError, match="unknown app api: defined are web"):
        defs.select(("api",))


def test_a_close_name_is_suggested(tmp_path: Path) -> None:
    defs = model.load(_repo(tmp_path, {"web.yaml": _app("web", "dev", "prod")}))
    with pytest.raises(ConfigError) as env:
        defs.chain_to("prdo")
    with pytest.raises(ConfigError) as app:
        defs.select(("webb", "web"))
    assert str(env.value) == "unknown environment 'prdo': the chain defines dev, prod (did you mean 'prod'?)"
    assert str(app.value) == "unknown app webb (did you mean 'web'?): defined are web"


def test_unknown_keys_are_placed_and_a_known_one_suggested(tmp_path: Path) -> None:
    text = """\
app: web
chart: ../charts/app
environments:
  - name: dev
  - name: prod
    namespce: live
    soak: 10 minutes
valuez: {}
"""
    with pytest.raises(ConfigError) as info:
        model.load(_repo(tmp_path, {"web.yaml": text}))
    assert str(info.value).splitlines()[1:] == [
        "  environments/web.yaml:6:5: unknown key 'namespce' (did you mean 'namespace'?)",
        "  environments/web.yaml:7:11: environments/1/soak: '10 minutes' does not match "
        "'^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$'",
        "  environments/web.yaml:8:1: unknown key 'valuez' (did you mean 'values'?)",
    ]


def test_shared_file_problems_are_placed(tmp_path: Path) -> None:
    shared = "environments:\n  - name: dev\n    policy: ../schemas/none.json\n    contxt: x\n"
    with pytest.raises(ConfigError) as info:
        model.load(_repo(tmp_path, {"_shared.yaml": shared, "web.yaml": _app("web", "dev")}))
    assert "environments/_shared.yaml:4:5: unknown key 'contxt' (did you mean 'context'?)" in str(info.value)
    with pytest.raises(ConfigError) as info:
        model.load(_repo(tmp_path / "b", {"_shared.yaml": shared.replace("contxt", "context")}))
    assert "environments/_shared.yaml:3:13: environment dev: policy '../schemas/none.json' not found" in str(info.value)


@pytest.mark.parametrize(
    ("chart", "extra", "source", "local"),
    [
        ("../charts/app", {}, model.ChartSource.DIRECTORY, "charts/app"),
        ("stable/redis", {"version": "^17"}, model.ChartSource.REPOSITORY, None),
        ("redis", {"repo": "https://charts.example.com", "version": "17.0.1"}, model.ChartSource.REPOSITORY, None),
        ("oci://registry.example.com/charts/redis", {"version": "17.0.1"}, model.ChartSource.OCI, None),
        ("oci://registry.example.com/charts/redis@sha256:" + "a" * 64, {}, model.ChartSource.OCI, None),
        ("https://example.com/redis-17.0.1.tgz", {}, model.ChartSource.URL, None),
    ],
)
def test_where_a_chart_lives(
    tmp_path: Path, chart: str, extra: dict[str, Any], source: model.ChartSource, local: str | None
) -> None:
    """`name/chart` is a chart folder when there is one, else a repository `helm repo add` named."""
    defs = model.load(_repo(tmp_path, {"web.yaml": {**_app("web", {"name": "dev"}), "chart": chart, **extra}}))
    ref = defs.apps[0].chart
    assert (ref.source, ref.local, ref.version, ref.repo) == (source, local, extra.get("version"), extra.get("repo"))


def test_an_environment_may_have_its_own_chart_version(tmp_path: Path) -> None:
    app = _app("web", {"name": "dev"}, {"name": "prod", "version": "1.2.0"}, chart="stable/web", version="1.3.0")
    (web,) = model.load(_repo(tmp_path, {"web.yaml": app})).apps
    assert [(e.name, e.chart_version) for e in web.environments] == [("dev", None), ("prod", "1.2.0")]
    assert web.chart.version == "1.3.0"


def test_where_values_are_written_is_kept(tmp_path: Path) -> None:
    shared = {"environments": [{"name": "dev", "values": {"a": 1}}]}
    defs = model.load(_repo(tmp_path, {"_shared.yaml": shared, "web.yaml": _app("web", {"name": "dev"}, values={})}))
    (env,) = defs.apps[0].environments
    assert env.values_from == (
        model.ValuesAt("environments/_shared.yaml", ("environments", 0, "values"), {"a": 1}),
        model.ValuesAt("environments/web.yaml", ("environments", 0, "values"), {}),
    )
    assert defs.apps[0].values_at == model.ValuesAt("environments/web.yaml", ("values",), {})


@pytest.mark.parametrize(
    ("files", "message"),
    [
        # safe_dump sorts keys: app (line 1), chart (2), environments (3), its items, then the rest.
        ({"web.yaml": {**_app("web", "dev"), "replicas": 1}}, "environments/web.yaml:5:1: unknown key 'replicas'"),
        ({"web.yaml": _app("web", {"name": "dev", "soak": "soon"})}, "environments/web.yaml:5:9: environments/0/soak"),
        ({"web.yaml": _app("web", "dev", "dev")}, "web.yaml:5:9: environment 'dev' is listed twice for app web"),
        ({"web.yaml": _app("web", "dev"), "web2.yaml": _app("web", "dev")}, "web2.yaml:1:6: app 'web' is already"),
        ({"web.yaml": {**_app("web", "dev"), "chart": "../charts/none"}}, "web.yaml:2:8: chart '../charts/none'"),
        ({"web.yaml": {**_app("web", "dev"), "chart": "nginx"}}, "web.yaml:2:8: chart 'nginx' is neither a local"),
        ({"web.yaml": {**_app("web", "dev"), "chart": "oci://r/c"}}, "web.yaml:2:8: the OCI chart 'oci://r/c' needs a"),
        ({"web.yaml": {**_app("web", "dev"), "chart": "../c-1.0.0.tgz"}}, "chart '../c-1.0.0.tgz' not found: no file"),
        ({"web.yaml": {**_app("web", "dev"), "chart": "ftp://x/c.tgz"}}, "a URL must be oci://… or an http(s) URL"),
        (
            {"web.yaml": _app("web", {"name": "dev", "version": "1.0.0"})},
            "environment dev: a version applies to a chart from a repository or registry",
        ),
        (
            {"web.yaml": _app("web", "dev", valuesFiles=["../values/none.yaml"])},
            "web.yaml:6:3: '../values/none.yaml' not found",
        ),
        ({"web.yaml": "app: web\n  chart: [\n"}, "environments/web.yaml:2: YAML syntax error"),
        ({"web.yaml": "app: web\napp: other\n"}, "found duplicate key 'app'"),
        ({"web.yaml": "- a list\n"}, "expected a mapping"),
        ({"_shared.yaml": {"environments": [{"name": "dev"}]}}, "no app definitions"),
    ],
)
def test_definition_errors(tmp_path: Path, files: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        model.load(_repo(tmp_path, files))
    assert message in str(info.value)


def test_every_problem_is_reported_together(tmp_path: Path) -> None:
    files = {"a.yaml": {**_app("a", "dev"), "x": 1}, "b.yaml": "app: [\n"}
    with pytest.raises(ConfigError) as info:
        model.load(_repo(tmp_path, files))
    text = str(info.value)
    assert "environments/a.yaml:5:1: unknown key 'x'" in text
    assert "environments/b.yaml:" in text


def test_no_environments_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no environments/ directory"):
        model.load(Source(tmp_path))


def test_ignore_rule_matching() -> None:
    rule = model.IgnoreRule(json_pointers=("/spec/replicas",), group="apps", kind="Deployment")
    assert rule.matches("apps/v1", "Deployment", "web")
    assert not rule.matches("v1", "Deployment", "web")
    assert not rule.matches("apps/v1", "StatefulSet", "web")
    core = model.IgnoreRule(json_pointers=("/data",), group="", name="cfg")
    assert core.matches("v1", "ConfigMap", "cfg")
    assert not core.matches("v1", "ConfigMap", "other")


def test_depends_on_is_kept(tmp_path: Path) -> None:
    defs = model.load(_repo(tmp_path, {"db.yaml": _app("db", "dev"), "web.yaml": _app("web", "dev", dependsOn=["db"])}))
    assert {a.name: a.depends_on for a in defs.apps} == {"db": (), "web": ("db",)}


def test_depends_on_an_unknown_app_names_the_file(tmp_path: Path) -> None:
    files = {"db.yaml": _app("db", "dev"), "web.yaml": _app("web", "dev", dependsOn=["dbb"])}
    with pytest.raises(ConfigError) as e:
        model.load(_repo(tmp_path, files))
    assert "environments/web.yaml: dependsOn: unknown app 'dbb' (did you mean 'db'?)" in str(e.value)


def test_a_depends_on_cycle_names_its_files(tmp_path: Path) -> None:
    files = {
        "a.yaml": _app("a", "dev", dependsOn=["b"]),
        "b.yaml": _app("b", "dev", dependsOn=["c"]),
        "c.yaml": _app("c", "dev", dependsOn=["a"]),
        "d.yaml": _app("d", "dev", dependsOn=["d"]),
    }
    with pytest.raises(ConfigError) as e:
        model.load(_repo(tmp_path, files))
    text = str(e.value)
    assert "environments/a.yaml, environments/b.yaml, environments/c.yaml: dependsOn goes round in a cycle" in text
    assert "a → b → c → a" in text
    assert "environments/d.yaml: dependsOn goes round in a cycle: d → d" in text
