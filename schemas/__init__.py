"""The wire contract: pydantic message models only. No I/O; imports nothing from cloud/ or agents/."""

from schemas import (
    compute,
    compute_catalog,
    compute_consoles,
    compute_hosts,
    compute_images,
    compute_ops,
    compute_placement,
    compute_servers,
    identity,
    image,
    system,
)
from schemas.base import REGISTRY, Command, Envelope, Event, Message, Registry, UnknownMessage
from schemas.codec import DecodeError, decode, encode

__all__ = [
    "REGISTRY",
    "Command",
    "DecodeError",
    "Envelope",
    "Event",
    "Message",
    "Registry",
    "UnknownMessage",
    "compute",
    "compute_catalog",
    "compute_consoles",
    "compute_hosts",
    "compute_images",
    "compute_ops",
    "compute_placement",
    "compute_servers",
    "decode",
    "encode",
    "identity",
    "image",
    "system",
]
