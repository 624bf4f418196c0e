from pysentry.proto.dapr.proto.common.v1 import common_pb2 as _common_pb2
from pysentry.proto.dapr.proto.internals.v1 import apiversion_pb2 as _apiversion_pb2
from pysentry.proto.dapr.proto.internals.v1 import reminders_pb2 as _reminders_pb2
from pysentry.proto.dapr.proto.internals.v1 import status_pb2 as _status_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Actor(_message.Message):
    __slots__ = ("actor_type", "actor_id")
    ACTOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    actor_type: str
    actor_id: str
    def __init__(self, actor_type: _Optional[str] = ..., actor_id: _Optional[str] = ...) -> None: ...

class InternalInvokeRequest(_message.Message):
    __slots__ = ("ver", "metadata", "message", "actor")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ListStringValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ListStringValue, _Mapping]] = ...) -> None: ...
    VER_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ver: _apiversion_pb2.APIVersion
    metadata: _containers.MessageMap[str, ListStringValue]
    message: _common_pb2.InvokeRequest
    actor: Actor
    def __init__(self, ver: _Optional[_Union[_apiversion_pb2.APIVersion, str]] = ..., metadata: _Optional[_Mapping[str, ListStringValue]] = ..., message: _Optional[_Union[_common_pb2.InvokeRequest, _Mapping]] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ...) -> None: ...

class InternalInvokeResponse(_message.Message):
    __slots__ = ("status", "headers", "trailers", "message")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ListStringValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ListStringValue, _Mapping]] = ...) -> None: ...
    class TrailersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ListStringValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ListStringValue, _Mapping]] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    TRAILERS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    status: _status_pb2.Status
    headers: _containers.MessageMap[str, ListStringValue]
    trailers: _containers.MessageMap[str, ListStringValue]
    message: _common_pb2.InvokeResponse
    def __init__(self, status: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., headers: _Optional[_Mapping[str, ListStringValue]] = ..., trailers: _Optional[_Mapping[str, ListStringValue]] = ..., message: _Optional[_Union[_common_pb2.InvokeResponse, _Mapping]] = ...) -> None: ...

class InternalInvokeRequestStream(_message.Message):
    __slots__ = ("request", "payload")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    request: InternalInvokeRequest
    payload: _common_pb2.StreamPayload
    def __init__(self, request: _Optional[_Union[InternalInvokeRequest, _Mapping]] = ..., payload: _Optional[_Union[_common_pb2.StreamPayload, _Mapping]] = ...) -> None: ...

class InternalInvokeResponseStream(_message.Message):
    __slots__ = ("response", "payload")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    response: InternalInvokeResponse
    payload: _common_pb2.StreamPayload
    def __init__(self, response: _Optional[_Union[InternalInvokeResponse, _Mapping]] = ..., payload: _Optional[_Union[_common_pb2.StreamPayload, _Mapping]] = ...) -> None: ...

class ListStringValue(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...
