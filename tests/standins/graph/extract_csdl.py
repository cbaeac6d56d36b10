"""Regenerates data/presence-v1.0.csdl.xml from Microsoft Graph's published v1.0 metadata.

    python tests/standins/graph/extract_csdl.py PATH/TO/clean_v10_metadata/cleanMetadata.xml COMMIT

PATH is a checkout of github.com/microsoftgraph/msgraph-metadata; COMMIT is the commit it is at
(written into the output). Only the presence actions, the types they use and the two navigation
paths that reach them are kept; every kept element is copied unchanged except `user`,
`cloudCommunications` and the entity container, which are cut down to the presence navigation.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

EDMX = "http://docs.oasis-open.org/odata/ns/edmx"
EDM = "http://docs.oasis-open.org/odata/ns/edm"
OUT = Path(__file__).parent / "data" / "presence-v1.0.csdl.xml"

ENUMS = ("bodyType", "workLocationSource", "workLocationType")
COMPLEX = (
    "dateTimeTimeZone",
    "itemBody",
    "outOfOfficeSettings",
    "presenceStatusMessage",
    "userWorkLocation",
)
ENTITIES = ("entity", "directoryObject", "presence")
# Entity types cut down to the navigation property that leads to presence.
TRIMMED = {"user": "presence", "cloudCommunications": "presences"}
# (action, binding parameter type)
ACTIONS = (
    ("setPresence", "graph.presence"),
    ("clearPresence", "graph.presence"),
    ("setUserPreferredPresence", "graph.presence"),
    ("clearUserPreferredPresence", "graph.presence"),
    ("getPresencesByUserId", "graph.cloudCommunications"),
)


def _q(tag: str) -> str:
    return f"{{{EDM}}}{tag}"


def _named(schema: ET.Element, tag: str, name: str) -> ET.Element:
    for element in schema.findall(_q(tag)):
        if element.get("Name") == name:
            return element
    raise SystemExit(f"{tag} {name} not found in the metadata")


def _action(schema: ET.Element, name: str, binding: str) -> ET.Element:
    for element in schema.findall(_q("Action")):
        first = element.find(_q("Parameter"))
        if element.get("Name") == name and first is not None and first.get("Type") == binding:
            return element
    raise SystemExit(f"action {name} bound to {binding} not found in the metadata")


def extract(source: Path, commit: str) -> ET.Element:
    tree = ET.parse(source)
    schema = next(
        s for s in tree.getroot().iter(_q("Schema")) if s.get("Namespace") == "microsoft.graph"
    )
    root = ET.Element(f"{{{EDMX}}}Edmx", {"Version": "4.0"})
    services = ET.SubElement(root, f"{{{EDMX}}}DataServices")
    out = ET.SubElement(services, _q("Schema"), {"Namespace": "microsoft.graph", "Alias": "graph"})
    out.append(
        ET.Comment(
            f" Subset of msgraph-metadata clean_v10_metadata/cleanMetadata.xml at commit {commit}"
            " (MIT licence, see LICENSE-msgraph-metadata). Regenerate with extract_csdl.py. "
        )
    )
    for name in ENUMS:
        out.append(_named(schema, "EnumType", name))
    for name in COMPLEX:
        out.append(_named(schema, "ComplexType", name))
    for name in ENTITIES:
        out.append(_named(schema, "EntityType", name))
    for name, keep in TRIMMED.items():
        full = _named(schema, "EntityType", name)
        cut = ET.SubElement(out, _q("EntityType"), dict(full.attrib))
        nav = next(n for n in full.findall(_q("NavigationProperty")) if n.get("Name") == keep)
        cut.append(nav)
    for name, binding in ACTIONS:
        out.append(_action(schema, name, binding))
    container = schema.find(_q("EntityContainer"))
    assert container is not None
    cut_container = ET.SubElement(out, _q("EntityContainer"), dict(container.attrib))
    wanted = {("users", _q("EntitySet")), ("communications", _q("Singleton"))}
    for child in container:
        if (child.get("Name"), child.tag) in wanted:
            ET.SubElement(cut_container, child.tag, dict(child.attrib))
    for element in out.iter():
        element.tail = None
        if element.text is not None and not element.text.strip():
            element.text = None
    ET.indent(root, space="  ")
    return root


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        raise SystemExit(__doc__)
    ET.register_namespace("edmx", EDMX)
    ET.register_namespace("", EDM)
    root = extract(Path(argv[1]), argv[2])
    OUT.write_text(ET.tostring(root, encoding="unicode", xml_declaration=False) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(sys.argv)
