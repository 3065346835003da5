"""Handlers of operations on existing instances (reboot, pause, suspend, resize, rebuild, ...).

One command, ``compute.operate_instance``, names the operation; the handler runs the matching
driver call and always answers ``compute.instance.operation_finished`` with the instance's actual
power state afterwards and the driver's error, if any (the conductor decides what that means).
Every driver call is idempotent, so a redelivered command is harmless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agents.compute.base import AgentBase
from agents.compute.driver import DriverError, InstanceSpec, PowerState
from cloud.runtime.actor import Context, handles
from schemas.compute import FlavorSpec
from schemas.compute_ops import InstanceOperationFinished, OperateInstance


class OperationHandlers(AgentBase):
    """Mixin of :class:`agents.compute.agent.ComputeAgent`."""

    @handles(OperateInstance)
    async def operate(self, msg: OperateInstance, ctx: Context) -> None:
        error: str | None = None
        try:
            await self._run(msg)
        except DriverError as exc:
            error = str(exc) or type(exc).__name__
            ctx.log.warning(
                "instance.operation_failed",
                instance_id=msg.instance_id,
                operation=msg.operation,
                error=error,
            )
        try:
            state = (await self.driver.get_info(msg.instance_id)).power_state
        except DriverError:
            state = PowerState.NOSTATE  # not (or no longer) on this host
        ctx.log.info(
            "instance.operation_finished",
            instance_id=msg.instance_id,
            operation=msg.operation,
            state=state.name,
        )
        await ctx.emit(
            InstanceOperationFinished(
                instance_id=msg.instance_id,
                host=self.host,
                operation=msg.operation,
                power_state=int(state),
                error=error,
            )
        )
        if msg.operation in ("resize", "confirm_resize", "revert_resize", "rebuild"):
            await self.report(ctx)  # what this host runs changed

    async def _run(self, msg: OperateInstance) -> None:
        driver, instance_id = self.driver, msg.instance_id
        simple: dict[str, Callable[[str], Awaitable[None]]] = {
            "stop": driver.power_off,
            "start": driver.power_on,
            "pause": driver.pause,
            "unpause": driver.unpause,
            "suspend": driver.suspend,
            "resume": driver.resume,
        }
        if msg.operation in simple:
            await simple[msg.operation](instance_id)
        elif msg.operation in ("reboot_soft", "reboot_hard"):
            await driver.reboot(instance_id, hard=msg.operation == "reboot_hard")
        elif msg.operation == "resize":
            await driver.resize(self._spec(msg), power_on=msg.power_on)
        elif msg.operation == "confirm_resize":
            if msg.source_host == self.host:
                await driver.destroy(instance_id)  # it moved away: the old copy goes
            else:
                await driver.confirm_resize(instance_id)
        elif msg.operation == "revert_resize":
            await driver.revert_resize(instance_id, self._flavor(msg))
        elif msg.operation == "rebuild":
            await driver.rebuild(self._spec(msg), power_on=msg.power_on)
        else:  # a newer control plane's operation: say so instead of failing silently
            raise DriverError(f"operation {msg.operation} is not supported by this agent")

    @staticmethod
    def _flavor(msg: OperateInstance) -> FlavorSpec:
        if msg.flavor is None:
            raise DriverError(f"{msg.operation} needs a flavor")
        return msg.flavor

    def _spec(self, msg: OperateInstance) -> InstanceSpec:
        return InstanceSpec(
            msg.instance_id,
            msg.name or msg.instance_id,
            self._flavor(msg),
            msg.image_ref or "",
            msg.user_data,
            dict(msg.metadata),
        )
