"""Requests off the wire: bytes → a validated API message. gRPC methods are registered to hand
the handler raw bytes (``grpc_registration.py``), so this runs inside the observed call and a
malformed message or an unknown enum value is the caller's INVALID_ARGUMENT, counted like any
other error."""

from __future__ import annotations

import functools
from typing import TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from gateway.errors import InvalidRequestError

M = TypeVar("M", bound=Message)


def parse(message_type: type[M], data: bytes) -> M:
    """The request in ``data``: a malformed message, or an enum value this gateway does not
    know (proto3 keeps it as a number), is the caller's error, never silently a default."""
    try:
        message = message_type.FromString(data)
    except DecodeError:
        raise InvalidRequestError(
            f"the request is not a valid {message_type.DESCRIPTOR.full_name}: "
            "its protobuf encoding is corrupt"
        ) from None
    _check_enums(message, message_type.DESCRIPTOR.name)
    return message


def _check_enums(message: Message, path: str) -> None:
    for field in _enum_holders(message.DESCRIPTOR):
        where = f"{path}.{field.name}"
        if field.is_repeated:
            items = [(f"{where}[{i}]", v) for i, v in enumerate(getattr(message, field.name))]
        elif field.message_type is None or message.HasField(field.name):
            items = [(where, getattr(message, field.name))]
        else:
            continue  # an unset message holds no value
        enum = field.enum_type
        for where, item in items:
            if enum is None:
                _check_enums(item, where)
            elif item not in enum.values_by_number:
                known = ", ".join(f"{v.name} = {v.number}" for v in enum.values)
                raise InvalidRequestError(f"{where}: unknown {enum.name} value {item} ({known})")


@functools.cache
def _enum_holders(message_type: Descriptor) -> tuple[FieldDescriptor, ...]:
    """The fields of ``message_type`` that are enums or lead to one: the walk reads only
    these, never an image's bytes (reading a bytes field copies it)."""
    return tuple(
        f for f in message_type.fields
        if f.enum_type is not None or (f.message_type is not None and _enum_holders(f.message_type))
    )  # fmt: skip
