"""Graph's published metadata (the committed CSDL subset) and JSON checked against it.

OData JSON format (OData-JSON 4.01 §7, §17): an action's parameters travel as one JSON object
whose members are the non-binding parameters; primitive types map to JSON strings, numbers and
booleans, `Edm.Duration` to a string in ISO 8601 day-time form, a collection to an array, a
complex or entity value to an object of its declared properties, an enumeration to its member
name. A parameter with `Nullable="false"` must be present and not null; a string with
`Unicode="false"` holds ASCII only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import Element

from defusedxml import ElementTree  # type: ignore[import-untyped]

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
NAMESPACE = "microsoft.graph"
ALIAS = "graph"
DATA = Path(__file__).parent / "data" / "presence-v1.0.csdl.xml"

# OData ABNF durationValue: [ sign ] "P" [ days "D" ] [ "T" [ hours "H" ] [ minutes "M" ]
# [ seconds [ "." fraction ] "S" ] ], with at least one component.
_DURATION = re.compile(
    r"^(?P<sign>-)?P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_DATE_TIME_OFFSET = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$"
)


def parse_duration(text: str) -> float | None:
    """Seconds in an OData/ISO 8601 day-time duration, or None if it is not one."""
    match = _DURATION.match(text)
    if match is None or text.endswith("T") or text in ("P", "-P"):
        return None
    parts = match.groupdict()
    if not any(parts[k] for k in "dhms"):
        return None
    seconds = (
        int(parts["d"] or 0) * 86400
        + int(parts["h"] or 0) * 3600
        + int(parts["m"] or 0) * 60
        + float(parts["s"] or 0)
    )
    return -seconds if parts["sign"] else seconds


@dataclass(frozen=True, slots=True)
class Typed:
    name: str
    type: str
    nullable: bool
    ascii_only: bool = False


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    binding: str
    parameters: tuple[Typed, ...]
    returns: str | None


@dataclass(slots=True)
class Structured:
    name: str
    base: str | None
    open_type: bool
    properties: dict[str, Typed] = field(default_factory=dict)
    navigation: dict[str, str] = field(default_factory=dict)


def _qualified(type_name: str) -> str:
    if type_name.startswith("Collection(") and type_name.endswith(")"):
        return f"Collection({_qualified(type_name[len('Collection(') : -1])})"
    if type_name.startswith(f"{ALIAS}."):
        return f"{NAMESPACE}.{type_name[len(ALIAS) + 1 :]}"
    return type_name


def _typed(element: Element) -> Typed:
    return Typed(
        name=element.get("Name", ""),
        type=_qualified(element.get("Type", "")),
        nullable=element.get("Nullable", "true") != "false",
        ascii_only=element.get("Unicode", "true") == "false",
    )


class Csdl:
    def __init__(self, path: Path = DATA) -> None:
        root = ElementTree.parse(path).getroot()
        self.actions: dict[tuple[str, str], Action] = {}
        self.types: dict[str, Structured] = {}
        self.enums: dict[str, frozenset[str]] = {}
        self.entity_sets: dict[str, str] = {}
        for schema in root.iter(f"{EDM}Schema"):
            namespace = schema.get("Namespace")
            for element in schema:
                name = f"{namespace}.{element.get('Name')}"
                if element.tag == f"{EDM}EnumType":
                    self.enums[name] = frozenset(
                        m.get("Name", "") for m in element.iter(f"{EDM}Member")
                    )
                elif element.tag in (f"{EDM}EntityType", f"{EDM}ComplexType"):
                    base = element.get("BaseType")
                    structured = Structured(
                        name=name,
                        base=_qualified(base) if base else None,
                        open_type=element.get("OpenType") == "true",
                    )
                    for prop in element.findall(f"{EDM}Property"):
                        structured.properties[prop.get("Name", "")] = _typed(prop)
                    for nav in element.findall(f"{EDM}NavigationProperty"):
                        structured.navigation[nav.get("Name", "")] = _qualified(nav.get("Type", ""))
                    self.types[name] = structured
                elif element.tag == f"{EDM}Action":
                    params = [_typed(p) for p in element.findall(f"{EDM}Parameter")]
                    returns = element.find(f"{EDM}ReturnType")
                    action = Action(
                        name=element.get("Name", ""),
                        binding=params[0].type,
                        parameters=tuple(params[1:]),
                        returns=_qualified(returns.get("Type", ""))
                        if returns is not None
                        else None,
                    )
                    self.actions[(action.name, action.binding)] = action
                elif element.tag == f"{EDM}EntityContainer":
                    for child in element:
                        target = child.get("EntityType") or child.get("Type") or ""
                        self.entity_sets[child.get("Name", "")] = target

    def action(self, name: str, binding: str) -> Action | None:
        return self.actions.get((name, binding))

    def properties(self, type_name: str) -> dict[str, Typed]:
        """Declared properties of a structured type, its base types' included."""
        found: dict[str, Typed] = {}
        current: str | None = type_name
        while current is not None:
            structured = self.types[current]
            found = {**structured.properties, **found}
            current = structured.base
        return found

    def navigation(self, type_name: str) -> dict[str, str]:
        found: dict[str, str] = {}
        current: str | None = type_name
        while current is not None:
            structured = self.types[current]
            found = {**structured.navigation, **found}
            current = structured.base
        return found

    def check_parameters(self, action: Action, body: object) -> list[str]:
        """Problems of an action's JSON request body against its declared parameters."""
        if not isinstance(body, dict):
            return [
                f"{action.name}: the request body must be a JSON object, got {type(body).__name__}"
            ]
        declared = {p.name: p for p in action.parameters}
        problems = [
            f"{action.name}: unknown parameter {key!r} (declared: {', '.join(sorted(declared)) or 'none'})"
            for key in body
            if key not in declared
        ]
        for param in action.parameters:
            if param.name not in body or body[param.name] is None:
                if not param.nullable:
                    problems.append(
                        f"{action.name}: parameter {param.name!r} ({param.type}) is required"
                    )
                continue
            problems += self.check_value(param, body[param.name], f"{action.name}.{param.name}")
        return problems

    def check_value(self, typed: Typed, value: object, where: str) -> list[str]:
        if value is None:
            return [] if typed.nullable else [f"{where}: must not be null"]
        type_name = typed.type
        if type_name.startswith("Collection(") and type_name.endswith(")"):
            if not isinstance(value, list):
                return [f"{where}: expected a JSON array ({type_name}), got {type(value).__name__}"]
            inner = Typed(typed.name, type_name[len("Collection(") : -1], False, typed.ascii_only)
            problems: list[str] = []
            for index, item in enumerate(value):
                problems += self.check_value(inner, item, f"{where}[{index}]")
            return problems
        if type_name == "Edm.String":
            if not isinstance(value, str):
                return [f"{where}: expected a JSON string (Edm.String), got {type(value).__name__}"]
            if typed.ascii_only and not value.isascii():
                return [f'{where}: Unicode="false" allows ASCII only']
            return []
        if type_name == "Edm.Duration":
            if not isinstance(value, str) or parse_duration(value) is None:
                return [
                    f"{where}: expected an ISO 8601 duration string (Edm.Duration), got {value!r}"
                ]
            return []
        if type_name == "Edm.Boolean":
            return (
                []
                if isinstance(value, bool)
                else [f"{where}: expected true or false, got {value!r}"]
            )
        if type_name == "Edm.DateTimeOffset":
            if isinstance(value, str) and _DATE_TIME_OFFSET.match(value):
                return []
            return [f"{where}: expected an RFC 3339 date-time (Edm.DateTimeOffset), got {value!r}"]
        if type_name in self.enums:
            if isinstance(value, str) and value in self.enums[type_name]:
                return []
            return [f"{where}: {value!r} is not a member of {type_name}"]
        if type_name in self.types:
            return self.check_object(type_name, value, where)
        return [f"{where}: type {type_name} is not in the committed metadata"]

    def check_object(self, type_name: str, value: object, where: str) -> list[str]:
        if not isinstance(value, dict):
            return [f"{where}: expected a JSON object ({type_name}), got {type(value).__name__}"]
        declared = self.properties(type_name)
        problems: list[str] = []
        for key, item in value.items():
            if key.startswith("@odata.") or "@" in key:
                continue  # control information and instance annotations
            if key not in declared:
                if not self.types[type_name].open_type:
                    problems.append(f"{where}: {type_name} has no property {key!r}")
                continue
            problems += self.check_value(declared[key], item, f"{where}.{key}")
        return problems
