"""Protobuf messages as JSON, the way etcd 3.5's gateway reads and writes them.

etcd 3.5 serves its gateway with grpc-gateway v1 and ``JSONPb{OrigName: true}``, which
marshals with golang/protobuf's ``jsonpb`` and unmarshals through Go's ``encoding/json``
for each field.  Compared with a real etcd 3.5.1:

* written: proto field names, 64-bit integers as strings, 32-bit ones as numbers, bytes
  in standard base64, enums by name; fields at their default value are left out, a
  sub-message that is set is written even when empty;
* read: proto or lowerCamel field names, unknown fields ignored, ``null`` leaves a field
  at its default; integers as JSON integers or quoted ones (``"5"``, not ``5.0``), bools
  only as ``true``/``false``, bytes only as padded standard base64 (line breaks ignored),
  enums by name or number.  Anything else is refused with a :class:`DecodeError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_JSON_SPACE = " \t\n\r"
_RANGES = {
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_ENUM: (-(2**31), 2**31 - 1),
}


class DecodeError(ValueError):
    """The JSON is not a message of the expected type; the text says where and why."""


def message_to_json(message: Message) -> dict[str, Any]:
    """``message`` as the JSON object etcd's gateway writes (to pass to ``json.dumps``)."""
    return MessageToDict(message, preserving_proto_field_name=True)


def dumps(value: Any) -> bytes:
    """Compact JSON text, UTF-8, as Go writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def message_from_json(value: Any, message_type: type[M]) -> M:
    """The message of ``message_type`` that the parsed JSON ``value`` describes."""
    message = message_type()
    try:
        _merge(value, message)
    except RecursionError:
        raise DecodeError("json: nested too deeply") from None
    return message


def json_values(text: str) -> Iterator[Any]:
    """The JSON values in ``text``, one after another, as Go's ``json.Decoder`` reads a stream.

    Raises :class:`DecodeError` at the first one that is not valid JSON.
    """
    decoder = json.JSONDecoder(parse_constant=_refuse_constant)
    index = 0
    while True:
        while index < len(text) and text[index] in _JSON_SPACE:
            index += 1
        if index == len(text):
            return
        try:
            value, index = decoder.raw_decode(text, index)
        except (ValueError, RecursionError) as error:
            raise DecodeError(f"json: {error}") from None
        yield value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@cache
def _fields(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    """A message's fields by proto name and by lowerCamel JSON name."""
    fields = {field.json_name: field for field in descriptor.fields}
    fields.update((field.name, field) for field in descriptor.fields)
    return fields


def _merge(value: Any, message: Message) -> None:
    descriptor = message.DESCRIPTOR
    if value is None:
        return
    if not isinstance(value, dict):
        raise DecodeError(f"json: {descriptor.full_name} must be an object, not {_kind(value)}")
    fields = _fields(descriptor)
    for name, item in value.items():
        field = fields.get(name)
        if field is None or item is None:
            continue
        if field.is_repeated:
            if not isinstance(item, list):
                raise DecodeError(f"json: {_where(field)} must be an array, not {_kind(item)}")
            target = getattr(message, field.name)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for element in item:
                    _merge(element, target.add())
            else:
                target.extend(_scalar(field, element) for element in item)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            child = getattr(message, field.name)
            child.SetInParent()
            _merge(item, child)
        else:
            setattr(message, field.name, _scalar(field, item))


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, bool):
            return value
    elif kind == FieldDescriptor.TYPE_STRING:
        if isinstance(value, str):
            return value
    elif kind == FieldDescriptor.TYPE_BYTES:
        if isinstance(value, str):
            try:
                return base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
            except (binascii.Error, ValueError):
                raise DecodeError(f"json: {_where(field)}: illegal base64 data {_short(value)}") from None
    elif kind == FieldDescriptor.TYPE_ENUM:
        if isinstance(value, str):
            enum = field.enum_type
            assert enum is not None  # an enum field's descriptor names its enum
            known = enum.values_by_name.get(value)
            if known is None:
                raise DecodeError(f"json: unknown value {_short(value)} for enum {enum.full_name}")
            return known.number
        return _integer(field, value)
    elif kind in _RANGES:
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip(_JSON_SPACE)):
            value = int(value)
        return _integer(field, value)
    else:
        raise DecodeError(f"json: {_where(field)} has a type the gateway does not read")
    raise DecodeError(f"json: {_where(field)} cannot be {_kind(value)} {_short(value)}")


def _integer(field: FieldDescriptor, value: Any) -> int:
    low, high = _RANGES[field.type]
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    raise DecodeError(f"json: {_where(field)} must be an integer from {low} to {high}, not {_short(value)}")


def _where(field: FieldDescriptor) -> str:
    message = field.containing_type
    return f"field {field.name} of {message.full_name if message is not None else '?'}"


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a bool"}.get(type(value), "a number")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."
