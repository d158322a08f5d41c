"""The bad inputs of the fault suite (bench/faults.py): generated, over every surface promote reads.

Each `Case` says what to write (files in the test repository, or outside it), which command to run, and
what promote must answer: its exit code (1, or 3 where a gate or policy applies) and the words its
message must hold (the file, and a place in it: a line, a byte, a key path, or the flag). Generation
is deterministic for a seed; the seed only picks positions and values, never which cases exist.
"""

from __future__ import annotations

import copy
import json
import random
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFINITION = "environments/python-app.yaml"
SHARED = "environments/_shared.yaml"
VALUES_FILE = "environments/values/common.yaml"
APP_SCHEMA = "schemas/python-app.values.schema.json"
POLICY = "schemas/prod.policy.schema.json"
CHART = "charts/python-app"
CHART_VALUES = f"{CHART}/values.yaml"
CHART_SCHEMA = f"{CHART}/values.schema.json"
CHART_YAML = f"{CHART}/Chart.yaml"
TEMPLATE = f"{CHART}/templates/configmap.yaml"
HUGE = 16 * 1024 * 1024 + 4096  # just past the 16 MiB every file promote reads may have

# Where in a file: a line or byte number, a `file:line` pair, or a key path given per case.
AT_LINE = r"line \d+|byte \d+|offset \d+|:\d+"
FLAG_SET = r"--set"

# The commands a bad input is run with, in turn; apply is the one that could change the cluster, so most
# cases run it. `--allow-dirty`: the bad input is an uncommitted edit, and prod is gated.
APPLY = ("apply", "prod", "--yes", "--allow-dirty", "--timeout", "60s", "--lock-timeout", "20s")
PLAN = ("plan", "prod")
VALIDATE = ("validate",)
STATUS = ("status", "prod")
DIFF = ("diff", "prod")
FILE_COMMANDS = (APPLY, PLAN, APPLY, VALIDATE, APPLY, STATUS, APPLY, DIFF)
VALUES_COMMANDS = (APPLY, PLAN, APPLY, VALIDATE)
RENDER_COMMANDS = (APPLY, PLAN, APPLY, STATUS, APPLY, DIFF)  # validate does not render templates
# A policy applies to apply (exit 3); validate and plan report its violations as errors (exit 1).
POLICY_COMMANDS = ((APPLY, (3,)), (PLAN, (1, 3)), (APPLY, (3,)), (VALIDATE, (1, 3)))


@dataclass
class Case:
    """One bad input and what promote must answer."""

    surface: str
    name: str
    argv: tuple[str, ...]
    files: dict[str, bytes] = field(default_factory=dict)  # repo-relative path → content
    links: dict[str, str] = field(default_factory=dict)  # repo-relative symlink → its target
    remove: tuple[str, ...] = ()  # repo-relative paths to delete
    outside: dict[Path, bytes] = field(default_factory=dict)  # files written outside the repository
    pre: tuple[str, ...] = ()  # global options, before the command
    env: dict[str, str] = field(default_factory=dict)
    codes: tuple[int, ...] = (1,)
    names: tuple[str, ...] = ()  # each must appear in the output
    place: str = ""  # a regex that must match the output (a line, key path or flag), when not empty
    tags: frozenset[str] = frozenset()  # encoding, binary, huge, unicode


@dataclass
class Context:
    """What the generators start from: the committed files, and where to put files outside the repo."""

    rng: random.Random
    base: dict[str, bytes]  # repo-relative path → committed content, for every file a case may corrupt
    inputs: Path  # a folder outside the repository
    kubeconfig: Path  # the admin kubeconfig of the dev cluster
    good_plan: Path  # `plan prod --out` of the deployed state
    default_plan: Path  # `plan default --out`
    secret_set: str  # a marker value given to a writeOnly key through --set
    fake_token: str  # a marker token in a bad kubeconfig
    _n: int = 0

    def definition(self) -> dict[str, Any]:
        doc: dict[str, Any] = yaml.safe_load(self.base[DEFINITION])
        return doc

    def command(self, pool: tuple[tuple[str, ...], ...] = FILE_COMMANDS) -> tuple[str, ...]:
        """The next command of a pool, in turn."""
        self._n += 1
        return pool[self._n % len(pool)]

    def out(self, name: str) -> Path:
        return self.inputs / name


def dump(doc: Any) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()


# --- encodings, binary, huge: the same faults in every file ---------------------------------------


def _bad_bytes(ctx: Context, text: bytes, kind: str) -> bytes:
    """`text` with one encoding fault, put inside a string value or comment at a seeded place."""
    lines = text.split(b"\n")
    # A line that ends in a value or a comment, so the bad byte lands where a parser keeps it.
    candidates = [i for i, line in enumerate(lines) if line.strip() and not line.strip().startswith(b"{{")]
    i = ctx.rng.choice(candidates) if candidates else 0
    if kind == "latin-1":
        insert = "  # café crème".encode("latin-1")
    elif kind == "cp1252":
        insert = " # \u201cquoted\u201d \u2013 text".encode("cp1252")
    elif kind == "invalid-utf8":
        insert = b" # \xff\xfe bad"
    elif kind == "overlong":
        insert = b" # \xc0\xaf overlong"
    elif kind == "surrogate":
        insert = b" # \xed\xa0\x80 surrogate"
    elif kind == "truncated":
        insert = b" # \xe2\x82 cut"
    else:
        raise ValueError(kind)
    if text.lstrip().startswith((b"{", b"[")):  # JSON has no comments: put the byte inside the first string
        j = text.index(b'"') + 1
        return text[:j] + insert.replace(b" # ", b"") + text[j:]
    lines[i] = lines[i] + insert
    return b"\n".join(lines)


ENCODINGS = ("latin-1", "cp1252", "invalid-utf8", "overlong", "surrogate", "truncated", "utf-16")


def _encoded(ctx: Context, text: bytes, kind: str) -> bytes:
    if kind == "utf-16":
        return text.decode().encode("utf-16")
    return _bad_bytes(ctx, text, kind)


def _binary(ctx: Context, size: int = 4096) -> bytes:
    return bytes(ctx.rng.getrandbits(8) for _ in range(size))


def _huge_yaml() -> bytes:
    return b"# padding\n" + (b"#" + b"x" * 1023 + b"\n") * (HUGE // 1024) + b"a: 1\n"


def _huge_json() -> bytes:
    return b'{"description": "' + b"x" * HUGE + b'"}'


# Repository files whose faults must be named by file; with the command that reads each, and how promote
# names it in messages (the path relative to the repository, or relative to its folder).
REPO_FILES = {
    DEFINITION: "python-app.yaml",
    SHARED: "_shared.yaml",
    VALUES_FILE: "common.yaml",
    APP_SCHEMA: "python-app.values.schema.json",
    POLICY: "prod.policy.schema.json",
    CHART_VALUES: "values.yaml",
    CHART_SCHEMA: "values.schema.json",
}
SURFACE_OF = {
    DEFINITION: "environment files",
    SHARED: "shared files",
    VALUES_FILE: "environment files",
    APP_SCHEMA: "schemas",
    POLICY: "schemas",
    CHART_VALUES: "charts",
    CHART_SCHEMA: "charts",
    CHART_YAML: "charts",
    TEMPLATE: "charts",
}


def encoding_cases(ctx: Context) -> Iterator[Case]:
    """Every file promote reads, in every broken encoding, as random bytes, and past the size cap."""
    for path, shown in {**REPO_FILES, CHART_YAML: "Chart.yaml"}.items():
        json_file = path.endswith(".json")
        for kind in ENCODINGS:
            yield Case(
                SURFACE_OF[path],
                f"{path}: {kind}",
                ctx.command(),
                files={path: _encoded(ctx, ctx.base[path], kind)},
                names=(shown,),
                place=AT_LINE,
                tags=frozenset({"encoding"}),
            )
        yield Case(
            SURFACE_OF[path],
            f"{path}: random bytes",
            ctx.command(),
            files={path: _binary(ctx)},
            names=(shown,),
            place=AT_LINE,
            tags=frozenset({"binary"}),
        )
        yield Case(
            SURFACE_OF[path],
            f"{path}: over 16 MiB",
            ctx.command(),
            files={path: _huge_json() if json_file else _huge_yaml()},
            names=(shown,),
            place=r"bytes|MiB|too (big|large)",
            tags=frozenset({"huge"}),
        )
    # A template: helm reads it (and names it, with no line for a bad byte); promote decodes what it renders.
    for kind in ("latin-1", "invalid-utf8", "surrogate"):
        text = ctx.base[TEMPLATE] + b"  note: |\n    " + _bad_bytes(ctx, b"x", kind).strip() + b"\n"
        yield Case(
            "charts",
            f"template: {kind}",
            ctx.command(RENDER_COMMANDS),
            files={TEMPLATE: text},
            names=("configmap.yaml",),
            tags=frozenset({"encoding"}),
        )
    yield Case(
        "charts",
        "template: random bytes",
        ctx.command(RENDER_COMMANDS),
        files={TEMPLATE: _binary(ctx)},
        names=("configmap.yaml",),
        tags=frozenset({"binary"}),
    )
    yield Case(
        "charts",
        "template: over 16 MiB",
        ctx.command(RENDER_COMMANDS),
        files={TEMPLATE: ctx.base[TEMPLATE] + b"{{/*" + b"x" * HUGE + b"*/}}\n"},
        names=("configmap.yaml",),
        place=r"bytes|MiB|too (big|large)|larger",
        tags=frozenset({"huge"}),
    )
    # -f files, outside the repository, in the same encodings.
    values = dump({"config": {"logLevel": "warning"}})
    for kind in (*ENCODINGS, "binary", "huge"):
        path = ctx.out(f"values-{kind}.yaml")
        content = _binary(ctx) if kind == "binary" else _huge_yaml() if kind == "huge" else _encoded(ctx, values, kind)
        yield Case(
            "--set/-f",
            f"-f file: {kind}",
            (*ctx.command(VALUES_COMMANDS), "-f", str(path)),
            outside={path: content},
            names=(path.name,),
            place=r"bytes|MiB" if kind == "huge" else AT_LINE,
            tags=frozenset({"binary" if kind == "binary" else "huge" if kind == "huge" else "encoding"}),
        )


# --- YAML that parses badly, or into what JSON cannot carry ---------------------------------------

BILLION_LAUGHS = (
    b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + b"".join(
        f"{chr(ord('b') + i)}: &{chr(ord('b') + i)} [{','.join(['*' + chr(ord('a') + i)] * 9)}]\n".encode()
        for i in range(8)
    )
    + b"values: *i\n"
)


def yaml_faults(ctx: Context, text: bytes) -> dict[str, tuple[bytes, str]]:
    """Broken variants of a YAML mapping document: name → (content, a regex for the place)."""
    lines = text.decode().rstrip("\n").split("\n")
    k = ctx.rng.randrange(1, max(2, len(lines)))
    top_keys = [line.split(":")[0] for line in lines if line and line[0] not in " -#" and ":" in line]
    key = ctx.rng.choice(top_keys) if top_keys else "a"
    at = AT_LINE
    return {
        "unclosed flow": ("\n".join([*lines[:k], "broken: {a: [1, 2", *lines[k:]]).encode(), at),
        "bad indentation": ("\n".join([*lines[:k], "   oops: 1", " bad: 2", *lines[k:]]).encode(), at),
        "tab indentation": ("\n".join([*lines, "tabbed:", "\tkey: 1"]).encode(), at),
        "unterminated quote": ("\n".join([*lines[:k], 'quoted: "never closed', *lines[k:]]).encode(), at),
        "duplicate key": ("\n".join([*lines, f"{key}: duplicate"]).encode(), at + "|duplicate"),
        "!!binary": ("\n".join([*lines, "blob: !!binary aGVsbG8="]).encode(), r"binary"),
        "!!set": ("\n".join([*lines, "things: !!set {a, b}"]).encode(), r"!!set|tag:yaml.org,2002:set"),
        "!!omap": ("\n".join([*lines, "ordered: !!omap [{a: 1}]"]).encode(), r"omap"),
        "!!python/object": ("\n".join([*lines, "evil: !!python/object/apply:os.system ['true']"]).encode(), at),
        "unknown tag": ("\n".join([*lines, "tagged: !custom value"]).encode(), at + "|custom"),
        "list as key": ("\n".join([*lines, "? [a, b]", ": 1"]).encode(), at + "|key"),
        "map as key": ("\n".join([*lines, "? {a: 1}", ": 1"]).encode(), at + "|key"),
        "alias bomb": (BILLION_LAUGHS, r"alias|expands|\d{6,}"),
        "deep nesting": (b"deep: " + b"[" * 20000 + b"]" * 20000 + b"\n", at + r"|deep|nest"),
        "two documents": (text + b"\n---\nsecond: document\n", at + r"|document"),
        "scalar document": (b"just a string\n", r"mapping|object|string|type"),
        "list document": (b"- a\n- b\n", r"mapping|object|list|array|type"),
    }


YAML_FILES = {
    DEFINITION: "python-app.yaml",
    SHARED: "_shared.yaml",
    VALUES_FILE: "common.yaml",
    CHART_VALUES: "values.yaml",
}


def yaml_cases(ctx: Context) -> Iterator[Case]:
    for path, shown in YAML_FILES.items():
        for name, (content, place) in yaml_faults(ctx, ctx.base[path]).items():
            yield Case(
                SURFACE_OF[path], f"{path}: {name}", ctx.command(), files={path: content}, names=(shown,), place=place
            )
    values = dump({"config": {"logLevel": "warning"}})
    for name, (content, place) in yaml_faults(ctx, values).items():
        path = ctx.out(f"values-{name.replace(' ', '-').replace('/', '-').replace('!', '')}.yaml")
        yield Case(
            "--set/-f",
            f"-f file: {name}",
            (*ctx.command(VALUES_COMMANDS), "-f", str(path)),
            outside={path: content},
            names=(path.name,),
            place=place,
        )


# --- the definition against its schema -----------------------------------------------------------

WRONG = {
    "app": [5, "", "Bad_Name", "a" * 54, "-x", None, [], "pythön-app"],
    "chart": [5, "", None, "../charts/missing", "/etc", "../../../../../tmp", "../README.md"],
    "valuesFiles": ["x.yaml", [5], ["values/missing.yaml"], ["../../../../../etc/hostname"], {}],
    "values": [[], "x", 5],
    "schema": [5, [], "../schemas/missing.json", "/etc/hostname", "../schemas"],
    "environments": [[], {}, "x", [5], [{}]],
    "version": [5],
    "ignoreDifferences": [{}, [{"kind": "X"}], [{"jsonPointers": ["no-slash"]}], [{"jsonPointers": []}], ["x"]],
}
WRONG_ENV = {
    "name": [5, "Prod", "", "prod env"],
    "namespace": ["Bad_NS", "n" * 64, 5, "ns.with.dots", "-ns"],
    "release": ["UPPER", "r" * 54, 7],
    "context": [5, []],
    "policy": [5, "../schemas/missing.json", "/etc/hostname"],
    "soak": ["10 parsecs", "10", 5, "-1m", "m"],
    "valuesFiles": ["x", ["values/missing.yaml"]],
    "values": [[], "x"],
    "ignoreDifferences": [[{"jsonPointers": "x"}]],
    "replicas": [3],
}


def definition_cases(ctx: Context) -> Iterator[Case]:
    base = ctx.definition()
    for key, wrongs in WRONG.items():
        for wrong in wrongs:
            doc = copy.deepcopy(base)
            doc[key] = wrong
            yield Case(
                "environment files",
                f"definition: {key} = {json.dumps(wrong)[:24]}",
                ctx.command(),
                files={DEFINITION: dump(doc)},
                names=("python-app.yaml",),
                place=re_key(key, wrong),
                tags=frozenset({"unicode"}) if isinstance(wrong, str) and not wrong.isascii() else frozenset(),
            )
    for key, wrongs in WRONG_ENV.items():
        for wrong in wrongs:
            doc = copy.deepcopy(base)
            i = ctx.rng.randrange(len(doc["environments"]))
            doc["environments"][i][key] = wrong
            yield Case(
                "environment files",
                f"definition: env {i} {key} = {json.dumps(wrong)[:20]}",
                ctx.command(),
                files={DEFINITION: dump(doc)},
                names=("python-app.yaml",),
                place=re_key(key, wrong),
            )
    doc = copy.deepcopy(base)
    doc["environments"].append(copy.deepcopy(doc["environments"][0]))
    yield Case(
        "environment files",
        "definition: an environment twice",
        ctx.command(),
        files={DEFINITION: dump(doc)},
        names=("python-app.yaml",),
        place=r"default",
    )
    doc = copy.deepcopy(base)
    doc["unknownKey"] = 1
    yield Case(
        "environment files",
        "definition: unknown key",
        ctx.command(),
        files={DEFINITION: dump(doc)},
        names=("python-app.yaml",),
        place=r"unknownKey",
    )
    for missing in ("app", "chart", "environments"):
        doc = copy.deepcopy(base)
        del doc[missing]
        yield Case(
            "environment files",
            f"definition: no {missing}",
            ctx.command(),
            files={DEFINITION: dump(doc)},
            names=("python-app.yaml",),
            place=re_key(missing),
        )
    yield Case(
        "environment files",
        "definition: empty file",
        ctx.command(),
        files={DEFINITION: b""},
        names=("python-app.yaml",),
        place=r"empty|mapping|object|null|type",
    )
    # A second app file naming the same app, and one naming the same release in the same namespace.
    yield Case(
        "environment files",
        "two files, one app",
        ctx.command(),
        files={"environments/copy.yaml": ctx.base[DEFINITION]},
        names=("copy.yaml",),
        place=r"python-app",
    )
    # Shared files: the same schema, minus what only an app file may say.
    for key, wrongs in {
        "namespace": ["Bad_NS"],
        "soak": ["soon"],
        "policy": ["../schemas/missing.json"],
        "values": [[1]],
        "context": [5],
    }.items():
        for wrong in wrongs:
            kept = yaml.safe_load(ctx.base[SHARED])["environments"]
            shared = {"environments": [*kept, {"name": "prod", key: wrong}]}
            yield Case(
                "shared files",
                f"shared: {key} = {json.dumps(wrong)}",
                ctx.command(),
                files={SHARED: dump(shared)},
                names=("_shared.yaml",),
                place=re_key(key, wrong),
            )
    for shared_doc, what in (
        ({"environments": [{"name": "prod"}], "app": "x"}, "app"),
        ({"environments": []}, "environments"),
        ({"environments": [{"namespace": "x"}]}, "name"),
        ({"chart": "../charts/python-app", "environments": [{"name": "prod"}]}, "chart"),
    ):
        yield Case(
            "shared files",
            f"shared: {what}",
            ctx.command(),
            files={SHARED: dump(shared_doc)},
            names=("_shared.yaml",),
            place=re_key(what),
        )


def re_key(key: str, value: Any = None) -> str:
    """A key path or line; a path the value names (a missing or outside file) places it as well."""
    named = [re.escape(v) for v in (value if isinstance(value, list) else [value]) if isinstance(v, str) and v]
    return "|".join([rf"{key}|line \d+|:\d+", *named])


# --- values: valid files whose values break the chart's schema, the app's, or prod's policy ---------

VALUE_FAULTS: list[tuple[str, dict[str, Any], tuple[int, ...], str]] = [
    # (name, values, exit codes, the key path the message must name)
    ("replicaCount a string", {"replicaCount": "three"}, (1,), "replicaCount"),
    ("replicaCount negative", {"replicaCount": -1}, (1,), "replicaCount"),
    ("replicaCount a float", {"replicaCount": 1.5}, (1,), "replicaCount"),
    ("image a string", {"image": "nginx"}, (1,), "image"),
    ("image.tag empty", {"image": {"tag": ""}}, (1,), "tag"),
    ("image.repository outside registry.local", {"image": {"repository": "docker.io/x"}}, (1,), "repository"),
    ("service.port too big", {"service": {"port": 70000}}, (1,), "port"),
    ("service.port a string", {"service": {"port": "80"}}, (1,), "port"),
    ("secret.password too short", {"secret": {"password": "short"}}, (1,), "password"),
    ("secret null", {"secret": None}, (1,), "secret"),
    ("config.logLevel unknown", {"config": {"logLevel": "verbose"}}, (1,), "logLevel"),
    ("podAnnotations a number", {"podAnnotations": {"a": 5}}, (1,), "podAnnotations"),
]
# A shared file's values sit below the app's environment values: only keys the app leaves alone count.
SHARED_POLICY_FAULTS: list[tuple[str, dict[str, Any], str]] = [
    ("prod logLevel debug", {"config": {"logLevel": "debug"}}, "logLevel"),
    ("prod logLevel debug (again)", {"config": {"logLevel": "debug"}}, "logLevel"),
]
PROD_POLICY_FAULTS: list[tuple[str, dict[str, Any], str]] = [
    ("prod replicaCount 2", {"replicaCount": 2}, "replicaCount"),
    ("prod image.tag latest", {"replicaCount": 3, "image": {"tag": "latest"}}, "tag"),
    ("prod logLevel debug", {"replicaCount": 3, "config": {"logLevel": "debug"}}, "logLevel"),
]


def values_cases(ctx: Context) -> Iterator[Case]:
    base = ctx.definition()
    for name, values, codes, key in VALUE_FAULTS:
        doc = copy.deepcopy(base)
        doc["environments"][0]["values"] = {**doc["environments"][0]["values"], **values}
        yield Case(
            "environment files",
            f"values: {name}",
            ctx.command(VALUES_COMMANDS),
            files={DEFINITION: dump(doc)},
            codes=codes,
            names=("python-app.yaml",),
            place=key,
        )
        path = ctx.out(f"values-{name.replace(' ', '-')}.yaml")
        yield Case(
            "--set/-f",
            f"-f: {name}",
            (*ctx.command(VALUES_COMMANDS), "-f", str(path)),
            outside={path: dump(values)},
            codes=codes,
            names=(path.name,),
            place=key,
        )
    for i, (name, values, key) in enumerate(PROD_POLICY_FAULTS):
        doc = copy.deepcopy(base)
        doc["environments"][1]["values"] = values
        command, codes = POLICY_COMMANDS[i % len(POLICY_COMMANDS)]
        yield Case(
            "environment files",
            f"policy: {name}",
            command,
            files={DEFINITION: dump(doc)},
            codes=codes,
            names=("prod.policy.schema.json",),
            place=key,
        )
    for i, (name, values, key) in enumerate(SHARED_POLICY_FAULTS):
        kept = yaml.safe_load(ctx.base[SHARED])["environments"]
        shared = {"environments": [*kept, {"name": "prod", "values": values}]}
        command, codes = POLICY_COMMANDS[i % len(POLICY_COMMANDS)]
        yield Case(
            "shared files",
            f"shared policy: {name}",
            command,
            files={SHARED: dump(shared)},
            codes=codes,
            names=("prod.policy.schema.json",),
            place=key,
        )


# --- --set, --set-string and -f on the command line ------------------------------------------------

# Each is refused by helm's own --set parser as well (helm 3.17).
BAD_SETS = [
    "a",
    "=1",
    "a[",
    "a]=1",
    "a[x]=1",
    "a[99999999]=1",
    "a[-1]=1",
    "a..b=1",
    ".a=1",
    "a.=1",
    "a[0]b=1",
    "a={b",
    "a[1]=1,b[",
    "a=1,,b=2",
    "a=b,c",
    "a[0][99999]=1",
    "a[0].b[70000]=1",
    "a\\=1",
]


def set_cases(ctx: Context) -> Iterator[Case]:
    for flag in ("--set", "--set-string"):
        for bad in BAD_SETS:
            yield Case("--set/-f", f"{flag} {bad}", (*ctx.command(VALUES_COMMANDS), flag, bad), names=(flag,), place="")
    # A writeOnly key whose value does not parse: the error must not echo the value.
    for bad in (
        f"secret.password={ctx.secret_set},junk",
        f"secret.password={{{ctx.secret_set}",
        f"config.greeting={ctx.secret_set},x[",
    ):
        yield Case(
            "--set/-f", "--set writeOnly, unparsable", (*ctx.command(VALUES_COMMANDS), "--set", bad), names=("--set",)
        )
    for bad, codes, key in (
        ("replicaCount=abc", (1,), "replicaCount"),
        ("replicaCount=-5", (1,), "replicaCount"),
        ("image=null", (1,), "image"),
        ("service.port=99999", (1,), "port"),
        ("image.tag=latest", (3,), "tag"),
        ("config.logLevel=debug", (3,), "logLevel"),
        ("replicaCount=2", (3,), "replicaCount"),
        ("replicaCount=\uff13", (1,), "replicaCount"),  # a full-width digit is a string
        (f"secret.password={ctx.secret_set[:5]}", (1,), "password"),  # too short, and writeOnly
    ):
        yield Case(
            "--set/-f",
            f"--set {key} invalid",
            (*(APPLY if 3 in codes else ctx.command((APPLY, PLAN, VALIDATE))), "--set", bad),
            codes=codes,
            names=(key,),
            tags=frozenset({"unicode"}) if not bad.isascii() else frozenset(),
        )
    yield Case(
        "--set/-f",
        "-f missing",
        (*ctx.command(VALUES_COMMANDS), "-f", str(ctx.out("missing.yaml"))),
        names=("missing.yaml",),
    )
    yield Case(
        "--set/-f", "-f a directory", (*ctx.command(VALUES_COMMANDS), "-f", str(ctx.inputs)), names=(ctx.inputs.name,)
    )


# --- JSON schemas ---------------------------------------------------------------------------------


def schema_cases(ctx: Context) -> Iterator[Case]:
    for path, shown, violated in (
        (APP_SCHEMA, "python-app.values.schema.json", 1),
        (POLICY, "prod.policy.schema.json", 3),
        (CHART_SCHEMA, "values.schema.json", 1),
    ):
        faults: dict[str, tuple[bytes, int, str]] = {
            "invalid JSON": (b'{"type": "object",', 1, AT_LINE),
            "an array": (b"[1, 2]", 1, r"schema|object|array"),
            "null": (b"null", 1, r"schema|object|null"),
            "type 5": (b'{"type": 5}', 1, r"type"),
            "remote $ref": (b'{"$ref": "http://127.0.0.1:9/x.json"}', 1, r"\$ref|127\.0\.0\.1"),
            "missing $ref": (b'{"$ref": "missing.json"}', 1, r"\$ref|missing\.json"),
            "bad regex": (
                b'{"properties": {"image": {"properties": {"tag": {"pattern": "(["}}}}}',
                1,
                r"pattern|regex|\(\[",
            ),
            "required missing key": (b'{"type": "object", "required": ["mustHave"]}', violated, r"mustHave"),
            "false": (b"false", 1, r"schema|false|\$|root|values"),
            "empty file": (b"", 1, r"empty|JSON|line|schema"),
        }
        for name, (content, code, place) in faults.items():
            command = ctx.command((APPLY, PLAN, APPLY, VALIDATE))
            yield Case(
                "schemas" if path != CHART_SCHEMA else "charts",
                f"{shown}: {name}",
                command,
                files={path: content},
                # Only apply is blocked by a policy (3); plan and validate report the violation (1).
                codes=(code,) if code == 1 or command == APPLY else (1, 3),
                names=(shown,),
                place=place,
            )


# --- charts ---------------------------------------------------------------------------------------

OBJECT = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  a: b\n"


def chart_cases(ctx: Context) -> Iterator[Case]:
    t = "charts/python-app/templates/extra.yaml"
    templates: dict[str, tuple[str, str, str]] = {
        # name → (template, the file name the message must give, a regex for the place)
        "template syntax error": ("{{ .Values.config \n", "extra.yaml", AT_LINE),
        "fail": ('{{ fail "the chart refuses" }}\n', "extra.yaml", r"refuses"),
        "required": ('{{ required "need .Values.nope" .Values.nope }}\n', "extra.yaml", r"nope"),
        "no kind": ("apiVersion: v1\nmetadata:\n  name: extra\n", "extra.yaml", r"kind"),
        "no apiVersion": ("kind: ConfigMap\nmetadata:\n  name: extra\n", "extra.yaml", r"apiVersion"),
        "no name": ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n", "extra.yaml", r"name"),
        "metadata null": ("apiVersion: v1\nkind: ConfigMap\nmetadata: null\n", "extra.yaml", r"metadata|name"),
        "a bare list": ("- a\n- b\n", "extra.yaml", r"list|array|object|mapping"),
        "a scalar": ("just text\n", "extra.yaml", r"object|mapping|string"),
        "invalid YAML out": ("a: [\n", "extra.yaml", AT_LINE),
        "duplicate object": (ctx.base[TEMPLATE].decode(), "my-app-config", r"twice|duplicate|more than once"),
        "name invalid": (OBJECT.replace("name: extra", "name: Bad_Name"), "Bad_Name", r"ConfigMap"),
        "unknown kind": (
            "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
            "Widget",
            r"example\.com|kind",
        ),
        "cluster object of another": (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-system\n",
            "kube-system",
            r"Namespace",
        ),
        "wrong field type": (
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports: 5\n",
            "Service",
            r"ports",
        ),
        "huge rendered object": (
            'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  a: {{ repeat 4000000 "x" | quote }}\n',
            "big",
            r"big|too|large|limit|bytes|request",
        ),
    }
    for name, (text, shown, place) in templates.items():
        yield Case(
            "charts",
            f"template: {name}",
            ctx.command(RENDER_COMMANDS),
            files={t: text.encode()},
            names=(shown,),
            place=place,
        )
    chart_yaml = yaml.safe_load(ctx.base[CHART_YAML])
    for name, change, place in (
        ("apiVersion v3", {"apiVersion": "v3"}, r"apiVersion|v3"),
        ("version not semver", {"version": "one"}, r"version"),
        ("kubeVersion excludes", {"kubeVersion": ">= 9.0.0"}, r"kubeVersion"),
        ("library chart", {"type": "library"}, r"library"),
        ("no name", {"name": None}, r"name"),
    ):
        doc = {k: v for k, v in {**chart_yaml, **change}.items() if v is not None}
        yield Case(
            "charts",
            f"Chart.yaml: {name}",
            ctx.command(RENDER_COMMANDS),
            files={CHART_YAML: dump(doc)},
            # helm checks kubeVersion and type itself, naming the chart and the field (not the file).
            names=("python-app",) if "kubeVersion" in change or "type" in change else ("Chart.yaml",),
            place=place,
        )
    yield Case("charts", "Chart.yaml missing", ctx.command(), remove=(CHART_YAML,), names=("Chart.yaml",))
    for name, content in (("unclosed flow", b"name: [python-app\n"), ("a list", b"- a\n")):
        yield Case(
            "charts",
            f"Chart.yaml: {name}",
            ctx.command(),
            files={CHART_YAML: content},
            names=("Chart.yaml",),
            place=AT_LINE + r"|list|mapping",
        )
    outside = ctx.out("outside-chart")
    yield Case(
        "charts",
        "chart folder a symlink outside the repo",
        ctx.command(),
        remove=(CHART,),
        links={CHART: str(outside)},
        names=("charts/python-app",),
        place=r"outside|repository",
    )
    yield Case(
        "charts",
        "template a symlink outside the repo",
        ctx.command(),
        links={t: "/etc/hostname"},
        names=("extra.yaml",),
        place=r"outside|repository",
    )
    yield Case(
        "charts",
        "values.yaml a symlink outside the repo",
        ctx.command(),
        remove=(CHART_VALUES,),
        links={CHART_VALUES: "/etc/hostname"},
        names=("values.yaml",),
        place=r"outside|repository",
    )
    yield Case(
        "charts",
        "definition a symlink outside the repo",
        ctx.command(),
        remove=(DEFINITION,),
        links={DEFINITION: str(ctx.out("outside-definition.yaml"))},
        outside={ctx.out("outside-definition.yaml"): ctx.base[DEFINITION]},
        names=("python-app.yaml",),
        place=r"outside|repository",
    )
    yield Case("charts", "chart folder missing", ctx.command(), remove=(CHART,), names=("charts/python-app",))
    yield Case(
        "charts",
        "chart path a file",
        ctx.command(),
        remove=(CHART,),
        files={CHART: b"not a chart\n"},
        names=("charts/python-app",),
    )


# --- kubeconfig and context -----------------------------------------------------------------------


def kube_cases(ctx: Context) -> Iterator[Case]:
    real = yaml.safe_load(ctx.kubeconfig.read_text())
    server = real["clusters"][0]["cluster"]["server"]

    def variant(name: str, change: Callable[[dict[str, Any]], None]) -> Path:
        doc = copy.deepcopy(real)
        change(doc)
        path = ctx.out(f"kubeconfig-{name}")
        path.write_bytes(dump(doc))
        return path

    def set_path(doc: dict[str, Any], where: str, key: str, value: Any) -> None:
        doc[where][0][where[:-1]][key] = value

    def files(*paths: Path) -> dict[Path, bytes]:
        return {p: p.read_bytes() for p in paths}

    cases: list[tuple[str, tuple[str, ...], dict[Path, bytes], tuple[str, ...], str, dict[str, str]]] = []
    missing = ctx.out("kubeconfig-missing")
    cases.append(("--kubeconfig missing", ("--kubeconfig", str(missing)), {}, (missing.name,), "", {}))
    cases.append(("--kubeconfig a directory", ("--kubeconfig", str(ctx.inputs)), {}, (ctx.inputs.name,), "", {}))
    for name, content in (
        ("empty", b""),
        ("invalid YAML", b"clusters: [\n"),
        ("latin-1", ctx.kubeconfig.read_bytes() + "# café\n".encode("latin-1")),
        ("random bytes", _binary(ctx)),
        ("a list", b"- a\n"),
        ("alias bomb", BILLION_LAUGHS),
        ("over 16 MiB", _huge_yaml()),
    ):
        p = ctx.out(f"kubeconfig-{name.replace(' ', '-')}")
        cases.append((f"kubeconfig {name}", ("--kubeconfig", str(p)), {p: content}, (p.name,), "", {}))
    p = variant("no-context", lambda d: d.update({"current-context": ""}))
    cases.append(("no current context", ("--kubeconfig", str(p)), files(p), (), r"context", {}))
    p = variant("unreachable", lambda d: set_path(d, "clusters", "server", "https://127.0.0.1:1"))
    cases.append(("server unreachable", ("--kubeconfig", str(p)), files(p), ("127.0.0.1:1",), "", {}))
    p = variant("wrong-token", lambda d: set_path(d, "users", "token", ctx.fake_token))
    cases.append(("wrong token", ("--kubeconfig", str(p)), files(p), (), r"401|[Uu]nauthori[sz]ed|credentials", {}))
    p = variant("bad-ca", lambda d: set_path(d, "clusters", "certificate-authority-data", "bm90IGEgY2VydA=="))
    cases.append(("bad CA", ("--kubeconfig", str(p)), files(p), (), r"certificate|CA|TLS|SSL|PEM", {}))
    p = variant(
        "exec-missing",
        lambda d: d["users"][0].update(
            {
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1",
                        "command": "/nonexistent/credential-helper",
                    }
                }
            }
        ),
    )
    cases.append(("exec plugin missing", ("--kubeconfig", str(p)), files(p), ("credential-helper",), "", {}))
    p = variant("no-cluster", lambda d: d["contexts"][0]["context"].update({"cluster": "nowhere"}))
    cases.append(("context names no cluster", ("--kubeconfig", str(p)), files(p), ("nowhere",), "", {}))
    p = variant("http", lambda d: set_path(d, "clusters", "server", server.replace("https://", "http://")))
    cases.append(
        (
            "http to an https server",
            ("--kubeconfig", str(p)),
            files(p),
            (),
            r"http|TLS|SSL|connection|refused|reset|status",
            {},
        )
    )
    cases.append(("--context nope", ("--kubeconfig", str(ctx.kubeconfig), "--context", "nope"), {}, ("nope",), "", {}))
    cases.append(("KUBECONFIG all missing", (), {}, ("kubeconfig-missing",), "", {"KUBECONFIG": str(missing)}))
    for name, pre, outside, names, place, env in cases:
        yield Case(
            "kubeconfig/context",
            name,
            ctx.command((APPLY, PLAN, STATUS, APPLY)),
            pre=pre,
            outside=outside,
            names=names,
            place=place,
            env=env,
            tags=frozenset({"binary"})
            if "random" in name
            else frozenset({"huge"})
            if "16 MiB" in name
            else frozenset(),
        )
    doc = ctx.definition()
    doc["environments"][1]["context"] = "no-such-context"
    yield Case(
        "kubeconfig/context",
        "definition context missing",
        ctx.command(),
        files={DEFINITION: dump(doc)},
        names=("no-such-context",),
    )


# --- saved plans ----------------------------------------------------------------------------------


def _walk(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _walk(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _walk(v, (*path, i))


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    cur = doc
    for k in path[:-1]:
        cur = cur[k]
    if value is _DELETE:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return doc


_DELETE = object()


def saved_plan_cases(ctx: Context) -> Iterator[Case]:
    good = json.loads(ctx.good_plan.read_text())
    apply_plan = ("apply", "prod", "--yes", "--allow-dirty", "--timeout", "60s", "--plan")

    def case(
        name: str,
        content: bytes | None,
        codes: tuple[int, ...] = (1,),
        place: str = "",
        tags: frozenset[str] = frozenset(),
        path: Path | None = None,
    ) -> Case:
        p = path or ctx.out(f"plan-{zlib.crc32(name.encode()):08x}.json")
        # The one file given with --plan: its name, or "the saved plan" (for what moved since), names it.
        named = rf"(?=[\s\S]*({re.escape(p.name)}|saved plan))"
        return Case(
            "saved plans",
            f"plan: {name}",
            (*apply_plan, str(p)),
            outside={p: content} if content is not None else {},
            codes=codes,
            place=named + (rf"(?=[\s\S]*({place}))" if place else ""),
            tags=tags,
        )

    yield case("missing", None)
    yield case("a directory", None, path=ctx.inputs)
    for name, content in (
        ("empty", b""),
        ("truncated", ctx.good_plan.read_bytes()[:200]),
        ("[]", b"[]"),
        ("null", b"null"),
        ("a string", b'"plan"'),
        ("{}", b"{}"),
    ):
        yield case(name, content)
    yield case("random bytes", _binary(ctx), tags=frozenset({"binary"}))
    yield case("over 16 MiB", _huge_json(), place=r"bytes|MiB", tags=frozenset({"huge"}))
    yield case(
        "latin-1", ctx.good_plan.read_bytes().replace(b'"', '"é'.encode("latin-1"), 1), tags=frozenset({"encoding"})
    )
    yield case("of another target", ctx.default_plan.read_bytes(), codes=(1, 3), place=r"default|prod|target")
    # Tampering: scalar fields replaced by the wrong type, or changed, or keys removed (seeded choice).
    leaves = [(p, v) for p, v in _walk(good) if p and not isinstance(v, (dict, list))]
    # Keys removed (not list items: a hook's entry is not compared, by design; see test_saved).
    containers = [(p, v) for p, v in _walk(good) if p and isinstance(p[-1], str) and isinstance(v, (dict, list))]
    for path, value in ctx.rng.sample(leaves, min(10, len(leaves))):
        wrong: Any = {"x": 1} if not isinstance(value, dict) else 5
        yield case(
            f"{'.'.join(map(str, path))[:30]} a mapping", json.dumps(_set(good, path, wrong)).encode(), codes=(1, 3)
        )
    for path, _ in ctx.rng.sample(containers, min(8, len(containers))):
        yield case(
            f"{'.'.join(map(str, path))[:30]} removed", json.dumps(_set(good, path, _DELETE)).encode(), codes=(1, 3)
        )
    for path, value in [
        (p, v) for p, v in leaves if p[-1] in ("resourceVersion", "revision", "schemaVersion", "target")
    ][:6]:
        changed = value + 1 if isinstance(value, int) and not isinstance(value, bool) else f"{value}x"
        yield case(f"{path[-1]} changed", json.dumps(_set(good, path, changed)).encode(), codes=(1, 3))


# --- command-line arguments, and unicode where names go ----------------------------------------------


def args_cases(ctx: Context) -> Iterator[Case]:
    for argv, names in (
        (("apply", "staging", "--yes"), ("staging",)),
        (("plan", "Prod"), ("Prod",)),
        (("plan", "prod", "--app", "nope"), ("nope",)),
        (("apply", "prod", "--yes", "--timeout", "abc"), ("--timeout",)),
        (("apply", "prod", "--yes", "--timeout", "-5s"), ("--timeout",)),
        (("apply", "prod", "--yes", "--lock-timeout", "forever"), ("--lock-timeout",)),
        (("apply", "prod", "--yes", "--lock-ttl", "0s"), ("--lock-ttl",)),
        (("plan", "prod", "--revision", "no-such-ref"), ("no-such-ref",)),
        (("plan", "prod", "--revision", "HEAD~99"), ("HEAD~99",)),
        (("apply", "prod", "--yes", "--revision", "--upload-pack=touch /tmp/pwned"), ("--upload-pack",)),
        (("plan", "prod", "-o", "xml"), ("xml",)),
        (("rollback", "prod", "--to", "999"), ("999",)),
        (("rollback", "prod", "--to", "not-a-revision"), ("not-a-revision",)),
        (("history", "nope"), ("nope",)),
    ):
        yield Case("CLI arguments", " ".join(argv)[:40], argv, names=names)
    for pre, names in ((("--qps", "0"), ("--qps",)), (("--qps", "-1"), ("--qps",)), (("--qps", "abc"), ("--qps",))):
        yield Case("CLI arguments", " ".join(pre), ("plan", "prod"), pre=pre, names=names)
    # Unicode where names go: homoglyphs, zero-width and bidi characters, decomposed accents, emoji.
    base = ctx.definition()
    for key, value in (
        ("name", "pr\u043ed"),  # Cyrillic o
        ("namespace", "prod\u200d"),  # zero-width joiner
        ("release", "\u202eprod-app"),  # right-to-left override
        ("namespace", "cafe\u0301"),  # e + combining accent
        ("name", "\U0001f680"),
        ("release", "python\u2010app"),  # a Unicode hyphen
    ):
        doc = copy.deepcopy(base)
        doc["environments"][1][key] = value
        yield Case(
            "environment files",
            f"unicode {key} {value.encode('unicode_escape').decode()[:16]}",
            ctx.command(),
            files={DEFINITION: dump(doc)},
            names=("python-app.yaml",),
            place=re_key(key),
            tags=frozenset({"unicode"}),
        )
    for argv, names in (
        (("plan", "pr\u043ed"), ("pr\u043ed",)),
        (("apply", "prod", "--yes", "--app", "python\u2010app"), ("python\u2010app",)),
        (("apply", "prod\u200b", "--yes"), ("prod",)),
    ):
        yield Case(
            "CLI arguments",
            f"unicode {' '.join(argv).encode('unicode_escape').decode()[:30]}",
            argv,
            names=names,
            tags=frozenset({"unicode"}),
        )
    doc = copy.deepcopy(base)
    doc["valuesFiles"] = ["values/v\u00e4rden.yaml"]
    yield Case(
        "environment files",
        "unicode values file missing",
        ctx.command(),
        files={DEFINITION: dump(doc)},
        names=("v\u00e4rden.yaml",),
        tags=frozenset({"unicode"}),
    )


GENERATORS = (
    encoding_cases,
    yaml_cases,
    definition_cases,
    values_cases,
    set_cases,
    schema_cases,
    chart_cases,
    kube_cases,
    saved_plan_cases,
    args_cases,
)


def generate(ctx: Context) -> list[Case]:
    """Every bad input, in a stable order for a seed."""
    return [case for gen in GENERATORS for case in gen(ctx)]
