from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class APIVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APIVERSION_UNSPECIFIED: _ClassVar[APIVersion]
    V1: _ClassVar[APIVersion]
APIVERSION_UNSPECIFIED: APIVersion
V1: APIVersion
