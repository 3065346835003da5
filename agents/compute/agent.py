"""The compute agent: one per host, queue ``compute.<host>``; spawns and destroys via its driver.

It never touches the database: it receives commands, asks the driver, and emits what happened
(``compute.instance.spawned`` / ``spawn_failed`` / ``destroyed``); the periodic report (capacity
and power states) is the tick's. No report follows a spawn or a destroy: the capacity did not change
(the scheduler counts claims), and with a thousand hosts those reports doubled the conductor's work.
Handlers are idempotent (the driver's spawn and destroy are), as an agent consumer only deduplicates
within its process.
"""

from __future__ import annotations

from agents.compute.base import address_of as address_of
from agents.compute.driver import DriverError, InstanceSpec, PowerState
from agents.compute.images import ImageHandlers
from agents.compute.operations import OperationHandlers
from cloud.runtime.actor import Context, handles
from schemas.compute import (
    DestroyInstance,
    InstanceDestroyed,
    InstancePowerChanged,
    InstanceSpawned,
    InstanceSpawnFailed,
    SpawnInstance,
    StartInstance,
    StopInstance,
)


class ComputeAgent(OperationHandlers, ImageHandlers):
    """Queue: ``compute.<host>``. Spawn, destroy and power handlers; the mixins add the others."""

    @handles(SpawnInstance)
    async def spawn(self, msg: SpawnInstance, ctx: Context) -> None:
        spec = InstanceSpec(
            msg.instance_id, msg.name, msg.flavor, msg.image_ref, msg.user_data, msg.metadata
        )
        try:
            info = await self.driver.spawn(spec)
        except DriverError as exc:
            ctx.log.warning("instance.spawn_failed", instance_id=msg.instance_id, error=str(exc))
            await self.driver.destroy(msg.instance_id)  # leave nothing half-built behind
            await ctx.emit(
                InstanceSpawnFailed(instance_id=msg.instance_id, host=self.host, reason=str(exc))
            )
        else:
            ctx.log.info("instance.spawned", instance_id=msg.instance_id)
            await ctx.emit(
                InstanceSpawned(
                    instance_id=msg.instance_id, host=self.host, power_state=int(info.power_state)
                )
            )

    @handles(DestroyInstance)
    async def destroy(self, msg: DestroyInstance, ctx: Context) -> None:
        await self.driver.destroy(msg.instance_id)
        ctx.log.info("instance.destroyed", instance_id=msg.instance_id)
        await ctx.emit(InstanceDestroyed(instance_id=msg.instance_id, host=self.host))

    @handles(StopInstance)
    async def stop(self, msg: StopInstance, ctx: Context) -> None:
        await self._power(msg.instance_id, on=False, ctx=ctx)

    @handles(StartInstance)
    async def start(self, msg: StartInstance, ctx: Context) -> None:
        await self._power(msg.instance_id, on=True, ctx=ctx)

    async def _power(self, instance_id: str, *, on: bool, ctx: Context) -> None:
        error: str | None = None
        try:
            await (self.driver.power_on if on else self.driver.power_off)(instance_id)
        except DriverError as exc:
            error = str(exc) or type(exc).__name__
        try:
            state = (await self.driver.get_info(instance_id)).power_state
        except DriverError:
            state = PowerState.NOSTATE
        ctx.log.info("instance.power_changed", instance_id=instance_id, state=state.name)
        await ctx.emit(
            InstancePowerChanged(
                instance_id=instance_id, host=self.host, power_state=int(state), error=error
            )
        )
