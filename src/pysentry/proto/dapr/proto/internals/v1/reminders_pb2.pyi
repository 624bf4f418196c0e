import datetime

from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Reminder(_message.Message):
    __slots__ = ("actor_id", "actor_type", "name", "data", "period", "registered_time", "due_time", "expiration_time", "is_timer", "skip_lock")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_TIME_FIELD_NUMBER: _ClassVar[int]
    DUE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_TIME_FIELD_NUMBER: _ClassVar[int]
    IS_TIMER_FIELD_NUMBER: _ClassVar[int]
    SKIP_LOCK_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    actor_type: str
    name: str
    data: _any_pb2.Any
    period: str
    registered_time: _timestamp_pb2.Timestamp
    due_time: str
    expiration_time: _timestamp_pb2.Timestamp
    is_timer: bool
    skip_lock: bool
    def __init__(self, actor_id: _Optional[str] = ..., actor_type: _Optional[str] = ..., name: _Optional[str] = ..., data: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., period: _Optional[str] = ..., registered_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., due_time: _Optional[str] = ..., expiration_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., is_timer: _Optional[bool] = ..., skip_lock: _Optional[bool] = ...) -> None: ...
