from google.protobuf import empty_pb2 as _empty_pb2
from pysentry.proto.dapr.proto.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InvokeServiceRequest(_message.Message):
    __slots__ = ("id", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    message: _common_pb2.InvokeRequest
    def __init__(self, id: _Optional[str] = ..., message: _Optional[_Union[_common_pb2.InvokeRequest, _Mapping]] = ...) -> None: ...

class GetMetadataRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetMetadataResponse(_message.Message):
    __slots__ = ("id", "registered_components", "extended_metadata", "app_connection_properties", "runtime_version", "enabled_features")
    class ExtendedMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_METADATA_FIELD_NUMBER: _ClassVar[int]
    APP_CONNECTION_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    id: str
    registered_components: _containers.RepeatedCompositeFieldContainer[RegisteredComponents]
    extended_metadata: _containers.ScalarMap[str, str]
    app_connection_properties: AppConnectionProperties
    runtime_version: str
    enabled_features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., registered_components: _Optional[_Iterable[_Union[RegisteredComponents, _Mapping]]] = ..., extended_metadata: _Optional[_Mapping[str, str]] = ..., app_connection_properties: _Optional[_Union[AppConnectionProperties, _Mapping]] = ..., runtime_version: _Optional[str] = ..., enabled_features: _Optional[_Iterable[str]] = ...) -> None: ...

class RegisteredComponents(_message.Message):
    __slots__ = ("name", "type", "version", "capabilities")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class AppConnectionProperties(_message.Message):
    __slots__ = ("port", "protocol", "channel_address", "max_concurrency", "health")
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    port: int
    protocol: str
    channel_address: str
    max_concurrency: int
    health: AppConnectionHealthProperties
    def __init__(self, port: _Optional[int] = ..., protocol: _Optional[str] = ..., channel_address: _Optional[str] = ..., max_concurrency: _Optional[int] = ..., health: _Optional[_Union[AppConnectionHealthProperties, _Mapping]] = ...) -> None: ...

class AppConnectionHealthProperties(_message.Message):
    __slots__ = ("health_check_path", "health_probe_interval", "health_probe_timeout", "health_threshold")
    HEALTH_CHECK_PATH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_PROBE_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    HEALTH_PROBE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    health_check_path: str
    health_probe_interval: str
    health_probe_timeout: str
    health_threshold: int
    def __init__(self, health_check_path: _Optional[str] = ..., health_probe_interval: _Optional[str] = ..., health_probe_timeout: _Optional[str] = ..., health_threshold: _Optional[int] = ...) -> None: ...

class SetMetadataRequest(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
