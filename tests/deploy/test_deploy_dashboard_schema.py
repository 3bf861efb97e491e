"""The dashboard JSON against Grafana's own schema: grafana-foundation-sdk's generated model types
(the build matching the provisioned Grafana, 11.2). Every dashboard decodes into
``models.dashboard.Dashboard`` with each panel's options and field config decoded by its panel
plugin (timeseries, table) and each Prometheus query as ``models.prometheus.Dataquery``; every
value has its field's type (enum values included), and encoding the model again gives back exactly
the checked-in JSON, so no key is unknown to the schema. PostgreSQL queries have no model in the SDK:
their keys are checked against Grafana's SQL query shape."""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing

import pytest
from deploy_common import dashboards, panels

sdk = pytest.importorskip("grafana_foundation_sdk", reason="pip install -e '.[test]' (grafana-foundation-sdk)")
from grafana_foundation_sdk.cog import plugins, runtime  # noqa: E402
from grafana_foundation_sdk.cog.encoder import JSONEncoder  # noqa: E402
from grafana_foundation_sdk.models import dashboard as gd  # noqa: E402
from grafana_foundation_sdk.models import prometheus, table, timeseries  # noqa: E402

plugins.register_default_plugins()
SQL_TARGET_KEYS = {"refId", "datasource", "format", "rawQuery", "editorMode", "rawSql"}


def type_errors(value: typing.Any, hint: typing.Any, where: str) -> list[str]:
    """Where ``value`` (a decoded model, or raw JSON the SDK kept as is) does not fit ``hint``."""
    if value is None and _optional(hint):
        return []
    if hint in (typing.Any, object):  # e.g. options and fieldConfig.custom: decoded by the panel plugin
        return model_errors(value, where) if _is_model(value) else []
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if any(not type_errors(value, a, where) for a in options):
            return []
        # say what is wrong inside the option of the value's own class (a model, a list, a dict)
        same = [a for a in options if isinstance(typing.get_origin(a) or a, type)
                and isinstance(value, typing.get_origin(a) or a)]
        return type_errors(value, same[0], where) if same else [f"{where}: {value!r} fits none of {options}"]
    if origin is typing.Literal:
        return [] if value in args else [f"{where}: {value!r} not one of {args}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, expected a list"]
        return [e for i, v in enumerate(value) for e in type_errors(v, args[0] if args else typing.Any, f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, expected an object"]
        return [e for k, v in value.items() for e in type_errors(v, args[1] if args else typing.Any, f"{where}.{k}")]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = {m.value for m in hint}
        raw = value.value if isinstance(value, enum.Enum) else value
        return [] if raw in allowed else [f"{where}: {raw!r} not one of {sorted(map(str, allowed))}"]
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{where}: {value!r} is not a number"]
    if hint in (int, str, bool):
        ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
        return [] if ok else [f"{where}: {value!r} is not {hint.__name__}"]
    if isinstance(hint, type) and hasattr(hint, "to_json"):
        if isinstance(value, runtime.UnknownDataquery) or not isinstance(value, hint):
            return [] if isinstance(value, runtime.UnknownDataquery) else [f"{where}: {type(value).__name__}, expected {hint.__name__}"]
        return model_errors(value, where)
    return []


def _is_model(value: typing.Any) -> bool:
    return callable(getattr(value, "to_json", None)) and not isinstance(value, runtime.UnknownDataquery)


def _optional(hint: typing.Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def model_errors(obj: typing.Any, where: str) -> list[str]:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)] if dataclasses.is_dataclass(obj) else list(vars(obj))
    return [e for n in names if n in hints for e in type_errors(getattr(obj, n), hints[n], f"{where}.{n}")]


def diff(original: typing.Any, again: typing.Any, where: str = "") -> list[str]:
    """Paths whose value the schema round trip dropped or changed."""
    if isinstance(original, dict):
        if not isinstance(again, dict):
            return [f"{where or '/'}: became {type(again).__name__}"]
        return [e for k, v in original.items()
                for e in (diff(v, again[k], f"{where}.{k}") if k in again else [f"{where}.{k}: not in the schema"])]
    if isinstance(original, list):
        if not isinstance(again, list) or len(again) != len(original):
            return [f"{where}: list changed"]
        return [e for i, (a, b) in enumerate(zip(original, again)) for e in diff(a, b, f"{where}[{i}]")]
    return [] if original == again and type(original) is type(again) else [f"{where}: {original!r} -> {again!r}"]


@pytest.fixture(scope="module", params=["operations.json", "clinical.json"])
def board(request):
    raw = dashboards()[request.param]
    return request.param, raw, gd.Dashboard.from_json(raw)


def test_dashboard_decodes_into_the_sdk_models_with_typed_values(board):
    name, _, model = board
    errors = model_errors(model, name)
    assert not errors, "\n".join(errors[:20])


def test_schema_round_trip_keeps_every_key_and_value(board):
    name, raw, model = board
    again = json.loads(json.dumps(model, cls=JSONEncoder))
    errors = diff(raw, again)
    assert not errors, f"{name}: " + "\n".join(errors[:20])


def test_panels_decode_with_their_plugin_types(board):
    name, raw, model = board
    plugin = {"timeseries": (timeseries.Options, timeseries.FieldConfig), "table": (table.Options, table.FieldConfig)}
    assert len(model.panels) == len(panels(raw))
    for p in model.panels:
        where = f"{name} panel {p.id_val} {p.title!r}"
        assert isinstance(p, gd.Panel) and p.type_val in plugin, where
        options, custom = plugin[p.type_val]
        assert isinstance(p.options, options), f"{where}: options {type(p.options).__name__}"
        assert isinstance(p.field_config.defaults.custom, custom), f"{where}: fieldConfig.defaults.custom"
        # what the dashboards test demands, now read through the schema
        assert p.title and p.description and p.field_config.defaults.unit, where
        for t in p.targets:
            if p.datasource.type_val == "prometheus":
                assert isinstance(t, prometheus.Dataquery) and t.expr and t.ref_id, where
            else:
                assert p.datasource.type_val == "grafana-postgresql-datasource", where
                data = t.data
                assert set(data) <= SQL_TARGET_KEYS and data["rawSql"] and data["format"] in ("table", "time_series"), where


def test_validator_rejects_what_grafana_would_not_read():
    """The checks above bite: an unknown key, a wrong type and an invalid enum value are reported."""
    raw = json.loads(json.dumps(dashboards()["operations.json"]))
    p = raw["panels"][0]
    p["fieldConfig"]["defaults"]["custom"]["drawStyle"] = "zigzag"
    p["gridPos"]["w"] = "wide"
    p["titel"] = "typo"
    model = gd.Dashboard.from_json(raw)
    errors = model_errors(model, "x")
    assert any("drawStyle" in e or "draw_style" in e for e in errors), errors
    assert any("grid_pos.w" in e for e in errors), errors
    assert any(".titel: not in the schema" in e for e in diff(raw, json.loads(json.dumps(model, cls=JSONEncoder))))
