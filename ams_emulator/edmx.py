"""The ``$metadata`` document: a small but well-formed CSDL (OData v3) for the modelled entity
types (Job, Task, MediaProcessor, EncodingReservedUnitType).

It is built from the same schema table the serializer uses, so the document and the JSON never
disagree about a property's name or type.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import cache

from ams_emulator.entities import ENTITY_TYPES, NAMESPACE, EntityType, Kind

_EDMX = "http://schemas.microsoft.com/ado/2007/06/edmx"
_META = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
_EDM = "http://schemas.microsoft.com/ado/2009/11/edm"

# Properties the service always fills in (the rest are nullable).
_NOT_NULL = frozenset(
    {
        "Id",
        "Created",
        "LastModified",
        "Priority",
        "RunningDuration",
        "State",
        "AccountId",
        "ReservedUnitType",
        "CurrentReservedUnits",
        "MaxReservableUnits",
    }
)
_COMPLEX_TYPES = {
    "ErrorDetail": (("Code", "Edm.String"), ("Message", "Edm.String")),
    "TaskHistoricalEvent": (
        ("Code", "Edm.String"),
        ("Message", "Edm.String"),
        ("TimeStamp", "Edm.DateTime"),
    ),
    "JobNotificationSubscription": (
        ("NotificationEndPointId", "Edm.String"),
        ("TargetJobState", "Edm.Int32"),
    ),
    "TaskNotificationSubscription": (
        ("IncludeTaskProgress", "Edm.Boolean"),
        ("NotificationEndPointId", "Edm.String"),
        ("TargetTaskState", "Edm.Int32"),
    ),
}
_ASSOCIATION = "Job_Tasks"


def _entity_type(schema: ET.Element, entity: EntityType) -> None:
    element = ET.SubElement(schema, f"{{{_EDM}}}EntityType", Name=entity.type_name)
    key = ET.SubElement(element, f"{{{_EDM}}}Key")
    ET.SubElement(key, f"{{{_EDM}}}PropertyRef", Name=entity.key)
    for prop in entity.props:
        if prop.kind is Kind.NAVIGATION:
            continue  # only Job.Tasks is declared, below; asset navigation is out of scope
        edm_type = prop.collection_type if prop.kind is Kind.COLLECTION else prop.kind.value
        nullable = "false" if prop.name in _NOT_NULL or prop.kind is Kind.COLLECTION else "true"
        ET.SubElement(
            element, f"{{{_EDM}}}Property", Name=prop.name, Type=edm_type, Nullable=nullable
        )
    if entity.set_name == "Jobs":
        ET.SubElement(
            element,
            f"{{{_EDM}}}NavigationProperty",
            Name="Tasks",
            Relationship=f"{NAMESPACE}.{_ASSOCIATION}",
            FromRole="Job",
            ToRole="Tasks",
        )


def _complex_types(schema: ET.Element) -> None:
    for name, fields in _COMPLEX_TYPES.items():
        element = ET.SubElement(schema, f"{{{_EDM}}}ComplexType", Name=name)
        for field_name, edm_type in fields:
            ET.SubElement(element, f"{{{_EDM}}}Property", Name=field_name, Type=edm_type)


def _association(schema: ET.Element) -> None:
    association = ET.SubElement(schema, f"{{{_EDM}}}Association", Name=_ASSOCIATION)
    ET.SubElement(
        association, f"{{{_EDM}}}End", Type=f"{NAMESPACE}.Job", Role="Job", Multiplicity="0..1"
    )
    ET.SubElement(
        association, f"{{{_EDM}}}End", Type=f"{NAMESPACE}.Task", Role="Tasks", Multiplicity="*"
    )


def _container(schema: ET.Element) -> None:
    container = ET.SubElement(schema, f"{{{_EDM}}}EntityContainer", Name="MediaContext")
    container.set(f"{{{_META}}}IsDefaultEntityContainer", "true")
    for entity in ENTITY_TYPES.values():
        ET.SubElement(
            container,
            f"{{{_EDM}}}EntitySet",
            Name=entity.set_name,
            EntityType=entity.full_name,
        )
    links = ET.SubElement(
        container,
        f"{{{_EDM}}}AssociationSet",
        Name=_ASSOCIATION,
        Association=f"{NAMESPACE}.{_ASSOCIATION}",
    )
    ET.SubElement(links, f"{{{_EDM}}}End", Role="Job", EntitySet="Jobs")
    ET.SubElement(links, f"{{{_EDM}}}End", Role="Tasks", EntitySet="Tasks")


@cache
def metadata_document() -> bytes:
    """The EDMX document as UTF-8 bytes (built once)."""
    ET.register_namespace("edmx", _EDMX)
    ET.register_namespace("m", _META)
    ET.register_namespace("", _EDM)
    root = ET.Element(f"{{{_EDMX}}}Edmx", Version="1.0")
    services = ET.SubElement(root, f"{{{_EDMX}}}DataServices")
    services.set(f"{{{_META}}}DataServiceVersion", "3.0")
    services.set(f"{{{_META}}}MaxDataServiceVersion", "3.0")
    schema = ET.SubElement(services, f"{{{_EDM}}}Schema", Namespace=NAMESPACE)
    for entity in ENTITY_TYPES.values():
        _entity_type(schema, entity)
    _complex_types(schema)
    _association(schema)
    _container(schema)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document
