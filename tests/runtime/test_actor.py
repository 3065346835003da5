"""Handler registration of actors assembled from mixins (ADR 0003)."""

from __future__ import annotations

import pytest

from cloud.runtime.actor import Actor, Context, handles
from schemas.system import ServiceHeartbeat


class _First(Actor):
    @handles(ServiceHeartbeat)
    async def first(self, msg: ServiceHeartbeat, ctx: Context) -> None: ...


class _Second(Actor):
    @handles(ServiceHeartbeat)
    async def second(self, msg: ServiceHeartbeat, ctx: Context) -> None: ...


def test_mixin_handlers_register_with_the_assembled_actor() -> None:
    class Assembled(_First):
        pass

    assert Assembled._handlers == {ServiceHeartbeat: "first"}


def test_one_kind_handled_by_two_mixins_is_refused() -> None:
    with pytest.raises(TypeError, match="handled by both"):

        class Clash(_First, _Second):
            pass


def test_a_subclass_may_override_a_handler_under_its_name() -> None:
    class Override(_First):
        @handles(ServiceHeartbeat)
        async def first(self, msg: ServiceHeartbeat, ctx: Context) -> None: ...

    assert Override._handlers == {ServiceHeartbeat: "first"}
