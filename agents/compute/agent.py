"""The compute agent: one per host, queue ``compute.<host>``; spawns and destroys via its driver.

It never touches the database: it receives commands, asks the driver, and emits what happened
(``compute.instance.spawned`` / ``spawn_failed`` / ``destroyed``) plus a resource report after each
change and on every tick. Handlers are idempotent (the driver's spawn and destroy are), as an agent
consumer only deduplicates within its process.
"""

from __future__ import annotations

from typing import ClassVar

from agents.compute.driver import ComputeDriver, DriverError, InstanceSpec, PowerState
from cloud.runtime.actor import Actor, Context, handles
from cloud.runtime.bus import COMMANDS, Binding
from schemas.compute import (
    DestroyInstance,
    HostResourcesReported,
    InstanceDestroyed,
    InstancePowerChanged,
    InstanceSpawned,
    InstanceSpawnFailed,
    SpawnInstance,
    StartInstance,
    StopInstance,
)


def address_of(host: str) -> str:
    """The routing key (and queue) of a host's compute agent."""
    return f"compute.{host}"


class ComputeAgent(Actor):
    """Queue: ``compute.<host>``."""

    name: ClassVar[str] = "compute"
    tick_interval: ClassVar[float] = 5.0

    def __init__(self, host: str, driver: ComputeDriver, availability_zone: str = "nova") -> None:
        self.host, self.driver, self.availability_zone = host, driver, availability_zone

    @property
    def queue(self) -> str:
        return address_of(self.host)

    def bindings(self) -> list[Binding]:
        return [Binding(COMMANDS, address_of(self.host))]

    def readiness(self) -> dict[str, bool]:
        return {"consuming": True, "hypervisor": True}

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
        await self.report(ctx)

    @handles(DestroyInstance)
    async def destroy(self, msg: DestroyInstance, ctx: Context) -> None:
        await self.driver.destroy(msg.instance_id)
        ctx.log.info("instance.destroyed", instance_id=msg.instance_id)
        await ctx.emit(InstanceDestroyed(instance_id=msg.instance_id, host=self.host))
        await self.report(ctx)

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

    async def tick(self, ctx: Context) -> None:
        await self.report(ctx)

    async def report(self, ctx: Context) -> None:
        resources = await self.driver.host_resources()
        await ctx.emit(
            HostResourcesReported(
                host=self.host,
                hypervisor_type=resources.hypervisor_type,
                vcpus=resources.vcpus,
                ram_mb=resources.ram_mb,
                disk_gb=resources.disk_gb,
                instances=await self.driver.list_instances(),
                availability_zone=self.availability_zone,
            )
        )
